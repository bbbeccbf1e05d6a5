using System.Net.Sockets;
using CacheHost.Roles.Clacks;
using Mono.Unix.Native;
using Xunit;

namespace CacheHost.Clacks.Tests;

/// <summary>
/// Accept/read order, the socket file's first moment, descriptors, fan-out, line limits, masking and the role's
/// counters (issue 15, issue 21 item 9), all over real unix sockets.
/// </summary>
public sealed class IntakeAndSocketTests
{
    [Fact]
    public async Task A_listener_connected_before_a_sender_always_gets_the_senders_first_set()
    {
        // The reference accepts every pending connection, then reads connections in accept order, so a client that
        // connected and sent LISTEN before another connected and sent SET always gets it. Ours used to run the
        // sender's batch first when the listener's reader was scheduled late (0 of 3 under load).
        using var dir = new TempDir();
        for (var round = 0; round < 100; round++)
        {
            var path = dir.File($"r{round}.sock");
            await using var server = await TestServer.StartAsync(path);
            await using var listener = await RawClient.ConnectAsync(path);
            await listener.SendAsync($"CLACKS l\r\nOVERHEAD A {RawClient.AdminToken}\r\nLISTEN news\r\n");
            await using var sender = await RawClient.ConnectAsync(path);
            await sender.SendAsync($"CLACKS s\r\nOVERHEAD A {RawClient.AdminToken}\r\nSET news=round{round}\r\n");
            await sender.FlushAsync("sent"); // the SET has run
            var lines = await listener.FlushAsync("done");
            Assert.True(lines.Contains($"SET news=round{round}"), $"round {round}: listener got [{string.Join(" | ", lines)}]");
        }
    }

    [Fact]
    public async Task The_socket_file_accepts_connections_and_has_its_mode_the_moment_it_exists()
    {
        // Before: bind, listen and only then chmod (up to 0.5 s after the first accept), and between bind and listen
        // the file existed while connect() got ECONNREFUSED.
        using var dir = new TempDir();
        for (var round = 0; round < 20; round++)
        {
            var path = dir.File($"m{round}.sock");
            var seen = new TaskCompletionSource<(FilePermissions Mode, SocketError Connect)>(TaskCreationOptions.RunContinuationsAsynchronously);
            var watcher = new Thread(() =>
            {
                var deadline = Environment.TickCount64 + 30_000;
                while (Environment.TickCount64 < deadline)
                {
                    if (Syscall.lstat(path, out var st) != 0)
                    {
                        continue;
                    }

                    using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                    var result = SocketError.Success;
                    try
                    {
                        probe.Connect(new UnixDomainSocketEndPoint(path));
                    }
                    catch (SocketException ex)
                    {
                        result = ex.SocketErrorCode;
                    }

                    seen.TrySetResult((st.st_mode & (FilePermissions)0x1FF, result));
                    return;
                }

                seen.TrySetException(new TimeoutException("socket file never appeared"));
            }) { IsBackground = true };
            watcher.Start();
            await using var server = await TestServer.StartAsync(path, new() { ["SocketChmod"] = "0600" });
            var (mode, connect) = await seen.Task.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(SocketError.Success, connect);
            Assert.Equal(FilePermissions.S_IRUSR | FilePermissions.S_IWUSR, mode);
        }
    }

    [Fact]
    public async Task The_descriptor_count_is_flat_from_the_first_connection()
    {
        // The original's disconnect test counts descriptors from the moment the socket appears; ours opened 4-7
        // more with the first client (the epoll loops, the pipe code), then stayed flat.
        using var dir = new TempDir();
        File.WriteAllText(dir.File("c.xml"), $"<clacks><socket>{dir.File("s.sock")}</socket><username>admin</username><password>adminpass</password></clacks>");
        using var program = ProgramProcess.Start(dir.Path, "clacks", "c.xml");
        await RawClient.EventuallyAsync(() => Task.FromResult(File.Exists(dir.File("s.sock"))), TimeSpan.FromSeconds(30), "socket file");
        var baseline = await SettledDescriptorCountAsync(program.Pid);
        await using (var first = await RawClient.LoginAsync(dir.File("s.sock"), "first"))
        {
            await first.SendAsync("STORE a=1\r\n");
            Assert.Equal("1", await first.RetrieveAsync("a"));
            Assert.Equal(baseline + 1, DescriptorCount(program.Pid)); // the accepted socket, nothing else
        }

        for (var i = 0; i < 5; i++)
        {
            await using var next = await RawClient.LoginAsync(dir.File("s.sock"), "next");
            Assert.Equal("1", await next.RetrieveAsync("a"));
        }

        await RawClient.EventuallyAsync(() => Task.FromResult(DescriptorCount(program.Pid) == baseline), what: $"back to {baseline} descriptors (now {DescriptorCount(program.Pid)})");
        Assert.Equal(0, program.Terminate());
    }

    private static int DescriptorCount(int pid) => Directory.GetFileSystemEntries($"/proc/{pid}/fd").Length;

    /// <summary>Start-up may still open files (logging) after the socket appears: wait until the count holds still.</summary>
    private static async Task<int> SettledDescriptorCountAsync(int pid)
    {
        var last = DescriptorCount(pid);
        for (var i = 0; i < 100; i++)
        {
            await Task.Delay(300);
            var now = DescriptorCount(pid);
            if (now == last)
            {
                return now;
            }

            last = now;
        }

        return last;
    }

    [Fact]
    public async Task Fan_out_encodes_a_line_once_for_all_its_recipients()
    {
        using var dir = new TempDir();
        await using var server = await TestServer.StartAsync(dir.File("s.sock"));
        var listeners = new List<RawClient>();
        for (var i = 0; i < 20; i++)
        {
            var l = await RawClient.LoginAsync(server.Socket, "l" + i);
            await l.SendAsync("LISTEN topic\r\n");
            await l.FlushAsync();
            listeners.Add(l);
        }

        await using var publisher = await RawClient.LoginAsync(server.Socket, "p");
        await publisher.FlushAsync();
        var statistics = server.Service.Statistics;
        var encodes = statistics.FanOutEncodes;
        var deliveries = statistics.FanOutDeliveries;
        await publisher.SendAsync("SET topic=hello\r\n");
        foreach (var l in listeners)
        {
            Assert.Equal("SET topic=hello", await l.WaitForAsync(line => line.StartsWith("SET ", StringComparison.Ordinal)));
            await l.DisposeAsync();
        }

        Assert.Equal(1, statistics.FanOutEncodes - encodes);
        Assert.Equal(20, statistics.FanOutDeliveries - deliveries);
    }

    [Fact]
    public async Task Lines_before_login_have_a_lower_limit_and_a_login_in_the_same_batch_lifts_it()
    {
        using var dir = new TempDir();
        await using var server = await TestServer.StartAsync(dir.File("s.sock"), new() { ["MaxUnauthenticatedLineBytes"] = "4096" });
        var big = new string('v', 100_000);
        await using (var anonymous = await RawClient.ConnectAsync(server.Socket))
        {
            await anonymous.SendAsync($"CLACKS x\r\nSTORE k={big}\r\n");
            var all = await anonymous.ReadToEndAsync();
            Assert.EndsWith("OVERHEAD E line_too_long\r\n", all, StringComparison.Ordinal);
        }

        await using var client = await RawClient.ConnectAsync(server.Socket);
        await client.SendAsync($"CLACKS y\r\nOVERHEAD A {RawClient.AdminToken}\r\nSTORE k={big}\r\n");
        await client.ExpectAsync("CLACKS PageCamel 36", "OVERHEAD M Authentication required", "OVERHEAD O Welcome!");
        Assert.Equal(big, await client.RetrieveAsync("k"));
        Assert.Equal(1, server.Service.Statistics.OverlongLines);
    }

    [Fact]
    public async Task A_repeated_login_with_a_tab_is_masked_for_monitors()
    {
        using var dir = new TempDir();
        await using var server = await TestServer.StartAsync(dir.File("s.sock"));
        await using var mon = await RawClient.LoginAsync(server.Socket, "mon");
        await mon.SendAsync("MONITOR\r\n");
        await mon.FlushAsync();
        await using var client = await RawClient.LoginAsync(server.Socket, "again");
        await client.SendAsync($"OVERHEAD A\t{RawClient.AdminToken}\r\nOVERHEAD A {RawClient.AdminToken}\r\n");
        await client.FlushAsync();
        var lines = await mon.FlushAsync("m");
        Assert.DoesNotContain(lines, l => l.Contains(RawClient.AdminToken, StringComparison.Ordinal));
        // The first login of "again" (mirrored once it succeeded), the TAB form, the space form.
        Assert.Equal(3, lines.Count(l => l.EndsWith("=OVERHEAD A ***", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task Stats_count_connections_and_rejections_and_the_role_reports_status_and_health()
    {
        using var dir = new TempDir();
        await using var server = await TestServer.StartAsync(dir.File("s.sock"), new() { ["Transport:MaxConnections"] = "1" });
        await using var client = await RawClient.LoginAsync(server.Socket);
        await client.SendAsync("STORE a=1\r\n");
        await client.FlushAsync();
        await using (var refused = await RawClient.ConnectAsync(server.Socket))
        {
            Assert.Equal(string.Empty, await refused.ReadToEndAsync());
        }

        var stats = server.Service.Snapshot().ToDictionary(p => p.Name, p => p.Value);
        Assert.Equal(1, stats["connections.open"]);
        Assert.Equal(2, stats["connections.accepted"]);
        Assert.Equal(1, stats["connections.rejected"]);
        Assert.Equal(1, stats["sessions"]);
        Assert.Equal(1, stats["keys"]);
        var status = (CacheHost.Core.Status.IRoleStatusProvider)server.Service;
        Assert.Equal("sessions=1 keys=1", status.StatusSummary());
        Assert.True(status.IsHealthy);
        Assert.Single(server.Service.Servers);
    }
}
