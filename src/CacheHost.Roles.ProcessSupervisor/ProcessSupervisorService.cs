using CacheHost.Core;
using CacheHost.Core.Control;
using CacheHost.Core.Status;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>
/// Runs the supervisor loop on its own thread inside the Generic Host. A <c>terminate</c> command stops the
/// host; stopping the host terminates the supervisor (services are left running, as after <c>terminate</c>).
/// Supervisor log lines go to the host's logger instead of fd 2. The supervisor's commands are also offered
/// on the daemon's control socket (<see cref="Supervisor.HostCommandNames"/>), run by the supervisor loop
/// exactly as a socket controller's lines, and its broadcast events go to every control client. Lines are byte
/// strings (one char per byte) both ways, as on the supervisor's own socket, so argv bytes stay exact.
/// </summary>
internal sealed class ProcessSupervisorService(
    IOptions<ProcessSupervisorOptions> options,
    IHostApplicationLifetime lifetime,
    RoleFailures failures,
    ILogger<ProcessSupervisorService> logger,
    TimeProvider clock,
    IControlEvents? events = null) : IHostedService, IControlCommandProvider, IRoleStatusProvider
{
    private const string LogFilterAlias = "supervisor.log.filter";

    /// <summary>How long a control command may wait for the supervisor loop (it never blocks in normal operation).</summary>
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(10);

    private volatile Supervisor? _supervisor;
    private Thread? _thread;

    public IReadOnlyCollection<string> CommandNames => Supervisor.HostCommandNames;

    public string RoleName => "ProcessSupervisor";

    /// <summary>The running supervisor, for the role's meter; null before start and after it stopped.</summary>
    internal Supervisor? Running => _supervisor;

    public string StatusSummary() => _supervisor?.HostStatusSummary ?? "stopped";

    public async ValueTask ExecuteAsync(ControlCommand command, IControlReply reply, CancellationToken cancellationToken)
    {
        var line = command.Name == LogFilterAlias ? "log.filter" + command.RawLine[LogFilterAlias.Length..] : command.RawLine;
        foreach (var replyLine in await RunAsync(line, cancellationToken).ConfigureAwait(false))
        {
            reply.ByteLine(replyLine.Split('\t'));
        }
    }

    public void WriteStateDump(IControlReply reply)
    {
        // The host's statedump is synchronous; the supervisor answers within one loop pass.
        string[] lines;
        try
        {
            lines = RunAsync("statedump", CancellationToken.None).AsTask().GetAwaiter().GetResult();
        }
        catch (ControlCommandException)
        {
            return; // not running (start-up failed or terminated): nothing to dump; the role line says "stopped"
        }

        foreach (var line in lines)
        {
            reply.ByteLine(line.Split('\t'));
        }
    }

    private async ValueTask<string[]> RunAsync(string line, CancellationToken cancellationToken)
    {
        var supervisor = _supervisor ?? throw new ControlCommandException("the process supervisor is not running");
        try
        {
            return await supervisor.SubmitHostCommand(line).WaitAsync(CommandTimeout, clock, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new ControlCommandException($"the process supervisor did not answer within {CommandTimeout.TotalSeconds} s");
        }
        catch (InvalidOperationException ex)
        {
            throw new ControlCommandException(ex.Message);
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var o = options.Value;
        DaemonLog.TryParseLevel(o.LogFilter, out var filter);
        var settings = new SupervisorSettings
        {
            ConfigFile = o.ConfigFile,
            SocketPath = o.SocketPath,
            Guard = o.ExitGuard,
            ExecArgs = string.IsNullOrEmpty(o.ExitExec) ? null : o.ExitExec,
            MaxControllers = o.MaxControllers,
            Verbosity = (int)filter - (int)DaemonLogLevel.Debug,
        };
        var supervisor = new Supervisor(settings, clock);
        supervisor.Log.Destination = () => -1;
        supervisor.Log.Mirror = (level, message) => ProcessSupervisorLog.Forward(logger, Map(level), message);
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        settings.OnReady = () => ready.TrySetResult();
        if (events is not null)
        {
            settings.OnBroadcast = line =>
            {
                try
                {
                    events.BroadcastBytes(line.TrimEnd('\n').Split('\t'));
                }
                catch (Exception ex) when (ex is ObjectDisposedException or InvalidOperationException)
                {
                    // The control server is already stopping; the supervisor loop must not fail for it.
                }
            };
        }

        _supervisor = supervisor;
        _thread = new Thread(() =>
        {
            var code = supervisor.Run();
            ProcessSupervisorLog.Terminated(logger, code);
            if (!ready.Task.IsCompleted)
            {
                ready.TrySetException(new InvalidOperationException($"process supervisor failed to start (exit code {code})"));
            }
            else if (code != 0)
            {
                failures.Report("ProcessSupervisor", new InvalidOperationException($"process supervisor exited with code {code}"));
            }

            lifetime.StopApplication();
        })
        {
            Name = "ProcessSupervisor",
            IsBackground = true,
        };
        _thread.Start();
        ProcessSupervisorLog.Started(logger, o.ConfigFile, o.SocketPath);
        return ready.Task;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _supervisor?.RequestStop();
        _thread?.Join(TimeSpan.FromSeconds(5));
        _supervisor?.Dispose();
        return Task.CompletedTask;
    }

    private static LogLevel Map(DaemonLogLevel level) => level switch
    {
        DaemonLogLevel.Trace => LogLevel.Trace,
        DaemonLogLevel.Debug => LogLevel.Debug,
        DaemonLogLevel.Info => LogLevel.Information,
        DaemonLogLevel.Warning => LogLevel.Warning,
        DaemonLogLevel.Error => LogLevel.Error,
        _ => LogLevel.Critical,
    };
}
