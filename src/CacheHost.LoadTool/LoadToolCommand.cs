namespace CacheHost.LoadTool;

/// <summary>Entry point of <c>cachehost test …</c> / <c>dc_test …</c>.</summary>
public static class LoadToolCommand
{
    /// <summary>Runs with the process's stdout/stderr; returns the exit code (0 all tests complete, 1 error).</summary>
    public static int Run(string[] args) => Run(args, Console.Out, Console.Error, Console.IsOutputRedirected);

    /// <summary>Runs with the given writers (reference messages go to <paramref name="stderr"/>, the report to <paramref name="stdout"/>).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, bool plainProgress = true)
    {
        // Inline socket completions before the first socket exists: the tool must not be the bottleneck (MixWorkload).
        CacheHost.Transport.SocketEngineSettings.Apply(true);
        var protocolError = MixProtocolOption.Extract(ref args, out var protocol, out var protocolGiven);
        if (protocolError is not null)
        {
            stderr.WriteLine(protocolError);
            return 1;
        }

        var settings = LoadToolSettings.Parse(args, stderr, out var exitCode);
        if (settings is null)
        {
            if (exitCode == 0)
            {
                stderr.Write(MixProtocolOption.UsageLine);
            }

            return exitCode;
        }

        if (protocolGiven && settings.Mix is null)
        {
            stderr.WriteLine("Error, --protocol needs -mix");
            return 1;
        }

        if (protocol == MixProtocol.Memcached && settings.Mix!.Any(m => m.Operation == MixOperation.Have && m.Weight > 0))
        {
            stderr.WriteLine("Error, --protocol memcached has no HAVE; use get, add and remove in -mix");
            return 1;
        }

        // The mix mode over persistent connections runs in MixWorkload (allocation-free, both protocols).
        var persistentMix = settings.Mix is not null && (settings.Persistent || protocol == MixProtocol.Memcached);
        if (persistentMix && settings.Rate > 0)
        {
            stderr.WriteLine("Error, --rate is not available with -mix -persistent or --protocol memcached (use -mix without -persistent, or the barrage)");
            return 1;
        }

        LoadWorkload workload = persistentMix ? new MixWorkload(settings, protocol) : new DistCacheClientWorkload(settings);
        return new LoadRun(settings, workload, stdout, stderr, plainProgress).RunAsync().GetAwaiter().GetResult();
    }
}
