using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using CacheHost.Transport;

namespace CacheHost.LoadTool;

/// <summary>
/// memcached text protocol client for the -mix mode (memcached's protocol.txt): add = <c>set &lt;key&gt; 0
/// &lt;exptime&gt; &lt;bytes&gt;</c> + data -> <c>STORED</c>; get = <c>get &lt;key&gt;</c> -> <c>VALUE &lt;key&gt;
/// &lt;flags&gt; &lt;bytes&gt;</c> + data + <c>END</c>, or <c>END</c>; remove = <c>delete &lt;key&gt;</c> ->
/// <c>DELETED</c>/<c>NOT_FOUND</c>. Replies are parsed in place in a reusable receive buffer, filled from the
/// shared transport's input pipe: the same socket engine as the distcache connections, so a comparison of the two
/// servers measures the servers.
/// </summary>
internal sealed class MemcachedMixConnection : MixConnection
{
    private const int MaxLine = 1024;
    private readonly TransportConnection _connection;
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly byte[] _receive;
    private byte[] _send;
    private int _sendLength;
    private int _start;
    private int _end;
    private int _valueStart;
    private int _valueLength;
    private int _keyStart;
    private int _keyLength;

    public MemcachedMixConnection(TransportConnection connection, int valueSize, int pipeline)
    {
        _connection = connection;
        _input = connection.Transport.Input;
        _output = connection.Transport.Output;
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
        _output.Write(_send.AsSpan(0, _sendLength));
        _sendLength = 0;
        var flush = await _output.FlushAsync().ConfigureAwait(false);
        if (flush.IsCompleted)
        {
            throw new IOException("memcached closed the connection");
        }
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

            var received = await ReadSomeAsync(_receive.AsMemory(_end)).ConfigureAwait(false);
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

    /// <summary>Copies what the pipe holds (up to the room given) into <paramref name="destination"/>; 0 at the end.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<int> ReadSomeAsync(Memory<byte> destination)
    {
        var result = await _input.ReadAsync().ConfigureAwait(false);
        var buffer = result.Buffer;
        var count = (int)Math.Min(buffer.Length, destination.Length);
        buffer.Slice(0, count).CopyTo(destination.Span);
        _input.AdvanceTo(buffer.GetPosition(count));
        return count;
    }

    public override void Dispose()
    {
        _ = _connection.AbortAndReleaseAsync("closed by the load tool");
    }
}
