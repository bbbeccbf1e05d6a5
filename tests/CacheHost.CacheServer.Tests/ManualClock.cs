namespace CacheHost.CacheServer.Tests;

/// <summary>
/// A clock the test moves by hand (Microsoft.Extensions.TimeProvider.Testing is not on the package mirror).
/// Microsecond timestamps.
/// </summary>
internal sealed class ManualClock : TimeProvider
{
    private long _micros = 1_000_000;

    public override long TimestampFrequency => 1_000_000;

    public override long GetTimestamp() => Interlocked.Read(ref _micros);

    public void AdvanceMs(long ms) => Interlocked.Add(ref _micros, ms * 1000);

    public void AdvanceMicros(long micros) => Interlocked.Add(ref _micros, micros);
}
