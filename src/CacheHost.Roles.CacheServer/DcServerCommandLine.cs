using System.Globalization;
using System.Text;
using CacheHost.Core;

namespace CacheHost.Roles.CacheServer;

/// <summary>
/// dc_server's command line (distcache §9.1), turned into configuration overrides for the same host:
/// <c>cachehost server -listen ADDR [-sessions N] [-progress N] [-daemon] [-pidfile P] [-user U]
/// [-sockowner U] [-sockgroup G] [-sockperms OCTAL] [-killable]</c>. Options are exact single-dash strings;
/// numbers are parsed leniently like atoi (garbage reads as 0). Error texts match the reference, which
/// prints two dashes before the option name.
/// Differences (documented in README): -sessions has no upper cap of 60000, and 1..63, which pass the
/// reference's parser but make it fail at start-up with exit 0, simply work.
/// </summary>
public static class DcServerCommandLine
{
    /// <summary>Usage text (stderr), listing every flag.</summary>
    public const string Usage =
        "Usage: dc_server -listen <addr> [options]\n" +
        "where options include;\n" +
        "   -sessions <num>   - maximum number of sessions to store (default: 512)\n" +
        "   -progress <num>   - report the operation count every <num> operations\n" +
        "   -daemon           - detach and run in the background\n" +
        "   -pidfile <path>   - a file to store the process ID in\n" +
        "   -user <user>      - username to change to after start-up\n" +
        "   -sockowner <user> - set the owner of a UNIX listening socket\n" +
        "   -sockgroup <grp>  - set the group of a UNIX listening socket\n" +
        "   -sockperms <oct>  - set the permissions of a UNIX listening socket (octal, e.g. 440)\n" +
        "   -killable         - exit cleanly on SIGUSR1 or SIGUSR2\n" +
        "   -tls-cert <file>  - serve -listen with TLS: certificate (PEM, chain after it)\n" +
        "   -tls-key <file>   - the certificate's private key (PEM)\n" +
        "   -tls-ca <file>    - CA bundle (PEM) client certificates are checked against\n" +
        "   -tls-verify       - require a client certificate that chains to -tls-ca (mutual TLS)\n" +
        "   -h, -help, -?     - display this usage information\n" +
        "<addr> is UNIX:<path>, IP:<port>, IP:<host>:<port>, IPv4:..., IPv6:[<addr>]:<port> or FD:<n>\n";

    /// <summary>Result of parsing.</summary>
    /// <param name="Overrides">Configuration overrides (null when the program should exit now).</param>
    /// <param name="ExitCode">Exit code when Overrides is null.</param>
    /// <param name="Message">Text for stderr (errors and usage).</param>
    public sealed record Result(IReadOnlyDictionary<string, string?>? Overrides, int ExitCode, string Message);

    /// <summary>Parses dc_server arguments.</summary>
    public static Result Parse(IReadOnlyList<string> args)
    {
        var settings = new Dictionary<string, string?>
        {
            ["CacheHost:Roles"] = null,
            ["CacheHost:Roles:0"] = CacheServerRole.Name,
            [$"{CacheServerOptions.SectionName}:StatsOutput"] = nameof(LineOutput.Stderr), // bare lines on stderr, distcache §9.3
        };
        const string S = CacheServerOptions.SectionName;
        string? listen = null;
        var tls = new Dictionary<string, string>(); // TlsListen:0 keys, given by the -tls-* flags
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            switch (arg)
            {
                case "-h" or "-help" or "-?":
                    return new Result(null, 0, Usage);
                case "-daemon":
                    settings["CacheHost:Process:Daemon"] = "true";
                    continue;
                case "-killable":
                    settings[$"{S}:Killable"] = "true";
                    continue;
                case "-tls-verify":
                    tls["RequireClientCertificate"] = "true";
                    continue;
            }

            var name = arg switch
            {
                "-listen" or "-sessions" or "-progress" or "-pidfile" or "-user" or "-sockowner" or "-sockgroup" or "-sockperms"
                    or "-tls-cert" or "-tls-key" or "-tls-ca" => arg[1..],
                _ => null,
            };
            if (name is null)
            {
                return new Result(null, 1, $"Error, \"{arg}\" not recognised\n{Usage}");
            }

            if (i + 1 >= args.Count)
            {
                return new Result(null, 1, $"Error, --{name} requires an argument\n{Usage}");
            }

            var value = args[++i];
            switch (name)
            {
                case "listen":
                    listen = value;
                    break;
                case "sessions":
                    var sessions = Atoi(value);
                    if (sessions <= 0)
                    {
                        return Invalid(name);
                    }

                    settings[$"{S}:Capacity"] = sessions.ToString(CultureInfo.InvariantCulture);
                    break;
                case "progress":
                    var progress = Atoi(value);
                    if (progress is < 0 or > 1_000_000)
                    {
                        return Invalid(name);
                    }

                    settings[$"{S}:Progress"] = progress.ToString(CultureInfo.InvariantCulture);
                    break;
                case "pidfile":
                    settings["CacheHost:Process:PidFile"] = value;
                    break;
                case "user":
                    settings["CacheHost:Process:User"] = value;
                    break;
                case "sockowner":
                    settings[$"{S}:Transport:SocketOwner"] = value;
                    break;
                case "sockgroup":
                    settings[$"{S}:Transport:SocketGroup"] = value;
                    break;
                case "sockperms":
                    settings[$"{S}:Transport:SocketMode"] = value;
                    break;
                case "tls-cert" or "tls-key" or "tls-ca":
                    tls[name switch { "tls-cert" => "Certificate", "tls-key" => "Key", _ => "CertificateAuthority" }] = value;
                    break;
            }
        }

        if (listen is null)
        {
            return new Result(null, 1, $"Error, must provide -listen\n{Usage}");
        }

        settings[$"{S}:Listen"] = null;
        if (tls.Count == 0)
        {
            settings[$"{S}:Listen:0"] = listen;
        }
        else
        {
            // Any -tls-* flag makes -listen a TLS listener; a missing certificate or key is named at start.
            settings[$"{S}:TlsListen"] = null;
            settings[$"{S}:TlsListen:0:Address"] = listen;
            foreach (var (key, value) in tls)
            {
                settings[$"{S}:TlsListen:0:{key}"] = value;
            }
        }

        return new Result(settings, 0, string.Empty);
    }

    private static Result Invalid(string name) => new(null, 1, $"Error, --{name} given an invalid argument\n{Usage}");

    /// <summary>C atoi: optional whitespace and sign, then digits; anything else ends the number (garbage = 0).</summary>
    internal static long Atoi(string text)
    {
        var span = text.AsSpan().TrimStart();
        var negative = false;
        if (span.Length > 0 && (span[0] == '-' || span[0] == '+'))
        {
            negative = span[0] == '-';
            span = span[1..];
        }

        long value = 0;
        foreach (var c in span)
        {
            if (c is < '0' or > '9')
            {
                break;
            }

            value = Math.Min((value * 10) + (c - '0'), int.MaxValue);
        }

        return negative ? -value : value;
    }

    /// <summary>Flags as one string, for logs.</summary>
    public static string Describe(IReadOnlyList<string> args) => new StringBuilder().AppendJoin(' ', args).ToString();
}
