using System.Text;
using CacheHost.Protocols.Clacks;
using Xunit;

namespace CacheHost.Clacks.Tests;

/// <summary>Persistence file (clacks §13) through the real program and the in-process role.</summary>
public sealed class PersistenceTests
{
    private static string Config(TempDir dir, string extra = "") =>
        $"<clacks><socket>{dir.File("s.sock")}</socket><username>admin</username><password>adminpass</password>" +
        $"<persistancefile>{dir.File("cache.dat")}</persistancefile><persistanceinterval>0.2</persistanceinterval>{extra}</clacks>";

    private static Dictionary<string, CacheEntry>? ReadFile(string path)
    {
        try
        {
            return PersistenceFormat.TryRead(File.ReadAllBytes(path), out var entries, out _) ? entries : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    [Fact]
    public async Task Kill_9_during_a_write_loop_leaves_no_torn_file_and_loses_no_persisted_key()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("clacks.xml"), Config(dir));
        var persisted = new HashSet<string>();
        using (var program = ProgramProcess.Start(dir.Path, "clacks", "clacks.xml"))
        {
            await program.WaitForSocketAsync(dir.File("s.sock"));
            await using var c = await RawClient.LoginAsync(dir.File("s.sock"));
            var written = new List<string>();
            for (var round = 0; round < 4; round++)
            {
                var batch = string.Concat(Enumerable.Range(0, 200).Select(i => $"STORE k{round}_{i}=value {round} {i} {new string('x', 200)}\r\n"));
                await c.SendAsync(batch);
                await c.FlushAsync();
                written.AddRange(Enumerable.Range(0, 200).Select(i => $"k{round}_{i}"));
                var last = written[^1];
                await RawClient.EventuallyAsync(() => Task.FromResult(ReadFile(dir.File("cache.dat"))?.ContainsKey(last) == true), what: "saved");
                persisted.UnionWith(written);
            }

            // Keep writing (the server keeps saving) and kill it hard in the middle.
            using var stop = new CancellationTokenSource();
            var writer = Task.Run(async () =>
            {
                var n = 0;
                while (!stop.IsCancellationRequested)
                {
                    try
                    {
                        await c.SendAsync(string.Concat(Enumerable.Range(0, 50).Select(i => $"STORE late{n++}={new string('y', 500)}\r\n")));
                    }
                    catch (Exception)
                    {
                        return;
                    }
                }
            });
            await Task.Delay(700);
            program.KillHard();
            await stop.CancelAsync();
            await writer.WaitAsync(TimeSpan.FromSeconds(10));
        }

        var main = ReadFile(dir.File("cache.dat"));
        Assert.NotNull(main); // never torn: only ever replaced by rename
        Assert.True(persisted.IsSubsetOf(main!.Keys));
        if (File.Exists(dir.File("cache.dat_bck")))
        {
            Assert.NotNull(ReadFile(dir.File("cache.dat_bck")));
        }

        using (var program = ProgramProcess.Start(dir.Path, "clacks", "clacks.xml"))
        {
            await program.WaitForSocketAsync(dir.File("s.sock"));
            await using var c = await RawClient.LoginAsync(dir.File("s.sock"));
            await c.SendAsync("KEYLIST\r\n");
            var keys = (await c.FlushAsync()).Where(l => l.StartsWith("KEY ", StringComparison.Ordinal)).Select(l => l[4..]).ToHashSet();
            Assert.True(persisted.IsSubsetOf(keys));
            Assert.Equal("value 3 199 " + new string('x', 200), await c.RetrieveAsync("k3_199"));
            await c.SendAsync("STORE final=1\r\n");
            await c.FlushAsync();
            Assert.Equal(0, program.Terminate()); // SIGTERM: graceful, saves on shutdown
        }

        Assert.Equal("1", ReadFile(dir.File("cache.dat"))!["final"].Data);
    }

    [Fact]
    public async Task A_file_in_the_original_format_loads_and_a_torn_main_file_falls_back_to_the_backup()
    {
        using var dir = new TempDir();
        var original = "\0CLACKSV3--- \nb64: \n  accesstime: '1795313291.7688'\n  cachetime: '1795313291.7688'\n  data: PAGECAMELCLACKSB64:bGluZTEKbGluZTI=\n  deleted: 0\n" +
            "colon: \n  accesstime: '1795313291.76876'\n  cachetime: '1795313291.76876'\n  data: \"a: b # c\"\n  deleted: 0\n" +
            "tomb: \n  accesstime: '1795313291.76882'\n  cachetime: '1795313291.76882'\n  data: ''\n  deleted: 1\n" +
            "unicode: \n  accesstime: '1795313291.76992'\n  cachetime: '1795313291.76879'\n  data: Grüße ☃\n  deleted: 0\n\0CLACKSV3";
        var file = dir.File("cache.dat");
        File.WriteAllBytes(file, Encoding.UTF8.GetBytes(original));
        var settings = new Dictionary<string, string?> { ["PersistanceFile"] = file, ["DeletedCacheTime"] = "1e12", ["StaleCacheTime"] = "1e12" };
        await using (var server = await TestServer.StartAsync(dir.File("s.sock"), settings))
        {
            await using var c = await RawClient.LoginAsync(server.Socket);
            Assert.Equal("PAGECAMELCLACKSB64:bGluZTEKbGluZTI=", await c.RetrieveAsync("b64"));
            Assert.Equal("a: b # c", await c.RetrieveAsync("colon"));
            Assert.Null(await c.RetrieveAsync("tomb"));
            Assert.Equal(ClacksWire.FromUtf8("Grüße ☃"), await c.RetrieveAsync("unicode"));
            await c.SendAsync("KEYLIST\r\n");
            Assert.Contains("KEY tomb", await c.FlushAsync());
            await c.SendAsync("STORE added=1\r\n");
            await c.FlushAsync();
        }

        // Shutdown saved, with the previous file as backup; now tear the main file.
        Assert.NotNull(ReadFile(dir.File("cache.dat_bck")));
        var saved = File.ReadAllBytes(file);
        File.WriteAllBytes(file, saved[..(saved.Length / 2)]);
        await using (var server = await TestServer.StartAsync(dir.File("s.sock"), settings))
        {
            await using var c = await RawClient.LoginAsync(server.Socket);
            Assert.Equal("a: b # c", await c.RetrieveAsync("colon"));
        }

        Assert.NotNull(ReadFile(file)); // the fallback start rewrote a valid main file
    }
}
