using System.Buffers.Binary;

namespace CacheHost.Protocols.DistCache;

/// <summary>How an ADD payload was judged (distcache §5.1, checks 0-4 in order).</summary>
public enum AddRequestStatus : byte
{
    /// <summary>Well formed: go on to the duplicate check and store.</summary>
    Valid,
    /// <summary>Payload shorter than 8 bytes: no response, close the connection (check 0).</summary>
    TooShort,
    /// <summary>Answer with the one-byte <see cref="AddRequest.Rejection"/> (checks 1-4).</summary>
    Rejected,
}

/// <summary>
/// An ADD request payload: timeout_ms(u32 BE) id_len(u32 BE) id data (distcache §5.1). Parsing applies the
/// server's checks in the reference's exact order, so the first failing check decides the result byte.
/// </summary>
public readonly ref struct AddRequest
{
    private AddRequest(AddRequestStatus status, DistCacheResult rejection, uint timeoutMs, ReadOnlySpan<byte> id, ReadOnlySpan<byte> data)
    {
        Status = status;
        Rejection = rejection;
        TimeoutMs = timeoutMs;
        Id = id;
        Data = data;
    }

    /// <summary>The verdict.</summary>
    public AddRequestStatus Status { get; }

    /// <summary>The result byte when <see cref="Status"/> is Rejected.</summary>
    public DistCacheResult Rejection { get; }

    /// <summary>Timeout in milliseconds (the header comment of the reference says seconds; the code uses ms, 13.6).</summary>
    public uint TimeoutMs { get; }

    /// <summary>Session id.</summary>
    public ReadOnlySpan<byte> Id { get; }

    /// <summary>Session data.</summary>
    public ReadOnlySpan<byte> Data { get; }

    /// <summary>Parses and checks an ADD payload.</summary>
    public static AddRequest Parse(ReadOnlySpan<byte> payload)
    {
        // 0: shorter than the 8-byte prefix.
        if (payload.Length < DistCacheProtocol.AddPrefixSize)
        {
            return new AddRequest(AddRequestStatus.TooShort, default, 0, default, default);
        }

        var timeout = BinaryPrimitives.ReadUInt32BigEndian(payload);
        var idLength = BinaryPrimitives.ReadUInt32BigEndian(payload[4..]);
        var remaining = payload.Length - DistCacheProtocol.AddPrefixSize;

        // 1: timeout above 7 days.
        if (timeout > DistCacheProtocol.MaxTimeoutMs)
        {
            return Reject(DistCacheResult.AddTimeoutRange);
        }

        // 2: no room for at least one data byte after the id (includes id_len larger than the payload).
        if (idLength >= (uint)remaining)
        {
            return Reject(DistCacheResult.AddCorrupt);
        }

        // 3: id length 0 or above 64.
        if (idLength == 0 || idLength > DistCacheProtocol.MaxIdLength)
        {
            return Reject(DistCacheResult.AddIdRange);
        }

        var id = payload.Slice(DistCacheProtocol.AddPrefixSize, (int)idLength);
        var data = payload[(DistCacheProtocol.AddPrefixSize + (int)idLength)..];

        // 4: data length 0 or above 32768; unreachable after check 2 and the payload cap, kept for the order.
        if (data.Length == 0 || data.Length > DistCacheProtocol.MaxPayload)
        {
            return Reject(DistCacheResult.AddDataRange);
        }

        return new AddRequest(AddRequestStatus.Valid, DistCacheResult.Ok, timeout, id, data);
    }

    /// <summary>Writes an ADD payload (for clients and tools).</summary>
    public static int Write(Span<byte> destination, uint timeoutMs, ReadOnlySpan<byte> id, ReadOnlySpan<byte> data)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, timeoutMs);
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], (uint)id.Length);
        id.CopyTo(destination[DistCacheProtocol.AddPrefixSize..]);
        data.CopyTo(destination[(DistCacheProtocol.AddPrefixSize + id.Length)..]);
        return DistCacheProtocol.AddPrefixSize + id.Length + data.Length;
    }

    private static AddRequest Reject(DistCacheResult result) => new(AddRequestStatus.Rejected, result, 0, default, default);
}
