using System.Net.Sockets;
using CacheHost.Testing;
using Mono.Unix.Native;

namespace CacheHost.Systemd.Tests;

/// <summary>
/// proxy.stats and snoop.stats on the daemon control socket, against the real program running CacheServer,
/// ClientProxy and Snoop in one process: real distcache traffic moves the counters, the lines have the
/// probe.stats shape (<c>proxy.stats&lt;TAB&gt;name&lt;TAB&gt;value</c>).
/// </summary>
public sealed class RoleStatsCommandTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    // A GET header whose data_len (bytes 12-13) is 0x0900 > 2048: illegal for both roles.
    private static readonly byte[] BadFrame = Convert.FromHexString("0011000000000000020001010900");

    private static readonly string[] ProxyNames =
    [
        "requests.add", "requests.get", "requests.remove", "requests.have", "forwarded", "replies",
        "answers.disconnected", "answers.empty", "inflight", "connections.open", "connections.accepted",
        "connections.rejected", "connections.idle_closed", "link.up", "link.connects", "link.reconnects", "link.losses",
        "errors.malformed_request", "errors.protocol_level", "errors.add_too_short", "errors.malformed_response",
        "errors.unknown_uid", "errors.mismatched_response", "errors.add_refused", "link.request_timeouts",
        "bytes.from_clients", "bytes.to_server", "bytes.from_server", "link.failovers", "link.failbacks",
    ];

    private static readonly string[] SnoopNames =
    [
        "pairs.open", "pairs.total", "pairs.connect_failed", "frames.client_to_server", "frames.server_to_client",
        "bytes.client_to_server", "bytes.server_to_client", "errors.decode", "pairs.timed_out",
    ];

    [Fact]
    public void Proxy_and_snoop_stats_have_the_probe_shape_and_count_real_traffic()
    {
        var dir = Wire.TempDir();
        using var notify = FakeNotifySocket.Abstract();
        using var daemon = DaemonProcess.Start(
        [
            "--CacheHost:Roles:0=CacheServer", "--CacheHost:Roles:1=ClientProxy", "--CacheHost:Roles:2=Snoop",
            $"--CacheHost:CacheServer:Listen:0=UNIX:{dir}/dc.sock",
            $"--CacheHost:ClientProxy:Listen=UNIX:{dir}/proxy.sock", $"--CacheHost:ClientProxy:Server=UNIX:{dir}/dc.sock",
            "--CacheHost:ClientProxy:RetryMs=100",
            $"--CacheHost:Snoop:Listen=UNIX:{dir}/snoop.sock", $"--CacheHost:Snoop:Server=UNIX:{dir}/dc.sock",
            $"--CacheHost:Control:Socket={dir}/control.sock",
        ], new Dictionary<string, string?> { ["NOTIFY_SOCKET"] = notify.NotifySocket });
        notify.WaitFor(m => m.Contains("READY=1"), Timeout, "READY=1");
        using var control = Wire.ConnectUnix($"{dir}/control.sock");

        // Before any traffic: every counter present, in order, zero except the link once it is up.
        var proxy = WaitForStat(control, "proxy.stats", "link.up", "1");
        Assert.Equal(ProxyNames, proxy.Keys);
        Assert.All(proxy, kv => Assert.Equal(kv.Key is "link.up" or "link.connects" ? "1" : "0", kv.Value));
        var snoop = Stats(control, "snoop.stats");
        Assert.Equal(SnoopNames, snoop.Keys);
        Assert.All(snoop.Values, v => Assert.Equal("0", v));

        // ADD (24 bytes), GET, HAVE (15 bytes each); every reply is 15 bytes.
        var vector = DistCacheVectors.Server("add_tiny_ok");
        new DistCacheVectorReplayer(() => Wire.ConnectUnix($"{dir}/proxy.sock")).Replay(vector);
        // The same through Snoop with session id 'b' instead of 'a' (same sizes; 'a' exists now).
        var other = vector with
        {
            Steps = [.. vector.Steps.Select(s => s with { SendHex = s.SendHex.EndsWith("6178", StringComparison.Ordinal) ? s.SendHex[..^4] + "6278" : s.SendHex[..^2] + "62" })],
        };
        new DistCacheVectorReplayer(() => Wire.ConnectUnix($"{dir}/snoop.sock")).Replay(other);

        proxy = WaitForStat(control, "proxy.stats", "connections.open", "0");
        Assert.Equal("1", proxy["requests.add"]);
        Assert.Equal("1", proxy["requests.get"]);
        Assert.Equal("0", proxy["requests.remove"]);
        Assert.Equal("1", proxy["requests.have"]);
        Assert.Equal("3", proxy["forwarded"]);
        Assert.Equal("3", proxy["replies"]);
        Assert.Equal("0", proxy["inflight"]);
        Assert.Equal("1", proxy["connections.accepted"]);
        Assert.Equal("54", proxy["bytes.from_clients"]);
        Assert.Equal("54", proxy["bytes.to_server"]);
        Assert.Equal("45", proxy["bytes.from_server"]);
        Assert.Equal("0", proxy["errors.malformed_request"]);

        snoop = WaitForStat(control, "snoop.stats", "pairs.open", "0");
        Assert.Equal("1", snoop["pairs.total"]);
        Assert.Equal("3", snoop["frames.client_to_server"]);
        Assert.Equal("3", snoop["frames.server_to_client"]);
        Assert.Equal("54", snoop["bytes.client_to_server"]);
        Assert.Equal("45", snoop["bytes.server_to_client"]);
        Assert.Equal("0", snoop["errors.decode"]);

        // A bad frame closes the local connection / the pair and is counted as an error.
        foreach (var path in new[] { $"{dir}/proxy.sock", $"{dir}/snoop.sock" })
        {
            using var bad = Wire.ConnectUnix(path);
            bad.Send(BadFrame);
            DistCacheVectorReplayer.ExpectClosed(bad, Timeout, path);
        }

        proxy = WaitForStat(control, "proxy.stats", "errors.malformed_request", "1");
        Assert.Equal("2", proxy["connections.accepted"]);
        Assert.Equal("3", proxy["forwarded"]); // not forwarded: the shared link survives
        Assert.Equal("1", proxy["link.up"]);
        snoop = WaitForStat(control, "snoop.stats", "errors.decode", "1");
        Assert.Equal("2", snoop["pairs.total"]);

        // Role summaries and the stats lines are part of statedump.
        var dump = Wire.Exchange(control, "statedump");
        Assert.Contains(dump, l => l.StartsWith("role\tClientProxy\t", StringComparison.Ordinal) && l.Contains("link=up inflight=0 clients=", StringComparison.Ordinal));
        Assert.Contains(dump, l => l.StartsWith("role\tSnoop\t", StringComparison.Ordinal) && l.Contains("pairs=0 total=2 errors=1", StringComparison.Ordinal));
        Assert.Contains("proxy.stats\tforwarded\t3", dump);
        Assert.Contains("snoop.stats\terrors.decode\t1", dump);

        daemon.Signal(Signum.SIGTERM);
        Assert.Equal(0, daemon.WaitForExit(Timeout));
    }

    [Fact]
    public void Proxy_without_a_server_counts_empty_answers_and_reports_the_link_down()
    {
        var dir = Wire.TempDir();
        using var notify = FakeNotifySocket.Abstract();
        using var daemon = DaemonProcess.Start(
        [
            "--CacheHost:Roles:0=ClientProxy",
            $"--CacheHost:ClientProxy:Listen=UNIX:{dir}/proxy.sock", $"--CacheHost:ClientProxy:Server=UNIX:{dir}/none.sock",
            $"--CacheHost:Control:Socket={dir}/control.sock",
        ], new Dictionary<string, string?> { ["NOTIFY_SOCKET"] = notify.NotifySocket });
        notify.WaitFor(m => m.Contains("READY=1"), Timeout, "READY=1");

        using (var client = Wire.ConnectUnix($"{dir}/proxy.sock"))
        {
            // GET 'a' (distcache §10.4: no link -> an immediate empty reply, data_len 0).
            client.Send(Convert.FromHexString("001100000000000002000101000161"));
            // The server's GET reply header (vectors: add_tiny_ok) with data_len 0.
            Assert.Equal("0011000001000000020001010000", Convert.ToHexString(DistCacheVectorReplayer.ReadExactly(client, 14, Timeout, "empty reply")).ToLowerInvariant());
        }

        var (code, stdout, _) = ControlSocketTests.RunCtl("--socket", $"{dir}/control.sock", "proxy.stats");
        Assert.Equal(0, code);
        var lines = stdout.TrimEnd('\n').Split('\n');
        Assert.Equal(ProxyNames.Length, lines.Length);
        Assert.All(lines, l => Assert.Matches("^proxy\\.stats\t[a-z_.]+\t[0-9]+$", l));
        Assert.Contains("proxy.stats\trequests.get\t1", lines);
        Assert.Contains("proxy.stats\tanswers.empty\t1", lines);
        Assert.Contains("proxy.stats\tforwarded\t0", lines);
        Assert.Contains("proxy.stats\tlink.up\t0", lines);
        Assert.Contains("proxy.stats\tbytes.from_clients\t15", lines);
    }

    private static Dictionary<string, string> Stats(Socket control, string command)
    {
        var result = new Dictionary<string, string>();
        foreach (var line in Wire.Exchange(control, command))
        {
            var fields = line.Split('\t');
            Assert.Equal(3, fields.Length);
            Assert.Equal(command, fields[0]);
            Assert.Matches("^[0-9]+$", fields[2]);
            result.Add(fields[1], fields[2]);
        }

        return result;
    }

    private static Dictionary<string, string> WaitForStat(Socket control, string command, string name, string value)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (true)
        {
            var stats = Stats(control, command);
            if (stats.GetValueOrDefault(name) == value)
            {
                return stats;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{command} {name} did not become {value}: {string.Join(", ", stats)}");
            }

            Thread.Sleep(50);
        }
    }
}
