namespace CacheHost.Core;

/// <summary>
/// Records roles that crashed so the process can exit non-zero (systemd's Restart=on-failure relies on it).
/// The host itself only stops when a BackgroundService throws; it does not set an exit code.
/// </summary>
public sealed class RoleFailures
{
    private readonly List<(string Role, Exception Error)> _failures = [];

    /// <summary>True once any role has failed.</summary>
    public bool Any
    {
        get
        {
            lock (_failures)
            {
                return _failures.Count > 0;
            }
        }
    }

    /// <summary>The failures so far.</summary>
    public IReadOnlyList<(string Role, Exception Error)> Snapshot()
    {
        lock (_failures)
        {
            return _failures.ToArray();
        }
    }

    /// <summary>Records that <paramref name="role"/> crashed.</summary>
    public void Report(string role, Exception error)
    {
        lock (_failures)
        {
            _failures.Add((role, error));
        }
    }
}
