using System.Buffers;
using System.Text;

namespace CacheHost.Protocols.Clacks;

/// <summary>Outcome of one <see cref="ClacksLineFramer.TryReadLine"/> call.</summary>
public enum ClacksFrameStatus
{
    /// <summary>No complete line in the buffer yet (short input).</summary>
    NeedMoreData,
    /// <summary>A complete line (CR bytes removed) was read.</summary>
    Line,
    /// <summary>
    /// The line being received exceeds the limit (bad input). Reported once per offending line; the
    /// rest of it up to the next LF is discarded silently.
    /// </summary>
    Overlong,
}

/// <summary>
/// LF framing of the Clacks protocol (clacks §2.2): lines end at LF, every CR byte anywhere is dropped, empty
/// lines are skipped. Lines are returned as Latin-1 strings so that every byte maps to exactly one char:
/// payloads are opaque octets (UTF-8 or not) and round-trip exactly, and ordinal string order equals
/// bytewise order (clacks §8.5). The reference has no line limit; ours is explicit (<see cref="MaxLineBytes"/>).
/// </summary>
/// <remarks>
/// Scan state (as StackExchange.Redis's RespScanState): while a line is incomplete the framer remembers how many
/// bytes at the start of the buffer it already searched for LF, and the next call searches only what arrived
/// since. A long line received in many reads therefore costs linear time, not quadratic. This requires the caller
/// to hand back the same unconsumed bytes after <see cref="ClacksFrameStatus.NeedMoreData"/> (the usual
/// <c>AdvanceTo(buffer.Start, buffer.End)</c>), with new bytes appended.
/// </remarks>
public sealed class ClacksLineFramer
{
    /// <summary>Default line limit: 16 MiB, the generous cap clacks §2.2 recommends.</summary>
    public const int DefaultMaxLineBytes = 16 * 1024 * 1024;

    private bool _discarding;
    private long _scanned;

    /// <summary>Creates a framer with a line limit in bytes (LF and CR bytes excluded).</summary>
    public ClacksLineFramer(int maxLineBytes = DefaultMaxLineBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLineBytes, 16);
        MaxLineBytes = maxLineBytes;
    }

    /// <summary>Longest accepted line in bytes (before CR removal).</summary>
    public int MaxLineBytes { get; }

    /// <summary>Bytes searched for LF so far, over the framer's life (each byte once; for tests and stats).</summary>
    public long ScannedBytes { get; private set; }

    /// <summary>
    /// Reads the next line from <paramref name="buffer"/>, advancing it past consumed bytes. Empty lines
    /// (after CR removal) are skipped.
    /// </summary>
    public ClacksFrameStatus TryReadLine(ref ReadOnlySequence<byte> buffer, out string line) => TryReadLine(ref buffer, MaxLineBytes, out line);

    /// <summary>
    /// As <see cref="TryReadLine(ref ReadOnlySequence{byte}, out string)"/> with a lower limit for this call
    /// (e.g. before login); <paramref name="limit"/> is capped at <see cref="MaxLineBytes"/>.
    /// </summary>
    public ClacksFrameStatus TryReadLine(ref ReadOnlySequence<byte> buffer, int limit, out string line)
    {
        limit = Math.Min(limit, MaxLineBytes);
        line = string.Empty;
        while (true)
        {
            var start = Math.Min(_scanned, buffer.Length);
            var unscanned = buffer.Slice(start);
            var lf = unscanned.PositionOf((byte)'\n');
            if (lf is null)
            {
                ScannedBytes += unscanned.Length;
                _scanned = buffer.Length;
                if (buffer.Length > limit)
                {
                    buffer = buffer.Slice(buffer.End);
                    _scanned = 0;
                    if (!_discarding)
                    {
                        _discarding = true;
                        return ClacksFrameStatus.Overlong;
                    }
                }

                return ClacksFrameStatus.NeedMoreData;
            }

            ScannedBytes += unscanned.Slice(0, lf.Value).Length + 1;
            _scanned = 0;
            var raw = buffer.Slice(0, lf.Value);
            buffer = buffer.Slice(buffer.GetPosition(1, lf.Value));
            if (_discarding)
            {
                // Tail of an overlong line, already reported.
                _discarding = false;
                continue;
            }

            if (raw.Length > limit)
            {
                return ClacksFrameStatus.Overlong;
            }

            line = Decode(raw);
            if (line.Length == 0)
            {
                continue;
            }

            return ClacksFrameStatus.Line;
        }
    }

    private static string Decode(ReadOnlySequence<byte> raw)
    {
        if (raw.IsEmpty)
        {
            return string.Empty;
        }

        var length = (int)raw.Length;
        var crs = 0;
        foreach (var segment in raw)
        {
            crs += segment.Span.Count((byte)'\r');
        }

        if (crs == 0)
        {
            return raw.IsSingleSegment ? Encoding.Latin1.GetString(raw.FirstSpan) : Encoding.Latin1.GetString(raw.ToArray());
        }

        return string.Create(length - crs, raw, static (chars, seq) =>
        {
            var i = 0;
            foreach (var segment in seq)
            {
                foreach (var b in segment.Span)
                {
                    if (b != (byte)'\r')
                    {
                        chars[i++] = (char)b;
                    }
                }
            }
        });
    }
}
