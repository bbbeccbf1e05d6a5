using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using CacheHost.Client;
using CacheHost.Protocols.DistCache;
using CacheHost.Testing;

namespace CacheHost.ClientProxy.Tests;

/// <summary>
/// Load through a proxy for the fault and failover tests: clients that ADD/GET/REMOVE/HAVE their own keys, and a
/// tally that counts each kind of answer and records every answer that is not the client's own (a violation).
/// </summary>
internal static class ProxyLoad
{
    public static async Task RunClientAsync(int client, string address, Tally tally, Stopwatch clock, CancellationToken stop)
    {
        await using var context = await DistCacheClient.CreateAsync(address, DistCacheClientFlags.Persistent);
        var random = new Random(client);
        while (!stop.IsCancellationRequested)
        {
            var key = random.Next(50);
            var id = Encoding.ASCII.GetBytes($"fault-client{client}-key{key}");
            var data = Encoding.ASCII.GetBytes($"data-of-client{client}-key{key}-{new string('x', 40 + key)}");
            var op = (DistCacheOperation)random.Next(4);
            var payload = op == DistCacheOperation.Add ? AddPayload(id, data) : id;
            var status = await context.TransactAsync(op, payload);
            var response = context.LastResponse.ToArray();
            tally.Record(client, op, status, response, data, clock.Elapsed);
        }
    }

    private static byte[] AddPayload(byte[] id, byte[] data)
    {
        var payload = new byte[8 + id.Length + data.Length];
        AddRequest.Write(payload, 60_000, id, data);
        return payload;
    }

    public sealed class Tally
    {
        private readonly ConcurrentQueue<TimeSpan> _okTimes = new();
        private long _ok;
        private long _disconnected;
        private long _empty;

        public ConcurrentQueue<string> Violations { get; } = new();

        public long Ok => Interlocked.Read(ref _ok);

        public long Disconnected => Interlocked.Read(ref _disconnected);

        public long Empty => Interlocked.Read(ref _empty);

        public bool OkSince(TimeSpan since) => _okTimes.Any(t => t >= since);

        public TimeSpan? FirstOkAfter(TimeSpan since) => _okTimes.Where(t => t >= since).Select(t => (TimeSpan?)t).Min();

        public void Record(int client, DistCacheOperation op, DistCacheTransactionStatus status, byte[] response, byte[] ownData, TimeSpan at)
        {
            switch (status)
            {
                case DistCacheTransactionStatus.EmptyResponse:
                    Interlocked.Increment(ref _empty);
                    return;
                case DistCacheTransactionStatus.Ok:
                    break;
                default:
                    // Mismatch = someone else's answer; network/protocol errors must not happen between client and proxy.
                    Violations.Enqueue($"client {client} {op}: {status}");
                    return;
            }

            if (response.Length == 1 && response[0] == 0x02)
            {
                Interlocked.Increment(ref _disconnected);
                return;
            }

            var fine = op switch
            {
                DistCacheOperation.Add => response.Length == 1 && response[0] is 0x00 or 0x65,
                DistCacheOperation.Get => (response.Length == 1 && response[0] == 0x01) || response.AsSpan().SequenceEqual(ownData),
                _ => response.Length == 1 && response[0] <= 0x01,
            };
            if (!fine)
            {
                Violations.Enqueue($"client {client} {op}: foreign or corrupt answer {Hex.Of(response)}");
                return;
            }

            Interlocked.Increment(ref _ok);
            _okTimes.Enqueue(at);
        }
    }
}
