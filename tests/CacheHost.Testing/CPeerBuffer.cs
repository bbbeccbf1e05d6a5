using System.Buffers.Binary;
using System.Net.Sockets;

namespace CacheHost.Testing;

/// <summary>
/// A model of how every C distcache peer (libdistcache's DC_CTX, dc_server) reads a connection, for tests that need
/// an original peer we do not have (distcache §2.2 and §13.1, known-defects.md): a 4096-byte buffer that is never
/// cleared, each read asks for exactly its free space, and a frame counts as complete once data_len + 10 bytes are
/// buffered (not data_len + 14), its data_len peeked from bytes 12..13 as soon as 6 bytes are there. A frame taken
/// with fewer than 14 + data_len bytes ("phantom") carries 1..4 stale bytes and is not consumed: the next loop takes
/// it again, with fresher bytes.
/// </summary>
public sealed class CPeerBuffer(Socket socket)
{
    /// <summary>The C peers' buffer size (distcache §2.2).</summary>
    public const int Size = 4096;

    private readonly byte[] _buffer = new byte[Size];
    private int _used;

    /// <summary>Bytes each read returned, in order (how the peer saw the stream arrive).</summary>
    public List<int> Reads { get; } = [];

    /// <summary>
    /// The next frame as the C peer judges it, reading when it thinks it needs more. Null at end of stream.
    /// <paramref name="phantom"/> is true when the frame was taken before all its bytes were there.
    /// </summary>
    public (byte[] Header, byte[] Data)? NextFrame(out bool phantom, bool readFirst = false)
    {
        phantom = false;
        while (readFirst || _used < 6 || _used < DataLength + 10)
        {
            readFirst = false;
            if (_used == Size)
            {
                throw new InvalidDataException("a full buffer without a frame (the C peer drops the connection)");
            }

            var n = socket.Receive(_buffer, _used, Size - _used, SocketFlags.None);
            if (n == 0)
            {
                return null;
            }

            Reads.Add(n);
            _used += n;
        }

        var length = DataLength;
        var header = _buffer[..14];
        var data = _buffer.AsSpan(14, Math.Min(length, Size - 14)).ToArray();
        phantom = _used < 14 + length;
        if (!phantom)
        {
            Buffer.BlockCopy(_buffer, 14 + length, _buffer, 0, _used - 14 - length);
            _used -= 14 + length;
        }

        return (header, data);
    }

    /// <summary>
    /// Reads one response the way libdistcache does (one frame after another until complete = 1) and returns its
    /// uid, operation and payload. A phantom frame ends the response with wrong data, as in the library. After a
    /// phantom the stream is out of step (the real frame's bytes are read as a new frame).
    /// </summary>
    public (uint Uid, byte Operation, byte[] Payload, bool Phantom) ReadResponse()
    {
        var payload = new List<byte>();
        var anyPhantom = false;
        while (true)
        {
            var frame = NextFrame(out var phantom) ?? throw new EndOfStreamException("the server closed the connection");
            anyPhantom |= phantom;
            if (phantom)
            {
                // The library consumes the frame it took; model that by dropping what it believed the frame to be.
                _used = 0;
            }

            payload.AddRange(frame.Data);
            if (frame.Header[11] == 1 || phantom)
            {
                return (BinaryPrimitives.ReadUInt32BigEndian(frame.Header.AsSpan(5)), frame.Header[10], [.. payload], anyPhantom);
            }
        }
    }

    /// <summary>Bytes buffered now.</summary>
    public int Buffered => _used;

    private int DataLength => BinaryPrimitives.ReadUInt16BigEndian(_buffer.AsSpan(12));
}
