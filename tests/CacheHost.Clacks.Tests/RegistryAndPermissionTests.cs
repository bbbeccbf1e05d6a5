using System.IO.Pipelines;
using System.Net;
using System.Text;
using CacheHost.Protocols.Clacks;
using CacheHost.Roles.Clacks;
using CacheHost.Transport;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace CacheHost.Clacks.Tests;

/// <summary>
/// The registry (sessions, subscription index, monitors, links, fan-out) and the permission table in-process,
/// over in-memory pipes instead of sockets; the wire tests cover the same behaviour through real connections.
/// </summary>
public sealed class RegistryAndPermissionTests
{
    /// <summary>A connection whose output is an in-memory pipe the test reads.</summary>
    private sealed class PipeConnection : TransportConnection
    {
        private readonly Pipe _input = new();
        private readonly Pipe _output = new();

        public PipeConnection() => Transport = new DuplexPipe(_input.Reader, _output.Writer);

        public override IDuplexPipe Transport { get; }

        public override EndPoint? LocalEndPoint => null;

        public override EndPoint? RemoteEndPoint => null;

        public override CancellationToken ConnectionClosed => CancellationToken.None;

        /// <summary>What was sent so far (flushed), as lines without CR LF.</summary>
        public List<string> Received()
        {
            var lines = new List<string>();
            if (_output.Reader.TryRead(out var result))
            {
                var text = Encoding.Latin1.GetString(result.Buffer);
                _output.Reader.AdvanceTo(result.Buffer.End);
                lines.AddRange(text.Split("\r\n", StringSplitOptions.RemoveEmptyEntries));
            }

            return lines;
        }

        public override void Abort(string reason)
        {
        }

        public override ValueTask DisposeAsync() => default;

        private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
        {
            public PipeReader Input { get; } = input;

            public PipeWriter Output { get; } = output;
        }
    }

    private sealed class Fixture
    {
        private readonly object _gate = new();
        private readonly List<ClacksSession> _written = [];
        private long _serial;

        public ClacksStatistics Statistics { get; } = new();

        public ClacksRegistry Registry { get; }

        public Fixture() => Registry = new ClacksRegistry(Statistics);

        public (ClacksSession Session, PipeConnection Connection) Add(string cid, bool authenticated = true)
        {
            var connection = new PipeConnection();
            var session = new ClacksSession(connection, _gate, _written, ++_serial, cid, "host", cid, 0) { Authenticated = authenticated };
            Registry.Add(session);
            return (session, connection);
        }

        /// <summary>Flushes what the sessions were sent (the server does this when it leaves its gate).</summary>
        public void Flush()
        {
            foreach (var s in _written)
            {
                s.FlushWritten();
            }

            _written.Clear();
        }
    }

    [Fact]
    public void Subscription_index_follows_listen_unlisten_and_remove_and_holds_no_empty_sets()
    {
        var f = new Fixture();
        var (a, _) = f.Add("a");
        var (b, _) = f.Add("b");
        Assert.True(f.Registry.Listen(a, "x"));
        Assert.False(f.Registry.Listen(a, "x")); // already listening
        Assert.True(f.Registry.Listen(b, "x"));
        Assert.True(f.Registry.Listen(b, "y"));
        Assert.Equal(2, f.Registry.ListenerCount("x"));
        Assert.Equal(2, f.Registry.IndexedNames);
        Assert.Equal(3, f.Statistics.Subscriptions); // the meter's figure (issue 18): a repeated LISTEN is not counted

        Assert.True(f.Registry.Unlisten(a, "x"));
        Assert.False(f.Registry.Unlisten(a, "x"));
        Assert.Equal(1, f.Registry.ListenerCount("x"));
        Assert.DoesNotContain("x", a.Listening);

        Assert.True(f.Registry.Remove(b));
        Assert.Equal(0, f.Registry.IndexedNames); // b's names leave the index with it
        Assert.Equal(0, f.Registry.ListenerCount("y"));
        Assert.Equal(0, f.Statistics.Subscriptions);
        Assert.False(f.Registry.Remove(b)); // already gone
        Assert.Equal(1, f.Registry.Count);
    }

    [Fact]
    public void Removing_a_replaced_session_leaves_the_registered_one()
    {
        var f = new Fixture();
        var (old, _) = f.Add("same");
        var (current, _) = f.Add("same");
        Assert.False(f.Registry.Remove(old));
        Assert.True(f.Registry.TryGet("same", out var registered));
        Assert.Same(current, registered);
    }

    [Fact]
    public void Deliver_encodes_once_reaches_every_other_listener_and_never_echoes()
    {
        var f = new Fixture();
        var (sender, senderOut) = f.Add("s");
        var (l1, out1) = f.Add("l1");
        var (l2, out2) = f.Add("l2");
        var (_, bystanderOut) = f.Add("other");
        f.Registry.Listen(sender, "k");
        f.Registry.Listen(l1, "k");
        f.Registry.Listen(l2, "k");

        f.Registry.Deliver(sender, "k", "SET k=1", 0);
        f.Flush();
        Assert.Equal(["SET k=1"], out1.Received());
        Assert.Equal(["SET k=1"], out2.Received());
        Assert.Empty(senderOut.Received());
        Assert.Empty(bystanderOut.Received());
        Assert.Equal(1, f.Statistics.FanOutEncodes);
        Assert.Equal(2, f.Statistics.FanOutDeliveries);

        f.Registry.Unlisten(l1, "k");
        f.Registry.Unlisten(l2, "k");
        f.Registry.Deliver(sender, "k", "SET k=2", 0); // only the sender listens: nothing is encoded
        Assert.Equal(1, f.Statistics.FanOutEncodes);
    }

    [Fact]
    public void Monitors_get_debug_lines_links_get_forwards_except_the_origin()
    {
        var f = new Fixture();
        var (monitor, monitorOut) = f.Add("m");
        var (link1, link1Out) = f.Add("l1");
        var (link2, link2Out) = f.Add("l2");
        f.Registry.SetMonitor(monitor, true);
        f.Registry.SetLink(link1, true);
        f.Registry.SetLink(link2, true);
        Assert.True(monitor.Monitor);
        Assert.True(link1.IsLink);

        f.Registry.Debug("x=SET a=1", 0);
        f.Registry.ForwardToLinks(link1, "SET a=1", 0);
        f.Flush();
        Assert.Equal(["DEBUG x=SET a=1"], monitorOut.Received());
        Assert.Empty(link1Out.Received());
        Assert.Equal(["SET a=1"], link2Out.Received());

        f.Registry.SetMonitor(monitor, false);
        f.Registry.Remove(link2);
        f.Registry.Debug("gone", 0);
        f.Registry.ForwardToLinks(link1, "SET a=2", 0);
        f.Flush();
        Assert.Empty(monitorOut.Received());
        Assert.Empty(link2Out.Received());
    }

    public static TheoryData<ClacksCommandKind, string> CommandPermissions => new()
    {
        { ClacksCommandKind.Notify, "Write" },
        { ClacksCommandKind.Set, "Write" },
        { ClacksCommandKind.SetAndStore, "Write" },
        { ClacksCommandKind.Store, "Write" },
        { ClacksCommandKind.Remove, "Write" },
        { ClacksCommandKind.Increment, "Write" },
        { ClacksCommandKind.Decrement, "Write" },
        { ClacksCommandKind.Retrieve, "Read" },
        { ClacksCommandKind.KeyList, "Read" },
        { ClacksCommandKind.Listen, "Read" },
        { ClacksCommandKind.Unlisten, "Read" },
        { ClacksCommandKind.ClearCache, "Manage" },
        { ClacksCommandKind.Monitor, "Manage" },
        { ClacksCommandKind.Unmonitor, "Manage" },
        { ClacksCommandKind.ClientList, "Manage" },
        { ClacksCommandKind.ClientDisconnect, "Manage" },
        { ClacksCommandKind.KeySync, "Interclacks" },
        { ClacksCommandKind.Timeout, "Interclacks" },
        { ClacksCommandKind.Quit, "None" },
        { ClacksCommandKind.Ping, "None" },
        { ClacksCommandKind.NoPing, "None" },
        { ClacksCommandKind.Flush, "None" },
        { ClacksCommandKind.Unknown, "None" },
    };

    [Theory]
    [MemberData(nameof(CommandPermissions))]
    public void Permission_table_names_what_each_command_needs(ClacksCommandKind kind, string expected)
    {
        Assert.Equal(expected, ClacksPermissions.Required(kind).ToString());
    }

    [Fact]
    public void Permission_table_covers_every_command_kind()
    {
        var covered = CommandPermissions.Select(row => (ClacksCommandKind)row[0]).ToHashSet();
        Assert.Equal(Enum.GetValues<ClacksCommandKind>().ToHashSet(), covered);
    }

    [Fact]
    public void Logins_grant_the_main_account_everything_and_users_their_own_rights_never_interclacks()
    {
        var options = new ClacksOptions
        {
            Username = "admin",
            Password = "secret",
            Users = [new ClacksUserOptions { Username = "reader", Password = "r", Read = true }],
        };
        var permissions = new ClacksPermissions(options);
        var f = new Fixture();
        var (main, _) = f.Add("main", authenticated: false);
        var (reader, _) = f.Add("reader", authenticated: false);
        var (stranger, _) = f.Add("stranger", authenticated: false);

        Assert.True(permissions.TryGrant(main, LoginToken.Create("admin", "secret")));
        Assert.True(main is { CanRead: true, CanWrite: true, CanManage: true, CanInterclacks: true });
        Assert.Equal(LoginToken.Create("admin", "secret"), permissions.MainToken);

        Assert.True(permissions.TryGrant(reader, LoginToken.Create("reader", "r")));
        Assert.True(reader is { CanRead: true, CanWrite: false, CanManage: false, CanInterclacks: false });
        Assert.True(ClacksPermissions.Allows(reader, ClacksPermissions.Required(ClacksCommandKind.Listen)));
        Assert.False(ClacksPermissions.Allows(reader, ClacksPermissions.Required(ClacksCommandKind.Set)));
        Assert.True(ClacksPermissions.Allows(reader, ClacksPermissions.Required(ClacksCommandKind.Ping)));

        Assert.False(permissions.TryGrant(stranger, LoginToken.Create("reader", "wrong")));
        Assert.True(stranger is { CanRead: false, CanWrite: false, CanManage: false, CanInterclacks: false });
    }

    [Fact]
    public async Task A_read_only_user_is_refused_writes_in_order_with_its_replies_and_nothing_is_delivered()
    {
        var options = new ClacksOptions
        {
            Username = "admin",
            Password = "secret",
            Users = [new ClacksUserOptions { Username = "reader", Password = "r", Read = true }],
        };
        var server = new ClacksServer(options, NullLogger.Instance);
        var readerConnection = new PipeConnection();
        var adminConnection = new PipeConnection();
        var reader = server.Accept(readerConnection, unixSocket: true);
        var admin = server.Accept(adminConnection, unixSocket: true);
        await server.ProcessAsync(admin, ["OVERHEAD A " + LoginToken.Create("admin", "secret"), "LISTEN k"]);
        adminConnection.Received();
        readerConnection.Received();

        await server.ProcessAsync(reader, ["OVERHEAD A " + LoginToken.Create("reader", "r"), "SET k=1", "RETRIEVE k", "CLEARCACHE"]);
        Assert.Equal(
            ["OVERHEAD E permission_denied", "NOTRETRIEVED k", "OVERHEAD E permission_denied", "OVERHEAD O Welcome!"],
            readerConnection.Received());
        Assert.Empty(adminConnection.Received());
    }
}
