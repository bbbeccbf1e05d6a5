using System.Globalization;
using CacheHost.Transport;

namespace CacheHost.LoadTool;

/// <summary>
/// Command line of the load tool: dc_test's flags with its defaults, limits and messages (distcache §11.1), plus the
/// CacheHost extensions (-clients, -threads, -pipeline, -duration, -json, -mix, -valuesize, -keys, -quiet).
/// </summary>
public sealed class LoadToolSettings
{
    /// <summary>Target address (required).</summary>
    public string? Connect { get; private set; }

    /// <summary>Sample sessions per client, 1..512 (default 10).</summary>
    public int Sessions { get; private set; } = 10;

    /// <summary>Operations per client (default 10 x sessions²).</summary>
    public long Ops { get; private set; } = -1;

    /// <summary>Minimum session data length (>= 4, default 50).</summary>
    public int DataMin { get; private set; } = 50;

    /// <summary>Maximum session data length, exclusive (<= 4096, default 2100).</summary>
    public int DataMax { get; private set; } = 2100;

    /// <summary>Mean ADD timeout in seconds (<= 3600, default 60).</summary>
    public int Timeout { get; private set; } = 60;

    /// <summary>ADD timeout spread in seconds (<= 3600 and &lt; timeout, default 5).</summary>
    public int TimeVar { get; private set; } = 5;

    /// <summary>Print the progress line every n operations (0 = never).</summary>
    public long Progress { get; private set; }

    /// <summary>One connection per client for the whole run (otherwise one per operation).</summary>
    public bool Persistent { get; private set; }

    /// <summary>Concurrent clients, each with its own sessions and model (as that many dc_test processes).</summary>
    public int Clients { get; private set; } = 1;

    /// <summary>
    /// Socket threads (epoll loops) the clients' connections are spread over; 0 = one per core (default). Like
    /// memtier's <c>--threads</c>: a benchmark states it, because on a small host it decides how much CPU the
    /// tool takes from the server (and from a proxy in between).
    /// </summary>
    public int Threads { get; private set; }

    /// <summary>Requests outstanding per connection (implies a persistent connection when > 1).</summary>
    public int Pipeline { get; private set; } = 1;

    /// <summary>Run for this long instead of a fixed number of operations (0 = off).</summary>
    public double Duration { get; private set; }

    /// <summary>Seconds at the start that the report leaves out (0 = none); with -duration the run lasts this much longer.</summary>
    public double Warmup { get; private set; }

    /// <summary>
    /// Fixed total request rate (ops/s over all clients, 0 = as fast as answered). Each request has a scheduled
    /// start and its latency counts from there, so a stalled server's queue shows in the percentiles
    /// (coordinated omission corrected, as wrk2).
    /// </summary>
    public long Rate { get; private set; }

    /// <summary>Final report as JSON on stdout.</summary>
    public bool Json { get; private set; }

    /// <summary>No live progress display.</summary>
    public bool Quiet { get; private set; }

    /// <summary>Memcached-style mix (e.g. get:4,add:1); null = dc_test's verified barrage.</summary>
    public IReadOnlyList<(MixOperation Operation, int Weight)>? Mix { get; private set; }

    /// <summary>Value size of the mix mode (default 1024).</summary>
    public int ValueSize { get; private set; } = 1024;

    /// <summary>Key space of the mix mode (default 10000).</summary>
    public int Keys { get; private set; } = 10_000;

    /// <summary>TLS of the connections (-tls-cert, -tls-key, -tls-ca, -tls-verify); plain when nothing is set.</summary>
    public TlsOptions Tls { get; } = new();

    /// <summary>The TLS context built from <see cref="Tls"/> (null for plain connections); one for the whole run.</summary>
    public TlsContext? TlsContext => Tls.IsClientConfigured ? _tlsContext ??= new TlsContext(Tls, server: false) : null;

    private TlsContext? _tlsContext;

    /// <summary>Effective operations per client.</summary>
    public long EffectiveOps => Ops >= 0 ? Ops : 10L * Sessions * Sessions;

    /// <summary>Usage text (stderr).</summary>
    public const string Usage = """
        Usage: cachehost test -connect <addr> [options]   (dc_test)
          -connect <addr>   distcache server or proxy (UNIX:/path, IP:host:port)
          -sessions <n>     sample sessions per client, 1..512 (default 10)
          -ops <n>          operations per client, <= 1000000 (default 10 x sessions^2)
          -datamin <b>      minimum session data length, >= 4 (default 50)
          -datamax <b>      maximum session data length (exclusive), <= 4096 (default 2100)
          -timeout <s>      mean ADD timeout in seconds, <= 3600 (default 60)
          -timevar <s>      +/- timeout spread, < timeout (default 5)
          -progress <n>     print the operation count every n operations
          -persistent       one connection for the whole run (default: one per operation)
        CacheHost extensions:
          -clients <n>      concurrent clients (each like one dc_test process; default 1)
          -threads <n>      socket threads the clients share (default: one per core)
          -pipeline <n>     requests outstanding per connection (implies -persistent; default 1)
          -duration <s>     run for s seconds instead of -ops
          -warmup <s>       leave the first s seconds out of the report (-duration runs that much longer)
          -rate <n>         fixed rate of n requests/s over all clients, latency from each request's
                            scheduled start (coordinated omission corrected; -pipeline 1, not with
                            -mix -persistent or --protocol memcached)
          -mix op:w,...     unverified memcached-style mix of get/add/remove/have (e.g. get:4,add:1)
          -valuesize <b>    value size for -mix (default 1024)
          -keys <n>         key space for -mix (default 10000)
          -tls-cert <file>  TLS: client certificate (PEM) for mutual TLS
          -tls-key <file>   TLS: its private key (PEM)
          -tls-ca <file>    TLS: CA bundle (PEM) the server certificate must chain to
          -tls-verify       TLS: insist on -tls-ca (the server's certificate is always verified)
          -json             final report as JSON on stdout
          -quiet            no live progress
        """;

    /// <summary>Parses <paramref name="args"/>; returns null and writes dc_test's error text on a problem.</summary>
    public static LoadToolSettings? Parse(string[] args, TextWriter error, out int exitCode)
    {
        var s = new LoadToolSettings();
        exitCode = 0;
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            string Next(string name)
            {
                if (i + 1 >= args.Length)
                {
                    throw new UsageException($"Error, --{name} requires an argument");
                }

                return args[++i];
            }

            long Number(string name, long max, long min = 0)
            {
                var value = Atoi(Next(name));
                if (value < min || value > max)
                {
                    throw new UsageException($"Error, --{name} given an invalid argument");
                }

                return value;
            }

            try
            {
                switch (arg)
                {
                    case "-connect": s.Connect = Next("connect"); break;
                    case "-sessions": s.Sessions = (int)Number("sessions", 512, 1); break;
                    case "-ops": s.Ops = Number("ops", 1_000_000_000); break;
                    case "-datamin": s.DataMin = (int)Number("datamin", 32_000, 4); break;
                    case "-datamax": s.DataMax = (int)Number("datamax", 4096); break;
                    case "-timeout": s.Timeout = (int)Number("timeout", 3600); break;
                    case "-timevar": s.TimeVar = (int)Number("timevar", 3600); break;
                    case "-progress": s.Progress = Number("progress", 1_000_000); break;
                    case "-persistent": s.Persistent = true; break;
                    case "-withcert":
                        Next("withcert");
                        throw new UsageException("Error, no OpenSSL support compiled in, -with-cert not available.");
                    case "-clients": s.Clients = (int)Number("clients", 10_000, 1); break;
                    case "-threads": s.Threads = (int)Number("threads", 256, 1); break;
                    case "-pipeline": s.Pipeline = (int)Number("pipeline", 4096, 1); break;
                    case "-duration":
                        if (!double.TryParse(Next("duration"), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) || d <= 0)
                        {
                            throw new UsageException("Error, --duration given an invalid argument");
                        }

                        s.Duration = d;
                        break;
                    case "-warmup":
                        if (!double.TryParse(Next("warmup"), NumberStyles.Float, CultureInfo.InvariantCulture, out var w) || w < 0 || w > 86_400)
                        {
                            throw new UsageException("Error, --warmup given an invalid argument");
                        }

                        s.Warmup = w;
                        break;
                    case "-rate": s.Rate = Number("rate", 10_000_000, 1); break;
                    case "-mix": s.Mix = ParseMix(Next("mix")); break;
                    case "-valuesize": s.ValueSize = (int)Number("valuesize", 32_000, 5); break;
                    case "-keys": s.Keys = (int)Number("keys", 100_000_000, 1); break;
                    case "-tls-cert": s.Tls.Certificate = Next("tls-cert"); break;
                    case "-tls-key": s.Tls.Key = Next("tls-key"); break;
                    case "-tls-ca": s.Tls.CertificateAuthority = Next("tls-ca"); break;
                    case "-tls-verify": s.Tls.RequireClientCertificate = true; break;
                    case "-json": s.Json = true; break;
                    case "-quiet": s.Quiet = true; break;
                    case "-h" or "-help" or "-?" or "--help":
                        error.WriteLine(Usage);
                        exitCode = 0;
                        return null;
                    default:
                        error.WriteLine($"Error, \"{arg}\" not recognised");
                        error.WriteLine(Usage);
                        exitCode = 1;
                        return null;
                }
            }
            catch (UsageException ex)
            {
                error.WriteLine(ex.Message);
                exitCode = 1;
                return null;
            }
        }

        if (s.Connect is null)
        {
            error.WriteLine("Error, must provide -connect");
            exitCode = 1;
            return null;
        }

        if (s.TimeVar >= s.Timeout)
        {
            error.WriteLine("Error, --timevar given an invalid argument");
            exitCode = 1;
            return null;
        }

        if (s.Ops > 1_000_000 && s.Mix is null && s.Duration == 0)
        {
            error.WriteLine("Error, --ops given an invalid argument");
            exitCode = 1;
            return null;
        }

        if (s.Rate > 0 && s.Pipeline > 1)
        {
            error.WriteLine("Error, --rate needs -pipeline 1 (each request has its own scheduled start)");
            exitCode = 1;
            return null;
        }

        if (s.Pipeline > 1)
        {
            s.Persistent = true;
        }

        if (s.Tls.IsClientConfigured)
        {
            foreach (var problem in s.Tls.Validate(server: false))
            {
                // Name the flag, not the key: "Error, -tls-key: cannot read '...'".
                var colon = problem.IndexOf(':', StringComparison.Ordinal);
                var flag = problem[..colon] switch { "Certificate" => "-tls-cert", "Key" => "-tls-key", "CertificateAuthority" => "-tls-ca", var other => other };
                error.WriteLine($"Error, {flag}{problem[colon..]}");
                exitCode = 1;
                return null;
            }
        }

        return s;
    }

    /// <summary>C atoi: optional sign and leading digits, anything else ends the number (non-numeric = 0).</summary>
    private static long Atoi(string text)
    {
        var i = 0;
        while (i < text.Length && char.IsWhiteSpace(text[i]))
        {
            i++;
        }

        var negative = false;
        if (i < text.Length && (text[i] == '-' || text[i] == '+'))
        {
            negative = text[i] == '-';
            i++;
        }

        long value = 0;
        while (i < text.Length && char.IsAsciiDigit(text[i]) && value < 100_000_000_000)
        {
            value = (value * 10) + (text[i] - '0');
            i++;
        }

        return negative ? -value : value;
    }

    private static List<(MixOperation, int)> ParseMix(string text)
    {
        var mix = new List<(MixOperation, int)>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var pieces = part.Split(':');
            if (!Enum.TryParse<MixOperation>(pieces[0], ignoreCase: true, out var op)
                || pieces.Length > 2
                || !int.TryParse(pieces.Length == 2 ? pieces[1] : "1", NumberStyles.None, CultureInfo.InvariantCulture, out var weight)
                || weight < 0)
            {
                throw new UsageException("Error, --mix given an invalid argument (e.g. get:4,add:1)");
            }

            mix.Add((op, weight));
        }

        if (mix.Count == 0 || mix.Sum(m => m.Item2) == 0)
        {
            throw new UsageException("Error, --mix given an invalid argument (e.g. get:4,add:1)");
        }

        return mix;
    }

    private sealed class UsageException(string message) : Exception(message);
}

/// <summary>Operations of the mix mode.</summary>
public enum MixOperation
{
    /// <summary>GET a key.</summary>
    Get,
    /// <summary>ADD a key (0x00 or 0x65 both count as success).</summary>
    Add,
    /// <summary>REMOVE a key.</summary>
    Remove,
    /// <summary>HAVE a key.</summary>
    Have,
}
