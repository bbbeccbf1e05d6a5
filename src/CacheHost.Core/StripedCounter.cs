using System.Runtime.InteropServices;

namespace CacheHost.Core;

/// <summary>
/// A statistics counter that every connection can bump without contending on one cache line: increments
/// go to a slot picked by the current CPU, reads sum the slots. Reads are therefore approximate while
/// writers run, which is fine for counters reported in stats lines.
/// </summary>
public sealed class StripedCounter
{
    private readonly PaddedLong[] _slots;
    private readonly int _mask;

    /// <summary>Creates a counter with a power-of-two number of slots (at least the CPU count).</summary>
    public StripedCounter()
    {
        var slots = 1;
        while (slots < Environment.ProcessorCount * 2)
        {
            slots <<= 1;
        }

        _slots = new PaddedLong[slots];
        _mask = slots - 1;
    }

    /// <summary>Adds one.</summary>
    public void Increment() => Interlocked.Increment(ref _slots[Thread.GetCurrentProcessorId() & _mask].Value);

    /// <summary>Adds <paramref name="amount"/>.</summary>
    public void Add(long amount) => Interlocked.Add(ref _slots[Thread.GetCurrentProcessorId() & _mask].Value, amount);

    /// <summary>The sum of all slots.</summary>
    public long Value
    {
        get
        {
            long sum = 0;
            for (var i = 0; i < _slots.Length; i++)
            {
                sum += Volatile.Read(ref _slots[i].Value);
            }

            return sum;
        }
    }

    /// <summary>One value per 64-byte cache line.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 64)]
    private struct PaddedLong
    {
        [FieldOffset(0)]
        public long Value;
    }
}
