using System.Buffers;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;

namespace CacheHost.Transport;

/// <summary>
/// A reusable, awaitable SocketAsyncEventArgs that sends a whole <see cref="ReadOnlySequence{T}"/> with one
/// gather write (sendmsg), so a batch of replies spread over several pipe segments costs one syscall and
/// no allocation. One instance per connection; never used concurrently (only the send loop calls it).
/// </summary>
internal sealed class SocketSender : SocketAsyncEventArgs, IValueTaskSource<int>
{
    private readonly List<ArraySegment<byte>> _segments = new(8);
    private ManualResetValueTaskSourceCore<int> _core;

    public SocketSender()
        : base(unsafeSuppressExecutionContextFlow: true)
    {
        // Continuations run where the completion happens; the send loop does no blocking work.
        _core.RunContinuationsAsynchronously = false;
    }

    public ValueTask<int> SendAsync(Socket socket, in ReadOnlySequence<byte> buffer)
    {
        if (buffer.IsSingleSegment)
        {
            if (BufferList is not null)
            {
                BufferList = null;
            }

            SetBuffer(MemoryMarshal.AsMemory(buffer.First));
        }
        else
        {
            SetBuffer(null, 0, 0);
            _segments.Clear();
            foreach (var segment in buffer)
            {
                if (!MemoryMarshal.TryGetArray(segment, out var array))
                {
                    // Every pool this transport uses is array-backed; anything else is a programming error.
                    throw new InvalidOperationException("send buffer is not array-backed");
                }

                _segments.Add(array);
            }

            BufferList = _segments;
        }

        _core.Reset();
        if (socket.SendAsync(this))
        {
            return new ValueTask<int>(this, _core.Version);
        }

        return SocketError == SocketError.Success
            ? new ValueTask<int>(BytesTransferred)
            : ValueTask.FromException<int>(new SocketException((int)SocketError));
    }

    protected override void OnCompleted(SocketAsyncEventArgs e)
    {
        if (SocketError == SocketError.Success)
        {
            _core.SetResult(BytesTransferred);
        }
        else
        {
            _core.SetException(new SocketException((int)SocketError));
        }
    }

    public int GetResult(short token) => _core.GetResult(token);

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => _core.OnCompleted(continuation, state, token, flags);
}
