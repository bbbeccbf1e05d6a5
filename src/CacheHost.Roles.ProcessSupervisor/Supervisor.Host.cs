using System.Collections.Concurrent;
using System.Text;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>
/// Bridge from the daemon-wide control socket (docs/systemd.md, "Control socket") into the supervisor. A host
/// command is queued from any thread, the loop is woken, and the loop runs the line through the same
/// <see cref="Execute"/> as a socket controller's line, on a throw-away controller whose output is captured
/// instead of written to a descriptor. Replies, error lines and statedump chunks are therefore exactly the
/// supervisor's own; broadcast events go to <see cref="SupervisorSettings.OnBroadcast"/>.
/// </summary>
internal sealed partial class Supervisor
{
    /// <summary>
    /// The supervisor's commands offered on the host control socket. The host owns <c>echo</c>, <c>exit</c>,
    /// <c>statedump</c> and <c>log.filter</c>: the supervisor's statedump lines are part of the host's
    /// statedump and its log filter is reachable as <c>supervisor.log.filter</c>. <c>exit</c> has no meaning
    /// for a one-command hand-off and is not offered.
    /// </summary>
    public static readonly IReadOnlyList<string> HostCommandNames =
    [
        "chdir", "conn.event_timeout",
        "service.args", "service.tags", "service.fds", "service.auto_up", "service.start", "service.signal", "service.delete",
        "fd.pipe", "fd.open", "fd.socket", "fd.take", "fd.delete",
        "signal.clear", "supervisor.log.filter", "log.dest", "socket.create", "socket.delete",
        "terminate", "terminate.guard", "terminate.exec_args",
    ];

    /// <summary>Names of the supervisor's own command table (tests keep <see cref="HostCommandNames"/> in step with it).</summary>
    internal IEnumerable<string> CommandTableNames => _commands.Names;

    private readonly ConcurrentQueue<HostCommand> _hostCommands = new();
    private readonly object _hostLock = new();
    private bool _hostClosed;
    private volatile string _hostStatus = "services=0 up=0";
    private int _statusServices = -1;
    private int _statusUp = -1;

    /// <summary>Role status line for the host (<c>services=N up=M</c>); refreshed by the loop, read from any thread.</summary>
    public string HostStatusSummary => _hostStatus;

    /// <summary>Figures for the role's meter (issue 18), written by the loop, read from any thread.</summary>
    public ProcessSupervisorStatistics Statistics { get; } = new();

    /// <summary>Loop step: refreshes <see cref="HostStatusSummary"/> when the counts changed (no allocation otherwise).</summary>
    private void UpdateHostStatus()
    {
        var up = _services.UpCount();
        if (up != _statusUp || _services.Count != _statusServices)
        {
            _statusUp = up;
            _statusServices = _services.Count;
            _hostStatus = $"services={_services.Count} up={up}";
            Volatile.Write(ref Statistics.Services, _services.Count);
            Volatile.Write(ref Statistics.Up, up);
        }
    }

    /// <summary>
    /// Runs <paramref name="line"/> in the supervisor loop as if a socket controller had sent it; the task
    /// completes with the reply lines (no LF). Thread-safe. Fails when the supervisor is not running.
    /// </summary>
    public Task<string[]> SubmitHostCommand(string line)
    {
        var command = new HostCommand(line);
        lock (_hostLock)
        {
            if (_hostClosed)
            {
                command.Reply.SetException(new InvalidOperationException("the process supervisor is not running"));
                return command.Reply.Task;
            }

            _hostCommands.Enqueue(command);
        }

        Wake();
        return command.Reply.Task;
    }

    /// <summary>Loop step: runs the queued host commands (each with a complete statedump when asked).</summary>
    private void RunHostCommands(long now)
    {
        while (!_termination.Requested && _hostCommands.TryDequeue(out var command))
        {
            var capture = new StringBuilder();
            var c = new Controller(Log, -1, ControllerKind.Socket, -1, -1, ownsFds: false) { Capture = capture };
            try
            {
                _commands.Execute(c, command.Line, now);
                if (c.Dump is not null)
                {
                    _commands.ContinueDump(c, now); // captured output never runs out of space: one call finishes it
                    _signals.DeliverTo(c, now); // statedump part 3: the signal list (daemonproxy §9)
                }

                command.Reply.TrySetResult(capture.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries));
            }
            catch (Exception ex) when (ex is not SupervisorExitException)
            {
                command.Reply.TrySetException(ex);
            }
        }
    }

    /// <summary>The loop ended: later and still-queued host commands fail instead of waiting forever.</summary>
    private void CloseHostCommands()
    {
        lock (_hostLock)
        {
            _hostClosed = true;
        }

        _hostStatus = "terminated";

        while (_hostCommands.TryDequeue(out var command))
        {
            command.Reply.TrySetException(new InvalidOperationException("the process supervisor has terminated"));
        }
    }

    private sealed class HostCommand(string line)
    {
        public string Line { get; } = line;

        public TaskCompletionSource<string[]> Reply { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
