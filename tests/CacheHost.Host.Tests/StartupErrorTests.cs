using System.Net;
using System.Net.Sockets;
using CacheHost.Testing;
using Xunit;

namespace CacheHost.Host.Tests;

/// <summary>
/// The real program, started as a user would start it wrongly: every start-up error is one line on stderr
/// naming the key or file and the reason, exit 1, no stack trace, and nothing reports ready.
/// </summary>
public sealed class StartupErrorTests
{
    private static readonly TimeSpan Start = TimeSpan.FromSeconds(60);

    private static string[] ErrorLines(CacheHostProcess process) =>
        process.Lines.Where(l => l.StartsWith("err: ", StringComparison.Ordinal)).ToArray();

    /// <summary>Exit 1, exactly one stderr line containing every part, no stack trace, never ready.</summary>
    private static string AssertOneLineFailure(CacheHostProcess process, params string[] parts)
    {
        Assert.Equal(1, process.WaitForExit(Start));
        var errors = ErrorLines(process);
        Assert.True(errors.Length == 1, "expected one stderr line:\n" + process.Output);
        foreach (var part in parts)
        {
            Assert.Contains(part, errors[0], StringComparison.Ordinal);
        }

        Assert.DoesNotContain(process.Lines, l => l.Contains("   at ", StringComparison.Ordinal));
        Assert.DoesNotContain(process.Lines, l => l.Contains("Ready: ", StringComparison.Ordinal));
        return errors[0];
    }

    [Fact]
    public void Malformed_json_in_CACHEHOST_CONFIG_is_one_line_naming_the_file_and_exit_1()
    {
        var config = Path.Combine(TestPaths.Directory("json"), "bad.json");
        File.WriteAllText(config, "{ \"CacheHost\": { \"Roles\": [ \"CacheServer\" ], }\n");
        using var process = CacheHostProcess.Start([], new Dictionary<string, string> { ["CACHEHOST_CONFIG"] = config });
        AssertOneLineFailure(process, "cachehost: configuration error: ", config, "LineNumber");
    }

    [Fact]
    public void A_missing_CACHEHOST_CONFIG_file_is_one_line_and_exit_1()
    {
        var config = Path.Combine(TestPaths.Directory("json"), "absent.json");
        using var process = CacheHostProcess.Start([], new Dictionary<string, string> { ["CACHEHOST_CONFIG"] = config });
        AssertOneLineFailure(process, "CACHEHOST_CONFIG=" + config, "no such file");
    }

    [Fact]
    public void An_unknown_user_stops_start_up_before_ready_with_exit_1()
    {
        var socket = TestPaths.Socket("user");
        using var process = CacheHostProcess.Start(["server", "-listen", $"UNIX:{socket}", "-user", "nosuchuser-cachehost"]);
        AssertOneLineFailure(process, "CacheHost:Process:User", "nosuchuser-cachehost");
    }

    [Fact]
    public void A_pid_file_in_a_missing_directory_stops_start_up_before_ready_with_exit_1()
    {
        var socket = TestPaths.Socket("pid");
        var pidFile = Path.Combine(TestPaths.Directory("pid"), "missing", "x.pid");
        using var process = CacheHostProcess.Start(["server", "-listen", $"UNIX:{socket}", "-pidfile", pidFile]);
        AssertOneLineFailure(process, "CacheHost:Process:PidFile", pidFile, "no such directory");
    }

    [Fact]
    public void A_second_instance_on_a_tcp_port_in_use_fails_with_one_line_and_the_first_keeps_its_clients()
    {
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }

        var address = $"IP:127.0.0.1:{port}";
        using var first = CacheHostProcess.Start(["server", "-listen", address]);
        first.WaitForLine("Ready: ", Start);
        using var second = CacheHostProcess.Start(["server", "-listen", address]);
        AssertOneLineFailure(second, "CacheHost:CacheServer:Listen:0", address, "address already in use");

        // Every connection still reaches the first instance (with SO_REUSEPORT the kernel would have
        // split them between two caches while both were up).
        using (var client = InProcessCacheServer.ConnectTo(address))
        {
            Assert.Equal([1], ProgramTests.Have(client, "x"));
        }

        first.Signal(15);
        Assert.Equal(0, first.WaitForExit(Start));
    }

    [Fact]
    public void A_unix_path_in_a_missing_directory_says_so()
    {
        var path = Path.Combine(TestPaths.Directory("nodir"), "missing", "x.sock");
        using var process = CacheHostProcess.Start(["server", "-listen", $"UNIX:{path}"]);
        var line = AssertOneLineFailure(process, "CacheHost:CacheServer:Listen:0", $"UNIX:{path}", "no such directory " + Path.GetDirectoryName(path));
        Assert.DoesNotContain("Cannot assign requested address", line, StringComparison.Ordinal);
    }

    [Fact]
    public void An_unresolvable_host_names_the_key_and_the_host()
    {
        using var process = CacheHostProcess.Start(["--CacheHost:Roles:0=CacheServer", "--CacheHost:CacheServer:Listen=IP:no-such-host.invalid:9001"]);
        AssertOneLineFailure(process, "CacheHost:CacheServer:Listen:0", "cannot resolve host 'no-such-host.invalid'");
    }

    [Fact]
    public void Misspelt_keys_are_warned_about_one_line_each_and_the_daemon_still_starts()
    {
        var dir = TestPaths.Directory("typo");
        var socket = Path.Combine(dir, "t.sock");
        var config = Path.Combine(dir, "appsettings.json");
        File.WriteAllText(config, $$"""
            { "CacheHsot": { "Roles": [ "Clacks" ] },
              "CacheHost": { "Rolse": [ "Snoop" ], "CacheServer": { "Listen": "UNIX:{{socket}}" } },
              "Serilog": { "MinimumLevle": { "Default": "Debug" } } }
            """);
        using var process = CacheHostProcess.Start(["--CacheHost:Control:Enabled=false", $"--Control:Socket={dir}/c.sock"], new Dictionary<string, string> { ["CACHEHOST_CONFIG"] = config });
        process.WaitForLine("Ready: ", Start);
        foreach (var (key, suggestion) in new[] { ("CacheHsot", "CacheHost"), ("CacheHost:Rolse", "Roles"), ("Serilog:MinimumLevle", "MinimumLevel"), ("Control", null) })
        {
            var lines = process.Lines.Where(l => l.Contains($"Unknown configuration key {key} ", StringComparison.Ordinal)).ToArray();
            Assert.True(lines.Length == 1, $"one warning for {key}:\n{process.Output}");
            if (suggestion is not null)
            {
                Assert.Contains($"did you mean {suggestion}?", lines[0], StringComparison.Ordinal);
            }
        }

        process.Signal(15);
        Assert.Equal(0, process.WaitForExit(Start));
    }
}
