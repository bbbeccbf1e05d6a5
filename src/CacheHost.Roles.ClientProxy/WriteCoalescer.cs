using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using CacheHost.Protocols.DistCache;
using CacheHost.Transport;

namespace CacheHost.Roles.ClientProxy;

/// <summary>
/// Carries forwarded requests into the server link's output. Requests are copied into a staging buffer with
/// their uid rewritten; then one of three things sends them, whichever comes first and finds the writer idle:
/// the end of the event loop's round (<see cref="ClientProxyOptions.CoalesceWrites"/>, through the transport's
/// <see cref="IBatchEndScheduler"/>: the requests of one round leave in one write, as dc_client's select loop
/// sends everything one select() produced, distcache §10.2); the caller itself when it is not on a loop (no writer
/// thread, no hop: usually synchronous); or the writer already busy, which takes the staged bytes with its next
/// batch. Bound to one link epoch at a time: bytes staged for another epoch are dropped (their requests were
/// answered 0x02 with that link).
/// </summary>
internal sealed class WriteCoalescer
{
    private static readonly Action<object?> s_flushAtBatchEnd = static state => ((WriteCoalescer)state!).FlushAtBatchEnd();

    private readonly Lock _gate = new();
    private readonly bool _coalesce;
    private readonly IBatchEndScheduler _batchEnd;
    private readonly ClientProxyStatistics _stats;
    private ArrayBufferWriter<byte> _staging = new(64 * 1024);
    private ArrayBufferWriter<byte> _sending = new(64 * 1024);
    private PipeWriter? _output;
    private int _epoch; // 0 = detached
    private int _carriedEpoch; // a retiring link whose late requests leave on this one (failback)
    private bool _writing;
    private bool _batchFlushScheduled;

    public WriteCoalescer(bool coalesce, IBatchEndScheduler batchEnd, ClientProxyStatistics stats)
    {
        _coalesce = coalesce;
        _batchEnd = batchEnd;
        _stats = stats;
    }

    /// <summary>
    /// Writes go to <paramref name="output"/>, the link of <paramref name="epoch"/>, from now on. A failback keeps
    /// what is staged (<paramref name="keepStaged"/>): those requests are still in flight and leave on the new link
    /// (their uids are unique across links); a new link after a loss starts empty.
    /// </summary>
    public void Attach(PipeWriter output, int epoch, bool keepStaged = false)
    {
        lock (_gate)
        {
            if (keepStaged)
            {
                _carriedEpoch = _epoch;
            }
            else
            {
                _staging.ResetWrittenCount();
                _carriedEpoch = 0;
            }

            _output = output;
            _epoch = epoch;
            _writing = false; // a drain of the previous link sees the new epoch and stops
        }

        if (keepStaged)
        {
            FlushAtBatchEnd(); // what the old link's writer left staged must not wait for the next request
        }
    }

    /// <summary>The link of <paramref name="epoch"/> is gone (or retired): what it had staged is dropped.</summary>
    public void Detach(int epoch)
    {
        lock (_gate)
        {
            if (_carriedEpoch == epoch)
            {
                _carriedEpoch = 0;
            }

            if (_epoch != epoch)
            {
                return;
            }

            _staging.ResetWrittenCount();
            _output = null;
            _epoch = 0;
            _writing = false;
        }
    }

    /// <summary>
    /// Stages the request in <paramref name="wire"/> under <paramref name="uid"/> for the link of
    /// <paramref name="epoch"/> and sees that it leaves (see the class summary). Always true.
    /// </summary>
    public ValueTask<bool> WriteAsync(in ReadOnlySequence<byte> wire, int length, uint uid, int epoch)
    {
        PipeWriter output;
        lock (_gate)
        {
            if (_epoch == 0 || (epoch != _epoch && epoch != _carriedEpoch))
            {
                return new ValueTask<bool>(true); // that link is gone; its requests were answered 0x02
            }

            // Copy the frames unchanged except for the uid field of every frame header (offset 5). Every frame but
            // the last carries 2048 bytes (distcache §4.2 rule 5), so the headers sit at fixed strides.
            var span = _staging.GetSpan(length)[..length];
            wire.CopyTo(span);
            for (var offset = 0; offset < length; offset += DistCacheProtocol.HeaderSize + DistCacheProtocol.MaxFrameData)
            {
                BinaryPrimitives.WriteUInt32BigEndian(span[(offset + 5)..], uid);
            }

            _staging.Advance(length);
            if (_writing)
            {
                return new ValueTask<bool>(true); // leaves with the writer's next batch
            }

            // On an event loop: send after the loop has read every client that is ready in this round.
            if (_coalesce && (_batchFlushScheduled || _batchEnd.TryRunAtBatchEnd(s_flushAtBatchEnd, this)))
            {
                _batchFlushScheduled = true;
                return new ValueTask<bool>(true);
            }

            _writing = true;
            output = _output!;
        }

        return DrainAsync(output, epoch);
    }

    /// <summary>Writes staged batches into the link until none is left; only one caller at a time owns the writer.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> DrainAsync(PipeWriter output, int epoch)
    {
        try
        {
            while (true)
            {
                ArrayBufferWriter<byte> batch;
                lock (_gate)
                {
                    if (epoch != _epoch || _staging.WrittenCount == 0)
                    {
                        if (epoch == _epoch)
                        {
                            _writing = false;
                        }

                        return true;
                    }

                    batch = _staging;
                    _staging = _sending;
                    _sending = batch;
                }

                output.Write(batch.WrittenSpan);
                batch.ResetWrittenCount();
                _stats.Write();
                var flush = await output.FlushAsync().ConfigureAwait(false);
                if (flush.IsCompleted || flush.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            // The link died under us; its reader reports that and answers the in-flight requests.
        }

        lock (_gate)
        {
            if (epoch == _epoch)
            {
                _writing = false;
            }
        }

        return true;
    }

    /// <summary>
    /// End of a loop round: sends what the round staged. Never waits for the write itself: the loop must go on
    /// serving, and a full link drains on its own.
    /// </summary>
    private void FlushAtBatchEnd()
    {
        PipeWriter output;
        int epoch;
        lock (_gate)
        {
            _batchFlushScheduled = false;
            if (_writing || _staging.WrittenCount == 0 || _epoch == 0)
            {
                return;
            }

            _writing = true;
            output = _output!;
            epoch = _epoch;
        }

        var drain = DrainAsync(output, epoch);
        if (drain.IsCompletedSuccessfully)
        {
            _ = drain.Result; // returns the pooled state machine
        }
        else
        {
            _ = drain.AsTask(); // the link is full; DrainAsync finishes on its own and never throws
        }
    }
}
