using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Xunit;

namespace CacheHost.Clacks.Tests;

/// <summary>TLS on TCP (clacks §2.1, Q10) and bad input handling.</summary>
public sealed class TlsAndBadInputTests
{
    /// <summary>Creates a CA and a server certificate it signs; writes server cert/key as PEM.</summary>
    internal static X509Certificate2 MakeCertificates(TempDir dir)
    {
        using var caKey = RSA.Create(2048);
        var caRequest = new CertificateRequest("CN=Clacks Test CA", caKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        var ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));

        using var serverKey = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", serverKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        san.AddIpAddress(System.Net.IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var server = request.Create(ca, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(29), [1, 2, 3, 4]);
        File.WriteAllText(dir.File("server.crt"), server.ExportCertificatePem());
        File.WriteAllText(dir.File("server.key"), serverKey.ExportPkcs8PrivateKeyPem());
        return ca;
    }

    private static RemoteCertificateValidationCallback TrustOnly(X509Certificate2 ca) => (_, certificate, _, _) =>
    {
        if (certificate is null)
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(new X509Certificate2(certificate));
    };

    internal static async Task<TestServer> StartTls(TempDir dir, Dictionary<string, string?>? extra = null)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Ips:0"] = "127.0.0.1",
            ["Port"] = "0",
            ["SslCert"] = dir.File("server.crt"),
            ["SslKey"] = dir.File("server.key"),
            ["TlsHandshakeTimeout"] = "10",
        };
        foreach (var (k, v) in extra ?? [])
        {
            settings[k] = v;
        }

        return await TestServer.StartAsync(dir.File("s.sock"), settings);
    }

    [Fact]
    public async Task Client_trusting_the_ca_connects_and_shares_data_with_unix_clients()
    {
        using var dir = new TempDir();
        using var ca = MakeCertificates(dir);
        await using var server = await StartTls(dir);
        await using var tls = await RawClient.ConnectTlsAsync(server.TlsPort, TrustOnly(ca));
        await tls.SendAsync("CLACKS tls\r\nOVERHEAD A YWRtaW4=:YWRtaW5wYXNz\r\nSTORE viatls=1\r\n");
        await tls.ExpectAsync("CLACKS PageCamel 36", "OVERHEAD M Authentication required", "OVERHEAD O Welcome!");
        await using var unix = await RawClient.LoginAsync(server.Socket);
        Assert.Equal("1", await unix.RetrieveAsync("viatls"));
        await unix.SendAsync("CLIENTLIST\r\n");
        Assert.Single(await unix.FlushAsync(), l => l.StartsWith("CLIENT CID=127.0.0.1:", StringComparison.Ordinal) && l.Contains(";HOST=127.0.0.1;", StringComparison.Ordinal));

        // A client that trusts some other CA refuses the server.
        using var otherDir = new TempDir();
        using var otherCa = MakeCertificates(otherDir);
        await Assert.ThrowsAnyAsync<System.Security.Authentication.AuthenticationException>(() => RawClient.ConnectTlsAsync(server.TlsPort, TrustOnly(otherCa)));
    }

    [Fact]
    public async Task Plaintext_client_on_the_tls_port_is_refused_and_a_silent_client_does_not_stall_others()
    {
        using var dir = new TempDir();
        using var ca = MakeCertificates(dir);
        await using var server = await StartTls(dir, new() { ["TlsHandshakeTimeout"] = "2" });
        await using var silent = await RawClient.ConnectTcpPlainAsync(server.TlsPort);
        await using (var plain = await RawClient.ConnectTcpPlainAsync(server.TlsPort))
        {
            await plain.SendAsync("CLACKS plain\r\nOVERHEAD A YWRtaW4=:YWRtaW5wYXNz\r\n");
            var got = await plain.ReadToEndAsync(TimeSpan.FromSeconds(10));
            Assert.DoesNotContain("CLACKS", got);
        }

        // The silent one is still handshaking; others are served meanwhile, then it is dropped after the timeout.
        await using var tls = await RawClient.ConnectTlsAsync(server.TlsPort, TrustOnly(ca));
        await tls.SendAsync("CLACKS tls\r\nOVERHEAD A YWRtaW4=:YWRtaW5wYXNz\r\n");
        await tls.ExpectAsync("CLACKS PageCamel 36", "OVERHEAD M Authentication required", "OVERHEAD O Welcome!");
        Assert.Equal(string.Empty, await silent.ReadToEndAsync(TimeSpan.FromSeconds(15)));
    }

    [Fact]
    public async Task Slave_links_to_its_master_over_tls()
    {
        using var dir = new TempDir();
        using var ca = MakeCertificates(dir);
        await using var master = await StartTls(dir);
        await using var slave = await TestServer.StartAsync(dir.File("slave.sock"), new() { ["Master:Ip"] = "127.0.0.1", ["Master:Port"] = master.TlsPort.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        await using var m = await RawClient.LoginAsync(master.Socket);
        await using var s = await RawClient.LoginAsync(slave.Socket);
        await s.SendAsync("STORE overtls=yes\r\n");
        await RawClient.EventuallyAsync(async () => await m.RetrieveAsync("overtls") == "yes");
        await s.SendAsync("CLIENTLIST\r\n");
        Assert.Single(await s.FlushAsync(), l => l.StartsWith($"CLIENT CID=127.0.0.1:{master.TlsPort};", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Overlong_lines_get_an_error_and_close_without_harming_others()
    {
        using var dir = new TempDir();
        await using var server = await TestServer.StartAsync(dir.File("s.sock"), new() { ["MaxLineBytes"] = "4096" });
        await using var other = await RawClient.LoginAsync(server.Socket);
        await using var c = await RawClient.LoginAsync(server.Socket);
        await c.SendAsync("STORE ok=1\r\nSTORE big=" + new string('x', 10000) + "\r\nSTORE after=1\r\n");
        var rest = await c.ReadToEndAsync();
        Assert.Equal("OVERHEAD E line_too_long\r\n", rest);
        Assert.Equal("1", await other.RetrieveAsync("ok"));
        Assert.Null(await other.RetrieveAsync("big"));
        Assert.Null(await other.RetrieveAsync("after"));

        // An overlong line that never ends is cut off as well.
        await using var endless = await RawClient.LoginAsync(server.Socket);
        await endless.SendAsync(new string('y', 20000));
        Assert.Equal("OVERHEAD E line_too_long\r\n", await endless.ReadToEndAsync());
    }

    [Fact]
    public async Task Binary_garbage_is_answered_as_unknown_and_echoed_byte_exact()
    {
        using var dir = new TempDir();
        await using var server = await TestServer.StartAsync(dir.File("s.sock"));
        await using var c = await RawClient.LoginAsync(server.Socket);
        var garbage = new byte[256];
        new Random(42).NextBytes(garbage);
        for (var i = 0; i < garbage.Length; i++)
        {
            if (garbage[i] is (byte)'\n' or (byte)'\r')
            {
                garbage[i] = 0;
            }
        }

        garbage[0] = 0xff;
        await c.SendBytesAsync([.. garbage, (byte)'\n', .. "STORE k=\u00ff\u0000\u0001\n"u8.ToArray()]);
        var lines = await c.FlushAsync();
        Assert.Equal("OVERHEAD E unknown_command " + System.Text.Encoding.Latin1.GetString(garbage), Assert.Single(lines));
        Assert.Equal("\u00c3\u00bf\u0000\u0001", await c.RetrieveAsync("k"));
    }

    [Fact]
    public async Task Unauthenticated_floods_are_dropped_and_closed()
    {
        using var dir = new TempDir();
        await using var server = await TestServer.StartAsync(dir.File("s.sock"), new() { ["MaxUnauthenticatedLines"] = "50" });
        await using var flood = await RawClient.ConnectAsync(server.Socket);
        await flood.SendAsync(string.Concat(Enumerable.Range(0, 200).Select(i => $"STORE flood{i}=1\r\n")));
        var text = await flood.ReadToEndAsync();
        Assert.Equal("CLACKS PageCamel 36\r\nOVERHEAD M Authentication required\r\nOVERHEAD E too_many_unauthenticated_lines\r\n", text);
        await using var c = await RawClient.LoginAsync(server.Socket);
        Assert.Null(await c.RetrieveAsync("flood1"));

        // Many connections that never log in do not disturb a logged-in client.
        var idle = new List<RawClient>();
        for (var i = 0; i < 50; i++)
        {
            idle.Add(await RawClient.ConnectAsync(server.Socket));
        }

        await c.SendAsync("STORE fine=1\r\n");
        Assert.Equal("1", await c.RetrieveAsync("fine"));
        foreach (var x in idle)
        {
            await x.DisposeAsync();
        }
    }

    [Fact]
    public async Task Disconnects_are_reported_to_monitors_for_clean_and_abrupt_closes()
    {
        using var dir = new TempDir();
        await using var server = await TestServer.StartAsync(dir.File("s.sock"));
        await using var mon = await RawClient.LoginAsync(server.Socket, "mon");
        await mon.SendAsync("MONITOR\r\n");
        await mon.FlushAsync();
        var abrupt = await RawClient.LoginAsync(server.Socket, "abrupt");
        var cid = (await mon.WaitForAsync(l => l.StartsWith("DEBUG CONNECTED=", StringComparison.Ordinal)))["DEBUG CONNECTED=".Length..];
        await abrupt.SendAsync("LISTEN x\r\nSTORE pending=" + new string('z', 100) + "\r\n");
        await abrupt.DisposeAsync(); // vanish without QUIT
        await mon.WaitForAsync(l => l.StartsWith($"DEBUG DISCONNECTED={cid} (", StringComparison.Ordinal));

        await using var other = await RawClient.LoginAsync(server.Socket);
        await other.SendAsync("SET x=1\r\n"); // delivering to nobody must not fail
        Assert.Empty(await other.FlushAsync());
    }
}

/// <summary>Slow consumers: a listener that never reads is dropped, others keep going.</summary>
public sealed class SlowConsumerTests
{
    [Fact]
    public async Task A_listener_that_never_reads_is_dropped_without_stalling_the_publisher()
    {
        using var dir = new TempDir();
        await using var server = await TestServer.StartAsync(dir.File("s.sock"), new() { ["Transport:MaxWriteBufferSize"] = "65536" });
        await using var mon = await RawClient.LoginAsync(server.Socket, "mon");
        await mon.SendAsync("MONITOR\r\n");
        await mon.FlushAsync();
        await using var stuck = await RawClient.LoginAsync(server.Socket, "stuck");
        var stuckCid = (await mon.WaitForAsync(l => l.StartsWith("DEBUG CONNECTED=", StringComparison.Ordinal)))["DEBUG CONNECTED=".Length..];
        await stuck.SendAsync("LISTEN flood\r\n");
        await stuck.FlushAsync();
        await using var good = await RawClient.LoginAsync(server.Socket, "good");
        await mon.SendAsync("UNMONITOR\r\n");
        await mon.FlushAsync("u");
        var payload = new string('p', 10_000);
        for (var i = 0; i < 40; i++)
        {
            await good.SendAsync(string.Concat(Enumerable.Range(0, 10).Select(_ => $"SET flood={payload}\r\n")));
        }

        Assert.Empty(await good.FlushAsync()); // the publisher is never blocked
        await RawClient.EventuallyAsync(async () =>
        {
            await good.SendAsync("CLIENTLIST\r\n");
            return !(await good.FlushAsync("cl")).Any(l => l.Contains($"CID={stuckCid};", StringComparison.Ordinal));
        }, what: "stuck listener dropped");
        Assert.Equal(1, server.Service.Statistics.SlowConsumersDropped);
    }
}

/// <summary>Half-closed peers still get their replies.</summary>
public sealed class HalfCloseTests
{
    [Fact]
    public async Task A_client_that_half_closes_after_its_requests_gets_all_replies()
    {
        using var dir = new TempDir();
        await using var server = await TestServer.StartAsync(dir.File("s.sock"));
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        await socket.ConnectAsync(new System.Net.Sockets.UnixDomainSocketEndPoint(server.Socket));
        await socket.SendAsync("CLACKS oneshot\nOVERHEAD A YWRtaW4=:YWRtaW5wYXNz\nSTORE a=1\nRETRIEVE a\nFLUSH end\n"u8.ToArray());
        socket.Shutdown(System.Net.Sockets.SocketShutdown.Send);
        var all = new List<byte>();
        var buffer = new byte[4096];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        int n;
        while ((n = await socket.ReceiveAsync(buffer, cts.Token)) > 0)
        {
            all.AddRange(buffer.AsSpan(0, n));
        }

        Assert.Equal("CLACKS PageCamel 36\r\nOVERHEAD M Authentication required\r\nRETRIEVED a=1\r\nFLUSHED end\r\nOVERHEAD O Welcome!\r\n", System.Text.Encoding.Latin1.GetString(all.ToArray()));
    }
}
