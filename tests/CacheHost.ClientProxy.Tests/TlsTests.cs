using System.Net;
using System.Net.Sockets;
using CacheHost.Client;
using CacheHost.LoadTool;
using CacheHost.Protocols.DistCache;
using CacheHost.Roles.CacheServer;
using CacheHost.Testing;
using CacheHost.Transport;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace CacheHost.ClientProxy.Tests;

/// <summary>
/// TLS on the distcache links (issue 18): real handshakes over loopback with certificates generated per test
/// (TestCertificates), through CacheServer's TLS listener, the client library, the proxy's upstream link, Snoop's
/// server link, the load tool and the dc_server command line.
/// </summary>
public sealed class TlsTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task MutualTlsWithAClientCertificateFromTheCaIsAccepted()
    {
        var pki = TestCertificates.Create();
        await using var server = await StartTlsServerAsync(pki, verify: true, allowedNames: ["cachehost-proxy"]);
        Assert.True(await RoundTripAsync(server.TlsAddress, ClientTls(pki, pki.Client)));
        Assert.Equal(0, server.TlsListener.AdapterFailures);
    }

    [Fact]
    public async Task MissingWrongAndExpiredClientCertificatesAreRefusedAndNothingElseIsDisturbed()
    {
        var pki = TestCertificates.Create();
        await using var server = await StartTlsServerAsync(pki, verify: true);

        // An established mutual-TLS connection that must keep working while others are refused.
        await using var established = await ConnectAsync(server.TlsAddress, ClientTls(pki, pki.Client));
        await AssertRoundTripAsync(established);

        Assert.False(await RoundTripAsync(server.TlsAddress, ClientTls(pki, certificate: null)), "no client certificate");
        Assert.False(await RoundTripAsync(server.TlsAddress, ClientTls(pki, pki.Foreign)), "client certificate of another CA");
        Assert.False(await RoundTripAsync(server.TlsAddress, ClientTls(pki, pki.Expired)), "expired client certificate");
        await RoleHost.WaitUntilAsync(() => server.TlsListener.AdapterFailures == 3, Bound, "three refused handshakes");

        await AssertRoundTripAsync(established);
        Assert.True(await RoundTripAsync(server.TlsAddress, ClientTls(pki, pki.Client)));
        Assert.Equal(3, server.TlsListener.AdapterFailures);
        Assert.Contains(server.Service.Snapshot(), c => c.Name == "connections.tls_failed" && c.Value == 3);
    }

    [Fact]
    public async Task AllowListsOfNamesAndSpkiPinsDecide()
    {
        var pki = TestCertificates.Create();
        await using (var byName = await StartTlsServerAsync(pki, verify: true, allowedNames: ["someone-else"]))
        {
            Assert.False(await RoundTripAsync(byName.TlsAddress, ClientTls(pki, pki.Client)), "a CA-signed certificate not on the name list");
        }

        await using var byPin = await StartTlsServerAsync(pki, verify: true, pins: ["sha256/" + TlsContext.SpkiPin(pki.Client.Certificate)]);
        Assert.True(await RoundTripAsync(byPin.TlsAddress, ClientTls(pki, pki.Client)), "pinned key");
        Assert.False(await RoundTripAsync(byPin.TlsAddress, ClientTls(pki, pki.Reissue(pki.Expired, "cachehost-other-key", server: false))), "same CA, other key");
    }

    [Fact]
    public async Task TheLinkRefusesAServerWhoseCertificateDoesNotChainToItsCa()
    {
        var pki = TestCertificates.Create();
        await using var server = await StartTlsServerAsync(pki, verify: false);
        Assert.True(await RoundTripAsync(server.TlsAddress, ClientTls(pki, certificate: null)), "server-authenticated TLS");
        var distrustful = new TlsContext(new TlsOptions { CertificateAuthority = pki.OtherCaFile }, server: false);
        var ex = await Assert.ThrowsAnyAsync<Exception>(() => ConnectAsync(server.TlsAddress, distrustful).AsTask());
        Assert.Contains("cachehost-server", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PlainTextToATlsPortClosesThatConnectionOnly()
    {
        var pki = TestCertificates.Create();
        await using var server = await StartTlsServerAsync(pki, verify: true);
        await using var established = await ConnectAsync(server.TlsAddress, ClientTls(pki, pki.Client));

        using (var plain = InProcessCacheServer.ConnectTo(server.TlsAddress))
        {
            // A whole distcache HAVE request in clear (header of distcache §4.1, id "x").
            var request = new System.Buffers.ArrayBufferWriter<byte>();
            DistCacheMessageWriter.Write(request, isResponse: false, 1, DistCacheOperation.Have, "x"u8);
            plain.Send(request.WrittenSpan);
            DistCacheVectorReplayer.ExpectClosed(plain, Bound, "plain text on the TLS port");
        }

        await RoleHost.WaitUntilAsync(() => server.TlsListener.AdapterFailures == 1, Bound, "the failed handshake to be counted");
        await AssertRoundTripAsync(established);
        using var unix = server.Connect(); // the plain unix listener of the same server is untouched
        Assert.True(unix.Connected);
    }

    [Fact]
    public async Task ATlsClientToAPlainPortFailsAndThePortKeepsServingPlainClients()
    {
        await using var server = await InProcessCacheServer.StartAsync(listen: "IP:127.0.0.1:0");
        var pki = TestCertificates.Create();
        var tls = new TlsContext(new TlsOptions { CertificateAuthority = pki.CaFile, HandshakeTimeout = TimeSpan.FromSeconds(5) }, server: false);
        Assert.False(await RoundTripAsync(server.Address, tls));
        Assert.True(await RoundTripAsync(server.Address, tls: null));
    }

    [Fact]
    public async Task ASilentPeerIsCutAtTheHandshakeLimit()
    {
        var pki = TestCertificates.Create();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var server = await StartTlsServerAsync(pki, verify: true, clock: clock, extra: new() { ["CacheHost:CacheServer:TlsListen:0:HandshakeTimeout"] = "00:00:05" });
        using var silent = InProcessCacheServer.ConnectTo(server.TlsAddress);
        await RoleHost.WaitUntilAsync(() => server.TlsListener.ActiveConnections == 1, Bound, "the connection to be accepted");

        // Short of the limit nothing happens ...
        clock.Advance(TimeSpan.FromSeconds(4.9));
        Assert.Equal(0, server.TlsListener.AdapterFailures);

        // ... at the limit the handshake is cut (stepping on, in case the timer was armed after the first step).
        await RoleHost.WaitUntilAsync(() =>
        {
            clock.Advance(TimeSpan.FromSeconds(1));
            return server.TlsListener.AdapterFailures == 1;
        }, Bound, "the handshake limit");
        DistCacheVectorReplayer.ExpectClosed(silent, Bound, "the silent peer");
        Assert.Equal(0, server.TlsListener.ActiveConnections);
    }

    [Fact]
    public async Task ReloadTakesANewCertificateAndEstablishedConnectionsKeepWorking()
    {
        var pki = TestCertificates.Create();
        await using var server = await StartTlsServerAsync(pki, verify: true);
        await using var established = await ConnectAsync(server.TlsAddress, ClientTls(pki, pki.Client));
        await AssertRoundTripAsync(established);
        var wantsRenewed = ClientTls(pki, pki.Client, allowedServerNames: ["cachehost-renewed"]);
        Assert.False(await RoundTripAsync(server.TlsAddress, wantsRenewed), "the old certificate is not the renewed one");

        pki.Reissue(pki.Server, "cachehost-renewed", server: true);
        ((IConfigurationRoot)server.Host.Services.GetRequiredService<IConfiguration>()).Reload(); // what SIGHUP and config.reload do

        Assert.True(await RoundTripAsync(server.TlsAddress, wantsRenewed), "a new connection gets the renewed certificate");
        await AssertRoundTripAsync(established);
    }

    [Fact]
    public async Task StartFailsNamingTheKeyOfAMissingOrUnusableFile()
    {
        var pki = TestCertificates.Create();
        var missing = await Assert.ThrowsAsync<OptionsValidationException>(() => StartTlsServerAsync(pki, verify: false,
            extra: new() { ["CacheHost:CacheServer:TlsListen:0:Key"] = Path.Combine(pki.Directory, "nope.key") }));
        Assert.Contains("CacheHost:CacheServer:TlsListen:0:Key: cannot read", missing.Message, StringComparison.Ordinal);

        var wrongKey = await Assert.ThrowsAsync<OptionsValidationException>(() => StartTlsServerAsync(pki, verify: false,
            extra: new() { ["CacheHost:CacheServer:TlsListen:0:Key"] = pki.Client.KeyFile }));
        Assert.Contains("CacheHost:CacheServer:TlsListen:0:Key:", wrongKey.Message, StringComparison.Ordinal);

        var noCa = await Assert.ThrowsAsync<OptionsValidationException>(() => StartTlsServerAsync(pki, verify: true,
            extra: new() { ["CacheHost:CacheServer:TlsListen:0:CertificateAuthority"] = null }));
        Assert.Contains("CacheHost:CacheServer:TlsListen:0:CertificateAuthority", noCa.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(DistCacheVectors.ServerCaseNames), MemberType = typeof(DistCacheVectors))]
    public async Task CapturedServerCaseGivesTheSameBytesThroughTls(string name)
    {
        // The replayer speaks plain distcache to the snoop, whose server link is mutual TLS to the server's TLS
        // listener: every byte the client sees crossed a TLS link.
        var vectorCase = DistCacheVectors.Server(name);
        var pki = TestCertificates.Create();
        await using var server = await StartTlsServerAsync(pki, verify: true, capacity: vectorCase.Capacity);
        await using var snoop = await RoleHost.StartSnoopAsync(server.TlsAddress, LinkTls("CacheHost:Snoop:ServerTls", pki));
        new DistCacheVectorReplayer(() => InProcessCacheServer.ConnectTo(snoop.Address)).Replay(vectorCase);
        Assert.Equal(0, server.TlsListener.AdapterFailures);
    }

    [Fact]
    public async Task ProxyOverMutualTlsSurvivesServerKillAndRestart()
    {
        var pki = TestCertificates.Create();
        var address = $"IP:127.0.0.1:{FreePort()}";
        string[] serverArgs = ["server", "-listen", address, "-tls-cert", pki.Server.CertificateFile, "-tls-key", pki.Server.KeyFile, "-tls-ca", pki.CaFile, "-tls-verify"];
        var server = ChildProcess.Start(serverArgs);
        try
        {
            server.WaitForConnectable(address, Bound);
            await using var proxy = await RoleHost.StartProxyAsync(address, LinkTls("CacheHost:ClientProxy:ServerTls", pki));
            await using (var client = await DistCacheClient.CreateAsync(proxy.Address, DistCacheClientFlags.Persistent))
            {
                Assert.True(await client.AddAsync("tls-session"u8.ToArray(), "secret"u8.ToArray(), 60_000));
            }

            server.Kill();
            server.Dispose();
            await RoleHost.WaitUntilAsync(() => !proxy.Proxy.IsServerConnected, Bound, "the proxy to notice the kill");
            server = ChildProcess.Start(serverArgs);
            server.WaitForConnectable(address, Bound);
            await RoleHost.WaitUntilAsync(() => proxy.Proxy.IsServerConnected, Bound, "the proxy's TLS link to come back");

            await using var again = await DistCacheClient.CreateAsync(proxy.Address, DistCacheClientFlags.Persistent);
            Assert.True(await again.AddAsync("tls-session-2"u8.ToArray(), "secret"u8.ToArray(), 60_000));
            var buffer = new byte[64];
            Assert.Equal(new DistCacheGetResult(true, 6, true), await again.GetAsync("tls-session-2"u8.ToArray(), buffer));
            Assert.True(proxy.Proxy.Link.Stats.Connects >= 2);
        }
        finally
        {
            server.Dispose();
        }
    }

    [Fact]
    public async Task LoadToolRunsOverMutualTlsAndNamesABadFlag()
    {
        var pki = TestCertificates.Create();
        await using var server = await StartTlsServerAsync(pki, verify: true);
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = LoadToolCommand.Run(["-connect", server.TlsAddress, "-tls-cert", pki.Client.CertificateFile, "-tls-key", pki.Client.KeyFile, "-tls-ca", pki.CaFile,
            "-tls-verify", "-persistent", "-sessions", "5", "-ops", "200", "-quiet"], stdout, stderr);
        Assert.True(code == 0, stderr.ToString());
        Assert.Equal(0, server.TlsListener.AdapterFailures);

        var bad = new StringWriter();
        Assert.Equal(1, LoadToolCommand.Run(["-connect", server.TlsAddress, "-tls-cert", pki.Client.CertificateFile, "-tls-key", Path.Combine(pki.Directory, "nope.key")], stdout, bad));
        Assert.Contains("Error, -tls-key: cannot read", bad.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void DcServerTlsFlagsMakeListenATlsListener()
    {
        var parsed = DcServerCommandLine.Parse(["-listen", "IP:0.0.0.0:9443", "-tls-cert", "c.pem", "-tls-key", "k.pem", "-tls-ca", "ca.pem", "-tls-verify"]);
        var o = parsed.Overrides!;
        Assert.Equal("IP:0.0.0.0:9443", o["CacheHost:CacheServer:TlsListen:0:Address"]);
        Assert.Equal("c.pem", o["CacheHost:CacheServer:TlsListen:0:Certificate"]);
        Assert.Equal("k.pem", o["CacheHost:CacheServer:TlsListen:0:Key"]);
        Assert.Equal("ca.pem", o["CacheHost:CacheServer:TlsListen:0:CertificateAuthority"]);
        Assert.Equal("true", o["CacheHost:CacheServer:TlsListen:0:RequireClientCertificate"]);
        Assert.False(o.ContainsKey("CacheHost:CacheServer:Listen:0"));
        Assert.Equal(1, DcServerCommandLine.Parse(["-listen", "IP:9443", "-tls-cert"]).ExitCode);
    }

    [Fact]
    public async Task TheDeployExamplesBindAndTalkMutualTls()
    {
        // deploy/examples/tls/*.json with the host names, paths and ports of this machine put in: every key of the
        // examples must bind and validate, and the pair must work.
        var pki = TestCertificates.Create();
        var files = new Dictionary<string, string>
        {
            ["/etc/cachehost/tls/server.pem"] = pki.Server.CertificateFile,
            ["/etc/cachehost/tls/server.key"] = pki.Server.KeyFile,
            ["/etc/cachehost/tls/proxy1.pem"] = pki.Client.CertificateFile,
            ["/etc/cachehost/tls/proxy1.key"] = pki.Client.KeyFile,
            ["/etc/cachehost/tls/ca.pem"] = pki.CaFile,
            ["proxy1.example.net"] = "cachehost-proxy",
            ["cache1.example.net"] = "localhost",
        };
        var server = Example("server", "CacheHost:CacheServer:", files);
        Assert.Equal("true", server["CacheHost:CacheServer:TlsListen:0:RequireClientCertificate"], ignoreCase: true);
        server.Remove("CacheHost:CacheServer:Listen");
        server["CacheHost:CacheServer:TlsListen:0:Address"] = "IP:127.0.0.1:0";
        await using var cache = new TlsServer(await InProcessCacheServer.StartAsync(extra: server));

        var proxySettings = Example("proxy", "CacheHost:ClientProxy:", files);
        foreach (var key in new[] { "CacheHost:ClientProxy:Listen", "CacheHost:ClientProxy:Transport:SocketGroup", "CacheHost:ClientProxy:Transport:SocketMode" })
        {
            proxySettings.Remove(key);
        }

        proxySettings["CacheHost:ClientProxy:Server"] = cache.TlsAddress;
        await using var proxy = await RoleHost.StartProxyAsync(cache.TlsAddress, proxySettings);
        await using var client = await DistCacheClient.CreateAsync(proxy.Address, DistCacheClientFlags.Persistent);
        Assert.True(await client.AddAsync("example"u8.ToArray(), "secret"u8.ToArray(), 60_000));
        Assert.Equal(0, cache.TlsListener.AdapterFailures);
    }

    private static Dictionary<string, string?> Example(string name, string section, Dictionary<string, string> replacements)
    {
        var json = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, $"deploy/examples/tls/{name}.appsettings.json"));
        foreach (var (from, to) in replacements)
        {
            json = json.Replace(from, to, StringComparison.Ordinal);
        }

        using var stream = new MemoryStream(System.Text.Encoding.UTF8.GetBytes(json));
        var configuration = new ConfigurationBuilder().AddJsonStream(stream).Build();
        return configuration.AsEnumerable().Where(p => p.Key.StartsWith(section, StringComparison.Ordinal) && p.Value is not null)
            .ToDictionary(p => p.Key, p => p.Value);
    }

    // ---- helpers ----

    private static Dictionary<string, string?> LinkTls(string section, TestCertificates pki) => new()
    {
        [section + ":Certificate"] = pki.Client.CertificateFile,
        [section + ":Key"] = pki.Client.KeyFile,
        [section + ":CertificateAuthority"] = pki.CaFile,
    };

    private static TlsContext ClientTls(TestCertificates pki, TestCertificates.Pair? certificate, string[]? allowedServerNames = null) =>
        new(new TlsOptions
        {
            Certificate = certificate?.CertificateFile,
            Key = certificate?.KeyFile,
            CertificateAuthority = pki.CaFile,
            AllowedNames = [.. allowedServerNames ?? []],
        }, server: false);

    private static async Task<TlsServer> StartTlsServerAsync(TestCertificates pki, bool verify, string[]? allowedNames = null, string[]? pins = null,
        TimeProvider? clock = null, Dictionary<string, string?>? extra = null, int capacity = 512)
    {
        const string S = "CacheHost:CacheServer:TlsListen:0:";
        var settings = new Dictionary<string, string?>
        {
            [S + "Address"] = "IP:127.0.0.1:0",
            [S + "Certificate"] = pki.Server.CertificateFile,
            [S + "Key"] = pki.Server.KeyFile,
            [S + "CertificateAuthority"] = pki.CaFile,
            [S + "RequireClientCertificate"] = verify ? "true" : "false",
        };
        for (var i = 0; i < (allowedNames?.Length ?? 0); i++)
        {
            settings[$"{S}AllowedNames:{i}"] = allowedNames![i];
        }

        for (var i = 0; i < (pins?.Length ?? 0); i++)
        {
            settings[$"{S}AllowedSpkiPins:{i}"] = pins![i];
        }

        foreach (var (key, value) in extra ?? [])
        {
            settings[key] = value;
        }

        return new TlsServer(await InProcessCacheServer.StartAsync(capacity, extra: settings, clock: clock));
    }

    private static async ValueTask<DistCacheConnection> ConnectAsync(string address, TlsContext? tls)
    {
        using var timeout = new CancellationTokenSource(Bound);
        return await DistCacheConnection.ConnectAsync(TransportAddress.Parse(address), null, tls, timeout.Token);
    }

    private static async Task AssertRoundTripAsync(DistCacheConnection connection)
    {
        using var timeout = new CancellationTokenSource(Bound);
        connection.AppendRequest(7, DistCacheOperation.Have, "probe"u8);
        await connection.SendAsync(timeout.Token);
        var (uid, operation) = await connection.ReceiveAsync(timeout.Token);
        Assert.Equal((7u, DistCacheOperation.Have), (uid, operation));
    }

    /// <summary>Connect, one HAVE, its answer: true; refused at the handshake or closed after it: false.</summary>
    private static async Task<bool> RoundTripAsync(string address, TlsContext? tls)
    {
        try
        {
            await using var connection = await ConnectAsync(address, tls);
            await AssertRoundTripAsync(connection);
            return true;
        }
        catch (Exception ex) when (ex is IOException or System.Security.Authentication.AuthenticationException or InvalidDataException or ConnectionResetException or ConnectionAbortedException)
        {
            return false;
        }
    }

    private static int FreePort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    /// <summary>A CacheServer with its plain unix listener (Servers[0]) and one TLS listener (Servers[1]).</summary>
    private sealed class TlsServer(InProcessCacheServer inner) : IAsyncDisposable
    {
        public Microsoft.Extensions.Hosting.IHost Host => inner.Host;

        public CacheServerService Service => inner.Service;

        public ConnectionServer TlsListener => inner.Service.Servers[1];

        public string TlsAddress => TlsListener.Listener.DisplayAddress;

        public Socket Connect() => inner.Connect();

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}
