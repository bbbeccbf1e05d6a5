using CacheHost.Roles.ProcessSupervisor;

namespace CacheHost.ProcessSupervisor.Tests;

/// <summary>In-process checks of the option parser (daemonproxy §2.1); the process-level behaviour is in CommandLineTests.</summary>
public sealed class CommandLineParsingTests
{
    [Theory]
    [InlineData("96", 96)]
    [InlineData("2k", 2048)]
    [InlineData("2K", 2048)]
    [InlineData("2kB", 2000)]
    [InlineData("2KiB", 2048)]
    [InlineData("1m", 1048576)]
    [InlineData("1MB", 1000000)]
    [InlineData("1g", 1073741824)]
    [InlineData("7b", 7)]
    [InlineData("7B", 7)]
    public void SizeSuffixes(string text, long expected)
    {
        Assert.True(DaemonProxyCommandLine.TryParseSize(text, out var bytes));
        Assert.Equal(expected, bytes);
    }

    [Theory]
    [InlineData("")]
    [InlineData("k")]
    [InlineData("5x")]
    [InlineData("5kX")]
    public void BadSizes(string text) => Assert.False(DaemonProxyCommandLine.TryParseSize(text, out _));

    [Fact]
    public void BundlesConsumeArgumentsInOrder()
    {
        var cl = new DaemonProxyCommandLine();
        Assert.Null(cl.Parse(["-vvSE", "/tmp/sock", "a\tb", "-q", "--exit-guard", "-12", "--service-pool", "10x1k"]));
        Assert.Equal("/tmp/sock", cl.Settings.SocketPath);
        Assert.Equal("a\tb", cl.Settings.ExecArgs);
        Assert.Equal(-1, cl.Settings.Verbosity);
        Assert.Equal(-12, cl.Settings.Guard);
        Assert.Equal(10, cl.Settings.ServicePool);
        Assert.Equal(1024, cl.Settings.ServiceObjectSize);
    }

    [Theory]
    [InlineData("--socket=/x")]
    [InlineData("-Z")]
    [InlineData("positional")]
    [InlineData("--socket")]
    [InlineData("-iS")]
    public void UsageErrors(string arg) => Assert.NotNull(new DaemonProxyCommandLine().Parse([arg]));
}
