using System.Buffers;

namespace CacheHost.Protocols.DistCache;

/// <summary>
/// Encodes messages with the reference's fragmentation (distcache §4.1): chunks of 2048 bytes, every chunk but the
/// last with complete = 0, an empty payload as one empty complete frame, and no trailing empty frame after a
/// payload that is a multiple of 2048. Writes go straight into the caller's buffer writer (a PipeWriter), so
/// a whole message, or a whole batch of replies, leaves in one flush.
/// </summary>
public static class DistCacheMessageWriter
{
    /// <summary>Writes a message whose payload is contiguous.</summary>
    public static void Write(IBufferWriter<byte> writer, bool isResponse, uint uid, DistCacheOperation operation, ReadOnlySpan<byte> payload)
    {
        if (payload.Length > DistCacheProtocol.MaxPayload)
        {
            ThrowPayloadTooLarge(payload.Length);
        }

        WriteFrames(writer, isResponse, uid, operation, payload, 0, payload.Length);
    }

    /// <summary>
    /// Writes every frame of the message but the last (nothing for a one-frame message); <see cref="WriteFinalFrame"/>
    /// writes the rest. For senders that let the frames leave in two writes (distcache §13.1, C readers).
    /// </summary>
    public static void WriteLeadingFrames(IBufferWriter<byte> writer, bool isResponse, uint uid, DistCacheOperation operation, ReadOnlySpan<byte> payload)
    {
        if (payload.Length > DistCacheProtocol.MaxPayload)
        {
            ThrowPayloadTooLarge(payload.Length);
        }

        var leading = payload.Length - DistCacheProtocol.FinalFrameData(payload.Length);
        if (leading > 0)
        {
            WriteFrames(writer, isResponse, uid, operation, payload, 0, leading);
        }
    }

    /// <summary>Writes the last frame of a message whose payload ends with <paramref name="finalData"/> (complete = 1).</summary>
    public static void WriteFinalFrame(IBufferWriter<byte> writer, bool isResponse, uint uid, DistCacheOperation operation, ReadOnlySpan<byte> finalData) =>
        WriteFrames(writer, isResponse, uid, operation, finalData, 0, finalData.Length);

    /// <summary>Frames for payload[from..to); the frame ending at payload.Length is the complete one.</summary>
    private static void WriteFrames(IBufferWriter<byte> writer, bool isResponse, uint uid, DistCacheOperation operation, ReadOnlySpan<byte> payload, int from, int to)
    {
        var offset = from;
        do
        {
            var chunk = Math.Min(to - offset, DistCacheProtocol.MaxFrameData);
            var complete = offset + chunk == payload.Length;
            var span = writer.GetSpan(DistCacheProtocol.HeaderSize + chunk);
            FrameHeader.Write(span, isResponse, uid, operation, complete, chunk);
            payload.Slice(offset, chunk).CopyTo(span[DistCacheProtocol.HeaderSize..]);
            writer.Advance(DistCacheProtocol.HeaderSize + chunk);
            offset += chunk;
        }
        while (offset < to);
    }

    /// <summary>Writes a message whose payload is a (possibly multi-segment) sequence, e.g. when forwarding.</summary>
    public static void Write(IBufferWriter<byte> writer, bool isResponse, uint uid, DistCacheOperation operation, in ReadOnlySequence<byte> payload)
    {
        if (payload.IsSingleSegment)
        {
            Write(writer, isResponse, uid, operation, payload.FirstSpan);
            return;
        }

        if (payload.Length > DistCacheProtocol.MaxPayload)
        {
            ThrowPayloadTooLarge((int)payload.Length);
        }

        var rest = payload;
        do
        {
            var chunk = (int)Math.Min(rest.Length, DistCacheProtocol.MaxFrameData);
            var complete = chunk == rest.Length;
            var span = writer.GetSpan(DistCacheProtocol.HeaderSize + chunk);
            FrameHeader.Write(span, isResponse, uid, operation, complete, chunk);
            rest.Slice(0, chunk).CopyTo(span[DistCacheProtocol.HeaderSize..]);
            writer.Advance(DistCacheProtocol.HeaderSize + chunk);
            rest = rest.Slice(chunk);
        }
        while (!rest.IsEmpty);
    }

    /// <summary>Writes a response whose payload is one result byte (15 bytes on the wire).</summary>
    public static void WriteResult(IBufferWriter<byte> writer, uint uid, DistCacheOperation operation, DistCacheResult result)
    {
        var span = writer.GetSpan(DistCacheProtocol.HeaderSize + 1);
        FrameHeader.Write(span, isResponse: true, uid, operation, complete: true, dataLength: 1);
        span[DistCacheProtocol.HeaderSize] = (byte)result;
        writer.Advance(DistCacheProtocol.HeaderSize + 1);
    }

    /// <summary>Writes a response with an empty payload (the proxy's "no server" answer, distcache §10.4).</summary>
    public static void WriteEmptyResponse(IBufferWriter<byte> writer, uint uid, DistCacheOperation operation)
    {
        var span = writer.GetSpan(DistCacheProtocol.HeaderSize);
        FrameHeader.Write(span, isResponse: true, uid, operation, complete: true, dataLength: 0);
        writer.Advance(DistCacheProtocol.HeaderSize);
    }

    private static void ThrowPayloadTooLarge(int length) =>
        throw new ArgumentOutOfRangeException(nameof(length), length, $"a distcache payload is at most {DistCacheProtocol.MaxPayload} bytes");
}
