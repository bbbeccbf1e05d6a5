using CacheHost.Posix;
using System.Globalization;

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

    /// <summary>True when stderr is the journal stream (systemd's default StandardError=inherit shares stdout's).</summary>
    public static bool StderrIsJournal() => Matches(Environment.GetEnvironmentVariable("JOURNAL_STREAM"), 2);

    /// <summary>
    /// Writes <paramref name="message"/> to stderr as an error: with a <c>&lt;3&gt;</c> priority prefix on every
    /// physical line when stderr is the journal (so journald records it at error level, as it does the logger's
    /// records), plain otherwise. For the few lines written before or after the logger exists.
    /// </summary>
    public static void WriteError(string message)
    {
        if (!StderrIsJournal())
        {
            Console.Error.WriteLine(message);
            return;
        }

        var text = new System.Text.StringBuilder();
        foreach (var line in message.Split('\n'))
        {
            text.Append("<3>").Append(line.TrimEnd('\r')).Append('\n');
        }

        Console.Error.Write(text.ToString());
    }

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

        return PosixFiles.TryFStat(fd, out var st) && st.Device == dev && st.Inode == inode;
    }
}
