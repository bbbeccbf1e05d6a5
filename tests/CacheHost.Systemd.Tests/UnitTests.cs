using CacheHost.Systemd.Logging;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;

namespace CacheHost.Systemd.Tests;

/// <summary>Environment parsing and level resolution, without a child process.</summary>
public sealed class UnitTests
{
    private static Func<string, string?> Env(params (string Key, string Value)[] values) =>
        key => values.FirstOrDefault(v => v.Key == key).Value;

    [Fact]
    public void LISTEN_FDS_is_taken_only_for_this_pid_and_with_a_matching_name_count()
    {
        var ok = SystemdEnvironment.Capture(Env(("LISTEN_PID", "42"), ("LISTEN_FDS", "2"), ("LISTEN_FDNAMES", "cache:control")), 42, remove: false);
        Assert.Equal([(3, "cache"), (4, "control")], ok.ListenFds);
        Assert.Null(ok.ListenFdsProblem);

        var otherPid = SystemdEnvironment.Capture(Env(("LISTEN_PID", "41"), ("LISTEN_FDS", "1")), 42, remove: false);
        Assert.Empty(otherPid.ListenFds);
        Assert.Contains("LISTEN_PID=41", otherPid.ListenFdsProblem);

        var badNames = SystemdEnvironment.Capture(Env(("LISTEN_PID", "42"), ("LISTEN_FDS", "2"), ("LISTEN_FDNAMES", "one")), 42, remove: false);
        Assert.Empty(badNames.ListenFds);
        Assert.Contains("1 names for 2", badNames.ListenFdsProblem);

        var unnamed = SystemdEnvironment.Capture(Env(("LISTEN_PID", "42"), ("LISTEN_FDS", "1")), 42, remove: false);
        Assert.Equal([(3, "unknown")], unnamed.ListenFds);
    }

    [Fact]
    public void Watchdog_needs_a_positive_timeout_and_our_pid()
    {
        Assert.Equal(TimeSpan.FromSeconds(30), SystemdEnvironment.Capture(Env(("WATCHDOG_USEC", "30000000")), 7, false).WatchdogTimeout);
        Assert.Equal(TimeSpan.FromSeconds(1), SystemdEnvironment.Capture(Env(("WATCHDOG_USEC", "1000000"), ("WATCHDOG_PID", "7")), 7, false).WatchdogTimeout);
        Assert.Null(SystemdEnvironment.Capture(Env(("WATCHDOG_USEC", "1000000"), ("WATCHDOG_PID", "8")), 7, false).WatchdogTimeout);
        Assert.Null(SystemdEnvironment.Capture(Env(("WATCHDOG_USEC", "0")), 7, false).WatchdogTimeout);
        Assert.Null(SystemdEnvironment.Capture(Env(("WATCHDOG_USEC", "x")), 7, false).WatchdogTimeout);
    }

    [Fact]
    public void Capturing_removes_the_variables_children_must_not_inherit()
    {
        var names = new[] { "NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID" };
        foreach (var name in names)
        {
            Environment.SetEnvironmentVariable(name, "1");
        }

        Environment.SetEnvironmentVariable("JOURNAL_STREAM", "1:2");
        var captured = SystemdEnvironment.Capture(Environment.GetEnvironmentVariable, Environment.ProcessId, remove: true);
        Assert.Equal("1", captured.NotifySocket);
        Assert.All(names, n => Assert.Null(Environment.GetEnvironmentVariable(n)));
        // JOURNAL_STREAM stays: children that log to the same stream may use it.
        Assert.Equal("1:2", Environment.GetEnvironmentVariable("JOURNAL_STREAM"));
        Environment.SetEnvironmentVariable("JOURNAL_STREAM", null);

        // Also gone from what a spawned child sees.
        using var child = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("/usr/bin/env") { RedirectStandardOutput = true })!;
        var environment = child.StandardOutput.ReadToEnd();
        Assert.True(child.WaitForExit(10_000));
        Assert.DoesNotContain("NOTIFY_SOCKET=", environment);
        Assert.DoesNotContain("LISTEN_FDS=", environment);
    }

    [Fact]
    public void Log_levels_resolve_by_longest_namespace_and_reload()
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Serilog:MinimumLevel:Default"] = "Warning",
            ["Serilog:MinimumLevel:Override:Microsoft"] = "Error",
            ["Serilog:MinimumLevel:Override:Microsoft.Hosting.Lifetime"] = "Information",
        }).Build();
        var levels = new LogLevelControl();
        levels.Load(config);
        Assert.False(levels.IsEnabled("CacheHost.X", LogLevel.Information));
        Assert.True(levels.IsEnabled("CacheHost.X", LogLevel.Warning));
        Assert.False(levels.IsEnabled("Microsoft.Extensions.Hosting", LogLevel.Warning));
        Assert.True(levels.IsEnabled("Microsoft.Hosting.Lifetime", LogLevel.Information));
        Assert.False(levels.IsEnabled("MicrosoftX", LogLevel.Information));
        Assert.True(levels.IsEnabled("MicrosoftX", LogLevel.Warning)); // "Microsoft" does not match "MicrosoftX"

        levels.Set("CacheHost.X", LogLevel.Debug);
        Assert.True(levels.IsEnabled("CacheHost.X.Y", LogLevel.Debug));
        levels.Load(config); // a reload drops runtime overrides
        Assert.False(levels.IsEnabled("CacheHost.X.Y", LogLevel.Debug));

        var bad = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Serilog:MinimumLevel"] = "loud" }).Build();
        var error = Assert.Throws<FormatException>(() => levels.Load(bad));
        Assert.Contains("Serilog:MinimumLevel", error.Message);
    }
}
