using System.ComponentModel.DataAnnotations;

namespace CacheHost.Transport;

/// <summary>
/// TLS settings of one listener (server side) or one dialled link (client side): certificate and key (PEM files),
/// the CA bundle the peer's certificate must chain to, mutual TLS, an allow-list of peer names or SPKI pins, the
/// handshake time limit and the lowest protocol version. distcache carries TLS session secrets in clear
/// (distcache §1); these settings keep them off the wire on untrusted networks. Built into a
/// <see cref="TlsContext"/>, whose files are re-read on the reload signal.
/// </summary>
public class TlsOptions
{
    /// <summary>
    /// PEM file with this side's certificate (followed by its intermediates, sent to the peer). Required on a
    /// TLS listener; on a link it is the client certificate presented for mutual TLS (optional).
    /// </summary>
    public string? Certificate { get; set; }

    /// <summary>PEM file with the private key of <see cref="Certificate"/> (PKCS#8, PKCS#1 or SEC1; not encrypted).</summary>
    public string? Key { get; set; }

    /// <summary>
    /// PEM bundle of the CA certificates the peer's certificate must chain to (the only roots trusted; the system
    /// store is not consulted). On a link without it the server's certificate must chain to the system store.
    /// </summary>
    public string? CertificateAuthority { get; set; }

    /// <summary>
    /// Listener: require a client certificate that chains to <see cref="CertificateAuthority"/> (mutual TLS;
    /// <c>-tls-verify</c>). A link always verifies the server's certificate; there the flag only insists that
    /// <see cref="CertificateAuthority"/> is given (the server must chain to it, not to the system store).
    /// </summary>
    public bool RequireClientCertificate { get; set; }

    /// <summary>
    /// If not empty, the peer's certificate must also match one entry: its subject's common name, a DNS name of its
    /// subject alternative names, or its whole subject as .NET prints it (<c>CN=proxy1, O=Example</c>); exact,
    /// case-insensitive. A certificate matching <see cref="AllowedSpkiPins"/> passes too.
    /// </summary>
    public List<string> AllowedNames { get; set; } = [];

    /// <summary>
    /// If not empty, the peer's certificate passes when the base64 SHA-256 of its SubjectPublicKeyInfo equals one
    /// entry (HPKP's pin-sha256 form, <c>sha256/</c> prefix optional): <c>openssl x509 -pubkey -noout | openssl pkey
    /// -pubin -outform der | openssl dgst -sha256 -binary | base64</c>.
    /// </summary>
    public List<string> AllowedSpkiPins { get; set; } = [];

    /// <summary>
    /// Link only: the server name sent (SNI) and checked against the server's certificate. Unset, the link sends
    /// the host of its address and checks the chain (and the allow-lists) but not the name: servers addressed by IP
    /// under a private CA rarely carry IP names.
    /// </summary>
    public string? ServerName { get; set; }

    /// <summary>A handshake not finished within this time is cut and its connection closed. Default 10 s.</summary>
    [Range(typeof(TimeSpan), "00:00:00.001", "00:10:00")]
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Lowest protocol version accepted: <c>Tls12</c> (default) or <c>Tls13</c>. TLS 1.3 is preferred when both sides have it.</summary>
    public TlsMinimumVersion MinimumVersion { get; set; } = TlsMinimumVersion.Tls12;

    /// <summary>True when a listener with these settings serves TLS (a certificate is configured).</summary>
    public bool IsServerConfigured => !string.IsNullOrEmpty(Certificate);

    /// <summary>True when a link with these settings speaks TLS (a client certificate, a CA or -tls-verify is configured).</summary>
    public bool IsClientConfigured => !string.IsNullOrEmpty(Certificate) || !string.IsNullOrEmpty(CertificateAuthority) || !string.IsNullOrEmpty(Key) || RequireClientCertificate;

    /// <summary>
    /// Checks the settings and that the files exist and parse, for validation at start. Each problem reads
    /// "<c>Key: problem</c>" (the caller puts the section in front).
    /// </summary>
    public IEnumerable<string> Validate(bool server)
    {
        var problems = new List<string>();
        if (server && string.IsNullOrEmpty(Certificate))
        {
            problems.Add("Certificate: a TLS listener needs a certificate (PEM file)");
        }

        if (!string.IsNullOrEmpty(Certificate) && string.IsNullOrEmpty(Key))
        {
            problems.Add("Key: a certificate needs its private key (PEM file)");
        }

        if (string.IsNullOrEmpty(Certificate) && !string.IsNullOrEmpty(Key))
        {
            problems.Add("Certificate: a key was given without its certificate");
        }

        if (RequireClientCertificate && string.IsNullOrEmpty(CertificateAuthority))
        {
            problems.Add(server
                ? "CertificateAuthority: RequireClientCertificate (-tls-verify) needs the CA bundle client certificates must chain to"
                : "CertificateAuthority: RequireClientCertificate (-tls-verify) needs the CA bundle the server's certificate must chain to");
        }

        foreach (var pin in AllowedSpkiPins)
        {
            if (!TlsContext.TryParsePin(pin, out _))
            {
                problems.Add($"AllowedSpkiPins: '{pin}' is not a base64 SHA-256 (44 characters, optional sha256/ prefix)");
            }
        }

        if (problems.Count == 0)
        {
            try
            {
                _ = TlsCredentials.Load(this);
            }
            catch (TlsConfigurationException ex)
            {
                problems.Add(ex.Message);
            }
        }

        return problems;
    }
}

/// <summary>The lowest TLS version a listener or link accepts (<see cref="TlsOptions.MinimumVersion"/>).</summary>
public enum TlsMinimumVersion
{
    /// <summary>TLS 1.2 and 1.3.</summary>
    Tls12,

    /// <summary>TLS 1.3 only.</summary>
    Tls13,
}

/// <summary>A TLS file that is missing, unreadable or not what its key says; the message starts with the key.</summary>
public sealed class TlsConfigurationException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// One TLS listener: its address and its <see cref="TlsOptions"/> (server side), e.g. CacheServer's
/// <c>TlsListen</c> entries.
/// </summary>
public sealed class TlsListenerOptions : TlsOptions
{
    /// <summary>Address to listen on (<c>IP:host:port</c>, <c>IPv6:[addr]:port</c>, <c>UNIX:/path</c>, <c>FD:n</c>).</summary>
    public string? Address { get; set; }
}
