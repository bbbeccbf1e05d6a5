using CacheHost.Roles.CacheServer;
using CacheHost.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Xunit;

namespace CacheHost.Host.Tests;

/// <summary>Role selection in the composition root (HostFactory), in process.</summary>
public sealed class HostCompositionTests
{
    [Fact]
    public void ListedRolesAreRegisteredAndNothingElse()
    {
        var socket = TestPaths.Socket("hc");
        using var host = HostFactory.Build(["--CacheHost:Roles:0=CacheServer", $"--CacheHost:CacheServer:Listen:0=UNIX:{socket}"], useAppSettings: false);
        var hosted = host.Services.GetServices<IHostedService>().ToList();
        Assert.Single(hosted.OfType<CacheServerService>());
        Assert.DoesNotContain(hosted, s => s.GetType().Namespace?.StartsWith("CacheHost.Roles", StringComparison.Ordinal) == true && s is not CacheServerService);
    }

    [Fact]
    public void HostShutdownTimeoutCoversTheLongestRoleConnectionBudget()
    {
        // Before: a fixed 15 s host timeout while a role may take up to 10 min to close connections gracefully.
        var socket = TestPaths.Socket("hc");
        using (var defaults = HostFactory.Build(["--CacheHost:Roles=CacheServer", $"--CacheHost:CacheServer:Listen:0=UNIX:{socket}"], useAppSettings: false))
        {
            Assert.Equal(TimeSpan.FromSeconds(15), defaults.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<HostOptions>>().Value.ShutdownTimeout);
        }

        using var host = HostFactory.Build(["--CacheHost:Roles=CacheServer", $"--CacheHost:CacheServer:Listen:0=UNIX:{socket}",
            "--CacheHost:CacheServer:Transport:ShutdownTimeout=00:02:00"], useAppSettings: false);
        Assert.Equal(TimeSpan.FromSeconds(130), host.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<HostOptions>>().Value.ShutdownTimeout);
    }

    [Fact]
    public void RolesMayBeGivenAsACommaSeparatedString()
    {
        var socket = TestPaths.Socket("hc");
        using var host = HostFactory.Build(["--CacheHost:Roles=CacheServer", $"--CacheHost:CacheServer:Listen:0=UNIX:{socket}"], useAppSettings: false);
        Assert.Single(host.Services.GetServices<IHostedService>().OfType<CacheServerService>());
    }

    [Fact]
    public void AnUnknownRoleIsAConfigurationErrorNamingTheKey()
    {
        var error = Assert.Throws<ConfigurationException>(() => HostFactory.Build(["--CacheHost:Roles:0=Bogus"], useAppSettings: false));
        Assert.Contains("CacheHost:Roles", error.Message);
        Assert.Contains("Bogus", error.Message);
    }

    [Fact]
    public void TheShippedProgramDoesNotKnowTheTestOnlyProbeRole()
    {
        // issue 16: Probe (crash on purpose, switch the watchdog off) lives in tests/; only cachehost-probe adds it.
        Assert.DoesNotContain("Probe", RoleCatalog.Roles.Keys, StringComparer.OrdinalIgnoreCase);
        Assert.Equal(["CacheServer", "Clacks", "ClientProxy", "ProcessSupervisor", "Snoop"], RoleCatalog.Roles.Keys.Order(StringComparer.Ordinal));
        var error = Assert.Throws<ConfigurationException>(() => HostFactory.Build(["--CacheHost:Roles:0=Probe"], useAppSettings: false));
        Assert.Contains("unknown role 'Probe'", error.Message);
        Assert.DoesNotContain(typeof(HostFactory).Assembly.GetReferencedAssemblies(), a => a.Name == "CacheHost.Roles.Probe");
    }

    [Fact]
    public void NoRoleIsAConfigurationError()
    {
        var error = Assert.Throws<ConfigurationException>(() => HostFactory.Build([], useAppSettings: false));
        Assert.Contains("CacheHost:Roles", error.Message);
    }

    [Fact]
    public void TheShippedAppSettingsEnableACacheServerOnALocalAddress()
    {
        using var host = HostFactory.Build([], useAppSettings: true);
        var options = host.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<CacheServerOptions>>().Value;
        Assert.Single(host.Services.GetServices<IHostedService>().OfType<CacheServerService>());
        Assert.Contains(options.Listen, a => a.StartsWith("IP:127.0.0.1:", StringComparison.Ordinal) || a.StartsWith("UNIX:", StringComparison.Ordinal));
    }
}
