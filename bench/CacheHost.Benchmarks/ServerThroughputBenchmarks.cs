using System.Buffers.Binary;
using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using CacheHost.Protocols.DistCache;
using CacheHost.Testing;

namespace CacheHost.Benchmarks;

/// <summary>
/// In-process CacheServer over a real unix socket: 1:4 ADD:GET of 1 KB sessions (the memcached comparison
/// mix), with clients waiting for each reply (Depth 1) or pipelining (Depth 16). Reported per operation.
/// </summary>
[MemoryDiagnoser]
public class ServerThroughputBenchmarks
{
    private const int OperationsPerClient = 2000;
    private InProcessCacheServer? _server;
    private Socket[] _clients = [];
    private byte[][] _batches = [];

    [Params(1, 16)]
    public int Clients { get; set; }

    [Params(1, 16)]
    public int Depth { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _server = InProcessCacheServer.StartAsync(capacity: 1_000_000).GetAwaiter().GetResult();
        _clients = Enumerable.Range(0, Clients).Select(_ => _server.Connect()).ToArray();
        var random = new Random(1);
        var value = new byte[1024];
        random.NextBytes(value);
        // Pre-encode every request batch so that the benchmark measures the server, not the client.
        _batches = new byte[OperationsPerClient / Depth][];
        uint uid = 0;
        for (var b = 0; b < _batches.Length; b++)
        {
            var writer = new System.Buffers.ArrayBufferWriter<byte>();
            for (var d = 0; d < Depth; d++)
            {
                var id = System.Text.Encoding.ASCII.GetBytes($"session-{random.Next(50_000):D8}-0123456789abcdef");
                if (random.Next(5) == 0)
                {
                    var payload = new byte[8 + id.Length + value.Length];
                    AddRequest.Write(payload, 600_000, id, value);
                    DistCacheMessageWriter.Write(writer, false, ++uid, DistCacheOperation.Add, payload);
                }
                else
                {
                    DistCacheMessageWriter.Write(writer, false, ++uid, DistCacheOperation.Get, id);
                }
            }

            _batches[b] = writer.WrittenSpan.ToArray();
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var client in _clients)
        {
            client.Dispose();
        }

        _server!.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    [Benchmark(OperationsPerInvoke = OperationsPerClient)]
    public Task MixedAddGet1K() => Task.WhenAll(_clients.Select(c => Task.Factory.StartNew(() => Drive(c), TaskCreationOptions.LongRunning)));

    private void Drive(Socket client)
    {
        var buffer = new byte[64 * 1024];
        foreach (var batch in _batches)
        {
            client.Send(batch);
            var replies = 0;
            var have = 0;
            var offset = 0;
            while (replies < Depth)
            {
                have += client.Receive(buffer, have, buffer.Length - have, SocketFlags.None);
                while (have - offset >= DistCacheProtocol.HeaderSize)
                {
                    var length = BinaryPrimitives.ReadUInt16BigEndian(buffer.AsSpan(offset + 12));
                    if (have - offset < DistCacheProtocol.HeaderSize + length)
                    {
                        break;
                    }

                    replies += buffer[offset + 11];
                    offset += DistCacheProtocol.HeaderSize + length;
                }

                if (offset == have)
                {
                    offset = have = 0;
                }
            }
        }
    }
}
