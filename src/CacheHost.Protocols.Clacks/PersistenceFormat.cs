using System.Globalization;
using System.Text;

namespace CacheHost.Protocols.Clacks;

/// <summary>
/// The version-3 persistence file (clacks §13.1): the 9-byte marker <c>\0CLACKSV3</c>, a YAML mapping
/// key → {accesstime, cachetime, data, deleted}, the marker again. We write a conservative YAML subset
/// (keys and data double-quoted with escapes, times single-quoted) that YAML::Syck loads; we read what
/// YAML::Syck writes (plain, single- and double-quoted scalars, multi-line folded quoted scalars).
/// Legacy pre-V3 files are not supported (treated as invalid, clacks §13.3 allows it).
/// </summary>
public static class PersistenceFormat
{
    /// <summary>The marker at both ends.</summary>
    public static ReadOnlySpan<byte> Marker => "\0CLACKSV3"u8;

    /// <summary>Smallest valid file (clacks §13.3).</summary>
    public const int MinimumLength = 18;

    /// <summary>Serialises entries (any order; written sorted bytewise by key).</summary>
    public static byte[] Write(IEnumerable<KeyValuePair<string, CacheEntry>> entries)
    {
        var sorted = entries.OrderBy(e => e.Key, StringComparer.Ordinal).ToList();
        var text = new StringBuilder();
        if (sorted.Count == 0)
        {
            text.Append("--- {}\n\n");
        }
        else
        {
            text.Append("--- \n");
            foreach (var (key, entry) in sorted)
            {
                AppendDoubleQuoted(text, key);
                text.Append(": \n");
                text.Append("  accesstime: '").Append(PerlNumber.FormatTime(entry.AccessTime)).Append("'\n");
                text.Append("  cachetime: '").Append(PerlNumber.FormatTime(entry.CacheTime)).Append("'\n");
                text.Append("  data: ");
                AppendDoubleQuoted(text, entry.Data);
                text.Append('\n');
                text.Append("  deleted: ").Append(entry.Deleted ? '1' : '0').Append('\n');
            }
        }

        var body = Encoding.Latin1.GetBytes(text.ToString());
        var file = new byte[body.Length + 2 * Marker.Length];
        Marker.CopyTo(file);
        body.CopyTo(file, Marker.Length);
        Marker.CopyTo(file.AsSpan(Marker.Length + body.Length));
        return file;
    }

    /// <summary>Parses a file; false when markers or YAML are invalid (clacks §13.3 validity rule).</summary>
    public static bool TryRead(ReadOnlySpan<byte> file, out Dictionary<string, CacheEntry> entries, out string error)
    {
        entries = new Dictionary<string, CacheEntry>(StringComparer.Ordinal);
        if (file.Length < MinimumLength || !file.StartsWith(Marker) || !file.EndsWith(Marker))
        {
            error = "missing CLACKSV3 markers (truncated or not a version-3 file)";
            return false;
        }

        var text = Encoding.Latin1.GetString(file[Marker.Length..^Marker.Length]);
        try
        {
            Parse(text, entries);
            error = string.Empty;
            return true;
        }
        catch (FormatException ex)
        {
            error = ex.Message;
            entries.Clear();
            return false;
        }
    }

    private static void Parse(string text, Dictionary<string, CacheEntry> entries)
    {
        var lines = text.Split('\n');
        var i = 0;
        while (i < lines.Length && (lines[i].Trim().Length == 0 || lines[i].TrimStart().StartsWith('#')))
        {
            i++;
        }

        if (i == lines.Length || !lines[i].StartsWith("---", StringComparison.Ordinal))
        {
            throw new FormatException("no YAML document start");
        }

        var head = lines[i][3..].Trim();
        i++;
        if (head == "{}")
        {
            return;
        }

        if (head.Length != 0)
        {
            throw new FormatException($"unexpected document head '{head}'");
        }

        string? key = null;
        Dictionary<string, string>? fields = null;
        while (i < lines.Length)
        {
            var line = lines[i];
            if (line.Trim().Length == 0)
            {
                i++;
                continue;
            }

            var indent = line.Length - line.TrimStart(' ').Length;
            if (indent == 0)
            {
                Flush(entries, key, fields);
                var (k, after) = ReadScalar(lines, ref i, 0);
                if (!after.StartsWith(':') || after[1..].Trim().Length != 0)
                {
                    throw new FormatException($"line {i + 1}: expected 'key:' with a nested mapping");
                }

                key = k;
                fields = new Dictionary<string, string>(StringComparer.Ordinal);
                i++;
                continue;
            }

            if (fields is null)
            {
                throw new FormatException($"line {i + 1}: field outside an entry");
            }

            var (name, rest) = ReadScalar(lines, ref i, indent);
            if (!rest.StartsWith(':'))
            {
                throw new FormatException($"line {i + 1}: expected 'field: value'");
            }

            lines[i] = new string(' ', indent + 1) + rest[1..];
            var valueText = rest[1..].Trim();
            string value;
            if (valueText.Length == 0)
            {
                value = string.Empty;
                i++;
            }
            else
            {
                var (v, tail) = ReadScalar(lines, ref i, indent + 1, isValue: true);
                if (tail.Trim().Length != 0 && !tail.TrimStart().StartsWith('#'))
                {
                    throw new FormatException($"line {i + 1}: junk after value");
                }

                value = v;
                i++;
            }

            fields[name] = value;
        }

        Flush(entries, key, fields);
    }

    private static void Flush(Dictionary<string, CacheEntry> entries, string? key, Dictionary<string, string>? fields)
    {
        if (key is null || fields is null)
        {
            return;
        }

        fields.TryGetValue("data", out var data);
        fields.TryGetValue("cachetime", out var ct);
        fields.TryGetValue("accesstime", out var at);
        fields.TryGetValue("deleted", out var del);
        var deleted = del is not null && PerlNumber.Numify(del).AsDouble != 0;
        entries[key] = new CacheEntry(deleted ? string.Empty : data ?? string.Empty,
            PerlNumber.ParseTime(ct ?? "0"), PerlNumber.ParseTime(at ?? "0"), deleted);
    }

    /// <summary>
    /// Reads one scalar starting at the first non-space char of lines[i] (after <paramref name="indent"/>);
    /// quoted scalars may continue on following lines. Returns the value and the rest of the last line.
    /// </summary>
    private static (string Value, string Tail) ReadScalar(string[] lines, ref int i, int indent, bool isValue = false)
    {
        var line = lines[i];
        var start = indent;
        while (start < line.Length && line[start] == ' ')
        {
            start++;
        }

        if (start >= line.Length)
        {
            return (string.Empty, string.Empty);
        }

        var quote = line[start];
        if (quote is '"' or '\'')
        {
            return ReadQuoted(lines, ref i, start, quote);
        }

        if (isValue)
        {
            var plain = line[start..];
            var comment = plain.IndexOf(" #", StringComparison.Ordinal);
            if (comment >= 0)
            {
                plain = plain[..comment];
            }

            plain = plain.Trim();
            return (plain == "~" ? string.Empty : plain, string.Empty);
        }

        var colon = line.IndexOf(": ", start, StringComparison.Ordinal);
        if (colon < 0)
        {
            colon = line.EndsWith(':') ? line.Length - 1 : -1;
        }

        if (colon < 0)
        {
            throw new FormatException($"line {i + 1}: expected 'key:'");
        }

        return (line[start..colon].TrimEnd(), line[colon..]);
    }

    private static (string Value, string Tail) ReadQuoted(string[] lines, ref int i, int start, char quote)
    {
        var result = new StringBuilder();
        var pos = start + 1;
        var firstLine = true;
        while (true)
        {
            var line = lines[i];
            if (!firstLine)
            {
                // Folding: a line break inside a quoted scalar becomes a space, unless escaped (double quotes)
                // or followed by empty lines (which become newlines).
                var trimmed = line.TrimStart(' ', '\t');
                pos = line.Length - trimmed.Length;
                if (trimmed.Length == 0)
                {
                    result.Append('\n');
                    if (++i >= lines.Length)
                    {
                        throw new FormatException("unterminated quoted scalar");
                    }

                    continue;
                }
            }

            while (pos < line.Length)
            {
                var c = line[pos];
                if (quote == '\'' && c == '\'')
                {
                    if (pos + 1 < line.Length && line[pos + 1] == '\'')
                    {
                        result.Append('\'');
                        pos += 2;
                        continue;
                    }

                    return (result.ToString(), line[(pos + 1)..]);
                }

                if (quote == '"' && c == '"')
                {
                    return (result.ToString(), line[(pos + 1)..]);
                }

                if (quote == '"' && c == '\\')
                {
                    if (pos + 1 >= line.Length)
                    {
                        // Escaped line break: join without a space.
                        pos = line.Length;
                        goto nextLine;
                    }

                    pos = Unescape(line, pos + 1, result);
                    continue;
                }

                result.Append(c);
                pos++;
            }

            // Unescaped line break inside the scalar: trailing spaces dropped, one space inserted.
            var trimmedLength = result.Length;
            while (trimmedLength > 0 && result[trimmedLength - 1] == ' ')
            {
                trimmedLength--;
            }

            result.Length = trimmedLength;
            if (i + 1 < lines.Length && lines[i + 1].Trim().Length != 0)
            {
                result.Append(' ');
            }

        nextLine:
            firstLine = false;
            if (++i >= lines.Length)
            {
                throw new FormatException("unterminated quoted scalar");
            }
        }
    }

    private static int Unescape(string line, int pos, StringBuilder result)
    {
        var c = line[pos];
        switch (c)
        {
            case '0': result.Append('\0'); return pos + 1;
            case 'a': result.Append('\a'); return pos + 1;
            case 'b': result.Append('\b'); return pos + 1;
            case 't': case '\t': result.Append('\t'); return pos + 1;
            case 'n': result.Append('\n'); return pos + 1;
            case 'v': result.Append('\v'); return pos + 1;
            case 'f': result.Append('\f'); return pos + 1;
            case 'r': result.Append('\r'); return pos + 1;
            case 'e': result.Append('\x1b'); return pos + 1;
            case ' ': result.Append(' '); return pos + 1;
            case '"': result.Append('"'); return pos + 1;
            case '/': result.Append('/'); return pos + 1;
            case '\\': result.Append('\\'); return pos + 1;
            case 'N': result.Append('\x85'); return pos + 1;
            case '_': result.Append('\xa0'); return pos + 1;
            case 'x': return Hex(line, pos + 1, 2, result);
            case 'u': return Hex(line, pos + 1, 4, result);
            case 'U': return Hex(line, pos + 1, 8, result);
            default: throw new FormatException($"unknown escape \\{c}");
        }
    }

    private static int Hex(string line, int pos, int digits, StringBuilder result)
    {
        if (pos + digits > line.Length || !int.TryParse(line.AsSpan(pos, digits), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var code))
        {
            throw new FormatException("bad hex escape");
        }

        if (digits == 2)
        {
            result.Append((char)code); // \xNN is one byte
        }
        else
        {
            // A code point: stored as its UTF-8 bytes in our byte-per-char form.
            result.Append(Encoding.Latin1.GetString(Encoding.UTF8.GetBytes(char.ConvertFromUtf32(code))));
        }

        return pos + digits;
    }

    private static void AppendDoubleQuoted(StringBuilder text, string value)
    {
        text.Append('"');
        foreach (var c in value)
        {
            switch (c)
            {
                case '"': text.Append("\\\""); break;
                case '\\': text.Append("\\\\"); break;
                case < ' ' or '\x7f':
                    text.Append("\\x").Append(((int)c).ToString("X2", CultureInfo.InvariantCulture));
                    break;
                default: text.Append(c); break;
            }
        }

        text.Append('"');
    }
}
