using System.Buffers;
using System.Net.Sockets;
using CacheHost.Protocols.DistCache;
using CacheHost.Testing;

namespace CacheHost.ClientProxy.Tests;

/// <summary>
/// A stand-in for the original C dc_server's reading defect (we have no binary): a real unix socket, a correct
/// session store, but requests are read through <see cref="CPeerBuffer"/> (4096-byte buffer, off-by-4 completeness
/// check, distcache §13.1). A final frame taken too early is executed with its stale bytes and answered ("phantom
/// reply"), and again, as a message of its own, once its real bytes have arrived — the original answers it on
/// every loop, so this is a lower bound. A non-final frame taken too early closes the connection (the original
/// appends phantom copies until its 32768-byte limit trips). Not modelled: 13.4 (closing when a pipelined request
/// meets a reply over ~4 KB).
/// </summary>
internal sealed class FakeOriginalServer : IDisposable
{
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Dictionary<string, byte[]> _store = [];
    private long _requests;
    private long _phantoms;

    public FakeOriginalServer()
    {
        var path = TestPaths.Socket("orig");
        Address = "UNIX:" + path;
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(path));
        _listener.Listen(64);
        _ = Task.Factory.StartNew(AcceptLoop, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    public string Address { get; }

    /// <summary>Messages executed, phantom ones included.</summary>
    public long Requests => Interlocked.Read(ref _requests);

    /// <summary>Messages executed from a frame taken before all its bytes were there.</summary>
    public long Phantoms => Interlocked.Read(ref _phantoms);

    private void AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = _listener.Accept();
            }
            catch (Exception)
            {
                return;
            }

            _ = Task.Factory.StartNew(() => Serve(socket), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }
    }

    private void Serve(Socket socket)
    {
        using var owned = socket;
        var reader = new CPeerBuffer(socket);
        var payload = new List<byte>();
        var readFirst = false;
        try
        {
            while (true)
            {
                var frame = reader.NextFrame(out var phantom, readFirst);
                readFirst = false;
                if (frame is not { } f)
                {
                    return;
                }

                var header = FrameHeader.Read(f.Header);
                if (header.ProtocolLevel >> 16 != DistCacheProtocol.ProtocolVersion || header.IsResponse != 0 || header.Operation > 3)
                {
                    return; // judged corrupt: closed, no reply
                }

                payload.AddRange(f.Data);
                if (header.Complete == 0)
                {
                    if (phantom)
                    {
                        return; // phantom copies overflow the message limit: connection dropped
                    }

                    continue;
                }

                Interlocked.Increment(ref _requests);
                if (phantom)
                {
                    Interlocked.Increment(ref _phantoms);
                    readFirst = true; // taken again, as a message of its own, when more bytes arrive
                }

                var reply = Execute((DistCacheOperation)header.Operation, [.. payload]);
                payload.Clear();
                var writer = new ArrayBufferWriter<byte>();
                DistCacheMessageWriter.Write(writer, isResponse: true, header.Uid, (DistCacheOperation)header.Operation, reply);
                socket.Send(writer.WrittenSpan);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or InvalidDataException)
        {
        }
    }

    private byte[] Execute(DistCacheOperation operation, byte[] payload)
    {
        lock (_store)
        {
            switch (operation)
            {
                case DistCacheOperation.Add:
                    var add = AddRequest.Parse(payload);
                    if (add.Status != AddRequestStatus.Valid)
                    {
                        return [(byte)(add.Status == AddRequestStatus.Rejected ? add.Rejection : DistCacheResult.AddCorrupt)];
                    }

                    var key = Convert.ToHexString(add.Id);
                    if (_store.ContainsKey(key))
                    {
                        return [(byte)DistCacheResult.AddMatchingSession];
                    }

                    _store[key] = add.Data.ToArray();
                    return [0];
                case DistCacheOperation.Get:
                    return _store.TryGetValue(Convert.ToHexString(payload), out var data) ? data : [1];
                case DistCacheOperation.Remove:
                    return _store.Remove(Convert.ToHexString(payload)) ? [0] : [1];
                default:
                    return _store.ContainsKey(Convert.ToHexString(payload)) ? [0] : [1];
            }
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
    }
}
