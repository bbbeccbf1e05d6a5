using System.Text;
using CacheHost.Core.Control;

namespace CacheHost.Systemd.Control;

/// <summary>
/// Reply lines of one command, sent together once the command returns. Lines are kept as byte strings (one
/// char per byte, Latin-1) so the connection writes every line the same way and bytes a client sent come back
/// exact (daemonproxy's own socket does the same); host text is UTF-8 encoded into that form on entry.
/// </summary>
internal sealed class ControlReply : IControlReply
{
    private readonly List<string> _lines = [];

    public IReadOnlyList<string> Lines => _lines;

    public void Line(params ReadOnlySpan<string> fields) => _lines.Add(TextToBytes(Format(fields)));

    public void ByteLine(params ReadOnlySpan<string> fields) => _lines.Add(Format(fields));

    /// <summary>Adds a line that is already a byte string.</summary>
    public void Raw(string line) => _lines.Add(line.Replace('\n', ' '));

    /// <summary>Joins the fields with TAB; an LF inside a field would split the line, so it becomes a space.</summary>
    public static string Format(ReadOnlySpan<string> fields)
    {
        var joined = string.Join('\t', fields.ToArray());
        return joined.Contains('\n') ? joined.Replace('\n', ' ') : joined;
    }

    /// <summary>Host text (any Unicode) as the byte string of its UTF-8 encoding.</summary>
    public static string TextToBytes(string text) => Ascii.IsValid(text) ? text : Encoding.Latin1.GetString(Encoding.UTF8.GetBytes(text));

    /// <summary>A byte string read as UTF-8 text (invalid sequences become U+FFFD), for arguments and logs.</summary>
    public static string BytesToText(string bytes) => Ascii.IsValid(bytes) ? bytes : Encoding.UTF8.GetString(Encoding.Latin1.GetBytes(bytes));
}
