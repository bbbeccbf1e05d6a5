// Microsoft.Extensions.Hosting.Systemd lacks this: its SystemdLifetime knows no reload and sends no
// RELOADING=1. Built on the package's ISystemdNotifier.
using CacheHost.Core;
using CacheHost.Systemd.Logging;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;

namespace CacheHost.Systemd.Notify;

/// <summary>
/// Configuration reload for SIGHUP and the control command <c>config.reload</c>: tells systemd
/// RELOADING=1 with MONOTONIC_USEC, re-reads every configuration source (roles that bind options through
/// IOptionsMonitor see the new values; log levels are re-applied), then READY=1 with STATUS= — also when
/// the reload failed, with the failure in STATUS (ecosystem.md 1.7.2, 1.9 item 8). Reloads are serialised
/// and wait until start-up has finished, so READY=1 is never sent early.
/// </summary>
public sealed class ReloadCoordinator(
    IConfiguration configuration,
    LogLevelControl levels,
    ISystemdNotifier notifier,
    HostStatus status,
    IHostApplicationLifetime lifetime,
    TimeProvider clock,
    ILogger<ReloadCoordinator> logger)
{
    private readonly SemaphoreSlim _gate = new(1, 1);

    /// <summary>Reloads; returns null on success or the error message.</summary>
    public async Task<string?> ReloadAsync(string trigger)
    {
        await WaitForStartedAsync().ConfigureAwait(false);
        if (lifetime.ApplicationStopping.IsCancellationRequested)
        {
            return "the daemon is stopping";
        }

        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            SystemdLog.Reloading(logger, trigger);
            notifier.Send(logger, "RELOADING=1", "MONOTONIC_USEC=" + clock.MonotonicMicroseconds(), NotifierExtensions.Status("reloading"));
            string? problem = null;
            try
            {
                if (configuration is IConfigurationRoot root)
                {
                    root.Reload();
                }

                levels.Load(configuration);
                SystemdLog.Reloaded(logger, levels.Describe());
            }
            catch (Exception ex)
            {
                problem = ex.Message;
                SystemdLog.ReloadFailed(logger, ex);
            }

            status.LastReloadProblem = problem;
            notifier.Send(logger, "READY=1", NotifierExtensions.Status(status.Line()));
            return problem;
        }
        finally
        {
            _gate.Release();
        }
    }

    private Task WaitForStartedAsync()
    {
        if (lifetime.ApplicationStarted.IsCancellationRequested)
        {
            return Task.CompletedTask;
        }

        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lifetime.ApplicationStarted.Register(() => started.TrySetResult());
        lifetime.ApplicationStopping.Register(() => started.TrySetResult());
        return started.Task;
    }
}
