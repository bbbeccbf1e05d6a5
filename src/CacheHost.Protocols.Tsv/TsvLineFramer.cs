using System.Buffers;

namespace CacheHost.Protocols.Tsv;

/// <summary>Outcome of one framing attempt.</summary>
public enum TsvLineStatus
{
    /// <summary>No complete line yet; keep the bytes and read more.</summary>
    NeedMoreData,
    /// <summary>A complete line (without its LF) was taken from the buffer.</summary>
    Line,
    /// <summary>
    /// A line exceeded the maximum length. Its bytes are being discarded up to the next LF; this status is
    /// reported once per overlong line (daemonproxy §3.2 rule 1).
    /// </summary>
    Overlong,
}

/// <summary>
/// LF framing with a hard line limit (daemonproxy §3.1: at most 1023 bytes before the LF).
/// A line that is still incomplete at the limit is reported as <see cref="TsvLineStatus.Overlong"/> at once
/// and then discarded up to its LF, so a peer can never make us buffer more than the limit.
/// A CR before the LF is kept as data, as in the reference.
/// </summary>
public struct TsvLineFramer
{
    /// <summary>The reference's maximum command length (receive buffer 1024 incl. LF).</summary>
    public const int DefaultMaxLineLength = 1023;

    private readonly int _maxLineLength;
    private bool _discarding;

    /// <summary>Creates a framer with the given limit (bytes, LF excluded).</summary>
    public TsvLineFramer(int maxLineLength)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLineLength, 1);
        _maxLineLength = maxLineLength;
        _discarding = false;
    }

    /// <summary>The line limit in bytes.</summary>
    public readonly int MaxLineLength => _maxLineLength == 0 ? DefaultMaxLineLength : _maxLineLength;

    /// <summary>
    /// Takes the next line from <paramref name="buffer"/> (which is advanced past what was consumed).
    /// For <see cref="TsvLineStatus.Overlong"/>, <paramref name="overlongIsComment"/> tells whether the line
    /// started with '#', which the reference ignores silently.
    /// </summary>
    public TsvLineStatus TryReadLine(ref ReadOnlySequence<byte> buffer, out ReadOnlySequence<byte> line, out bool overlongIsComment)
    {
        line = default;
        overlongIsComment = false;
        var max = MaxLineLength;
        while (_discarding)
        {
            var lf = buffer.PositionOf((byte)'\n');
            if (lf is null)
            {
                buffer = buffer.Slice(buffer.End);
                return TsvLineStatus.NeedMoreData;
            }

            buffer = buffer.Slice(buffer.GetPosition(1, lf.Value));
            _discarding = false;
        }

        // Only look as far as the limit allows: a longer line is overlong whatever follows.
        var window = buffer.Length > max + 1 ? buffer.Slice(0, max + 1) : buffer;
        var position = window.PositionOf((byte)'\n');
        if (position is not null)
        {
            line = buffer.Slice(0, position.Value);
            buffer = buffer.Slice(buffer.GetPosition(1, position.Value));
            return TsvLineStatus.Line;
        }

        if (buffer.Length <= max)
        {
            return TsvLineStatus.NeedMoreData;
        }

        overlongIsComment = buffer.FirstSpan[0] == (byte)'#';
        _discarding = true;
        // Discard what we have of it now; the rest goes when the LF arrives.
        var rest = buffer.Slice(max + 1);
        var lfInRest = rest.PositionOf((byte)'\n');
        if (lfInRest is not null)
        {
            buffer = rest.Slice(rest.GetPosition(1, lfInRest.Value));
            _discarding = false;
        }
        else
        {
            buffer = buffer.Slice(buffer.End);
        }

        return TsvLineStatus.Overlong;
    }
}
