using System.Diagnostics;

namespace CacheHost.Systemd.Tests;

/// <summary>Static checks of deploy/ with the systemd tools (no running systemd needed; ecosystem.md 4.3).</summary>
public sealed class DeployTests
{
    internal static string RepoRoot => CacheHost.Testing.TestPaths.RepoRoot;

    internal static (int Code, string Stdout, string Stderr) Run(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        return Run(start, TimeSpan.FromMinutes(2));
    }

    internal static (int Code, string Stdout, string Stderr) Run(ProcessStartInfo start, TimeSpan timeout)
    {
        var file = start.FileName;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} did not finish");
        }

        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>
    /// A throwaway root holding systemd's own units, the ExecStart/ExecReload programs and the units under
    /// test, so `verify --root` checks them exactly as they are in deploy/ (executable paths included).
    /// </summary>
    private static string VerifyRoot(Func<string, string>? edit = null)
    {
        var root = Wire.TempDir();
        Directory.CreateDirectory(Path.Combine(root, "usr/lib/cachehost"));
        Directory.CreateDirectory(Path.Combine(root, "bin"));
        File.Copy(Path.Combine(DaemonProcess.ProgramDirectory, "cachehost"), Path.Combine(root, "usr/lib/cachehost/cachehost"));
        File.Copy("/bin/kill", Path.Combine(root, "bin/kill"));
        var units = Path.Combine(root, "usr/lib/systemd/system");
        Directory.CreateDirectory(units);
        foreach (var file in Directory.GetFiles("/usr/lib/systemd/system"))
        {
            File.Copy(file, Path.Combine(units, Path.GetFileName(file)));
        }

        foreach (var name in new[] { "cachehost.service", "cachehost.socket" })
        {
            var text = File.ReadAllText(Path.Combine(RepoRoot, "deploy", name));
            File.WriteAllText(Path.Combine(units, name), edit is null ? text : edit(text));
        }

        return root;
    }

    [Fact]
    public void Systemd_analyze_verify_prints_nothing_for_the_units()
    {
        var root = VerifyRoot();
        var (code, stdout, stderr) = Run("systemd-analyze", "verify", "--man=no", "--root=" + root, "cachehost.service", "cachehost.socket");
        Assert.Equal("", stderr);
        Assert.Equal("", stdout);
        Assert.Equal(0, code);

        // The check is real: a misspelt key only warns (rc 0) but does print.
        var broken = VerifyRoot(text => text.Replace("NoNewPrivileges=yes", "NoNewPrivilegs=yes", StringComparison.Ordinal));
        var (_, _, brokenStderr) = Run("systemd-analyze", "verify", "--man=no", "--root=" + broken, "cachehost.service");
        Assert.Contains("NoNewPrivilegs", brokenStderr);
    }

    [Fact]
    public void The_service_is_hardened_and_the_sysusers_file_creates_the_account()
    {
        // At most 1.6, the score when the package was first hardened (issue 19: never less strict).
        var (code, stdout, _) = Run("systemd-analyze", "security", "--offline=yes", "--no-pager", "--threshold=16" /* tenths */, Path.Combine(RepoRoot, "deploy/cachehost.service"));
        Assert.Equal(0, code);
        Assert.Matches(@"Overall exposure level for cachehost.service: (0\.\d|1\.[0-6]) ", stdout);

        var (sysusersCode, sysusersOut, sysusersErr) = Run("systemd-sysusers", "--dry-run", Path.Combine(RepoRoot, "deploy/cachehost.sysusers.conf"));
        Assert.Equal(0, sysusersCode);
        Assert.Contains("cachehost", sysusersOut + sysusersErr);

        var unit = File.ReadAllText(Path.Combine(RepoRoot, "deploy/cachehost.service"));
        Assert.Contains("Type=notify\n", unit);
        Assert.Contains("\nMemoryDenyWriteExecute=yes\n", unit); // the packaged program is NativeAOT (issue 19)
        Assert.DoesNotContain("\nSystemCallFilter=~@resources", unit);
    }

    [Fact]
    public void Example_configurations_parse_and_name_known_roles()
    {
        foreach (var file in Directory.GetFiles(Path.Combine(RepoRoot, "deploy/examples"), "*.json").Append(Path.Combine(RepoRoot, "deploy/appsettings.json")))
        {
            using var document = System.Text.Json.JsonDocument.Parse(File.ReadAllText(file));
            var roles = document.RootElement.GetProperty("CacheHost").GetProperty("Roles");
            Assert.True(roles.GetArrayLength() > 0, file);
        }
    }
}
