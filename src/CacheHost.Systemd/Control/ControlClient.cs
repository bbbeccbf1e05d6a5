using System.Net.Sockets;
using System.Text;
using CacheHost.Systemd.Logging;
using Microsoft.Extensions.Configuration;

namespace CacheHost.Systemd.Control;

/// <summary>
/// <c>cachehost ctl [--socket PATH] [--timeout SECONDS] COMMAND [ARG…]</c>: sends one command to the
/// running daemon's control socket, then <c>echo</c> with a unique marker (the daemonproxy sync
/// convention), prints every reply line until the marker, and exits 0, or 1 when a reply line is an
/// <c>error</c>, 2 when the daemon cannot be reached, 1 on a usage error. With COMMAND <c>-</c>, command lines are read from stdin.
/// Bytes pass unchanged both ways (the socket's lines are byte strings): the command's words are taken from the
/// raw argv, and reply lines are written to stdout as received.
/// </summary>
public static class ControlClient
{
    /// <summary>Runs the subcommand.</summary>
    public static int Run(string[] args, Stream input, Stream output, TextWriter error)
    {
        string? socket = null;
        var timeout = TimeSpan.FromSeconds(10);
        var i = 0;
        for (; i < args.Length; i++)
        {
            if (args[i] == "--socket" && i + 1 < args.Length)
            {
                socket = args[++i];
            }
            else if (args[i] == "--timeout" && i + 1 < args.Length && double.TryParse(args[++i], System.Globalization.CultureInfo.InvariantCulture, out var seconds) && seconds > 0)
            {
                timeout = TimeSpan.FromSeconds(seconds);
            }
            else if (args[i] is "-h" or "--help")
            {
                output.Write(Encoding.ASCII.GetBytes(
                    "usage: cachehost ctl [--socket PATH] [--timeout SECONDS] COMMAND [ARG...]   ('-' reads command lines from stdin)\n" +
                    "  prints the reply lines; exit 0, 1 if a reply is an error, 2 if the daemon cannot be reached\n" +
                    "  try: cachehost ctl help; cachehost ctl statedump; cachehost ctl log.filter Microsoft warning\n"));
                return 0;
            }
            else
            {
                break;
            }
        }

        if (i >= args.Length)
        {
            error.WriteLine("cachehost ctl: missing command (usage: cachehost ctl [--socket PATH] [--timeout SECONDS] COMMAND [ARG...]; try 'cachehost ctl help')");
            return 1;
        }

        var commands = args[i] == "-" ? ReadAll(input) : [string.Join('\t', RawArguments(args)[i..])];
        socket ??= DefaultSocket();
        try
        {
            return Exchange(socket, commands, timeout, output);
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.AddressNotAvailable or SocketError.ConnectionRefused)
        {
            // connect(2) on a missing path is ENOENT, which .NET reports as "Cannot assign requested address".
            error.WriteLine(File.Exists(socket) || Directory.Exists(socket)
                ? $"cachehost ctl: no daemon at {socket} (connection refused: a stale socket?)"
                : $"cachehost ctl: no daemon at {socket} (no such socket; is cachehost running? --socket PATH chooses another)");
            return 2;
        }
        catch (Exception ex) when (ex is SocketException or IOException or TimeoutException or OperationCanceledException)
        {
            error.WriteLine($"cachehost ctl: {socket}: {ex.Message}");
            return 2;
        }
    }

    private static int Exchange(string path, IReadOnlyList<string> commands, TimeSpan timeout, Stream output)
    {
        using var cts = new CancellationTokenSource(timeout);
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cts.Token).AsTask().GetAwaiter().GetResult();
        var marker = "ctl-done-" + Guid.NewGuid().ToString("N");
        var request = new StringBuilder();
        foreach (var command in commands)
        {
            request.Append(command).Append('\n');
        }

        request.Append("echo\t").Append(marker).Append('\n');
        socket.Send(Encoding.Latin1.GetBytes(request.ToString()));
        using var stream = new NetworkStream(socket, ownsSocket: false);
        var buffer = new byte[16 * 1024];
        using var line = new MemoryStream();
        var failed = false;
        while (true)
        {
            var n = stream.ReadAsync(buffer, cts.Token).AsTask().GetAwaiter().GetResult();
            if (n == 0)
            {
                throw new IOException("the daemon closed the connection before answering");
            }

            for (var k = 0; k < n; k++)
            {
                if (buffer[k] != (byte)'\n')
                {
                    line.WriteByte(buffer[k]);
                    continue;
                }

                var bytes = line.GetBuffer().AsSpan(0, (int)line.Length);
                if (bytes.SequenceEqual(Encoding.ASCII.GetBytes(marker)))
                {
                    output.Flush();
                    return failed ? 1 : 0;
                }

                failed |= bytes.StartsWith("error\t"u8);
                output.Write(bytes);
                output.WriteByte((byte)'\n');
                line.SetLength(0);
            }
        }
    }

    // Command lines from stdin, one per LF, bytes unchanged (a CR before the LF is dropped, as before).
    private static List<string> ReadAll(Stream input)
    {
        using var all = new MemoryStream();
        input.CopyTo(all);
        var lines = Encoding.Latin1.GetString(all.GetBuffer(), 0, (int)all.Length).Split('\n').ToList();
        if (lines[^1].Length == 0)
        {
            lines.RemoveAt(lines.Count - 1);
        }

        return lines.ConvertAll(l => l.EndsWith('\r') ? l[..^1] : l);
    }

    /// <summary>
    /// The arguments as byte strings (one char per byte). .NET hands Main UTF-8-decoded strings, in which bytes
    /// that are not UTF-8 are already lost, so the words are taken from the end of /proc/self/cmdline (Main's
    /// arguments are argv's last entries) when they decode to the same strings; otherwise their UTF-8 bytes.
    /// </summary>
    private static string[] RawArguments(string[] args)
    {
        string[] raw;
        try
        {
            raw = Encoding.Latin1.GetString(File.ReadAllBytes("/proc/self/cmdline")).Split('\0')[..^1]; // each entry ends with NUL
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            raw = [];
        }

        var result = new string[args.Length];
        var offset = raw.Length - args.Length;
        for (var k = 0; k < args.Length; k++)
        {
            var candidate = offset >= 0 ? raw[offset + k] : null;
            result[k] = candidate is not null && ControlReply.BytesToText(candidate) == args[k] ? candidate : ControlReply.TextToBytes(args[k]);
        }

        return result;
    }

    /// <summary>The control socket of the packaged service (RuntimeDirectory=cachehost).</summary>
    public const string ServiceSocket = "/run/cachehost/control.sock";

    // Same resolution as the daemon: CacheHost:Control:Socket from appsettings.json (exe folder),
    // $CACHEHOST_CONFIG and the environment, else the default path.
    private static string DefaultSocket()
    {
        var builder = new ConfigurationBuilder()
            .AddJsonFile(Path.Combine(AppContext.BaseDirectory, "appsettings.json"), optional: true, reloadOnChange: false);
        var extra = Environment.GetEnvironmentVariable("CACHEHOST_CONFIG");
        if (!string.IsNullOrEmpty(extra))
        {
            builder.AddJsonFile(Path.GetFullPath(extra), optional: true, reloadOnChange: false);
        }

        var configured = builder.AddEnvironmentVariables().Build()["CacheHost:Control:Socket"];
        if (!string.IsNullOrWhiteSpace(configured))
        {
            return configured;
        }

        var runtime = Environment.GetEnvironmentVariable("RUNTIME_DIRECTORY")?.Split(':')[0];
        var own = ControlOptions.DefaultSocketPath(runtime);
        // A daemon of this user (development run) first, else the packaged service's socket.
        return string.IsNullOrEmpty(runtime) && !File.Exists(own) && File.Exists(ServiceSocket) ? ServiceSocket : own;
    }
}
