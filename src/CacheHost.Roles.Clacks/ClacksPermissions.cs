using CacheHost.Protocols.Clacks;

namespace CacheHost.Roles.Clacks;

/// <summary>What a command or OVERHEAD flag needs (clacks §4: read, write, manage, interclacks).</summary>
internal enum ClacksPermission
{
    None,
    Read,
    Write,
    Manage,
    Interclacks,
}

/// <summary>
/// The permission table (clacks §4, §5.2): which login grants which permissions (the main account all four, each
/// configured user its own, never interclacks) and which permission each command needs.
/// </summary>
internal sealed class ClacksPermissions
{
    private readonly Dictionary<string, ClacksUserOptions> _userTokens = new(StringComparer.Ordinal);

    public ClacksPermissions(ClacksOptions options)
    {
        MainToken = LoginToken.Create(options.Username, options.Password);
        foreach (var user in options.Users)
        {
            _userTokens.TryAdd(LoginToken.Create(user.Username, user.Password), user);
        }
    }

    /// <summary>The main account's login token (also what this server sends on its interclacks links).</summary>
    public string MainToken { get; }

    /// <summary>The permission a command needs; <see cref="ClacksPermission.None"/> for those anybody logged in may run.</summary>
    public static ClacksPermission Required(ClacksCommandKind kind) => kind switch
    {
        ClacksCommandKind.Notify or ClacksCommandKind.Set or ClacksCommandKind.SetAndStore or ClacksCommandKind.Store
            or ClacksCommandKind.Remove or ClacksCommandKind.Increment or ClacksCommandKind.Decrement => ClacksPermission.Write,
        ClacksCommandKind.Retrieve or ClacksCommandKind.KeyList or ClacksCommandKind.Listen or ClacksCommandKind.Unlisten => ClacksPermission.Read,
        ClacksCommandKind.ClearCache or ClacksCommandKind.Monitor or ClacksCommandKind.Unmonitor
            or ClacksCommandKind.ClientList or ClacksCommandKind.ClientDisconnect => ClacksPermission.Manage,
        ClacksCommandKind.Timeout or ClacksCommandKind.KeySync => ClacksPermission.Interclacks,
        _ => ClacksPermission.None, // Quit, Ping, NoPing, Flush; Unknown is answered as unknown
    };

    /// <summary>Whether <paramref name="session"/> holds <paramref name="permission"/>.</summary>
    public static bool Allows(ClacksSession session, ClacksPermission permission) => permission switch
    {
        ClacksPermission.Read => session.CanRead,
        ClacksPermission.Write => session.CanWrite,
        ClacksPermission.Manage => session.CanManage,
        ClacksPermission.Interclacks => session.CanInterclacks,
        _ => true,
    };

    /// <summary>
    /// OVERHEAD A (clacks §4): sets the session's permissions from <paramref name="token"/>; false (nothing granted)
    /// when the token is unknown. A user login is refused on this server's own master link.
    /// </summary>
    public bool TryGrant(ClacksSession session, string token)
    {
        if (token == MainToken)
        {
            session.CanRead = session.CanWrite = session.CanManage = session.CanInterclacks = true;
            return true;
        }

        if (!session.IsMasterLink && _userTokens.TryGetValue(token, out var user))
        {
            session.CanRead = user.Read;
            session.CanWrite = user.Write;
            session.CanManage = user.Manage;
            session.CanInterclacks = false;
            return true;
        }

        return false;
    }
}
