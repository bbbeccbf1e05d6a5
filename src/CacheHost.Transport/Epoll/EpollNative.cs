using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace CacheHost.Transport.Epoll;

/// <summary>
/// The libc calls of the epoll engine (Linux, glibc or musl, x86-64 and arm64). Errors come back through errno,
/// read with Marshal.GetLastPInvokeError() right after the call.
/// </summary>
internal static unsafe class EpollNative
{
    private const string Lib = "libc";

    public const int EPOLL_CLOEXEC = 0x80000;
    public const int EPOLL_CTL_ADD = 1, EPOLL_CTL_DEL = 2, EPOLL_CTL_MOD = 3;
    public const uint EPOLLIN = 0x001, EPOLLOUT = 0x004, EPOLLERR = 0x008, EPOLLHUP = 0x010, EPOLLRDHUP = 0x2000, EPOLLET = 1u << 31;
    public const int EINTR = 4, EAGAIN = 11, EBADF = 9, EPIPE = 32, EINPROGRESS = 115, ECONNRESET = 104, ECONNABORTED = 103,
        ENOTCONN = 107, ETIMEDOUT = 110, ESHUTDOWN = 108, EHOSTUNREACH = 113, ENETUNREACH = 101;
    public const int MSG_NOSIGNAL = 0x4000;
    public const int SHUT_RDWR = 2;

    /// <summary>x86-64 packs <c>struct epoll_event</c> to 12 bytes; arm64 aligns its 64-bit data to offset 8.</summary>
    public static readonly bool PackedEvent = RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.X86;

    public static int EventSize => PackedEvent ? 12 : 16;

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public void* Base;
        public nuint Len;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct MsgHdr
    {
        public void* Name;
        public uint NameLen;
        public IoVec* Iov;
        public nuint IovLen;
        public void* Control;
        public nuint ControlLen;
        public int Flags;
    }

    [DllImport(Lib, SetLastError = true)] public static extern int epoll_create1(int flags);

    [DllImport(Lib, SetLastError = true)] private static extern int epoll_ctl(int epfd, int op, int fd, byte* ev);

    [DllImport(Lib, SetLastError = true)] public static extern int epoll_wait(int epfd, byte* events, int maxevents, int timeout);

    [DllImport(Lib, SetLastError = true)] public static extern nint recv(int fd, byte* buf, nuint len, int flags);

    [DllImport(Lib, SetLastError = true)] public static extern nint send(int fd, byte* buf, nuint len, int flags);

    [DllImport(Lib, SetLastError = true)] public static extern nint sendmsg(int fd, MsgHdr* msg, int flags);

    [DllImport(Lib, SetLastError = true)] public static extern int connect(int fd, byte* addr, uint len);

    [DllImport(Lib, SetLastError = true)] public static extern int shutdown(int fd, int how);

    /// <summary>The SocketError for an errno, so callers see the same exceptions as from the runtime's sockets.</summary>
    public static System.Net.Sockets.SocketError ToSocketError(int errno) => errno switch
    {
        111 => System.Net.Sockets.SocketError.ConnectionRefused,
        2 => System.Net.Sockets.SocketError.AddressNotAvailable,
        13 => System.Net.Sockets.SocketError.AccessDenied,
        ETIMEDOUT => System.Net.Sockets.SocketError.TimedOut,
        EHOSTUNREACH => System.Net.Sockets.SocketError.HostUnreachable,
        ENETUNREACH => System.Net.Sockets.SocketError.NetworkUnreachable,
        ECONNRESET => System.Net.Sockets.SocketError.ConnectionReset,
        ECONNABORTED => System.Net.Sockets.SocketError.ConnectionAborted,
        EPIPE or ESHUTDOWN => System.Net.Sockets.SocketError.Shutdown,
        ENOTCONN => System.Net.Sockets.SocketError.NotConnected,
        EAGAIN => System.Net.Sockets.SocketError.WouldBlock,
        EINPROGRESS => System.Net.Sockets.SocketError.InProgress,
        _ => System.Net.Sockets.SocketError.SocketError,
    };

    /// <summary>epoll_ctl with the event laid out for this architecture. Returns 0 or errno.</summary>
    public static int Control(int epfd, int op, int fd, uint events, ulong data)
    {
        var ev = stackalloc byte[16];
        Unsafe.WriteUnaligned(ev, events);
        Unsafe.WriteUnaligned(ev + (PackedEvent ? 4 : 8), data);
        return epoll_ctl(epfd, op, fd, ev) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    public static uint EventMask(byte* events, int index) => Unsafe.ReadUnaligned<uint>(events + (index * EventSize));

    public static ulong EventData(byte* events, int index) => Unsafe.ReadUnaligned<ulong>(events + (index * EventSize) + (PackedEvent ? 4 : 8));
}
