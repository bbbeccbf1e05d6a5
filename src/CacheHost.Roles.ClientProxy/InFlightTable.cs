using CacheHost.Protocols.DistCache;

namespace CacheHost.Roles.ClientProxy;

/// <summary>
/// The requests forwarded to the server and not yet answered, by the uid the proxy gave them (distcache §10.2),
/// and the slots that bound their number (MaxInFlight / ServerPipelineDepth). Uids come from one 32-bit counter
/// from 1, wrapping modulo 2^32 and skipping uids still in flight (fix of distcache §13.9), never reset by a
/// reconnect. Every request belongs to the link epoch it was sent on: when a link dies only its own requests are
/// answered 0x02 (distcache §10.3), so a link that is being retired after a failback can finish its requests
/// while the new link already carries new ones. Thread-safe; every member is short and allocation-free except
/// <see cref="Close"/>.
/// </summary>
internal sealed class InFlightTable
{
    private readonly Lock _gate = new();
    private readonly Dictionary<uint, PendingRequest> _requests = [];
    private readonly SemaphoreSlim _slots;
    private uint _lastUid;
    private int _openEpoch; // 0 = no link takes requests
    private int _retiringEpoch;
    private int _retiringLeft;
    private TaskCompletionSource? _retired;

    public InFlightTable(int slots) => _slots = new SemaphoreSlim(slots, slots);

    /// <summary>How a response matched the table (<see cref="TryTake"/>).</summary>
    public enum Match
    {
        /// <summary>The request was found and taken out; its slot is free again.</summary>
        Taken,

        /// <summary>No request has this uid (its client left, or it was never asked, distcache §13.3).</summary>
        Unknown,

        /// <summary>The request has another operation: not its answer. It stays in the table.</summary>
        Mismatched,
    }

    /// <summary>The last uid handed out (tests seed it near 2^32 to exercise the wrap).</summary>
    public uint LastUid
    {
        get
        {
            lock (_gate)
            {
                return _lastUid;
            }
        }

        set
        {
            lock (_gate)
            {
                _lastUid = value;
            }
        }
    }

    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _requests.Count;
            }
        }
    }

    /// <summary>Waits for a slot; waiters are served in arrival order (round-robin fairness, distcache §10.2).</summary>
    public Task WaitForSlotAsync(CancellationToken cancellationToken) => _slots.WaitAsync(cancellationToken);

    /// <summary>Gives back a slot that was not used.</summary>
    public void ReleaseSlot() => _slots.Release();

    /// <summary>From now on new requests belong to <paramref name="epoch"/> (a link that was just connected).</summary>
    public void Open(int epoch)
    {
        lock (_gate)
        {
            _openEpoch = epoch;
        }
    }

    /// <summary>
    /// Adds <paramref name="pending"/> with a fresh uid under the open epoch; false when no link takes requests.
    /// </summary>
    public bool TryAdd(PendingRequest pending, long submittedAt, out uint uid, out int epoch)
    {
        lock (_gate)
        {
            epoch = _openEpoch;
            if (epoch == 0)
            {
                uid = 0;
                return false;
            }

            uid = _lastUid;
            do
            {
                uid = unchecked(uid + 1);
            }
            while (_requests.ContainsKey(uid));

            _lastUid = uid;
            pending.SubmittedAt = submittedAt;
            pending.Epoch = epoch;
            _requests.Add(uid, pending);
            return true;
        }
    }

    /// <summary>Takes the request a response with <paramref name="uid"/> and <paramref name="operation"/> answers.</summary>
    public Match TryTake(uint uid, DistCacheOperation operation, out PendingRequest? pending)
    {
        TaskCompletionSource? retired = null;
        lock (_gate)
        {
            if (!_requests.TryGetValue(uid, out pending))
            {
                return Match.Unknown;
            }

            if (pending.Operation != operation)
            {
                return Match.Mismatched;
            }

            _requests.Remove(uid);
            if (pending.Epoch == _retiringEpoch && --_retiringLeft == 0)
            {
                retired = _retired;
            }
        }

        _slots.Release();
        retired?.TrySetResult();
        return Match.Taken;
    }

    /// <summary>Clock timestamp of the oldest request in flight, or null when none is (RequestTimeoutMs).</summary>
    public long? OldestSubmittedAt()
    {
        lock (_gate)
        {
            long? oldest = null;
            foreach (var pending in _requests.Values)
            {
                if (oldest is not { } o || pending.SubmittedAt < o)
                {
                    oldest = pending.SubmittedAt;
                }
            }

            return oldest;
        }
    }

    /// <summary>
    /// A completed task once every request of <paramref name="epoch"/> is answered (that link is retiring: no new
    /// request joins it once another epoch is open).
    /// </summary>
    public Task RetireAsync(int epoch)
    {
        lock (_gate)
        {
            var left = 0;
            foreach (var pending in _requests.Values)
            {
                if (pending.Epoch == epoch)
                {
                    left++;
                }
            }

            if (left == 0)
            {
                return Task.CompletedTask;
            }

            _retiringEpoch = epoch;
            _retiringLeft = left;
            _retired = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _retired.Task;
        }
    }

    /// <summary>
    /// The link of <paramref name="epoch"/> is gone: takes its requests out (their slots free again) and stops
    /// taking new ones if it was the open epoch. The caller answers the returned requests 0x02 (distcache §10.3).
    /// </summary>
    public PendingRequest[] Close(int epoch) => Close(epoch, all: false);

    /// <summary>Host shutdown: takes every request out, of every epoch, and takes no new ones.</summary>
    public PendingRequest[] CloseAll() => Close(0, all: true);

    private PendingRequest[] Close(int epoch, bool all)
    {
        PendingRequest[] orphans;
        TaskCompletionSource? retired = null;
        lock (_gate)
        {
            if (all || _openEpoch == epoch)
            {
                _openEpoch = 0;
            }

            if (all || _retiringEpoch == epoch)
            {
                retired = _retired;
                _retiringEpoch = 0;
                _retired = null;
            }

            var count = 0;
            foreach (var pending in _requests.Values)
            {
                if (all || pending.Epoch == epoch)
                {
                    count++;
                }
            }

            orphans = count == 0 ? [] : new PendingRequest[count];
            var i = 0;
            foreach (var (uid, pending) in _requests)
            {
                if (all || pending.Epoch == epoch)
                {
                    orphans[i++] = pending;
                    _requests.Remove(uid); // allowed while enumerating a Dictionary since .NET Core 3.0
                }
            }
        }

        retired?.TrySetResult();
        if (orphans.Length > 0)
        {
            _slots.Release(orphans.Length);
        }

        return orphans;
    }
}
