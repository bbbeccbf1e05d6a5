namespace CacheHost.Protocols.Clacks;

/// <summary>OVERHEAD flag letters (clacks §6.1). Unknown letters are ignored.</summary>
[Flags]
public enum OverheadFlags
{
    None = 0,
    /// <summary>A: auth token.</summary>
    Auth = 1 << 0,
    /// <summary>C: close all connections.</summary>
    CloseAll = 1 << 1,
    /// <summary>D: discard (log only).</summary>
    Discard = 1 << 2,
    /// <summary>E: error text.</summary>
    Error = 1 << 3,
    /// <summary>F: auth failed.</summary>
    AuthFailed = 1 << 4,
    /// <summary>G: forward to everybody.</summary>
    Forward = 1 << 5,
    /// <summary>I: interclacks mode.</summary>
    Interclacks = 1 << 6,
    /// <summary>L: lock for sync.</summary>
    Lock = 1 << 7,
    /// <summary>M: informal message.</summary>
    Message = 1 << 8,
    /// <summary>N: no logging (not mirrored to monitors).</summary>
    NoLogging = 1 << 9,
    /// <summary>O: auth ok.</summary>
    AuthOk = 1 << 10,
    /// <summary>S: shutdown after value seconds.</summary>
    Shutdown = 1 << 11,
    /// <summary>T: sender's clock.</summary>
    Timestamp = 1 << 12,
    /// <summary>U: return to sender (with G).</summary>
    ReturnToSender = 1 << 13,
    /// <summary>Z: placeholder for "no flags".</summary>
    NoFlags = 1 << 14,
}

/// <summary>A parsed <c>OVERHEAD &lt;flags&gt; &lt;value&gt;</c> line (clacks §6.1).</summary>
public readonly record struct OverheadLine(OverheadFlags Flags, string Value)
{
    // Alphabetical order is the order re-broadcast flags are written in (clacks §6.2).
    private static readonly (char Letter, OverheadFlags Flag)[] Letters =
    [
        ('A', OverheadFlags.Auth), ('C', OverheadFlags.CloseAll), ('D', OverheadFlags.Discard), ('E', OverheadFlags.Error),
        ('F', OverheadFlags.AuthFailed), ('G', OverheadFlags.Forward), ('I', OverheadFlags.Interclacks), ('L', OverheadFlags.Lock),
        ('M', OverheadFlags.Message), ('N', OverheadFlags.NoLogging), ('O', OverheadFlags.AuthOk), ('S', OverheadFlags.Shutdown),
        ('T', OverheadFlags.Timestamp), ('U', OverheadFlags.ReturnToSender), ('Z', OverheadFlags.NoFlags),
    ];

    /// <summary>True if the flag is set.</summary>
    public bool Has(OverheadFlags flag) => (Flags & flag) != 0;

    /// <summary>
    /// Parses <c>OVERHEAD &lt;flags&gt; &lt;value&gt;</c>: flags up to the first space (at least one char),
    /// value the non-empty rest. <c>OVERHEAD X</c> without a value does not match.
    /// </summary>
    public static bool TryParse(string line, out OverheadLine overhead)
    {
        overhead = default;
        const string prefix = "OVERHEAD ";
        if (!line.StartsWith(prefix, StringComparison.Ordinal))
        {
            return false;
        }

        var space = line.IndexOf(' ', prefix.Length + 1);
        if (space < 0 || space == line.Length - 1)
        {
            return false;
        }

        var flags = OverheadFlags.None;
        foreach (var c in line.AsSpan(prefix.Length, space - prefix.Length))
        {
            flags |= FlagOf(c);
        }

        overhead = new OverheadLine(flags, line[(space + 1)..]);
        return true;
    }

    /// <summary>Perl truthiness of the value: "" and "0" are false (clacks §6.1).</summary>
    public bool ValueIsTrue => Value.Length > 0 && Value != "0";

    /// <summary>
    /// Flags of the re-broadcast line (clacks §6.2): U always dropped, G and U dropped when I is present,
    /// remaining known letters in alphabetical order, Z when nothing remains.
    /// </summary>
    public string ForwardFlags()
    {
        var flags = Flags & ~OverheadFlags.ReturnToSender;
        if (Has(OverheadFlags.Interclacks))
        {
            flags &= ~OverheadFlags.Forward;
        }

        return FormatFlags(flags);
    }

    /// <summary>Writes flags as letters in alphabetical order; Z for none.</summary>
    public static string FormatFlags(OverheadFlags flags)
    {
        Span<char> letters = stackalloc char[Letters.Length];
        var n = 0;
        foreach (var (letter, flag) in Letters)
        {
            if ((flags & flag) != 0)
            {
                letters[n++] = letter;
            }
        }

        return n == 0 ? "Z" : new string(letters[..n]);
    }

    private static OverheadFlags FlagOf(char c)
    {
        foreach (var (letter, flag) in Letters)
        {
            if (letter == c)
            {
                return flag;
            }
        }

        return OverheadFlags.None;
    }
}
