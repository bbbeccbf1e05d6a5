using System.Buffers;
using System.IO.Pipelines;
using CacheHost.Protocols.DistCache;
using CacheHost.Roles.ClientProxy;
using CacheHost.Transport;
using Xunit;

namespace CacheHost.ClientProxy.Tests;

/// <summary>
/// The parts of the upstream link on their own (issue 16 item 3): the write coalescer driven through the transport's
/// batch-end seam by a scripted scheduler, and the in-flight table's epochs.
/// </summary>
public sealed class LinkUnitTests
{
    [Fact]
    public async Task TheCoalescerSendsARoundsRequestsInOneWriteAtTheRoundsEnd()
    {
        var round = new ScriptedRound();
        var stats = new ClientProxyStatistics();
        var coalescer = new WriteCoalescer(coalesce: true, round, stats);
        var pipe = new Pipe();
        coalescer.Attach(pipe.Writer, epoch: 1);

        var request = Have(77);
        var length = (int)request.Length;
        for (uint uid = 1; uid <= 3; uid++)
        {
            Assert.True(await coalescer.WriteAsync(request, length, uid, epoch: 1));
        }

        Assert.Equal(1, round.Queued); // one flush per round, however many requests
        Assert.Equal(0, stats.Writes);
        Assert.False(pipe.Reader.TryRead(out _));

        round.End();
        Assert.Equal(1, stats.Writes);
        var read = await pipe.Reader.ReadAsync();
        var bytes = read.Buffer.ToArray();
        Assert.Equal(3 * length, bytes.Length);
        for (var i = 0; i < 3; i++)
        {
            // Frames unchanged except the uid (offset 5), which is the link's.
            var frame = bytes.AsSpan(i * length, length);
            Assert.Equal((uint)i + 1, FrameHeader.Read(frame).Uid);
            Assert.Equal(request.ToArray()[14..], frame[14..].ToArray());
        }
    }

    [Fact]
    public async Task OffALoopTheCallerWritesAndBytesForAGoneLinkAreDropped()
    {
        var stats = new ClientProxyStatistics();
        var coalescer = new WriteCoalescer(coalesce: true, new ScriptedRound { OnLoop = false }, stats);
        var pipe = new Pipe();
        coalescer.Attach(pipe.Writer, epoch: 1);
        var request = Have(1);
        var length = (int)request.Length;
        Assert.True(await coalescer.WriteAsync(request, length, 5, epoch: 1));
        Assert.Equal(1, stats.Writes);

        coalescer.Detach(1);
        Assert.True(await coalescer.WriteAsync(request, length, 6, epoch: 1));
        Assert.Equal(1, stats.Writes);
        var read = await pipe.Reader.ReadAsync();
        Assert.Equal(length, read.Buffer.Length);
    }

    [Fact]
    public async Task ALinksLossAnswersOnlyItsOwnRequests()
    {
        var table = new InFlightTable(8);
        await table.WaitForSlotAsync(CancellationToken.None); // as the connection handler does before each forward
        await table.WaitForSlotAsync(CancellationToken.None);
        table.Open(1);
        var old = new PendingRequest();
        Assert.True(table.TryAdd(Arm(old), 0, out var oldUid, out var oldEpoch));
        table.Open(2); // failback: new requests belong to the new link
        var fresh = new PendingRequest();
        Assert.True(table.TryAdd(Arm(fresh), 0, out _, out var freshEpoch));
        Assert.Equal((1, 2), (oldEpoch, freshEpoch));

        var retired = table.RetireAsync(1);
        Assert.False(retired.IsCompleted);
        Assert.Equal(InFlightTable.Match.Taken, table.TryTake(oldUid, DistCacheOperation.Have, out _));
        Assert.True(retired.IsCompletedSuccessfully);
        Assert.Empty(table.Close(1));
        Assert.Equal(1, table.Count);
        Assert.Same(fresh, Assert.Single(table.Close(2)));
        Assert.False(table.TryAdd(Arm(new PendingRequest()), 0, out _, out _)); // no link takes requests

        static PendingRequest Arm(PendingRequest pending)
        {
            _ = pending.Arm(9, DistCacheOperation.Have);
            return pending;
        }
    }

    private static ReadOnlySequence<byte> Have(uint uid)
    {
        var writer = new ArrayBufferWriter<byte>();
        DistCacheMessageWriter.Write(writer, false, uid, DistCacheOperation.Have, "some-session-id"u8);
        return new ReadOnlySequence<byte>(writer.WrittenMemory);
    }

    /// <summary>A loop round under the test's control.</summary>
    private sealed class ScriptedRound : IBatchEndScheduler
    {
        private readonly List<(Action<object?> Action, object? State)> _queued = [];

        public bool OnLoop { get; init; } = true;

        public int Queued => _queued.Count;

        public bool TryRunAtBatchEnd(Action<object?> action, object? state)
        {
            if (OnLoop)
            {
                _queued.Add((action, state));
            }

            return OnLoop;
        }

        public void End()
        {
            foreach (var (action, state) in _queued)
            {
                action(state);
            }

            _queued.Clear();
        }
    }
}
