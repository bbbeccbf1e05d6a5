using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using CacheHost.LoadTool;
using CacheHost.Testing;
using Xunit;

namespace CacheHost.ClientProxy.Tests;

/// <summary>
/// The load tool's -mix mode over persistent connections (MixWorkload): memcached text protocol against a real
/// memcached (Debian package <c>memcached</c>, started by the test on its own unix socket), value
/// verification in both protocols, and the -protocol option's errors.
/// </summary>
public sealed class MixProtocolTests
{
    private static (int Exit, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var exit = LoadToolCommand.Run(args, stdout, stderr);
        return (exit, stdout.ToString(), stderr.ToString());
    }

    [Theory]
    [InlineData("1")]
    [InlineData("8")]
    public async Task MemcachedModeRunsAndVerifiesAgainstRealMemcached(string pipeline)
    {
        await using var memcached = await MemcachedProcess.StartAsync();
        var (exit, output, errors) = Run("-connect", memcached.Address, "-protocol", "memcached", "-mix", "get:4,add:1", "-valuesize", "1024",
            "-keys", "300", "-clients", "4", "-pipeline", pipeline, "-ops", "3000", "-json");
        Assert.True(exit == 0, errors + output);
        using var json = JsonDocument.Parse(output.Trim());
        Assert.Equal(12000, json.RootElement.GetProperty("ops").GetInt64());
        Assert.Equal("memcached", json.RootElement.GetProperty("protocol").GetString());
        Assert.False(json.RootElement.GetProperty("failed").GetBoolean());

        // What the tool stored is really in memcached, in the documented value layout: key number (LE), then pattern.
        var stored = 0;
        for (var key = 0; key < 300; key++)
        {
            var value = memcached.Get("cachehost-key-" + key);
            if (value is null)
            {
                continue;
            }

            stored++;
            Assert.Equal(1024, value.Length);
            Assert.Equal(key, BinaryPrimitives.ReadInt32LittleEndian(value));
        }

        Assert.True(stored > 100, $"only {stored} of 300 keys stored");
    }

    [Fact]
    public async Task MemcachedModeCatchesAWrongValue()
    {
        await using var memcached = await MemcachedProcess.StartAsync();
        var wrong = new byte[64];
        BinaryPrimitives.WriteInt32LittleEndian(wrong, 3);
        memcached.Set("cachehost-key-3", wrong);
        var (exit, _, errors) = Run("-connect", memcached.Address, "-protocol", "memcached", "-mix", "get:1", "-valuesize", "64",
            "-keys", "5", "-ops", "2000", "-quiet");
        Assert.Equal(1, exit);
        Assert.Contains("Error, received mismatched session", errors);
        Assert.Matches(@"Info, \d+ tests succeeded before the first failure", errors);
    }

    [Fact]
    public async Task DistCacheMixModeCatchesCorruptedValues()
    {
        using var server = FakeDistCacheServer.WithStore(data =>
        {
            var copy = data.ToArray();
            copy[^1] ^= 0x40;
            return copy;
        });
        await Task.Yield();
        var (exit, _, errors) = Run("-connect", server.Address, "-mix", "get:1,add:1", "-valuesize", "100", "-keys", "3", "-ops", "3000", "-persistent", "-quiet");
        Assert.Equal(1, exit);
        Assert.Contains("Error, received mismatched session", errors);
    }

    [Fact]
    public async Task DistCacheMixModeUnpipelinedAgainstTheRealServer()
    {
        await using var server = await InProcessCacheServer.StartAsync(capacity: 20000);
        var (exit, output, errors) = Run("-connect", server.Address, "-mix", "get:4,add:1,remove:1,have:1", "-keys", "200", "-clients", "3", "-ops", "2000", "-persistent");
        Assert.True(exit == 0, errors + output);
        Assert.Contains("6,000 ops in", output);
        Assert.Contains("pipeline 1, persistent", output);
    }

    [Fact]
    public void ProtocolOptionErrors()
    {
        Assert.Equal((1, "Error, --protocol requires an argument"), Short(Run("-connect", "UNIX:/x", "-protocol")));
        Assert.Equal((1, "Error, --protocol given an invalid argument (distcache or memcached)"), Short(Run("-connect", "UNIX:/x", "-protocol", "redis")));
        Assert.Equal((1, "Error, --protocol needs -mix"), Short(Run("-connect", "UNIX:/x", "-protocol", "memcached")));
        Assert.Equal((1, "Error, --protocol memcached has no HAVE; use get, add and remove in -mix"), Short(Run("-connect", "UNIX:/x", "-protocol", "memcached", "-mix", "have:1")));
        var (exit, _, errors) = Run("-help");
        Assert.Equal(0, exit);
        Assert.Contains("-protocol <p>", errors);

        static (int, string) Short((int Exit, string Out, string Err) r) => (r.Exit, r.Err.Split('\n')[0].TrimEnd());
    }

    /// <summary>A real memcached (1 thread, unix socket only, no UDP) owned by one test.</summary>
    private sealed class MemcachedProcess : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly string _path;

        private MemcachedProcess(Process process, string path)
        {
            _process = process;
            _path = path;
        }

        public string Address => "UNIX:" + _path;

        public static async Task<MemcachedProcess> StartAsync()
        {
            var path = TestPaths.Socket("memcached");
            var info = new ProcessStartInfo("memcached") { RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (var arg in new[] { "-s", path, "-t", "1", "-m", "64", "-U", "0" })
            {
                info.ArgumentList.Add(arg);
            }

            if (Environment.UserName == "root")
            {
                // memcached refuses to run as root unless told which user to be.
                info.ArgumentList.Add("-u");
                info.ArgumentList.Add("root");
            }

            var process = Process.Start(info) ?? throw new InvalidOperationException("memcached did not start");
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (true)
            {
                try
                {
                    using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                    await probe.ConnectAsync(new UnixDomainSocketEndPoint(path));
                    return new MemcachedProcess(process, path);
                }
                catch (SocketException) when (DateTime.UtcNow < deadline && !process.HasExited)
                {
                    await Task.Delay(50);
                }
                catch (SocketException)
                {
                    process.Kill();
                    throw new InvalidOperationException("memcached did not listen: " + process.StandardError.ReadToEnd());
                }
            }
        }

        public void Set(string key, byte[] value)
        {
            using var socket = Connect();
            socket.Send([.. Encoding.ASCII.GetBytes($"set {key} 0 0 {value.Length}\r\n"), .. value, .. "\r\n"u8]);
            Assert.Equal("STORED\r\n", Encoding.ASCII.GetString(ReadUntil(socket, "\r\n"u8.ToArray())));
        }

        public byte[]? Get(string key)
        {
            using var socket = Connect();
            socket.Send(Encoding.ASCII.GetBytes($"get {key}\r\n"));
            var reply = ReadUntil(socket, "END\r\n"u8.ToArray());
            if (reply.Length == 5)
            {
                return null;
            }

            var eol = reply.AsSpan().IndexOf("\r\n"u8);
            var header = Encoding.ASCII.GetString(reply, 0, eol).Split(' ');
            Assert.Equal("VALUE", header[0]);
            Assert.Equal(key, header[1]);
            var length = int.Parse(header[3], System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(eol + 2 + length + 2 + 5, reply.Length);
            return reply.AsSpan(eol + 2, length).ToArray();
        }

        private Socket Connect()
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 5000 };
            socket.Connect(new UnixDomainSocketEndPoint(_path));
            return socket;
        }

        private static byte[] ReadUntil(Socket socket, byte[] terminator)
        {
            var buffer = new List<byte>();
            var chunk = new byte[4096];
            while (buffer.Count < terminator.Length || !System.Runtime.InteropServices.CollectionsMarshal.AsSpan(buffer)[^terminator.Length..].SequenceEqual(terminator))
            {
                var n = socket.Receive(chunk);
                if (n == 0)
                {
                    throw new IOException("memcached closed the connection");
                }

                buffer.AddRange(chunk.AsSpan(0, n));
            }

            return [.. buffer];
        }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill();
            }

            await _process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token);
            _process.Dispose();
            File.Delete(_path);
        }
    }
}
