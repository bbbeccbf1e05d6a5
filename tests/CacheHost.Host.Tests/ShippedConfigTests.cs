using System.Net.Sockets;
using System.Text;
using CacheHost.Testing;
using Xunit;

namespace CacheHost.Host.Tests;

/// <summary>
/// Every configuration file the package installs or documents, run by the real program laid out as the
/// package lays it (no appsettings.json beside the executable, so nothing masks the file), the file given
/// by CACHEHOST_CONFIG and RUNTIME_DIRECTORY set as the unit sets them. Only the addresses are rewritten
/// (to scratch unix sockets; an upstream to an in-process CacheServer). Each listener and the control
/// socket must answer, and SIGTERM must stop it with exit 0.
/// </summary>
// Not in parallel with each other: useradd/groupdel replace /etc/group, and replacing a file drops the
// bind mount a shipped-config run has on it (PackageLayout.WithAccounts), so the group would vanish.
[Collection("Accounts")]
public sealed class ShippedConfigTests
{
    private static readonly TimeSpan Start = TimeSpan.FromSeconds(60);

    public static TheoryData<string> Files()
    {
        var data = new TheoryData<string> { "deploy/appsettings.json" };
        foreach (var file in Directory.GetFiles(Path.Combine(TestPaths.RepoRoot, "deploy/examples"), "*.json").Order(StringComparer.Ordinal))
        {
            data.Add(Path.GetRelativePath(TestPaths.RepoRoot, file));
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Files))]
    public async Task The_file_starts_the_packaged_program_and_it_serves(string file)
    {
        var scratch = TestPaths.Directory("ship");
        await using var upstream = await InProcessCacheServer.StartAsync();
        var original = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, file));
        var rewritten = PackageLayout.RewriteAddresses(original, scratch, upstream.Address);
        var config = Path.Combine(scratch, "appsettings.json");
        var json = rewritten.Json;
        if (json.Contains("\"ConfigFile\"", StringComparison.Ordinal))
        {
            // The supervisor example names the service list the administrator writes; an empty one here.
            var services = Path.Combine(scratch, "services.conf");
            File.WriteAllText(services, "");
            json = System.Text.RegularExpressions.Regex.Replace(json, "\"ConfigFile\": \"[^\"]*\"", $"\"ConfigFile\": \"{services}\"");
        }

        File.WriteAllText(config, json);
        var runtime = Path.Combine(scratch, "run");
        Directory.CreateDirectory(runtime);

        var program = Path.Combine(PackageLayout.ProgramDirectory(), "cachehost");
        var (fileName, args) = PackageLayout.WithAccounts(program, [], PackageLayout.GroupFileWith(scratch, "cachehost"));
        using var process = CacheHostProcess.Start(args, new Dictionary<string, string>
        {
            ["CACHEHOST_CONFIG"] = config,
            ["RUNTIME_DIRECTORY"] = runtime,
        }, fileName: fileName, workingDirectory: "/");
        process.WaitForLine("Ready: ", Start);
        Assert.DoesNotContain("Unknown configuration key", process.Output);

        foreach (var (key, address) in rewritten.Listeners)
        {
            using var client = InProcessCacheServer.ConnectTo(address);
            var reply = ProgramTests.Have(client, "nothing");
            Assert.True(reply.SequenceEqual(new byte[] { 1 }), $"{key} ({address}) answered HAVE with {Convert.ToHexString(reply)}");
        }

        using (var control = InProcessCacheServer.ConnectTo($"UNIX:{runtime}/control.sock"))
        {
            var replies = Exchange(control, "statedump");
            Assert.Contains(replies, l => l.StartsWith("host\troles\t", StringComparison.Ordinal));
        }

        process.Signal(15);
        Assert.Equal(0, process.WaitForExit(Start));
    }

    [Fact]
    public void The_shipped_config_listens_on_loopback_and_the_local_unix_socket_only()
    {
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "deploy/appsettings.json")))!;
        var listen = json["CacheHost"]!["CacheServer"]!["Listen"]!.AsArray().Select(n => (string)n!).ToArray();
        Assert.Equal(["IP:127.0.0.1:9001", "UNIX:/run/cachehost/dc.sock"], listen);
        foreach (var file in Directory.GetFiles(Path.Combine(TestPaths.RepoRoot, "deploy/examples"), "*.json"))
        {
            Assert.DoesNotContain("\"IP:9001\"", File.ReadAllText(file), StringComparison.Ordinal);
        }
    }

    /// <summary>Sends a control command then echo with a marker; returns the replies before the marker.</summary>
    internal static List<string> Exchange(Socket socket, string command)
    {
        var marker = "done-" + Guid.NewGuid().ToString("N");
        socket.Send(Encoding.UTF8.GetBytes($"{command}\necho\t{marker}\n"));
        using var stream = new NetworkStream(socket, ownsSocket: false);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        var lines = new List<string>();
        socket.ReceiveTimeout = 30_000;
        while (reader.ReadLine() is { } line && line != marker)
        {
            lines.Add(line);
        }

        return lines;
    }
}
