using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace CacheHost.Testing;

/// <summary>
/// A throw-away PKI for TLS tests, generated with <see cref="CertificateRequest"/> and written as PEM files to a
/// fresh temp directory: a CA, a server certificate (127.0.0.1, localhost), a client certificate, an expired
/// client certificate and a client certificate from another CA. ECDSA P-256 keeps generation fast.
/// </summary>
public sealed class TestCertificates
{
    private readonly X509Certificate2 _ca;
    private readonly X509Certificate2 _otherCa;

    private TestCertificates(string directory)
    {
        Directory = directory;
        _ca = CreateCa("CacheHost Test CA");
        _otherCa = CreateCa("Somebody Else's CA");
        CaFile = WriteCertificate("ca.pem", _ca);
        OtherCaFile = WriteCertificate("other-ca.pem", _otherCa);
        var now = DateTimeOffset.UtcNow;
        Server = Issue("server", "cachehost-server", _ca, now.AddDays(-1), now.AddDays(30), server: true);
        Client = Issue("client", "cachehost-proxy", _ca, now.AddDays(-1), now.AddDays(30), server: false);
        Expired = Issue("expired", "cachehost-expired", _ca, now.AddDays(-30), now.AddDays(-1), server: false);
        Foreign = Issue("foreign", "cachehost-foreign", _otherCa, now.AddDays(-1), now.AddDays(30), server: false);
    }

    /// <summary>Where the PEM files are.</summary>
    public string Directory { get; }

    /// <summary>The CA bundle (PEM) that <see cref="Server"/>, <see cref="Client"/> and <see cref="Expired"/> chain to.</summary>
    public string CaFile { get; }

    /// <summary>A CA nobody here trusts.</summary>
    public string OtherCaFile { get; }

    /// <summary>Server certificate (CN cachehost-server, SAN 127.0.0.1 and localhost).</summary>
    public Pair Server { get; }

    /// <summary>Client certificate (CN cachehost-proxy).</summary>
    public Pair Client { get; }

    /// <summary>Client certificate that expired yesterday.</summary>
    public Pair Expired { get; }

    /// <summary>Client certificate signed by <see cref="OtherCaFile"/>'s CA.</summary>
    public Pair Foreign { get; }

    /// <summary>Creates the PKI in a fresh temp directory.</summary>
    public static TestCertificates Create() => new(TestPaths.Directory("tls"));

    /// <summary>
    /// Issues another certificate from the trusted CA into the files <paramref name="into"/> names (overwriting
    /// them, as an operator renewing a certificate would).
    /// </summary>
    public Pair Reissue(Pair into, string commonName, bool server)
    {
        var now = DateTimeOffset.UtcNow;
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var certificate = Build(key, commonName, _ca, now.AddDays(-1), now.AddDays(30), server);
        File.WriteAllText(into.CertificateFile, certificate.ExportCertificatePem());
        File.WriteAllText(into.KeyFile, key.ExportPkcs8PrivateKeyPem());
        return into with { Certificate = certificate };
    }

    private Pair Issue(string name, string commonName, X509Certificate2 issuer, DateTimeOffset notBefore, DateTimeOffset notAfter, bool server)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var certificate = Build(key, commonName, issuer, notBefore, notAfter, server);
        var certificateFile = WriteCertificate(name + ".pem", certificate);
        var keyFile = Path.Combine(Directory, name + ".key");
        File.WriteAllText(keyFile, key.ExportPkcs8PrivateKeyPem());
        return new Pair(certificateFile, keyFile, certificate);
    }

    private static X509Certificate2 Build(ECDsa key, string commonName, X509Certificate2 issuer, DateTimeOffset notBefore, DateTimeOffset notAfter, bool server)
    {
        var request = new CertificateRequest($"CN={commonName}, O=CacheHost tests", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid(server ? "1.3.6.1.5.5.7.3.1" : "1.3.6.1.5.5.7.3.2")], false));
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName(server ? "localhost" : commonName);
        if (server)
        {
            san.AddIpAddress(IPAddress.Loopback);
        }

        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var serial = RandomNumberGenerator.GetBytes(12);
        serial[0] &= 0x7F;
        return request.Create(issuer, notBefore, notAfter, serial);
    }

    private static X509Certificate2 CreateCa(string name)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256); // stays with the CA certificate, which signs with it
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        return request.CreateSelfSigned(now.AddDays(-60), now.AddYears(1));
    }

    private string WriteCertificate(string name, X509Certificate2 certificate)
    {
        var path = Path.Combine(Directory, name);
        File.WriteAllText(path, certificate.ExportCertificatePem());
        return path;
    }

    /// <summary>A certificate and key as PEM files.</summary>
    public sealed record Pair(string CertificateFile, string KeyFile, X509Certificate2 Certificate);
}
