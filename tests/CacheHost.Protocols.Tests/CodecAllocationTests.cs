using System.Buffers;
using CacheHost.Protocols.DistCache;
using CacheHost.Protocols.Tsv;
using CacheHost.Testing;
using Xunit;

namespace CacheHost.Protocols.Tests;

/// <summary>
/// The codec hot paths must not allocate. Measured with the exact per-thread allocation counter, so the
/// test is deterministic (it says nothing about speed; speed lives in bench/).
/// </summary>
public sealed class CodecAllocationTests
{
    [Fact]
    public void ParsingAndWritingDistCacheMessagesAllocatesNothing()
    {
        var request = Hex.Bytes("00110000 00 deadbeef 00 01 01 000c 736573732d69642d30303031");
        var multi = new byte[5060];
        var payload = new byte[5018];
        var w = new ArrayBufferWriter<byte>(8192);
        DistCacheMessageWriter.Write(w, false, 3, DistCacheOperation.Add, payload);
        w.WrittenSpan.CopyTo(multi);
        var single = new ReadOnlySequence<byte>(request);
        var split = SequenceFactory.Create(multi[..3000], multi[3000..]);
        var writer = new ArrayBufferWriter<byte>(64 * 1024);
        var scratch = new byte[DistCacheProtocol.MaxPayload];
        var data = new byte[1024];

        // Warm up (JIT, tiering) before measuring.
        for (var i = 0; i < 100; i++)
        {
            Run();
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            Run();
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);

        void Run()
        {
            writer.ResetWrittenCount();
            DistCacheMessageReader.TryRead(single, false, out var m1, out _, out _);
            DistCacheMessageReader.TryRead(split, false, out var m2, out _, out _);
            m2.CopyPayloadTo(split, scratch);
            _ = AddRequest.Parse(scratch.AsSpan(0, m2.PayloadLength));
            DistCacheMessageWriter.Write(writer, true, m1.Uid, DistCacheOperation.Get, data);
            DistCacheMessageWriter.WriteResult(writer, m1.Uid, DistCacheOperation.Have, DistCacheResult.Ok);
        }
    }

    [Fact]
    public void FramingTsvLinesAllocatesNothing()
    {
        var lines = new ReadOnlySequence<byte>("service.args\tweb\t/usr/bin/web\t--port\t80\nstatedump\n"u8.ToArray());
        for (var i = 0; i < 100; i++)
        {
            Run();
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            Run();
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);

        void Run()
        {
            var framer = new TsvLineFramer(TsvLineFramer.DefaultMaxLineLength);
            var buffer = lines;
            while (framer.TryReadLine(ref buffer, out _, out _) == TsvLineStatus.Line)
            {
            }
        }
    }
}
