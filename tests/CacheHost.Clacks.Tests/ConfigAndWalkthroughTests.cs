using CacheHost.Roles.Clacks;
using Xunit;

namespace CacheHost.Clacks.Tests;

/// <summary>XML configuration (clacks §14) and the upstream protocol walk-through.</summary>
public sealed class ConfigAndWalkthroughTests
{
    [Fact]
    public void Xml_config_maps_every_element_with_pc_substitution_and_host_overrides()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("c.xml"), """
            <clacks>
              <ip>127.0.0.1</ip><ip>::1</ip>
              <port>PC_CLACKSPORT</port>
              <ssl cert="a.crt"><key>a.key</key></ssl>
              <socket>/run/a.sock</socket><socket>/run/b.sock</socket>
              <socketchmod>g+rw</socketchmod>
              <socketcommands><item>chgrp x /run/a.sock</item><item>true</item></socketcommands>
              <username>exampleuser</username><password>unsafepassword</password>
              <user><username>rouser</username><password>bar</password><read>1</read><write>0</write><manage></manage></user>
              <user><username>admin2</username><password>p</password><read>1</read><write>1</write><manage>1</manage></user>
              <pingtimeout>600</pingtimeout><interclackspingtimeout>30</interclackspingtimeout>
              <interclacksreconnecttimeout>5</interclacksreconnecttimeout><authtimeout>7</authtimeout>
              <persistancefile>/var/lib/clacks/cache.dat</persistancefile><persistanceinterval>3</persistanceinterval>
              <deletedcachetime>100</deletedcachetime><stalecachetime>200</stalecachetime><cachecleaninterval>9</cachecleaninterval>
              <readfailtimeout>1</readfailtimeout><interclacksreadfailtimeout>2</interclacksreadfailtimeout>
              <stalledwritetimeout>3</stalledwritetimeout><interclacksstalledwritetimeout>4</interclacksstalledwritetimeout>
              <throttle><maxsleep>100</maxsleep><step>10</step></throttle>
              <master><ip>10.0.0.1</ip><port>49888</port></master>
              <appname>test</appname>
              <hosts><testhost><pingtimeout>60</pingtimeout><socket>/run/host.sock</socket></testhost><other><port>1</port></other></hosts>
            </clacks>
            """);
        var env = new Dictionary<string, string?> { ["PC_CLACKSPORT"] = "49887", ["PC_CONFIG_PATHS"] = dir.Path, ["CLACKS_SIMULATED_TIME_OFFSET"] = "-30" };
        var c = ClacksXmlConfig.Load(dir.File("c.xml"), env, "testhost");
        string? V(string key) => c.TryGetValue("CacheHost:Clacks:" + key, out var v) ? v : null;
        Assert.Equal("Clacks", c["CacheHost:Roles"]);
        Assert.Equal("49887", V("Port"));
        Assert.Equal(("127.0.0.1", "::1"), (V("Ips:0"), V("Ips:1")));
        Assert.Equal(("a.crt", "a.key"), (V("SslCert"), V("SslKey")));
        Assert.Equal("/run/host.sock", V("Sockets:0"));
        Assert.Null(V("Sockets:1"));
        Assert.Equal("g+rw", V("SocketChmod"));
        Assert.Equal("chgrp x /run/a.sock", V("SocketCommands:0"));
        Assert.Equal(("exampleuser", "unsafepassword"), (V("Username"), V("Password")));
        Assert.Equal(("rouser", "bar", "True", "False", "False"), (V("Users:0:Username"), V("Users:0:Password"), V("Users:0:Read"), V("Users:0:Write"), V("Users:0:Manage")));
        Assert.Equal("True", V("Users:1:Manage"));
        Assert.Equal("60", V("PingTimeout"));
        Assert.Equal("30", V("InterclacksPingTimeout"));
        Assert.Equal("5", V("InterclacksReconnectTimeout"));
        Assert.Equal("7", V("AuthTimeout"));
        Assert.Equal("/var/lib/clacks/cache.dat", V("PersistanceFile"));
        Assert.Equal(("3", "100", "200", "9"), (V("PersistanceInterval"), V("DeletedCacheTime"), V("StaleCacheTime"), V("CacheCleanInterval")));
        Assert.Equal(("1", "2", "3", "4"), (V("ReadFailTimeout"), V("InterclacksReadFailTimeout"), V("StalledWriteTimeout"), V("InterclacksStalledWriteTimeout")));
        Assert.Equal(("10.0.0.1", "49888"), (V("Master:Ip"), V("Master:Port")));
        Assert.Equal("-30", V("SimulatedTimeOffset"));
        Assert.Equal("100", V("Throttle:maxsleep"));

        // Lookup by bare name through PC_CONFIG_PATHS.
        Environment.SetEnvironmentVariable("PC_CONFIG_PATHS", dir.Path);
        try
        {
            Assert.Equal("49887", ClacksXmlConfig.Load("c.xml", env, "nohost")["CacheHost:Clacks:Port"]);
        }
        finally
        {
            Environment.SetEnvironmentVariable("PC_CONFIG_PATHS", null);
        }
    }

    [Fact]
    public async Task Real_program_applies_socketchmod_socketcommands_and_users_from_xml()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("c.xml"), $"""
            <clacks>
              <socket>{dir.File("s.sock")}</socket>
              <socketchmod>0606</socketchmod>
              <socketcommands><item>touch {dir.File("ran")}</item></socketcommands>
              <username>admin</username><password>adminpass</password>
              <user><username>rouser</username><password>ropass</password><read>1</read></user>
            </clacks>
            """);
        using var program = ProgramProcess.Start(dir.Path, "clacks", "c.xml");
        await program.WaitForSocketAsync(dir.File("s.sock"));
        // chmod runs before the socket listens and appears at its path; the commands run once it is there (they name it).
        await RawClient.EventuallyAsync(() => Task.FromResult(File.Exists(dir.File("ran"))), what: "socketcommands ran");
        Assert.Equal(UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(dir.File("s.sock")));
        Assert.True(File.Exists(dir.File("ran")));
        await using var ro = await RawClient.LoginAsync(dir.File("s.sock"), "ro", RawClient.RoToken);
        await ro.SendAsync("STORE x=1\r\nKEYLIST\r\n");
        Assert.Equal(["OVERHEAD E permission_denied", "KEYLISTSTART", "KEYLISTEND"], await ro.FlushAsync());
        Assert.Equal(0, program.Terminate());
    }

    [Fact]
    public async Task Protocol_walkthrough_store_retrieve_numbers_keylist_listen_unlisten_monitor()
    {
        using var dir = new TempDir();
        await using var server = await TestServer.StartAsync(dir.File("s.sock"));
        await using var a = await RawClient.LoginAsync(server.Socket, "a");
        await using var b = await RawClient.LoginAsync(server.Socket, "b");
        await a.SendAsync("STORE n=1\r\nINCREMENT n=+5\r\nDECREMENT n=-2\r\nDECREMENT n=1\r\nINCREMENT n=1e3\r\nINCREMENT big=9007199254740993\r\nINCREMENT big\r\n" +
            "STORE f=0.1\r\nINCREMENT f=0.2\r\nINCREMENT k=v=3\r\nINCREMENT dangling=\r\nSTORE text=hello world\r\nINCREMENT text\r\n");
        Assert.Equal("1007", await a.RetrieveAsync("n")); // 1 +5 -(-2) -1 +1e3
        Assert.Equal("9007199254740994", await a.RetrieveAsync("big"));
        Assert.Equal("0.3", await a.RetrieveAsync("f"));
        Assert.Equal("3", await a.RetrieveAsync("k=v"));
        Assert.Equal("1", await a.RetrieveAsync("dangling="));
        Assert.Equal("1", await a.RetrieveAsync("text"));
        await a.SendAsync("REMOVE text\r\nKEYLIST\r\n");
        Assert.Equal(["KEYLISTSTART", "KEY big", "KEY dangling=", "KEY f", "KEY k=v", "KEY n", "KEY text", "KEYLISTEND"], await a.FlushAsync());

        await b.SendAsync("LISTEN chan\r\nLISTEN other\r\n");
        await b.FlushAsync();
        await a.SendAsync("LISTEN chan\r\nSET chan=1\r\nNOTIFY chan\r\n");
        Assert.Empty(await a.FlushAsync()); // never echoed to the sender, even when it listens
        Assert.Equal(["SET chan=1", "NOTIFY chan"], await b.FlushAsync());
        await b.SendAsync("UNLISTEN chan\r\n");
        await b.FlushAsync();
        await a.SendAsync("SET chan=2\r\nSET other=3\r\n");
        await a.FlushAsync();
        Assert.Equal(["SET other=3"], await b.FlushAsync());

        await b.SendAsync("MONITOR\r\n");
        await b.FlushAsync("m");
        await a.SendAsync("STORE watched=1\r\n");
        await b.WaitForAsync(l => l.EndsWith("=STORE watched=1", StringComparison.Ordinal) && l.StartsWith("DEBUG unixdomainsocket:", StringComparison.Ordinal));
        await b.SendAsync("UNMONITOR\r\n");
        await b.FlushAsync("u");
        await a.SendAsync("STORE unwatched=1\r\n");
        await a.FlushAsync();
        Assert.DoesNotContain(await b.FlushAsync("u2"), l => l.Contains("unwatched", StringComparison.Ordinal));

        // A monitor sees a redacted login line (fix of Q2).
        await b.SendAsync("MONITOR\r\n");
        await b.FlushAsync("m2");
        await using var c = await RawClient.LoginAsync(server.Socket, "c");
        var login = await b.WaitForAsync(l => l.Contains("=OVERHEAD A ", StringComparison.Ordinal));
        Assert.EndsWith("=OVERHEAD A ***", login);
    }
}

/// <summary>Command-line errors of the drop-in command.</summary>
public sealed class CommandLineTests
{
    [Fact]
    public async Task Missing_or_broken_config_exits_1_with_one_line()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("bad.xml"), "<clacks><username>x</username>");
        File.WriteAllText(dir.File("noport.xml"), "<clacks><ip>127.0.0.1</ip><username>a</username><password>b</password></clacks>");
        foreach (var (args, expected) in new[] { (new[] { "clacks" }, "usage"), (["clacks", "missing.xml"], "not found"), (["clacks", "bad.xml"], "bad.xml"), (["clacks", "noport.xml"], "CacheHost:Clacks:Port") })
        {
            var start = new System.Diagnostics.ProcessStartInfo { WorkingDirectory = dir.Path, RedirectStandardError = true, RedirectStandardOutput = true };
            CacheHost.Testing.ProgramUnderTest.Configure(start);
            foreach (var a in args)
            {
                start.ArgumentList.Add(a);
            }

            using var p = System.Diagnostics.Process.Start(start)!;
            var stderr = p.StandardError.ReadToEndAsync();
            _ = p.StandardOutput.ReadToEndAsync();
            Assert.True(p.WaitForExit(30_000));
            Assert.Equal(1, p.ExitCode);
            Assert.Contains(expected, await stderr);
        }
    }
}
