using System.Diagnostics;
using System.Reflection;

namespace CacheHost.Core;

/// <summary>
/// The process's own figures for the control socket's statedump and the process meter: version, uptime,
/// resident memory and the managed heap.
/// </summary>
public static class ProcessFigures
{
    private static readonly DateTimeOffset s_started = StartTime();

    /// <summary>The program's version (informational version without the source-revision suffix).</summary>
    public static string Version { get; } = ReadVersion();

    /// <summary>When this process started (wall clock, from the kernel's record of the process).</summary>
    public static DateTimeOffset Started => s_started;

    /// <summary>Time since the process started, by <paramref name="clock"/>.</summary>
    public static TimeSpan Uptime(TimeProvider clock)
    {
        var uptime = clock.GetUtcNow() - s_started;
        return uptime < TimeSpan.Zero ? TimeSpan.Zero : uptime;
    }

    /// <summary>Resident set size in bytes (what the kernel counts, native slabs included).</summary>
    public static long ResidentBytes => Environment.WorkingSet;

    /// <summary>Bytes currently allocated on the managed heap (without forcing a collection).</summary>
    public static long ManagedHeapBytes => GC.GetTotalMemory(forceFullCollection: false);

    private static string ReadVersion()
    {
        var assembly = Assembly.GetEntryAssembly() ?? typeof(ProcessFigures).Assembly;
        var version = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
            ?? assembly.GetName().Version?.ToString()
            ?? "unknown";
        var plus = version.IndexOf('+', StringComparison.Ordinal);
        return plus > 0 ? version[..plus] : version;
    }

    private static DateTimeOffset StartTime()
    {
        try
        {
            using var self = Process.GetCurrentProcess();
            return new DateTimeOffset(self.StartTime.ToUniversalTime(), TimeSpan.Zero);
        }
        catch (Exception ex) when (ex is InvalidOperationException or NotSupportedException or System.ComponentModel.Win32Exception)
        {
            return DateTimeOffset.UtcNow; // no /proc: count from the first use
        }
    }
}
