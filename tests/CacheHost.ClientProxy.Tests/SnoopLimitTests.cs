using System.Globalization;
using System.Net.Sockets;
using CacheHost.Core.Control;
using CacheHost.Protocols.DistCache;
using CacheHost.Testing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Xunit;
using static CacheHost.ClientProxy.Tests.UpstreamTrustTests;

namespace CacheHost.ClientProxy.Tests;

/// <summary>
/// Issue 21 for Snoop, over real sockets: a pipelining client that reads slowly holds bounded output memory in the
/// snoop (item 1), idle and half-frame pairs are closed after their timeouts (item 2), and the "snoop listening"
/// line (and ClientProxy's "client proxy listening") comes only once a client can connect (item 13).
/// </summary>
public sealed class SnoopLimitTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task ASlowPipeliningReaderHoldsBoundedOutputInTheSnoop()
    {
        const int maxWrite = 64 * 1024;
        const int session = 30_000;
        await using var server = await InProcessCacheServer.StartAsync();
        // A large read buffer on the server side lets replies pile up in front of the snoop while its client does
        // not read: without the output limit one batch moved all of them into the client's output at once.
        await using var snoop = await RoleHost.StartSnoopAsync(server.Address, new Dictionary<string, string?>
        {
            ["CacheHost:Snoop:LogFrames"] = "false",
            ["CacheHost:Snoop:Transport:MaxWriteBufferSize"] = maxWrite.ToString(CultureInfo.InvariantCulture),
            ["CacheHost:Snoop:ServerTransport:MaxReadBufferSize"] = (16 * 1024 * 1024).ToString(CultureInfo.InvariantCulture),
        });
        using var client = InProcessCacheServer.ConnectTo(snoop.Address);
        client.Send(Request(1, DistCacheOperation.Add, AddPayload("big", session)));
        Assert.Equal([0], ReadReply(client).Payload);
        var get = Request(2, DistCacheOperation.Get, "big"u8);
        var replyLength = DistCacheProtocol.WireLength(session);
        const int gets = 1000; // 30 MB of replies
        client.Send(Enumerable.Repeat(get, gets).SelectMany(b => b).ToArray());

        long received = 15; // the ADD reply
        var forwardedBefore = await StableAsync(() => Stat(snoop, "bytes.server_to_client"));
        var worst = forwardedBefore - received;
        var buffer = new byte[256 * 1024];
        for (var step = 0; step < 20; step++)
        {
            var got = 0;
            while (got < buffer.Length)
            {
                var n = client.Receive(buffer, got, buffer.Length - got, SocketFlags.None);
                Assert.True(n > 0, "the snoop closed the client");
                got += n;
            }

            received += got;
            worst = Math.Max(worst, await StableAsync(() => Stat(snoop, "bytes.server_to_client")) - received);
        }

        // Forwarded but not yet read by the client: the snoop's output pipe (MaxWriteBufferSize, plus the batch
        // that crossed half of it, plus one reply) and the kernel's unix socket buffers (~210 KB of wmem_default,
        // counted with their overhead). Without the limit this was ~16 MB, all of it in the snoop's memory.
        var bound = maxWrite + (maxWrite / 2) + replyLength + (1024 * 1024);
        Assert.True(worst <= bound, $"{worst} bytes forwarded but unread, bound {bound}");

        // And the client still gets every reply, in order, intact.
        client.ReceiveTimeout = 30_000;
        var rest = ((long)gets * replyLength) - (received - 15);
        while (rest > 0)
        {
            var n = client.Receive(buffer, 0, (int)Math.Min(buffer.Length, rest), SocketFlags.None);
            Assert.True(n > 0, "the snoop closed the client before the last reply");
            rest -= n;
        }
    }

    [Fact]
    public async Task HalfAFrameIsClosedAfterRequestTimeoutAndAnIdlePairAfterIdleTimeout()
    {
        var clock = new FakeTimeProvider();
        await using var server = await InProcessCacheServer.StartAsync();
        await using var snoop = await RoleHost.StartSnoopAsync(server.Address, new Dictionary<string, string?>
        {
            ["CacheHost:Snoop:RequestTimeout"] = "00:00:10",
            ["CacheHost:Snoop:IdleTimeout"] = "00:01:00",
        }, clock);
        using var half = InProcessCacheServer.ConnectTo(snoop.Address);
        using var idle = InProcessCacheServer.ConnectTo(snoop.Address);

        // A complete HAVE and the first 20 bytes of a GET in one write: the HAVE's answer shows the snoop holds the rest.
        half.Send([.. Request(1, DistCacheOperation.Have, "x"u8), .. Request(2, DistCacheOperation.Get, "some-session-id"u8)[..20]]);
        Assert.Equal(1u, ReadReply(half).Uid);
        AssertServes(idle, 3, "idle client, first request");

        clock.Advance(TimeSpan.FromSeconds(9));
        AssertServes(idle, 4, "idle client after 9 s");
        Assert.Equal(0, Stat(snoop, "pairs.timed_out"));

        // 10 s plus the check period (a quarter): the half frame is closed, the idle client (60 s) is not.
        clock.Advance(TimeSpan.FromSeconds(4));
        DistCacheVectorReplayer.ExpectClosed(half, Wait, "half a frame after RequestTimeout");
        AssertServes(idle, 5, "idle client after 13 s");

        clock.Advance(TimeSpan.FromSeconds(76));
        DistCacheVectorReplayer.ExpectClosed(idle, Wait, "idle pair after IdleTimeout");
        await RoleHost.WaitUntilAsync(() => Stat(snoop, "pairs.timed_out") == 2, Wait, "two timed-out pairs");
        Assert.Equal(2, snoop.Logs.Entries.Count(e => e.EventId == 6105));

        using var fresh = InProcessCacheServer.ConnectTo(snoop.Address);
        AssertServes(fresh, 6, "a new client");
    }

    [Fact]
    public async Task TimeoutsAreOffByDefault()
    {
        var clock = new FakeTimeProvider();
        await using var server = await InProcessCacheServer.StartAsync();
        await using var snoop = await RoleHost.StartSnoopAsync(server.Address, clock: clock);
        using var half = InProcessCacheServer.ConnectTo(snoop.Address);
        half.Send(Request(2, DistCacheOperation.Get, "some-session-id"u8)[..20]);
        await RoleHost.WaitUntilAsync(() => Stat(snoop, "pairs.open") == 1, Wait, "the pair");
        clock.Advance(TimeSpan.FromDays(2));

        // Still open: the rest of the GET is answered.
        half.Send(Request(2, DistCacheOperation.Get, "some-session-id"u8)[20..]);
        Assert.Equal(2u, ReadReply(half).Uid);
        Assert.Equal(0, Stat(snoop, "pairs.timed_out"));
    }

    [Fact]
    public async Task AClientConnectingTheInstantTheListeningLineIsLoggedIsServed()
    {
        // Issue 21 item 13: scripts start dc_snoop, wait for its start line and connect. Here the connect happens
        // inside the logging call itself, so a line logged before the listener is bound is refused every time.
        await using var server = await InProcessCacheServer.StartAsync();
        for (var start = 0; start < 5; start++)
        {
            var probe = new ConnectOnEvent(6104);
            await using var snoop = await RoleHost.StartSnoopAsync(server.Address, logs: probe);
            Assert.True(probe.Fired, "no start line");
            Assert.Null(probe.Error);
            using var socket = probe.TakeSocket();
            socket.Send(Request(7, DistCacheOperation.Have, "x"u8));
            Assert.Equal(7u, ReadReply(socket).Uid);
        }
    }

    [Fact]
    public async Task AClientConnectingTheInstantTheProxyLogsItsListeningLineIsServed()
    {
        // The same for ClientProxy (dc_client), whose start line (6000) had the same race.
        await using var server = await InProcessCacheServer.StartAsync();
        for (var start = 0; start < 5; start++)
        {
            var probe = new ConnectOnEvent(6000);
            await using var proxy = await RoleHost.StartProxyAsync(server.Address, logs: probe);
            Assert.True(probe.Fired, "no start line");
            Assert.Null(probe.Error);
            using var socket = probe.TakeSocket();
            socket.Send(Request(7, DistCacheOperation.Have, "x"u8));
            Assert.Equal(7u, ReadReply(socket).Uid);
        }
    }

    private static void AssertServes(Socket socket, uint uid, string what)
    {
        socket.Send(Request(uid, DistCacheOperation.Have, "x"u8));
        var reply = ReadReply(socket);
        Assert.True(reply.Uid == uid, $"{what}: reply uid {reply.Uid}");
    }

    /// <summary>A counter of <c>snoop.stats</c> (docs/systemd.md).</summary>
    private static long Stat(RoleHost snoop, string name)
    {
        var reply = new Lines();
        snoop.Snoop.WriteStateDump(reply);
        return reply.Values[name];
    }

    /// <summary>Waits until <paramref name="read"/> returns the same value 3 times in a row, 50 ms apart (30 s at most).</summary>
    private static async Task<long> StableAsync(Func<long> read)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        var last = read();
        var same = 0;
        while (same < 3 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
            var now = read();
            same = now == last ? same + 1 : 0;
            last = now;
        }

        return last;
    }

    private sealed class Lines : IControlReply
    {
        public Dictionary<string, long> Values { get; } = [];

        public void Line(params ReadOnlySpan<string> fields) => Values[fields[1]] = long.Parse(fields[2], CultureInfo.InvariantCulture);

        public void ByteLine(params ReadOnlySpan<string> fields) => Line(fields);
    }
}

/// <summary>
/// A log provider that, the moment an event with <paramref name="eventId"/> is logged, connects to the unix socket
/// path named in its <c>Listen</c> value, inside the logging call; the result is kept for the test.
/// </summary>
internal sealed class ConnectOnEvent(int eventId) : ILoggerProvider, ILogger
{
    private Socket? _socket;

    public bool Fired { get; private set; }

    public string? Error { get; private set; }

    public Socket TakeSocket() => _socket ?? throw new InvalidOperationException("not connected");

    public ILogger CreateLogger(string categoryName) => this;

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId id, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (id.Id != eventId || Fired || state is not IReadOnlyList<KeyValuePair<string, object?>> values)
        {
            return;
        }

        Fired = true;
        var listen = values.First(v => v.Key == "Listen").Value?.ToString() ?? string.Empty;
        try
        {
            _socket = InProcessCacheServer.ConnectTo(listen);
        }
        catch (Exception ex)
        {
            Error = $"{listen}: {ex.Message}";
        }
    }

    public void Dispose() => _socket?.Dispose();
}
