using System.Runtime.CompilerServices;
using CacheHost.Client;
using CacheHost.Protocols.DistCache;
using CacheHost.Transport;

namespace CacheHost.LoadTool;

/// <summary>What one -mix request got back, protocol-neutral.</summary>
internal enum MixReply
{
    /// <summary>ADD stored (distcache 0x00, memcached STORED).</summary>
    Stored,
    /// <summary>ADD found the key present (distcache 0x65, memcached NOT_STORED/EXISTS); counts as completed.</summary>
    Exists,
    /// <summary>GET returned a value (see <see cref="MixConnection.Value"/>).</summary>
    Hit,
    /// <summary>GET found nothing.</summary>
    Miss,
    /// <summary>REMOVE/HAVE answered (either way).</summary>
    Answered,
    /// <summary>An answer the operation does not allow.</summary>
    Invalid,
    /// <summary>An empty or mismatched response (transaction failure).</summary>
    Failed,
}

/// <summary>
/// One persistent, pipelinable connection of the -mix mode: requests are appended to a reusable buffer and
/// leave in one write; replies are read in order. No allocation per request (pooled async state machines,
/// reusable buffers); one instance per client, never shared between threads.
/// </summary>
internal abstract class MixConnection : IDisposable
{
    /// <summary>Value of the last <see cref="MixReply.Hit"/> (valid until the next receive).</summary>
    public abstract ReadOnlySpan<byte> Value { get; }

    /// <summary>Key echoed with the last hit, empty when the protocol does not echo it.</summary>
    public abstract ReadOnlySpan<byte> ValueKey { get; }

    public abstract void Append(MixOperation operation, uint tag, ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, int timeoutSeconds);

    public abstract ValueTask SendAsync();

    public abstract ValueTask<MixReply> ReceiveAsync(MixOperation operation, uint tag);

    public abstract void Dispose();

    public static async ValueTask<MixConnection> ConnectAsync(MixProtocol protocol, string address, int valueSize, int pipeline, TransportOptions transport, TlsContext? tls = null)
    {
        var transportAddress = TransportAddress.Parse(address);
        return protocol == MixProtocol.Memcached
            ? new MemcachedMixConnection(await OutboundConnector.ConnectAsync(transportAddress, transport, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, tls?.CreateClientAdapter(transportAddress, transport)).ConfigureAwait(false), valueSize, pipeline)
            : new DistCacheMixConnection(await DistCacheConnection.ConnectAsync(transportAddress, transport, tls).ConfigureAwait(false));
    }
}

/// <summary>distcache over <see cref="DistCacheConnection"/> (already allocation-free per request).</summary>
internal sealed class DistCacheMixConnection(DistCacheConnection connection) : MixConnection
{
    private int _valueLength;

    public override ReadOnlySpan<byte> Value => connection.Payload[.._valueLength];

    public override ReadOnlySpan<byte> ValueKey => default;

    public override void Append(MixOperation operation, uint tag, ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, int timeoutSeconds)
    {
        if (operation == MixOperation.Add)
        {
            connection.AppendAdd(tag, key, value, (uint)timeoutSeconds * 1000);
        }
        else
        {
            connection.AppendRequest(tag, ToOperation(operation), key);
        }
    }

    public override ValueTask SendAsync() => connection.SendAsync();

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public override async ValueTask<MixReply> ReceiveAsync(MixOperation operation, uint tag)
    {
        var (uid, op) = await connection.ReceiveAsync().ConfigureAwait(false);
        var payload = connection.Payload;
        if (uid != tag || op != ToOperation(operation) || payload.IsEmpty)
        {
            return MixReply.Failed;
        }

        // Result bytes: distcache §5 (ADD 0x00 / 0x65 matching session; GET miss 0x01, hit >= 5 bytes; REMOVE/HAVE 0x00/0x01).
        switch (operation)
        {
            case MixOperation.Add:
                return payload.Length != 1 ? MixReply.Invalid
                    : payload[0] == 0x00 ? MixReply.Stored
                    : payload[0] == (byte)DistCacheResult.AddMatchingSession ? MixReply.Exists
                    : MixReply.Invalid;
            case MixOperation.Get:
                if (DistCacheResults.IsHit(payload))
                {
                    _valueLength = payload.Length;
                    return MixReply.Hit;
                }

                return payload.Length == 1 && payload[0] == 0x01 ? MixReply.Miss : MixReply.Invalid;
            default:
                return payload.Length == 1 && payload[0] <= 0x01 ? MixReply.Answered : MixReply.Failed;
        }
    }

    public override void Dispose() => connection.Dispose();

    private static DistCacheOperation ToOperation(MixOperation operation) => operation switch
    {
        MixOperation.Add => DistCacheOperation.Add,
        MixOperation.Get => DistCacheOperation.Get,
        MixOperation.Remove => DistCacheOperation.Remove,
        _ => DistCacheOperation.Have,
    };
}
