using Serilog.Events;
using Serilog.Formatting;
using Serilog.Formatting.Display;

namespace CacheHost.Systemd.Logging;

/// <summary>
/// Writes each event for journald's stream protocol: every physical line (message lines and every line of
/// an exception) starts with the event's <c>&lt;N&gt;</c> syslog priority, because journald makes a new
/// entry per newline and gives unprefixed lines the default priority (ecosystem.md 1.6, 3).
/// No timestamp: journald stamps entries itself.
/// </summary>
public sealed class JournaldTextFormatter : ITextFormatter
{
    private readonly MessageTemplateTextFormatter _inner = new("{SourceContext}: {Message:lj}{NewLine}{Exception}");

    /// <summary>The one-digit priority for a level (RFC 5424 severities; journald accepts 0..7 only).</summary>
    public static char Priority(LogEventLevel level) => level switch
    {
        LogEventLevel.Verbose or LogEventLevel.Debug => '7',
        LogEventLevel.Information => '6',
        LogEventLevel.Warning => '4',
        LogEventLevel.Error => '3',
        _ => '2',
    };

    /// <inheritdoc />
    public void Format(LogEvent logEvent, TextWriter output)
    {
        using var buffer = new StringWriter();
        _inner.Format(logEvent, buffer);
        var text = buffer.ToString().AsSpan().TrimEnd("\r\n");
        var prefix = Priority(logEvent.Level);
        foreach (var range in text.SplitAny('\n', '\r'))
        {
            var line = text[range];
            output.Write('<');
            output.Write(prefix);
            output.Write('>');
            output.Write(line);
            output.Write('\n');
        }
    }
}
