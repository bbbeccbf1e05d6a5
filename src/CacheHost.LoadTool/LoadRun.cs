using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using CacheHost.Client;
using CacheHost.Protocols.DistCache;
using CacheHost.Transport;

namespace CacheHost.LoadTool;

/// <summary>
/// One run of the load tool. Default mode is dc_test's barrage (distcache §11.2): per client, random sample sessions,
/// uniformly random ADD/REMOVE/GET/HAVE, every result checked against a local model with libdistcache's result
/// rules; the first wrong result prints dc_test's error line and ends the run with exit code 1. The mix mode
/// (-mix) is an unmodelled memcached-style workload whose answers are still checked for plausibility (a GET
/// hit must carry exactly the value written for that key). Timing goes to stdout so stderr keeps the
/// reference's messages only.
/// </summary>
internal sealed class LoadRun
{
    private readonly LoadToolSettings _settings;
    private readonly TextWriter _stdout;
    private readonly TextWriter _stderr;
    private readonly bool _plainProgress;
    private readonly CancellationTokenSource _stop = new();
    private readonly object _outputLock = new();
    private string? _failure;
    private long _failedAfter;
    private long _completed;
    private LoadMeasurement _measurement = null!;

    public LoadRun(LoadToolSettings settings, TextWriter stdout, TextWriter stderr, bool plainProgress)
    {
        _settings = settings;
        _stdout = stdout;
        _stderr = stderr;
        _plainProgress = plainProgress;
    }

    public async Task<int> RunAsync()
    {
        var s = _settings;
        var limitOps = s.Duration > 0 && s.Ops < 0 ? long.MaxValue : s.EffectiveOps;
        var workers = new Worker[s.Clients];
        var transport = new LoadToolTransport(s.Threads);
        for (var i = 0; i < workers.Length; i++)
        {
            workers[i] = new Worker(this, i, limitOps, transport.For(i));
        }

        if (s.Mix is null)
        {
            var opsText = limitOps == long.MaxValue ? $"{s.Duration.ToString(CultureInfo.InvariantCulture)} seconds of" : (limitOps * s.Clients).ToString(CultureInfo.InvariantCulture);
            WriteError($"Info, {s.Sessions * s.Clients} sessions generated, will run {opsText} random tests");
        }

        try
        {
            foreach (var worker in workers)
            {
                await worker.OpenAsync().ConfigureAwait(false);
            }
        }
        catch (Exception)
        {
            WriteError("Error, 'DC_CTX' creation failed");
            foreach (var worker in workers)
            {
                worker.Dispose();
            }

            return 1;
        }

        var showProgress = !s.Quiet && !s.Json;
        _measurement = new LoadMeasurement(s, intervals: showProgress);
        var clock = _measurement.Clock;
        _measurement.Start(() => Interlocked.Read(ref _completed), _stop.Token);
        if (s.Duration > 0)
        {
            _stop.CancelAfter(TimeSpan.FromSeconds(s.Warmup + s.Duration));
        }

        var progress = showProgress ? ShowProgressAsync() : Task.CompletedTask;
        try
        {
            await Task.WhenAll(workers.Select(w => Task.Run(w.RunAsync))).ConfigureAwait(false);
        }
        finally
        {
            clock.Stop();
            _stop.Cancel();
            await progress.ConfigureAwait(false);
            foreach (var worker in workers)
            {
                worker.Dispose();
            }
        }

        var histogram = new LatencyHistogram();
        foreach (var worker in workers)
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

        if (s.Mix is null)
        {
            WriteError("Info, all tests complete");
        }

        Report(histogram, _measurement.MeasuredElapsed, failed: false);
        return 0;
    }

    private bool Stopping => _stop.IsCancellationRequested;

    private void Fail(string message)
    {
        if (Interlocked.CompareExchange(ref _failure, message, null) is null)
        {
            _failedAfter = Interlocked.Read(ref _completed);
            _stop.Cancel();
        }
    }

    private void Completed()
    {
        var count = Interlocked.Increment(ref _completed);
        if (_settings.Progress > 0 && count % _settings.Progress == 0)
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
        ProgressPrinter.RunAsync(_measurement, () => Interlocked.Read(ref _completed), _stdout, _outputLock, _plainProgress, _stop.Token);

    private void Report(LatencyHistogram h, TimeSpan elapsed, bool failed)
    {
        var s = _settings;
        var mode = s.Mix is null ? "dc_test barrage (verified)" : "mix " + string.Join(',', s.Mix.Select(m => $"{m.Operation.ToString().ToLowerInvariant()}:{m.Weight}"));
        lock (_outputLock)
        {
            LoadReport.Write(_stdout, s, new LoadReport.Result(mode, _measurement.MeasuredOps(Interlocked.Read(ref _completed)), elapsed, h, s.Persistent, failed));
        }
    }

    /// <summary>One client: its own sessions (or key space view), model, connection and latency record.</summary>
    private sealed class Worker : IDisposable
    {
        private readonly LoadRun _run;
        private readonly LoadToolSettings _s;
        private readonly long _ops;
        private readonly Random _random;
        private readonly Session[] _sessions;
        private readonly int[] _mixTable;
        private readonly Planned[] _plan;
        private readonly byte[] _scratch = new byte[DistCacheProtocol.MaxPayload];
        private readonly byte[] _expected;
        private readonly TransportOptions _transport;
        private DistCacheClient? _client;
        private DistCacheConnection? _connection;

        // -rate: Stopwatch ticks between this client's scheduled starts, and the next one (0 = not yet started).
        private readonly long _period;
        private long _next;

        public Worker(LoadRun run, int index, long ops, TransportOptions transport)
        {
            _transport = transport;
            _run = run;
            _s = run._settings;
            _ops = ops;
            _random = new Random(unchecked(Environment.TickCount * 31 + index * 7919 + Environment.ProcessId));
            _plan = new Planned[_s.Pipeline];
            _period = _s.Rate > 0 ? (long)(Stopwatch.Frequency * (double)_s.Clients / _s.Rate) : 0;
            _expected = new byte[Math.Max(_s.ValueSize, 1)];
            if (_s.Mix is null)
            {
                _sessions = new Session[_s.Sessions];
                for (var i = 0; i < _sessions.Length; i++)
                {
                    // id 10..63 random bytes, data uniform in [datamin, datamax) (distcache §11.2).
                    var id = RandomNumberGenerator.GetBytes(10 + Random.Shared.Next(54));
                    var length = _s.DataMax > _s.DataMin ? _s.DataMin + Random.Shared.Next(_s.DataMax - _s.DataMin) : _s.DataMin;
                    _sessions[i] = new Session(id, RandomNumberGenerator.GetBytes(length));
                }

                _mixTable = [];
            }
            else
            {
                _sessions = [];
                // Map by name: MixOperation and DistCacheOperation number their members differently.
                _mixTable = _s.Mix.SelectMany(m => Enumerable.Repeat((int)ToDistCache(m.Operation), m.Weight)).ToArray();
            }
        }

        public LatencyHistogram Latency { get; } = new();

        public async Task OpenAsync()
        {
            if (_s.Pipeline > 1)
            {
                _connection = await DistCacheConnection.ConnectAsync(CacheHost.Transport.TransportAddress.Parse(_s.Connect!), _transport, _s.TlsContext).ConfigureAwait(false);
            }
            else
            {
                _client = await DistCacheClient.CreateAsync(_s.Connect!, _s.Persistent ? DistCacheClientFlags.Persistent : DistCacheClientFlags.None, _transport, _s.TlsContext).ConfigureAwait(false);
            }
        }

        public async Task RunAsync()
        {
            long done = 0;
            while (done < _ops && !_run.Stopping)
            {
                var batch = (int)Math.Min(_plan.Length, _ops - done);
                var ok = _connection is not null ? await RunBatchAsync(batch).ConfigureAwait(false) : await RunOneAsync().ConfigureAwait(false);
                if (!ok)
                {
                    return;
                }

                done += batch;
            }
        }

        private async Task<bool> RunOneAsync()
        {
            var length = Plan(ref _plan[0], _scratch);
            var start = _period > 0 ? await ScheduledStartAsync().ConfigureAwait(false) : Stopwatch.GetTimestamp();
            if (start < 0)
            {
                return true; // stopped while waiting for the slot; the loop ends
            }

            var status = await _client!.TransactAsync(_plan[0].Operation, _scratch.AsMemory(0, length)).ConfigureAwait(false);
            _run._measurement.Record(Latency, (long)Stopwatch.GetElapsedTime(start).TotalMicroseconds);
            return Check(in _plan[0], status, status == DistCacheTransactionStatus.Ok ? _client.LastResponse : default);
        }

        private async Task<bool> RunBatchAsync(int batch)
        {
            var connection = _connection!;
            for (var i = 0; i < batch; i++)
            {
                var length = Plan(ref _plan[i], _scratch);
                _plan[i].Uid = DistCacheUids.Next();
                connection.AppendRequest(_plan[i].Uid, _plan[i].Operation, _scratch.AsSpan(0, length));
            }

            var start = Stopwatch.GetTimestamp();
            try
            {
                await connection.SendAsync().ConfigureAwait(false);
                for (var i = 0; i < batch; i++)
                {
                    var (uid, operation) = await connection.ReceiveAsync().ConfigureAwait(false);
                    var micros = (long)Stopwatch.GetElapsedTime(start).TotalMicroseconds;
                    _run._measurement.Record(Latency, micros);
                    var status = uid != _plan[i].Uid || operation != _plan[i].Operation ? DistCacheTransactionStatus.Mismatch
                        : connection.Payload.IsEmpty ? DistCacheTransactionStatus.EmptyResponse
                        : DistCacheTransactionStatus.Ok;
                    if (!Check(in _plan[i], status, status == DistCacheTransactionStatus.Ok ? connection.Payload : default))
                    {
                        return false;
                    }
                }
            }
            catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or InvalidDataException or ObjectDisposedException or ConnectionAbortedException)
            {
                _run.Fail("Error, transaction failure");
                return false;
            }

            return true;
        }

        /// <summary>
        /// -rate: waits for this request's scheduled start and returns it (a timestamp), or -1 when the run stops
        /// meanwhile. The schedule does not slip when the server is slow: a late request starts at once and its
        /// latency still counts from its slot, so the time it queued behind a stall is measured (coordinated
        /// omission). Sleeps for the bulk of a wait, yields for the last 2 ms (timer slack is not the server's).
        /// </summary>
        private async ValueTask<long> ScheduledStartAsync()
        {
            var due = _next == 0 ? Stopwatch.GetTimestamp() : _next;
            _next = due + _period;
            var slack = Stopwatch.Frequency / 500;
            while (true)
            {
                var ahead = due - Stopwatch.GetTimestamp();
                if (ahead <= 0)
                {
                    return due;
                }

                if (_run.Stopping)
                {
                    return -1;
                }

                if (ahead > slack)
                {
                    try
                    {
                        await Task.Delay(TimeSpan.FromSeconds((double)(ahead - slack) / Stopwatch.Frequency), _run._stop.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        return -1;
                    }
                }
                else
                {
                    Thread.Yield();
                }
            }
        }

        /// <summary>Chooses the next operation, writes its request payload into <paramref name="payload"/>, updates the model.</summary>
        private int Plan(ref Planned p, byte[] payload)
        {
            if (_s.Mix is null)
            {
                var index = _random.Next(_sessions.Length);
                var session = _sessions[index];
                p.Index = index;
                p.Operation = (DistCacheOperation)_random.Next(4);
                p.ExpectPresent = session.Present;
                switch (p.Operation)
                {
                    case DistCacheOperation.Add:
                        var low = (long)(_s.Timeout - _s.TimeVar) * 1000;
                        var high = (long)(_s.Timeout + _s.TimeVar) * 1000;
                        var timeout = (uint)(high > low ? low + _random.NextInt64(high - low) : low);
                        session.Present = true;
                        return AddRequest.Write(payload, timeout, session.Id, session.Data);
                    case DistCacheOperation.Remove:
                        session.Present = false;
                        break;
                }

                session.Id.CopyTo(payload, 0);
                return session.Id.Length;
            }

            var key = _random.Next(_s.Keys);
            p.Index = key;
            p.Operation = (DistCacheOperation)_mixTable[_random.Next(_mixTable.Length)];
            var idLength = WriteKey(payload, key);
            if (p.Operation != DistCacheOperation.Add)
            {
                return idLength;
            }

            // ADD: timeout(4) id_len(4) id value; the value is a pattern derived from the key so GET hits can be verified.
            Span<byte> id = stackalloc byte[idLength];
            payload.AsSpan(0, idLength).CopyTo(id);
            FillValue(_expected, key);
            return AddRequest.Write(payload, (uint)_s.Timeout * 1000, id, _expected.AsSpan(0, _s.ValueSize));
        }

        private bool Check(in Planned p, DistCacheTransactionStatus status, ReadOnlySpan<byte> payload)
        {
            var ok = status == DistCacheTransactionStatus.Ok;
            var error = _s.Mix is null ? CheckModel(p, ok, payload) : CheckMix(p, ok, payload);
            if (error is not null)
            {
                _run.Fail(error);
                return false;
            }

            _run.Completed();
            return true;
        }

        private string? CheckModel(in Planned p, bool ok, ReadOnlySpan<byte> payload)
        {
            var present = p.ExpectPresent;
            switch (p.Operation)
            {
                case DistCacheOperation.Add:
                    var added = ok && DistCacheResults.IsSuccess(payload);
                    return present ? (added ? "Error, add succeeded and shouldn't have!" : null) : (added ? null : "Error, add failed!");
                case DistCacheOperation.Remove:
                    var removed = ok && DistCacheResults.IsSuccess(payload);
                    return present ? (removed ? null : "Error, remove failed!") : (removed ? "Error, remove succeeded and shouldn't have!" : null);
                case DistCacheOperation.Get:
                    var hit = ok && DistCacheResults.IsHit(payload);
                    if (!present)
                    {
                        return hit ? "Error, get succeeded and shouldn't have!" : null;
                    }

                    if (!hit)
                    {
                        return "Error, get failed!";
                    }

                    return payload.SequenceEqual(_sessions[p.Index].Data) ? null : "Error, received mismatched session";
                default:
                    var have = ok ? DistCacheResults.Have(payload) : DistCacheHaveResult.Error;
                    if (have == DistCacheHaveResult.Error)
                    {
                        return "Error, transaction failure";
                    }

                    return present ? (have == DistCacheHaveResult.Yes ? null : "Error, have failed!") : (have == DistCacheHaveResult.No ? null : "Error, have succeeded and shouldn't have!");
            }
        }

        private static DistCacheOperation ToDistCache(MixOperation operation) => operation switch
        {
            MixOperation.Get => DistCacheOperation.Get,
            MixOperation.Add => DistCacheOperation.Add,
            MixOperation.Remove => DistCacheOperation.Remove,
            _ => DistCacheOperation.Have,
        };

        private string? CheckMix(in Planned p, bool ok, ReadOnlySpan<byte> payload)
        {
            if (!ok)
            {
                return "Error, transaction failure";
            }

            switch (p.Operation)
            {
                case DistCacheOperation.Add:
                    return payload.Length == 1 && payload[0] is 0x00 or (byte)DistCacheResult.AddMatchingSession ? null : "Error, add failed!";
                case DistCacheOperation.Get:
                    if (DistCacheResults.IsHit(payload))
                    {
                        FillValue(_expected, p.Index);
                        return payload.SequenceEqual(_expected.AsSpan(0, _s.ValueSize)) ? null : "Error, received mismatched session";
                    }

                    return payload.Length == 1 && payload[0] == 0x01 ? null : "Error, get failed!";
                default:
                    return payload.Length == 1 && payload[0] <= 0x01 ? null : "Error, transaction failure";
            }
        }

        private static int WriteKey(byte[] destination, int key)
        {
            "cachehost-key-"u8.CopyTo(destination);
            key.TryFormat(destination.AsSpan(14), out var written, default, CultureInfo.InvariantCulture);
            return 14 + written;
        }

        private void FillValue(byte[] destination, int key)
        {
            var seed = (uint)key * 2654435761u;
            for (var i = 0; i < _s.ValueSize; i++)
            {
                seed = (seed * 1103515245u) + 12345u;
                destination[i] = (byte)(seed >> 16);
            }
        }

        public void Dispose()
        {
            _client?.Dispose();
            _connection?.Dispose();
        }
    }

    private sealed class Session(byte[] id, byte[] data)
    {
        public byte[] Id { get; } = id;

        public byte[] Data { get; } = data;

        public bool Present { get; set; }
    }

    private struct Planned
    {
        public DistCacheOperation Operation;
        public int Index;
        public bool ExpectPresent;
        public uint Uid;
    }
}
