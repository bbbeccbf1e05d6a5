using CacheHost.Protocols.Clacks;

namespace CacheHost.Roles.Clacks;

/// <summary>
/// Interclacks sync (clacks §12): the global sync lock a master sets on this slave during the initial sync, the
/// opening lines of both link sides, the KEYSYNC dump and the newest-wins merge. Called under the server's gate.
/// </summary>
internal sealed class InterclacksSync
{
    private readonly ClacksOptions _options;
    private readonly ClacksRegistry _registry;
    private readonly ClacksPermissions _permissions;
    private readonly ClacksCache _cache;
    private TaskCompletionSource _unlocked = CompletedSource();

    public InterclacksSync(ClacksOptions options, ClacksRegistry registry, ClacksPermissions permissions, ClacksCache cache)
    {
        _options = options;
        _registry = registry;
        _permissions = permissions;
        _cache = cache;
    }

    /// <summary>Global sync lock set by the master during the initial sync (clacks §12.3).</summary>
    public bool SyncLocked { get; private set; }

    /// <summary>Completes when the lock is released (at once while it is not held).</summary>
    public Task Unlocked => _unlocked.Task;

    /// <summary><c>OVERHEAD L 1</c> from the master: only the master link's lines run until it is released.</summary>
    public void Lock()
    {
        SyncLocked = true;
        if (_unlocked.Task.IsCompleted)
        {
            _unlocked = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }

    public void Unlock()
    {
        SyncLocked = false;
        _unlocked.TrySetResult();
    }

    /// <summary><c>OVERHEAD L 0</c> from the master: unlock, then answer with our time and our own dump (clacks §12.3).</summary>
    public void UnlockAndAnswer(ClacksSession session, double now)
    {
        Unlock();
        session.Send("OVERHEAD T " + PerlNumber.FormatTime(now), now);
        SendKeySyncDump(session, now);
    }

    /// <summary>Slave side (clacks §12.3): the opening lines on this server's own link to its master.</summary>
    public void OpenMasterLink(ClacksSession session, double now)
    {
        _registry.SetLink(session, true);
        session.Send($"CLACKS {_options.ServerIdentification} in interclacks client mode", now);
        session.Send("OVERHEAD A " + _permissions.MainToken, now);
        session.Send("OVERHEAD I 1", now);
    }

    private static TaskCompletionSource CompletedSource()
    {
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        tcs.SetResult();
        return tcs;
    }

    /// <summary>Master side of <c>OVERHEAD I 1</c> (clacks §12.3): link mode, lock the slave, dump, unlock, PING.</summary>
    public void StartMasterSide(ClacksSession session, double now)
    {
        _registry.SetLink(session, true);
        session.LastPing = now;
        session.LastLinkActivity = now;
        session.Send($"CLACKS {_options.ServerIdentification} in interclacks master mode", now);
        session.Send("OVERHEAD M Authentication required", now);
        session.Send("OVERHEAD A " + _permissions.MainToken, now);
        session.Send("OVERHEAD L 1", now);
        session.Send("OVERHEAD T " + PerlNumber.FormatTime(now), now);
        SendKeySyncDump(session, now);
        session.Send("OVERHEAD L 0", now);
        session.Send("PING", now);
        session.LastInterclacksPingSent = now;
    }

    private void SendKeySyncDump(ClacksSession session, double now)
    {
        foreach (var (key, entry) in _cache.SortedEntries())
        {
            session.Send(KeySyncLine(key, entry), now);
        }
    }

    private static string KeySyncLine(string key, CacheEntry entry) => entry.Deleted
        ? $"KEYSYNC {PerlNumber.FormatTime(entry.CacheTime)} 0 D {key}=REMOVED"
        : $"KEYSYNC {PerlNumber.FormatTime(entry.CacheTime)} {PerlNumber.FormatTime(entry.AccessTime)} U {key}={entry.Data}";

    /// <summary>KEYSYNC receiver (clacks §12.4): counts as a ping, skew-corrected times, newest wins.</summary>
    public void MergeKeySync(ClacksSession session, ClacksCommand command, double now)
    {
        session.LastPing = now;
        session.LastLinkActivity = now;
        var cacheTime = PerlNumber.ParseTime(command.CacheTime) + session.TimeOffset;
        var accessTime = PerlNumber.ParseTime(command.AccessTime);
        if (accessTime != 0)
        {
            accessTime += session.TimeOffset;
        }

        var deleted = command.Mode == "D";
        _cache.Merge(command.Name, new CacheEntry(deleted ? string.Empty : command.Value ?? string.Empty, cacheTime, accessTime, deleted));
    }
}
