using System.Globalization;
using CacheHost.Core;
using CacheHost.Core.Control;
using CacheHost.Systemd.Logging;
using CacheHost.Systemd.Notify;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace CacheHost.Systemd.Control;

/// <summary>
/// The daemon-wide built-ins: <c>statedump</c>, <c>log.filter</c>, <c>config.reload</c>, <c>help</c>
/// (docs/systemd.md lists the reply lines).
/// </summary>
public sealed class HostControlCommands(IServiceProvider services, HostStatus status, LogLevelControl levels, ReloadCoordinator reload) : IControlCommandProvider
{
    /// <inheritdoc />
    public IReadOnlyCollection<string> CommandNames { get; } = ["statedump", "log.filter", "config.reload", "help"];

    /// <inheritdoc />
    public async ValueTask ExecuteAsync(ControlCommand command, IControlReply reply, CancellationToken cancellationToken)
    {
        switch (command.Name)
        {
            case "statedump":
                StateDump(reply);
                break;
            case "log.filter":
                LogFilter(command, reply);
                break;
            case "config.reload":
                var problem = await reload.ReloadAsync("control socket").ConfigureAwait(false);
                if (problem is not null)
                {
                    throw new ControlCommandException("reload failed: " + problem);
                }

                reply.Line("config.reload", "ok");
                break;
            case "help":
                foreach (var name in services.GetRequiredService<ControlDispatcher>().CommandNames)
                {
                    reply.Line("command", name);
                }

                break;
        }
    }

    private void StateDump(IControlReply reply)
    {
        var roles = status.Roles();
        reply.Line("host", "pid", Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        reply.Line("host", "roles", string.Join(',', roles.Select(r => r.Name)));
        // Version, uptime and memory (issue 18): what an operator asks first, without attaching a debugger.
        var clock = services.GetService<TimeProvider>() ?? TimeProvider.System;
        reply.Line("host", "version", ProcessFigures.Version);
        reply.Line("host", "uptime_s", ((long)ProcessFigures.Uptime(clock).TotalSeconds).ToString(CultureInfo.InvariantCulture));
        reply.Line("host", "rss_bytes", ProcessFigures.ResidentBytes.ToString(CultureInfo.InvariantCulture));
        reply.Line("host", "gc_heap_bytes", ProcessFigures.ManagedHeapBytes.ToString(CultureInfo.InvariantCulture));
        foreach (var role in roles)
        {
            reply.Line("role", role.Name, role.Summary ?? "");
            foreach (var (address, connections) in role.Listeners)
            {
                reply.Line("listener", role.Name, address, connections.ToString(CultureInfo.InvariantCulture));
            }
        }

        WriteLevels(reply);
        foreach (var provider in services.GetRequiredService<ControlDispatcher>().Providers)
        {
            if (!ReferenceEquals(provider, this))
            {
                provider.WriteStateDump(reply);
            }
        }
    }

    // log.filter                 -> current levels
    // log.filter<TAB>LEVEL       -> default level (daemonproxy form, daemonproxy §5)
    // log.filter<TAB>NS<TAB>LEVEL -> one namespace; until the next reload
    private void LogFilter(ControlCommand command, IControlReply reply)
    {
        switch (command.Arguments.Count)
        {
            case 0:
                WriteLevels(reply);
                return;
            case 1:
                levels.Set(null, ParseLevel(command.Arguments[0]));
                reply.Line("log.filter", LogLevelControl.Name(levels.Default));
                return;
            case 2:
                if (command.Arguments[0].Length == 0)
                {
                    throw new ControlCommandException("empty namespace");
                }

                var level = ParseLevel(command.Arguments[1]);
                levels.Set(command.Arguments[0], level);
                reply.Line("log.filter", command.Arguments[0], LogLevelControl.Name(level));
                return;
            default:
                throw new ControlCommandException("expected log.filter [NAMESPACE] LEVEL");
        }
    }

    private void WriteLevels(IControlReply reply)
    {
        reply.Line("log.filter", LogLevelControl.Name(levels.Default));
        foreach (var (ns, level) in levels.Overrides.OrderBy(o => o.Key, StringComparer.Ordinal))
        {
            reply.Line("log.filter", ns, LogLevelControl.Name(level));
        }
    }

    private static LogLevel ParseLevel(string text) =>
        LogLevelControl.TryParse(text, out var level)
            ? level
            : throw new ControlCommandException($"invalid log level '{text}' (trace, debug, info, warning, error, fatal, none)");
}
