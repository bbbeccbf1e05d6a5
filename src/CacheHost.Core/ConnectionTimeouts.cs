namespace CacheHost.Core;

/// <summary>What a connection is waiting for, as far as its timeouts are concerned.</summary>
public enum ConnectionWait
{
    /// <summary>Nothing buffered: waiting for the peer's next request (IdleTimeout).</summary>
    Idle,

    /// <summary>Part of a request buffered: waiting for the rest (RequestTimeout, or IdleTimeout if that is off).</summary>
    Request,

    /// <summary>Waiting for the peer to take our output (IdleTimeout: a peer that stopped reading).</summary>
    Output,
}

/// <summary>
/// The idle and incomplete-request timeouts of one server connection, on an injected clock. The handler marks
/// what it waits for (<see cref="Mark"/>: one timestamp and one store, no allocation); one timer per connection
/// checks the mark every quarter of the shortest timeout and calls <c>expired</c> once when the wait has lasted
/// too long. So a connection is closed between the timeout and 1.25 times it after its last progress.
/// </summary>
public sealed class ConnectionTimeouts : IDisposable
{
    private readonly TimeProvider _clock;
    private readonly TimeSpan _idle;
    private readonly TimeSpan _request;
    private readonly Action<object, ConnectionWait, TimeSpan> _expired;
    private readonly object _state;
    private readonly ITimer _timer;
    private long _mark; // (timestamp << 2) | wait: one word, so the timer never sees a wait with another wait's start
    private int _fired;

    private ConnectionTimeouts(TimeProvider clock, TimeSpan idle, TimeSpan request, Action<object, ConnectionWait, TimeSpan> expired, object state)
    {
        _clock = clock;
        _idle = idle;
        _request = request;
        _expired = expired;
        _state = state;
        _mark = Pack(clock.GetTimestamp(), ConnectionWait.Idle);
        var shortest = idle <= TimeSpan.Zero ? request : request <= TimeSpan.Zero ? idle : TimeSpan.FromTicks(Math.Min(idle.Ticks, request.Ticks));
        var period = TimeSpan.FromTicks(Math.Max(shortest.Ticks / 4, TimeSpan.TicksPerMillisecond));
        _timer = clock.CreateTimer(static s => ((ConnectionTimeouts)s!).Check(), this, period, period);
    }

    /// <summary>
    /// Starts watching a new connection, or returns null when both timeouts are off (zero). <paramref name="expired"/>
    /// gets <paramref name="state"/>, the wait that lasted too long and its limit; it runs on a timer thread.
    /// </summary>
    public static ConnectionTimeouts? Start(TimeProvider clock, TimeSpan idle, TimeSpan request, Action<object, ConnectionWait, TimeSpan> expired, object state) =>
        idle <= TimeSpan.Zero && request <= TimeSpan.Zero ? null : new ConnectionTimeouts(clock, idle, request, expired, state);

    /// <summary>The connection now waits for <paramref name="wait"/>, from now on.</summary>
    public void Mark(ConnectionWait wait) => Volatile.Write(ref _mark, Pack(_clock.GetTimestamp(), wait));

    /// <summary>
    /// The connection waits for <paramref name="wait"/>; the clock restarts only if it made progress or waited for
    /// something else before (a request arriving byte by byte keeps its first byte's start).
    /// </summary>
    public void Mark(ConnectionWait wait, bool progressed)
    {
        if (progressed || (ConnectionWait)(Volatile.Read(ref _mark) & 3) != wait)
        {
            Mark(wait);
        }
    }

    /// <inheritdoc />
    public void Dispose() => _timer.Dispose();

    private static long Pack(long timestamp, ConnectionWait wait) => (timestamp << 2) | (long)wait;

    private void Check()
    {
        var mark = Volatile.Read(ref _mark);
        var wait = (ConnectionWait)(mark & 3);
        var limit = wait == ConnectionWait.Request && _request > TimeSpan.Zero ? _request : _idle;
        if (limit <= TimeSpan.Zero || _clock.GetElapsedTime(mark >> 2) < limit || Interlocked.Exchange(ref _fired, 1) != 0)
        {
            return;
        }

        _timer.Dispose();
        _expired(_state, wait, limit);
    }
}
