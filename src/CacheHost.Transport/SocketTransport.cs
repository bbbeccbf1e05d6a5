using CacheHost.Posix;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using CacheHost.Transport.Epoll;
using Microsoft.Extensions.Logging;

namespace CacheHost.Transport;

/// <summary>Starts a connected stream socket on the engine chosen by <see cref="SocketEngineSettings"/>.</summary>
public static class SocketTransport
{
    /// <summary>Serves <paramref name="socket"/>: on the epoll loops, or with the runtime's engine.</summary>
    public static TransportConnection Start(Socket socket, TransportOptions options, ILogger logger) =>
        SocketEngineSettings.UseEpoll && socket.SocketType == SocketType.Stream
            ? EpollSocketConnection.Start(socket, options, logger)
            : SocketConnection.Start(socket, options, logger);

    /// <summary>
    /// Does now what the first connection would otherwise do lazily: starts the epoll loops (two descriptors per
    /// loop) and loads the pipe code. Called before a listener exists, so a process's descriptor count does not
    /// grow with its first client (the Clacks original's disconnect test measures from the moment the socket
    /// appears), and the first client does not pay for the set-up.
    /// </summary>
    public static void Prepare(TransportOptions options)
    {
        if (SocketEngineSettings.UseEpoll)
        {
            EpollEngine.EnsureStarted();
        }

        _ = options.InputPipeOptions;
        _ = options.OutputPipeOptions;
        _ = new System.IO.Pipelines.Pipe(options.InputPipeOptions);
    }

    /// <summary>
    /// Connects <paramref name="socket"/> without the runtime's socket engine when the epoll engine is in use:
    /// a socket the runtime has used asynchronously stays registered with the runtime's epoll, which would then
    /// be woken for every event of our connection too.
    /// </summary>
    internal static async ValueTask ConnectAsync(Socket socket, EndPoint endPoint, CancellationToken cancellationToken)
    {
        if (!SocketEngineSettings.UseEpoll)
        {
            await socket.ConnectAsync(endPoint, cancellationToken).ConfigureAwait(false);
            return;
        }

        socket.Blocking = false;
        var address = endPoint.Serialize();
        var raw = address.Buffer[..address.Size].ToArray();
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var errno = RawConnect(socket, raw);
            switch (errno)
            {
                case 0:
                    return;
                case Libc.EINTR:
                    continue;
                case Libc.EAGAIN:
                    // A unix listener whose backlog is full: try again shortly, as a blocking connect would wait.
                    await Task.Delay(5, cancellationToken).ConfigureAwait(false);
                    continue;
                case Libc.EINPROGRESS:
                    await WaitConnectedAsync(socket, cancellationToken).ConfigureAwait(false);
                    return;
                default:
                    throw Libc.SocketException(errno);
            }
        }
    }

    private static unsafe int RawConnect(Socket socket, byte[] address)
    {
        fixed (byte* p = address)
        {
            return Libc.connect((int)socket.Handle, p, (uint)address.Length) == 0 ? 0 : Libc.Errno;
        }
    }

    private static async ValueTask WaitConnectedAsync(Socket socket, CancellationToken cancellationToken)
    {
        // A TCP connect in progress (reconnects only): poll(2) in short slices so cancellation is honoured.
        while (!socket.Poll(TimeSpan.FromMilliseconds(0), SelectMode.SelectWrite))
        {
            await Task.Delay(2, cancellationToken).ConfigureAwait(false);
        }

        // The runtime already translates SO_ERROR into a SocketError value.
        var error = (int)socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.Error)!;
        if (error != 0)
        {
            throw new SocketException(error);
        }
    }
}
