using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using CacheHost.Core;
using CacheHost.Roles.Clacks;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

// Clacks benchmarks (numbers go to docs/clacks.md):
//  1. fan-out: one publisher, 100 listeners, SET messages; delivered msgs/s and p99 publish->delivery latency
//     (blast = as fast as the publisher can write; paced = 2000 msgs/s).
//  2. cache: 50 clients over a unix socket, each round trip = STORE + RETRIEVE; ops/s.
var seconds = args.Length > 0 ? double.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 5;
var dir = Path.Combine("/tmp", "clacksbench" + Environment.ProcessId);
Directory.CreateDirectory(dir);
var socket = Path.Combine(dir, "s.sock");
var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
{
    ["CacheHost:Clacks:Username"] = "admin",
    ["CacheHost:Clacks:Password"] = "adminpass",
    ["CacheHost:Clacks:Sockets:0"] = socket,
});
builder.Logging.SetMinimumLevel(LogLevel.Warning);
builder.Services.AddSingleton<RoleFailures>();
builder.Services.AddSingleton<IListenerFactory, DefaultListenerFactory>();
builder.AddClacksRole();
using var host = builder.Build();
await host.StartAsync();

await FanOut(blastMessages: 20_000, pacedPerSecond: 2000, pacedSeconds: seconds);
await Cache(clients: 50, seconds: seconds);
await host.StopAsync();
Directory.Delete(dir, true);

async Task<Line> Login(string name)
{
    var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    await s.ConnectAsync(new UnixDomainSocketEndPoint(socket));
    var line = new Line(s);
    await line.Send($"CLACKS {name}\r\nOVERHEAD A YWRtaW4=:YWRtaW5wYXNz\r\nNOPING\r\n");
    while (await line.Read() != "OVERHEAD O Welcome!")
    {
    }

    return line;
}

async Task FanOut(int blastMessages, int pacedPerSecond, double pacedSeconds)
{
    const int listeners = 100;
    var subs = new List<Line>();
    for (var i = 0; i < listeners; i++)
    {
        var l = await Login("listener" + i);
        await l.Send("LISTEN bench\r\nFLUSH ready\r\n");
        while (await l.Read() != "FLUSHED ready")
        {
        }

        subs.Add(l);
    }

    var publisher = await Login("publisher");
    foreach (var (mode, count, rate) in new[] { ("blast", blastMessages, 0), ("paced", (int)(pacedPerSecond * pacedSeconds), pacedPerSecond) })
    {
        var latencies = new long[listeners][];
        var readers = subs.Select((l, idx) => Task.Run(async () =>
        {
            var lat = new long[count];
            for (var n = 0; n < count; n++)
            {
                var line = await l.Read();
                var sent = long.Parse(line.AsSpan(line.IndexOf('=') + 1));
                lat[n] = Stopwatch.GetTimestamp() - sent;
            }

            latencies[idx] = lat;
        })).ToArray();
        var clock = Stopwatch.StartNew();
        var sb = new StringBuilder();
        for (var n = 0; n < count; n++)
        {
            if (rate > 0)
            {
                var due = TimeSpan.FromSeconds((double)n / rate);
                if (due > clock.Elapsed)
                {
                    await Task.Delay(due - clock.Elapsed);
                }

                await publisher.Send($"SET bench={Stopwatch.GetTimestamp()}\r\n");
            }
            else
            {
                sb.Append("SET bench=").Append(Stopwatch.GetTimestamp()).Append("\r\n");
                if (sb.Length > 16 * 1024 || n == count - 1)
                {
                    await publisher.Send(sb.ToString());
                    sb.Clear();
                }
            }
        }

        await Task.WhenAll(readers);
        var elapsed = clock.Elapsed.TotalSeconds;
        var all = latencies.SelectMany(x => x).Order().ToArray();
        double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
        Console.WriteLine($"fan-out {mode}: {count} msgs x {listeners} listeners in {elapsed:F2} s = {count * listeners / elapsed:N0} deliveries/s " +
            $"({count / elapsed:N0} published msgs/s); latency p50 {Ms(all[all.Length / 2]):F2} ms, p99 {Ms(all[(int)(all.Length * 0.99)]):F2} ms");
    }

    foreach (var l in subs)
    {
        l.Dispose();
    }

    publisher.Dispose();
}

async Task Cache(int clients, double seconds)
{
    var conns = new List<Line>();
    for (var i = 0; i < clients; i++)
    {
        conns.Add(await Login("cache" + i));
    }

    long ops = 0;
    var until = Stopwatch.StartNew();
    var tasks = conns.Select((c, idx) => Task.Run(async () =>
    {
        var n = 0;
        while (until.Elapsed.TotalSeconds < seconds)
        {
            var key = $"k{idx}_{n++ % 1000}";
            await c.Send($"STORE {key}=value-{n}-{new string('v', 64)}\r\nRETRIEVE {key}\r\n");
            while (!(await c.Read()).StartsWith("RETRIEVED ", StringComparison.Ordinal))
            {
            }

            Interlocked.Add(ref ops, 2);
        }
    })).ToArray();
    await Task.WhenAll(tasks);
    Console.WriteLine($"cache: {clients} clients, STORE+RETRIEVE round trips over a unix socket: {ops / until.Elapsed.TotalSeconds:N0} ops/s");
    foreach (var c in conns)
    {
        c.Dispose();
    }
}

/// <summary>Minimal line reader/writer for the benchmark clients.</summary>
internal sealed class Line(Socket socket) : IDisposable
{
    private readonly byte[] _buffer = new byte[64 * 1024];
    private int _start;
    private int _end;

    public async Task Send(string text) => await socket.SendAsync(Encoding.Latin1.GetBytes(text));

    public async Task<string> Read()
    {
        while (true)
        {
            var lf = Array.IndexOf(_buffer, (byte)'\n', _start, _end - _start);
            if (lf >= 0)
            {
                var line = Encoding.Latin1.GetString(_buffer, _start, lf - _start).TrimEnd('\r');
                _start = lf + 1;
                return line;
            }

            if (_start > 0)
            {
                Array.Copy(_buffer, _start, _buffer, 0, _end - _start);
                _end -= _start;
                _start = 0;
            }

            var n = await socket.ReceiveAsync(_buffer.AsMemory(_end));
            if (n == 0)
            {
                throw new IOException("closed");
            }

            _end += n;
        }
    }

    public void Dispose() => socket.Dispose();
}
