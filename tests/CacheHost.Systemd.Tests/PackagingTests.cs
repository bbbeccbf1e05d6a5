using System.Diagnostics;
using System.IO.Compression;
using CacheHost.Testing;
using Mono.Unix.Native;

namespace CacheHost.Systemd.Tests;

/// <summary>
/// packaging/build-deb.sh end to end, in one test because the NativeAOT publish takes a few minutes
/// (longer on a loaded machine): build the .deb from a copy of the sources, check its layout, extract it and run the
/// packaged dc_server under a fake systemd until it answers a GET; install it with dpkg into a scratch root
/// (maintainer scripts run chrootless with DPKG_ROOT: account, conffile group, tmpfiles, deb-systemd-helper
/// state), start the installed program on the installed configuration, purge it and check that nothing is
/// left; then build the RPM from the same output.
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
        // The publish took longer than 15 min at a load average of 36 on the 2-core machine.
        var (code, stdout, stderr) = DeployTests.Run(start, TimeSpan.FromMinutes(40));
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
        foreach (var name in new[] { "cachehost", "dc_server", "dc_client", "dc_snoop", "dc_test", "daemonproxy", "clacks-server" })
        {
            Assert.Equal("../lib/cachehost/cachehost", new FileInfo(Path.Combine(root, "usr/bin", name)).LinkTarget);
        }

        foreach (var file in new[] { "usr/lib/systemd/system/cachehost.service", "usr/lib/systemd/system/cachehost.socket", "usr/lib/sysusers.d/cachehost.conf", "usr/lib/tmpfiles.d/cachehost.conf", "etc/cachehost/appsettings.json", "usr/share/doc/cachehost/copyright", "usr/share/doc/cachehost/changelog.Debian.gz" })
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
            // README's key table and every subcommand's help.
            Assert.Contains(".SH CONFIGURATION", page);
            Assert.Contains(".B CacheHost:CacheServer:Listen", page);
            Assert.Contains(".SS cachehost daemonproxy", page);
            Assert.Contains("Usage: cachehost snoop", page);
        }

        // groff renders it without a warning.
        var render = new ProcessStartInfo("sh") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        render.ArgumentList.Add("-c");
        render.ArgumentList.Add("zcat \"$1\" | groff -man -Tutf8 -ww -z");
        render.ArgumentList.Add("sh");
        render.ArgumentList.Add(Path.Combine(root, "usr/share/man/man1/cachehost.1.gz"));
        var rendered = DeployTests.Run(render, TimeSpan.FromMinutes(1));
        Assert.True(rendered.Code == 0 && rendered.Stderr == "", rendered.Stderr);

        var depends = DeployTests.Run("dpkg-deb", "-f", deb, "Depends").Stdout;
        Assert.Contains("libssl3", depends);
        Assert.Contains("adduser", depends);
        Assert.Equal("", DeployTests.Run("sh", "-c", $"cd '{root}' && md5sum --quiet -c '{control}/md5sums'").Stdout);
        Assert.DoesNotContain("etc/cachehost", File.ReadAllText(Path.Combine(control, "md5sums")));

        // The packaged program, started under its drop-in name, is a working dc_server under systemd, with the
        // unit's MemoryDenyWriteExecute=yes: the kernel's PR_SET_MDWE (inherited across exec) refuses memory that
        // is writable and executable, as systemd's filter does; a JIT build dies under it at once.
        var dir = Wire.TempDir();
        using var notify = FakeNotifySocket.Abstract();
        const string DenyWriteExecute = "import ctypes, os, sys\n"
            + "if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0: sys.exit('PR_SET_MDWE failed: errno %d' % ctypes.get_errno())\n"
            + "os.execv(sys.argv[1], sys.argv[1:])";
        var run = DaemonProcess.StartInfo(["-c", DenyWriteExecute, Path.Combine(root, "usr/bin/dc_server"), "-listen", $"UNIX:{dir}/dc.sock"], new Dictionary<string, string?>
        {
            ["NOTIFY_SOCKET"] = notify.NotifySocket,
            ["RUNTIME_DIRECTORY"] = dir,
        }, fileName: "python3");
        using var daemon = DaemonProcess.Start(run);
        var ready = notify.WaitForReady(Timeout);
        Assert.Contains($"CacheServer UNIX:{dir}/dc.sock", ready.Text);
        new DistCacheVectorReplayer(() => Wire.ConnectUnix($"{dir}/dc.sock")).Replay(DistCacheVectors.Server("add_tiny_ok"));

        var ctl = DeployTests.Run(Path.Combine(root, "usr/bin/cachehost"), "ctl", "--socket", $"{dir}/control.sock", "statedump");
        Assert.Equal(0, ctl.Code);
        Assert.Contains("host\troles\tCacheServer\n", ctl.Stdout);

        daemon.Signal(Signum.SIGTERM);
        Assert.Equal(0, daemon.WaitForExit(Timeout));

        InstallIntoScratchRootStartAndPurge(deb, work);

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

    /// <summary>
    /// dpkg into a scratch root, as on a machine: maintainer scripts run without chroot and honour
    /// DPKG_ROOT (dpkg --force-script-chrootless), dependencies are not installed there (--force-depends).
    /// systemd is not running in the root, so the scripts skip systemctl/deb-systemd-invoke exactly as
    /// they do on a machine without systemd; deb-systemd-helper records enablement in the root.
    /// </summary>
    private static void InstallIntoScratchRootStartAndPurge(string deb, string work)
    {
        var root = Path.Combine(work, "installed");
        // What every Debian system with systemd has: dpkg's database, the account files (with root only) and
        // their lock, systemd's configuration and state directories.
        foreach (var dir in new[] { "var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "etc/systemd/system", "var/lib/systemd", "var/log", "run" })
        {
            Directory.CreateDirectory(Path.Combine(root, dir));
        }

        File.WriteAllText(Path.Combine(root, "etc/.pwd.lock"), "");

        File.WriteAllText(Path.Combine(root, "var/lib/dpkg/status"), "");
        File.WriteAllText(Path.Combine(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n");
        File.WriteAllText(Path.Combine(root, "etc/group"), "root:x:0:\n");
        File.WriteAllText(Path.Combine(root, "etc/shadow"), "root:*:20000:0:99999:7:::\n");
        File.WriteAllText(Path.Combine(root, "etc/gshadow"), "root:*::\n");
        var before = Snapshot(root);

        var dpkg = Dpkg(root, "--install", deb);
        Assert.True(dpkg.Code == 0, dpkg.Stdout + dpkg.Stderr);

        // The file list, the conffile, the scripts' work.
        var files = DeployTests.Run("dpkg", "--root=" + root, "--listfiles", "cachehost").Stdout.Split('\n');
        foreach (var path in new[] { "/usr/lib/cachehost/cachehost", "/usr/bin/clacks-server", "/etc/cachehost/appsettings.json", "/usr/share/man/man1/cachehost.1.gz", "/usr/share/doc/cachehost/copyright" })
        {
            Assert.Contains(path, files);
        }

        Assert.Contains("/etc/cachehost/appsettings.json", DeployTests.Run("dpkg-query", "--root=" + root, "-W", "-f=${Conffiles}", "cachehost").Stdout);
        Assert.Equal("", DeployTests.Run("dpkg", "--root=" + root, "--verify", "cachehost").Stdout);
        var account = File.ReadAllLines(Path.Combine(root, "etc/passwd")).Single(l => l.StartsWith("cachehost:", StringComparison.Ordinal)).Split(':');
        Assert.Equal("/var/lib/cachehost", account[5]);
        var gid = File.ReadAllLines(Path.Combine(root, "etc/group")).Single(l => l.StartsWith("cachehost:", StringComparison.Ordinal)).Split(':')[2];
        Assert.Equal(0, Syscall.stat(Path.Combine(root, "etc/cachehost/appsettings.json"), out var conffile));
        Assert.Equal(gid, conffile.st_gid.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(0, Syscall.stat(Path.Combine(root, "var/lib/cachehost"), out var state));
        Assert.Equal(account[2], state.st_uid.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal("/usr/lib/systemd/system/cachehost.service", new FileInfo(Path.Combine(root, "etc/systemd/system/multi-user.target.wants/cachehost.service")).LinkTarget);
        Assert.Equal("/usr/lib/systemd/system/cachehost.service", new FileInfo(Path.Combine(root, "etc/systemd/system/dc_server.service")).LinkTarget);

        // The installed program on the installed configuration (addresses rewritten to scratch sockets),
        // with the root's account database, as the unit starts it.
        var scratch = Wire.TempDir();
        var rewritten = PackageLayout.RewriteAddresses(File.ReadAllText(Path.Combine(root, "etc/cachehost/appsettings.json")), scratch, upstream: null);
        File.WriteAllText(Path.Combine(scratch, "appsettings.json"), rewritten.Json);
        var (fileName, args) = PackageLayout.WithAccounts(Path.Combine(root, "usr/lib/cachehost/cachehost"), [], Path.Combine(root, "etc/group"), Path.Combine(root, "etc/passwd"));
        using var notify = FakeNotifySocket.Abstract();
        var start = DaemonProcess.StartInfo(args, new Dictionary<string, string?>
        {
            ["CACHEHOST_CONFIG"] = Path.Combine(scratch, "appsettings.json"),
            ["RUNTIME_DIRECTORY"] = scratch,
            ["NOTIFY_SOCKET"] = notify.NotifySocket,
        }, fileName: fileName);
        using (var daemon = DaemonProcess.Start(start))
        {
            notify.WaitFor(m => m.Contains("READY=1"), TimeSpan.FromMinutes(2), "READY=1 from the installed program");
            Assert.Equal(2, rewritten.Listeners.Count);
            // Both listeners serve one store: a different case on each, so the second does not meet the first's session.
            string[] cases = ["add_tiny_ok", "get_miss"];
            for (var i = 0; i < rewritten.Listeners.Count; i++)
            {
                var address = rewritten.Listeners[i].Address;
                new DistCacheVectorReplayer(() => Wire.ConnectUnix(address["UNIX:".Length..])).Replay(DistCacheVectors.Server(cases[i]));
            }

            Assert.Equal(0, Syscall.stat($"{scratch}/control.sock", out var controlSocket));
            Assert.Equal(gid, controlSocket.st_gid.ToString(System.Globalization.CultureInfo.InvariantCulture));
            daemon.Signal(Signum.SIGTERM);
            Assert.Equal(0, daemon.WaitForExit(Timeout));
        }

        // Purge leaves the root as it was: no file, directory, account or unit state of the package.
        var purge = Dpkg(root, "--purge", "cachehost");
        Assert.True(purge.Code == 0, purge.Stdout + purge.Stderr);
        var after = Snapshot(root);
        Assert.Equal(before.Keys.Order(), after.Keys.Order());
        foreach (var (path, text) in before)
        {
            Assert.True(text == after[path], $"{path} changed:\n{after[path]}");
        }
    }

    private static (int Code, string Stdout, string Stderr) Dpkg(string root, params string[] args)
    {
        var start = new ProcessStartInfo("dpkg") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[] { "--root=" + root, "--force-script-chrootless", "--force-depends", "--log=/dev/null" }.Concat(args))
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin";
        return DeployTests.Run(start, TimeSpan.FromMinutes(5));
    }

    // Every path under the root except dpkg's own database, with the text of the account files.
    private static Dictionary<string, string> Snapshot(string root) =>
        Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories)
            .Select(p => Path.GetRelativePath(root, p))
            .Where(p => !p.StartsWith("var/lib/dpkg", StringComparison.Ordinal) && !p.EndsWith('-'))
            .ToDictionary(p => p, p => p.StartsWith("etc/", StringComparison.Ordinal) && File.Exists(Path.Combine(root, p)) ? File.ReadAllText(Path.Combine(root, p)) : "");

    private static void CopySources(string from, string to)
    {
        foreach (var name in new[] { "Directory.Build.props", "Directory.Packages.props", "global.json", "appsettings.json", ".editorconfig", "README.md" })
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
