using CacheHost.Testing;
using System.Text.RegularExpressions;
using CacheHost.Systemd.Logging;
using Serilog.Events;
using Serilog.Parsing;

namespace CacheHost.Systemd.Tests;

/// <summary>journald stream format: a &lt;N&gt; prefix on every physical line when JOURNAL_STREAM matches stdout.</summary>
public sealed partial class JournaldTests
{
    [GeneratedRegex("^<[0-7]>")]
    private static partial Regex Prefixed();

    private static (string Stdout, string Stderr, int Exit) RunCrashingDaemon(bool matchingJournalStream, bool stderrShared = false)
    {
        var dir = Wire.TempDir();
        var stdout = Path.Combine(dir, "stdout");
        var stderr = Path.Combine(dir, "stderr");
        File.WriteAllText(stdout, "");
        File.WriteAllText(stderr, "");
        // Like systemd: stdout is a stream whose dev:inode is in JOURNAL_STREAM (here a file standing in for
        // journald's socket); the mismatch case uses a different inode, as a shell redirect would.
        var script = stderrShared
            ? "f=\"$1\"; e=\"$2\"; shift 2; export JOURNAL_STREAM=$(stat -L -c %d:%i \"$f\"); exec \"$@\" > \"$f\" 2>&1"
            : matchingJournalStream
            ? "f=\"$1\"; e=\"$2\"; shift 2; export JOURNAL_STREAM=$(stat -L -c %d:%i \"$f\"); exec \"$@\" > \"$f\" 2> \"$e\""
            : "f=\"$1\"; e=\"$2\"; shift 2; export JOURNAL_STREAM=$(stat -L -c %d:%i \"$e\"); exec \"$@\" > \"$f\" 2> \"$e\"";
        var start = DaemonProcess.StartInfo(["-c", script, "sh", stdout, stderr, .. ProgramUnderTest.ProbeCommand, .. NotifyTests.ProbeArgs(dir, "--CacheHost:Probe:FailAfter=00:00:00.2")], fileName: "/bin/sh");
        using var daemon = DaemonProcess.Start(start);
        var exit = daemon.WaitForExit(TimeSpan.FromSeconds(30));
        return (File.ReadAllText(stdout), File.ReadAllText(stderr), exit);
    }

    [Fact]
    public void Every_line_of_a_logged_exception_carries_the_error_priority_when_stdout_is_the_journal()
    {
        var (stdout, _, exit) = RunCrashingDaemon(matchingJournalStream: true);
        Assert.NotEqual(0, exit);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.All(lines, line => Assert.Matches(Prefixed(), line));
        Assert.Contains(lines, l => l.StartsWith("<6>CacheHost.Transport: Listening on UNIX:", StringComparison.Ordinal));

        // The host's error record for the crashed role: the message line, the exception line and every
        // stack frame are separate journal entries, all at priority 3.
        var first = Array.FindIndex(lines, l => l.Contains("System.InvalidOperationException: probe role crashed on purpose"));
        Assert.True(first >= 0, stdout);
        Assert.StartsWith("<3>", lines[first]);
        var frames = lines.Skip(first + 1).TakeWhile(l => l.StartsWith("<3>   at ", StringComparison.Ordinal) || l.StartsWith("<3>--- End of stack trace", StringComparison.Ordinal)).ToArray();
        Assert.NotEmpty(frames);
        // The JIT prints the async method as "ProbeService.RunAsync(…)", NativeAOT as "ProbeService.<RunAsync>d__N.MoveNext()".
        Assert.Contains(frames, f => f.Contains("ProbeService.RunAsync") || f.Contains("ProbeService.<RunAsync>"));
        Assert.StartsWith("<3>", lines[first - 1]); // the record's message line
    }

    [Fact]
    public void The_exit_summary_written_to_stderr_carries_the_error_priority_when_stderr_is_the_journal_too()
    {
        // systemd's default: StandardError=inherit, so stderr is the same journal stream as stdout.
        var (stdout, _, exit) = RunCrashingDaemon(matchingJournalStream: true, stderrShared: true);
        Assert.NotEqual(0, exit);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.All(lines, line => Assert.Matches(Prefixed(), line));
        Assert.Contains(lines, l => l.StartsWith("<3>cachehost: role ", StringComparison.Ordinal) && l.Contains("failed: probe role crashed on purpose"));
    }

    [Fact]
    public void The_exit_summary_on_a_plain_stderr_has_no_prefix()
    {
        var (_, stderr, exit) = RunCrashingDaemon(matchingJournalStream: true);
        Assert.NotEqual(0, exit);
        Assert.Contains("cachehost: role ", stderr);
        Assert.DoesNotContain(stderr.Split('\n'), l => Prefixed().IsMatch(l));
    }

    [Fact]
    public void Output_is_readable_console_text_when_JOURNAL_STREAM_does_not_match_stdout()
    {
        var (stdout, _, exit) = RunCrashingDaemon(matchingJournalStream: false);
        Assert.NotEqual(0, exit);
        Assert.DoesNotContain(stdout.Split('\n'), l => Prefixed().IsMatch(l));
        Assert.Matches(@"\[\d\d:\d\d:\d\d INF\] CacheHost.Transport: Listening on UNIX:", stdout);
        Assert.Contains("   at ", stdout);
    }

    [Theory]
    [InlineData(LogEventLevel.Verbose, '7')]
    [InlineData(LogEventLevel.Debug, '7')]
    [InlineData(LogEventLevel.Information, '6')]
    [InlineData(LogEventLevel.Warning, '4')]
    [InlineData(LogEventLevel.Error, '3')]
    [InlineData(LogEventLevel.Fatal, '2')]
    public void The_formatter_prefixes_message_and_exception_lines_with_the_level_priority(LogEventLevel level, char priority)
    {
        Exception error;
        try
        {
            throw new InvalidOperationException("first\nsecond");
        }
        catch (InvalidOperationException ex)
        {
            error = ex;
        }

        var template = new MessageTemplateParser().Parse("multi\nline {Value}");
        var logEvent = new LogEvent(DateTimeOffset.UtcNow, level, error, template,
            [new LogEventProperty("Value", new ScalarValue(42)), new LogEventProperty("SourceContext", new ScalarValue("Test.Category"))]);
        var output = new StringWriter();
        new JournaldTextFormatter().Format(logEvent, output);

        var lines = output.ToString().Split('\n');
        Assert.Equal("", lines[^1]); // ends with one LF
        Assert.All(lines[..^1], l => Assert.StartsWith($"<{priority}>", l));
        Assert.Equal($"<{priority}>Test.Category: multi", lines[0]);
        Assert.Equal($"<{priority}>line 42", lines[1]);
        Assert.Equal($"<{priority}>System.InvalidOperationException: first", lines[2]);
        Assert.Equal($"<{priority}>second", lines[3]);
        Assert.StartsWith($"<{priority}>   at ", lines[4]);
    }
}
