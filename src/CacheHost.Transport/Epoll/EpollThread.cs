using CacheHost.Posix;
using System.Runtime.InteropServices;

namespace CacheHost.Transport.Epoll;

/// <summary>
/// One epoll instance and the dedicated thread that waits on it (the shape of memcached's and Garnet's
/// per-thread event loops). Each registered connection owns a slot; the 64-bit epoll data is
/// <c>generation &lt;&lt; 32 | slot</c>, so an event that was already fetched for a connection that has since
/// gone (and whose slot was reused) is recognised and dropped. Socket readiness is handled inline on this
/// thread, and with it the protocol code (inline pipe scheduling). Work deferred with <see cref="RunAtBatchEnd"/>
/// runs once every event of one epoll_wait has been handled: a proxy uses it to send everything its clients
/// asked for in that batch with one write.
/// </summary>
internal sealed unsafe class EpollThread
{
    private const int MaxEvents = 256;

    [ThreadStatic]
    private static EpollThread? t_current;

    private readonly int _epfd;
    private readonly object _gate = new();
    private readonly Stack<int> _freeSlots = new();
    private readonly List<(Action<object?> Action, object? State)> _batchEnd = [];
    private EpollSocketConnection?[] _slots = new EpollSocketConnection?[64];
    private int _nextSlot;
    private uint _generation;

    public EpollThread(int index)
    {
        _epfd = Libc.epoll_create1(Libc.EPOLL_CLOEXEC);
        if (_epfd < 0)
        {
            throw new IOException($"epoll_create1 failed: errno {Marshal.GetLastPInvokeError()}");
        }

        var thread = new Thread(Run)
        {
            IsBackground = true,
            Name = $"cachehost epoll {index}",
        };
        thread.UnsafeStart();
    }

    /// <summary>The engine thread running the caller, or null when the caller is not on one.</summary>
    public static EpollThread? Current => t_current;

    /// <summary>Adds <paramref name="connection"/> to this loop with the given interest; returns its token.</summary>
    public ulong Register(EpollSocketConnection connection, int fd, uint events)
    {
        ulong token;
        lock (_gate)
        {
            if (!_freeSlots.TryPop(out var slot))
            {
                slot = _nextSlot++;
                if (slot == _slots.Length)
                {
                    var grown = new EpollSocketConnection?[_slots.Length * 2];
                    _slots.CopyTo(grown, 0);
                    Volatile.Write(ref _slots, grown);
                }
            }

            token = ((ulong)unchecked(++_generation) << 32) | (uint)slot;
            connection.Token = token;
            Volatile.Write(ref _slots[slot], connection);
        }

        var error = EpollNative.Control(_epfd, Libc.EPOLL_CTL_ADD, fd, events, token);
        if (error != 0)
        {
            Release(connection);
            throw new IOException($"epoll_ctl(ADD) failed: errno {error}");
        }

        return token;
    }

    /// <summary>Changes the interest of a registered descriptor (also re-arms an edge-triggered one). Returns errno.</summary>
    public int Modify(int fd, uint events, ulong token) => EpollNative.Control(_epfd, Libc.EPOLL_CTL_MOD, fd, events, token);

    /// <summary>Removes a connection: its descriptor leaves the epoll set and late events for it are ignored.</summary>
    public void Unregister(EpollSocketConnection connection, int fd)
    {
        // Fails harmlessly (EBADF/ENOENT) when the descriptor is already closed; the slot check covers that.
        _ = EpollNative.Control(_epfd, Libc.EPOLL_CTL_DEL, fd, 0, 0);
        Release(connection);
    }

    /// <summary>
    /// Runs <paramref name="action"/> on this thread after the current batch of events. Only valid on this
    /// thread (<see cref="Current"/>); pass a static lambda and a state object so nothing is allocated.
    /// </summary>
    public void RunAtBatchEnd(Action<object?> action, object? state) => _batchEnd.Add((action, state));

    private void Release(EpollSocketConnection connection)
    {
        var slot = (int)(uint)connection.Token;
        lock (_gate)
        {
            if (slot < _slots.Length && ReferenceEquals(_slots[slot], connection))
            {
                Volatile.Write(ref _slots[slot], null);
                _freeSlots.Push(slot);
            }
        }
    }

    private void Run()
    {
        t_current = this;
        var events = (byte*)NativeMemory.Alloc((nuint)(MaxEvents * EpollNative.EventSize));
        while (true)
        {
            var count = Libc.epoll_wait(_epfd, events, MaxEvents, -1);
            if (count < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == Libc.EINTR)
                {
                    continue;
                }

                // Nothing sensible is left to do: every connection of this loop would hang silently.
                Environment.FailFast($"epoll_wait failed: errno {errno}");
            }

            for (var i = 0; i < count; i++)
            {
                var token = EpollNative.EventData(events, i);
                var slots = Volatile.Read(ref _slots);
                var slot = (int)(uint)token;
                var connection = slot < slots.Length ? Volatile.Read(ref slots[slot]) : null;
                if (connection is not null && connection.Token == token)
                {
                    connection.OnEvents(EpollNative.EventMask(events, i));
                }
            }

            RunBatchEndActions();
        }
    }

    private void RunBatchEndActions()
    {
        // Actions may add more (a flush whose continuation submits again); run until none is left.
        for (var i = 0; i < _batchEnd.Count; i++)
        {
            var (action, state) = _batchEnd[i];
            try
            {
                action(state);
            }
            catch (Exception ex)
            {
                // A deferred action is protocol code; it must not take the whole loop down.
                Console.Error.WriteLine($"cachehost: epoll batch-end action failed: {ex}");
            }
        }

        _batchEnd.Clear();
    }
}
