namespace CacheHost.Core.Control;

/// <summary>
/// A role's command namespace on the daemon-wide TSV control socket (docs/systemd.md, "Control socket").
/// Implement it on the role's hosted service (the host finds it there) or register an instance as a
/// singleton <see cref="IControlCommandProvider"/>. The control server owns framing, the <c>error</c>
/// reply format, and the built-ins <c>echo</c>, <c>statedump</c>, <c>log.filter</c>, <c>config.reload</c>,
/// <c>help</c> and <c>exit</c>.
/// </summary>
/// <remarks>
/// Conventions (daemonproxy §3): one command per line, fields separated by TAB, names matched exactly
/// and case-sensitively. Prefix names with the role's namespace (<c>cache.stats</c>, <c>proxy.stats</c>,
/// <c>service.start</c> …). A name claimed by two providers (or by a built-in) fails start-up.
/// Replies are whole lines written through <see cref="IControlReply"/>; they are sent to the connection
/// that sent the command, in order, once the handler returns. Failures: throw
/// <see cref="ControlCommandException"/> (the client gets
/// <c>error&lt;TAB&gt;message, for command "…"</c>); any other exception is reported the same way and logged.
/// </remarks>
public interface IControlCommandProvider
{
    /// <summary>The exact command names this provider handles.</summary>
    IReadOnlyCollection<string> CommandNames { get; }

    /// <summary>Runs one command. Called for names in <see cref="CommandNames"/> only; commands of one connection run one at a time.</summary>
    ValueTask ExecuteAsync(ControlCommand command, IControlReply reply, CancellationToken cancellationToken);

    /// <summary>Lines this provider adds to <c>statedump</c> (e.g. the supervisor's fd.state/service.state lines). Default: none.</summary>
    void WriteStateDump(IControlReply reply)
    {
    }
}

/// <summary>
/// One parsed control line: the command name, its arguments (the fields after the name, decoded as UTF-8 text)
/// and the raw line exactly as received, one char per byte (Latin-1, the daemonproxy supervisor's own byte
/// convention), so a command that passes bytes on (e.g. <c>service.args</c> into a child's argv) keeps them exact.
/// </summary>
public sealed record ControlCommand(string Name, IReadOnlyList<string> Arguments, string RawLine)
{
    /// <summary>Argument <paramref name="index"/>, or a <see cref="ControlCommandException"/> naming what is missing.</summary>
    public string Required(int index, string what) =>
        index < Arguments.Count ? Arguments[index] : throw new ControlCommandException($"missing {what} argument");
}

/// <summary>Collects reply lines for the sender of a command.</summary>
public interface IControlReply
{
    /// <summary>Adds one line: the fields joined by TAB, sent as UTF-8. Fields must not contain LF (it is replaced by a space).</summary>
    void Line(params ReadOnlySpan<string> fields);

    /// <summary>
    /// Adds one line of byte strings (one char per byte, Latin-1, as <see cref="ControlCommand.RawLine"/>): each
    /// char is sent as the byte of its value, unchanged. For replies that echo bytes a client sent.
    /// </summary>
    void ByteLine(params ReadOnlySpan<string> fields);
}

/// <summary>
/// Pushes an event line to every connected control client (daemonproxy's broadcast events such as
/// <c>service.state</c>, daemonproxy §4.3). A client that does not read has lines dropped rather than stalling the
/// daemon; it gets one <c>overflow</c> line when space is free again.
/// </summary>
public interface IControlEvents
{
    /// <summary>Sends the fields as one TAB-separated line (UTF-8) to all control connections.</summary>
    void Broadcast(params ReadOnlySpan<string> fields);

    /// <summary>As <see cref="Broadcast"/>, for byte strings (one char per byte, see <see cref="IControlReply.ByteLine"/>).</summary>
    void BroadcastBytes(params ReadOnlySpan<string> fields);
}

/// <summary>A command failure whose message goes to the client as <c>error&lt;TAB&gt;message, for command "…"</c>.</summary>
public sealed class ControlCommandException(string message) : Exception(message);
