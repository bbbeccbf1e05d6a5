using CacheHost.Testing;
using Xunit;

namespace CacheHost.Host.Tests;

/// <summary>
/// Every drop-in name and one host with every role, started as a real program: the JIT build by default, the
/// NativeAOT executable when CACHEHOST_TEST_PROGRAM names it (.ci/run), where trimming would show up as a
/// name that no longer dispatches or a role that no longer binds its options.
/// </summary>
public sealed class EveryEntryPointTests
{
    private static readonly TimeSpan Start = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData("dc_server", new string[0], "Error, must provide -listen")]
    [InlineData("dc_client", new string[0], "Error, no server specified!")]
    [InlineData("dc_snoop", new[] { "-listen", "UNIX:/tmp/x" }, "Error, must provide -listen and -server")]
    [InlineData("dc_test", new string[0], "Error, must provide -connect")]
    [InlineData("daemonproxy", new string[0], "fatal: require -i or -c or -S")]
    public void Each_drop_in_name_runs_its_tool(string name, string[] args, string expected)
    {
        var dir = TestPaths.Directory("names");
        var alias = Path.Combine(dir, name);
        File.CreateSymbolicLink(alias, ProgramUnderTest.Executable);
        using var process = CacheHostProcess.Start(args, fileName: alias);
        Assert.NotEqual(0, process.WaitForExit(Start));
        Assert.Contains(expected, process.Output);
    }

    [Fact]
    public void Help_lists_every_subcommand()
    {
        using var process = CacheHostProcess.Start(["help"]);
        Assert.Equal(0, process.WaitForExit(Start));
        foreach (var subcommand in new[] { "server", "client", "snoop", "test", "daemonproxy", "clacks", "ctl" })
        {
            Assert.Contains("cachehost " + subcommand, process.Output);
        }
    }

    [Fact]
    public void One_host_runs_every_role_and_a_request_crosses_proxy_snoop_and_server()
    {
        var dir = TestPaths.Directory("all");
        File.WriteAllText(Path.Combine(dir, "supervisor.conf"), "echo\tconfigured\n");
        using var process = CacheHostProcess.Start(
        [
            "--CacheHost:Roles=CacheServer,ClientProxy,Snoop,ProcessSupervisor,Clacks",
            $"--CacheHost:CacheServer:Listen:0=UNIX:{dir}/server.sock",
            $"--CacheHost:Snoop:Listen=UNIX:{dir}/snoop.sock",
            $"--CacheHost:Snoop:Server=UNIX:{dir}/server.sock",
            $"--CacheHost:ClientProxy:Listen=UNIX:{dir}/proxy.sock",
            $"--CacheHost:ClientProxy:Server=UNIX:{dir}/snoop.sock",
            $"--CacheHost:ProcessSupervisor:SocketPath={dir}/supervisor.sock",
            $"--CacheHost:ProcessSupervisor:ConfigFile={dir}/supervisor.conf",
            $"--CacheHost:Clacks:Sockets:0={dir}/clacks.sock",
            "--CacheHost:Clacks:Username=u",
            "--CacheHost:Clacks:Password=p",
            $"--CacheHost:Control:Socket={dir}/control.sock",
        ]);
        var ready = process.WaitForLine("Ready: ", Start);
        foreach (var role in new[] { "CacheServer UNIX:", "ClientProxy UNIX:", "Snoop UNIX:", "ProcessSupervisor" })
        {
            Assert.Contains(role, ready);
        }

        foreach (var socket in new[] { "clacks.sock", "supervisor.sock", "control.sock" })
        {
            using var connection = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
            connection.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(Path.Combine(dir, socket)));
        }

        // The proxy's link may have tried snoop.sock before the Snoop role bound it (roles start in turn; the
        // proxy answers empty replies while its link is down, like dc_client): wait for the link first.
        process.WaitForLine("connected to server", Start);
        new DistCacheVectorReplayer(() => InProcessCacheServer.ConnectTo($"UNIX:{dir}/proxy.sock")).Replay(DistCacheVectors.Server("add_tiny_ok"));
        process.Signal(15);
        Assert.Equal(0, process.WaitForExit(Start));
    }
}
