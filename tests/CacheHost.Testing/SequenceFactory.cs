using System.Buffers;

namespace CacheHost.Testing;

/// <summary>
/// The one fragmentation harness every codec test uses: for a sample it yields the same bytes as a
/// single segment, inside an oversized array fenced with 0xFF guard bytes, split in two at every offset,
/// and one byte per segment with empty segments in between. A correct parser gives the same answer for all.
/// </summary>
public static class SequenceFactory
{
    /// <summary>A named variant of the sample.</summary>
    public sealed record Variant(string Name, ReadOnlySequence<byte> Sequence);

    /// <summary>All variants of <paramref name="data"/>.</summary>
    public static IEnumerable<Variant> Variants(byte[] data)
    {
        yield return new Variant("single", new ReadOnlySequence<byte>(data));

        var guarded = new byte[data.Length + 32];
        guarded.AsSpan().Fill(0xFF);
        data.CopyTo(guarded, 16);
        yield return new Variant("guarded", new ReadOnlySequence<byte>(guarded, 16, data.Length));

        for (var split = 1; split < data.Length; split++)
        {
            yield return new Variant($"split@{split}", Create(data.AsSpan(0, split).ToArray(), data.AsSpan(split).ToArray()));
        }

        var pieces = new List<byte[]>();
        foreach (var b in data)
        {
            pieces.Add([]);
            pieces.Add([b]);
        }

        pieces.Add([]);
        yield return new Variant("bytewise", Create([.. pieces]));
    }

    /// <summary>Builds a multi-segment sequence from the given pieces (empty pieces make empty segments).</summary>
    public static ReadOnlySequence<byte> Create(params byte[][] pieces)
    {
        if (pieces.Length == 0)
        {
            return ReadOnlySequence<byte>.Empty;
        }

        var first = new Segment(pieces[0], 0);
        var last = first;
        for (var i = 1; i < pieces.Length; i++)
        {
            last = last.Append(pieces[i]);
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(byte[] memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(byte[] memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
