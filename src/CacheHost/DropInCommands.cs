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

            if (args[0] is "--version" or "version")
            {
                return ("version", args[1..]);
            }

            if (args[0] is "run")
            {
                return args.Length > 1 && IsHelp(args[1]) ? ("run-help", []) : (null, args[1..]);
            }

            foreach (var entry in Commands)
            {
                if (args[0] == entry.Subcommand)
                {
                    return (entry.Subcommand, args[1..]);
                }
            }

            // Anything else that is not a --Key=Value (or Key=Value) setting is a mistyped subcommand: it
            // must not start the daemon.
            if (!args[0].StartsWith('-') && !args[0].StartsWith('/') && !args[0].Contains('=', StringComparison.Ordinal))
            {
                return ("unknown", args);
            }
        }

        return (null, args);
    }

    private static bool IsHelp(string arg) => arg is "-h" or "--help" or "-help" or "-?";

    /// <summary>The version printed by <c>--version</c> (the assembly's informational version, without a source hash).</summary>
    public static string Version()
    {
        var version = typeof(DropInCommands).Assembly
            .GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion ?? "0.0.0";
        var plus = version.IndexOf('+', StringComparison.Ordinal);
        return plus < 0 ? version : version[..plus];
    }

    /// <summary>True when <paramref name="invokedAs"/> is a drop-in program name (dc_server, daemonproxy, …).</summary>
    public static bool IsProgramName(string invokedAs) => Commands.Any(c => c.ProgramNames.Contains(invokedAs, StringComparer.Ordinal));

    /// <summary>Runs a resolved command; <paramref name="asSubcommand"/> when started as <c>cachehost SUBCOMMAND</c>.</summary>
    public static int Run(string command, string[] args, bool asSubcommand = true)
    {
        switch (command)
        {
            case "help":
                Console.Out.Write(HelpText());
                return 0;
            case "version":
                Console.Out.WriteLine($"cachehost {Version()}");
                return 0;
            case "run-help":
                Console.Out.Write(RunHelpText);
                return 0;
            case "unknown":
                Console.Error.WriteLine($"cachehost: unknown command '{args[0]}' (cachehost --help lists the commands)");
                return 1;
        }

        var entry = Commands.First(c => c.Subcommand == command);
        if (asSubcommand && args.Length == 1 && IsHelp(args[0]))
        {
            // "cachehost SUBCOMMAND --help" is CacheHost's own interface: help on stdout, exit 0. The drop-in
            // names (dc_server -h: stderr, exit 0; daemonproxy --help: exit 1) keep the originals' behaviour.
            var error = Console.Error;
            Console.SetError(Console.Out);
            try
            {
                entry.Run(["-h"]);
            }
            finally
            {
                Console.SetError(error);
            }

            return 0;
        }

        return entry.Run(args);
    }

    private const string RunHelpText = """
        usage: cachehost [run] [--Key=Value ...]
          Runs the roles listed in CacheHost:Roles until SIGTERM or SIGINT (Ctrl+C); exit 0 on a clean stop,
          1 on an invalid configuration, a failed bind or a crashed role.
          Configuration, later sources winning: appsettings.json beside the executable, the file named by
          $CACHEHOST_CONFIG, environment variables (CacheHost__CacheServer__Capacity=100000), --Key=Value
          arguments (--CacheHost:CacheServer:Capacity=100000). Keys: README.md and cachehost(1).

        """;

    private static string HelpText()
    {
        var text = new System.Text.StringBuilder();
        text.AppendLine("cachehost - SSL session cache, client proxy, snoop, load tool, process supervisor and Clacks server");
        text.AppendLine();
        text.AppendLine("usage: cachehost [run] [--Key=Value ...]   run the roles listed in CacheHost:Roles (appsettings.json)");
        text.AppendLine("       cachehost --version               print the version");
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
