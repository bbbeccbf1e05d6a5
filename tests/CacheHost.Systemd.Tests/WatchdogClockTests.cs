using System.Collections.Concurrent;
using CacheHost.Core;
using CacheHost.Systemd;
using CacheHost.Systemd.Notify;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace CacheHost.Systemd.Tests;

/// <summary>
/// The watchdog beat runs on the host's one clock (issue 16): with WATCHDOG_USEC of two minutes it pings every
/// minute of the injected clock, and not before. A real-time beat would not ping at all during this test.
/// (NotifyTests checks the beat of the real program against a real notify socket.)
/// </summary>
public sealed class WatchdogClockTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    private sealed class RecordingNotifier : ISystemdNotifier
    {
        public ConcurrentQueue<string> Messages { get; } = new();

        public bool IsEnabled => true;

        public void Notify(ServiceState state) => Messages.Enqueue(state.ToString());
    }

    private sealed class StartedLifetime : IHostApplicationLifetime
    {
        private readonly CancellationTokenSource _started = new();

        public StartedLifetime() => _started.Cancel();

        public CancellationToken ApplicationStarted => _started.Token;
        public CancellationToken ApplicationStopping => CancellationToken.None;
        public CancellationToken ApplicationStopped => CancellationToken.None;
        public void StopApplication() { }
    }

    /// <summary>A FakeTimeProvider that tells when a timer is created (so the test advances only once it is armed).</summary>
    private sealed class WatchedClock(FakeTimeProvider inner) : TimeProvider
    {
        public TaskCompletionSource TimerCreated { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override DateTimeOffset GetUtcNow() => inner.GetUtcNow();
        public override long GetTimestamp() => inner.GetTimestamp();
        public override long TimestampFrequency => inner.TimestampFrequency;

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            var timer = inner.CreateTimer(callback, state, dueTime, period);
            TimerCreated.TrySetResult();
            return timer;
        }
    }

    private static int Pings(RecordingNotifier notifier) => notifier.Messages.Count(m => m.StartsWith("WATCHDOG=1", StringComparison.Ordinal));

    private static async Task WaitForPingsAsync(RecordingNotifier notifier, int count)
    {
        var deadline = DateTime.UtcNow + Wait;
        while (Pings(notifier) < count)
        {
            Assert.True(DateTime.UtcNow < deadline, $"{Pings(notifier)} pings, expected {count}");
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task The_watchdog_pings_every_half_WATCHDOG_USEC_of_the_injected_clock()
    {
        var fake = new FakeTimeProvider();
        var clock = new WatchedClock(fake);
        var environment = SystemdEnvironment.Capture(name => name == "WATCHDOG_USEC" ? "120000000" : null, Environment.ProcessId, remove: false);
        var notifier = new RecordingNotifier();
        var status = new HostStatus(new ServiceCollection().BuildServiceProvider(), new RoleFailures());
        using var heartbeat = new WatchdogHeartbeat(environment, notifier, status, new StartedLifetime(), clock, NullLogger<WatchdogHeartbeat>.Instance);
        await heartbeat.StartAsync(CancellationToken.None);
        try
        {
            await clock.TimerCreated.Task.WaitAsync(Wait);
            fake.Advance(TimeSpan.FromSeconds(59));
            Assert.Equal(0, Pings(notifier)); // no tick has fired, so none can be on its way either

            fake.Advance(TimeSpan.FromSeconds(1));
            await WaitForPingsAsync(notifier, 1);

            fake.Advance(TimeSpan.FromSeconds(60));
            await WaitForPingsAsync(notifier, 2);
            Assert.Equal(2, Pings(notifier));
        }
        finally
        {
            await heartbeat.StopAsync(CancellationToken.None);
        }
    }
}
