using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using CacheHost.Client;
using CacheHost.Protocols.DistCache;
using CacheHost.Transport;

namespace CacheHost.LoadTool;

/// <summary>
/// The workload through the client library. Default mode is dc_test's barrage (distcache §11.2): per client, random
/// sample sessions, uniformly random ADD/REMOVE/GET/HAVE, every result checked against a local model with
/// libdistcache's result rules; the first wrong result prints dc_test's error line and ends the run with exit
/// code 1. The mix mode (-mix) without -persistent is an unmodelled memcached-style workload whose answers are
/// still checked for plausibility (a GET hit must carry exactly the value written for that key).
/// </summary>
internal sealed class DistCacheClientWorkload(LoadToolSettings settings) : LoadWorkload
{
    public override async Task<LoadWorker> ConnectAsync(LoadRun run, int index, long ops, TransportOptions transport)
    {
        var worker = new Worker(run, index, ops, transport);
        try
        {
            await worker.OpenAsync().ConfigureAwait(false);
            return worker;
        }
        catch
        {
            worker.Dispose();
            throw;
        }
    }

    public override string? StartLine(long limitOps)
    {
        if (settings.Mix is not null)
        {
            return null;
        }

        var opsText = limitOps == long.MaxValue
            ? $"{settings.Duration.ToString(CultureInfo.InvariantCulture)} seconds of"
            : (limitOps * settings.Clients).ToString(CultureInfo.InvariantCulture);
        return $"Info, {settings.Sessions * settings.Clients} sessions generated, will run {opsText} random tests";
    }

    public override string? CompleteLine => settings.Mix is null ? "Info, all tests complete" : null;

    public override LoadReport.Result Describe(long ops, TimeSpan elapsed, LatencyHistogram latency, bool failed, TimeSpan toolCpu)
    {
        var mode = settings.Mix is null
            ? "dc_test barrage (verified)"
            : "mix " + string.Join(',', settings.Mix.Select(m => $"{m.Operation.ToString().ToLowerInvariant()}:{m.Weight}"));
        return new LoadReport.Result(mode, ops, elapsed, latency, settings.Persistent, failed);
    }

    /// <summary>One client: its own sessions (or key space view), model, connection and latency record.</summary>
    private sealed class Worker : LoadWorker
    {
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
            : base(run)
        {
            _transport = transport;
            _s = run.Settings;
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

        public override async Task RunAsync()
        {
            long done = 0;
            while (done < _ops && !Run.Stopping)
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
            Run.Measurement.Record(Latency, (long)Stopwatch.GetElapsedTime(start).TotalMicroseconds);
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
                    Run.Measurement.Record(Latency, micros);
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
                Run.Fail("Error, transaction failure");
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

                if (Run.Stopping)
                {
                    return -1;
                }

                if (ahead > slack)
                {
                    try
                    {
                        await Task.Delay(TimeSpan.FromSeconds((double)(ahead - slack) / Stopwatch.Frequency), Run.StopToken).ConfigureAwait(false);
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
                Run.Fail(error);
                return false;
            }

            Completed();
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

        public override void Dispose()
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
