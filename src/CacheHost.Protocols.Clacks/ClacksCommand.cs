namespace CacheHost.Protocols.Clacks;

/// <summary>Commands a client or link may send (clacks §5.1, step 6).</summary>
public enum ClacksCommandKind
{
    /// <summary>No pattern matched: <c>OVERHEAD E unknown_command &lt;line&gt;</c>.</summary>
    Unknown,
    Notify,
    Set,
    KeySync,
    Store,
    SetAndStore,
    Retrieve,
    Remove,
    Increment,
    Decrement,
    KeyList,
    ClearCache,
    Listen,
    Unlisten,
    Monitor,
    Unmonitor,
    Quit,
    Timeout,
    Ping,
    NoPing,
    ClientList,
    ClientDisconnect,
    Flush,
}

/// <summary>
/// One parsed command line. <see cref="Name"/> is the key/variable (or CID, or FLUSH id), <see cref="Value"/>
/// the text after the splitting <c>=</c> (or the INCREMENT/DECREMENT step text, null when absent).
/// KEYSYNC also fills the three leading fields.
/// </summary>
public readonly record struct ClacksCommand(ClacksCommandKind Kind, string Name, string? Value, string CacheTime = "", string AccessTime = "", string Mode = "")
{
    /// <summary>True for commands that change data or deliver messages and are forwarded on interclacks links (clacks §5.1 step 8).</summary>
    public bool IsReplicated => Kind is ClacksCommandKind.Notify or ClacksCommandKind.Set or ClacksCommandKind.KeySync
        or ClacksCommandKind.Store or ClacksCommandKind.SetAndStore or ClacksCommandKind.Remove
        or ClacksCommandKind.Increment or ClacksCommandKind.Decrement or ClacksCommandKind.ClearCache;
}

/// <summary>
/// Dispatch of a non-OVERHEAD line (clacks §5.1 step 6): case-sensitive prefix patterns tried in the
/// reference's order. Several patterns need no word boundary (<c>PINGxyz</c> is PING, quirk Q5, kept).
/// </summary>
public static class ClacksCommandParser
{
    /// <summary>Parses a line (without line end). Never fails: unmatched lines are <see cref="ClacksCommandKind.Unknown"/>.</summary>
    public static ClacksCommand Parse(string line)
    {
        if (line.StartsWith("NOTIFY ", StringComparison.Ordinal))
        {
            return new(ClacksCommandKind.Notify, line[7..], null);
        }

        if (TryNameValue(line, "SET ", out var name, out var value))
        {
            return new(ClacksCommandKind.Set, name, value);
        }

        if (line.StartsWith("KEYSYNC ", StringComparison.Ordinal) && TryParseKeySync(line, out var keySync))
        {
            return keySync;
        }

        if (TryNameValue(line, "STORE ", out name, out value))
        {
            return new(ClacksCommandKind.Store, name, value);
        }

        if (TryNameValue(line, "SETANDSTORE ", out name, out value))
        {
            return new(ClacksCommandKind.SetAndStore, name, value);
        }

        if (TryRest(line, "RETRIEVE ", out name))
        {
            return new(ClacksCommandKind.Retrieve, name, null);
        }

        if (TryRest(line, "REMOVE ", out name))
        {
            return new(ClacksCommandKind.Remove, name, null);
        }

        if (TryRest(line, "INCREMENT ", out name))
        {
            return Step(ClacksCommandKind.Increment, name);
        }

        if (TryRest(line, "DECREMENT ", out name))
        {
            return Step(ClacksCommandKind.Decrement, name);
        }

        if (line.StartsWith("KEYLIST", StringComparison.Ordinal))
        {
            return new(ClacksCommandKind.KeyList, string.Empty, null);
        }

        if (line.StartsWith("CLEARCACHE", StringComparison.Ordinal))
        {
            return new(ClacksCommandKind.ClearCache, string.Empty, null);
        }

        if (TryRest(line, "LISTEN ", out name))
        {
            return new(ClacksCommandKind.Listen, name, null);
        }

        if (TryRest(line, "UNLISTEN ", out name))
        {
            return new(ClacksCommandKind.Unlisten, name, null);
        }

        return line switch
        {
            _ when line.StartsWith("MONITOR", StringComparison.Ordinal) => new(ClacksCommandKind.Monitor, string.Empty, null),
            _ when line.StartsWith("UNMONITOR", StringComparison.Ordinal) => new(ClacksCommandKind.Unmonitor, string.Empty, null),
            _ when line.StartsWith("QUIT", StringComparison.Ordinal) => new(ClacksCommandKind.Quit, string.Empty, null),
            _ when line.StartsWith("TIMEOUT", StringComparison.Ordinal) => new(ClacksCommandKind.Timeout, string.Empty, null),
            _ when line.StartsWith("PING", StringComparison.Ordinal) => new(ClacksCommandKind.Ping, string.Empty, null),
            _ when line.StartsWith("NOPING", StringComparison.Ordinal) => new(ClacksCommandKind.NoPing, string.Empty, null),
            _ when line.StartsWith("CLIENTLIST", StringComparison.Ordinal) => new(ClacksCommandKind.ClientList, string.Empty, null),
            _ when TryRest(line, "CLIENTDISCONNECT ", out var cid) => new(ClacksCommandKind.ClientDisconnect, cid, null),
            _ when TryRest(line, "FLUSH ", out var id) => new(ClacksCommandKind.Flush, id, null),
            _ => new(ClacksCommandKind.Unknown, line, null),
        };
    }

    /// <summary>
    /// INCREMENT/DECREMENT argument (clacks §8.4): split at the LAST '=' only when at least one character
    /// follows it (quirk Q7, kept): <c>k=v=3</c> is key <c>k=v</c> step 3, <c>dangling=</c> is the key.
    /// </summary>
    private static ClacksCommand Step(ClacksCommandKind kind, string rest)
    {
        var eq = rest.LastIndexOf('=');
        if (eq >= 0 && eq < rest.Length - 1)
        {
            return new(kind, rest[..eq], rest[(eq + 1)..]);
        }

        return new(kind, rest, null);
    }

    private static bool TryRest(string line, string prefix, out string rest)
    {
        if (line.Length > prefix.Length && line.StartsWith(prefix, StringComparison.Ordinal))
        {
            rest = line[prefix.Length..];
            return true;
        }

        rest = string.Empty;
        return false;
    }

    private static bool TryNameValue(string line, string prefix, out string name, out string value)
    {
        name = value = string.Empty;
        if (!line.StartsWith(prefix, StringComparison.Ordinal))
        {
            return false;
        }

        var eq = line.IndexOf('=', prefix.Length);
        if (eq < 0)
        {
            return false;
        }

        name = line[prefix.Length..eq];
        value = line[(eq + 1)..];
        return true;
    }

    /// <summary><c>KEYSYNC &lt;ctime&gt; &lt;atime&gt; &lt;mode&gt; &lt;key&gt;=&lt;value&gt;</c> (clacks §12.4).</summary>
    private static bool TryParseKeySync(string line, out ClacksCommand command)
    {
        command = default;
        var p = 8;
        Span<(int Start, int End)> fields = stackalloc (int, int)[3];
        for (var i = 0; i < 3; i++)
        {
            var space = line.IndexOf(' ', p);
            if (space <= p)
            {
                return false;
            }

            fields[i] = (p, space);
            p = space + 1;
        }

        var eq = line.IndexOf('=', p);
        if (eq < 0)
        {
            return false;
        }

        command = new ClacksCommand(ClacksCommandKind.KeySync, line[p..eq], line[(eq + 1)..],
            line[fields[0].Start..fields[0].End], line[fields[1].Start..fields[1].End], line[fields[2].Start..fields[2].End]);
        return true;
    }
}
