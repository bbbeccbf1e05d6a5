using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using CacheHost.Transport;

namespace CacheHost.LoadTool;

/// <summary>
/// The -mix workload over persistent connections (any -pipeline depth, distcache or memcached protocol), built
/// to saturate a server from one core: per client one loop over a reusable <see cref="MixConnection"/>, pooled
/// async state machines, a per-client latency histogram and counter (no shared writes, no locks on the hot
/// path). Values are a 4-byte key number followed by a slice of one precomputed pattern, so writing and
/// verifying a 1 KB value is two memory copies/compares instead of generating bytes per operation.
/// </summary>
internal sealed class MixWorkload : LoadWorkload
{
    private const int PatternSpread = 251;
    private readonly LoadToolSettings _settings;
    private readonly MixProtocol _protocol;
    private readonly byte[] _pattern;
    private readonly MixOperation[] _mixTable;

    public MixWorkload(LoadToolSettings settings, MixProtocol protocol)
    {
        _settings = settings;
        _protocol = protocol;
        _mixTable = settings.Mix!.SelectMany(m => Enumerable.Repeat(m.Operation, m.Weight)).ToArray();

        // A fixed pattern (the same in every run and process) so values written by an earlier run still verify.
        _pattern = new byte[settings.ValueSize + PatternSpread];
        var seed = 0x9E3779B9u;
        for (var i = 0; i < _pattern.Length; i++)
        {
            seed = (seed * 1103515245u) + 12345u;
            _pattern[i] = (byte)(seed >> 16);
        }
    }

    public override async Task<LoadWorker> ConnectAsync(LoadRun run, int index, long ops, TransportOptions transport)
    {
        var s = _settings;
        var connection = await MixConnection.ConnectAsync(_protocol, s.Connect!, s.ValueSize, s.Pipeline, transport, s.TlsContext).ConfigureAwait(false);
        return new Worker(run, this, ops, connection);
    }

    public override LoadReport.Result Describe(long ops, TimeSpan elapsed, LatencyHistogram latency, bool failed, TimeSpan toolCpu)
    {
        var mode = "mix " + string.Join(',', _settings.Mix!.Select(m => $"{m.Operation.ToString().ToLowerInvariant()}:{m.Weight}"));
        if (_protocol == MixProtocol.Memcached)
        {
            mode += " (memcached protocol)";
        }

        return new LoadReport.Result(mode, ops, elapsed, latency, Persistent: true, failed)
        {
            Protocol = _protocol == MixProtocol.Memcached ? "memcached" : "distcache",
            ToolCpu = toolCpu,
        };
    }

    /// <summary>One client: one connection, its own random source, plan, value buffer, counter and histogram.</summary>
    private sealed class Worker : LoadWorker
    {
        private readonly MixWorkload _workload;
        private readonly long _ops;
        private readonly MixConnection _connection;
        private readonly Random _random = new();
        private readonly MixOperation[] _operations;
        private readonly int[] _keys;
        private readonly uint[] _tags;
        private readonly byte[] _key = new byte[32];
        private readonly byte[] _value;
        private readonly int _keySpace;
        private readonly int _timeout;
        private uint _nextTag;

        public Worker(LoadRun run, MixWorkload workload, long ops, MixConnection connection)
            : base(run)
        {
            _workload = workload;
            _ops = ops;
            _connection = connection;
            var s = run.Settings;
            _operations = new MixOperation[s.Pipeline];
            _keys = new int[s.Pipeline];
            _tags = new uint[s.Pipeline];
            _value = new byte[s.ValueSize];
            _keySpace = s.Keys;
            _timeout = s.Timeout;
            _nextTag = (uint)_random.Next();
        }

        public override async Task RunAsync()
        {
            long done = 0;
            try
            {
                while (done < _ops && !Run.Stopping)
                {
                    var batch = (int)Math.Min(_operations.Length, _ops - done);
                    if (!await RunBatchAsync(batch).ConfigureAwait(false))
                    {
                        return;
                    }

                    done += batch;
                }
            }
            catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or InvalidDataException or ObjectDisposedException or ConnectionAbortedException)
            {
                Run.Fail("Error, transaction failure");
            }
        }

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
        private async ValueTask<bool> RunBatchAsync(int batch)
        {
            var table = _workload._mixTable;
            for (var i = 0; i < batch; i++)
            {
                var key = _random.Next(_keySpace);
                var operation = table[_random.Next(table.Length)];
                var tag = ++_nextTag;
                _keys[i] = key;
                _operations[i] = operation;
                _tags[i] = tag;
                var keyLength = WriteKey(_key, key);
                if (operation == MixOperation.Add)
                {
                    FillValue(key);
                }

                _connection.Append(operation, tag, _key.AsSpan(0, keyLength), operation == MixOperation.Add ? _value : default, _timeout);
            }

            var start = Stopwatch.GetTimestamp();
            await _connection.SendAsync().ConfigureAwait(false);
            for (var i = 0; i < batch; i++)
            {
                var reply = await _connection.ReceiveAsync(_operations[i], _tags[i]).ConfigureAwait(false);
                Run.Measurement.Record(Latency, (long)Stopwatch.GetElapsedTime(start).TotalMicroseconds);
                var error = Check(_operations[i], _keys[i], reply);
                if (error is not null)
                {
                    Run.Fail(error);
                    return false;
                }

                Completed();
            }

            return true;
        }

        private string? Check(MixOperation operation, int key, MixReply reply)
        {
            switch (reply)
            {
                case MixReply.Stored or MixReply.Exists when operation == MixOperation.Add:
                case MixReply.Miss when operation == MixOperation.Get:
                case MixReply.Answered:
                    return null;
                case MixReply.Hit:
                    var echoed = _connection.ValueKey;
                    if (!echoed.IsEmpty && !echoed.SequenceEqual(_key.AsSpan(0, WriteKey(_key, key))))
                    {
                        return "Error, received mismatched session";
                    }

                    return Matches(key, _connection.Value) ? null : "Error, received mismatched session";
                case MixReply.Failed:
                    return "Error, transaction failure";
                default:
                    return operation switch
                    {
                        MixOperation.Add => "Error, add failed!",
                        MixOperation.Get => "Error, get failed!",
                        _ => "Error, transaction failure",
                    };
            }
        }

        private static int WriteKey(byte[] destination, int key)
        {
            "cachehost-key-"u8.CopyTo(destination);
            key.TryFormat(destination.AsSpan(14), out var written, default, CultureInfo.InvariantCulture);
            return 14 + written;
        }

        /// <summary>Value of <paramref name="key"/>: the key as 4 little-endian bytes, then the pattern from offset key mod 251.</summary>
        private void FillValue(int key)
        {
            BinaryPrimitives.WriteInt32LittleEndian(_value, key);
            _workload._pattern.AsSpan(key % PatternSpread, _value.Length - 4).CopyTo(_value.AsSpan(4));
        }

        private bool Matches(int key, ReadOnlySpan<byte> value) =>
            value.Length == _value.Length
            && BinaryPrimitives.ReadInt32LittleEndian(value) == key
            && value[4..].SequenceEqual(_workload._pattern.AsSpan(key % PatternSpread, _value.Length - 4));

        public override void Dispose() => _connection.Dispose();
    }
}
