using CacheHost.Testing;
using Xunit;

namespace CacheHost.ClientProxy.Tests;

/// <summary>
/// The captured dc_client cases (cases-client-proxy.jsonl): uid preservation with concurrent local clients,
/// pipelining, multi-frame, error pass-through, 0x02 for a request in flight when the server dies, the empty
/// reply while there is no server, and recovery. The upstream server is a real cachehost child process so it
/// can be stopped (SIGSTOP) and killed (SIGKILL) like the reference was during the capture.
/// </summary>
public sealed class ProxyVectorTests
{
    [Theory]
    [MemberData(nameof(DistCacheVectors.ProxyCaseNames), MemberType = typeof(DistCacheVectors))]
    public async Task CapturedProxyCaseReplays(string name)
    {
        var vectorCase = DistCacheVectors.Proxy(name);
        var serverAddress = "UNIX:" + TestPaths.Socket("pxs");
        ChildProcess? server = vectorCase.ServerStarted ? ChildProcess.StartServer(serverAddress) : null;
        try
        {
            await using var proxy = await RoleHost.StartProxyAsync(serverAddress, waitForLink: vectorCase.ServerStarted);
            try
            {
                Replay(vectorCase, proxy, serverAddress, () => server, s => server = s);
            }
            catch (Exception ex)
            {
                // The proxy's own account of the link (connects, losses, answers) is what explains a failed step.
                var log = string.Join("\n", proxy.Logs.Entries.Where(e => e.Level >= Microsoft.Extensions.Logging.LogLevel.Information).Select(e => $"  [{e.Level}] {e.Message}"));
                throw new Xunit.Sdk.XunitException($"{ex.Message}\nproxy log:\n{log}");
            }
        }
        finally
        {
            server?.Dispose();
        }
    }

    private static void Replay(VectorCase vectorCase, RoleHost proxy, string serverAddress, Func<ChildProcess?> getServer, Action<ChildProcess?> setServer)
    {
        {
            var server = getServer();
            new DistCacheVectorReplayer(() => InProcessCacheServer.ConnectTo(proxy.Address))
            {
                OnAction = action =>
                {
                    switch (action)
                    {
                        case "stop_server":
                            server!.Pause();
                            break;
                        case "kill_server":
                            server!.Kill();
                            break;
                        case "start_server":
                            server?.Dispose();
                            server = ChildProcess.StartServer(serverAddress);
                            setServer(server);
                            break;
                        default:
                            Assert.Fail($"unknown action {action}");
                            break;
                    }
                },
            }.Replay(vectorCase);
        }
    }
}
