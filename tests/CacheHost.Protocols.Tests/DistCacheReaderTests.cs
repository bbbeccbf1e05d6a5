using System.Buffers;
using CacheHost.Protocols.DistCache;
using CacheHost.Testing;
using Xunit;

namespace CacheHost.Protocols.Tests;

/// <summary>
/// The distcache reader against every well-formed request in the captured vectors, each presented in every
/// fragmentation the harness produces: whole, guarded, split at every offset, one byte per segment.
/// </summary>
public sealed class DistCacheReaderTests
{
    /// <summary>Distinct complete requests from the vectors (a step's bytes that form exactly one valid message).</summary>
    public static IEnumerable<object[]> Samples()
    {
        var seen = new HashSet<string>();
        foreach (var vectorCase in DistCacheVectors.ServerCases)
        {
            foreach (var step in vectorCase.Steps)
            {
                if (step.SendHex.Length == 0 || step.SendHex.Length > 2 * 5000 || !seen.Add(step.SendHex))
                {
                    continue;
                }

                var bytes = Hex.Bytes(step.SendHex);
                var sequence = new ReadOnlySequence<byte>(bytes);
                if (DistCacheMessageReader.TryRead(sequence, false, out var message, out _, out _) == OperationStatus.Done && message.WireLength == bytes.Length)
                {
                    yield return [vectorCase.Name, step.SendHex];
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Samples))]
    public void EveryFragmentationOfAMessageParsesTheSame(string caseName, string hex)
    {
        var bytes = Hex.Bytes(hex);
        Assert.Equal(OperationStatus.Done, DistCacheMessageReader.TryRead(new ReadOnlySequence<byte>(bytes), false, out var expected, out _, out _));
        var payload = new byte[expected.PayloadLength];
        expected.CopyPayloadTo(new ReadOnlySequence<byte>(bytes), payload);

        foreach (var variant in SequenceFactory.Variants(bytes))
        {
            var status = DistCacheMessageReader.TryRead(variant.Sequence, false, out var actual, out var error, out _);
            Assert.True(status == OperationStatus.Done, $"{caseName} {variant.Name}: {status} {error}");
            Assert.Equal(expected.Uid, actual.Uid);
            Assert.Equal(expected.Operation, actual.Operation);
            Assert.Equal(expected.PayloadLength, actual.PayloadLength);
            Assert.Equal(expected.FrameCount, actual.FrameCount);
            var copy = new byte[actual.PayloadLength];
            actual.CopyPayloadTo(variant.Sequence, copy);
            Assert.Equal(payload, copy);
        }
    }

    [Theory]
    [MemberData(nameof(Samples))]
    public void EveryStrictPrefixNeedsMoreData(string caseName, string hex)
    {
        var bytes = Hex.Bytes(hex);
        for (var length = 0; length < bytes.Length; length++)
        {
            // Split the prefix too, so that the header itself may straddle segments.
            var cut = length / 2;
            var prefix = SequenceFactory.Create(bytes[..cut], bytes[cut..length]);
            var status = DistCacheMessageReader.TryRead(prefix, false, out _, out var error, out _);
            Assert.True(status == OperationStatus.NeedMoreData, $"{caseName}: prefix of {length} bytes gave {status} {error}");
        }
    }

    [Fact]
    public void TwoPipelinedMessagesAreReadOneAfterTheOther()
    {
        var get = Hex.Bytes("00110000 00 00000007 00 01 01 0003 616263");
        var have = Hex.Bytes("00110000 00 00000008 00 03 01 0003 616263");
        var both = SequenceFactory.Create(get[..10], [.. get[10..], .. have[..3]], have[3..]);
        Assert.Equal(OperationStatus.Done, DistCacheMessageReader.TryRead(both, false, out var first, out _, out _));
        Assert.Equal(7u, first.Uid);
        var rest = both.Slice(first.WireLength);
        Assert.Equal(OperationStatus.Done, DistCacheMessageReader.TryRead(rest, false, out var second, out _, out _));
        Assert.Equal(8u, second.Uid);
        Assert.Equal(DistCacheOperation.Have, second.Operation);
        Assert.Equal(rest.Length, second.WireLength);
    }

    [Theory]
    [InlineData("00100000 00 00000001 00 01 01 0001 61", DistCacheProtocolError.ProtocolLevel)]
    [InlineData("47455420 2f 20485454 50 2f 31 2e30 0d0a0d0a", DistCacheProtocolError.ProtocolLevel)]
    [InlineData("00110000 02 00000001 00 01 01 0001 61", DistCacheProtocolError.InvalidIsResponse)]
    [InlineData("00110000 01 00000001 00 01 01 0001 61", DistCacheProtocolError.WrongDirection)]
    [InlineData("00110000 00 00000001 01 01 01 0001 61", DistCacheProtocolError.InvalidClass)]
    [InlineData("00110000 00 00000001 00 04 01 0001 61", DistCacheProtocolError.InvalidOperation)]
    [InlineData("00110000 00 00000001 00 01 02 0001 61", DistCacheProtocolError.InvalidComplete)]
    [InlineData("00110000 00 00000001 00 01 01 0801", DistCacheProtocolError.DataTooLong)]
    [InlineData("00110000 00 00000001 00 01 00 0064", DistCacheProtocolError.ShortContinuationFrame)]
    public void BadHeadersAreRejectedWithoutWaitingForTheBody(string hex, DistCacheProtocolError expected)
    {
        // Only the header (and maybe a little) is present: the verdict must not wait for data_len bytes.
        var bytes = Hex.Bytes(hex);
        foreach (var variant in SequenceFactory.Variants(bytes))
        {
            var status = DistCacheMessageReader.TryRead(variant.Sequence, false, out _, out var error, out _);
            Assert.Equal(OperationStatus.InvalidData, status);
            Assert.Equal(expected, error);
        }
    }

    [Fact]
    public void ContinuationFramesMustKeepUidAndOperation()
    {
        var first = Frame(false, 1, DistCacheOperation.Add, complete: false, new byte[2048]);
        var otherUid = Frame(false, 2, DistCacheOperation.Add, complete: true, [1]);
        var otherOp = Frame(false, 1, DistCacheOperation.Get, complete: true, [1]);
        Assert.Equal(OperationStatus.InvalidData, DistCacheMessageReader.TryRead(new ReadOnlySequence<byte>([.. first, .. otherUid]), false, out _, out var e1, out _));
        Assert.Equal(DistCacheProtocolError.UidChanged, e1);
        Assert.Equal(OperationStatus.InvalidData, DistCacheMessageReader.TryRead(new ReadOnlySequence<byte>([.. first, .. otherOp]), false, out _, out var e2, out _));
        Assert.Equal(DistCacheProtocolError.OperationChanged, e2);
    }

    [Fact]
    public void SixteenFullFramesAndAnEmptyCompleteFrameAreAcceptedButDataInA17thFrameIsNot()
    {
        var full = Enumerable.Range(0, 16).SelectMany(_ => Frame(false, 9, DistCacheOperation.Add, complete: false, new byte[2048])).ToArray();
        var ok = DistCacheMessageReader.TryRead(new ReadOnlySequence<byte>([.. full, .. Frame(false, 9, DistCacheOperation.Add, complete: true, [])]), false, out var message, out _, out _);
        Assert.Equal(OperationStatus.Done, ok);
        Assert.Equal(32768, message.PayloadLength);
        Assert.Equal(17, message.FrameCount);

        var bad = DistCacheMessageReader.TryRead(new ReadOnlySequence<byte>([.. full, .. Frame(false, 9, DistCacheOperation.Add, complete: true, [7])]), false, out _, out var error, out _);
        Assert.Equal(OperationStatus.InvalidData, bad);
        Assert.Equal(DistCacheProtocolError.PayloadTooLarge, error);
    }

    [Fact]
    public void ResponsesAreAcceptedOnlyWhereResponsesAreExpected()
    {
        var response = Hex.Bytes("00110000 01 00000001 00 00 01 0001 00");
        Assert.Equal(OperationStatus.Done, DistCacheMessageReader.TryRead(new ReadOnlySequence<byte>(response), true, out var message, out _, out _));
        Assert.Equal(1, message.PayloadLength);
        Assert.Equal(OperationStatus.InvalidData, DistCacheMessageReader.TryRead(new ReadOnlySequence<byte>(response), false, out _, out _, out _));
    }

    [Fact]
    public void PatchLevelIsIgnored()
    {
        var request = Hex.Bytes("0011abcd 00 00000001 00 03 01 0001 61");
        Assert.Equal(OperationStatus.Done, DistCacheMessageReader.TryRead(new ReadOnlySequence<byte>(request), false, out var message, out _, out _));
        Assert.Equal(0x0011abcdu, message.ProtocolLevel);
    }

    internal static byte[] Frame(bool response, uint uid, DistCacheOperation op, bool complete, byte[] data)
    {
        var frame = new byte[DistCacheProtocol.HeaderSize + data.Length];
        FrameHeader.Write(frame, response, uid, op, complete, data.Length);
        data.CopyTo(frame, DistCacheProtocol.HeaderSize);
        return frame;
    }
}
