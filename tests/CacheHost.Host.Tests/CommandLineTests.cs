using CacheHost.Testing;
using Xunit;

namespace CacheHost.Host.Tests;

/// <summary>The command line as a new user meets it: --version, help of every subcommand, mistakes that must not start the daemon.</summary>
public sealed class CommandLineTests
{
    private static readonly TimeSpan Start = TimeSpan.FromSeconds(60);

    private static string Stream(CacheHostProcess process, string stream) =>
        string.Concat(process.Lines.Where(l => l.StartsWith(stream + ": ", StringComparison.Ordinal)).Select(l => l[(stream.Length + 2)..] + "\n"));

    [Fact]
    public void Version_prints_the_version_and_exits_zero()
    {
        using var process = CacheHostProcess.Start(["--version"]);
        Assert.Equal(0, process.WaitForExit(Start));
        Assert.Matches(@"^cachehost \d+\.\d+\.\d+\S*\n$", Stream(process, "out"));
        Assert.Equal("", Stream(process, "err"));
    }

    [Theory]
    [InlineData("frobnicate")]
    [InlineData("srever")]
    public void An_unknown_subcommand_is_a_usage_error_and_does_not_start_the_daemon(string command)
    {
        using var process = CacheHostProcess.Start([command, "--CacheHost:Control:Enabled=false"]);
        Assert.Equal(1, process.WaitForExit(Start));
        Assert.Equal($"cachehost: unknown command '{command}' (cachehost --help lists the commands)\n", Stream(process, "err"));
        Assert.DoesNotContain("Listening", process.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("run", "usage: cachehost [run]")]
    [InlineData("server", "Usage: dc_server -listen")]
    [InlineData("client", "Usage: cachehost client")]
    [InlineData("snoop", "Usage: cachehost snoop")]
    [InlineData("test", "Usage: cachehost test")]
    [InlineData("ctl", "usage: cachehost ctl")]
    [InlineData("clacks", "usage: cachehost clacks")]
    [InlineData("daemonproxy", "daemonproxy")]
    public void Help_of_every_subcommand_goes_to_stdout_with_exit_zero(string command, string text)
    {
        foreach (var flag in new[] { "--help", "-h" })
        {
            using var process = CacheHostProcess.Start([command, flag]);
            Assert.Equal(0, process.WaitForExit(Start));
            Assert.Contains(text, Stream(process, "out"), StringComparison.Ordinal);
            Assert.Equal("", Stream(process, "err"));
            Assert.DoesNotContain("Listening", process.Output, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("client")]
    [InlineData("snoop")]
    [InlineData("test")]
    public async Task Usage_text_ends_with_a_newline(string command)
    {
        // CacheHostProcess splits lines, so read the raw stream here.
        var start = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        start.ArgumentList.Add(CacheHostProcess.DllPath);
        start.ArgumentList.Add(command);
        start.ArgumentList.Add("-frobnicate");
        using var process = System.Diagnostics.Process.Start(start)!;
        var stderrTask = process.StandardError.ReadToEndAsync();
        _ = await process.StandardOutput.ReadToEndAsync();
        var stderr = await stderrTask;
        await process.WaitForExitAsync();
        Assert.EndsWith("\n", stderr, StringComparison.Ordinal);
        Assert.Contains("Usage: ", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Ctl_without_a_command_is_a_usage_error_and_without_a_daemon_says_so()
    {
        using (var process = CacheHostProcess.Start(["ctl"]))
        {
            Assert.Equal(1, process.WaitForExit(Start));
            Assert.Contains("missing command", Stream(process, "err"), StringComparison.Ordinal);
        }

        var socket = Path.Combine(TestPaths.Directory("ctl"), "control.sock");
        using (var process = CacheHostProcess.Start(["ctl", "--socket", socket, "statedump"]))
        {
            Assert.Equal(2, process.WaitForExit(Start));
            Assert.Equal($"cachehost ctl: no daemon at {socket} (no such socket; is cachehost running? --socket PATH chooses another)\n", Stream(process, "err"));
        }
    }
}
