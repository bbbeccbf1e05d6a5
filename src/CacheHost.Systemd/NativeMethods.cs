using System.Runtime.InteropServices;

namespace CacheHost.Systemd;

/// <summary>The few libc calls Mono.Posix lacks or that must touch the native environment (Tmds.LibC is not on the mirror).</summary>
internal static partial class NativeMethods
{
    private const int ClockMonotonic = 1;

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime", SetLastError = true)]
    private static partial int ClockGetTime(int clock, out Timespec value);

    [LibraryImport("libc", EntryPoint = "unsetenv", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int UnsetEnv(string name);

    /// <summary>CLOCK_MONOTONIC in microseconds, as systemd's MONOTONIC_USEC wants (ecosystem.md 1.9 item 8).</summary>
    public static long MonotonicMicroseconds()
    {
        if (ClockGetTime(ClockMonotonic, out var ts) != 0)
        {
            // Stopwatch is CLOCK_MONOTONIC on Linux; only a fallback.
            return (long)(System.Diagnostics.Stopwatch.GetTimestamp() / (System.Diagnostics.Stopwatch.Frequency / 1_000_000.0));
        }

        return (ts.Seconds * 1_000_000) + (ts.Nanoseconds / 1000);
    }

    /// <summary>
    /// Removes a variable from both the managed environment (Process.Start children) and libc's environ
    /// (posix_spawn children): .NET's SetEnvironmentVariable only changes its own copy on Unix.
    /// </summary>
    public static void RemoveEnvironmentVariable(string name)
    {
        Environment.SetEnvironmentVariable(name, null);
        _ = UnsetEnv(name);
    }
}
