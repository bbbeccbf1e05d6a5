using System.Text.Json.Nodes;

namespace CacheHost.Testing;

/// <summary>
/// The program laid out as the package lays it, and shipped configuration files made runnable in a test:
/// no appsettings.json beside the executable (the development copy there would mask errors of the shipped
/// file), listen and upstream addresses rewritten to scratch unix sockets, and the account names the
/// package creates (group <c>cachehost</c>) visible through a private mount of /etc/group.
/// </summary>
public static class PackageLayout
{
    /// <summary>
    /// A copy of the built program in a fresh directory, without appsettings.json. The apphost is copied
    /// (it resolves its own real path to find the application); everything else is symlinked.
    /// </summary>
    public static string ProgramDirectory(string? from = null)
    {
        from ??= AppContext.BaseDirectory;
        var dir = TestPaths.Directory("pkg");
        foreach (var file in System.IO.Directory.GetFiles(from))
        {
            var name = Path.GetFileName(file);
            if (name == "appsettings.json")
            {
                continue;
            }

            if (name == "cachehost")
            {
                File.Copy(file, Path.Combine(dir, name));
            }
            else
            {
                File.CreateSymbolicLink(Path.Combine(dir, name), file);
            }
        }

        foreach (var sub in System.IO.Directory.GetDirectories(from))
        {
            System.IO.Directory.CreateSymbolicLink(Path.Combine(dir, Path.GetFileName(sub)), sub);
        }

        Xunit.Assert.False(File.Exists(Path.Combine(dir, "appsettings.json")));
        return dir;
    }

    /// <summary>The addresses a configuration file had and what they were rewritten to.</summary>
    public sealed record Rewritten(string Json, IReadOnlyList<(string Key, string Address)> Listeners, IReadOnlyList<(string Key, string Address)> Upstreams);

    /// <summary>
    /// Rewrites every listen address (a string or a list, the shape is kept) to a unix socket in
    /// <paramref name="scratch"/> and every upstream <c>Server</c> to <paramref name="upstream"/>; other
    /// values stay as shipped.
    /// </summary>
    public static Rewritten RewriteAddresses(string json, string scratch, string? upstream)
    {
        var root = JsonNode.Parse(json)!.AsObject();
        var listeners = new List<(string, string)>();
        var upstreams = new List<(string, string)>();
        var n = 0;
        if (root["CacheHost"] is JsonObject cacheHost)
        {
            foreach (var (role, section) in cacheHost)
            {
                if (section is not JsonObject roleSection)
                {
                    continue;
                }

                foreach (var key in new[] { "Listen", "Sockets" })
                {
                    switch (roleSection[key])
                    {
                        case JsonValue:
                            var single = $"UNIX:{scratch}/{++n}.sock";
                            roleSection[key] = key == "Sockets" ? single["UNIX:".Length..] : single;
                            listeners.Add(($"CacheHost:{role}:{key}", single));
                            break;
                        case JsonArray list:
                            for (var i = 0; i < list.Count; i++)
                            {
                                var address = $"UNIX:{scratch}/{++n}.sock";
                                list[i] = key == "Sockets" ? address["UNIX:".Length..] : address;
                                listeners.Add(($"CacheHost:{role}:{key}:{i}", address));
                            }

                            break;
                    }
                }

                if (roleSection["Server"] is JsonValue && upstream is not null)
                {
                    roleSection["Server"] = upstream;
                    upstreams.Add(($"CacheHost:{role}:Server", upstream));
                }
            }
        }

        return new Rewritten(root.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }), listeners, upstreams);
    }

    /// <summary>
    /// The command line that runs <paramref name="program"/> in a private mount namespace where /etc/group
    /// (and /etc/passwd when <paramref name="passwd"/> is given) are replaced, so the shipped configuration's
    /// account names resolve as on an installed machine without touching this machine's accounts.
    /// </summary>
    public static (string FileName, string[] Args) WithAccounts(string program, IEnumerable<string> args, string group, string? passwd = null)
    {
        var script = "mount --bind \"$1\" /etc/group && shift && { [ -z \"$1\" ] || mount --bind \"$1\" /etc/passwd; } && shift && exec \"$@\"";
        return ("unshare", ["--mount", "--propagation", "private", "sh", "-c", script, "sh", group, passwd ?? "", program, .. args]);
    }

    /// <summary>This machine's /etc/group plus a system group <paramref name="name"/>, written to a scratch file.</summary>
    public static string GroupFileWith(string scratch, string name)
    {
        var lines = File.ReadAllLines("/etc/group").ToList();
        if (!lines.Any(l => l.StartsWith(name + ":", StringComparison.Ordinal)))
        {
            var used = lines.Select(l => l.Split(':')).Where(f => f.Length > 2 && int.TryParse(f[2], out _)).Select(f => int.Parse(f[2], System.Globalization.CultureInfo.InvariantCulture)).ToHashSet();
            var gid = Enumerable.Range(900, 99).First(g => !used.Contains(g));
            lines.Add($"{name}:x:{gid}:");
        }

        var path = Path.Combine(scratch, "group");
        File.WriteAllLines(path, lines);
        return path;
    }
}
