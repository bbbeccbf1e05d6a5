using System.Buffers;
using BenchmarkDotNet.Attributes;
using CacheHost.Protocols.DistCache;
using CacheHost.Testing;

namespace CacheHost.Benchmarks;

/// <summary>Codec parse and write costs; the allocation column must read 0 (or "-").</summary>
[MemoryDiagnoser]
public class DistCacheCodecBenchmarks
{
    private const int Batch = 100;
    private ReadOnlySequence<byte> _getRequest;
    private ReadOnlySequence<byte> _addSplit;
    private ReadOnlySequence<byte> _pipelined;
    private readonly ArrayBufferWriter<byte> _writer = new(1 << 20);
    private readonly byte[] _value = new byte[1024];
    private readonly byte[] _scratch = new byte[DistCacheProtocol.MaxPayload];

    [GlobalSetup]
    public void Setup()
    {
        var w = new ArrayBufferWriter<byte>();
        DistCacheMessageWriter.Write(w, false, 7, DistCacheOperation.Get, new byte[32]);
        _getRequest = new ReadOnlySequence<byte>(w.WrittenSpan.ToArray());

        var add = new byte[8 + 32 + 5000];
        AddRequest.Write(add, 60_000, new byte[32], new byte[5000]);
        var aw = new ArrayBufferWriter<byte>();
        DistCacheMessageWriter.Write(aw, false, 8, DistCacheOperation.Add, add);
        var bytes = aw.WrittenSpan.ToArray();
        _addSplit = SequenceFactory.Create(bytes[..1000], bytes[1000..4096], bytes[4096..]);

        var pw = new ArrayBufferWriter<byte>();
        for (var i = 0; i < Batch; i++)
        {
            DistCacheMessageWriter.Write(pw, false, (uint)i, DistCacheOperation.Get, new byte[32]);
        }

        _pipelined = new ReadOnlySequence<byte>(pw.WrittenSpan.ToArray());
    }

    [Benchmark]
    public uint ParseGetRequest()
    {
        DistCacheMessageReader.TryRead(_getRequest, false, out var message, out _, out _);
        return message.Uid;
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public int ParsePipelinedBatchOf100()
    {
        var buffer = _pipelined;
        var count = 0;
        while (DistCacheMessageReader.TryRead(buffer, false, out var message, out _, out _) == OperationStatus.Done)
        {
            buffer = buffer.Slice(message.WireLength);
            count++;
        }

        return count;
    }

    [Benchmark]
    public int ParseAndReassembleMultiSegment5KAdd()
    {
        DistCacheMessageReader.TryRead(_addSplit, false, out var message, out _, out _);
        message.CopyPayloadTo(_addSplit, _scratch);
        return AddRequest.Parse(_scratch.AsSpan(0, message.PayloadLength)).Data.Length;
    }

    [Benchmark]
    public int Write1KGetReply()
    {
        _writer.ResetWrittenCount();
        DistCacheMessageWriter.Write(_writer, true, 7, DistCacheOperation.Get, _value);
        return _writer.WrittenCount;
    }

    [Benchmark]
    public int WriteResultByte()
    {
        _writer.ResetWrittenCount();
        DistCacheMessageWriter.WriteResult(_writer, 7, DistCacheOperation.Have, DistCacheResult.Ok);
        return _writer.WrittenCount;
    }
}
