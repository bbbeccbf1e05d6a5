using System.Buffers.Binary;

namespace CacheHost.Protocols.DistCache;

/// <summary>
/// The 14-byte frame header, big-endian, packed (distcache §3):
/// <code>
/// offset 0  u32 proto_level   0x0011xxxx (high 16 bits = version)
/// offset 4  u8  is_response   0 request, 1 response
/// offset 5  u32 request_uid   chosen by the requester, echoed in every response frame
/// offset 9  u8  op_class      0
/// offset 10 u8  operation     0 ADD, 1 GET, 2 REMOVE, 3 HAVE
/// offset 11 u8  complete      1 = last frame of the message
/// offset 12 u16 data_len      0..2048 (exactly 2048 when complete = 0)
/// </code>
/// Fields are kept raw so that validation can report exactly what was wrong.
/// </summary>
public readonly struct FrameHeader
{
    /// <summary>Creates a header from raw field values.</summary>
    public FrameHeader(uint protocolLevel, byte isResponse, uint uid, byte opClass, byte operation, byte complete, ushort dataLength)
    {
        ProtocolLevel = protocolLevel;
        IsResponse = isResponse;
        Uid = uid;
        OpClass = opClass;
        Operation = operation;
        Complete = complete;
        DataLength = dataLength;
    }

    /// <summary>Raw proto_level.</summary>
    public uint ProtocolLevel { get; }

    /// <summary>Raw is_response byte.</summary>
    public byte IsResponse { get; }

    /// <summary>request_uid.</summary>
    public uint Uid { get; }

    /// <summary>Raw op_class byte.</summary>
    public byte OpClass { get; }

    /// <summary>Raw operation byte.</summary>
    public byte Operation { get; }

    /// <summary>Raw complete byte.</summary>
    public byte Complete { get; }

    /// <summary>data_len.</summary>
    public ushort DataLength { get; }

    /// <summary>Decodes a header from the first 14 bytes of <paramref name="source"/>.</summary>
    public static FrameHeader Read(ReadOnlySpan<byte> source)
    {
        _ = source[DistCacheProtocol.HeaderSize - 1];
        return new FrameHeader(
            BinaryPrimitives.ReadUInt32BigEndian(source),
            source[4],
            BinaryPrimitives.ReadUInt32BigEndian(source[5..]),
            source[9],
            source[10],
            source[11],
            BinaryPrimitives.ReadUInt16BigEndian(source[12..]));
    }

    /// <summary>Encodes a header into the first 14 bytes of <paramref name="destination"/>.</summary>
    public static void Write(Span<byte> destination, bool isResponse, uint uid, DistCacheOperation operation, bool complete, int dataLength)
    {
        _ = destination[DistCacheProtocol.HeaderSize - 1];
        BinaryPrimitives.WriteUInt32BigEndian(destination, DistCacheProtocol.ProtocolLevel);
        destination[4] = isResponse ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteUInt32BigEndian(destination[5..], uid);
        destination[9] = 0;
        destination[10] = (byte)operation;
        destination[11] = complete ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteUInt16BigEndian(destination[12..], (ushort)dataLength);
    }

    /// <summary>
    /// Applies the per-frame rules of distcache §4.2 (1-5). <paramref name="expectResponse"/> is true on the client
    /// side of a connection (frames must be responses) and false on the server side.
    /// </summary>
    public DistCacheProtocolError Validate(bool expectResponse)
    {
        if (ProtocolLevel >> 16 != DistCacheProtocol.ProtocolVersion)
        {
            return DistCacheProtocolError.ProtocolLevel;
        }

        if (IsResponse > 1)
        {
            return DistCacheProtocolError.InvalidIsResponse;
        }

        if ((IsResponse == 1) != expectResponse)
        {
            return DistCacheProtocolError.WrongDirection;
        }

        if (OpClass != 0)
        {
            return DistCacheProtocolError.InvalidClass;
        }

        if (Operation > (byte)DistCacheOperation.Have)
        {
            return DistCacheProtocolError.InvalidOperation;
        }

        if (Complete > 1)
        {
            return DistCacheProtocolError.InvalidComplete;
        }

        if (DataLength > DistCacheProtocol.MaxFrameData)
        {
            return DistCacheProtocolError.DataTooLong;
        }

        if (Complete == 0 && DataLength != DistCacheProtocol.MaxFrameData)
        {
            return DistCacheProtocolError.ShortContinuationFrame;
        }

        return DistCacheProtocolError.None;
    }
}
