using System.Net.Security;
using System.Net.Sockets;
using System.Text;

namespace CacheHost.Clacks.Tests;

/// <summary>A raw line client over a unix socket or TLS, with bounded waits everywhere.</summary>
internal sealed class RawClient : IAsyncDisposable
{
    public const string AdminToken = "YWRtaW4=:YWRtaW5wYXNz";
    public static readonly string RwToken = CacheHost.Protocols.Clacks.LoginToken.Create("rwuser", "rwpass");
    public static readonly string RoToken = CacheHost.Protocols.Clacks.LoginToken.Create("rouser", "ropass");
    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    private readonly Socket _socket;
    private readonly Stream _stream;
    private readonly List<byte> _buffer = [];

    private RawClient(Socket socket, Stream stream)
    {
        _socket = socket;
        _stream = stream;
    }

    public static async Task<RawClient> ConnectAsync(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path)).WaitAsync(DefaultTimeout);
        return new RawClient(socket, new NetworkStream(socket, ownsSocket: false));
    }

    public static async Task<RawClient> ConnectTlsAsync(int port, RemoteCertificateValidationCallback validate)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(System.Net.IPAddress.Loopback, port).WaitAsync(DefaultTimeout);
        var ssl = new SslStream(new NetworkStream(socket, ownsSocket: false), false, validate);
        await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = "localhost" }).WaitAsync(DefaultTimeout);
        return new RawClient(socket, ssl);
    }

    public static async Task<RawClient> ConnectTcpPlainAsync(int port)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(System.Net.IPAddress.Loopback, port).WaitAsync(DefaultTimeout);
        return new RawClient(socket, new NetworkStream(socket, ownsSocket: false));
    }

    /// <summary>Connects, identifies, logs in and consumes greeting + Welcome.</summary>
    public static async Task<RawClient> LoginAsync(string path, string name = "test", string token = AdminToken)
    {
        var client = await ConnectAsync(path);
        await client.SendAsync($"CLACKS {name}\r\nOVERHEAD A {token}\r\n");
        await client.ExpectAsync("CLACKS PageCamel 36", "OVERHEAD M Authentication required", "OVERHEAD O Welcome!");
        return client;
    }

    public Task SendAsync(string text) => SendBytesAsync(Encoding.Latin1.GetBytes(text));

    public async Task SendBytesAsync(byte[] bytes)
    {
        await _stream.WriteAsync(bytes).AsTask().WaitAsync(DefaultTimeout);
        await _stream.FlushAsync().WaitAsync(DefaultTimeout);
    }

    /// <summary>Next line without its CR LF (Latin-1), or null on EOF.</summary>
    public async Task<string?> ReadLineAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        while (true)
        {
            var lf = _buffer.IndexOf((byte)'\n');
            if (lf >= 0)
            {
                var line = Encoding.Latin1.GetString(_buffer.GetRange(0, lf).ToArray());
                _buffer.RemoveRange(0, lf + 1);
                return line.TrimEnd('\r');
            }

            var chunk = new byte[65536];
            int n;
            try
            {
                n = await _stream.ReadAsync(chunk, cts.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException("no line within the timeout; buffered: " + Encoding.Latin1.GetString(_buffer.ToArray()));
            }
            catch (IOException)
            {
                n = 0;
            }

            if (n == 0)
            {
                return null;
            }

            _buffer.AddRange(chunk.AsSpan(0, n));
        }
    }

    /// <summary>Reads raw bytes until EOF (bounded).</summary>
    public async Task<string> ReadToEndAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        var all = new List<byte>(_buffer);
        _buffer.Clear();
        var chunk = new byte[65536];
        while (true)
        {
            int n;
            try
            {
                n = await _stream.ReadAsync(chunk, cts.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException("connection not closed; got: " + Encoding.Latin1.GetString(all.ToArray()));
            }
            catch (IOException)
            {
                n = 0;
            }

            if (n == 0)
            {
                return Encoding.Latin1.GetString(all.ToArray());
            }

            all.AddRange(chunk.AsSpan(0, n));
        }
    }

    public async Task ExpectAsync(params string[] lines)
    {
        foreach (var expected in lines)
        {
            Xunit.Assert.Equal(expected, await ReadLineAsync());
        }
    }

    /// <summary>Reads lines until one satisfies the predicate; returns it (others are skipped).</summary>
    public async Task<string> WaitForAsync(Func<string, bool> predicate, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? DefaultTimeout);
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero)
            {
                throw new TimeoutException("expected line did not arrive");
            }

            var line = await ReadLineAsync(left) ?? throw new IOException("connection closed while waiting");
            if (predicate(line))
            {
                return line;
            }
        }
    }

    /// <summary>Sends FLUSH and returns every line before FLUSHED (round trip barrier).</summary>
    public async Task<List<string>> FlushAsync(string id = "sync")
    {
        await SendAsync($"FLUSH {id}\r\n");
        var lines = new List<string>();
        while (true)
        {
            var line = await ReadLineAsync() ?? throw new IOException("closed before FLUSHED");
            if (line == "FLUSHED " + id)
            {
                return lines;
            }

            lines.Add(line);
        }
    }

    public async Task<string?> RetrieveAsync(string key)
    {
        await SendAsync($"RETRIEVE {key}\r\n");
        var line = await WaitForAsync(l => l.StartsWith("RETRIEVED " + key + "=", StringComparison.Ordinal) || l == "NOTRETRIEVED " + key);
        return line.StartsWith("RETRIEVED", StringComparison.Ordinal) ? line[("RETRIEVED " + key + "=").Length..] : null;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }

        await _stream.DisposeAsync();
        _socket.Dispose();
    }

    /// <summary>Polls until the condition holds (bounded).</summary>
    public static async Task EventuallyAsync(Func<Task<bool>> condition, TimeSpan? timeout = null, string? what = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(15));
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("condition not reached: " + what);
            }

            await Task.Delay(50);
        }
    }
}
