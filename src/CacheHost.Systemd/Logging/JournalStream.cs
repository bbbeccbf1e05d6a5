using System.Globalization;
using Mono.Unix.Native;

namespace CacheHost.Systemd.Logging;

/// <summary>
/// Decides whether stdout is journald's stream: systemd sets JOURNAL_STREAM=&lt;dev&gt;:&lt;inode&gt; for a
/// service whose stdout or stderr goes to the journal; it only counts when it matches fstat(1), because
/// the variable is inherited by anything the service starts, including shells with redirected output
/// (ecosystem.md 1.6).
/// </summary>
public static class JournalStream
{
    /// <summary>True when stdout is the journal stream named by $JOURNAL_STREAM.</summary>
    public static bool StdoutIsJournal() => Matches(Environment.GetEnvironmentVariable("JOURNAL_STREAM"), 1);

    /// <summary>True when <paramref name="value"/> ("dev:inode") names the file open on <paramref name="fd"/>.</summary>
    public static bool Matches(string? value, int fd)
    {
        if (string.IsNullOrEmpty(value))
        {
            return false;
        }

        var colon = value.IndexOf(':');
        if (colon <= 0
            || !ulong.TryParse(value.AsSpan(0, colon), NumberStyles.None, CultureInfo.InvariantCulture, out var dev)
            || !ulong.TryParse(value.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var inode))
        {
            return false;
        }

        return Syscall.fstat(fd, out var st) == 0 && st.st_dev == dev && st.st_ino == inode;
    }
}
