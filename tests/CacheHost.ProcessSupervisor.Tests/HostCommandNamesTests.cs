using CacheHost.Roles.ProcessSupervisor;

namespace CacheHost.ProcessSupervisor.Tests;

/// <summary>The names offered on the daemon control socket follow the supervisor's command table.</summary>
public sealed class HostCommandNamesTests
{
    [Fact]
    public void Every_supervisor_command_is_offered_except_the_hosts_own_names()
    {
        using var supervisor = new Supervisor(new SupervisorSettings());
        string[] hostOwned = ["echo", "exit", "statedump", "log.filter"];
        var expected = supervisor.CommandTableNames.Except(hostOwned).Append("supervisor.log.filter").Order(StringComparer.Ordinal);
        Assert.Equal(expected, Supervisor.HostCommandNames.Order(StringComparer.Ordinal));
    }
}
