using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace CacheHost.Transport;

/// <summary>The kind of endpoint an address string names.</summary>
public enum TransportAddressKind
{
    /// <summary>Unix-domain stream socket (<c>UNIX:/path</c>).</summary>
    Unix,
    /// <summary>TCP over IPv4 (<c>IP:…</c> / <c>IPv4:…</c>).</summary>
    Tcp4,
    /// <summary>TCP over IPv6 (<c>IPv6:[addr]:port</c>), a CacheHost extension.</summary>
    Tcp6,
    /// <summary>Already-open file descriptors (<c>FD:n</c> or <c>FD:rd:wr</c>).</summary>
    FileDescriptor,
}

/// <summary>
/// A parsed libnal-style address string (distcache §2.1):
/// <c>UNIX:&lt;path&gt;</c>, <c>IP:&lt;port&gt;</c>, <c>IP::&lt;port&gt;</c>, <c>IP:&lt;host&gt;:&lt;port&gt;</c>,
/// <c>IPv4:…</c> (synonym of <c>IP:</c>), <c>FD:&lt;n&gt;</c>, <c>FD:&lt;rd&gt;:&lt;wr&gt;</c>,
/// plus the extension <c>IPv6:[addr]:port</c> / <c>IPv6:port</c>.
/// Prefixes are case-sensitive, as in the reference.
/// </summary>
public sealed record TransportAddress
{
    /// <summary>Shortest and longest accepted address strings (distcache §2.1).</summary>
    public const int MinLength = 2, MaxLength = 255;

    /// <summary>Linux <c>sun_path</c> capacity including the terminating NUL.</summary>
    public const int MaxUnixPathBytes = 108;

    private TransportAddress(string text, TransportAddressKind kind)
    {
        Text = text;
        Kind = kind;
    }

    /// <summary>The address exactly as written.</summary>
    public string Text { get; }

    /// <summary>Which transport the address selects.</summary>
    public TransportAddressKind Kind { get; }

    /// <summary>Unix socket path (Kind == Unix).</summary>
    public string? Path { get; private init; }

    /// <summary>Host name or literal (TCP); null means "all interfaces".</summary>
    public string? Host { get; private init; }

    /// <summary>TCP port.</summary>
    public int Port { get; private init; }

    /// <summary>Read side descriptor (FD form), or -1.</summary>
    public int ReadFd { get; private init; } = -1;

    /// <summary>Write side descriptor (FD form), or -1. Equal to ReadFd for <c>FD:n</c>.</summary>
    public int WriteFd { get; private init; } = -1;

    /// <summary>True for TCP addresses without a host (<c>IP:port</c>): listen-only in the reference.</summary>
    public bool IsWildcard => Kind is TransportAddressKind.Tcp4 or TransportAddressKind.Tcp6 && Host is null;

    /// <inheritdoc />
    public override string ToString() => Text;

    /// <summary>Parses an address or throws <see cref="FormatException"/> with a message that says what is wrong.</summary>
    public static TransportAddress Parse(string text)
    {
        if (!TryParse(text, out var address, out var error))
        {
            throw new FormatException(error);
        }

        return address;
    }

    /// <summary>Parses an address; on failure <paramref name="error"/> explains why.</summary>
    public static bool TryParse(string? text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out TransportAddress? address, out string error)
    {
        address = null;
        error = string.Empty;
        if (string.IsNullOrEmpty(text) || text.Length < MinLength || text.Length > MaxLength)
        {
            error = $"address '{text}' must be {MinLength}..{MaxLength} characters";
            return false;
        }

        if (text.StartsWith("UNIX:", StringComparison.Ordinal))
        {
            var path = text[5..];
            if (path.Length == 0)
            {
                error = $"address '{text}' has an empty unix socket path";
                return false;
            }

            // The reference silently truncates to sun_path; we refuse instead so the socket lands where asked.
            if (System.Text.Encoding.UTF8.GetByteCount(path) >= MaxUnixPathBytes)
            {
                error = $"address '{text}': unix socket path is longer than {MaxUnixPathBytes - 1} bytes";
                return false;
            }

            address = new TransportAddress(text, TransportAddressKind.Unix) { Path = path };
            return true;
        }

        if (text.StartsWith("IPv6:", StringComparison.Ordinal))
        {
            return TryParseIPv6(text, text[5..], out address, out error);
        }

        string? rest = text.StartsWith("IPv4:", StringComparison.Ordinal) ? text[5..]
            : text.StartsWith("IP:", StringComparison.Ordinal) ? text[3..]
            : null;
        if (rest is not null)
        {
            return TryParseIPv4(text, rest, out address, out error);
        }

        if (text.StartsWith("FD:", StringComparison.Ordinal))
        {
            return TryParseFd(text, text[3..], out address, out error);
        }

        error = $"address '{text}' must start with UNIX:, IP:, IPv4:, IPv6: or FD:";
        return false;
    }

    private static bool TryParseIPv4(string text, string rest, out TransportAddress? address, out string error)
    {
        address = null;
        // Forms: "<port>", ":<port>", "<host>:<port>". The host is everything before the last separator;
        // the reference takes the part between the first and second colon, which is the same for IPv4.
        var colon = rest.IndexOf(':');
        string? host = null;
        string portText = rest;
        if (colon >= 0)
        {
            host = colon == 0 ? null : rest[..colon];
            portText = rest[(colon + 1)..];
            if (portText.Contains(':'))
            {
                error = $"address '{text}': nothing may follow the port";
                return false;
            }
        }

        if (!TryParsePort(portText, out var port))
        {
            error = $"address '{text}': port must be a decimal number 0..65535";
            return false;
        }

        address = new TransportAddress(text, TransportAddressKind.Tcp4) { Host = host, Port = port };
        error = string.Empty;
        return true;
    }

    private static bool TryParseIPv6(string text, string rest, out TransportAddress? address, out string error)
    {
        address = null;
        string? host = null;
        string portText;
        if (rest.StartsWith('['))
        {
            var close = rest.IndexOf(']');
            if (close < 0 || close + 1 >= rest.Length || rest[close + 1] != ':')
            {
                error = $"address '{text}': expected IPv6:[address]:port";
                return false;
            }

            host = rest[1..close];
            portText = rest[(close + 2)..];
            if (host.Length == 0 || !IPAddress.TryParse(host, out var ip) || ip.AddressFamily != AddressFamily.InterNetworkV6)
            {
                error = $"address '{text}': '{host}' is not an IPv6 address";
                return false;
            }
        }
        else
        {
            portText = rest.StartsWith(':') ? rest[1..] : rest;
        }

        if (!TryParsePort(portText, out var port))
        {
            error = $"address '{text}': port must be a decimal number 0..65535";
            return false;
        }

        address = new TransportAddress(text, TransportAddressKind.Tcp6) { Host = host, Port = port };
        error = string.Empty;
        return true;
    }

    private static bool TryParseFd(string text, string rest, out TransportAddress? address, out string error)
    {
        address = null;
        var colon = rest.IndexOf(':');
        if (colon < 0)
        {
            if (!TryParseFdNumber(rest, allowMinusOne: false, out var fd))
            {
                error = $"address '{text}': descriptor must be 0..65535";
                return false;
            }

            address = new TransportAddress(text, TransportAddressKind.FileDescriptor) { ReadFd = fd, WriteFd = fd };
            error = string.Empty;
            return true;
        }

        if (!TryParseFdNumber(rest[..colon], allowMinusOne: true, out var rd)
            || !TryParseFdNumber(rest[(colon + 1)..], allowMinusOne: true, out var wr)
            || (rd < 0 && wr < 0))
        {
            error = $"address '{text}': expected FD:<rd>:<wr> with 0..65535 (or -1 for one side)";
            return false;
        }

        address = new TransportAddress(text, TransportAddressKind.FileDescriptor) { ReadFd = rd, WriteFd = wr };
        error = string.Empty;
        return true;
    }

    private static bool TryParsePort(string s, out int port)
    {
        port = 0;
        if (s.Length is 0 or > 5)
        {
            return false;
        }

        foreach (var c in s)
        {
            if (c is < '0' or > '9')
            {
                return false;
            }
        }

        port = int.Parse(s, NumberStyles.None, CultureInfo.InvariantCulture);
        return port <= 65535;
    }

    private static bool TryParseFdNumber(string s, bool allowMinusOne, out int fd)
    {
        if (allowMinusOne && s == "-1")
        {
            fd = -1;
            return true;
        }

        return TryParsePort(s, out fd);
    }
}
