using CacheHost.Core.Control;

namespace CacheHost.Systemd.Control;

/// <summary>Reply lines of one command, sent together once the command returns.</summary>
internal sealed class ControlReply : IControlReply
{
    private readonly List<string> _lines = [];

    public IReadOnlyList<string> Lines => _lines;

    public void Line(params ReadOnlySpan<string> fields) => _lines.Add(Format(fields));

    public void Raw(string line) => _lines.Add(line.Replace('\n', ' '));

    /// <summary>Joins the fields with TAB; an LF inside a field would split the line, so it becomes a space.</summary>
    public static string Format(ReadOnlySpan<string> fields)
    {
        var joined = string.Join('\t', fields.ToArray());
        return joined.Contains('\n') ? joined.Replace('\n', ' ') : joined;
    }
}
