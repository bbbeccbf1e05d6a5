using CacheHost.Testing;
using Xunit;

namespace CacheHost.ClientProxy.Tests;

/// <summary>The drop-in command lines as real child processes: cachehost client / snoop / test.</summary>
public sealed class DropInCommandTests
{
    [Fact]
    public async Task ClientCommandProxiesAndTestCommandVerifiesThroughIt()
    {
        var serverAddress = "UNIX:" + TestPaths.Socket("dis");
        var proxyPath = TestPaths.Socket("dip");
        var pidFile = Path.Combine(TestPaths.Directory("pid"), "dc_client.pid");
        await using var server = await InProcessCacheServer.StartAsync(listen: serverAddress);
        using var client = ChildProcess.Start("client", "-listen", "UNIX:" + proxyPath, "-server", serverAddress, "-retry", "1000", "-idle", "0", "-sockperms", "600", "-pidfile", pidFile);
        client.WaitForConnectable("UNIX:" + proxyPath, TimeSpan.FromSeconds(20));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(proxyPath));
        await RoleHost.WaitUntilAsync(() => File.Exists(pidFile), TimeSpan.FromSeconds(10), "the pid file");
        Assert.Equal(client.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), File.ReadAllText(pidFile));

        using var test = ChildProcess.Start("test", "-connect", "UNIX:" + proxyPath, "-sessions", "20", "-ops", "2000", "-persistent");
        Assert.True(test.WaitForExit(TimeSpan.FromSeconds(60)), "dc_test did not finish");
        Assert.True(test.ExitCode == 0, test.Output + client.Output);
        Assert.Contains("Info, all tests complete", test.Output);
        Assert.False(client.HasExited);
    }

    [Theory]
    [InlineData(new[] { "client" }, "Error, no server specified!")]
    [InlineData(new[] { "client", "-server", "UNIX:/a", "-server", "IP:9002" }, "Error, internal initialisation problems")]
    [InlineData(new[] { "client", "-server", "UNIX:/a", "-retry", "0" }, "Error, -retry given an invalid argument")]
    [InlineData(new[] { "client", "-server", "UNIX:/a", "-idle", "12x" }, "Error, -idle given an invalid argument")]
    [InlineData(new[] { "client", "-server", "IP:9001" }, "Error, internal initialisation problems")]
    [InlineData(new[] { "client", "-server", "UNIX:/a", "-listen", "BOGUS:1" }, "Error, bad listen address")]
    [InlineData(new[] { "client", "-server", "UNIX:/a", "-frobnicate" }, "Error, \"-frobnicate\" not recognised")]
    [InlineData(new[] { "snoop", "-listen", "UNIX:/a" }, "Error, must provide -listen and -server")]
    [InlineData(new[] { "test" }, "Error, must provide -connect")]
    public void UsageErrorsMatchTheReference(string[] args, string message)
    {
        using var child = ChildProcess.Start(args);
        Assert.True(child.WaitForExit(TimeSpan.FromSeconds(30)));
        Assert.Equal(1, child.ExitCode);
        Assert.Contains(message, child.Output);
    }

    [Fact]
    public async Task SnoopCommandPrintsReferenceLinesOnStderr()
    {
        await using var server = await InProcessCacheServer.StartAsync();
        var listen = "UNIX:" + TestPaths.Socket("dsn");
        using var snoop = ChildProcess.Start("snoop", "-listen", listen, "-connect", server.Address);
        snoop.WaitForConnectable(listen, TimeSpan.FromSeconds(20));
        using (var socket = InProcessCacheServer.ConnectTo(listen))
        {
            socket.Send(Hex.Bytes("0011000000000000070003010003616263"));
            Assert.Equal("001100000100000007000301000101", Hex.Of(DistCacheVectorReplayer.ReadExactly(socket, 15, TimeSpan.FromSeconds(5), "via dc_snoop")));
        }

        // The probe connection above was number 0 (WaitForConnectable's probe) or 1.
        await RoleHost.WaitUntilAsync(() => snoop.Output.Contains("server->client, message completed (request_uid = 7), total_len=15"), TimeSpan.FromSeconds(10), "the snoop lines");
        Assert.Matches(@"(?m)^SNOOP_DBG_MSG: connection \d+, client->server, message completed \(request_uid = 7\), total_len=17$", snoop.Output);
        Assert.Matches(@"(?m)^SNOOP_DBG_MSG: connection \d+, server->client, message completed \(request_uid = 7\), total_len=15$", snoop.Output);
    }
}
