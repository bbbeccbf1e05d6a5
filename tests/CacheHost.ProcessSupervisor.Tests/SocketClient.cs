using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;

namespace CacheHost.ProcessSupervisor.Tests;

/// <summary>A controller connected to the supervisor's unix socket; lines are read on a background thread.</summary>
internal sealed class SocketClient : IDisposable
{
    private readonly BlockingCollection<string> _lines = new();
    private readonly Thread? _reader;
    private volatile bool _eof;

    private SocketClient(Socket socket, bool startReading)
    {
        Socket = socket;
        if (startReading)
        {
            _reader = new Thread(ReadLoop) { IsBackground = true };
            _reader.Start();
        }
    }

    public Socket Socket { get; }

    public bool Eof => _eof;

    public static SocketClient Connect(string path, bool startReading = true, int? receiveBuffer = null)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            if (receiveBuffer is { } size)
            {
                s.ReceiveBufferSize = size;
            }

            try
            {
                s.Connect(new UnixDomainSocketEndPoint(path));
                return new SocketClient(s, startReading);
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                s.Dispose();
                Thread.Sleep(50);
            }
        }
    }

    /// <summary>Starts the reader later (for clients that first stop reading on purpose).</summary>
    public SocketClient StartReading()
    {
        var t = new Thread(ReadLoop) { IsBackground = true };
        t.Start();
        return this;
    }

    private void ReadLoop()
    {
        var buffer = new byte[65536];
        var pending = new List<byte>();
        try
        {
            int n;
            while ((n = Socket.Receive(buffer)) > 0)
            {
                for (var i = 0; i < n; i++)
                {
                    if (buffer[i] == (byte)'\n')
                    {
                        _lines.Add(Encoding.Latin1.GetString(pending.ToArray()));
                        pending.Clear();
                    }
                    else
                    {
                        pending.Add(buffer[i]);
                    }
                }
            }
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }

        _eof = true;
        _lines.CompleteAdding();
    }

    public void Send(string line) => SendRaw(line + "\n");

    public void SendRaw(string text) => Socket.Send(Encoding.Latin1.GetBytes(text));

    /// <summary>True when a line arrives within the timeout (the line is consumed).</summary>
    public bool TryPeekLine(TimeSpan timeout) => _lines.TryTake(out _, timeout);

    public string NextLine(TimeSpan? timeout = null)
    {
        if (!_lines.TryTake(out var line, timeout ?? DaemonProxyProcess.DefaultTimeout))
        {
            Assert.Fail("no line from the supervisor socket in time");
        }

        return line!;
    }

    public string Expect(string expected, TimeSpan? timeout = null)
    {
        var line = NextLine(timeout);
        DaemonProxyProcess.AssertLine(expected, line);
        return line;
    }

    public (List<string> Skipped, string Line) WaitFor(Func<string, bool> match, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? DaemonProxyProcess.DefaultTimeout);
        var skipped = new List<string>();
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || !_lines.TryTake(out var line, left))
            {
                Assert.Fail($"line not seen in time; got {skipped.Count} lines: {string.Join(" | ", skipped.TakeLast(5).Select(DaemonProxyProcess.Show))}");
                throw new InvalidOperationException();
            }

            if (match(line!))
            {
                return (skipped, line!);
            }

            skipped.Add(line!);
        }
    }

    public List<string> Sync(string mark = "-sync-")
    {
        Send("echo\t" + mark);
        return WaitFor(l => l == mark).Skipped;
    }

    /// <summary>True once the supervisor closed the connection (all remaining lines are discarded).</summary>
    public bool WaitForEof(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (_eof)
            {
                return true;
            }

            _lines.TryTake(out _, 50);
        }

        return _eof;
    }

    public void Dispose() => Socket.Dispose();
}

/// <summary>Short private temp directories (unix socket paths must stay under 108 bytes).</summary>
internal static class TempDir
{
    public static string Create()
    {
        var dir = Path.Combine("/tmp", "dpt-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(dir);
        return dir;
    }
}
