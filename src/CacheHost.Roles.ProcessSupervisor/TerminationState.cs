namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>
/// How the supervisor ends (daemonproxy §12): the terminate request with its exit code, the terminate guard and
/// the exec-on-exit argv, with their commands (<c>terminate</c>, <c>terminate.guard</c>,
/// <c>terminate.exec_args</c>, daemonproxy §5).
/// </summary>
internal sealed class TerminationState
{
    public TerminationState(long guard, string? execArgs)
    {
        Guard = guard;
        ExecArgs = execArgs;
    }

    /// <summary>Set when the loop is to end after this pass.</summary>
    public bool Requested { get; set; }

    /// <summary>Terminate-guard code, 0 when none.</summary>
    public long Guard { get; private set; }

    /// <summary>Exec-on-exit argv as one TSV string, or null.</summary>
    public string? ExecArgs { get; private set; }

    public int ExitCode { get; private set; }

    public string ExitMessage { get; private set; } = "terminated normally";

    public string? CmdTerminate(Controller c, string[] f, string line, long now)
    {
        if (!CommandTable.TryInt(CommandTable.Arg(f, 1), out var code))
        {
            return "Expected integer";
        }

        if (Guard != 0)
        {
            if (f.Length < 3)
            {
                return "terminate guard code required";
            }

            if (!CommandTable.TryInt(f[2], out var guard) || guard != Guard)
            {
                return "incorrect terminate guard code";
            }

            if (ExecArgs is null)
            {
                return "cannot exit, and exec-on-exit is not configured"; // defect 11, replicated
            }
        }

        ExitCode = (int)(code & 0xFF);
        ExitMessage = "terminated normally";
        Requested = true;
        return null;
    }

    public string? CmdTerminateGuard(Controller c, string[] f, string line, long now)
    {
        var op = CommandTable.Arg(f, 1);
        if (op is not ("+" or "-"))
        {
            return "expected + or -";
        }

        if (!CommandTable.TryInt(CommandTable.Arg(f, 2), out var code))
        {
            return "Expected integer";
        }

        if (code == 0)
        {
            return "code cannot be 0";
        }

        if (op == "+")
        {
            if (Guard != 0)
            {
                return "terminate guard code is already set";
            }

            Guard = code;
            return null;
        }

        if (Guard == 0)
        {
            return "terminate guard was not set";
        }

        if (Guard != code)
        {
            return "incorrect guard code";
        }

        Guard = 0;
        return null;
    }

    public string? CmdExecArgs(Controller c, string[] f, string line, long now)
    {
        var rest = CommandTable.Rest(line, 1);
        if (rest.Length > 255)
        {
            return "exec arguments exceed buffer size (255)";
        }

        ExecArgs = rest.Length == 0 ? null : rest;
        return null;
    }
}
