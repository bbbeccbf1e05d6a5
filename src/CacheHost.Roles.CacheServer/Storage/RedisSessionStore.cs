using System.Buffers;
using System.Net;
using System.Text;
using CacheHost.Transport;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace CacheHost.Roles.CacheServer.Storage;

/// <summary>
/// Sessions in Redis or Valkey (a single server, a replicated pair or a Redis Cluster, which the client detects)
/// through StackExchange.Redis, one multiplexed connection per node shared by every distcache connection. The
/// distcache operations (spec §5) map one command each onto the key <c>KeyPrefix + id</c>:
/// <list type="bullet">
/// <item>ADD → <c>SET key data PX timeout NX</c>: stored 0x00, present 0x65. Timeout 0 (legal, expired at once,
/// distcache §5.1) → <c>EXISTS</c> only: present 0x65, else 0x00 and nothing stored (Redis refuses PX 0).</item>
/// <item>GET → <c>GET</c>; REMOVE → <c>DEL</c>; HAVE → <c>EXISTS</c>. Expiry (to the millisecond), capacity and
/// eviction are Redis's (<c>maxmemory-policy volatile-ttl</c> is dc_server's "evict what expires soonest").</item>
/// </list>
/// A command that fails (node down, cluster failover, timeout: the client's <c>asyncTimeout</c>) faults its task;
/// connection losses and restorations are logged here, rate-limited.
/// </summary>
public sealed class RedisSessionStore : ISessionStore, IAsyncDisposable, IDisposable
{
    private readonly RedisStoreOptions _options;
    private readonly ILogger _logger;
    private readonly LogRateLimiter _warnings;
    private readonly byte[] _prefix;
    private ConnectionMultiplexer? _connection;
    private IDatabase? _database;

    /// <summary>Creates the store; <see cref="ConnectAsync"/> connects it.</summary>
    public RedisSessionStore(RedisStoreOptions options, ILogger<RedisSessionStore> logger, TimeProvider? clock = null)
    {
        _options = options;
        _logger = logger;
        _warnings = new LogRateLimiter(logger, timeProvider: clock);
        _prefix = Encoding.UTF8.GetBytes(options.KeyPrefix);
    }

    /// <inheritdoc />
    public SessionStoreKind Kind => SessionStoreKind.Redis;

    /// <summary>True once connected to a Redis Cluster (rather than a single server or replicated pair).</summary>
    public bool IsCluster { get; private set; }

    /// <summary>
    /// The problems of <paramref name="options"/>, each naming its key under <c>CacheHost:CacheServer</c>
    /// (checked at start when Store is Redis).
    /// </summary>
    public static IEnumerable<string> Validate(RedisStoreOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.Configuration))
        {
            yield return "Redis:Configuration: required when Store is Redis (StackExchange.Redis configuration string, e.g. 'redis1:6379,redis2:6379')";
        }
        else
        {
            string? error = null;
            try
            {
                if (ConfigurationOptions.Parse(options.Configuration).EndPoints.Count == 0)
                {
                    error = "names no endpoint (host:port)";
                }
            }
            catch (ArgumentException ex)
            {
                error = ex.Message;
            }

            if (error is not null)
            {
                yield return $"Redis:Configuration: {error}";
            }
        }

        if (Encoding.UTF8.GetByteCount(options.KeyPrefix) > RedisStoreOptions.MaxKeyPrefixBytes)
        {
            yield return $"Redis:KeyPrefix: at most {RedisStoreOptions.MaxKeyPrefixBytes} bytes";
        }
    }

    /// <summary>
    /// Connects to the configured endpoints. Unless the configuration says <c>abortConnect=true</c>, an unreachable
    /// Redis is not fatal: the client keeps retrying in the background and requests are answered 0x02 meanwhile.
    /// </summary>
    public async Task ConnectAsync()
    {
        var configuration = ConfigurationOptions.Parse(_options.Configuration);
        if (!_options.Configuration.Contains("abortConnect", StringComparison.OrdinalIgnoreCase))
        {
            configuration.AbortOnConnectFail = false;
        }

        var connection = await ConnectionMultiplexer.ConnectAsync(configuration).ConfigureAwait(false);
        connection.ConnectionFailed += (_, e) =>
        {
            if (_warnings.Allow(nameof(CacheServerLog.RedisConnectionFailed)))
            {
                CacheServerLog.RedisConnectionFailed(_logger, Format(e.EndPoint), e.ConnectionType, e.FailureType, e.Exception?.Message);
            }
        };
        connection.ConnectionRestored += (_, e) =>
        {
            if (_warnings.Allow(nameof(CacheServerLog.RedisConnectionRestored)))
            {
                CacheServerLog.RedisConnectionRestored(_logger, Format(e.EndPoint), e.ConnectionType);
            }
        };
        connection.InternalError += (_, e) =>
        {
            if (_warnings.Allow(nameof(CacheServerLog.RedisInternalError)))
            {
                CacheServerLog.RedisInternalError(_logger, Format(e.EndPoint), e.Origin, e.Exception.Message);
            }
        };
        _connection = connection;
        _database = connection.GetDatabase();
        IsCluster = connection.GetServers().Any(s => s.ServerType == ServerType.Cluster);
        var endpoints = string.Join(",", configuration.EndPoints.Select(Format));
        if (connection.IsConnected)
        {
            CacheServerLog.RedisReady(_logger, endpoints, IsCluster ? "cluster" : "standalone/replicated", _options.KeyPrefix);
        }
        else
        {
            CacheServerLog.RedisUnreachable(_logger, endpoints);
        }
    }

    /// <inheritdoc />
    public Task<bool> AddAsync(ReadOnlySpan<byte> id, ReadOnlySpan<byte> data, uint timeoutMs)
    {
        var key = Key(id);
        if (timeoutMs == 0)
        {
            return ExpiredAddAsync(Database.KeyExistsAsync(key));
        }

        return Database.StringSetAsync(key, data.ToArray(), TimeSpan.FromMilliseconds(timeoutMs), When.NotExists);
    }

    /// <inheritdoc />
    public Task<IMemoryOwner<byte>?> GetAsync(ReadOnlySpan<byte> id) => LeaseAsync(Database.StringGetLeaseAsync(Key(id)));

    /// <inheritdoc />
    public Task<bool> RemoveAsync(ReadOnlySpan<byte> id) => Database.KeyDeleteAsync(Key(id));

    /// <inheritdoc />
    public Task<bool> ContainsAsync(ReadOnlySpan<byte> id) => Database.KeyExistsAsync(Key(id));

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_connection is not null)
        {
            await _connection.CloseAsync().ConfigureAwait(false);
            await _connection.DisposeAsync().ConfigureAwait(false);
        }

        _warnings.Dispose();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _connection?.Dispose();
        _warnings.Dispose();
    }

    // dc_server answers an ADD with timeout 0 OK and the session is expired for every later lookup (distcache
    // §5.1, §6.2); only an unexpired duplicate turns it into 0x65.
    private static async Task<bool> ExpiredAddAsync(Task<bool> exists) => !await exists.ConfigureAwait(false);

    private static async Task<IMemoryOwner<byte>?> LeaseAsync(Task<Lease<byte>?> lease) => await lease.ConfigureAwait(false);

    private static string Format(EndPoint? endpoint) => endpoint switch
    {
        null => "?",
        DnsEndPoint dns => $"{dns.Host}:{dns.Port}",
        _ => endpoint.ToString() ?? "?",
    };

    private IDatabase Database => _database ?? throw new InvalidOperationException("The Redis store is not connected (ConnectAsync)");

    private byte[] Key(ReadOnlySpan<byte> id)
    {
        var key = new byte[_prefix.Length + id.Length];
        _prefix.CopyTo(key, 0);
        id.CopyTo(key.AsSpan(_prefix.Length));
        return key;
    }
}
