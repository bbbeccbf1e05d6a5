using CacheHost.Testing;
using Xunit;

namespace CacheHost.ClientProxy.Tests;

/// <summary>
/// Every captured dc_server case replayed through ClientProxy -> CacheServer: a local client must see exactly
/// the bytes it would see talking to the server directly (uids restored, replies in order, same closes).
/// </summary>
public sealed class VectorReplayThroughProxyTests
{
    [Theory]
    [MemberData(nameof(DistCacheVectors.ServerCaseNames), MemberType = typeof(DistCacheVectors))]
    public async Task CapturedServerCaseReplaysThroughProxy(string name)
    {
        var vectorCase = DistCacheVectors.Server(name);
        await using var server = await InProcessCacheServer.StartAsync(vectorCase.Capacity);
        await using var proxy = await RoleHost.StartProxyAsync(server.Address);
        new DistCacheVectorReplayer(() => InProcessCacheServer.ConnectTo(proxy.Address)).Replay(vectorCase);
        Assert.True(proxy.Proxy.IsServerConnected, "a local client's bad input must never cost the shared server link");
    }
}

/// <summary>Every captured dc_server case replayed through Snoop -> CacheServer: byte-identical to direct.</summary>
public sealed class VectorReplayThroughSnoopTests
{
    [Theory]
    [MemberData(nameof(DistCacheVectors.ServerCaseNames), MemberType = typeof(DistCacheVectors))]
    public async Task CapturedServerCaseReplaysThroughSnoop(string name)
    {
        var vectorCase = DistCacheVectors.Server(name);
        await using var server = await InProcessCacheServer.StartAsync(vectorCase.Capacity);
        await using var snoop = await RoleHost.StartSnoopAsync(server.Address);
        new DistCacheVectorReplayer(() => InProcessCacheServer.ConnectTo(snoop.Address)).Replay(vectorCase);
    }
}
