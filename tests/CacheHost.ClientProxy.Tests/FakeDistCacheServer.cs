using System.Buffers;
using System.Net.Sockets;
using CacheHost.Protocols.DistCache;
using CacheHost.Testing;
using CacheHost.Transport;

namespace CacheHost.ClientProxy.Tests;

/// <summary>
/// A deliberately scriptable distcache server for tests: real unix socket, real framing (the shared codec),
/// but the answer to every request comes from <c>respond</c> (payload bytes, or null to close the connection).
/// Used to feed clients exact, possibly wrong, answers.
/// </summary>
internal sealed class FakeDistCacheServer : IDisposable
{
    private readonly Socket _listener;
    private readonly Func<DistCacheOperation, byte[], byte[]?> _respond;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<uint> _uids = [];

    public FakeDistCacheServer(Func<DistCacheOperation, byte[], byte[]?> respond)
    {
        _respond = respond;
        var path = TestPaths.Socket("fake");
        Address = "UNIX:" + path;
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(path));
        _listener.Listen(64);
        _ = AcceptLoopAsync();
    }

    public string Address { get; }

    /// <summary>Uid put into replies (default: the request's, as a correct server does).</summary>
    public Func<uint, uint> ReplyUid { get; init; } = static uid => uid;

    /// <summary>Operation put into replies (default: the request's).</summary>
    public Func<DistCacheOperation, DistCacheOperation> ReplyOperation { get; init; } = static op => op;

    /// <summary>Requests left unanswered (the connection stays open), e.g. a server that stopped answering.</summary>
    public Func<DistCacheOperation, bool> Unanswered { get; init; } = static _ => false;

    /// <summary>Uids of the requests received, in order.</summary>
    public IReadOnlyList<uint> Uids
    {
        get
        {
            lock (_uids)
            {
                return [.. _uids];
            }
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception)
            {
                return;
            }

            _ = ServeAsync(socket);
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        using var owned = socket;
        var buffer = new byte[256 * 1024];
        var length = 0;
        try
        {
            while (true)
            {
                var n = await socket.ReceiveAsync(buffer.AsMemory(length), SocketFlags.None, _stop.Token);
                if (n == 0)
                {
                    return;
                }

                length += n;
                while (true)
                {
                    var sequence = new ReadOnlySequence<byte>(buffer, 0, length);
                    var status = DistCacheMessageReader.TryRead(sequence, expectResponse: false, out var message, out _, out _);
                    if (status == OperationStatus.NeedMoreData)
                    {
                        break;
                    }

                    if (status != OperationStatus.Done)
                    {
                        return;
                    }

                    var payload = new byte[message.PayloadLength];
                    message.CopyPayloadTo(sequence.Slice(0, message.WireLength), payload);
                    lock (_uids)
                    {
                        _uids.Add(message.Uid);
                    }

                    var reply = _respond(message.Operation, payload);
                    if (reply is null)
                    {
                        return;
                    }

                    if (!Unanswered(message.Operation))
                    {
                        var writer = new ArrayBufferWriter<byte>();
                        DistCacheMessageWriter.Write(writer, isResponse: true, ReplyUid(message.Uid), ReplyOperation(message.Operation), reply);
                        await socket.SendAsync(writer.WrittenMemory, SocketFlags.None);
                    }

                    Buffer.BlockCopy(buffer, message.WireLength, buffer, 0, length - message.WireLength);
                    length -= message.WireLength;
                }
            }
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
        }
    }

    /// <summary>A correct in-memory store whose GET answers are passed through <paramref name="corruptGet"/>.</summary>
    public static FakeDistCacheServer WithStore(Func<byte[], byte[]> corruptGet)
    {
        var store = new Dictionary<string, byte[]>();
        return new FakeDistCacheServer((op, payload) =>
        {
            lock (store)
            {
                switch (op)
                {
                    case DistCacheOperation.Add:
                        var add = AddRequest.Parse(payload);
                        var key = Convert.ToHexString(add.Id);
                        if (store.ContainsKey(key))
                        {
                            return [0x65];
                        }

                        store[key] = add.Data.ToArray();
                        return [0x00];
                    case DistCacheOperation.Get:
                        return store.TryGetValue(Convert.ToHexString(payload), out var data) ? corruptGet(data) : [0x01];
                    case DistCacheOperation.Remove:
                        return store.Remove(Convert.ToHexString(payload)) ? [0x00] : [0x01];
                    default:
                        return store.ContainsKey(Convert.ToHexString(payload)) ? [0x00] : [0x01];
                }
            }
        });
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
    }
}
