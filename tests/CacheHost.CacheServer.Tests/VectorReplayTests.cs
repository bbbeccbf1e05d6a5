using CacheHost.Testing;
using Xunit;

namespace CacheHost.CacheServer.Tests;

/// <summary>
/// Every captured dc_server case replayed against a fresh real CacheServer over a unix socket, compared byte
/// for byte (vectors: Vectors/distcache/cases.jsonl, see PROVENANCE.md). Cases where the original aborted
/// additionally prove that a new connection is still served.
/// </summary>
public sealed class VectorReplayTests
{
    [Theory]
    [MemberData(nameof(DistCacheVectors.ServerCaseNames), MemberType = typeof(DistCacheVectors))]
    public async Task CapturedCaseReplaysByteForByte(string name)
    {
        var vectorCase = DistCacheVectors.Server(name);
        await using var server = await InProcessCacheServer.StartAsync(vectorCase.Capacity);
        new DistCacheVectorReplayer(server.Connect).Replay(vectorCase);
    }
}

/// <summary>
/// The same cases with every request written in random small pieces: a correct server must not depend on
/// segmentation (the reference does, see known-defects.md; the fix of distcache §13.1).
/// </summary>
public sealed class SegmentedVectorReplayTests
{
    [Theory]
    [MemberData(nameof(DistCacheVectors.ServerCaseNames), MemberType = typeof(DistCacheVectors))]
    public async Task CapturedCaseReplaysWithFragmentedWrites(string name)
    {
        var vectorCase = DistCacheVectors.Server(name);
        // Timing-sensitive cases keep their one-write sends: slow piecewise writes would shift their clocks.
        var timed = vectorCase.Tags.Contains("expiry") || vectorCase.Tags.Contains("eviction");
        await using var server = await InProcessCacheServer.StartAsync(vectorCase.Capacity);
        new DistCacheVectorReplayer(server.Connect) { SplitSeed = timed ? null : name.GetHashCode(StringComparison.Ordinal) }.Replay(vectorCase);
    }
}
