using System.Buffers;
using System.Threading.Tasks.Sources;
using CacheHost.Protocols.DistCache;

namespace CacheHost.Roles.ClientProxy;

/// <summary>
/// The one request a local connection may have in flight (distcache §10.2), reused for every request of that
/// connection: the local uid and operation to restore, and the server's answer. Awaitable without allocation.
/// </summary>
internal sealed class PendingRequest : IValueTaskSource<bool>, IDisposable
{
    private ManualResetValueTaskSourceCore<bool> _core;
    private byte[] _buffer = [];

    public uint LocalUid { get; private set; }

    public DistCacheOperation Operation { get; private set; }

    /// <summary>Clock timestamp of the forward to the server (set by the link, for RequestTimeoutMs).</summary>
    public long SubmittedAt { get; set; }

    /// <summary>The link epoch it was sent on (set by the in-flight table): only that link's loss answers it 0x02.</summary>
    public int Epoch { get; set; }

    /// <summary>Server payload of the answer (valid after the await returned true).</summary>
    public ReadOnlySpan<byte> Response => _buffer.AsSpan(0, ResponseLength);

    public int ResponseLength { get; private set; }

    /// <summary>Prepares for a new request.</summary>
    public ValueTask<bool> Arm(uint localUid, DistCacheOperation operation)
    {
        _core.Reset();
        LocalUid = localUid;
        Operation = operation;
        ResponseLength = 0;
        return new ValueTask<bool>(this, _core.Version);
    }

    /// <summary>Delivers the server's answer (called by the upstream reader).</summary>
    public void Complete(in DistCacheMessage message, in ReadOnlySequence<byte> wire)
    {
        if (_buffer.Length < message.PayloadLength)
        {
            if (_buffer.Length > 0)
            {
                ArrayPool<byte>.Shared.Return(_buffer);
            }

            _buffer = ArrayPool<byte>.Shared.Rent(Math.Max(message.PayloadLength, 256));
        }

        message.CopyPayloadTo(wire, _buffer);
        ResponseLength = message.PayloadLength;
        _core.SetResult(true);
    }

    /// <summary>The server link died with this request in flight: the client gets 0x02 (distcache §10.3).</summary>
    public void CompleteDisconnected() => _core.SetResult(false);

    public bool GetResult(short token) => _core.GetResult(token);

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    public void Dispose()
    {
        if (_buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = [];
        }
    }
}
