using CacheHost.Client;
using CacheHost.Testing;
using Xunit;

namespace CacheHost.ClientProxy.Tests;

[CollectionDefinition(nameof(AllocationCollection), DisableParallelization = true)]
public sealed class AllocationCollection;

/// <summary>
/// The persistent path allocates nothing per operation beyond returned data (distcache §8 requirement of the issue).
/// Measured process-wide (the in-process server allocates nothing per HAVE either), alone in its collection.
/// </summary>
[Collection(nameof(AllocationCollection))]
public sealed class ClientAllocationTests
{
    [Fact]
    public async Task PersistentOperationsDoNotAllocatePerRequest()
    {
        await using var server = await InProcessCacheServer.StartAsync();
        await using var client = await DistCacheClient.CreateAsync(server.Address, DistCacheClientFlags.Persistent);
        var id = "allocation-probe"u8.ToArray();
        var data = new byte[300];
        Assert.True(await client.AddAsync(id, data, 600_000));
        var buffer = new byte[1000];
        for (var i = 0; i < 2000; i++)
        {
            await client.HaveAsync(id);
            await client.GetAsync(id, buffer);
        }

        const int Operations = 4000;
        var before = GC.GetTotalAllocatedBytes(precise: true);
        for (var i = 0; i < Operations / 2; i++)
        {
            await client.HaveAsync(id);
            await client.GetAsync(id, buffer);
        }

        var perOperation = (GC.GetTotalAllocatedBytes(precise: true) - before) / (double)Operations;
        // Unpooled async state machines would cost several hundred bytes per operation; allow background noise.
        Assert.True(perOperation < 64, $"{perOperation:F1} bytes allocated per operation");
    }
}
