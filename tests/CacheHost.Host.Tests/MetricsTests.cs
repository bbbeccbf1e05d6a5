using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using CacheHost.Protocols.DistCache;
using CacheHost.Roles.CacheServer;
using CacheHost.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Xunit;
using static CacheHost.Host.Tests.CacheStatsControlTests;

namespace CacheHost.Host.Tests;

/// <summary>
/// Issue 18's metrics: the meters under real traffic on real sockets, the OTLP export to a collector on
/// loopback, and the control socket's version, uptime, memory and latency figures.
/// </summary>
public sealed class MetricsTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task MeterListenerSeesEveryInstrumentChangeUnderLoad()
    {
        var socket = TestPaths.Socket("metrics");
        using var host = HostFactory.Build(
        [
            "--CacheHost:Roles:0=CacheServer",
            $"--CacheHost:CacheServer:Listen:0=UNIX:{socket}",
            "--CacheHost:CacheServer:Capacity=4",
            "--CacheHost:CacheServer:IdleTimeout=00:00:02",
            "--CacheHost:CacheServer:Transport:MaxConnections=2",
            "--CacheHost:Metrics:Enabled=true",
        ], useAppSettings: false);
        using var collector = new Collector(host);
        await host.StartAsync();
        try
        {
            var service = host.Services.GetRequiredService<CacheServerService>();
            var before = collector.Snapshot();
            Assert.Contains("cachehost.cacheserver.operations", before.Keys);
            Assert.Contains("cachehost.process.gc.collections", before.Keys);

            using (var client = InProcessCacheServer.ConnectTo("UNIX:" + socket))
            {
                // One session expires at once; then six in a store of four: two evictions (the soonest to expire).
                Add(client, 1, 1, "short"u8, "x"u8);
                WaitFor(() => service.Snapshot().Any(s => s.Name == "expirations" && s.Value > 0), "the expiry");
                for (uint i = 0; i < 6; i++)
                {
                    Add(client, i + 2, 60_000, Encoding.ASCII.GetBytes($"id{i}"), "data"u8);
                }

                Exchange(client, 8, DistCacheOperation.Get, "id5"u8.ToArray(), 18); // hit
                Exchange(client, 9, DistCacheOperation.Get, "nope"u8.ToArray(), 15); // miss
                Exchange(client, 10, DistCacheOperation.Have, "id5"u8.ToArray(), 15);
                Exchange(client, 11, DistCacheOperation.Remove, "id4"u8.ToArray(), 15);
                client.Send("GET / HTTP/1.0\r\n\r\n"u8.ToArray()); // a protocol error closes it
                WaitFor(() => service.Statistics.TotalProtocolErrors > 0 && service.Statistics.ConnectionsOpen.Value == 0, "the protocol error");
            }

            GC.Collect(); // the process meter's collections

            // Two connections fill MaxConnections; the third is refused. They then time out idle.
            using (var second = InProcessCacheServer.ConnectTo("UNIX:" + socket))
            using (var third = InProcessCacheServer.ConnectTo("UNIX:" + socket))
            using (var refused = InProcessCacheServer.ConnectTo("UNIX:" + socket))
            {
                WaitFor(() => service.Servers.Sum(s => s.RejectedConnections) > 0, "a refused connection");
                WaitFor(() => service.Statistics.ConnectionsTimedOut.Value > 0 && service.Statistics.ConnectionsOpen.Value == 0, "the idle timeouts");
            }

            using (var open = InProcessCacheServer.ConnectTo("UNIX:" + socket))
            {
                WaitFor(() => service.Statistics.ConnectionsOpen.Value > 0, "an open connection");
                var after = collector.Snapshot();
                foreach (var (name, value) in after)
                {
                    if (name == "cachehost.cacheserver.sessions.capacity")
                    {
                        Assert.Equal(4, value);
                        continue;
                    }

                    if (name is "cachehost.cacheserver.connections.open" or "cachehost.cacheserver.sessions")
                    {
                        // Gauges: connections are open now, sessions are stored now; both were 0 before.
                        Assert.True(value > 0, $"{name}: {value}");
                    }

                    Assert.True(before.TryGetValue(name, out var old) && old != value || !before.ContainsKey(name) && value != 0, $"{name} did not change: {value}");
                }

                // The instruments read the same counters as cache.stats.
                var stats = service.Snapshot().ToDictionary(s => s.Name, s => s.Value);
                Assert.Equal(stats["hits"], after["cachehost.cacheserver.hits"]);
                Assert.Equal(stats["misses"], after["cachehost.cacheserver.misses"]);
                Assert.Equal(stats["ops.total"], after["cachehost.cacheserver.operations"]);
                Assert.Equal(stats["evictions"], after["cachehost.cacheserver.evictions"]);
                Assert.Equal(stats["latency.count"], after["cachehost.cacheserver.request.duration"]);
                Assert.Equal(2, collector.Tagged("cachehost.cacheserver.operations", "kind", "get"));
                Assert.Equal(1, collector.Tagged("cachehost.cacheserver.operations", "result", "not_ok")); // the miss
                Assert.Equal(7, collector.Tagged("cachehost.cacheserver.operations", "kind", "add"));
                Assert.Equal(2, after["cachehost.cacheserver.evictions"]);
                foreach (var expected in new[] { "hits", "misses", "io", "connections.accepted", "connections.rejected", "connections.timed_out", "protocol_errors", "evictions", "expirations", "store.bytes", "request.duration" })
                {
                    Assert.Contains("cachehost.cacheserver." + expected, after.Keys);
                }

                foreach (var expected in new[] { "gc.collections", "gc.heap", "gc.allocated", "memory.resident", "uptime" })
                {
                    Assert.Contains("cachehost.process." + expected, after.Keys);
                }
            }
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact]
    public async Task ProxyMetersFollowTrafficThroughTheProxy()
    {
        var dir = TestPaths.Directory("metrics-proxy");
        var server = Path.Combine(dir, "dc.sock");
        var proxy = Path.Combine(dir, "proxy.sock");
        using var host = HostFactory.Build(
        [
            "--CacheHost:Roles:0=CacheServer",
            "--CacheHost:Roles:1=ClientProxy",
            $"--CacheHost:CacheServer:Listen:0=UNIX:{server}",
            $"--CacheHost:ClientProxy:Listen=UNIX:{proxy}",
            $"--CacheHost:ClientProxy:Server=UNIX:{server}",
            "--CacheHost:Metrics:Enabled=true",
        ], useAppSettings: false);
        using var collector = new Collector(host);
        await host.StartAsync();
        try
        {
            WaitFor(() => collector.Snapshot().GetValueOrDefault("cachehost.clientproxy.link.up") == 1, "the proxy's server link");
            var before = collector.Snapshot();
            using (var client = InProcessCacheServer.ConnectTo("UNIX:" + proxy))
            {
                Add(client, 1, 60_000, "id"u8, "abc"u8);
                Exchange(client, 2, DistCacheOperation.Get, "id"u8.ToArray(), 17);
            }

            var after = collector.Snapshot();
            Assert.Equal(1, after["cachehost.clientproxy.link.up"]);
            Assert.Equal(2, after["cachehost.clientproxy.requests"]);
            Assert.Equal(2, after["cachehost.clientproxy.forwarded"]);
            Assert.Equal(2, after["cachehost.clientproxy.replies"]);
            Assert.True(after["cachehost.clientproxy.io"] > before["cachehost.clientproxy.io"]);
            Assert.Equal(2, after["cachehost.cacheserver.operations"]); // the server behind it saw the same two
            foreach (var name in new[] { "inflight", "link.connects", "link.losses", "connections.open", "connections.accepted", "connections.rejected", "protocol_errors", "answers.local", "link.request_timeouts" })
            {
                Assert.Contains("cachehost.clientproxy." + name, after.Keys);
            }
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact]
    public async Task MetricsOffCreatesNoMeter()
    {
        var socket = TestPaths.Socket("metrics-off");
        using var host = HostFactory.Build(["--CacheHost:Roles:0=CacheServer", $"--CacheHost:CacheServer:Listen:0=UNIX:{socket}"], useAppSettings: false);
        using var collector = new Collector(host);
        await host.StartAsync();
        try
        {
            using (var client = InProcessCacheServer.ConnectTo("UNIX:" + socket))
            {
                Exchange(client, 1, DistCacheOperation.Get, "nope"u8.ToArray(), 15);
            }

            Assert.Empty(collector.Snapshot());
            // The latency the stats always keep is there without the meter.
            Assert.Equal(1, host.Services.GetRequiredService<CacheServerService>().Statistics.Latency.Count);
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact]
    public void OtlpExporterSendsTheMetersToACollector()
    {
        using var collector = new OtlpCollector();
        var dir = TestPaths.Directory("otlp");
        var socket = Path.Combine(dir, "dc.sock");
        using var process = CacheHostProcess.Start(
        [
            "--CacheHost:Roles:0=CacheServer",
            $"--CacheHost:CacheServer:Listen:0=UNIX:{socket}",
            "--CacheHost:Metrics:Enabled=true",
            $"--CacheHost:Metrics:OtlpEndpoint=http://127.0.0.1:{collector.Port}/v1/metrics",
            "--CacheHost:Metrics:ExportInterval=00:00:00.2",
        ], new Dictionary<string, string> { ["NO_PROXY"] = "127.0.0.1", ["no_proxy"] = "127.0.0.1", ["HTTP_PROXY"] = "", ["http_proxy"] = "" });
        process.WaitForLine($"Listening on UNIX:{socket}", Limit);
        using (var client = InProcessCacheServer.ConnectTo("UNIX:" + socket))
        {
            Exchange(client, 1, DistCacheOperation.Get, "nope"u8.ToArray(), 15);
        }

        // An OTLP/HTTP protobuf export request carries the instrument names as plain UTF-8 strings.
        var body = collector.WaitFor("cachehost.cacheserver.request.duration", Limit);
        Assert.Contains("/v1/metrics", collector.RequestLine, StringComparison.Ordinal);
        Assert.Contains("cachehost.cacheserver.operations", body, StringComparison.Ordinal);
        Assert.Contains("cachehost.process.memory.resident", body, StringComparison.Ordinal);
        process.Signal(15);
        Assert.Equal(0, process.WaitForExit(Limit));
    }

    [Fact]
    public void StatedumpShowsVersionUptimeAndMemoryAndCacheStatsTheLatency()
    {
        using var process = StartServer("status", "--CacheHost:CacheServer:Capacity=64", out var socket, out var control);
        using (var client = InProcessCacheServer.ConnectTo("UNIX:" + socket))
        {
            Add(client, 1, 60_000, "id"u8, "abc"u8);
            Exchange(client, 2, DistCacheOperation.Get, "id"u8.ToArray(), 17);
        }

        var host = ControlExchange(control, "statedump", "echo\tdone")
            .Where(l => l.StartsWith("host\t", StringComparison.Ordinal))
            .Select(l => l.Split('\t'))
            .ToDictionary(f => f[1], f => f[2]);
        Assert.Matches(@"^\d+\.\d+", host["version"]);
        Assert.True(long.Parse(host["uptime_s"], System.Globalization.CultureInfo.InvariantCulture) >= 0);
        Assert.True(long.Parse(host["rss_bytes"], System.Globalization.CultureInfo.InvariantCulture) > 1 << 20, host["rss_bytes"]);
        Assert.True(long.Parse(host["gc_heap_bytes"], System.Globalization.CultureInfo.InvariantCulture) > 0, host["gc_heap_bytes"]);

        var stats = StatsOf(ControlExchange(control, "cache.stats", "echo\tdone"));
        Assert.Equal(stats["ops.total"], stats["latency.count"]);
        Assert.True(stats["latency.p50_us"] <= stats["latency.p99_us"] && stats["latency.p99_us"] <= stats["latency.max_us"]);
        Assert.True(stats["latency.p90_us"] <= stats["latency.p999_us"]);
        process.Signal(15);
        Assert.Equal(0, process.WaitForExit(Limit));
    }

    private static void WaitFor(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + Limit;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out waiting for " + what);
            Thread.Sleep(20);
        }
    }

    /// <summary>
    /// A MeterListener on the <c>CacheHost.*</c> meters of one host: observable instruments summed over their tags
    /// at each snapshot, the histogram counted as its measurements arrive.
    /// </summary>
    private sealed class Collector : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly Dictionary<string, double> _current = [];
        private readonly List<(string Name, KeyValuePair<string, object?>[] Tags, double Value)> _tagged = [];
        private long _histogramCount;

        public Collector(IHost host)
        {
            _ = host;
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name.StartsWith("CacheHost.", StringComparison.Ordinal))
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Measured(instrument, value, tags));
            _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => Measured(instrument, value, tags));
            _listener.SetMeasurementEventCallback<int>((instrument, value, tags, _) => Measured(instrument, value, tags));
            _listener.Start();
        }

        public Dictionary<string, double> Snapshot()
        {
            lock (_current)
            {
                _current.Clear();
                _tagged.Clear();
            }

            _listener.RecordObservableInstruments();
            lock (_current)
            {
                var result = new Dictionary<string, double>(_current);
                var histogram = Interlocked.Read(ref _histogramCount);
                if (histogram > 0)
                {
                    result["cachehost.cacheserver.request.duration"] = histogram;
                }

                return result;
            }
        }

        /// <summary>The last snapshot's sum of <paramref name="name"/> over the measurements tagged <paramref name="tag"/>=<paramref name="value"/>.</summary>
        public double Tagged(string name, string tag, string value)
        {
            lock (_current)
            {
                return _tagged.Where(t => t.Name == name && t.Tags.Any(k => k.Key == tag && Equals(k.Value, value))).Sum(t => t.Value);
            }
        }

        public void Dispose() => _listener.Dispose();

        private void Measured(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            if (!instrument.IsObservable)
            {
                Interlocked.Increment(ref _histogramCount);
                return;
            }

            lock (_current)
            {
                _current[instrument.Name] = _current.GetValueOrDefault(instrument.Name) + value;
                _tagged.Add((instrument.Name, tags.ToArray(), value));
            }
        }
    }

    /// <summary>
    /// An OTLP/HTTP collector on loopback: answers every request 200 with an empty body and keeps what arrived.
    /// </summary>
    private sealed class OtlpCollector : IDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource _stop = new();
        private readonly StringBuilder _received = new();

        public OtlpCollector()
        {
            _listener.Start();
            _ = Task.Run(AcceptAsync);
        }

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        public string RequestLine { get; private set; } = "";

        public string WaitFor(string text, TimeSpan limit)
        {
            var deadline = DateTime.UtcNow + limit;
            while (true)
            {
                lock (_received)
                {
                    var all = _received.ToString();
                    if (all.Contains(text, StringComparison.Ordinal))
                    {
                        return all;
                    }
                }

                Assert.True(DateTime.UtcNow < deadline, $"the collector did not receive '{text}'");
                Thread.Sleep(50);
            }
        }

        public void Dispose()
        {
            _stop.Cancel();
            _listener.Stop();
        }

        private async Task AcceptAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                TcpClient client;
                try
                {
                    client = await _listener.AcceptTcpClientAsync(_stop.Token);
                }
                catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
                {
                    return;
                }

                _ = Task.Run(() => ServeAsync(client));
            }
        }

        private async Task ServeAsync(TcpClient client)
        {
            using var _ = client;
            var stream = client.GetStream();
            var buffer = new byte[64 * 1024];
            var pending = new List<byte>();
            try
            {
                while (true)
                {
                    // One request: headers up to the blank line, then Content-Length bytes of protobuf.
                    var headerEnd = -1;
                    while ((headerEnd = IndexOf(pending, "\r\n\r\n"u8)) < 0)
                    {
                        var n = await stream.ReadAsync(buffer, _stop.Token);
                        if (n == 0)
                        {
                            return;
                        }

                        pending.AddRange(buffer.AsSpan(0, n));
                    }

                    var headers = Encoding.Latin1.GetString(pending.GetRange(0, headerEnd).ToArray());
                    var length = headers.Split("\r\n")
                        .Where(h => h.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))
                        .Select(h => int.Parse(h["Content-Length:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture))
                        .FirstOrDefault();
                    var total = headerEnd + 4 + length;
                    while (pending.Count < total)
                    {
                        var n = await stream.ReadAsync(buffer, _stop.Token);
                        if (n == 0)
                        {
                            return;
                        }

                        pending.AddRange(buffer.AsSpan(0, n));
                    }

                    lock (_received)
                    {
                        RequestLine = headers.Split("\r\n")[0];
                        _received.Append(Encoding.Latin1.GetString(pending.GetRange(headerEnd + 4, length).ToArray()));
                    }

                    pending.RemoveRange(0, total);
                    await stream.WriteAsync("HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"u8.ToArray(), _stop.Token);
                }
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException or SocketException or ObjectDisposedException)
            {
            }
        }

        private static int IndexOf(List<byte> data, ReadOnlySpan<byte> pattern)
        {
            for (var i = 0; i + pattern.Length <= data.Count; i++)
            {
                var match = true;
                for (var j = 0; j < pattern.Length && match; j++)
                {
                    match = data[i + j] == pattern[j];
                }

                if (match)
                {
                    return i;
                }
            }

            return -1;
        }
    }
}
