using System.Buffers;
using System.Text;
using System.Threading.Channels;
using CacheHost.Core.Control;
using CacheHost.Protocols.Tsv;
using CacheHost.Transport;
using Microsoft.Extensions.Logging;

namespace CacheHost.Systemd.Control;

/// <summary>
/// One control client. Commands run one at a time in arrival order; their replies go to this client only.
/// Broadcast events share the output queue but are dropped (and counted into one <c>overflow</c> line)
/// when the client does not read, so a stuck client never stalls the daemon (daemonproxy §4.4).
/// Line classification follows daemonproxy §3.2. Lines are handled as byte strings (one char per byte,
/// Latin-1) from the socket to the socket, as the daemonproxy supervisor's own socket does, so <c>echo</c> and
/// commands that pass bytes on (<c>service.args</c>) keep every byte; only arguments for host commands and log
/// lines are read as UTF-8 text.
/// </summary>
internal sealed class ControlConnection
{
    private const int ErrorPrefixBytes = 30;

    private readonly TransportConnection _connection;
    private readonly ControlDispatcher _dispatcher;
    private readonly ControlOptions _options;
    private readonly ILogger _logger;
    private readonly Channel<string> _output;
    private long _droppedEvents;

    public ControlConnection(TransportConnection connection, ControlDispatcher dispatcher, ControlOptions options, ILogger logger)
    {
        _connection = connection;
        _dispatcher = dispatcher;
        _options = options;
        _logger = logger;
        _output = Channel.CreateBounded<string>(new BoundedChannelOptions(options.MaxQueuedLines)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
    }

    /// <summary>Queues an event line; drops it when the queue is full.</summary>
    public void Enqueue(string line)
    {
        if (!_output.Writer.TryWrite(line))
        {
            Interlocked.Increment(ref _droppedEvents);
        }
    }

    public async Task RunAsync(CancellationToken stopping)
    {
        using var closed = CancellationTokenSource.CreateLinkedTokenSource(stopping, _connection.ConnectionClosed);
        var writer = WriteLoopAsync();
        try
        {
            await ReadLoopAsync(closed.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            _output.Writer.TryComplete();
            try
            {
                await writer.ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException or InvalidOperationException)
            {
            }

            await _connection.Transport.Input.CompleteAsync().ConfigureAwait(false);
        }
    }

    private async Task ReadLoopAsync(CancellationToken cancellationToken)
    {
        var input = _connection.Transport.Input;
        var framer = new TsvLineFramer(_options.MaxLineLength);
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var keepGoing = true;
            while (keepGoing)
            {
                var state = framer.TryReadLine(ref buffer, out var line, out var comment);
                if (state == TsvLineStatus.NeedMoreData)
                {
                    break;
                }

                if (state == TsvLineStatus.Overlong)
                {
                    if (!comment)
                    {
                        if (_connection.Warnings.Allow(nameof(SystemdLog.ControlLineTooLong)))
                        {
                            SystemdLog.ControlLineTooLong(_logger, _connection.Id);
                        }

                        await SendAsync(["error\tline too long"], cancellationToken).ConfigureAwait(false);
                    }

                    continue;
                }

                keepGoing = await ExecuteAsync(Encoding.Latin1.GetString(line), cancellationToken).ConfigureAwait(false);
            }

            input.AdvanceTo(buffer.Start, buffer.End);
            if (!keepGoing || result.IsCompleted)
            {
                return;
            }
        }
    }

    /// <summary>Runs one line (a byte string); false when the client asked to exit.</summary>
    private async Task<bool> ExecuteAsync(string line, CancellationToken cancellationToken)
    {
        var tab = line.IndexOf('\t');
        var name = tab < 0 ? line : line[..tab];
        SystemdLog.ControlCommand(_logger, _connection.Id, ControlReply.BytesToText(line));
        switch (name)
        {
            case "echo":
                // The rest of the line after "echo<TAB>", byte for byte; a bare echo emits nothing.
                if (tab >= 0 && tab + 1 < line.Length)
                {
                    await SendAsync([line[(tab + 1)..]], cancellationToken).ConfigureAwait(false);
                }

                return true;
            case "exit":
                return false;
        }

        var provider = _dispatcher.Find(name);
        if (provider is null)
        {
            if (line.StartsWith('#') || line.All(c => c is ' ' or '\t' or '\r' or '\0'))
            {
                return true;
            }

            if (_connection.Warnings.Allow(nameof(SystemdLog.ControlUnknownCommand)))
            {
                SystemdLog.ControlUnknownCommand(_logger, _connection.Id, ControlReply.BytesToText(name));
            }

            await SendAsync(["error\tUnknown command: " + name], cancellationToken).ConfigureAwait(false);
            return true;
        }

        var arguments = tab < 0 ? [] : ControlReply.BytesToText(line[(tab + 1)..]).Split('\t');
        var reply = new ControlReply();
        try
        {
            await provider.ExecuteAsync(new ControlCommand(name, arguments, line), reply, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (ControlCommandException ex)
        {
            if (_connection.Warnings.Allow(nameof(SystemdLog.ControlCommandFailed)))
            {
                SystemdLog.ControlCommandFailed(_logger, _connection.Id, Truncate(line, 90), ex.Message);
            }

            reply.Raw(ErrorLine(ex.Message, line));
        }
        catch (Exception ex)
        {
            SystemdLog.ControlCommandCrashed(_logger, _connection.Id, Truncate(line, 90), ex);
            reply.Raw(ErrorLine(ex.Message, line));
        }

        await SendAsync(reply.Lines, cancellationToken).ConfigureAwait(false);
        return true;
    }

    // error<TAB><message>, for command "<first 30 bytes>..." (daemonproxy §3.2 rule 4); a byte string.
    private static string ErrorLine(string message, string line) =>
        $"error\t{ControlReply.TextToBytes(message.ReplaceLineEndings(" "))}, for command \"{(line.Length >= ErrorPrefixBytes ? line[..ErrorPrefixBytes] + "..." : line)}\"";

    // The first bytes of a line, as text for the log.
    private static string Truncate(string line, int bytes) => ControlReply.BytesToText(line.Length <= bytes ? line : line[..bytes]);

    private async ValueTask SendAsync(IReadOnlyList<string> lines, CancellationToken cancellationToken)
    {
        foreach (var line in lines)
        {
            // Replies wait for queue space (the client's own backpressure); events never do.
            await _output.Writer.WriteAsync(line, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task WriteLoopAsync()
    {
        var output = _connection.Transport.Output;
        var reader = _output.Reader;
        try
        {
            while (await reader.WaitToReadAsync().ConfigureAwait(false))
            {
                while (reader.TryRead(out var line))
                {
                    var dropped = Interlocked.Exchange(ref _droppedEvents, 0);
                    if (dropped > 0)
                    {
                        TsvWriter.WriteLine(output, "overflow", dropped.ToString(System.Globalization.CultureInfo.InvariantCulture));
                    }

                    // Every queued line is a byte string: one char, one byte.
                    var span = output.GetSpan(line.Length + 1);
                    var written = Encoding.Latin1.GetBytes(line, span);
                    span[written] = (byte)'\n';
                    output.Advance(written + 1);
                }

                var flush = await output.FlushAsync().ConfigureAwait(false);
                if (flush.IsCompleted || flush.IsCanceled)
                {
                    break;
                }
            }
        }
        finally
        {
            await output.CompleteAsync().ConfigureAwait(false);
        }
    }
}
