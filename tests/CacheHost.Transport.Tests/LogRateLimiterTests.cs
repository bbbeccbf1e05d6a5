using System.Collections.Concurrent;
using CacheHost.Testing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace CacheHost.Transport.Tests;

/// <summary>
/// Rate-limited warnings (issue 21, item 4): the first Burst of a kind in full, then one summary line per interval
/// with the count, on an injected clock; and a flood of refused connections over real sockets writes a bounded
/// number of lines.
/// </summary>
public sealed class LogRateLimiterTests
{
    private const int WarningsSuppressed = 1015;
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(60);

    /// <summary>Keeps every log line (event id and formatted text).</summary>
    internal sealed class CollectingLogger : ILogger
    {
        public ConcurrentQueue<(int EventId, string Text)> Lines { get; } = new();

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Lines.Enqueue((eventId.Id, formatter(state, exception)));

        public string[] Summaries => Lines.Where(l => l.EventId == WarningsSuppressed).Select(l => l.Text).ToArray();
    }

    private static (LogRateLimiter Limiter, CollectingLogger Log, FakeTimeProvider Time) Create(int burst = 3)
    {
        var log = new CollectingLogger();
        var time = new FakeTimeProvider();
        return (new LogRateLimiter(log, new LogRateLimitOptions { Burst = burst, Interval = Interval }, time), log, time);
    }

    private static int Allowed(LogRateLimiter limiter, string kind, int calls) => Enumerable.Range(0, calls).Count(_ => limiter.Allow(kind));

    [Fact]
    public void The_first_burst_is_logged_then_one_summary_per_interval_carries_the_count()
    {
        var (limiter, log, time) = Create();
        Assert.Equal(3, Allowed(limiter, "Bad", 1000));
        Assert.Empty(log.Summaries);

        time.Advance(Interval - TimeSpan.FromSeconds(1));
        Assert.Empty(log.Summaries); // not before the interval ends
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(["997 more Bad warnings not logged (at most 3 in full per 60 s; Transport:Warnings)"], log.Summaries);

        // Still flooding: nothing in full, one summary per interval.
        Assert.Equal(0, Allowed(limiter, "Bad", 50));
        time.Advance(Interval);
        Assert.Equal(2, log.Summaries.Length);
        Assert.StartsWith("50 more Bad warnings", log.Summaries[1], StringComparison.Ordinal);

        // A quiet interval ends the flood without a line; the next occurrences get a fresh burst.
        time.Advance(Interval);
        Assert.Equal(2, log.Summaries.Length);
        Assert.Equal(3, Allowed(limiter, "Bad", 10));
    }

    [Fact]
    public void The_summary_closes_the_interval_in_which_the_burst_started()
    {
        var (limiter, log, time) = Create(burst: 2);
        Assert.True(limiter.Allow("Bad"));
        time.Advance(TimeSpan.FromSeconds(50));
        Assert.True(limiter.Allow("Bad"));
        Assert.False(limiter.Allow("Bad"));
        time.Advance(TimeSpan.FromSeconds(10)); // 60 s after the first one
        Assert.StartsWith("1 more Bad warnings", Assert.Single(log.Summaries), StringComparison.Ordinal);
    }

    [Fact]
    public void Occurrences_spread_wider_than_the_interval_are_all_logged()
    {
        var (limiter, log, time) = Create(burst: 1);
        for (var i = 0; i < 5; i++)
        {
            Assert.True(limiter.Allow("Rare"));
            time.Advance(Interval);
        }

        Assert.Empty(log.Summaries);
    }

    [Fact]
    public void Kinds_are_limited_separately_and_dispose_reports_what_is_pending()
    {
        var (limiter, log, _) = Create(burst: 2);
        Assert.Equal(2, Allowed(limiter, "A", 10));
        Assert.Equal(2, Allowed(limiter, "B", 5));
        limiter.Dispose();
        Assert.Equal(
            ["3 more B warnings not logged (at most 2 in full per 60 s; Transport:Warnings)", "8 more A warnings not logged (at most 2 in full per 60 s; Transport:Warnings)"],
            log.Summaries.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task A_flood_of_refused_connections_over_a_real_socket_writes_a_bounded_number_of_lines()
    {
        var log = new CollectingLogger();
        var time = new FakeTimeProvider();
        var options = new TransportOptions { MaxConnections = 1, Warnings = new LogRateLimitOptions { Burst = 3, Interval = Interval } };
        var listener = ConnectionListener.Bind(TransportAddress.Parse("UNIX:" + TestPaths.Socket("flood")), options, log);
        var server = new ConnectionServer(listener, new HoldingHandler(), log, timeProvider: time);
        server.Start();
        try
        {
            using var holder = InProcessCacheServer.ConnectTo(listener.DisplayAddress);
            const int Flood = 200;
            for (var i = 0; i < Flood; i++)
            {
                using var refused = InProcessCacheServer.ConnectTo(listener.DisplayAddress);
            }

            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (server.RejectedConnections < Flood && DateTime.UtcNow < deadline)
            {
                await Task.Delay(20);
            }

            Assert.Equal(Flood, server.RejectedConnections);
            Assert.Equal(3, log.Lines.Count(l => l.EventId == 1002));
            time.Advance(Interval);
            Assert.Equal([$"{Flood - 3} more ConnectionRejected warnings not logged (at most 3 in full per 60 s; Transport:Warnings)"], log.Summaries);
        }
        finally
        {
            await server.DisposeAsync();
        }

        Assert.Equal(4, log.Lines.Count(l => l.EventId is 1002 or WarningsSuppressed)); // 203 lines without the limit
    }

    /// <summary>Keeps its connection open until the peer or the server closes it.</summary>
    private sealed class HoldingHandler : IConnectionHandler
    {
        public Task HandleAsync(TransportConnection connection, CancellationToken stopping) =>
            Task.Delay(System.Threading.Timeout.Infinite, connection.ConnectionClosed).ContinueWith(_ => { }, TaskScheduler.Default);
    }
}
