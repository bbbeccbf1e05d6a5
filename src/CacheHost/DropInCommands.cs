namespace CacheHost;

/// <summary>
/// Drop-in command lines of the tools CacheHost replaces. Each entry turns the original tool's flags into
/// configuration overrides (or runs a tool such as the load generator) and returns an exit code.
/// Selected by subcommand (<c>cachehost server …</c>) or by program name (<c>dc_server …</c>).
/// How to add one: add a row to <see cref="Commands"/> with its subcommand, its drop-in program names and
/// the function that runs it.
/// </summary>
internal static class DropInCommands
{
    private sealed record Entry(string Subcommand, string[] ProgramNames, Func<string[], int> Run, string Summary);

    private static readonly Entry[] Commands =
    [
        new("server", ["dc_server"], RunServer, "-listen ADDR [-sessions N] …   dc_server: the distcache session cache"),
        new("ctl", [], a => CacheHost.Systemd.Control.ControlClient.Run(a, Console.OpenStandardInput(), Console.OpenStandardOutput(), Console.Error), "send a command to the running daemon's control socket and print the replies"),
        new("client", ["dc_client"], DistCacheToolCommands.Client, "distcache client proxy (dc_client): -server ADDR [-listen ADDR] [-retry MS] [-idle MS] ..."),
        new("snoop", ["dc_snoop"], DistCacheToolCommands.Snoop, "distcache frame logger (dc_snoop): -listen ADDR -server ADDR"),
        new("test", ["dc_test"], DistCacheToolCommands.Test, "distcache test and load tool (dc_test): -connect ADDR [-sessions N] [-ops N] [-clients N] [-pipeline N] ..."),
        new("clacks", ["clacks-server"], args => CacheHost.Roles.Clacks.ClacksXmlConfig.ParseCommandLine(args) is { } run ? CommandDispatcher.RunHost(run.HostArgs, run.Overrides, ["clacks", .. args]) : 1, "CONFIG.xml  Net::Clacks server from its XML config"),
        new("daemonproxy", ["daemonproxy"], CacheHost.Roles.ProcessSupervisor.DaemonProxyProgram.Run, "process supervisor with daemonproxy's command line (-i, -c FILE, -S PATH, ...)"),
    ];

    private static int RunServer(string[] args)
    {
        var parsed = CacheHost.Roles.CacheServer.DcServerCommandLine.Parse(args);
        if (parsed.Overrides is null)
        {
            Console.Error.Write(parsed.Message);
            return parsed.ExitCode;
        }

        return CommandDispatcher.RunHost([], parsed.Overrides, ["server", .. args]);
    }

    /// <summary>Finds the command for the invocation; null means "run the host from configuration".</summary>
    public static (string? Command, string[] Args) Resolve(string invokedAs, string[] args)
    {
        foreach (var entry in Commands)
        {
            if (entry.ProgramNames.Contains(invokedAs, StringComparer.Ordinal))
            {
                return (entry.Subcommand, args);
            }
        }

        if (args.Length > 0)
        {
            if (args[0] is "help" or "-h" or "--help" or "-?")
            {
                return ("help", args[1..]);
            }

            if (args[0] is "run")
            {
                return (null, args[1..]);
            }

            foreach (var entry in Commands)
            {
                if (args[0] == entry.Subcommand)
                {
                    return (entry.Subcommand, args[1..]);
                }
            }
        }

        return (null, args);
    }

    /// <summary>Runs a resolved command.</summary>
    public static int Run(string command, string[] args)
    {
        if (command == "help")
        {
            Console.Out.Write(HelpText());
            return 0;
        }

        return Commands.First(c => c.Subcommand == command).Run(args);
    }

    private static string HelpText()
    {
        var text = new System.Text.StringBuilder();
        text.AppendLine("cachehost - SSL session cache, client proxy, snoop, load tool, process supervisor and Clacks server");
        text.AppendLine();
        text.AppendLine("usage: cachehost [run] [--Key=Value ...]   run the roles listed in CacheHost:Roles (appsettings.json)");
        foreach (var entry in Commands)
        {
            text.AppendLine($"       cachehost {entry.Subcommand,-12} {entry.Summary}");
        }

        text.AppendLine();
        text.AppendLine("The same program started as one of these names behaves as that tool:");
        text.AppendLine("  " + string.Join(", ", Commands.SelectMany(c => c.ProgramNames)));
        return text.ToString();
    }
}
