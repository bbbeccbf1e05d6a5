using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using CacheHost.Protocols.DistCache;
using CacheHost.Testing;
using Xunit;
using static CacheHost.CacheServer.Tests.HostilePeerTests;

namespace CacheHost.CacheServer.Tests;

/// <summary>
/// Issue 21 item 1 against the real program: clients that pipeline a megabyte of GETs for a 30,000-byte session
/// and read slowly used to drive the server to gigabytes (every buffered request was answered before one flush).
/// Now each connection's output is bounded, so the server's RSS stays under connections x (MaxReadBufferSize +
/// 1.5 x MaxWriteBufferSize + one reply) plus the runtime's own slack, and a bystander's GETs keep their latency.
/// </summary>
public sealed class SlowReaderTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private const int Clients = 16;
    private const int BufferLimit = 64 * 1024; // Transport:MaxReadBufferSize and MaxWriteBufferSize, set small
    private const int SessionSize = 30_000;

    [Fact]
    public async Task SixteenSlowPipeliningReadersKeepServerMemoryBoundedAndOthersServed()
    {
        var path = TestPaths.Socket("slow");
        using var server = CacheHostProcess.Start(["--CacheHost:Roles:0=CacheServer", $"--CacheHost:CacheServer:Listen:0=UNIX:{path}", "--CacheHost:CacheServer:Capacity=1024",
            $"--CacheHost:CacheServer:Transport:MaxReadBufferSize={BufferLimit}", $"--CacheHost:CacheServer:Transport:MaxWriteBufferSize={BufferLimit}"]);
        server.WaitForLine("Listening on UNIX:" + System.Text.RegularExpressions.Regex.Escape(path), TimeSpan.FromSeconds(60));
        var pid = server.Process.Id;

        using (var setup = Connect(path))
        {
            Add(setup, "big-session-id-0123456789abcdef0", Enumerable.Range(0, SessionSize).Select(i => (byte)i).ToArray(), 1);
            Add(setup, "small", new byte[100], 2);
        }

        using var bystander = Connect(path);
        var before = Latencies(bystander, () => false, 200);
        var baseline = Rss(pid);

        // Per connection: a read buffer of requests, the transport's write limit plus the half limit a batch may
        // add before it waits, and one reply. 50 % and 48 MiB on top for the runtime (GC heap, pools, threads).
        var reply = DistCacheProtocol.WireLength(SessionSize);
        long perConnection = BufferLimit + (BufferLimit * 3 / 2) + reply;
        var bound = baseline + (Clients * perConnection * 3 / 2) + (48L << 20);

        // 46-byte GETs: a 32-byte id. About one megabyte of them per client, pipelined.
        var get = Request(9, DistCacheOperation.Get, "big-session-id-0123456789abcdef0"u8);
        Assert.Equal(46, get.Length);
        var batch = Enumerable.Repeat(get, (1 << 20) / get.Length).SelectMany(b => b).ToArray();

        using var stop = new CancellationTokenSource();
        var sockets = Enumerable.Range(0, Clients).Select(_ => Connect(path)).ToArray();
        var workers = new List<Task>();
        foreach (var socket in sockets)
        {
            workers.Add(Run(() => SendAll(socket, batch, stop.Token)));
            workers.Add(Run(() => ReadSlowly(socket, stop.Token)));
        }

        long peak = 0;
        List<double> during;
        try
        {
            var monitor = Run(() =>
            {
                var watch = Stopwatch.StartNew();
                while (watch.Elapsed < TimeSpan.FromSeconds(5) && !stop.IsCancellationRequested)
                {
                    peak = Math.Max(peak, Rss(pid));
                    if (peak > bound)
                    {
                        server.Process.Kill(); // the old behaviour: stop it before it takes the machine's memory
                        return;
                    }

                    Thread.Sleep(50);
                }
            });
            try
            {
                during = Latencies(bystander, () => monitor.IsCompleted, int.MaxValue);
            }
            catch (Exception) when (peak > bound)
            {
                during = [];
            }

            await monitor.WaitAsync(TimeSpan.FromSeconds(60));
        }
        finally
        {
            stop.Cancel();
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }

            await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(30));
        }

        output.WriteLine($"RSS baseline {baseline >> 20} MiB, peak {peak >> 20} MiB, bound {bound >> 20} MiB; bystander median {Median(before):F3} ms before, {(during.Count > 0 ? Median(during) : double.NaN):F3} ms during ({during.Count} GETs)");
        Assert.True(peak <= bound, $"server RSS reached {peak >> 20} MiB; bound {bound >> 20} MiB (baseline {baseline >> 20} MiB)");
        Assert.True(during.Count >= 10, $"only {during.Count} bystander GETs during the load");
        var medianBefore = Median(before);
        var medianDuring = Median(during);
        Assert.True(medianDuring <= (medianBefore * 20) + 50,
            $"bystander GET median {medianDuring:F2} ms under load vs {medianBefore:F2} ms before");
    }

    private static Task Run(Action action) => Task.Factory.StartNew(action, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private static Socket Connect(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(path));
        return socket;
    }

    private static void SendAll(Socket socket, byte[] data, CancellationToken stop)
    {
        try
        {
            var sent = 0;
            while (sent < data.Length && !stop.IsCancellationRequested)
            {
                sent += socket.Send(data, sent, Math.Min(65536, data.Length - sent), SocketFlags.None);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }
    }

    /// <summary>About 200 KB/s: 4 KB every 20 ms.</summary>
    private static void ReadSlowly(Socket socket, CancellationToken stop)
    {
        var buffer = new byte[4096];
        try
        {
            while (!stop.IsCancellationRequested && socket.Receive(buffer) > 0)
            {
                stop.WaitHandle.WaitOne(20);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }
    }

    /// <summary>Milliseconds per GET of the small session, until <paramref name="done"/> or <paramref name="count"/> GETs.</summary>
    private static List<double> Latencies(Socket socket, Func<bool> done, int count)
    {
        var result = new List<double>();
        for (var i = 0; i < count && !done(); i++)
        {
            var watch = Stopwatch.StartNew();
            Assert.Equal(100, Get(socket, "small", (uint)(1000 + i)).Length);
            result.Add(watch.Elapsed.TotalMilliseconds);
            if (count == int.MaxValue)
            {
                Thread.Sleep(10); // spread over the whole load period
            }
        }

        return result;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[sorted.Count / 2];
    }

    private static long Rss(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
            }
        }

        throw new InvalidOperationException("no VmRSS");
    }
}
