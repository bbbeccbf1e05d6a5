using System.Buffers.Binary;
using System.Security.Cryptography;
using CacheHost.Core;
using CacheHost.Protocols.DistCache;

namespace CacheHost.Roles.CacheServer.Storage;

/// <summary>
/// The memory store's sessions on disk, so that they survive a restart (issue 17; <c>CacheServer:SnapshotPath</c>).
/// Written with <see cref="DurableFile"/> (temporary file, fsync, rename, fsync of the directory): a kill at any
/// moment leaves the previous snapshot complete. Format, all integers big-endian:
/// <code>
/// "CacheHost session snapshot 1\n"   magic and format version (29 bytes)
/// int64  written at, Unix time in ms (wall clock: a monotonic timestamp means nothing to the next process)
/// per session: uint8 1, uint8 id length (0..64), uint16 data length (0..32768), uint32 lifetime left in ms, id, data
/// uint8 0, uint64 number of sessions, 32 bytes SHA-256 of everything before it
/// </code>
/// On load each session's lifetime is reduced by the time the file spent on disk; what expired meanwhile is
/// dropped. A file that is not one of these, or is one cut short or altered, is rejected as a whole (checked
/// before anything reaches the store), never half loaded.
/// </summary>
public static class SessionSnapshot
{
    private const int BufferSize = 1 << 16;
    private const int RecordHeaderSize = 8;

    /// <summary>The first bytes of every snapshot.</summary>
    public static ReadOnlySpan<byte> Magic => "CacheHost session snapshot 1\n"u8;

    /// <summary>Writes every live session of <paramref name="store"/> to <paramref name="path"/>; returns how many.</summary>
    public static long Write(SessionStore store, string path, TimeProvider clock)
    {
        long count = 0;
        DurableFile.Replace(path, stream =>
        {
            using var output = new HashingWriter(stream);
            output.Write(Magic);
            Span<byte> header = stackalloc byte[RecordHeaderSize];
            BinaryPrimitives.WriteInt64BigEndian(header, clock.GetUtcNow().ToUnixTimeMilliseconds());
            output.Write(header);
            var visitor = new RecordWriter(output);
            count = store.VisitLive(store.Now, ref visitor);
            header[0] = 0;
            output.Write(header[..1]);
            BinaryPrimitives.WriteUInt64BigEndian(header, (ulong)count);
            output.Write(header);
            output.Finish();
        });
        return count;
    }

    /// <summary>
    /// Loads <paramref name="path"/> into <paramref name="store"/>: first checks the whole file, then adds every
    /// session that has lifetime left. Throws <see cref="InvalidDataException"/> (nothing loaded) for a foreign,
    /// damaged or truncated file, and the usual I/O exceptions for a file that cannot be read.
    /// </summary>
    public static SnapshotLoad Load(SessionStore store, string path, TimeProvider clock)
    {
        _ = Read(path, store: null, clock); // the whole file must be sound before the store sees any of it
        return Read(path, store, clock);
    }

    private static SnapshotLoad Read(string path, SessionStore? store, TimeProvider clock)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, BufferSize, FileOptions.SequentialScan);
        using var input = new HashingReader(stream);
        Span<byte> magic = stackalloc byte[Magic.Length];
        if (!input.TryRead(magic) || !magic.SequenceEqual(Magic))
        {
            throw new InvalidDataException("not a CacheHost session snapshot (foreign file or another format version)");
        }

        Span<byte> header = stackalloc byte[RecordHeaderSize];
        input.Read(header);
        var writtenAt = BinaryPrimitives.ReadInt64BigEndian(header);
        var downtime = (ulong)Math.Max(0, clock.GetUtcNow().ToUnixTimeMilliseconds() - writtenAt);
        var now = store?.Now ?? 0;
        var buffer = new byte[DistCacheProtocol.MaxIdLength + DistCacheProtocol.MaxPayload];
        long sessions = 0, loaded = 0, expired = 0;
        while (true)
        {
            input.Read(header[..1]);
            if (header[0] == 0)
            {
                break;
            }

            if (header[0] != 1)
            {
                throw new InvalidDataException($"damaged: unknown record kind {header[0]} after {sessions} sessions");
            }

            input.Read(header[1..]);
            var idLength = header[1];
            var dataLength = BinaryPrimitives.ReadUInt16BigEndian(header[2..]);
            var remainingMs = BinaryPrimitives.ReadUInt32BigEndian(header[4..]);
            if (idLength > DistCacheProtocol.MaxIdLength || dataLength > DistCacheProtocol.MaxPayload)
            {
                throw new InvalidDataException($"damaged: session {sessions} has a {idLength}-byte id and {dataLength} bytes of data");
            }

            var record = buffer.AsSpan(0, idLength + dataLength);
            input.Read(record);
            sessions++;
            if (remainingMs <= downtime)
            {
                expired++;
            }
            else if (store is not null)
            {
                store.Add(record[..idLength], record[idLength..], (uint)(remainingMs - downtime), now);
                loaded++;
            }
        }

        input.Read(header);
        if (BinaryPrimitives.ReadUInt64BigEndian(header) != (ulong)sessions)
        {
            throw new InvalidDataException($"damaged: {sessions} sessions read, the trailer says {BinaryPrimitives.ReadUInt64BigEndian(header)}");
        }

        input.VerifyHash();
        return new SnapshotLoad(loaded, expired, writtenAt);
    }

    /// <summary>Writes one record per session visited.</summary>
    private readonly struct RecordWriter(HashingWriter output) : ISessionVisitor
    {
        public void Visit(ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, uint remainingMs)
        {
            Span<byte> header = stackalloc byte[RecordHeaderSize];
            header[0] = 1;
            header[1] = (byte)id.Length;
            BinaryPrimitives.WriteUInt16BigEndian(header[2..], (ushort)data.Length);
            BinaryPrimitives.WriteUInt32BigEndian(header[4..], remainingMs);
            output.Write(header);
            output.Write(id);
            output.Write(data);
        }
    }

    /// <summary>Buffers writes to the file and hashes everything written.</summary>
    private sealed class HashingWriter(Stream stream) : IDisposable
    {
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        private readonly byte[] _buffer = new byte[BufferSize];
        private int _used;

        public void Write(ReadOnlySpan<byte> bytes)
        {
            _hash.AppendData(bytes);
            while (!bytes.IsEmpty)
            {
                var n = Math.Min(bytes.Length, _buffer.Length - _used);
                bytes[..n].CopyTo(_buffer.AsSpan(_used));
                _used += n;
                bytes = bytes[n..];
                if (_used == _buffer.Length)
                {
                    stream.Write(_buffer);
                    _used = 0;
                }
            }
        }

        /// <summary>Appends the hash of everything written and flushes.</summary>
        public void Finish()
        {
            Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
            _hash.GetHashAndReset(hash);
            stream.Write(_buffer.AsSpan(0, _used));
            stream.Write(hash);
            _used = 0;
        }

        public void Dispose() => _hash.Dispose();
    }

    /// <summary>Reads exactly what is asked for (a short file is damaged) and hashes everything read.</summary>
    private sealed class HashingReader(Stream stream) : IDisposable
    {
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

        public bool TryRead(Span<byte> destination)
        {
            if (stream.ReadAtLeast(destination, destination.Length, throwOnEndOfStream: false) < destination.Length)
            {
                return false;
            }

            _hash.AppendData(destination);
            return true;
        }

        public void Read(Span<byte> destination)
        {
            if (!TryRead(destination))
            {
                throw new InvalidDataException("damaged: the file ends early (truncated)");
            }
        }

        public void VerifyHash()
        {
            Span<byte> expected = stackalloc byte[SHA256.HashSizeInBytes];
            _hash.GetHashAndReset(expected);
            Span<byte> stored = stackalloc byte[SHA256.HashSizeInBytes + 1];
            var read = stream.ReadAtLeast(stored, stored.Length, throwOnEndOfStream: false);
            if (read < SHA256.HashSizeInBytes)
            {
                throw new InvalidDataException("damaged: the file ends early (truncated)");
            }

            if (read > SHA256.HashSizeInBytes)
            {
                throw new InvalidDataException("damaged: bytes after the end of the snapshot");
            }

            if (!stored[..SHA256.HashSizeInBytes].SequenceEqual(expected))
            {
                throw new InvalidDataException("damaged: checksum mismatch");
            }
        }

        public void Dispose() => _hash.Dispose();
    }
}

/// <summary>What <see cref="SessionSnapshot.Load"/> found: sessions loaded, sessions that expired while the file lay on disk, and when it was written (Unix ms).</summary>
public readonly record struct SnapshotLoad(long Loaded, long Expired, long WrittenAtUnixMs);
