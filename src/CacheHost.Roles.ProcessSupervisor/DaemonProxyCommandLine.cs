using System.Text;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>
/// daemonproxy's command line (daemonproxy §2.1): short options bundle (<c>-vv</c>, <c>-ic FILE</c>, each argument
/// letter consuming the next word in order), long options need <c>--</c> and a separate argument word.
/// </summary>
internal sealed class DaemonProxyCommandLine
{
    private static readonly (char Short, string Long, string? Arg, string Help)[] Options =
    [
        ('c', "config", "FILE", "Read commands from FILE once at startup (\"-\" = stdin)"),
        ('i', "interactive", null, "Use stdin/stdout as an interactive controller"),
        ('S', "socket", "PATH", "Listen on a unix socket at PATH for controller connections"),
        ('D', "daemonize", null, "Fork into the background; print the daemon's PID"),
        ('\0', "exit-guard", "INT", "Refuse to terminate without this code (0 = none)"),
        ('E', "exit-exec", "TSV", "Exec this TAB-separated argv instead of exiting"),
        ('\0', "fd-pool", "N[xM]", "Preallocate N handle objects of M bytes"),
        ('\0', "service-pool", "N[xM]", "Preallocate N service objects of M bytes"),
        ('M', "mlockall", null, "Lock all memory pages after setup"),
        ('v', "verbose", null, "More log output (repeatable)"),
        ('q', "quiet", null, "Less log output (repeatable)"),
        ('h', "help", null, "Print this help and exit"),
        ('\0', "version", null, "Print version information and exit"),
    ];

    public SupervisorSettings Settings { get; } = new();

    public bool Daemonize { get; private set; }

    public bool Help { get; private set; }

    public bool ShowVersion { get; private set; }

    /// <summary>Warnings to log once the log exists (pool clamps).</summary>
    public List<string> Warnings { get; } = [];

    /// <summary>Parses; returns null or the fatal message (exit 2).</summary>
    public string? Parse(string[] args)
    {
        for (var i = 0; i < args.Length; i++)
        {
            var word = args[i];
            if (word.StartsWith("--", StringComparison.Ordinal) && word.Length > 2)
            {
                var name = word[2..];
                var option = Options.FirstOrDefault(o => o.Long == name);
                if (option.Long is null)
                {
                    return $"Unknown option \"{word}\"";
                }

                string? value = null;
                if (option.Arg is not null)
                {
                    if (++i >= args.Length)
                    {
                        return $"Missing argument for \"{word}\"";
                    }

                    value = args[i];
                }

                var error = Apply(option.Long, value);
                if (error is not null)
                {
                    return error;
                }
            }
            else if (word.StartsWith('-') && word.Length > 1 && word != "--")
            {
                for (var j = 1; j < word.Length; j++)
                {
                    var option = Options.FirstOrDefault(o => o.Short == word[j] && o.Short != '\0');
                    if (option.Long is null)
                    {
                        return $"Unknown option \"-{word[j]}\"";
                    }

                    string? value = null;
                    if (option.Arg is not null)
                    {
                        if (++i >= args.Length)
                        {
                            return $"Missing argument for \"-{word[j]}\"";
                        }

                        value = args[i];
                    }

                    var error = Apply(option.Long, value);
                    if (error is not null)
                    {
                        return error;
                    }
                }
            }
            else
            {
                return $"Unexpected argument \"{word}\"";
            }
        }

        return null;
    }

    private string? Apply(string option, string? value)
    {
        switch (option)
        {
            case "config":
                if (value != "-" && !File.Exists(value) && !Directory.Exists(value))
                {
                    return $"Can't stat config file '{value}'";
                }

                Settings.ConfigFile = value;
                return null;
            case "interactive": Settings.Interactive = true; return null;
            case "socket": Settings.SocketPath = value; return null;
            case "daemonize": Daemonize = true; return null;
            case "exit-guard":
                if (!long.TryParse(value, System.Globalization.NumberStyles.AllowLeadingSign | System.Globalization.NumberStyles.AllowLeadingWhite, null, out var guard))
                {
                    return "Terminate guard must be an integer";
                }

                Settings.Guard = guard;
                return null;
            case "exit-exec":
                if (Encoding.UTF8.GetByteCount(value!) > 255)
                {
                    return "Exec-on-exit arguments exceed buffer size (255)";
                }

                Settings.ExecArgs = value!.Length == 0 ? null : value;
                return null;
            case "fd-pool":
                return ParsePool(value!, 7, 1024, 32, 4096, 96, "fd", (n, m) => { Settings.HandlePool = n; Settings.HandleObjectSize = m; });
            case "service-pool":
                return ParsePool(value!, 1, 65535, 64, int.MaxValue, 512, "service", (n, m) => { Settings.ServicePool = n; Settings.ServiceObjectSize = m; });
            case "mlockall": Settings.MLockAll = true; return null;
            case "verbose": Settings.Verbosity--; return null;
            case "quiet": Settings.Verbosity++; return null;
            case "help": Help = true; return null;
            case "version": ShowVersion = true; return null;
            default: return $"Unknown option \"--{option}\"";
        }
    }

    private string? ParsePool(string value, int minN, int maxN, int minM, int maxM, int defaultM, string what, Action<int, int> set)
    {
        var x = value.IndexOf('x');
        var countText = x < 0 ? value : value[..x];
        if (!long.TryParse(countText, System.Globalization.NumberStyles.None, null, out var n))
        {
            return $"Invalid {what} pool count '{countText}'";
        }

        long m = defaultM;
        if (x >= 0 && !TryParseSize(value[(x + 1)..], out m))
        {
            return $"Invalid {what} pool object size '{value[(x + 1)..]}'";
        }

        if (n < minN)
        {
            Warnings.Add($"At least {minN} {what} objects required; using minimum");
            n = minN;
        }
        else if (n > maxN)
        {
            Warnings.Add($"{what} pool limited to maximum of {maxN}");
            n = maxN;
        }

        if (m < minM)
        {
            Warnings.Add($"{what} obj size must be at least {minM}");
            m = minM;
        }
        else if (m > maxM)
        {
            Warnings.Add($"{what} obj size limited to maximum of {maxM}");
            m = maxM;
        }

        set((int)n, (int)m);
        return null;
    }

    /// <summary>Size suffixes of daemonproxy §2.1: k/m/g = 1024^n, kB/MB = 1000^n, KiB = 1024^n, b/B = bytes.</summary>
    internal static bool TryParseSize(string text, out long bytes)
    {
        bytes = 0;
        var digits = 0;
        while (digits < text.Length && char.IsAsciiDigit(text[digits]))
        {
            digits++;
        }

        if (digits == 0 || !long.TryParse(text.AsSpan(0, digits), out var n))
        {
            return false;
        }

        var suffix = text[digits..];
        long unit;
        if (suffix.Length == 0 || suffix is "b" or "B")
        {
            unit = 1;
        }
        else
        {
            var power = char.ToLowerInvariant(suffix[0]) switch { 'k' => 1, 'm' => 2, 'g' => 3, _ => 0 };
            if (power == 0)
            {
                return false;
            }

            var rest = suffix[1..];
            var baseUnit = rest switch { "" or "iB" => 1024L, "B" => 1000L, _ => 0L };
            if (baseUnit == 0)
            {
                return false;
            }

            unit = 1;
            for (var i = 0; i < power; i++)
            {
                unit *= baseUnit;
            }
        }

        bytes = n * unit;
        return true;
    }

    public static string HelpText()
    {
        var text = new StringBuilder();
        text.Append("daemonproxy version ").Append(Supervisor.Version).Append('\n');
        text.Append("options:\n");
        foreach (var (s, l, a, h) in Options)
        {
            var shortText = s == '\0' ? "   " : $"-{s} ";
            text.Append($"  {shortText}--{l,-13} {a ?? "",-6} {h}\n");
        }

        return text.ToString();
    }

    public static string VersionText()
    {
        // The executable's time, not Assembly.Location's: that is empty in a single-file publish (IL3000
        // fails the packaging build).
        var built = File.GetLastWriteTimeUtc(Environment.ProcessPath ?? Path.Combine(AppContext.BaseDirectory, "cachehost.dll"));
        var unix = new DateTimeOffset(built).ToUnixTimeSeconds();
        return $"daemonproxy version {Supervisor.Version}\n"
            + $" build timestamp: {unix} ({built:yyyy-MM-dd HH:mm:ss})\n"
            + $" git HEAD: {Supervisor.GitHash()}\n"
            + $"Copyright (C) 2014-{built:yyyy}  CacheHost authors (daemonproxy protocol by Michael Conrad)\n"
            + "This is an independent reimplementation of daemonproxy's behaviour; it contains no\n"
            + "code of the original. See LICENSE for the terms of use.\n"
            + "This program is distributed WITHOUT ANY WARRANTY.\n";
    }
}
