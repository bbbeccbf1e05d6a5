using System.Diagnostics;
using System.IO.Compression;
using CacheHost.Testing;
using Mono.Unix.Native;

namespace CacheHost.Systemd.Tests;

/// <summary>
/// packaging/build-deb.sh end to end, in one test because the NativeAOT publish takes a few minutes
/// (longer on a loaded machine): build the .deb from a copy of the sources, check its layout, extract it and run the
/// packaged dc_server under a fake systemd until it answers a GET; then build the RPM from the same output.
/// </summary>
public sealed class PackagingTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public void The_deb_holds_the_program_units_config_man_page_and_drop_in_names_and_its_dc_server_answers()
    {
        var work = Wire.TempDir();
        var source = Path.Combine(work, "src-copy");
        CopySources(DeployTests.RepoRoot, source);
        var output = Path.Combine(work, "out");

        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(Path.Combine(source, "packaging/build-deb.sh"));
        start.ArgumentList.Add(output);
        start.Environment["DEB_COMPRESSION"] = "zstd"; // much faster than xz; the layout is the same
        start.Environment["DOTNET_NOLOGO"] = "1";
        var (code, stdout, stderr) = DeployTests.Run(start, TimeSpan.FromMinutes(30));
        Assert.True(code == 0, $"build-deb.sh failed:\n{stderr}");
        Assert.EndsWith("cachehost_0.1.0_amd64.deb", stdout.Trim());

        var deb = Path.Combine(output, "cachehost_0.1.0_amd64.deb");
        Assert.Equal("cachehost", DeployTests.Run("dpkg-deb", "-f", deb, "Package").Stdout.Trim());
        var control = Path.Combine(work, "control");
        Assert.Equal(0, DeployTests.Run("dpkg-deb", "-e", deb, control).Code);
        Assert.Equal("/etc/cachehost/appsettings.json", File.ReadAllText(Path.Combine(control, "conffiles")).Trim());
        Assert.True(File.Exists(Path.Combine(control, "postinst")));

        var root = Path.Combine(work, "root");
        Assert.Equal(0, DeployTests.Run("dpkg-deb", "-x", deb, root).Code);
        var program = Path.Combine(root, "usr/lib/cachehost/cachehost");
        Assert.True(File.Exists(program));
        // Single file: no managed assemblies beside the program, only native libraries.
        Assert.DoesNotContain(Directory.GetFiles(Path.Combine(root, "usr/lib/cachehost")), f => f.EndsWith(".dll", StringComparison.Ordinal));
        foreach (var name in new[] { "cachehost", "dc_server", "dc_client", "dc_snoop", "dc_test", "daemonproxy" })
        {
            Assert.Equal("../lib/cachehost/cachehost", new FileInfo(Path.Combine(root, "usr/bin", name)).LinkTarget);
        }

        foreach (var file in new[] { "usr/lib/systemd/system/cachehost.service", "usr/lib/systemd/system/cachehost.socket", "usr/lib/sysusers.d/cachehost.conf", "usr/lib/tmpfiles.d/cachehost.conf", "etc/cachehost/appsettings.json" })
        {
            Assert.True(File.Exists(Path.Combine(root, file)), file);
        }

        using (var man = new GZipStream(File.OpenRead(Path.Combine(root, "usr/share/man/man1/cachehost.1.gz")), CompressionMode.Decompress))
        using (var reader = new StreamReader(man))
        {
            var page = reader.ReadToEnd();
            Assert.StartsWith(".TH CACHEHOST 1", page);
            Assert.Contains("usage: cachehost", page);
            Assert.Contains("dc_server", page);
        }

        // The packaged program, started under its drop-in name, is a working dc_server under systemd.
        var dir = Wire.TempDir();
        using var notify = FakeNotifySocket.Abstract();
        var run = DaemonProcess.StartInfo(["-listen", $"UNIX:{dir}/dc.sock"], new Dictionary<string, string?>
        {
            ["NOTIFY_SOCKET"] = notify.NotifySocket,
            ["RUNTIME_DIRECTORY"] = dir,
        }, fileName: Path.Combine(root, "usr/bin/dc_server"));
        using var daemon = DaemonProcess.Start(run);
        var ready = notify.WaitForReady(Timeout);
        Assert.Contains($"CacheServer UNIX:{dir}/dc.sock", ready.Text);
        new DistCacheVectorReplayer(() => Wire.ConnectUnix($"{dir}/dc.sock")).Replay(DistCacheVectors.Server("add_tiny_ok"));

        var ctl = DeployTests.Run(Path.Combine(root, "usr/bin/cachehost"), "ctl", "--socket", $"{dir}/control.sock", "statedump");
        Assert.Equal(0, ctl.Code);
        Assert.Contains("host\troles\tCacheServer\n", ctl.Stdout);

        daemon.Signal(Signum.SIGTERM);
        Assert.Equal(0, daemon.WaitForExit(Timeout));

        // The RPM spec packages the same publish output (Debian's rpm has no systemd macros: the fallbacks).
        var rpmTop = Path.Combine(work, "rpm");
        var rpm = DeployTests.Run("rpmbuild", "-bb", Path.Combine(source, "packaging/cachehost.spec"),
            "--define", "_topdir " + rpmTop, "--define", "_sourcedir " + source, "--define", "publishdir " + Path.Combine(output, "publish"));
        Assert.True(rpm.Code == 0, rpm.Stderr);
        var rpmFile = Path.Combine(rpmTop, "RPMS/x86_64/cachehost-0.1.0-1.x86_64.rpm");
        var files = DeployTests.Run("rpm", "-qlp", rpmFile).Stdout.Split('\n');
        foreach (var path in new[] { "/usr/lib/cachehost/cachehost", "/usr/bin/dc_server", "/usr/bin/daemonproxy", "/etc/cachehost/appsettings.json", "/usr/lib/systemd/system/cachehost.service", "/usr/lib/sysusers.d/cachehost.conf" })
        {
            Assert.Contains(path, files);
        }
    }

    private static void CopySources(string from, string to)
    {
        foreach (var name in new[] { "Directory.Build.props", "Directory.Packages.props", "global.json", "appsettings.json", ".editorconfig" })
        {
            if (File.Exists(Path.Combine(from, name)))
            {
                Directory.CreateDirectory(to);
                File.Copy(Path.Combine(from, name), Path.Combine(to, name));
            }
        }

        foreach (var dir in new[] { "src", "packaging", "deploy", "docs" })
        {
            CopyTree(Path.Combine(from, dir), Path.Combine(to, dir));
        }
    }

    private static void CopyTree(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from))
        {
            File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        }

        foreach (var dir in Directory.GetDirectories(from))
        {
            var name = Path.GetFileName(dir);
            if (name is not ("bin" or "obj"))
            {
                CopyTree(dir, Path.Combine(to, name));
            }
        }
    }
}
