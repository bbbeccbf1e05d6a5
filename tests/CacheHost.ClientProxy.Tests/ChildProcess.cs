using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using CacheHost.Testing;

namespace CacheHost.ClientProxy.Tests;

/// <summary>
/// A real <c>cachehost</c> child process (the build copied next to the tests), e.g. <c>cachehost server -listen …</c>,
/// so that tests can SIGSTOP / SIGKILL it like the reference captures did. Output is collected for diagnostics.
/// </summary>
internal sealed class ChildProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private ChildProcess(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>Starts <c>dotnet cachehost.dll args…</c>.</summary>
    public static ChildProcess Start(params string[] args) => Start(environment: null, args);

    /// <summary>Starts <c>dotnet cachehost.dll args…</c> with <paramref name="environment"/> added to its environment.</summary>
    public static ChildProcess Start(IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var info = new ProcessStartInfo
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        ProgramUnderTest.Configure(info);
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[name] = value;
        }

        return new ChildProcess(Process.Start(info)!);
    }

    /// <summary>
    /// Starts a CacheServer child on <paramref name="address"/> (configured further by <paramref name="environment"/>,
    /// e.g. <c>CacheHost__CacheServer__Store</c>) and waits until it accepts connections.
    /// </summary>
    public static ChildProcess StartServer(string address, IReadOnlyDictionary<string, string>? environment = null)
    {
        var child = Start(environment, "server", "-listen", address);
        child.WaitForConnectable(address, TimeSpan.FromSeconds(20));
        return child;
    }

    /// <summary>Waits until <paramref name="address"/> accepts a connection (then closes it).</summary>
    public void WaitForConnectable(string address, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"cachehost exited with {_process.ExitCode} before listening:\n{Output}");
            }

            try
            {
                using var socket = InProcessCacheServer.ConnectTo(address);
                return;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(20);
            }
        }
    }

    /// <summary>Waits for the exit and for the redirected output to be fully read.</summary>
    public bool WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
        {
            return false;
        }

        _process.WaitForExit(); // drains the asynchronous output readers
        return true;
    }

    /// <summary>SIGSTOP: the process keeps its sockets open but stops answering.</summary>
    public void Pause() => Signal(Mono.Unix.Native.Signum.SIGSTOP);

    /// <summary>SIGKILL: the OS closes its sockets.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit(5000);
        }
    }

    public void Signal(Mono.Unix.Native.Signum signal)
    {
        if (Mono.Unix.Native.Syscall.kill(_process.Id, signal) != 0)
        {
            throw new InvalidOperationException($"kill({_process.Id}, {signal}) failed");
        }
    }

    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }
}
