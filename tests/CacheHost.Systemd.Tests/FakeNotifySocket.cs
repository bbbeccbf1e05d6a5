using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;

namespace CacheHost.Systemd.Tests;

/// <summary>
/// Plays systemd's side of sd_notify: a datagram socket (abstract name or path) that records every
/// message with its arrival time.
/// </summary>
public sealed class FakeNotifySocket : IDisposable
{
    private readonly Socket _socket;
    private readonly BlockingCollection<(DateTime At, string Text)> _messages = new();
    private readonly Thread _reader;
    private readonly string? _path;

    private FakeNotifySocket(string notifyValue, UnixDomainSocketEndPoint endPoint, string? path)
    {
        NotifySocket = notifyValue;
        _path = path;
        _socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        _socket.Bind(endPoint);
        _reader = new Thread(ReadLoop) { IsBackground = true, Name = "fake-notify" };
        _reader.Start();
    }

    /// <summary>The NOTIFY_SOCKET value for the child.</summary>
    public string NotifySocket { get; }

    /// <summary>Everything received so far.</summary>
    public List<(DateTime At, string Text)> All { get; } = [];

    public static FakeNotifySocket Abstract()
    {
        var name = "cachehost-test-notify-" + Guid.NewGuid().ToString("N");
        return new FakeNotifySocket("@" + name, new UnixDomainSocketEndPoint("\0" + name), null);
    }

    public static FakeNotifySocket AtPath()
    {
        var path = Path.Combine(Path.GetTempPath(), "chn-" + Guid.NewGuid().ToString("N")[..12] + ".sock");
        return new FakeNotifySocket(path, new UnixDomainSocketEndPoint(path), path);
    }

    /// <summary>Waits for the next message that satisfies <paramref name="match"/>; fails the test on timeout.</summary>
    public (DateTime At, string Text) WaitFor(Func<string, bool> match, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || !_messages.TryTake(out var message, left))
            {
                throw new TimeoutException($"no {what} within {timeout.TotalSeconds}s; got: {string.Join(" | ", All.Select(m => m.Text.Replace("\n", "\\n")))}");
            }

            if (match(message.Text))
            {
                return message;
            }
        }
    }

    /// <summary>
    /// Waits for READY=1 and returns it with the start-up STATUS= line appended: Microsoft.Extensions.Hosting.Systemd's
    /// lifetime sends READY=1 alone, and StatusNotifications sends STATUS= in its own datagram from the same
    /// ApplicationStarted event (it registers later, so its callback runs first).
    /// </summary>
    public (DateTime At, string Text) WaitForReady(TimeSpan timeout)
    {
        var ready = WaitFor(m => m.Contains("READY=1"), timeout, "READY=1");
        (DateTime At, string Text) status;
        lock (All)
        {
            status = All.LastOrDefault(m => m.At <= ready.At && m.Text.StartsWith("STATUS=", StringComparison.Ordinal));
        }

        if (status.Text is null)
        {
            status = WaitFor(m => m.StartsWith("STATUS=", StringComparison.Ordinal), timeout, "STATUS= at start-up");
        }

        return (ready.At, ready.Text + "\n" + status.Text);
    }

    /// <summary>Forgets the messages received but not yet waited for (they stay in <see cref="All"/>).</summary>
    public void Drain()
    {
        while (_messages.TryTake(out _))
        {
        }
    }

    /// <summary>True if a matching message arrives within <paramref name="window"/>.</summary>
    public bool Receives(Func<string, bool> match, TimeSpan window)
    {
        try
        {
            WaitFor(match, window, "message");
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    private void ReadLoop()
    {
        var buffer = new byte[8192];
        try
        {
            while (true)
            {
                var n = _socket.Receive(buffer);
                var message = (DateTime.UtcNow, Encoding.UTF8.GetString(buffer, 0, n));
                lock (All)
                {
                    All.Add(message);
                }

                _messages.Add(message);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or InvalidOperationException)
        {
        }
    }

    public void Dispose()
    {
        _socket.Dispose();
        if (_path is not null)
        {
            File.Delete(_path);
        }
    }
}
