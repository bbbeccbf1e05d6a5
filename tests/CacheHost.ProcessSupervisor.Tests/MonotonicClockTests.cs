using CacheHost.Posix;
using CacheHost.Core;
using CacheHost.Roles.ProcessSupervisor;

namespace CacheHost.ProcessSupervisor.Tests;

/// <summary>
/// The one clock keeps CLOCK_MONOTONIC on the wire (daemonproxy §3.3, systemd's MONOTONIC_USEC): the seam's reading
/// of the system clock is the kernel's clock_gettime(CLOCK_MONOTONIC), and other clocks are converted by frequency.
/// </summary>
public sealed class MonotonicClockTests
{
    [Fact]
    public void The_system_clocks_reading_is_the_kernels_CLOCK_MONOTONIC()
    {
        for (var i = 0; i < 100; i++)
        {
            var before = Libc.MonotonicNs();
            var seam = TimeProvider.System.MonotonicNanoseconds();
            var after = Libc.MonotonicNs();
            Assert.InRange(seam, before, after);
        }

        var beforeUs = Libc.MonotonicNs() / 1000;
        var seamUs = TimeProvider.System.MonotonicMicroseconds();
        Assert.InRange(seamUs, beforeUs, Libc.MonotonicNs() / 1000);
    }

    /// <summary>A clock with 10 MHz ticks (as Windows' Stopwatch has), at a fixed reading.</summary>
    private sealed class TenMegahertzClock(long timestamp) : TimeProvider
    {
        public override long TimestampFrequency => 10_000_000;

        public override long GetTimestamp() => timestamp;
    }

    [Fact]
    public void Other_frequencies_are_converted_without_overflow()
    {
        Assert.Equal(123_456_700, new TenMegahertzClock(1_234_567).MonotonicNanoseconds());
        Assert.Equal(123_456, new TenMegahertzClock(1_234_567).MonotonicMicroseconds());

        // A year of uptime at 10 MHz times 10^9 does not fit a long; the Int128 product does.
        var year = 365L * 24 * 3600 * 10_000_000;
        Assert.Equal(365L * 24 * 3600 * 1_000_000_000, new TenMegahertzClock(year).MonotonicNanoseconds());
    }
}
