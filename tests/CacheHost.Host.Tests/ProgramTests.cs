using System.Net.Sockets;
using CacheHost.Protocols.DistCache;
using CacheHost.Testing;
using Xunit;

namespace CacheHost.Host.Tests;

/// <summary>The real program: configuration errors, exit codes, signals, the dc_server command line.</summary>
public sealed class ProgramTests
{
    private static readonly TimeSpan Start = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData("--CacheHost:CacheServer:Capacity=0", "CacheHost:CacheServer:Capacity")]
    [InlineData("--CacheHost:CacheServer:Capacity=lots", "CacheHost:CacheServer:Capacity")]
    [InlineData("--CacheHost:CacheServer:Listen:0=TCP:1234", "CacheHost:CacheServer:Listen:0")]
    [InlineData("--CacheHost:CacheServer:Capasity=5", "Capasity")]
    [InlineData("--CacheHost:CacheServer:Transport:MaxReadBufferSize=8192", "CacheHost:CacheServer:Transport:MaxReadBufferSize")]
    [InlineData("--CacheHost:CacheServer:Transport:SocketMode=999", "CacheHost:CacheServer:Transport:SocketMode")]
    [InlineData("--CacheHost:Roles:0=Nope", "CacheHost:Roles")]
    public void InvalidConfigurationStopsStartUpWithOneClearLineNamingTheKey(string setting, string key)
    {
        using var process = CacheHostProcess.Start(["--CacheHost:Roles:0=CacheServer", $"--CacheHost:CacheServer:Listen:0=UNIX:{TestPaths.Socket("bad")}", setting]);
        Assert.Equal(1, process.WaitForExit(Start));
        var line = process.WaitForLine("^err: cachehost: ", TimeSpan.FromSeconds(1));
        Assert.Contains(key, line);
    }

    [Fact]
    public void AppSettingsFromCacheHostConfigRunTheServerAndSigtermStopsItWithExitZero()
    {
        var dir = TestPaths.Directory("cfg");
        var socket = Path.Combine(dir, "dc.sock");
        var config = Path.Combine(dir, "appsettings.json");
        File.WriteAllText(config, $$"""
            { "CacheHost": { "Roles": [ "CacheServer" ], "CacheServer": { "Listen": [ "UNIX:{{socket}}" ], "Capacity": 64 } } }
            """);
        using var process = CacheHostProcess.Start([], new Dictionary<string, string> { ["CACHEHOST_CONFIG"] = config });
        process.WaitForLine($"Listening on UNIX:{socket}", Start);
        using (var client = Connect(socket))
        {
            Assert.Equal([1], Have(client, "absent"));
        }

        process.Signal(15);
        Assert.Equal(0, process.WaitForExit(Start));
        Assert.False(File.Exists(socket), "the unix socket is removed on a clean stop");
    }

    [Fact]
    public void AFailedBindExitsNonZeroWithTheAddress()
    {
        using var process = CacheHostProcess.Start(["server", "-listen", "UNIX:/nonexistent-dir/x/y.sock"]);
        Assert.NotEqual(0, process.WaitForExit(Start));
        Assert.Contains("UNIX:/nonexistent-dir/x/y.sock", process.Output);
    }

    [Theory]
    [InlineData(new string[0], "Error, must provide -listen")]
    [InlineData(new[] { "-listen" }, "Error, --listen requires an argument")]
    [InlineData(new[] { "-listen", "UNIX:/tmp/x", "-frobnicate" }, "Error, \"-frobnicate\" not recognised")]
    [InlineData(new[] { "-listen", "UNIX:/tmp/x", "-sessions", "0" }, "Error, --sessions given an invalid argument")]
    [InlineData(new[] { "-listen", "UNIX:/tmp/x", "-sessions", "many" }, "Error, --sessions given an invalid argument")]
    [InlineData(new[] { "-listen", "UNIX:/tmp/x", "-progress", "1000001" }, "Error, --progress given an invalid argument")]
    public void DcServerUsageErrorsMatchTheReference(string[] args, string message)
    {
        using var process = CacheHostProcess.Start(["server", .. args]);
        Assert.Equal(1, process.WaitForExit(Start));
        process.WaitForLine(System.Text.RegularExpressions.Regex.Escape(message), TimeSpan.FromSeconds(1));
        process.WaitForLine("Usage: dc_server -listen", TimeSpan.FromSeconds(1));
    }

    [Fact]
    public void DcServerHelpExitsZero()
    {
        using var process = CacheHostProcess.Start(["server", "-h"]);
        Assert.Equal(0, process.WaitForExit(Start));
        Assert.Contains("-sockperms", process.Output);
    }

    [Fact]
    public void DcServerFlagsBecomeConfigurationOfTheSameHost()
    {
        var dir = TestPaths.Directory("dcs");
        var socket = Path.Combine(dir, "s.sock");
        var pidFile = Path.Combine(dir, "pid");
        using var process = CacheHostProcess.Start(["server", "-listen", $"UNIX:{socket}", "-sessions", "100", "-sockperms", "600", "-pidfile", pidFile, "-killable"]);
        process.WaitForLine("capacity 100 sessions, evicting 3 when full", Start);
        process.WaitForLine($"Listening on UNIX:{socket}", Start);
        WaitFor(() => File.Exists(pidFile));
        Assert.Equal(process.Process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), File.ReadAllText(pidFile));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(socket));

        using (var client = Connect(socket))
        {
            AddSession(client, "abc"u8, "data"u8);
            client.Send(Frame(2, DistCacheOperation.Get, "abc"u8.ToArray()));
            Assert.Equal(Hex.Bytes("00110000 01 00000002 00 01 01 0004 64617461"), DistCacheVectorReplayer.ReadExactly(client, 18, Start, "get"));
        }

        // -killable: SIGUSR1 is a clean stop.
        process.Signal(10);
        Assert.Equal(0, process.WaitForExit(Start));
    }

    [Fact]
    public void DcServerWritesTheBareStatsLineToStderrLikeTheReference()
    {
        // distcache §9.3: dc_server prints the stats line on stderr, bare, once the session count changed.
        var socket = TestPaths.Socket("stats");
        using var process = StartAndAddOneSession(["server", "-listen", $"UNIX:{socket}"], socket);
        process.WaitForLine("^err: " + System.Text.RegularExpressions.Regex.Escape(OneSessionStatsLine) + "$", Start);
        AssertStatsLineNotOn("out: ", process);
    }

    [Fact]
    public void TheConfiguredHostLogsTheStatsLineThroughTheLogger()
    {
        // The appsettings-driven host (journald under systemd) keeps the line in its log, with the logger's prefix.
        var socket = TestPaths.Socket("statslog");
        using var process = StartAndAddOneSession(["--CacheHost:Roles:0=CacheServer", $"--CacheHost:CacheServer:Listen:0=UNIX:{socket}"], socket);
        process.WaitForLine(@"^out: \[\d\d:\d\d:\d\d INF\] CacheHost\.Roles\.CacheServer\.CacheServerService: " + System.Text.RegularExpressions.Regex.Escape(OneSessionStatsLine) + "$", Start);
        AssertStatsLineNotOn("err: ", process);
    }

    [Fact]
    public void AFloodOfBadConnectionsWritesABoundedNumberOfLogLines()
    {
        // Issue 21 item 4: one warning per bad connection made 580,000 port scans write 56 MB of log. Now the
        // first Burst are logged, the rest counted into one summary line (written at the latest on stop).
        var socket = TestPaths.Socket("flood");
        using var process = CacheHostProcess.Start(
        [
            "--CacheHost:Roles:0=CacheServer",
            $"--CacheHost:CacheServer:Listen:0=UNIX:{socket}",
            "--CacheHost:CacheServer:Transport:Warnings:Burst=5",
            "--CacheHost:CacheServer:Transport:Warnings:Interval=01:00:00",
        ]);
        process.WaitForLine($"Listening on UNIX:{socket}", Start);
        const int Flood = 300;
        for (var i = 0; i < Flood; i++)
        {
            using var client = Connect(socket);
            client.Send("GET / HTTP/1.0\r\n\r\n"u8);
            client.ReceiveTimeout = 10_000;
            Assert.Equal(0, client.Receive(new byte[16])); // closed by the server, after its warning
        }

        process.Signal(15);
        Assert.Equal(0, process.WaitForExit(Start));
        Assert.Equal(5, process.Lines.Count(l => l.Contains("protocol incompatibility", StringComparison.Ordinal)));
        Assert.Single(process.Lines, l => l.Contains($"{Flood - 5} more ProtocolIncompatible warnings not logged", StringComparison.Ordinal));
    }

    private const string OneSessionStatsLine = "Info, total operations =       1  (+     1), total sessions =     1  (+  1)";

    private static CacheHostProcess StartAndAddOneSession(string[] args, string socket)
    {
        var process = CacheHostProcess.Start(args);
        process.WaitForLine($"Listening on UNIX:{socket}", Start);
        using var client = Connect(socket);
        AddSession(client, "abc"u8, "data"u8);
        return process;
    }

    private static void AssertStatsLineNotOn(string stream, CacheHostProcess process)
    {
        Assert.DoesNotContain(process.Lines, l => l.StartsWith(stream, StringComparison.Ordinal) && l.Contains("total operations", StringComparison.Ordinal));
        process.Signal(15);
        Assert.Equal(0, process.WaitForExit(Start));
    }

    [Fact]
    public void WithoutKillableSigusr1IsIgnored()
    {
        var socket = TestPaths.Socket("nokill");
        using var process = CacheHostProcess.Start(["server", "-listen", $"UNIX:{socket}"]);
        process.WaitForLine($"Listening on UNIX:{socket}", Start);
        process.Signal(10);
        process.Signal(12);
        Thread.Sleep(500);
        Assert.False(process.Process.HasExited);
        using (var client = Connect(socket))
        {
            Assert.Equal([1], Have(client, "x"));
        }

        process.Signal(15);
        Assert.Equal(0, process.WaitForExit(Start));
    }

    [Fact]
    public void TheProgramStartedAsDcServerBehavesAsDcServer()
    {
        var apphost = ProgramUnderTest.Executable;
        Assert.True(File.Exists(apphost), "the cachehost apphost is next to the tests");
        var dir = TestPaths.Directory("alias");
        var alias = Path.Combine(dir, "dc_server");
        File.CreateSymbolicLink(alias, apphost);
        var socket = Path.Combine(dir, "a.sock");
        using var process = CacheHostProcess.Start(["-listen", $"UNIX:{socket}"], fileName: alias);
        process.WaitForLine($"Listening on UNIX:{socket}", Start);
        using (var client = Connect(socket))
        {
            Assert.Equal([1], Have(client, "nothing"));
        }

        process.Signal(15);
        Assert.Equal(0, process.WaitForExit(Start));
    }

    [Fact]
    public void DaemonModeDetachesWritesThePidFileAndKeepsServing()
    {
        var dir = TestPaths.Directory("daemon");
        var socket = Path.Combine(dir, "d.sock");
        var pidFile = Path.Combine(dir, "d.pid");
        using var parent = CacheHostProcess.Start(["server", "-listen", $"UNIX:{socket}", "-daemon", "-pidfile", pidFile]);
        Assert.Equal(0, parent.WaitForExit(Start));
        var pid = int.Parse(File.ReadAllText(pidFile), System.Globalization.CultureInfo.InvariantCulture);
        try
        {
            Assert.NotEqual(parent.Process.Id, pid);
            using var client = Connect(socket);
            Assert.Equal([1], Have(client, "x"));
        }
        finally
        {
            using var daemon = System.Diagnostics.Process.GetProcessById(pid);
            daemon.Kill();
            daemon.WaitForExit(10_000);
        }
    }

    internal static void WaitFor(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met in time");
            Thread.Sleep(20);
        }
    }

    private static void AddSession(Socket client, ReadOnlySpan<byte> id, ReadOnlySpan<byte> data)
    {
        var payload = new byte[8 + id.Length + data.Length];
        AddRequest.Write(payload, 60_000, id, data);
        client.Send(Frame(1, DistCacheOperation.Add, payload));
        Assert.Equal(Hex.Bytes("00110000 01 00000001 00 00 01 0001 00"), DistCacheVectorReplayer.ReadExactly(client, 15, Start, "add"));
    }

    internal static Socket Connect(string path) => InProcessCacheServer.ConnectTo("UNIX:" + path);

    internal static byte[] Frame(uint uid, DistCacheOperation op, byte[] payload)
    {
        var writer = new System.Buffers.ArrayBufferWriter<byte>();
        DistCacheMessageWriter.Write(writer, false, uid, op, payload);
        return writer.WrittenSpan.ToArray();
    }

    internal static byte[] Have(Socket client, string id)
    {
        client.Send(Frame(77, DistCacheOperation.Have, System.Text.Encoding.ASCII.GetBytes(id)));
        return DistCacheVectorReplayer.ReadExactly(client, 15, Start, "have")[14..];
    }
}
