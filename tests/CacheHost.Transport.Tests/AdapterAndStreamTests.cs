using System.IO.Pipelines;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CacheHost.Testing;
using CacheHost.Transport;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace CacheHost.Transport.Tests;

/// <summary>The connection-adapter seam (TLS as one adapter) and the limits of StreamConnection, over real sockets.</summary>
public sealed class AdapterAndStreamTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private sealed class EchoLines : IConnectionHandler
    {
        public async Task HandleAsync(TransportConnection connection, CancellationToken stopping)
        {
            var input = connection.Transport.Input;
            var output = connection.Transport.Output;
            while (true)
            {
                var result = await input.ReadAsync(CancellationToken.None);
                foreach (var segment in result.Buffer)
                {
                    await output.WriteAsync(segment);
                }

                input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }

            await output.CompleteAsync();
            await input.CompleteAsync();
        }
    }

    private static X509Certificate2 SelfSigned()
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pkcs12), null);
    }

    private static ConnectionServer StartTls(X509Certificate2 certificate, TimeSpan handshakeTimeout, TimeProvider? clock = null)
    {
        var options = new TransportOptions();
        var listener = ConnectionListener.Bind(TransportAddress.Parse("IP:127.0.0.1:0"), options, NullLogger.Instance);
        var adapter = TlsConnectionAdapter.Server(new SslServerAuthenticationOptions { ServerCertificate = certificate }, handshakeTimeout, options, clock);
        var server = new ConnectionServer(listener, new EchoLines(), NullLogger.Instance, adapter, clock);
        server.Start();
        return server;
    }

    [Fact]
    public async Task TheTlsAdapterWrapsAcceptedConnectionsBeforeTheHandlerSeesThem()
    {
        using var certificate = SelfSigned();
        await using var server = StartTls(certificate, Timeout);
        using var socket = InProcessCacheServer.ConnectTo(server.Listener.DisplayAddress);
        await using var ssl = new SslStream(new NetworkStream(socket), false, (_, _, _, _) => true);
        await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = "localhost" }).WaitAsync(Timeout);
        var data = Enumerable.Range(0, 200_000).Select(i => (byte)i).ToArray();
        var send = ssl.WriteAsync(data).AsTask();
        var echoed = new byte[data.Length];
        await ssl.ReadExactlyAsync(echoed).AsTask().WaitAsync(Timeout);
        await send;
        Assert.Equal(data, echoed);
        Assert.Equal(0, server.AdapterFailures);
    }

    [Fact]
    public async Task AFailedHandshakeClosesOnlyThatConnectionAndIsCounted()
    {
        // The handshake limit runs on the injected clock: 30 s that pass only when the test advances them.
        using var certificate = SelfSigned();
        var clock = new FakeTimeProvider();
        await using var server = StartTls(certificate, TimeSpan.FromSeconds(30), clock);
        using (var plain = InProcessCacheServer.ConnectTo(server.Listener.DisplayAddress))
        {
            plain.Send("GET / HTTP/1.0\r\n\r\n"u8.ToArray());
            DistCacheVectorReplayer.ExpectClosed(plain, Timeout, "plain-text client on a TLS listener");
        }

        await WaitUntilAsync(() => server.AdapterFailures == 1, "the plain-text client counted");

        // A silent peer is dropped when the handshake limit runs out (it never blocks the accept loop), and not
        // before: the server sends nothing before a ClientHello, so "readable" means "closed".
        using var silent = InProcessCacheServer.ConnectTo(server.Listener.DisplayAddress);
        Assert.False(silent.Poll(TimeSpan.FromMilliseconds(200), SelectMode.SelectRead), "silent client closed before its handshake limit");
        Assert.Equal(1, server.AdapterFailures);
        var deadline = DateTime.UtcNow + Timeout;
        while (!silent.Poll(TimeSpan.FromMilliseconds(20), SelectMode.SelectRead))
        {
            // The handshake may not have armed its limit yet when the clock first moves: advance until it fires.
            Assert.True(DateTime.UtcNow < deadline, "silent client not closed after its handshake limit");
            clock.Advance(TimeSpan.FromSeconds(30));
        }

        DistCacheVectorReplayer.ExpectClosed(silent, Timeout, "silent client");
        await WaitUntilAsync(() => server.AdapterFailures == 2, "the silent client counted");
        Assert.False(server.Completion.IsCompleted);
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, what + ": not in time");
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task TheTlsAdapterWorksOnDialledConnectionsToo()
    {
        using var certificate = SelfSigned();
        await using var server = StartTls(certificate, Timeout);
        var options = new TransportOptions();
        var plain = await OutboundConnector.ConnectAsync(TransportAddress.Parse(server.Listener.DisplayAddress), options, NullLogger.Instance);
        var client = TlsConnectionAdapter.Client(new SslClientAuthenticationOptions { TargetHost = "localhost", RemoteCertificateValidationCallback = (_, _, _, _) => true }, Timeout, options);
        await using var connection = await client.AdaptAsync(plain, CancellationToken.None);
        await connection.Transport.Output.WriteAsync("hello"u8.ToArray());
        var result = await connection.Transport.Input.ReadAtLeastAsync(5).AsTask().WaitAsync(Timeout);
        Assert.Equal("hello"u8.ToArray(), System.Buffers.BuffersExtensions.ToArray(result.Buffer.Slice(0, 5)));
        connection.Transport.Input.AdvanceTo(result.Buffer.End);
    }

    /// <summary>Serves endless bytes and counts what was read from it.</summary>
    private sealed class EndlessStream : Stream
    {
        private long _bytesRead;

        public long BytesRead => Interlocked.Read(ref _bytesRead);

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count)
        {
            buffer.AsSpan(offset, count).Fill((byte)'x');
            Interlocked.Add(ref _bytesRead, count);
            return count;
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>Accepts no write until released.</summary>
    private sealed class StalledStream : Stream
    {
        public readonly TaskCompletionSource Release = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => Release.Task.Wait();
        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => await Release.Task;
    }

    [Fact]
    public async Task StreamConnectionReadsAheadUpToMaxReadBufferSizeAndNoFurther()
    {
        // Like a socket connection: the stream is read while the protocol is busy, until MaxReadBufferSize bytes
        // wait unexamined. Before, the options were ignored ("_ = options;") and nothing was read ahead at all.
        var source = new EndlessStream();
        var options = new TransportOptions { MaxReadBufferSize = 64 * 1024 };
        await using var connection = new StreamConnection(source, null, options);
        var deadline = DateTime.UtcNow + Timeout;
        while (source.BytesRead < options.MaxReadBufferSize)
        {
            Assert.True(DateTime.UtcNow < deadline, $"only {source.BytesRead} bytes read ahead");
            await Task.Delay(10);
        }

        for (var i = 0; i < 10; i++)
        {
            await Task.Delay(20);
            Assert.True(source.BytesRead <= options.MaxReadBufferSize + 16 * 1024, $"{source.BytesRead} bytes read");
        }

        // Consuming resumes reading.
        var result = await connection.Transport.Input.ReadAsync().AsTask().WaitAsync(Timeout);
        connection.Transport.Input.AdvanceTo(result.Buffer.End);
        deadline = DateTime.UtcNow + Timeout;
        while (source.BytesRead < 2 * options.MaxReadBufferSize)
        {
            Assert.True(DateTime.UtcNow < deadline, "reading did not resume");
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task StreamConnectionFlushWaitsOnlyBeyondMaxWriteBufferSize()
    {
        // Below the limit a flush completes at once even if the stream is slow (the protocol is never held up by
        // one slow write); beyond it the flush waits, which is what bounds a slow reader's memory.
        var sink = new StalledStream();
        var options = new TransportOptions { MaxWriteBufferSize = 64 * 1024 };
        var connection = new StreamConnection(null, sink, options);
        var output = connection.Transport.Output;
        var chunk = new byte[1024];
        long written = 0;
        ValueTask<FlushResult> flush;
        while (true)
        {
            flush = output.WriteAsync(chunk);
            written += chunk.Length;
            if (!flush.IsCompleted)
            {
                break;
            }

            Assert.True(written < 4 * options.MaxWriteBufferSize, "flushes never waited: output is unbounded");
        }

        Assert.InRange(written, options.MaxWriteBufferSize / 2, options.MaxWriteBufferSize + 2 * chunk.Length);
        sink.Release.SetResult();
        await flush.AsTask().WaitAsync(Timeout);
        await connection.DisposeAsync();
    }
}
