using CacheHost.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>
/// Runs the supervisor loop on its own thread inside the Generic Host. A <c>terminate</c> command stops the
/// host; stopping the host terminates the supervisor (services are left running, as after <c>terminate</c>).
/// Supervisor log lines go to the host's logger instead of fd 2.
/// </summary>
internal sealed class ProcessSupervisorService(
    IOptions<ProcessSupervisorOptions> options,
    IHostApplicationLifetime lifetime,
    RoleFailures failures,
    ILogger<ProcessSupervisorService> logger) : IHostedService
{
    private Supervisor? _supervisor;
    private Thread? _thread;

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
        var supervisor = new Supervisor(settings);
        supervisor.Log.Destination = () => -1;
        supervisor.Log.Mirror = (level, message) => SupervisorLog.Forward(logger, Map(level), message);
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        settings.OnReady = () => ready.TrySetResult();
        _supervisor = supervisor;
        _thread = new Thread(() =>
        {
            var code = supervisor.Run();
            SupervisorLog.Terminated(logger, code);
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
        SupervisorLog.Started(logger, o.ConfigFile, o.SocketPath);
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
