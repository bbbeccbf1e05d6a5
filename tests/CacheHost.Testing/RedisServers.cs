using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Xunit;

namespace CacheHost.Testing;

/// <summary>
/// A test that needs a real redis-server (Debian's redis-server/redis-tools, listed in .ci/apt-packages). When it
/// is missing the test fails with a message saying so; only with CACHEHOST_NO_REDIS set is it skipped.
/// </summary>
public sealed class RedisFactAttribute : FactAttribute
{
    /// <summary>Skips when CACHEHOST_NO_REDIS is set.</summary>
    public RedisFactAttribute()
    {
        Skip = RedisServer.SkipReason;
    }
}

/// <summary>The theory form of <see cref="RedisFactAttribute"/>.</summary>
public sealed class RedisTheoryAttribute : TheoryAttribute
{
    /// <summary>Skips when CACHEHOST_NO_REDIS is set.</summary>
    public RedisTheoryAttribute()
    {
        Skip = RedisServer.SkipReason;
    }
}

/// <summary>
/// A real redis-server child process on a loopback port chosen by the kernel (port 0, then handed over: the
/// server binds it moments later, and a start that loses the race is retried on another port), with its working
/// directory in a fresh temp dir. Persistence is off; cluster mode on request (bus port also kernel-chosen).
/// </summary>
public sealed class RedisServer : IDisposable
{
    private const string NoRedisVariable = "CACHEHOST_NO_REDIS";
    private readonly Process _process;

    private RedisServer(Process process, int port, string directory)
    {
        _process = process;
        Port = port;
        Directory = directory;
    }

    /// <summary>Why Redis tests are skipped (CACHEHOST_NO_REDIS set), or null when they run.</summary>
    public static string? SkipReason => string.IsNullOrEmpty(Environment.GetEnvironmentVariable(NoRedisVariable))
        ? null
        : $"{NoRedisVariable} is set: tests against a real redis-server are skipped (CI runs them)";

    /// <summary>The client port.</summary>
    public int Port { get; }

    /// <summary>host:port, for StackExchange.Redis's configuration string and redis-cli.</summary>
    public string Endpoint => $"127.0.0.1:{Port}";

    /// <summary>The server's working directory.</summary>
    public string Directory { get; }

    /// <summary>True once the process has exited (e.g. after <see cref="Kill"/>).</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>Starts a server and waits until it answers PING.</summary>
    public static RedisServer Start(string tag, bool cluster = false, int? port = null, string? directory = null)
    {
        var program = FindProgram("redis-server");
        Exception? last = null;
        for (var attempt = 0; attempt < 5; attempt++)
        {
            var clientPort = port ?? FreePort();
            var dir = directory ?? TestPaths.Directory("redis-" + tag);
            var start = new ProcessStartInfo(program)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
                WorkingDirectory = dir,
            };
            foreach (var arg in new[] { "--port", Num(clientPort), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning", "--logfile", Path.Combine(dir, "redis.log") })
            {
                start.ArgumentList.Add(arg);
            }

            if (cluster)
            {
                // Failure detection in about a second, so the failover tests see a promotion within seconds.
                foreach (var arg in new[] { "--cluster-enabled", "yes", "--cluster-config-file", Path.Combine(dir, "nodes.conf"), "--cluster-node-timeout", "1000", "--cluster-port", Num(FreePort()) })
                {
                    start.ArgumentList.Add(arg);
                }
            }

            var process = Process.Start(start)!;
            process.OutputDataReceived += (_, _) => { };
            process.ErrorDataReceived += (_, _) => { };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            var server = new RedisServer(process, clientPort, dir);
            try
            {
                server.WaitUntilReady(TimeSpan.FromSeconds(20));
                return server;
            }
            catch (InvalidOperationException ex)
            {
                last = ex; // most likely the port was taken meanwhile: another port
                server.Dispose();
                if (port is not null)
                {
                    break;
                }
            }
        }

        throw new InvalidOperationException($"redis-server did not start: {last?.Message}", last);
    }

    /// <summary>Runs <c>redis-cli -p port args…</c> and returns its standard output (fails the test on a non-zero exit).</summary>
    public string Cli(params string[] args) => RunCli(["-h", "127.0.0.1", "-p", Num(Port), .. args]);

    /// <summary>Runs redis-cli with <paramref name="args"/> as they are.</summary>
    public static string RunCli(IEnumerable<string> args)
    {
        var start = new ProcessStartInfo(FindProgram("redis-cli"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEndAsync();
        var output = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(60_000))
        {
            process.Kill();
            throw new TimeoutException($"redis-cli {string.Join(' ', start.ArgumentList)} did not finish");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"redis-cli {string.Join(' ', start.ArgumentList)} exited {process.ExitCode}: {output}{error.Result}");
        }

        return output;
    }

    /// <summary>SIGKILL, as a crashed node: no shutdown, no goodbye to clients or to the cluster.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit(10_000);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }

    /// <summary>The redis-server/redis-cli program on PATH, or a failure that says how to get it.</summary>
    public static string FindProgram(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        Assert.Fail($"{name} is not installed: these tests run against a real Redis (apt-get install redis-server redis-tools; .ci/apt-packages lists them). Set {NoRedisVariable}=1 to skip them on a machine without it.");
        return name;
    }

    private void WaitUntilReady(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (_process.HasExited)
            {
                var log = Path.Combine(Directory, "redis.log");
                throw new InvalidOperationException($"redis-server on port {Port} exited {_process.ExitCode}: {(File.Exists(log) ? File.ReadAllText(log) : string.Empty)}");
            }

            if (TryPing())
            {
                return;
            }

            Thread.Sleep(20);
        }

        throw new InvalidOperationException($"redis-server on port {Port} did not answer PING within {timeout.TotalSeconds} s");
    }

    private bool TryPing()
    {
        try
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.Connect(IPAddress.Loopback, Port);
            socket.ReceiveTimeout = 2000;
            socket.Send("PING\r\n"u8);
            var reply = new byte[64];
            var n = socket.Receive(reply);
            return reply.AsSpan(0, n).StartsWith("+PONG"u8);
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static string Num(int value) => value.ToString(CultureInfo.InvariantCulture);
}

/// <summary>
/// A Redis Cluster of real servers: <c>masters</c> masters with <c>replicas</c> replicas each, created with
/// <c>redis-cli --cluster create … --cluster-replicas n --cluster-yes</c>, node timeout 1 s.
/// </summary>
public sealed class RedisCluster : IDisposable
{
    private RedisCluster(List<RedisServer> nodes)
    {
        Nodes = nodes;
    }

    /// <summary>Every node (masters and replicas, in start order).</summary>
    public IReadOnlyList<RedisServer> Nodes { get; }

    /// <summary>Every node's endpoint, comma-separated: a StackExchange.Redis configuration string.</summary>
    public string Configuration => string.Join(",", Nodes.Select(n => n.Endpoint));

    /// <summary>Starts the nodes, creates the cluster and waits until every node reports it healthy.</summary>
    public static RedisCluster Start(int masters = 3, int replicas = 1)
    {
        var nodes = new List<RedisServer>();
        try
        {
            for (var i = 0; i < masters * (1 + replicas); i++)
            {
                nodes.Add(RedisServer.Start($"cluster{i}", cluster: true));
            }

            RedisServer.RunCli(["--cluster", "create", .. nodes.Select(n => n.Endpoint), "--cluster-replicas", replicas.ToString(CultureInfo.InvariantCulture), "--cluster-yes"]);
            var cluster = new RedisCluster(nodes);
            cluster.WaitUntilHealthy(TimeSpan.FromSeconds(60), masters);
            return cluster;
        }
        catch
        {
            foreach (var node in nodes)
            {
                node.Dispose();
            }

            throw;
        }
    }

    /// <summary>The live nodes that are masters holding slots now (from CLUSTER NODES of a live node).</summary>
    public IReadOnlyList<RedisServer> Masters()
    {
        var live = Nodes.First(n => !n.HasExited);
        var ports = new List<int>();
        foreach (var line in live.Cli("cluster", "nodes").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var fields = line.Split(' ');
            if (fields.Length >= 9 && fields[2].Contains("master", StringComparison.Ordinal) && !fields[2].Contains("fail", StringComparison.Ordinal))
            {
                var address = fields[1].Split('@')[0];
                ports.Add(int.Parse(address[(address.LastIndexOf(':') + 1)..], CultureInfo.InvariantCulture));
            }
        }

        return Nodes.Where(n => ports.Contains(n.Port) && !n.HasExited).ToList();
    }

    /// <summary>
    /// Waits until every live node says cluster_state:ok and sees <paramref name="masters"/> masters that hold slots
    /// and are not failed (after a failover: the replica promoted).
    /// </summary>
    public void WaitUntilHealthy(TimeSpan timeout, int masters = 3)
    {
        var deadline = DateTime.UtcNow + timeout;
        var last = string.Empty;
        while (DateTime.UtcNow < deadline)
        {
            var healthy = true;
            foreach (var node in Nodes.Where(n => !n.HasExited))
            {
                var info = node.Cli("cluster", "info");
                var slotMasters = node.Cli("cluster", "nodes").Split('\n', StringSplitOptions.RemoveEmptyEntries)
                    .Select(l => l.Split(' '))
                    .Count(f => f.Length >= 9 && f[2].Contains("master", StringComparison.Ordinal) && !f[2].Contains("fail", StringComparison.Ordinal));
                if (!info.Contains("cluster_state:ok", StringComparison.Ordinal) || slotMasters != masters)
                {
                    healthy = false;
                    last = $"node {node.Endpoint}: {slotMasters} serving masters\n{info}";
                    break;
                }
            }

            if (healthy)
            {
                return;
            }

            Thread.Sleep(100);
        }

        throw new TimeoutException($"the Redis Cluster did not become healthy within {timeout.TotalSeconds} s; last: {last}");
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var node in Nodes)
        {
            node.Dispose();
        }
    }
}
