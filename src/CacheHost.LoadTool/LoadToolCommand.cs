namespace CacheHost.LoadTool;

/// <summary>Entry point of <c>cachehost test …</c> / <c>dc_test …</c>.</summary>
public static class LoadToolCommand
{
    /// <summary>Runs with the process's stdout/stderr; returns the exit code (0 all tests complete, 1 error).</summary>
    public static int Run(string[] args) => Run(args, Console.Out, Console.Error, Console.IsOutputRedirected);

    /// <summary>Runs with the given writers (reference messages go to <paramref name="stderr"/>, the report to <paramref name="stdout"/>).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, bool plainProgress = true)
    {
        var settings = LoadToolSettings.Parse(args, stderr, out var exitCode);
        if (settings is null)
        {
            return exitCode;
        }

        return new LoadRun(settings, stdout, stderr, plainProgress).RunAsync().GetAwaiter().GetResult();
    }
}
