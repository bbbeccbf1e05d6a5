namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>Service states of daemonproxy §7.1 (the brief "reaped" state is handled inside one loop pass).</summary>
internal enum ServiceState
{
    Down,
    Start,
    Up,
}

/// <summary>One service: argv, fd list, tags and auto-up rule (all kept as raw TSV text, daemonproxy §5) plus run state.</summary>
internal sealed class Service
{
    public Service(string name) => Name = name;

    public string Name { get; }

    /// <summary>The raw TSV text after the name in <c>service.args</c>.</summary>
    public string Args { get; set; } = "";

    /// <summary>Raw fd list; null until set (shown as <c>null\tnull\tnull</c>, daemonproxy §6.2).</summary>
    public string? Fds { get; set; }

    public string Tags { get; set; } = "";

    public int AutoUpInterval { get; set; }

    /// <summary>Triggers exactly as written (<c>always</c>, <c>SIGUSR1</c>, <c>HUP</c>, ...).</summary>
    public List<string> Triggers { get; } = [];

    public ServiceState State { get; set; }

    /// <summary>When the start is due (monotonic ns), in state Start.</summary>
    public long StartAtNs { get; set; }

    public int Pid { get; set; }

    public long UpNs { get; set; }

    public long ReapNs { get; set; }

    /// <summary>"exit" or "signal" after a reap; null when there is no exit information.</summary>
    public string? ExitReason { get; set; }

    public string ExitValue { get; set; } = "-";

    /// <summary>The service controller created for this run, if any (daemonproxy §4.2).</summary>
    public Controller? Controller { get; set; }

    public string FdsText => Fds ?? "null\tnull\tnull";

    public bool HasArgs => Args.Length > 0 && Args[0] != '\t';

    public bool HasTrigger(string trigger) => Triggers.Contains(trigger);

    /// <summary>The 9-field <c>service.state</c> line of daemonproxy §6.1 as of <paramref name="nowNs"/>.</summary>
    public string StateLine(long nowNs)
    {
        static long Sec(long ns) => ns / 1_000_000_000L;
        return State switch
        {
            ServiceState.Start => $"service.state\t{Name}\tstart\t{Sec(StartAtNs)}\t-\t-\t-\t-\t-\n",
            ServiceState.Up => $"service.state\t{Name}\tup\t{Sec(UpNs)}\t{Pid}\t-\t-\t{Sec(nowNs - UpNs)}\t-\n",
            _ when ExitReason is not null =>
                $"service.state\t{Name}\tdown\t{Sec(ReapNs)}\t{Pid}\t{ExitReason}\t{ExitValue}\t{Sec(ReapNs - UpNs)}\t{Sec(nowNs - ReapNs)}\n",
            _ => $"service.state\t{Name}\tdown\t-\t-\t-\t-\t-\t-\n",
        };
    }

    public string AutoUpLine() => Triggers.Count == 0
        ? $"service.auto_up\t{Name}\t-\n"
        : $"service.auto_up\t{Name}\t{AutoUpInterval}\t{string.Join('\t', Triggers)}\n";
}
