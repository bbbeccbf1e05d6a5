namespace CacheHost.Core;

/// <summary>
/// CLOCK_MONOTONIC readings for the wire (systemd's <c>MONOTONIC_USEC=</c>, daemonproxy's whole-second
/// timestamps, daemonproxy §3.3) taken through the injected <see cref="TimeProvider"/>, so the one clock of the
/// host is also the clock on the wire. <see cref="TimeProvider.System"/>'s timestamp is
/// <see cref="System.Diagnostics.Stopwatch"/>, which on Linux is <c>clock_gettime(CLOCK_MONOTONIC)</c> in
/// nanoseconds, so the values equal the kernel's; a test's FakeTimeProvider moves them only when it advances.
/// </summary>
public static class MonotonicClock
{
    private const long NanosPerSecond = 1_000_000_000;

    /// <summary>Nanoseconds of the clock's monotonic timestamp (CLOCK_MONOTONIC for the system clock).</summary>
    public static long MonotonicNanoseconds(this TimeProvider clock)
    {
        ArgumentNullException.ThrowIfNull(clock);
        var timestamp = clock.GetTimestamp();
        var frequency = clock.TimestampFrequency;
        return frequency == NanosPerSecond ? timestamp : (long)((Int128)timestamp * NanosPerSecond / frequency);
    }

    /// <summary>Microseconds of the clock's monotonic timestamp (systemd's <c>MONOTONIC_USEC=</c>).</summary>
    public static long MonotonicMicroseconds(this TimeProvider clock) => clock.MonotonicNanoseconds() / 1000;
}
