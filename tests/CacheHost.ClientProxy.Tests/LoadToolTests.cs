using System.Text.Json;
using CacheHost.LoadTool;
using CacheHost.Testing;
using Xunit;

namespace CacheHost.ClientProxy.Tests;

/// <summary>The load tool (dc_test): its verification passes against a correct server and catches wrong answers.</summary>
public sealed class LoadToolTests
{
    private static (int Exit, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var exit = LoadToolCommand.Run(args, stdout, stderr);
        return (exit, stdout.ToString(), stderr.ToString());
    }

    [Theory]
    [InlineData("-persistent")]
    [InlineData("-clients", "3")]
    [InlineData("-persistent", "-clients", "4", "-pipeline", "16")]
    [InlineData("-persistent", "-clients", "4", "-threads", "1")]
    [InlineData("-clients", "3", "-threads", "2")]
    public async Task BarragePassesAgainstTheRealServer(params string[] extra)
    {
        await using var server = await InProcessCacheServer.StartAsync();
        var (exit, output, errors) = Run(["-connect", server.Address, "-sessions", "20", "-ops", "3000", "-datamin", "5", "-datamax", "4096", "-quiet", .. extra]);
        Assert.True(exit == 0, errors + output);
        Assert.Contains("Info, all tests complete", errors);
        Assert.Matches(@"Info, \d+ sessions generated, will run \d+ random tests", errors);
        Assert.Contains("ops/s", output);
        Assert.Contains("p99.9", output);
    }

    [Fact]
    public async Task CatchesAServerThatCorruptsSessionData()
    {
        using var server = FakeDistCacheServer.WithStore(data =>
        {
            var copy = data.ToArray();
            copy[^1] ^= 0x40;
            return copy;
        });
        await Task.Yield();
        var (exit, _, errors) = Run("-connect", server.Address, "-sessions", "5", "-ops", "5000", "-persistent", "-quiet");
        Assert.Equal(1, exit);
        Assert.Contains("Error, received mismatched session", errors);
        Assert.Matches(@"Info, \d+ tests succeeded before the first failure", errors);
    }

    [Fact]
    public async Task CatchesAServerThatClaimsEverythingIsPresent()
    {
        using var server = new FakeDistCacheServer((op, _) => op == CacheHost.Protocols.DistCache.DistCacheOperation.Get ? [0x01] : [0x00]);
        await Task.Yield();
        var (exit, _, errors) = Run("-connect", server.Address, "-ops", "2000", "-quiet");
        Assert.Equal(1, exit);
        Assert.Matches(@"Error, (add succeeded and shouldn't have!|remove succeeded and shouldn't have!|have succeeded and shouldn't have!|get failed!)", errors);
    }

    [Fact]
    public async Task MixModeReportsJson()
    {
        await using var server = await InProcessCacheServer.StartAsync(capacity: 20000);
        var (exit, output, errors) = Run("-connect", server.Address, "-mix", "get:4,add:1", "-valuesize", "1024", "-keys", "500", "-clients", "4", "-pipeline", "4", "-ops", "2000", "-threads", "2", "-json");
        Assert.True(exit == 0, errors + output);
        using var json = JsonDocument.Parse(output.Trim());
        Assert.Equal(2, json.RootElement.GetProperty("threads").GetInt32());
        Assert.Equal(8000, json.RootElement.GetProperty("ops").GetInt64());
        Assert.True(json.RootElement.GetProperty("opsPerSecond").GetDouble() > 0);
        Assert.True(json.RootElement.GetProperty("latencyMicroseconds").GetProperty("p99").GetInt64() >= 0);
    }

    [Fact]
    public async Task MixWeightsReachTheServerAsAskedWithConnectionsPerOperation()
    {
        // The non-persistent mix path once mapped MixOperation numbers onto DistCacheOperation numbers.
        await using var server = await InProcessCacheServer.StartAsync(capacity: 20000);
        var (exit, output, errors) = Run("-connect", server.Address, "-mix", "get:4,add:1", "-valuesize", "64", "-keys", "100", "-clients", "2", "-ops", "1000", "-quiet");
        Assert.True(exit == 0, errors + output);
        var gets = server.Service.Statistics.Operations(CacheHost.Protocols.DistCache.DistCacheOperation.Get);
        var adds = server.Service.Statistics.Operations(CacheHost.Protocols.DistCache.DistCacheOperation.Add);
        Assert.Equal(2000, gets + adds);
        Assert.InRange(gets, 1400, 1800); // 80 % expected
    }

    [Fact]
    public async Task DurationBoundsTheRun()
    {
        await using var server = await InProcessCacheServer.StartAsync();
        var started = DateTime.UtcNow;
        var (exit, output, errors) = Run("-connect", server.Address, "-duration", "1", "-persistent", "-quiet");
        Assert.True(exit == 0, errors + output);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task EachProgressLineShowsThatSecondsPercentiles()
    {
        await using var server = await InProcessCacheServer.StartAsync();
        var (exit, output, errors) = Run("-connect", server.Address, "-duration", "2.5", "-persistent");
        Assert.True(exit == 0, errors + output);
        var lines = output.Split('\n').Where(l => l.StartsWith('[')).ToList();
        Assert.NotEmpty(lines);
        foreach (var line in lines)
        {
            Assert.Matches(@"^\[\s*\d+\.\d s\]\s+[\d,]+ ops\s+[\d,]+ ops/s\s+p50\s+\d+ us\s+p99\s+\d+ us\s*$", line);
        }
    }

    [Fact]
    public async Task WarmupIsLeftOutOfTheReportAndMarkedInTheProgress()
    {
        await using var server = await InProcessCacheServer.StartAsync();
        var (exit, output, errors) = Run("-connect", server.Address, "-warmup", "1", "-duration", "1", "-persistent", "-json");
        Assert.True(exit == 0, errors + output);
        using var json = JsonDocument.Parse(output.Trim());
        var measured = json.RootElement.GetProperty("ops").GetInt64();
        Assert.Equal(1, json.RootElement.GetProperty("warmupSeconds").GetDouble());
        Assert.True(measured > 0, output);
        // The server answered the warm-up's requests too; the report counts only those after it.
        Assert.True(server.Service.Statistics.TotalOperations > measured, $"{server.Service.Statistics.TotalOperations} vs {measured}");
        Assert.True(json.RootElement.GetProperty("seconds").GetDouble() < 30);

        // The first progress line (at 1 s) falls in a 3 s warm-up.
        (exit, output, errors) = Run("-connect", server.Address, "-warmup", "3", "-duration", "0.5", "-persistent");
        Assert.True(exit == 0, errors + output);
        Assert.EndsWith("(warm-up)", output.Split('\n').First(l => l.StartsWith('[')).TrimEnd());
        Assert.Contains("warm-up 3 s excluded", output);
    }

    [Fact]
    public async Task FixedRateCountsAStallFromEachRequestsScheduledStart()
    {
        // The server stalls 600 ms once. At 200 requests/s about 120 requests were due meanwhile: measured from
        // their scheduled starts they wait up to 600 ms, so the 90th percentile is hundreds of ms. Timed from the
        // moment each was actually sent (coordinated omission), only one request would show the stall.
        var answered = 0;
        using var server = new FakeDistCacheServer((_, _) =>
        {
            if (Interlocked.Increment(ref answered) == 50)
            {
                Thread.Sleep(600);
            }

            return [0x01]; // GET: not found
        });
        await Task.Yield();
        var (exit, output, errors) = Run("-connect", server.Address, "-mix", "get:1", "-rate", "200", "-duration", "2", "-json");
        Assert.True(exit == 0, errors + output);
        using var json = JsonDocument.Parse(output.Trim());
        Assert.Equal(200, json.RootElement.GetProperty("rate").GetInt64());
        var ops = json.RootElement.GetProperty("ops").GetInt64();
        Assert.InRange(ops, 1, 401); // never faster than the schedule: 2 s x 200/s (+ the first at 0)
        Assert.True(json.RootElement.GetProperty("latencyMicroseconds").GetProperty("p90").GetInt64() >= 100_000, output);
    }

    [Fact]
    public void WarmupAndRateArgumentErrors()
    {
        Assert.Equal((1, "Error, --warmup given an invalid argument"), Short(Run("-connect", "UNIX:/x", "-warmup", "-1")));
        Assert.Equal((1, "Error, --rate given an invalid argument"), Short(Run("-connect", "UNIX:/x", "-rate", "0")));
        Assert.Equal((1, "Error, --rate needs -pipeline 1 (each request has its own scheduled start)"), Short(Run("-connect", "UNIX:/x", "-rate", "10", "-pipeline", "4")));
        Assert.Equal(1, Run("-connect", "UNIX:/x", "-rate", "10", "-mix", "get:1", "-persistent").Exit);

        static (int, string) Short((int Exit, string Out, string Err) r) => (r.Exit, r.Err.Split('\n')[0].TrimEnd());
    }

    [Fact]
    public void ReferenceMessagesAndExitCodes()
    {
        Assert.Equal((1, "Error, must provide -connect"), Short(Run()));
        Assert.Equal((1, "Error, --sessions given an invalid argument"), Short(Run("-connect", "UNIX:/x", "-sessions", "0")));
        Assert.Equal((1, "Error, --ops requires an argument"), Short(Run("-connect", "UNIX:/x", "-ops")));
        Assert.Equal((1, "Error, --threads given an invalid argument"), Short(Run("-connect", "UNIX:/x", "-threads", "0")));
        Assert.Equal((1, "Error, --timevar given an invalid argument"), Short(Run("-connect", "UNIX:/x", "-timeout", "5", "-timevar", "5")));
        Assert.Equal((1, "Error, \"-bogus\" not recognised"), Short(Run("-connect", "UNIX:/x", "-bogus")));
        Assert.Equal((1, "Error, no OpenSSL support compiled in, -with-cert not available."), Short(Run("-connect", "UNIX:/x", "-withcert", "1")));
        var missing = "UNIX:" + TestPaths.Socket("nothing");
        var (exit, _, errors) = Run("-connect", missing, "-persistent", "-quiet");
        Assert.Equal(1, exit);
        Assert.Contains("Error, 'DC_CTX' creation failed", errors);

        static (int, string) Short((int Exit, string Out, string Err) r) => (r.Exit, r.Err.Split('\n')[0].TrimEnd());
    }
}
