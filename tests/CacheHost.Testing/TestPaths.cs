namespace CacheHost.Testing;

/// <summary>Short unique paths for unix sockets (sun_path holds at most 107 bytes).</summary>
public static class TestPaths
{
    private static int s_counter;

    /// <summary>A fresh socket path under /tmp.</summary>
    public static string Socket(string tag)
    {
        var dir = Path.Combine(Path.GetTempPath(), "chtest");
        System.IO.Directory.CreateDirectory(dir);
        return Path.Combine(dir, $"{tag}-{Environment.ProcessId}-{Interlocked.Increment(ref s_counter)}.sock");
    }

    /// <summary>A fresh temporary directory.</summary>
    public static string Directory(string tag)
    {
        var dir = Path.Combine(Path.GetTempPath(), "chtest", $"{tag}-{Environment.ProcessId}-{Interlocked.Increment(ref s_counter)}");
        System.IO.Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>The repository root (the folder holding CacheHost.sln) above the test output.</summary>
    public static string RepoRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "CacheHost.sln")))
            {
                dir = dir.Parent;
            }

            return dir?.FullName ?? throw new InvalidOperationException("repository root not found");
        }
    }
}
