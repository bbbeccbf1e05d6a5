using Mono.Unix.Native;

namespace CacheHost.Systemd.Tests;

/// <summary>
/// The <c>Serilog:*</c> keys the program supports without Serilog.Settings.Configuration (SerilogSettings,
/// docs/systemd.md "Logging"): a File sink from configuration, and unsupported keys stopping start-up by name.
/// </summary>
public sealed class SerilogSettingsTests
{
    private static readonly TimeSpan Start = TimeSpan.FromSeconds(30);

    [Fact]
    public void A_File_sink_from_configuration_receives_the_log_with_its_template_and_properties()
    {
        var dir = Wire.TempDir();
        var log = Path.Combine(dir, "cachehost.log");
        using var notify = FakeNotifySocket.Abstract();
        using var daemon = DaemonProcess.StartProbe(NotifyTests.ProbeArgs(dir,
            "--Serilog:WriteTo:0:Name=File",
            $"--Serilog:WriteTo:0:Args:path={log}",
            "--Serilog:WriteTo:0:Args:outputTemplate=[{Site}] {Level:u3} {Message:lj}{NewLine}",
            "--Serilog:WriteTo:0:Args:restrictedToMinimumLevel=Information",
            "--Serilog:Properties:Site=edge-1",
            "--Serilog:Enrich:0=FromLogContext"), new Dictionary<string, string?> { ["NOTIFY_SOCKET"] = notify.NotifySocket });
        notify.WaitForReady(Start);
        daemon.Signal(Signum.SIGTERM);
        Assert.Equal(0, daemon.WaitForExit(Start));

        var text = File.ReadAllText(log);
        Assert.Contains($"[edge-1] INF Listening on UNIX:{dir}/probe.sock", text);
        Assert.Contains("[edge-1] INF Ready: Probe UNIX:", text);
        Assert.Contains("Listening on UNIX:", daemon.Output); // the console sink is still there
    }

    [Fact]
    public void A_Serilog_section_this_program_does_not_read_is_warned_about_and_ignored()
    {
        // Like a misspelt CacheHost key (issue 19): one warning naming it, and the daemon starts.
        var dir = Wire.TempDir();
        using var notify = FakeNotifySocket.Abstract();
        using var daemon = DaemonProcess.StartProbe(NotifyTests.ProbeArgs(dir, "--Serilog:Filter:0:Name=ByExcluding"),
            new Dictionary<string, string?> { ["NOTIFY_SOCKET"] = notify.NotifySocket });
        notify.WaitForReady(Start);
        daemon.Signal(Signum.SIGTERM);
        Assert.Equal(0, daemon.WaitForExit(Start));
        Assert.Contains("Unknown configuration key Serilog:Filter ", daemon.Output);
    }

    [Theory]
    [InlineData("--Serilog:WriteTo:0:Name=Seq", "Serilog:WriteTo:0:Name: 'Seq' is not a supported sink")]
    [InlineData("--Serilog:WriteTo:0:Name=File", "Serilog:WriteTo:0:Args:path: required")]
    [InlineData("--Serilog:WriteTo:0:Args:rollingInterval=Fortnight", "Serilog:WriteTo:0:Args:rollingInterval: 'Fortnight' is not valid")]
    [InlineData("--Serilog:Enrich:0=WithMachineName", "Serilog:Enrich:0: 'WithMachineName' is not supported")]
    public void An_unsupported_Serilog_key_stops_start_up_naming_it(string setting, string expected)
    {
        var dir = Wire.TempDir();
        var args = NotifyTests.ProbeArgs(dir, setting);
        if (setting.Contains("rollingInterval", StringComparison.Ordinal))
        {
            args = [.. args, "--Serilog:WriteTo:0:Name=File", $"--Serilog:WriteTo:0:Args:path={dir}/x.log"];
        }

        using var daemon = DaemonProcess.StartProbe(args);
        Assert.Equal(1, daemon.WaitForExit(Start));
        Assert.Contains(expected, daemon.Output);
    }
}
