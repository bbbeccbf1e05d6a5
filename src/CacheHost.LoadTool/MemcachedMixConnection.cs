using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace CacheHost.LoadTool;

/// <summary>
/// memcached text protocol client for the -mix mode (memcached's protocol.txt): add = <c>set &lt;key&gt; 0
/// &lt;exptime&gt; &lt;bytes&gt;</c> + data -> <c>STORED</c>; get = <c>get &lt;key&gt;</c> -> <c>VALUE &lt;key&gt;
/// &lt;flags&gt; &lt;bytes&gt;</c> + data + <c>END</c>, or <c>END</c>; remove = <c>delete &lt;key&gt;</c> ->
/// <c>DELETED</c>/<c>NOT_FOUND</c>. Replies are parsed in place in a reusable receive buffer.
/// </summary>
internal sealed class MemcachedMixConnection : MixConnection
{
    private const int MaxLine = 1024;
    private readonly Socket _socket;
    private readonly byte[] _receive;
    private byte[] _send;
    private int _sendLength;
    private int _start;
    private int _end;
    private int _valueStart;
    private int _valueLength;
    private int _keyStart;
    private int _keyLength;

    public MemcachedMixConnection(Socket socket, int valueSize, int pipeline)
    {
        _socket = socket;
        _receive = new byte[Math.Max(64 * 1024, 2 * (valueSize + MaxLine + 16))];
        _send = new byte[Math.Max(4096, Math.Min(pipeline, 64) * (valueSize + 128))];
    }

    public override ReadOnlySpan<byte> Value => _receive.AsSpan(_valueStart, _valueLength);

    public override ReadOnlySpan<byte> ValueKey => _receive.AsSpan(_keyStart, _keyLength);

    public override void Append(MixOperation operation, uint tag, ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, int timeoutSeconds)
    {
        var needed = key.Length + value.Length + 64;
        if (_send.Length - _sendLength < needed)
        {
            Array.Resize(ref _send, Math.Max(_send.Length * 2, _sendLength + needed));
        }

        var span = _send.AsSpan(_sendLength);
        int n;
        switch (operation)
        {
            case MixOperation.Add:
                n = Put(span, "set "u8);
                n += Put(span[n..], key);
                n += Put(span[n..], " 0 "u8);
                timeoutSeconds.TryFormat(span[n..], out var w1, default, System.Globalization.CultureInfo.InvariantCulture);
                n += w1;
                span[n++] = (byte)' ';
                value.Length.TryFormat(span[n..], out var w2, default, System.Globalization.CultureInfo.InvariantCulture);
                n += w2;
                n += Put(span[n..], "\r\n"u8);
                n += Put(span[n..], value);
                n += Put(span[n..], "\r\n"u8);
                break;
            case MixOperation.Get:
                n = Put(span, "get "u8);
                n += Put(span[n..], key);
                n += Put(span[n..], "\r\n"u8);
                break;
            case MixOperation.Remove:
                n = Put(span, "delete "u8);
                n += Put(span[n..], key);
                n += Put(span[n..], "\r\n"u8);
                break;
            default:
                throw new NotSupportedException("memcached has no HAVE");
        }

        _sendLength += n;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public override async ValueTask SendAsync()
    {
        var sent = 0;
        while (sent < _sendLength)
        {
            sent += await _socket.SendAsync(_send.AsMemory(sent, _sendLength - sent), SocketFlags.None).ConfigureAwait(false);
        }

        _sendLength = 0;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public override async ValueTask<MixReply> ReceiveAsync(MixOperation operation, uint tag)
    {
        while (true)
        {
            var reply = TryParse(operation);
            if (reply is { } done)
            {
                return done;
            }

            if (_start == _end)
            {
                _start = _end = 0;
            }
            else if (_end == _receive.Length)
            {
                if (_start == 0)
                {
                    throw new InvalidDataException("memcached reply larger than the receive buffer");
                }

                Buffer.BlockCopy(_receive, _start, _receive, 0, _end - _start);
                _end -= _start;
                _start = 0;
            }

            var received = await _socket.ReceiveAsync(_receive.AsMemory(_end), SocketFlags.None).ConfigureAwait(false);
            if (received == 0)
            {
                throw new IOException("memcached peer closed the connection");
            }

            _end += received;
        }
    }

    /// <summary>Parses one complete reply at <c>_start</c>; null when more bytes are needed.</summary>
    private MixReply? TryParse(MixOperation operation)
    {
        var buffered = _receive.AsSpan(_start, _end - _start);
        var eol = buffered.IndexOf("\r\n"u8);
        if (eol < 0)
        {
            if (buffered.Length > MaxLine)
            {
                throw new InvalidDataException("memcached reply line too long");
            }

            return null;
        }

        var line = buffered[..eol];
        var lineLength = eol + 2;
        if (operation == MixOperation.Get && line.StartsWith("VALUE "u8))
        {
            // VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\nEND\r\n
            var rest = line[6..];
            var space = rest.IndexOf((byte)' ');
            if (space <= 0)
            {
                return Invalid(lineLength);
            }

            var keyStart = _start + 6;
            var keyLength = space;
            rest = rest[(space + 1)..];
            space = rest.IndexOf((byte)' ');
            if (space <= 0)
            {
                return Invalid(lineLength);
            }

            rest = rest[(space + 1)..];
            space = rest.IndexOf((byte)' ');
            if (space >= 0)
            {
                rest = rest[..space];
            }

            if (!int.TryParse(rest, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var bytes) || bytes > _receive.Length - MaxLine - 16)
            {
                return Invalid(lineLength);
            }

            var total = lineLength + bytes + 2 + 5;
            if (buffered.Length < total)
            {
                return null;
            }

            if (!buffered.Slice(lineLength + bytes, 7).SequenceEqual("\r\nEND\r\n"u8))
            {
                return Invalid(total);
            }

            _keyStart = keyStart;
            _keyLength = keyLength;
            _valueStart = _start + lineLength;
            _valueLength = bytes;
            _start += total;
            return MixReply.Hit;
        }

        _start += lineLength;
        return operation switch
        {
            MixOperation.Get => line.SequenceEqual("END"u8) ? MixReply.Miss : MixReply.Invalid,
            MixOperation.Add => line.SequenceEqual("STORED"u8) ? MixReply.Stored
                : line.SequenceEqual("NOT_STORED"u8) || line.SequenceEqual("EXISTS"u8) ? MixReply.Exists
                : MixReply.Invalid,
            _ => line.SequenceEqual("DELETED"u8) || line.SequenceEqual("NOT_FOUND"u8) ? MixReply.Answered : MixReply.Invalid,
        };
    }

    private MixReply Invalid(int consumed)
    {
        _start += consumed;
        return MixReply.Invalid;
    }

    private static int Put(Span<byte> destination, ReadOnlySpan<byte> source)
    {
        source.CopyTo(destination);
        return source.Length;
    }

    public override void Dispose()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }

        _socket.Dispose();
    }
}
