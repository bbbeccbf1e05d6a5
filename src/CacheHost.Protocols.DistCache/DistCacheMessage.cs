using System.Buffers;

namespace CacheHost.Protocols.DistCache;

/// <summary>
/// A complete, validated message found at the start of a buffer: one request or response of 1..17 frames
/// sharing uid and operation (distcache §4). It does not own bytes; use it with the buffer it was read from.
/// </summary>
public readonly struct DistCacheMessage
{
    /// <summary>Creates a message descriptor.</summary>
    public DistCacheMessage(uint protocolLevel, uint uid, DistCacheOperation operation, int payloadLength, int frameCount)
    {
        ProtocolLevel = protocolLevel;
        Uid = uid;
        Operation = operation;
        PayloadLength = payloadLength;
        FrameCount = frameCount;
    }

    /// <summary>proto_level of the first frame.</summary>
    public uint ProtocolLevel { get; }

    /// <summary>request_uid shared by all frames.</summary>
    public uint Uid { get; }

    /// <summary>Operation shared by all frames.</summary>
    public DistCacheOperation Operation { get; }

    /// <summary>Total data bytes over all frames.</summary>
    public int PayloadLength { get; }

    /// <summary>Number of frames (an empty trailing complete frame counts).</summary>
    public int FrameCount { get; }

    /// <summary>Bytes the message occupies on the wire.</summary>
    public int WireLength => (FrameCount * DistCacheProtocol.HeaderSize) + PayloadLength;

    /// <summary>
    /// Copies the payload out of <paramref name="message"/> (which starts at the message's first byte) into
    /// <paramref name="destination"/>, skipping the frame headers. Every frame but the last carries exactly
    /// 2048 bytes (distcache §4.2 rule 5), so frame boundaries follow from the payload length.
    /// </summary>
    public void CopyPayloadTo(in ReadOnlySequence<byte> message, Span<byte> destination)
    {
        if (FrameCount == 1)
        {
            message.Slice(DistCacheProtocol.HeaderSize, PayloadLength).CopyTo(destination);
            return;
        }

        var source = message;
        var written = 0;
        for (var frame = 0; frame < FrameCount; frame++)
        {
            var chunk = frame < FrameCount - 1
                ? DistCacheProtocol.MaxFrameData
                : PayloadLength - (DistCacheProtocol.MaxFrameData * (FrameCount - 1));
            source.Slice(DistCacheProtocol.HeaderSize, chunk).CopyTo(destination[written..]);
            written += chunk;
            source = source.Slice(DistCacheProtocol.HeaderSize + chunk);
        }
    }

    /// <summary>The payload of a single-frame message as a slice of <paramref name="message"/>.</summary>
    public ReadOnlySequence<byte> SingleFramePayload(in ReadOnlySequence<byte> message) =>
        message.Slice(DistCacheProtocol.HeaderSize, PayloadLength);
}
