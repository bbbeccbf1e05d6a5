using System.Buffers;

namespace CacheHost.Protocols.DistCache;

/// <summary>
/// Finds the next complete message at the start of a buffer (distcache §4.2). Pure and synchronous:
/// <list type="bullet">
/// <item><see cref="OperationStatus.Done"/>: <c>message</c> describes the first <c>message.WireLength</c> bytes.</item>
/// <item><see cref="OperationStatus.NeedMoreData"/>: nothing is wrong yet; consume nothing and read more.
/// A frame is only complete once all 14 + data_len bytes are present (never the reference's off-by-4, 13.1).</item>
/// <item><see cref="OperationStatus.InvalidData"/>: <c>error</c> says which rule broke. Headers are validated as soon
/// as their 14 bytes are present, so garbage is rejected without waiting for a body it announces.</item>
/// </list>
/// </summary>
public static class DistCacheMessageReader
{
    /// <summary>Attempts to read one message.</summary>
    /// <param name="buffer">Bytes received so far, starting at a message boundary.</param>
    /// <param name="expectResponse">True on a client (frames must be responses); false on a server.</param>
    /// <param name="message">The message found.</param>
    /// <param name="error">The violated rule, for InvalidData.</param>
    /// <param name="offendingHeader">The header that broke the rule, for InvalidData (e.g. to log the level).</param>
    public static OperationStatus TryRead(in ReadOnlySequence<byte> buffer, bool expectResponse, out DistCacheMessage message, out DistCacheProtocolError error, out FrameHeader offendingHeader)
    {
        message = default;
        error = DistCacheProtocolError.None;
        offendingHeader = default;

        var first = buffer.FirstSpan;
        var available = buffer.Length;
        Span<byte> scratch = stackalloc byte[DistCacheProtocol.HeaderSize];
        long offset = 0;
        var frames = 0;
        var total = 0;
        FrameHeader head = default;
        while (true)
        {
            if (available - offset < DistCacheProtocol.HeaderSize)
            {
                return OperationStatus.NeedMoreData;
            }

            scoped ReadOnlySpan<byte> headerBytes;
            if (offset + DistCacheProtocol.HeaderSize <= first.Length)
            {
                headerBytes = first.Slice((int)offset, DistCacheProtocol.HeaderSize);
            }
            else
            {
                buffer.Slice(offset, DistCacheProtocol.HeaderSize).CopyTo(scratch);
                headerBytes = scratch;
            }

            var header = FrameHeader.Read(headerBytes);
            var frameError = header.Validate(expectResponse);
            if (frameError == DistCacheProtocolError.None && frames > 0)
            {
                // Rule 6: the first frame fixes uid and operation.
                if (header.Uid != head.Uid)
                {
                    frameError = DistCacheProtocolError.UidChanged;
                }
                else if (header.Operation != head.Operation)
                {
                    frameError = DistCacheProtocolError.OperationChanged;
                }
            }

            if (frameError == DistCacheProtocolError.None && total + header.DataLength > DistCacheProtocol.MaxPayload)
            {
                // Rule 7: 16 full frames and an empty complete frame (32768) pass; a 17th frame with data does not.
                frameError = DistCacheProtocolError.PayloadTooLarge;
            }

            if (frameError != DistCacheProtocolError.None)
            {
                error = frameError;
                offendingHeader = header;
                return OperationStatus.InvalidData;
            }

            if (frames == 0)
            {
                head = header;
            }

            frames++;
            total += header.DataLength;
            var frameLength = DistCacheProtocol.HeaderSize + header.DataLength;
            if (available - offset < frameLength)
            {
                return OperationStatus.NeedMoreData;
            }

            offset += frameLength;
            if (header.Complete == 1)
            {
                message = new DistCacheMessage(head.ProtocolLevel, head.Uid, (DistCacheOperation)head.Operation, total, frames);
                return OperationStatus.Done;
            }
        }
    }
}
