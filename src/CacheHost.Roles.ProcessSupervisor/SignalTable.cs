using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>
/// The signal table of daemonproxy §8: counted signals with their last time stamp and a sequence number, the
/// pending fatal signal and the SIGCHLD flag. Handlers (any thread) only queue and wake the loop; the loop
/// folds the queue into the table with <see cref="PickUp"/>, so the records are touched by the loop alone.
/// </summary>
internal sealed class SignalTable : IDisposable
{
    /// <summary>Record slots (daemonproxy §8): a full table overwrites its last slot.</summary>
    public const int Slots = 16;

    private static readonly int[] CountedSignals = [1, 2, 3, 15, 10, 12]; // HUP INT QUIT TERM USR1 USR2 (daemonproxy §8)
    private static readonly int[] WakeSignals = [17, 14]; // CHLD ALRM: only wake the loop

    // ILL ABRT BUS FPE SEGV: fatal (daemonproxy §8). Sent with kill(2) they reach the runtime's signal thread and
    // are caught here; SIGTRAP is not registered because the runtime aborts on it before any handler runs, and a
    // real fault is the runtime's (a crash), not a catchable event (docs/daemonproxy.md).
    private static readonly int[] FatalSignals = [4, 6, 7, 8, 11];

    private readonly List<SignalRecord> _records = [];
    private readonly ConcurrentQueue<int> _caught = new();
    private readonly List<PosixSignalRegistration> _registrations = [];
    private volatile int _fatalSignal;
    private volatile bool _childExited = true;
    private long _seq;

    /// <summary>The records in slot order (loop thread).</summary>
    public IReadOnlyList<SignalRecord> Records => _records;

    /// <summary>Registers the handlers of daemonproxy §8; each calls <paramref name="wake"/> after queueing.</summary>
    public void Install(Action wake)
    {
        foreach (var signo in CountedSignals)
        {
            var number = signo;
            _registrations.Add(PosixSignalRegistration.Create((PosixSignal)number, ctx =>
            {
                // Counted and reported, never fatal (daemonproxy §8): the registration must cancel the default action.
                ctx.Cancel = true;
                Caught(number);
                wake();
            }));
        }

        foreach (var signo in FatalSignals)
        {
            var number = signo;
            _registrations.Add(PosixSignalRegistration.Create((PosixSignal)number, ctx =>
            {
                ctx.Cancel = true;
                _fatalSignal = number;
                wake();
            }));
        }

        foreach (var signo in WakeSignals)
        {
            var number = signo;
            _registrations.Add(PosixSignalRegistration.Create((PosixSignal)signo, ctx =>
            {
                ctx.Cancel = true;
                if (number == 17)
                {
                    ChildExited();
                }

                wake();
            }));
        }
    }

    /// <summary>Queues a counted signal; thread-safe (the handlers' half).</summary>
    public void Caught(int signo) => _caught.Enqueue(signo);

    /// <summary>Notes a SIGCHLD (the handler's half): the next reap pass scans every running service.</summary>
    public void ChildExited() => _childExited = true;

    /// <summary>Takes the pending fatal signal, 0 when none.</summary>
    public int TakeFatal()
    {
        var fatal = _fatalSignal;
        if (fatal != 0)
        {
            _fatalSignal = 0;
        }

        return fatal;
    }

    /// <summary>Whether SIGCHLD arrived since the last call (true at start so the first pass scans).</summary>
    public bool TakeChildExited()
    {
        var exited = _childExited;
        _childExited = false;
        return exited;
    }

    /// <summary>Loop step: folds queued signals into the records, stamped with <paramref name="now"/>.</summary>
    public void PickUp(long now)
    {
        while (_caught.TryDequeue(out var signo))
        {
            var record = _records.Find(r => r.Signo == signo);
            if (record is null)
            {
                if (_records.Count >= Slots)
                {
                    _records.RemoveAt(_records.Count - 1); // a full table overwrites the last slot (daemonproxy §8)
                }

                record = new SignalRecord { Signo = signo };
                _records.Add(record);
            }

            record.Count++;
            record.TsNs = now;
            record.Seq = ++_seq;
        }
    }

    /// <summary>The <c>signal</c> event line of daemonproxy §6.4.</summary>
    public static string Line(SignalRecord r) => $"signal\t{SignalNames.Name(r.Signo)}\t{r.TsNs / Supervisor.Second}\t{r.Count}\n";

    /// <summary>daemonproxy §4.5: every record with a count and a newer stamp than the controller has seen, oldest first.</summary>
    public void DeliverTo(Controller c, long now)
    {
        if (!c.HasOutput)
        {
            return;
        }

        foreach (var r in _records.Where(r => r.Count > 0 && r.Seq > c.SignalMarker).OrderBy(r => r.Seq).ToList())
        {
            c.Send(Line(r), now);
            c.SignalMarker = r.Seq;
        }
    }

    /// <summary>The count not yet cleared with <c>signal.clear</c>.</summary>
    public long PendingCount(int signo) => _records.Find(r => r.Signo == signo)?.Count ?? 0;

    /// <summary><c>signal.clear</c> (daemonproxy §5): lowers the count, never below zero.</summary>
    public void Clear(int signo, long count)
    {
        var record = _records.Find(r => r.Signo == signo);
        if (record is not null)
        {
            record.Count = Math.Max(0, record.Count - count);
        }
    }

    /// <summary>The <c>signal.clear</c> command (daemonproxy §5).</summary>
    public string? CmdSignalClear(Controller c, string[] f, string line, long now)
    {
        var error = SignalNames.TryParse(CommandTable.Arg(f, 1), out var signo);
        if (error is not null)
        {
            return error;
        }

        if (!CommandTable.TryInt(CommandTable.Arg(f, 2), out var count))
        {
            return "Expected integer";
        }

        Clear(signo, count);
        return null;
    }

    public void Dispose()
    {
        foreach (var r in _registrations)
        {
            r.Dispose();
        }

        _registrations.Clear();
    }
}

/// <summary>One counted signal (daemonproxy §8).</summary>
internal sealed class SignalRecord
{
    public int Signo { get; init; }

    public long TsNs { get; set; }

    public long Seq { get; set; }

    public long Count { get; set; }
}
