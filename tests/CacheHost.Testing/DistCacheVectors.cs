using System.Text.Json;

namespace CacheHost.Testing;

/// <summary>One step of a captured distcache case (see Vectors/distcache/PROVENANCE.md and the shared README).</summary>
public sealed record VectorStep(string SendHex, string? ExpectHex, bool ExpectClose, int SleepMsBefore, int Conn, bool AwaitReply, string? Action, string? Note);

/// <summary>A fresh-connection probe run after a case whose original aborted.</summary>
public sealed record VectorLiveness(string SendHex, string ExpectHex);

/// <summary>A captured case.</summary>
public sealed record VectorCase(string Name, string Description, IReadOnlyList<string> ServerArgs, IReadOnlyList<string> ClientArgs, bool ServerStarted, int StartupWaitMs, IReadOnlyList<VectorStep> Steps, IReadOnlyList<string> Tags, VectorLiveness? Liveness)
{
    /// <summary>Capacity from server_args (-sessions N), else the reference default of 512.</summary>
    public int Capacity
    {
        get
        {
            for (var i = 0; i + 1 < ServerArgs.Count; i++)
            {
                if (ServerArgs[i] == "-sessions")
                {
                    return int.Parse(ServerArgs[i + 1], System.Globalization.CultureInfo.InvariantCulture);
                }
            }

            return 512;
        }
    }

    /// <inheritdoc />
    public override string ToString() => Name;
}

/// <summary>Loads the captured vectors copied into this project.</summary>
public static class DistCacheVectors
{
    /// <summary>Server cases (cases.jsonl).</summary>
    public static IReadOnlyList<VectorCase> ServerCases { get; } = Load("cases.jsonl");

    /// <summary>Proxy cases (cases-client-proxy.jsonl).</summary>
    public static IReadOnlyList<VectorCase> ProxyCases { get; } = Load("cases-client-proxy.jsonl");

    /// <summary>Case names for xunit MemberData.</summary>
    public static IEnumerable<object[]> ServerCaseNames => ServerCases.Select(c => new object[] { c.Name });

    /// <summary>Case names for xunit MemberData.</summary>
    public static IEnumerable<object[]> ProxyCaseNames => ProxyCases.Select(c => new object[] { c.Name });

    /// <summary>Finds a server case.</summary>
    public static VectorCase Server(string name) => ServerCases.Single(c => c.Name == name);

    /// <summary>Finds a proxy case.</summary>
    public static VectorCase Proxy(string name) => ProxyCases.Single(c => c.Name == name);

    private static List<VectorCase> Load(string file)
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Vectors", "distcache", file);
        var cases = new List<VectorCase>();
        foreach (var line in File.ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement;
            var steps = root.GetProperty("steps").EnumerateArray().Select(s => new VectorStep(
                s.TryGetProperty("send_hex", out var send) ? send.GetString() ?? string.Empty : string.Empty,
                s.TryGetProperty("expect_hex", out var expect) && expect.ValueKind == JsonValueKind.String ? expect.GetString() : null,
                s.TryGetProperty("expect_close", out var close) && close.GetBoolean(),
                s.TryGetProperty("sleep_ms_before", out var sleep) ? sleep.GetInt32() : 0,
                s.TryGetProperty("conn", out var conn) ? conn.GetInt32() : 0,
                !s.TryGetProperty("await_reply", out var await) || await.GetBoolean(),
                s.TryGetProperty("action", out var action) ? action.GetString() : null,
                s.TryGetProperty("note", out var note) ? note.GetString() : null)).ToList();
            VectorLiveness? liveness = null;
            if (root.TryGetProperty("liveness_check", out var live))
            {
                liveness = new VectorLiveness(live.GetProperty("send_hex").GetString()!, live.GetProperty("expect_hex").GetString()!);
            }

            var setup = root.TryGetProperty("setup", out var s1) ? s1 : default;
            cases.Add(new VectorCase(
                root.GetProperty("name").GetString()!,
                root.GetProperty("description").GetString()!,
                Strings(root, "server_args"),
                setup.ValueKind == JsonValueKind.Object ? Strings(setup, "dc_client_args") : [],
                setup.ValueKind != JsonValueKind.Object || !setup.TryGetProperty("server_started", out var started) || started.GetBoolean(),
                setup.ValueKind == JsonValueKind.Object && setup.TryGetProperty("startup_wait_ms", out var wait) ? wait.GetInt32() : 0,
                steps,
                Strings(root, "tags"),
                liveness));
        }

        return cases;
    }

    private static List<string> Strings(JsonElement element, string name) =>
        element.TryGetProperty(name, out var array) ? array.EnumerateArray().Select(e => e.GetString()!).ToList() : [];
}
