using System.Diagnostics;
using CacheHost.Testing;

namespace CacheHost.Clacks.Tests;

/// <summary>The real <c>cachehost</c> program started as a child process (copied next to the tests).</summary>
internal sealed class ProgramProcess : IDisposable
{
    private readonly Process _process;

    private ProgramProcess(Process process) => _process = process;

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    public static ProgramProcess Start(string workingDirectory, params string[] args)
    {
        var start = new ProcessStartInfo
        {
            WorkingDirectory = workingDirectory,
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        ProgramUnderTest.Configure(start);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return new ProgramProcess(process);
    }

    /// <summary>Waits until the unix socket accepts connections.</summary>
    public async Task WaitForSocketAsync(string path)
    {
        await RawClient.EventuallyAsync(async () =>
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"cachehost exited with {_process.ExitCode}");
            }

            try
            {
                await using var c = await RawClient.ConnectAsync(path);
                return true;
            }
            catch (System.Net.Sockets.SocketException)
            {
                return false;
            }
        }, TimeSpan.FromSeconds(30), "socket " + path);
    }

    public void KillHard()
    {
        Mono.Unix.Native.Syscall.kill(_process.Id, Mono.Unix.Native.Signum.SIGKILL);
        _process.WaitForExit(10_000);
    }

    public int Terminate()
    {
        Mono.Unix.Native.Syscall.kill(_process.Id, Mono.Unix.Native.Signum.SIGTERM);
        if (!_process.WaitForExit(20_000))
        {
            _process.Kill();
            throw new TimeoutException("cachehost did not stop on SIGTERM");
        }

        return _process.ExitCode;
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit(5000);
        }

        _process.Dispose();
    }
}
