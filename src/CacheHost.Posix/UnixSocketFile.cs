using System.Net.Sockets;

namespace CacheHost.Posix;

/// <summary>
/// The one answer to "is this a stale unix socket?" for every place that binds one (role listeners, the
/// daemon-wide control socket, daemonproxy's socket.create): a socket file nobody accepts on is stale and may
/// be replaced; a live one belongs to a running process and is never taken over (issue 21 item 7); anything
/// else at the path is not ours to delete.
/// </summary>
internal static unsafe class UnixSocketFile
{
    /// <summary>True when a socket file (not a symlink to one) is at <paramref name="path"/>.</summary>
    public static bool IsSocket(string path) => PosixFiles.TryLStat(path, out var st) && st.IsSocket;

    /// <summary>
    /// True when a process accepts connections on the socket file at <paramref name="path"/> (a connect
    /// succeeds); false for a stale socket file (ECONNREFUSED) or no socket at all.
    /// </summary>
    public static bool IsLive(string path)
    {
        if (!IsSocket(path))
        {
            return false;
        }

        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException)
        {
            return false; // ECONNREFUSED: nobody listens, the file is stale
        }
    }

    /// <summary>
    /// Removes the socket file at <paramref name="path"/> when it is stale (a socket nobody listens on) and,
    /// with <paramref name="ownedByThisUser"/>, owned by this process's real uid (daemonproxy §5 socket.create).
    /// Returns true when something was removed.
    /// </summary>
    public static bool RemoveIfStale(string path, bool ownedByThisUser = false)
    {
        if (!PosixFiles.TryLStat(path, out var st) || !st.IsSocket || (ownedByThisUser && st.Uid != Libc.getuid()) || IsLive(path))
        {
            return false;
        }

        return PosixFiles.Unlink(path) == 0;
    }

    /// <summary>True when <paramref name="fd"/> is a socket in the listening state (SO_ACCEPTCONN).</summary>
    public static bool IsListening(int fd)
    {
        int value;
        uint length = sizeof(int);
        return Libc.getsockopt(fd, Libc.SOL_SOCKET, Libc.SO_ACCEPTCONN, &value, &length) == 0 && value != 0;
    }
}
