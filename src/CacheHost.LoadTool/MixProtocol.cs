namespace CacheHost.LoadTool;

/// <summary>Wire protocol the -mix mode speaks (<c>-protocol distcache|memcached</c>).</summary>
public enum MixProtocol
{
    /// <summary>distcache 0x00110000 (default): ADD/GET/REMOVE/HAVE.</summary>
    DistCache,

    /// <summary>
    /// memcached's text protocol, so CacheServer and memcached are driven by the identical client:
    /// add = <c>set</c>, get = <c>get</c>, remove = <c>delete</c> (memcached has no HAVE).
    /// </summary>
    Memcached,
}

/// <summary>
/// The <c>-protocol</c> option, taken out of the argument list before <see cref="LoadToolSettings.Parse"/> sees it
/// (kept in its own file so the settings parser stays untouched).
/// </summary>
public static class MixProtocolOption
{
    /// <summary>Usage line appended to the help text.</summary>
    public const string UsageLine = "  -protocol <p>     wire protocol of -mix: distcache (default) or memcached (set/get/delete; implies -persistent)\n";

    /// <summary>Removes <c>-protocol x</c> from <paramref name="args"/>; returns an error message or null.</summary>
    public static string? Extract(ref string[] args, out MixProtocol protocol, out bool given)
    {
        protocol = MixProtocol.DistCache;
        given = false;
        var rest = new List<string>(args.Length);
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] != "-protocol")
            {
                rest.Add(args[i]);
                continue;
            }

            if (i + 1 >= args.Length)
            {
                return "Error, --protocol requires an argument";
            }

            given = true;
            switch (args[++i].ToLowerInvariant())
            {
                case "distcache": protocol = MixProtocol.DistCache; break;
                case "memcached": protocol = MixProtocol.Memcached; break;
                default: return "Error, --protocol given an invalid argument (distcache or memcached)";
            }
        }

        args = [.. rest];
        return null;
    }
}
