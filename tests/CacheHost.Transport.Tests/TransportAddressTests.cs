using CacheHost.Transport;
using Xunit;

namespace CacheHost.Transport.Tests;

/// <summary>The libnal address grammar (distcache §2.1) plus the IPv6 extension.</summary>
public sealed class TransportAddressTests
{
    [Theory]
    [InlineData("UNIX:/tmp/x.sock", TransportAddressKind.Unix, null, 0)]
    [InlineData("IP:9001", TransportAddressKind.Tcp4, null, 9001)]
    [InlineData("IP::9001", TransportAddressKind.Tcp4, null, 9001)]
    [InlineData("IP:127.0.0.1:9001", TransportAddressKind.Tcp4, "127.0.0.1", 9001)]
    [InlineData("IP:localhost:0", TransportAddressKind.Tcp4, "localhost", 0)]
    [InlineData("IPv4:10.1.2.3:65535", TransportAddressKind.Tcp4, "10.1.2.3", 65535)]
    [InlineData("IPv4:9001", TransportAddressKind.Tcp4, null, 9001)]
    [InlineData("IPv6:[::1]:9001", TransportAddressKind.Tcp6, "::1", 9001)]
    [InlineData("IPv6:9001", TransportAddressKind.Tcp6, null, 9001)]
    public void ValidAddressesParse(string text, TransportAddressKind kind, string? host, int port)
    {
        var address = TransportAddress.Parse(text);
        Assert.Equal(kind, address.Kind);
        Assert.Equal(host, address.Host);
        Assert.Equal(port, address.Port);
        Assert.Equal(text, address.ToString());
    }

    [Theory]
    [InlineData("FD:3", 3, 3)]
    [InlineData("FD:3:4", 3, 4)]
    [InlineData("FD:-1:4", -1, 4)]
    [InlineData("FD:5:-1", 5, -1)]
    public void DescriptorAddressesParse(string text, int read, int write)
    {
        var address = TransportAddress.Parse(text);
        Assert.Equal(TransportAddressKind.FileDescriptor, address.Kind);
        Assert.Equal(read, address.ReadFd);
        Assert.Equal(write, address.WriteFd);
    }

    [Theory]
    [InlineData("")]
    [InlineData("X")]
    [InlineData("TCP:1234")]
    [InlineData("unix:/tmp/x")]
    [InlineData("UNIX:")]
    [InlineData("IP:65536")]
    [InlineData("IP:host:port")]
    [InlineData("IP:1.2.3.4:80:81")]
    [InlineData("IP:-1")]
    [InlineData("IP: 80")]
    [InlineData("IPv6:[::1]")]
    [InlineData("IPv6:[nothost]:80")]
    [InlineData("FD:70000")]
    [InlineData("FD:-1:-1")]
    [InlineData("FD:-1")]
    public void InvalidAddressesAreRejectedWithAReason(string text)
    {
        Assert.False(TransportAddress.TryParse(text, out _, out var error));
        Assert.False(string.IsNullOrEmpty(error));
    }

    [Fact]
    public void OverlongUnixPathsAreRefusedInsteadOfTruncated()
    {
        Assert.False(TransportAddress.TryParse("UNIX:/" + new string('a', 120), out _, out var error));
        Assert.Contains("longer", error);
        Assert.False(TransportAddress.TryParse(new string('x', 256), out _, out _));
    }
}
