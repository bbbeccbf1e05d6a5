using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Primitives;

namespace CacheHost.Transport;

/// <summary>
/// The files of a <see cref="TlsOptions"/>, loaded: this side's certificate (with its chain) and the CA roots.
/// Immutable; a reload builds a new one.
/// </summary>
internal sealed class TlsCredentials
{
    private TlsCredentials(SslStreamCertificateContext? certificate, X509Certificate2Collection roots)
    {
        Certificate = certificate;
        Roots = roots;
    }

    public SslStreamCertificateContext? Certificate { get; }

    public X509Certificate2Collection Roots { get; }

    /// <summary>Reads the files; a problem throws <see cref="TlsConfigurationException"/> naming the key.</summary>
    public static TlsCredentials Load(TlsOptions options)
    {
        SslStreamCertificateContext? context = null;
        if (!string.IsNullOrEmpty(options.Certificate))
        {
            var chain = ReadCertificates(nameof(TlsOptions.Certificate), options.Certificate);
            var keyPem = ReadText(nameof(TlsOptions.Key), options.Key!);
            X509Certificate2 leaf;
            try
            {
                leaf = X509Certificate2.CreateFromPem(chain[0].ExportCertificatePem(), keyPem);
            }
            catch (Exception ex) when (ex is CryptographicException or ArgumentException)
            {
                // No PEM key at all, or a key that is not the certificate's (ArgumentException "does not match").
                throw new TlsConfigurationException($"Key: '{options.Key}' holds no private key of the certificate in '{options.Certificate}' ({ex.Message})", ex);
            }

            // Exported and re-imported once: on Linux an ephemeral key cannot serve a handshake.
            var persisted = X509CertificateLoader.LoadPkcs12(leaf.Export(X509ContentType.Pkcs12), null);
            var intermediates = new X509Certificate2Collection();
            for (var i = 1; i < chain.Count; i++)
            {
                intermediates.Add(chain[i]);
            }

            context = SslStreamCertificateContext.Create(persisted, intermediates, offline: true);
        }

        var roots = string.IsNullOrEmpty(options.CertificateAuthority)
            ? new X509Certificate2Collection()
            : ReadCertificates(nameof(TlsOptions.CertificateAuthority), options.CertificateAuthority);
        return new TlsCredentials(context, roots);
    }

    private static string ReadText(string key, string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new TlsConfigurationException($"{key}: cannot read '{path}': {ex.Message}", ex);
        }
    }

    private static X509Certificate2Collection ReadCertificates(string key, string path)
    {
        var collection = new X509Certificate2Collection();
        try
        {
            collection.ImportFromPem(ReadText(key, path));
        }
        catch (CryptographicException ex)
        {
            throw new TlsConfigurationException($"{key}: '{path}' is not a PEM certificate file ({ex.Message})", ex);
        }

        if (collection.Count == 0)
        {
            throw new TlsConfigurationException($"{key}: '{path}' holds no PEM certificate");
        }

        return collection;
    }
}

/// <summary>
/// One listener's or link's TLS: builds the <see cref="SslStream"/> options from <see cref="TlsOptions"/>, checks
/// the peer's certificate (chain to the configured CA, validity period, allow-list of names or SPKI pins) and
/// re-reads its files on <see cref="Reload"/> without touching established connections (they keep the SslStream
/// they negotiated). Thread-safe: handshakes read the current credentials, a reload swaps them.
/// </summary>
public sealed class TlsContext
{
    private static readonly Oid ServerAuthentication = new("1.3.6.1.5.5.7.3.1");
    private static readonly Oid ClientAuthentication = new("1.3.6.1.5.5.7.3.2");

    private readonly TlsOptions _options;
    private readonly bool _server;
    private readonly HashSet<string> _names;
    private readonly List<byte[]> _pins = [];
    private readonly TimeProvider _timeProvider;
    private TlsCredentials _credentials;

    /// <summary>
    /// Loads the files of <paramref name="options"/> for a listener (<paramref name="server"/>) or a link; a
    /// problem throws <see cref="TlsConfigurationException"/> naming the key. The handshake limit runs on
    /// <paramref name="timeProvider"/> (default: the system clock).
    /// </summary>
    public TlsContext(TlsOptions options, bool server, TimeProvider? timeProvider = null)
    {
        _options = options;
        _server = server;
        _timeProvider = timeProvider ?? TimeProvider.System;
        _names = new HashSet<string>(options.AllowedNames, StringComparer.OrdinalIgnoreCase);
        foreach (var pin in options.AllowedSpkiPins)
        {
            if (!TryParsePin(pin, out var hash))
            {
                throw new TlsConfigurationException($"AllowedSpkiPins: '{pin}' is not a base64 SHA-256");
            }

            _pins.Add(hash);
        }

        _credentials = TlsCredentials.Load(options);
    }

    /// <summary>The settings this context was built from.</summary>
    public TlsOptions Options => _options;

    /// <summary>Subject of this side's current certificate (null without one), for logs and tests.</summary>
    public string? CertificateSubject => Volatile.Read(ref _credentials).Certificate?.TargetCertificate.Subject;

    /// <summary>
    /// Re-reads the certificate, key and CA files. On success new handshakes use them; on failure the exception
    /// (naming the key) propagates and the previous credentials stay in use.
    /// </summary>
    public void Reload() => Volatile.Write(ref _credentials, TlsCredentials.Load(_options));

    /// <summary>
    /// Calls <see cref="Reload"/> whenever <paramref name="changeToken"/>'s producer fires (the configuration's
    /// reload token: SIGHUP and <c>config.reload</c>), logging the outcome under <paramref name="name"/> (the
    /// configuration key of the listener or link). Dispose to stop.
    /// </summary>
    public IDisposable ReloadOn(Func<IChangeToken?> changeToken, ILogger logger, string name) =>
        ChangeToken.OnChange(changeToken, () =>
        {
            try
            {
                Reload();
                TransportLog.TlsReloaded(logger, name, CertificateSubject ?? "(no certificate)");
            }
            catch (TlsConfigurationException ex)
            {
                TransportLog.TlsReloadFailed(logger, name, ex.Message);
            }
        });

    /// <summary>An adapter for a listener: every accepted connection is TLS from its first byte.</summary>
    public TlsConnectionAdapter CreateServerAdapter(TransportOptions transport) =>
        TlsConnectionAdapter.Server(ServerOptions, _options.HandshakeTimeout, transport, _timeProvider);

    /// <summary>An adapter for a link to <paramref name="address"/> (its host is the default server name).</summary>
    public TlsConnectionAdapter CreateClientAdapter(TransportAddress address, TransportOptions transport)
    {
        var host = _options.ServerName ?? address.Host ?? "localhost";
        return TlsConnectionAdapter.Client(() => ClientOptions(host), _options.HandshakeTimeout, transport, _timeProvider);
    }

    private SslProtocols Protocols => _options.MinimumVersion == TlsMinimumVersion.Tls13 ? SslProtocols.Tls13 : SslProtocols.Tls12 | SslProtocols.Tls13;

    /// <summary>Server options for the next handshake (the current credentials).</summary>
    public SslServerAuthenticationOptions ServerOptions() => new()
    {
        ServerCertificateContext = Volatile.Read(ref _credentials).Certificate,
        ClientCertificateRequired = _options.RequireClientCertificate || _options.CertificateAuthority is not null,
        EnabledSslProtocols = Protocols,
        AllowRenegotiation = false,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        RemoteCertificateValidationCallback = (_, certificate, chain, errors) => Check(certificate, chain, errors),
    };

    /// <summary>Client options for the next handshake to <paramref name="targetHost"/>.</summary>
    public SslClientAuthenticationOptions ClientOptions(string targetHost)
    {
        var credentials = Volatile.Read(ref _credentials);
        return new SslClientAuthenticationOptions
        {
            TargetHost = targetHost,
            ClientCertificateContext = credentials.Certificate,
            EnabledSslProtocols = Protocols,
            AllowRenegotiation = false,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            RemoteCertificateValidationCallback = (_, certificate, chain, errors) => Check(certificate, chain, errors),
        };
    }

    /// <summary>
    /// The peer check. Throws <see cref="AuthenticationException"/> with the reason (the handshake fails with it,
    /// and the one log line of the failed connection names it) instead of returning false.
    /// </summary>
    private bool Check(X509Certificate? certificate, X509Chain? presented, SslPolicyErrors errors)
    {
        if (certificate is null)
        {
            // A listener that asks for but does not require a client certificate (a CA without -tls-verify) takes none.
            return _server && !_options.RequireClientCertificate
                ? true
                : throw new AuthenticationException(_server ? "the client presented no certificate" : "the server presented no certificate");
        }

        var leaf = certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        var credentials = Volatile.Read(ref _credentials);
        if (credentials.Roots.Count > 0)
        {
            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.AddRange(credentials.Roots);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            chain.ChainPolicy.DisableCertificateDownloads = true; // a cache daemon fetches nothing from URLs in a peer's certificate
            chain.ChainPolicy.VerificationTime = _timeProvider.GetLocalNow().DateTime;
            chain.ChainPolicy.VerificationTimeIgnored = false;
            chain.ChainPolicy.ApplicationPolicy.Add(_server ? ClientAuthentication : ServerAuthentication);
            if (presented is not null)
            {
                foreach (var element in presented.ChainElements)
                {
                    chain.ChainPolicy.ExtraStore.Add(element.Certificate);
                }
            }

            if (!chain.Build(leaf))
            {
                var status = string.Join("; ", chain.ChainStatus.Select(s => $"{s.Status}: {s.StatusInformation.Trim()}"));
                throw new AuthenticationException($"the {(_server ? "client" : "server")} certificate '{leaf.Subject}' was refused: {status}");
            }
        }
        else if (_server)
        {
            // No CA to check against: the certificate was offered but not asked for a decision (no -tls-verify).
            return true;
        }
        else if ((errors & SslPolicyErrors.RemoteCertificateChainErrors) != 0)
        {
            throw new AuthenticationException($"the server certificate '{leaf.Subject}' does not chain to a trusted root");
        }

        if (!_server && _options.ServerName is not null && (errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
        {
            throw new AuthenticationException($"the server certificate '{leaf.Subject}' is not for '{_options.ServerName}'");
        }

        if ((_names.Count > 0 || _pins.Count > 0) && !Allowed(leaf))
        {
            throw new AuthenticationException($"the {(_server ? "client" : "server")} certificate '{leaf.Subject}' is not on the allow-list (AllowedNames / AllowedSpkiPins)");
        }

        return true;
    }

    private bool Allowed(X509Certificate2 certificate)
    {
        if (_names.Contains(certificate.Subject) || _names.Contains(certificate.GetNameInfo(X509NameType.SimpleName, false)))
        {
            return true;
        }

        foreach (var extension in certificate.Extensions)
        {
            if (extension is X509SubjectAlternativeNameExtension san && san.EnumerateDnsNames().Any(_names.Contains))
            {
                return true;
            }
        }

        if (_pins.Count > 0)
        {
            var hash = SHA256.HashData(certificate.PublicKey.ExportSubjectPublicKeyInfo());
            return _pins.Any(p => p.AsSpan().SequenceEqual(hash));
        }

        return false;
    }

    /// <summary>The SPKI pin of <paramref name="certificate"/>: base64 of the SHA-256 of its SubjectPublicKeyInfo.</summary>
    public static string SpkiPin(X509Certificate2 certificate) =>
        Convert.ToBase64String(SHA256.HashData(certificate.PublicKey.ExportSubjectPublicKeyInfo()));

    internal static bool TryParsePin(string text, out byte[] hash)
    {
        hash = [];
        var value = text.StartsWith("sha256/", StringComparison.OrdinalIgnoreCase) ? text[7..] : text;
        var buffer = new byte[64];
        if (!Convert.TryFromBase64String(value.Trim(), buffer, out var length) || length != 32)
        {
            return false;
        }

        hash = buffer[..32];
        return true;
    }
}
