using System.Diagnostics;
using System.Globalization;
using CacheHost.Roles.CacheServer;
using CacheHost.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Xunit;

namespace CacheHost.Host.Tests;

/// <summary>
/// Who the daemon runs as and where its control socket goes: -user with the user's supplementary groups,
/// and the control socket's fallback directory outside systemd (never /run/cachehost, never a directory
/// someone else owns).
/// </summary>
// Not in parallel with each other: useradd/groupdel replace /etc/group, and replacing a file drops the
// bind mount a shipped-config run has on it (PackageLayout.WithAccounts), so the group would vanish.
[Collection("Accounts")]
public sealed class ProcessIdentityTests
{
    private static readonly TimeSpan Start = TimeSpan.FromSeconds(60);

    private static void Run(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"{file} {string.Join(' ', args)}: {error}");
    }

    private static string StatusField(int pid, string field) =>
        File.ReadAllLines($"/proc/{pid}/status").First(l => l.StartsWith(field + ":", StringComparison.Ordinal))[(field.Length + 1)..].Trim();

    [Fact]
    public void User_switches_to_the_users_primary_and_supplementary_groups_before_ready()
    {
        Assert.True(Environment.UserName == "root", "this test creates a user and must run as root (as CI does)");
        var tag = Guid.NewGuid().ToString("N")[..8];
        var (user, extra) = ($"chu{tag}", $"chg{tag}");
        Run("groupadd", "--system", extra);
        try
        {
            Run("useradd", "--system", "--no-create-home", "--user-group", "--groups", extra, "--shell", "/usr/sbin/nologin", user);
            try
            {
                var gid = new Mono.Unix.UnixGroupInfo(extra).GroupId.ToString(CultureInfo.InvariantCulture);
                var info = new Mono.Unix.UnixUserInfo(user);
                var socket = TestPaths.Socket("user");
                using var process = CacheHostProcess.Start(["server", "-listen", $"UNIX:{socket}", "-user", user]);
                process.WaitForLine("Ready: ", Start);
                var lines = process.Lines.ToList();
                Assert.True(lines.FindIndex(l => l.Contains("Dropped privileges", StringComparison.Ordinal)) < lines.FindIndex(l => l.Contains("Ready: ", StringComparison.Ordinal)));

                var pid = process.Process.Id;
                Assert.Equal(info.UserId.ToString(CultureInfo.InvariantCulture), StatusField(pid, "Uid").Split('\t')[1]);
                Assert.Equal(info.GroupId.ToString(CultureInfo.InvariantCulture), StatusField(pid, "Gid").Split('\t')[1]);
                var groups = StatusField(pid, "Groups").Split(' ', StringSplitOptions.RemoveEmptyEntries);
                Assert.Contains(gid, groups);
                Assert.Contains(info.GroupId.ToString(CultureInfo.InvariantCulture), groups);
                Assert.DoesNotContain("0", groups);

                process.Signal(15);
                Assert.Equal(0, process.WaitForExit(Start));
            }
            finally
            {
                Run("userdel", user);
            }
        }
        finally
        {
            Run("groupdel", extra);
        }
    }

    private static CacheHostProcess StartWithTmp(string tmp, string socket) =>
        CacheHostProcess.Start(["--CacheHost:Roles:0=CacheServer", $"--CacheHost:CacheServer:Listen:0=UNIX:{socket}"],
            new Dictionary<string, string> { ["TMPDIR"] = tmp, ["XDG_RUNTIME_DIR"] = "", ["RUNTIME_DIRECTORY"] = "" });

    [Fact]
    public void Outside_systemd_the_control_socket_goes_to_a_new_private_directory_not_run_cachehost()
    {
        var tmp = TestPaths.Directory("tmp");
        var socket = Path.Combine(tmp, "dc.sock");
        using var process = StartWithTmp(tmp, socket);
        var ready = process.WaitForLine("Ready: ", Start);
        var dir = Path.Combine(tmp, $"cachehost-{Mono.Unix.Native.Syscall.geteuid()}");
        Assert.Contains($"control UNIX:{dir}/control.sock", ready, StringComparison.Ordinal);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(dir));
        process.Signal(15);
        Assert.Equal(0, process.WaitForExit(Start));
    }

    [Theory]
    [InlineData(65534, "777", "is owned by uid 65534")]
    [InlineData(0, "777", "has mode 777, not 700")]
    public void A_fallback_directory_that_is_not_private_gets_no_control_socket_and_one_warning(int owner, string mode, string reason)
    {
        var tmp = TestPaths.Directory("tmp");
        var dir = Path.Combine(tmp, $"cachehost-{Mono.Unix.Native.Syscall.geteuid()}");
        Directory.CreateDirectory(dir);
        File.SetUnixFileMode(dir, (UnixFileMode)Convert.ToInt32(mode, 8));
        Assert.Equal(0, Mono.Unix.Native.Syscall.chown(dir, (uint)owner, (uint)owner));

        var socket = Path.Combine(tmp, "dc.sock");
        using var process = StartWithTmp(tmp, socket);
        process.WaitForLine("Ready: ", Start);
        var warnings = process.Lines.Where(l => l.Contains("Control socket disabled", StringComparison.Ordinal)).ToArray();
        Assert.True(warnings.Length == 1, process.Output);
        Assert.Contains(reason, warnings[0], StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(dir, "control.sock")));

        using (var client = ProgramTests.Connect(socket))
        {
            Assert.Equal([1], ProgramTests.Have(client, "x"));
        }

        process.Signal(15);
        Assert.Equal(0, process.WaitForExit(Start));
    }

    [Theory]
    [InlineData(new[] { "--CacheHost:CacheServer:Listen=UNIX:/a" }, new[] { "UNIX:/a" })]
    [InlineData(new[] { "--CacheHost:CacheServer:Listen:0=UNIX:/a", "--CacheHost:CacheServer:Listen:1=UNIX:/b" }, new[] { "UNIX:/a", "UNIX:/b" })]
    [InlineData(new[] { "--CacheHost:CacheServer:Listen= " }, new[] { CacheServerOptions.DefaultListen })]
    [InlineData(new string[0], new[] { CacheServerOptions.DefaultListen })]
    public void A_single_listen_string_binds_as_a_one_element_list(string[] args, string[] expected)
    {
        using var host = HostFactory.Build(["--CacheHost:Roles:0=CacheServer", .. args], useAppSettings: false);
        Assert.Equal(expected, host.Services.GetRequiredService<IOptions<CacheServerOptions>>().Value.Listen);
    }

    [Fact]
    public void The_source_with_the_highest_precedence_decides_between_a_single_string_and_a_list()
    {
        static List<string> Bind(params Action<Microsoft.Extensions.Configuration.ConfigurationManager>[] sources)
        {
            using var configuration = new Microsoft.Extensions.Configuration.ConfigurationManager();
            foreach (var add in sources)
            {
                add(configuration);
            }

            CacheHost.Core.SingleValueListConfiguration.AddSingleValueLists(configuration, RoleCatalog.AddressListKeys);
            return Microsoft.Extensions.Configuration.ConfigurationBinder.Get<CacheServerOptions>(configuration.GetSection(CacheServerOptions.SectionName))!.Listen;
        }

        static Action<Microsoft.Extensions.Configuration.ConfigurationManager> Json(string json) =>
            c => Microsoft.Extensions.Configuration.JsonConfigurationExtensions.AddJsonStream(c, new MemoryStream(System.Text.Encoding.UTF8.GetBytes(json)));

        var single = Json("""{ "CacheHost": { "CacheServer": { "Listen": "UNIX:/single" } } }""");
        var list = Json("""{ "CacheHost": { "CacheServer": { "Listen": [ "UNIX:/a", "UNIX:/b" ] } } }""");
        Assert.Equal(["UNIX:/single"], Bind(single));
        Assert.Equal(["UNIX:/a", "UNIX:/b"], Bind(single, list));
        // A later single string replaces the first item, as a later one-item list does in .NET configuration.
        Assert.Equal(["UNIX:/single", "UNIX:/b"], Bind(list, single));

        // Reload recomputes from the sources below it.
        using var manager = new Microsoft.Extensions.Configuration.ConfigurationManager();
        var file = Path.Combine(TestPaths.Directory("reload"), "c.json");
        File.WriteAllText(file, """{ "CacheHost": { "Clacks": { "Ips": "127.0.0.1" } } }""");
        Microsoft.Extensions.Configuration.JsonConfigurationExtensions.AddJsonFile(manager, file);
        CacheHost.Core.SingleValueListConfiguration.AddSingleValueLists(manager, RoleCatalog.AddressListKeys);
        Assert.Equal("127.0.0.1", manager["CacheHost:Clacks:Ips:0"]);
        Assert.Null(manager["CacheHost:Clacks:Ips"]);
        File.WriteAllText(file, """{ "CacheHost": { "Clacks": { "Ips": "::1" } } }""");
        ((Microsoft.Extensions.Configuration.IConfigurationRoot)manager).Reload();
        Assert.Equal("::1", manager["CacheHost:Clacks:Ips:0"]);
    }
}
