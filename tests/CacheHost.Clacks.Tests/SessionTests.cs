using Xunit;

namespace CacheHost.Clacks.Tests;

/// <summary>The byte-exact sessions of clacks §16, replayed over a real unix socket.</summary>
public sealed class SessionTests
{
    [Fact]
    public async Task Session_16_1_login_cache_commands_errors_quit()
    {
        using var dir = new TempDir();
        await using var server = await TestServer.StartAsync(dir.File("s.sock"));
        await using var c = await RawClient.ConnectAsync(server.Socket);
        await c.SendAsync("CLACKS rawtest\r\nOVERHEAD A YWRtaW4=:YWRtaW5wYXNz\r\n");
        Assert.Equal("CLACKS PageCamel 36\r\nOVERHEAD M Authentication required\r\nOVERHEAD O Welcome!", string.Join("\r\n", await ReadLines(c, 3)));
        await c.SendAsync("STORE greeting=hello world\r\nSTORE a b=c=d e\r\nRETRIEVE greeting\r\nRETRIEVE a b\r\nRETRIEVE nothere\r\n" +
            "INCREMENT counter\r\nINCREMENT counter=5\r\nDECREMENT counter=2.5\r\nRETRIEVE counter\r\nINCREMENT greeting=2\r\n" +
            "RETRIEVE greeting\r\nREMOVE greeting\r\nRETRIEVE greeting\r\nKEYLIST\r\nFLUSH abc123\r\nPING\r\nstore lower=1\r\nNOP\r\nBOGUS\r\nQUIT\r\n");
        var rest = await c.ReadToEndAsync();
        Assert.Equal(
            "RETRIEVED greeting=hello world\r\nRETRIEVED a b=c=d e\r\nNOTRETRIEVED nothere\r\nRETRIEVED counter=3.5\r\nRETRIEVED greeting=2\r\n" +
            "NOTRETRIEVED greeting\r\nKEYLISTSTART\r\nKEY a b\r\nKEY counter\r\nKEY greeting\r\nKEYLISTEND\r\nFLUSHED abc123\r\n" +
            "OVERHEAD E unknown_command store lower=1\r\nOVERHEAD E unknown_command NOP\r\nOVERHEAD E unknown_command BOGUS\r\n", rest);
    }

    [Fact]
    public async Task Session_16_2_pipelined_login_welcome_after_reply()
    {
        using var dir = new TempDir();
        await using var server = await TestServer.StartAsync(dir.File("s.sock"));
        await using (var setup = await RawClient.LoginAsync(server.Socket))
        {
            await setup.SendAsync("STORE counter=3.5\r\n");
            await setup.FlushAsync();
        }

        await using var c = await RawClient.ConnectAsync(server.Socket);
        await c.SendAsync("CLACKS pipelined\r\nOVERHEAD A YWRtaW4=:YWRtaW5wYXNz\r\nRETRIEVE counter\r\nSTORE x=1\r\n");
        await c.ExpectAsync("CLACKS PageCamel 36", "OVERHEAD M Authentication required", "RETRIEVED counter=3.5", "OVERHEAD O Welcome!");
    }

    [Fact]
    public async Task Session_16_3_failed_login_and_no_login()
    {
        using var dir = new TempDir();
        await using var server = await TestServer.StartAsync(dir.File("s.sock"), new() { ["AuthTimeout"] = "1.5" });
        await using (var c = await RawClient.ConnectAsync(server.Socket))
        {
            await c.SendAsync("CLACKS badauth\r\nRETRIEVE counter\r\nOVERHEAD A YWRtaW4=:d3Jvbmc=\r\nRETRIEVE counter\r\n");
            Assert.Equal("CLACKS PageCamel 36\r\nOVERHEAD M Authentication required\r\nOVERHEAD F Login failed!\r\n", await c.ReadToEndAsync());
        }

        await using (var c = await RawClient.ConnectAsync(server.Socket))
        {
            await c.SendAsync("CLACKS noauth\r\nRETRIEVE counter\r\n");
            var started = DateTime.UtcNow;
            Assert.Equal("CLACKS PageCamel 36\r\nOVERHEAD M Authentication required\r\n", await c.ReadToEndAsync());
            Assert.True(DateTime.UtcNow - started > TimeSpan.FromSeconds(1), "closed only after the auth timeout");
        }
    }

    [Fact]
    public async Task Session_16_4_pubsub_setandstore_overhead_forwarding_monitor_permissions()
    {
        using var dir = new TempDir();
        await using var server = await TestServer.StartAsync(dir.File("s.sock"));
        await using var mon = await RawClient.LoginAsync(server.Socket, "monitor");
        await mon.SendAsync("MONITOR\r\n");
        var monCid = (await mon.WaitForAsync(l => l.StartsWith("DEBUG ", StringComparison.Ordinal) && l.EndsWith("=MONITOR", StringComparison.Ordinal)))[6..^8];
        Assert.StartsWith("unixdomainsocket:", monCid);

        await using var lis = await RawClient.LoginAsync(server.Socket, "listener", RawClient.RwToken);
        var lisCid = (await mon.WaitForAsync(l => l.StartsWith("DEBUG CONNECTED=", StringComparison.Ordinal)))["DEBUG CONNECTED=".Length..];
        await lis.SendAsync("LISTEN chan::a\r\nLISTEN chan::ev\r\n");
        await lis.FlushAsync();
        await using var snd = await RawClient.LoginAsync(server.Socket, "sender");
        var sndCid = (await mon.WaitForAsync(l => l.StartsWith("DEBUG CONNECTED=", StringComparison.Ordinal)))["DEBUG CONNECTED=".Length..];
        await snd.SendAsync("LISTEN chan::a\r\n");
        await snd.FlushAsync();
        await mon.FlushAsync("m0");

        await snd.SendAsync("SET chan::a=42\r\nNOTIFY chan::ev\r\nSETANDSTORE chan::a=43\r\nSET chan::other=1\r\n");
        await snd.SendAsync("OVERHEAD GNU Terry Pratchett\r\nOVERHEAD GM hello all\r\nOVERHEAD N secret\r\n");
        // The sender's FLUSHED proves its lines ran, so the deliveries precede the listener's own FLUSHED.
        var sndLines = await snd.FlushAsync("s1");
        Assert.Equal(["OVERHEAD GN Terry Pratchett"], sndLines); // U: sender gets it; its own SETs are not echoed
        var lisLines = await lis.FlushAsync("l1");
        Assert.Equal(["SET chan::a=42", "NOTIFY chan::ev", "SET chan::a=43", "OVERHEAD GN Terry Pratchett", "OVERHEAD GM hello all"], lisLines);
        var monLines = (await mon.FlushAsync("m1")).Where(l => !l.Contains("=FLUSH ", StringComparison.Ordinal)).ToList();
        Assert.Equal(
        [
            $"DEBUG {sndCid}=SET chan::a=42", $"DEBUG {sndCid}=NOTIFY chan::ev", $"DEBUG {sndCid}=SETANDSTORE chan::a=43", $"DEBUG {sndCid}=SET chan::other=1",
            "OVERHEAD GN Terry Pratchett", "OVERHEAD GM hello all", $"DEBUG {sndCid}=OVERHEAD GM hello all",
        ], monLines);

        await lis.SendAsync("MONITOR\r\nCLIENTLIST\r\nCLEARCACHE\r\nCLIENTDISCONNECT x\r\n");
        Assert.Equal(Enumerable.Repeat("OVERHEAD E permission_denied", 4), await lis.FlushAsync("l2"));
        Assert.Equal("43", await snd.RetrieveAsync("chan::a"));

        await snd.SendAsync("CLIENTLIST\r\n");
        var list = await snd.FlushAsync("s2");
        Assert.Equal("CLIENTLISTSTART", list[0]);
        Assert.Equal("CLIENTLISTEND", list[^1]);
        var clients = list.Skip(1).SkipLast(1).ToList();
        Assert.Equal(3, clients.Count);
        var monPort = monCid["unixdomainsocket:".Length..];
        Assert.Matches($"^CLIENT CID={System.Text.RegularExpressions.Regex.Escape(monCid)};HOST=unixdomainsocket;PORT={System.Text.RegularExpressions.Regex.Escape(monPort)};CLIENTINFO=monitor;OUTBUFFER_LENGTH=\\d+;INBUFFER_LENGTH=0;INTERCLACKS=0;MONITOR=1;LASTPING=[0-9.]+;LASTINTERCLACKSPING=0;WRITEFAILTIME=0;$", clients[0]);
        Assert.Contains("CLIENTINFO=listener;", clients[1]);
        Assert.Contains("CLIENTINFO=sender;", clients[2]);

        await snd.SendAsync("QUIT\r\n");
        Assert.Equal(string.Empty, await snd.ReadToEndAsync());
        await lis.SendAsync("QUIT\r\n");
        Assert.Equal(string.Empty, await lis.ReadToEndAsync());
        await mon.WaitForAsync(l => l == $"DEBUG {sndCid}=QUIT");
        await mon.WaitForAsync(l => l == $"DEBUG DISCONNECTED={sndCid} (0 bytes discarded from outbuffer)");
        await mon.WaitForAsync(l => l == $"DEBUG {lisCid}=QUIT");
        await mon.WaitForAsync(l => l == $"DEBUG DISCONNECTED={lisCid} (0 bytes discarded from outbuffer)");
    }

    [Fact]
    public async Task Session_16_5_raw_slave_against_master()
    {
        using var dir = new TempDir();
        await using var server = await TestServer.StartAsync(dir.File("s.sock"));
        await using var client = await RawClient.LoginAsync(server.Socket, "client");
        await client.SendAsync("STORE k1=v1\r\nSTORE k2=v 2\r\nSTORE gone=x\r\nREMOVE gone\r\nSTORE a b=c=d e\r\nLISTEN fromslave\r\n");
        await client.FlushAsync();

        await using var slv = await RawClient.ConnectAsync(server.Socket);
        await slv.SendAsync("CLACKS fake slave\r\nOVERHEAD A YWRtaW4=:YWRtaW5wYXNz\r\nOVERHEAD I 1\r\n");
        await slv.ExpectAsync("CLACKS PageCamel 36", "OVERHEAD M Authentication required", "CLACKS PageCamel 36 in interclacks master mode",
            "OVERHEAD M Authentication required", "OVERHEAD A YWRtaW4=:YWRtaW5wYXNz", "OVERHEAD L 1");
        var t = await slv.ReadLineAsync();
        Assert.Matches("^OVERHEAD T [0-9.]+$", t);
        Assert.Matches("^KEYSYNC [0-9.]+ [0-9.]+ U a b=c=d e$", await slv.ReadLineAsync());
        Assert.Matches("^KEYSYNC [0-9.]+ 0 D gone=REMOVED$", await slv.ReadLineAsync());
        Assert.Matches("^KEYSYNC [0-9.]+ [0-9.]+ U k1=v1$", await slv.ReadLineAsync());
        Assert.Matches("^KEYSYNC [0-9.]+ [0-9.]+ U k2=v 2$", await slv.ReadLineAsync());
        await slv.ExpectAsync("OVERHEAD L 0", "PING", "OVERHEAD O Welcome!");

        var now = (DateTime.UtcNow - DateTime.UnixEpoch).TotalSeconds;
        string F(double d) => CacheHost.Protocols.Clacks.PerlNumber.FormatTime(d);
        await slv.SendAsync($"OVERHEAD T {F(now)}\r\nKEYSYNC {F(now + 100)} {F(now)} U k1=from-slave-newer\r\nKEYSYNC {F(now - 1000)} {F(now - 1000)} U k2=from-slave-older\r\n" +
            $"KEYSYNC {F(now)} 0 D onlyslave=REMOVED\r\nKEYSYNC {F(now)} {F(now)} U fresh=new value\r\n");
        await slv.FlushAsync("x");
        Assert.Equal("from-slave-newer", await client.RetrieveAsync("k1"));
        Assert.Equal("v 2", await client.RetrieveAsync("k2"));
        Assert.Equal("new value", await client.RetrieveAsync("fresh"));
        Assert.Null(await client.RetrieveAsync("onlyslave"));
        await client.SendAsync("KEYLIST\r\n");
        Assert.Contains("KEY onlyslave", await client.FlushAsync("kl"));

        await client.SendAsync("SET s1=1\r\nNOTIFY n1\r\nSTORE st=2\r\nSETANDSTORE ss=3\r\nREMOVE st\r\nINCREMENT cnt=2\r\nDECREMENT cnt\r\nCLEARCACHE\r\n" +
            "RETRIEVE k1\r\nLISTEN x\r\nPING\r\nFLUSH f1\r\nOVERHEAD GM hi\r\n");
        await client.FlushAsync("c2");
        var forwarded = (await slv.FlushAsync("s2")).Where(l => l != "PING").ToList();
        Assert.Equal(["SET s1=1", "NOTIFY n1", "STORE st=2", "SETANDSTORE ss=3", "REMOVE st", "INCREMENT cnt=2", "DECREMENT cnt", "CLEARCACHE", "OVERHEAD GM hi"], forwarded);

        await slv.SendAsync("SET fromslave=9\r\n");
        await client.WaitForAsync(l => l == "SET fromslave=9");
        await slv.SendAsync("OVERHEAD I 0\r\n");
        await slv.FlushAsync("s3");
        await client.SendAsync("SET later=1\r\n");
        await client.FlushAsync();
        Assert.DoesNotContain("SET later=1", await slv.FlushAsync("s4"));
    }

    [Fact]
    public async Task Session_16_6_raw_master_against_real_slave()
    {
        using var dir = new TempDir();
        var masterPath = dir.File("m.sock");
        using var listener = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        listener.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(masterPath));
        listener.Listen();
        await using var slave = await TestServer.StartAsync(dir.File("s.sock"), new() { ["Master:Socket"] = masterPath });
        await using var local = await RawClient.LoginAsync(slave.Socket, "local");
        await local.SendAsync("STORE slavekey=s1\r\nSTORE deadkey=x\r\nREMOVE deadkey\r\nLISTEN fromM\r\n");
        await local.FlushAsync();

        using var accepted = await listener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(10));
        var m = new SocketLines(accepted);
        Assert.Equal("CLACKS PageCamel 36 in interclacks client mode", await m.ReadLineAsync());
        Assert.Equal("OVERHEAD A YWRtaW4=:YWRtaW5wYXNz", await m.ReadLineAsync());
        Assert.Equal("OVERHEAD I 1", await m.ReadLineAsync());
        var now = (DateTime.UtcNow - DateTime.UnixEpoch).TotalSeconds;
        await m.SendAsync("CLACKS PageCamel 36\r\nOVERHEAD M Authentication required\r\nCLACKS PageCamel 36 in interclacks master mode\r\n" +
            $"OVERHEAD M Authentication required\r\nOVERHEAD A YWRtaW4=:YWRtaW5wYXNz\r\nOVERHEAD L 1\r\nOVERHEAD T {now}\r\n" +
            $"KEYSYNC {now - 5} {now - 5} U frommaster=m1\r\nOVERHEAD L 0\r\nPING\r\nOVERHEAD O Welcome!\r\n");
        // Local writes made before the handshake were already forwarded live (the link is in link mode from
        // the start); the dump follows the master's "OVERHEAD L 0".
        var lines = new List<string>();
        while (true)
        {
            var line = await m.ReadNonPingAsync() ?? throw new IOException("closed");
            if (line.StartsWith("STORE ", StringComparison.Ordinal) || line.StartsWith("REMOVE ", StringComparison.Ordinal))
            {
                continue;
            }

            lines.Add(line);
            if (line == "OVERHEAD O Welcome!")
            {
                break;
            }
        }

        Assert.Equal(5, lines.Count);
        Assert.Matches("^OVERHEAD T [0-9.]+$", lines[0]);
        Assert.Matches("^KEYSYNC [0-9.]+ 0 D deadkey=REMOVED$", lines[1]);
        Assert.Matches("^KEYSYNC [0-9.]+ [0-9.]+ U frommaster=m1$", lines[2]);
        Assert.Matches("^KEYSYNC [0-9.]+ [0-9.]+ U slavekey=s1$", lines[3]);
        Assert.Equal("m1", await local.RetrieveAsync("frommaster"));

        await local.SendAsync("STORE slavekey2=s2\r\nREMOVE frommaster\r\n");
        Assert.Equal("STORE slavekey2=s2", await m.ReadNonPingAsync());
        Assert.Equal("REMOVE frommaster", await m.ReadNonPingAsync());
        await m.SendAsync("SET fromM=hello\r\nNOTIFY fromM\r\nSTORE mstore=7\r\n");
        await local.WaitForAsync(l => l == "SET fromM=hello");
        await local.WaitForAsync(l => l == "NOTIFY fromM");
        await RawClient.EventuallyAsync(async () => await local.RetrieveAsync("mstore") == "7");
    }

    [Fact]
    public async Task Session_16_7_ping_timeout_noping_and_nop_keepalive()
    {
        using var dir = new TempDir();
        await using var server = await TestServer.StartAsync(dir.File("s.sock"), new() { ["PingTimeout"] = "3", ["KeepaliveInterval"] = "1" });
        await using (var c = await RawClient.LoginAsync(server.Socket, "pingtest"))
        {
            var text = await c.ReadToEndAsync(TimeSpan.FromSeconds(10));
            Assert.EndsWith("\r\nTIMEOUT\r\n", text);
        }

        await using (var c = await RawClient.LoginAsync(server.Socket, "nopingtest"))
        {
            await c.SendAsync("NOPING\r\n");
            Assert.Equal("NOP", await c.ReadLineAsync(TimeSpan.FromSeconds(5)));
            Assert.Equal("NOP", await c.ReadLineAsync(TimeSpan.FromSeconds(5))); // still open after > PingTimeout
            await c.SendAsync("PING\r\n");
            var text = await c.ReadToEndAsync(TimeSpan.FromSeconds(10));
            Assert.EndsWith("\r\nTIMEOUT\r\n", text);
        }
    }

    [Fact]
    public async Task Session_16_8_close_all_and_shutdown_permissions()
    {
        using var dir = new TempDir();
        await using var server = await TestServer.StartAsync(dir.File("s.sock"));
        await using var rw = await RawClient.LoginAsync(server.Socket, "rw", RawClient.RwToken);
        await rw.SendAsync("OVERHEAD C 1\r\nOVERHEAD S 5\r\n");
        Assert.Equal(["OVERHEAD E permission_denied", "OVERHEAD E permission_denied"], await rw.FlushAsync());
        await using var other = await RawClient.LoginAsync(server.Socket, "other");
        await using var admin = await RawClient.LoginAsync(server.Socket, "admin");
        await admin.SendAsync("OVERHEAD C 1\r\n");
        Assert.Equal("\r\nQUIT\r\n", await admin.ReadToEndAsync());
        Assert.Equal("\r\nQUIT\r\n", await other.ReadToEndAsync());
        Assert.Equal("\r\nQUIT\r\n", await rw.ReadToEndAsync());
    }

    private static async Task<List<string>> ReadLines(RawClient c, int n)
    {
        var lines = new List<string>();
        for (var i = 0; i < n; i++)
        {
            lines.Add(await c.ReadLineAsync() ?? "<EOF>");
        }

        return lines;
    }
}

/// <summary>Line reading over an accepted socket (fake master).</summary>
internal sealed class SocketLines(System.Net.Sockets.Socket socket)
{
    private readonly List<byte> _buffer = [];

    public async Task SendAsync(string text) => await socket.SendAsync(System.Text.Encoding.Latin1.GetBytes(text)).WaitAsync(TimeSpan.FromSeconds(10));

    public async Task<string?> ReadLineAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (true)
        {
            var lf = _buffer.IndexOf((byte)'\n');
            if (lf >= 0)
            {
                var line = System.Text.Encoding.Latin1.GetString(_buffer.GetRange(0, lf).ToArray()).TrimEnd('\r');
                _buffer.RemoveRange(0, lf + 1);
                return line;
            }

            var chunk = new byte[8192];
            var n = await socket.ReceiveAsync(chunk, cts.Token);
            if (n == 0)
            {
                return null;
            }

            _buffer.AddRange(chunk.AsSpan(0, n));
        }
    }

    public async Task<string?> ReadNonPingAsync()
    {
        while (true)
        {
            var line = await ReadLineAsync();
            if (line is null or not "PING")
            {
                return line;
            }
        }
    }
}
