using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using CacheHost.Transport;

namespace CacheHost.LoadTool;

/// <summary>
/// The -mix mode over persistent connections (any -pipeline depth, distcache or memcached protocol), built to
/// saturate a server from one core: per client one loop over a reusable <see cref="MixConnection"/>, pooled
/// async state machines, a per-client latency histogram and per-client counters (no shared writes, no locks on
/// the hot path). Values are a 4-byte key number followed by a slice of one precomputed pattern, so writing
/// and verifying a 1 KB value is two memory copies/compares instead of generating bytes per operation.
/// Output (progress, report text and JSON, error lines, exit codes) matches <see cref="LoadRun"/>.
/// </summary>
internal sealed class MixRun
{
    private const int PatternSpread = 251;
    private readonly LoadToolSettings _settings;
    private readonly MixProtocol _protocol;
    private readonly TextWriter _stdout;
    private readonly TextWriter _stderr;
    private readonly bool _plainProgress;
    private readonly CancellationTokenSource _stop = new();
    private readonly object _outputLock = new();
    private readonly byte[] _pattern;
    private readonly MixOperation[] _mixTable;
    private Worker[] _workers = [];
    private string? _failure;
    private long _failedAfter;
    private long _sharedCompleted;
    private volatile bool _stopping;
    private TimeSpan _toolCpu;
    private LoadMeasurement _measurement = null!;

    public MixRun(LoadToolSettings settings, MixProtocol protocol, TextWriter stdout, TextWriter stderr, bool plainProgress)
    {
        _settings = settings;
        _protocol = protocol;
        _stdout = stdout;
        _stderr = stderr;
        _plainProgress = plainProgress;
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

    public async Task<int> RunAsync()
    {
        var s = _settings;
        var limitOps = s.Duration > 0 && s.Ops < 0 ? long.MaxValue : s.EffectiveOps;
        _workers = new Worker[s.Clients];
        var transport = new LoadToolTransport(s.Threads);
        try
        {
            for (var i = 0; i < _workers.Length; i++)
            {
                _workers[i] = new Worker(this, limitOps, await MixConnection.ConnectAsync(_protocol, s.Connect!, s.ValueSize, s.Pipeline, transport.For(i), s.TlsContext).ConfigureAwait(false));
            }
        }
        catch (Exception)
        {
            WriteError("Error, 'DC_CTX' creation failed");
            DisposeWorkers();
            return 1;
        }

        var cpuBefore = Environment.CpuUsage.TotalTime;
        var showProgress = !s.Quiet && !s.Json;
        _measurement = new LoadMeasurement(s, intervals: showProgress);
        var clock = _measurement.Clock;
        _measurement.Start(Completed, _stop.Token);
        if (s.Duration > 0)
        {
            _stop.Token.Register(() => _stopping = true);
            _stop.CancelAfter(TimeSpan.FromSeconds(s.Warmup + s.Duration));
        }

        var progress = showProgress ? ShowProgressAsync() : Task.CompletedTask;
        try
        {
            var all = Task.WhenAll(_workers.Select(w => Task.Run(w.RunAsync)));
            if (s.Duration > 0)
            {
                // A peer that stops answering (or speaks another protocol) must not hang a timed run: after a
                // grace period the connections are closed, which fails the pending receives.
                await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(s.Warmup + s.Duration + 10))).ConfigureAwait(false);
                if (!all.IsCompleted)
                {
                    Fail("Error, transaction failure");
                    DisposeWorkers();
                }
            }

            await all.ConfigureAwait(false);
        }
        finally
        {
            clock.Stop();
            _toolCpu = Environment.CpuUsage.TotalTime - cpuBefore;
            _stopping = true;
            _stop.Cancel();
            await progress.ConfigureAwait(false);
            DisposeWorkers();
        }

        var histogram = new LatencyHistogram();
        foreach (var worker in _workers)
        {
            histogram.Merge(worker.Latency);
        }

        if (_failure is not null)
        {
            WriteError(_failure);
            WriteError($"Info, {_failedAfter} tests succeeded before the first failure");
            Report(histogram, _measurement.MeasuredElapsed, failed: true);
            return 1;
        }

        Report(histogram, _measurement.MeasuredElapsed, failed: false);
        return 0;
    }

    private long Completed()
    {
        long total = 0;
        foreach (var worker in _workers)
        {
            total += worker is null ? 0 : Volatile.Read(ref worker.Done);
        }

        return total;
    }

    private void DisposeWorkers()
    {
        foreach (var worker in _workers)
        {
            worker?.Dispose();
        }
    }

    private void Fail(string message)
    {
        if (Interlocked.CompareExchange(ref _failure, message, null) is null)
        {
            _failedAfter = Completed();
            _stopping = true;
            _stop.Cancel();
        }
    }

    private void CountShared()
    {
        // Only with -progress: the reference prints every n-th operation over all clients.
        var count = Interlocked.Increment(ref _sharedCompleted);
        if (count % _settings.Progress == 0)
        {
            WriteError(string.Create(CultureInfo.InvariantCulture, $"Info, total operations = {count,7}"));
        }
    }

    private void WriteError(string line)
    {
        lock (_outputLock)
        {
            _stderr.WriteLine(line);
            _stderr.Flush();
        }
    }

    private Task ShowProgressAsync() =>
        ProgressPrinter.RunAsync(_measurement, Completed, _stdout, _outputLock, _plainProgress, _stop.Token);

    private void Report(LatencyHistogram h, TimeSpan elapsed, bool failed)
    {
        var s = _settings;
        var mode = "mix " + string.Join(',', s.Mix!.Select(m => $"{m.Operation.ToString().ToLowerInvariant()}:{m.Weight}"));
        if (_protocol == MixProtocol.Memcached)
        {
            mode += " (memcached protocol)";
        }

        lock (_outputLock)
        {
            LoadReport.Write(_stdout, s, new LoadReport.Result(mode, _measurement.MeasuredOps(Completed()), elapsed, h, Persistent: true, failed)
            {
                Protocol = _protocol == MixProtocol.Memcached ? "memcached" : "distcache",
                ToolCpu = _toolCpu,
            });
        }
    }

    /// <summary>One client: one connection, its own random source, plan, value buffer, counter and histogram.</summary>
    private sealed class Worker : IDisposable
    {
        private readonly MixRun _run;
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
        private readonly bool _countShared;
        private uint _nextTag;

        /// <summary>Operations completed (written by this worker only).</summary>
        public long Done;

        public Worker(MixRun run, long ops, MixConnection connection)
        {
            _run = run;
            _ops = ops;
            _connection = connection;
            var s = run._settings;
            _operations = new MixOperation[s.Pipeline];
            _keys = new int[s.Pipeline];
            _tags = new uint[s.Pipeline];
            _value = new byte[s.ValueSize];
            _keySpace = s.Keys;
            _timeout = s.Timeout;
            _countShared = s.Progress > 0;
            _nextTag = (uint)_random.Next();
        }

        public LatencyHistogram Latency { get; } = new();

        public async Task RunAsync()
        {
            long done = 0;
            try
            {
                while (done < _ops && !_run._stopping)
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
                _run.Fail("Error, transaction failure");
            }
        }

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
        private async ValueTask<bool> RunBatchAsync(int batch)
        {
            var table = _run._mixTable;
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
                _run._measurement.Record(Latency, (long)Stopwatch.GetElapsedTime(start).TotalMicroseconds);
                var error = Check(_operations[i], _keys[i], reply);
                if (error is not null)
                {
                    _run.Fail(error);
                    return false;
                }

                Volatile.Write(ref Done, Done + 1);
                if (_countShared)
                {
                    _run.CountShared();
                }
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
            _run._pattern.AsSpan(key % PatternSpread, _value.Length - 4).CopyTo(_value.AsSpan(4));
        }

        private bool Matches(int key, ReadOnlySpan<byte> value) =>
            value.Length == _value.Length
            && BinaryPrimitives.ReadInt32LittleEndian(value) == key
            && value[4..].SequenceEqual(_run._pattern.AsSpan(key % PatternSpread, _value.Length - 4));

        public void Dispose() => _connection.Dispose();
    }
}
