using System.Globalization;

namespace CacheHost;

/// <summary>
/// The dc_client and dc_snoop command lines (distcache §10.1 and §12), turned into configuration overrides of the same
/// host that <c>cachehost run</c> starts. Messages and exit codes follow the reference (dc_client prints
/// single-dash flag names in its errors, distcache §9.1).
/// </summary>
internal static class DistCacheToolCommands
{
    private const string ClientUsage = """
        Usage: cachehost client -server <addr> [options]   (dc_client)
          -listen <addr>     local address applications connect to (default UNIX:/tmp/scache)
          -server <addr>     the cache server (alias -connect); required. Given again: further servers
                             in order of preference (failover; see FailbackAfter below)
          -retry <ms>        minimum time between reconnect attempts, 1..3600000 (default 5000)
          -idle <ms>         close local connections idle this long, 0..3600000 (default 0 = never)
          -sockowner <user>  owner of a UNIX listening socket
          -sockgroup <grp>   group of a UNIX listening socket
          -sockperms <oct>   permission bits of a UNIX listening socket (e.g. 660)
          -daemon            detach once the listener is bound (under systemd use Type=notify instead)
          -pidfile <path>    write the process id to this file
          -user <user>       drop privileges to this user after binding
          -killable          exit cleanly on SIGUSR1/SIGUSR2
          -tls-cert <file>   TLS to -server: client certificate (PEM) for mutual TLS
          -tls-key <file>    its private key (PEM)
          -tls-ca <file>     CA bundle (PEM) the server's certificate must chain to
          -tls-verify        insist on -tls-ca (over TLS the server is always verified)
        Further settings: --CacheHost:ClientProxy:<Key>=<value> (e.g. ServerPipelineDepth=1 for a C dc_server,
                          FailbackAfter=00:00:30 to return to the first server once it answers again)
        """;

    private const string SnoopUsage = """
        Usage: cachehost snoop -listen <addr> -server <addr>   (dc_snoop; -connect is an alias of -server)
          -tls-cert <file> -tls-key <file> -tls-ca <file> -tls-verify   TLS to -server, as cachehost client
          TLS on -listen: --CacheHost:Snoop:Tls:Certificate=<file> --CacheHost:Snoop:Tls:Key=<file> ...
        """;

    /// <summary>
    /// The -tls-* flags of the side that connects (client, snoop), as keys under <paramref name="section"/>; true
    /// when <paramref name="arg"/> was one (a missing argument is reported and <paramref name="failed"/> set).
    /// </summary>
    private static bool TlsFlag(string arg, string[] args, ref int i, Dictionary<string, string?> overrides, string section, out bool failed)
    {
        failed = false;
        var key = arg switch
        {
            "-tls-cert" => "Certificate",
            "-tls-key" => "Key",
            "-tls-ca" => "CertificateAuthority",
            "-tls-verify" => "RequireClientCertificate",
            _ => null,
        };
        if (key is null)
        {
            return false;
        }

        if (arg == "-tls-verify")
        {
            overrides[section + key] = "true";
        }
        else if (i + 1 < args.Length)
        {
            overrides[section + key] = args[++i];
        }
        else
        {
            Console.Error.WriteLine($"Error, {arg} requires an argument");
            failed = true;
        }

        return true;
    }

    /// <summary><c>cachehost test …</c> / <c>dc_test …</c>.</summary>
    public static int Test(string[] args) =>
        CacheHost.LoadTool.LoadToolCommand.Run(args); // sets inline socket completions itself (SocketEngineSettings.Apply)

    /// <summary><c>cachehost client …</c> / <c>dc_client …</c>.</summary>
    public static int Client(string[] args)
    {
        // Inline socket completions (for Engine=sockets) come from the host: CacheHost:Transport:InlineCompletions, default true.
        const string Section = "CacheHost:ClientProxy:";
        var overrides = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase)
        {
            ["CacheHost:Roles"] = null,
            ["CacheHost:Roles:0"] = "ClientProxy",
        };
        var hostArgs = new List<string>();
        var servers = new List<string>();
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            if (arg.StartsWith("--", StringComparison.Ordinal))
            {
                hostArgs.Add(arg); // --Key=Value passes through to configuration
                continue;
            }

            if (TlsFlag(arg, args, ref i, overrides, Section + "ServerTls:", out var tlsFailed))
            {
                if (tlsFailed)
                {
                    return 1;
                }

                continue;
            }

            string? Next()
            {
                if (i + 1 < args.Length)
                {
                    return args[++i];
                }

                Console.Error.WriteLine($"Error, {arg} requires an argument");
                return null;
            }

            switch (arg)
            {
                case "-listen":
                    if (Next() is not { } listen)
                    {
                        return 1;
                    }

                    overrides[Section + "Listen"] = listen;
                    break;
                case "-server" or "-connect":
                    if (Next() is not { } s)
                    {
                        return 1;
                    }

                    // dc_client refuses a second -server ("Error, too many servers", distcache §10.1); here the
                    // second and later ones are the failover list (issue 17).
                    overrides[servers.Count == 0 ? Section + "Server" : $"{Section}Servers:{servers.Count - 1}"] = s;
                    servers.Add(s);
                    break;
                case "-retry" or "-idle":
                    if (Next() is not { } text)
                    {
                        return 1;
                    }

                    // Strict decimal (unlike the atoi of the other tools), distcache §10.1.
                    var min = arg == "-retry" ? 1 : 0;
                    if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var ms) || ms < min || ms > 3_600_000)
                    {
                        Console.Error.WriteLine($"Error, {arg} given an invalid argument");
                        return 1;
                    }

                    overrides[Section + (arg == "-retry" ? "RetryMs" : "IdleMs")] = ms.ToString(CultureInfo.InvariantCulture);
                    break;
                case "-sockowner" or "-sockgroup" or "-sockperms":
                    if (Next() is not { } value)
                    {
                        return 1;
                    }

                    overrides[Section + "Transport:" + arg switch { "-sockowner" => "SocketOwner", "-sockgroup" => "SocketGroup", _ => "SocketMode" }] = value;
                    break;
                case "-pidfile" or "-user":
                    if (Next() is not { } processValue)
                    {
                        return 1;
                    }

                    overrides[arg == "-pidfile" ? "CacheHost:Process:PidFile" : "CacheHost:Process:User"] = processValue;
                    break;
                case "-daemon":
                    overrides["CacheHost:Process:Daemon"] = "true";
                    break;
                case "-killable":
                    overrides[Section + "Killable"] = "true";
                    break;
                case "-h" or "-help" or "-?":
                    Console.Error.WriteLine(ClientUsage);
                    return 0;
                default:
                    Console.Error.WriteLine($"Error, \"{arg}\" not recognised");
                    Console.Error.WriteLine(ClientUsage);
                    return 1;
            }
        }

        if (servers.Count == 0)
        {
            Console.Error.WriteLine("Error, no server specified!");
            return 1;
        }

        if (!CacheHost.Transport.TransportAddress.TryParse(overrides.GetValueOrDefault(Section + "Listen") ?? "UNIX:/tmp/scache", out _, out _))
        {
            Console.Error.WriteLine("Error, bad listen address");
            return 1;
        }

        foreach (var server in servers)
        {
            if (!CacheHost.Transport.TransportAddress.TryParse(server, out var serverAddress, out _)
                || (serverAddress.Kind is CacheHost.Transport.TransportAddressKind.Tcp4 or CacheHost.Transport.TransportAddressKind.Tcp6 && serverAddress.Host is null))
            {
                Console.Error.WriteLine("Error, internal initialisation problems");
                return 1;
            }
        }

        return CommandDispatcher.RunHost([.. hostArgs], overrides, ["client", .. args]);
    }

    /// <summary><c>cachehost snoop …</c> / <c>dc_snoop …</c>.</summary>
    public static int Snoop(string[] args)
    {
        const string Section = "CacheHost:Snoop:";
        var overrides = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase)
        {
            ["CacheHost:Roles"] = null,
            ["CacheHost:Roles:0"] = "Snoop",
            // dc_snoop prints bare lines on stderr (distcache §12).
            ["CacheHost:Snoop:FrameOutput"] = "Stderr",
        };
        var hostArgs = new List<string>();
        string? listen = null;
        string? server = null;
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            if (arg.StartsWith("--", StringComparison.Ordinal))
            {
                hostArgs.Add(arg);
                continue;
            }

            if (TlsFlag(arg, args, ref i, overrides, Section + "ServerTls:", out var tlsFailed))
            {
                if (tlsFailed)
                {
                    return 1;
                }

                continue;
            }

            switch (arg)
            {
                case "-listen" or "-server" or "-connect":
                    if (i + 1 >= args.Length)
                    {
                        Console.Error.WriteLine($"Error, -{arg} requires an argument");
                        return 1;
                    }

                    if (arg == "-listen")
                    {
                        listen = args[++i];
                    }
                    else
                    {
                        server = args[++i];
                    }

                    break;
                case "-h" or "-help" or "-?":
                    Console.Error.WriteLine(SnoopUsage);
                    return 0;
                default:
                    Console.Error.WriteLine($"Error, \"{arg}\" not recognised");
                    Console.Error.WriteLine(SnoopUsage);
                    return 1;
            }
        }

        if (listen is null || server is null)
        {
            Console.Error.WriteLine("Error, must provide -listen and -server");
            return 1;
        }

        overrides[Section + "Listen"] = listen;
        overrides[Section + "Server"] = server;
        return CommandDispatcher.RunHost([.. hostArgs], overrides, ["snoop", .. args]);
    }
}
