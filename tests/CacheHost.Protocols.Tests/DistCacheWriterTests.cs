using System.Buffers;
using CacheHost.Protocols.DistCache;
using CacheHost.Testing;
using Xunit;

namespace CacheHost.Protocols.Tests;

/// <summary>Fragmentation on the sending side (distcache §4.1) and the worked examples of distcache §7.</summary>
public sealed class DistCacheWriterTests
{
    [Theory]
    [InlineData(0, new[] { 0 })]
    [InlineData(1, new[] { 1 })]
    [InlineData(2048, new[] { 2048 })]
    [InlineData(2049, new[] { 2048, 1 })]
    [InlineData(5000, new[] { 2048, 2048, 904 })]
    [InlineData(32757, new[] { 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2037 })]
    [InlineData(32768, new[] { 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048 })]
    public void PayloadsAreSplitLikeTheReference(int length, int[] frameLengths)
    {
        var payload = Enumerable.Range(0, length).Select(i => (byte)i).ToArray();
        var writer = new ArrayBufferWriter<byte>();
        DistCacheMessageWriter.Write(writer, isResponse: true, 0x14, DistCacheOperation.Get, payload);
        var bytes = writer.WrittenSpan.ToArray();
        Assert.Equal(DistCacheProtocol.WireLength(length), bytes.Length);

        var offset = 0;
        for (var i = 0; i < frameLengths.Length; i++)
        {
            var header = FrameHeader.Read(bytes.AsSpan(offset));
            Assert.Equal(frameLengths[i], header.DataLength);
            Assert.Equal(i == frameLengths.Length - 1 ? 1 : 0, header.Complete);
            Assert.Equal(0x14u, header.Uid);
            Assert.Equal(1, header.IsResponse);
            offset += DistCacheProtocol.HeaderSize + header.DataLength;
        }

        Assert.Equal(bytes.Length, offset);

        // The same bytes from a multi-segment payload (the forwarding path).
        var segmented = new ArrayBufferWriter<byte>();
        var cut = length / 3;
        DistCacheMessageWriter.Write(segmented, true, 0x14, DistCacheOperation.Get, SequenceFactory.Create(payload[..cut], payload[cut..]));
        Assert.Equal(bytes, segmented.WrittenSpan.ToArray());
    }

    [Fact]
    public void TheWorkedAddExampleOfSection71IsEncodedExactly()
    {
        var payload = new byte[8 + 12 + 15];
        AddRequest.Write(payload, 300000, "sess-id-0001"u8, "hello distcache"u8);
        var writer = new ArrayBufferWriter<byte>();
        DistCacheMessageWriter.Write(writer, false, 1, DistCacheOperation.Add, payload);
        Assert.Equal("001100000000000001000001002300 0493e00000000c73657373 2d69642d3030303168656c6c6f20646973746361636865".Replace(" ", ""), Hex.Of(writer.WrittenSpan));

        var reply = new ArrayBufferWriter<byte>();
        DistCacheMessageWriter.WriteResult(reply, 1, DistCacheOperation.Add, DistCacheResult.Ok);
        Assert.Equal("001100000100000001000001000100", Hex.Of(reply.WrittenSpan));

        var empty = new ArrayBufferWriter<byte>();
        DistCacheMessageWriter.WriteEmptyResponse(empty, 0x66666666, DistCacheOperation.Get);
        Assert.Equal("0011000001666666660001010000", Hex.Of(empty.WrittenSpan));
    }

    [Theory]
    [InlineData("", AddRequestStatus.TooShort, DistCacheResult.Ok)]
    [InlineData("00000001 000000", AddRequestStatus.TooShort, DistCacheResult.Ok)]
    [InlineData("240c8401 00000001 7879", AddRequestStatus.Rejected, DistCacheResult.AddTimeoutRange)]
    [InlineData("ffffffff ffffffff", AddRequestStatus.Rejected, DistCacheResult.AddTimeoutRange)]
    [InlineData("00000001 00000002 7879", AddRequestStatus.Rejected, DistCacheResult.AddCorrupt)]
    [InlineData("00000001 ffffffff 7879", AddRequestStatus.Rejected, DistCacheResult.AddCorrupt)]
    [InlineData("00000001 00000000 7879", AddRequestStatus.Rejected, DistCacheResult.AddIdRange)]
    [InlineData("00000001 00000001 7879", AddRequestStatus.Valid, DistCacheResult.Ok)]
    [InlineData("240c8400 00000001 7879", AddRequestStatus.Valid, DistCacheResult.Ok)]
    public void AddChecksRunInTheReferenceOrder(string hex, AddRequestStatus status, DistCacheResult rejection)
    {
        var add = AddRequest.Parse(Hex.Bytes(hex));
        Assert.Equal(status, add.Status);
        if (status == AddRequestStatus.Rejected)
        {
            Assert.Equal(rejection, add.Rejection);
        }
    }

    [Fact]
    public void IdLongerThan64IsIdRangeWhenThereIsData()
    {
        var payload = new byte[8 + 65 + 1];
        AddRequest.Write(payload, 1000, new byte[65], [1]);
        var add = AddRequest.Parse(payload);
        Assert.Equal(AddRequestStatus.Rejected, add.Status);
        Assert.Equal(DistCacheResult.AddIdRange, add.Rejection);
    }
}
