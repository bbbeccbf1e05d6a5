using System.Net.Sockets;
using Xunit;

namespace CacheHost.Testing;

/// <summary>
/// Replays a captured distcache case over real sockets with the normative rules of the vectors' README:
/// one write per step (or, with <see cref="SplitSeed"/>, the same bytes in random pieces), exact reply bytes,
/// EOF or reset where the capture closed, quiet windows where it stayed silent, and a final silence check.
/// </summary>
public sealed class DistCacheVectorReplayer
{
    private static readonly TimeSpan ReplyTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan QuietWindow = TimeSpan.FromMilliseconds(1000);
    private static readonly TimeSpan FinalSilence = TimeSpan.FromMilliseconds(200);

    private readonly Func<Socket> _connect;

    /// <summary>Creates a replayer that opens connections with <paramref name="connect"/>.</summary>
    public DistCacheVectorReplayer(Func<Socket> connect)
    {
        _connect = connect;
    }

    /// <summary>When set, every send is cut into random pieces (seeded) written with short pauses.</summary>
    public int? SplitSeed { get; init; }

    /// <summary>Handles proxy-case actions (stop_server, kill_server, start_server).</summary>
    public Action<string>? OnAction { get; init; }

    /// <summary>Replays <paramref name="vectorCase"/>; fails the test on the first difference.</summary>
    public void Replay(VectorCase vectorCase)
    {
        var connections = new Dictionary<int, Socket>();
        var closed = new HashSet<int>();
        var random = SplitSeed is { } seed ? new Random(seed) : null;
        try
        {
            for (var index = 0; index < vectorCase.Steps.Count; index++)
            {
                var step = vectorCase.Steps[index];
                var where = $"{vectorCase.Name} step {index} ({step.Note})";
                if (step.SleepMsBefore > 0)
                {
                    Thread.Sleep(step.SleepMsBefore);
                }

                if (step.Action is not null)
                {
                    Assert.True(OnAction is not null, $"{where}: action '{step.Action}' needs a handler");
                    OnAction!(step.Action);
                    continue;
                }

                if (!connections.TryGetValue(step.Conn, out var socket))
                {
                    socket = _connect();
                    connections[step.Conn] = socket;
                }

                if (step.SendHex.Length > 0)
                {
                    Send(socket, Hex.Bytes(step.SendHex), random);
                }

                if (!step.AwaitReply)
                {
                    continue;
                }

                if (step.ExpectHex is not null)
                {
                    var expected = Hex.Bytes(step.ExpectHex);
                    var actual = ReadExactly(socket, expected.Length, ReplyTimeout, where);
                    Assert.True(expected.AsSpan().SequenceEqual(actual), $"{where}: reply differs\n expected {Hex.Of(expected)}\n actual   {Hex.Of(actual)}");
                }

                if (step.ExpectClose)
                {
                    ExpectClosed(socket, CloseTimeout, where);
                    closed.Add(step.Conn);
                }
                else if (step.ExpectHex is null)
                {
                    ExpectSilence(socket, QuietWindow, where);
                }
            }

            foreach (var (id, socket) in connections)
            {
                if (!closed.Contains(id))
                {
                    ExpectSilence(socket, FinalSilence, $"{vectorCase.Name} after the last step (conn {id})");
                }
            }

            if (vectorCase.Liveness is { } liveness)
            {
                using var probe = _connect();
                probe.Send(Hex.Bytes(liveness.SendHex));
                var expected = Hex.Bytes(liveness.ExpectHex);
                var actual = ReadExactly(probe, expected.Length, ReplyTimeout, $"{vectorCase.Name} liveness check");
                Assert.Equal(Hex.Of(expected), Hex.Of(actual));
            }
        }
        finally
        {
            foreach (var socket in connections.Values)
            {
                socket.Dispose();
            }
        }
    }

    private static void Send(Socket socket, byte[] bytes, Random? random)
    {
        try
        {
            if (random is null || bytes.Length < 2)
            {
                socket.Send(bytes);
                return;
            }

            var offset = 0;
            while (offset < bytes.Length)
            {
                var piece = Math.Min(bytes.Length - offset, 1 + random.Next(Math.Max(1, Math.Min(bytes.Length, 40))));
                socket.Send(bytes, offset, piece, SocketFlags.None);
                offset += piece;
                Thread.Sleep(1);
            }
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionReset or SocketError.Shutdown or SocketError.ConnectionAborted)
        {
            // The server already closed; the step's expectations say whether that is right.
        }
    }

    /// <summary>Reads exactly <paramref name="count"/> bytes or fails with what arrived.</summary>
    public static byte[] ReadExactly(Socket socket, int count, TimeSpan timeout, string where)
    {
        var buffer = new byte[count];
        var read = 0;
        var deadline = DateTime.UtcNow + timeout;
        while (read < count)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || !socket.Poll(left, SelectMode.SelectRead))
            {
                Assert.Fail($"{where}: timed out after {read} of {count} reply bytes: {Hex.Of(buffer.AsSpan(0, read))}");
            }

            int n;
            try
            {
                n = socket.Receive(buffer, read, count - read, SocketFlags.None);
            }
            catch (SocketException ex)
            {
                Assert.Fail($"{where}: connection failed ({ex.SocketErrorCode}) after {read} of {count} reply bytes");
                throw;
            }

            if (n == 0)
            {
                Assert.Fail($"{where}: connection closed after {read} of {count} reply bytes: {Hex.Of(buffer.AsSpan(0, read))}");
            }

            read += n;
        }

        return buffer;
    }

    /// <summary>The next read must be end of stream (EOF or reset) with no bytes before it.</summary>
    public static void ExpectClosed(Socket socket, TimeSpan timeout, string where)
    {
        Assert.True(socket.Poll(timeout, SelectMode.SelectRead), $"{where}: connection was not closed within {timeout.TotalMilliseconds} ms");
        var probe = new byte[64];
        try
        {
            var n = socket.Receive(probe);
            Assert.True(n == 0, $"{where}: expected the connection to close, got {n} more bytes: {Hex.Of(probe.AsSpan(0, n))}");
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
            // A reset counts as closed (the README allows it).
        }
    }

    /// <summary>Nothing may arrive and the connection must stay open for <paramref name="window"/>.</summary>
    public static void ExpectSilence(Socket socket, TimeSpan window, string where)
    {
        if (!socket.Poll(window, SelectMode.SelectRead))
        {
            return;
        }

        var probe = new byte[64];
        int n;
        try
        {
            n = socket.Receive(probe);
        }
        catch (SocketException ex)
        {
            Assert.Fail($"{where}: expected silence, the connection failed ({ex.SocketErrorCode})");
            return;
        }

        Assert.Fail(n == 0 ? $"{where}: expected silence, the connection was closed" : $"{where}: expected silence, got {Hex.Of(probe.AsSpan(0, n))}");
    }
}
