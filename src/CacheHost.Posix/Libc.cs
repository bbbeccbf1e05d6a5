using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace CacheHost.Posix;

/// <summary>
/// Every libc function the product calls directly, declared once (issue 16): the epoll engine's socket calls,
/// the supervisor's raw descriptors, posix_spawn (research 2.5), per-pid reaping (research 2.6), CLOCK_MONOTONIC
/// (daemonproxy §16, ecosystem.md 1.9), initgroups and unsetenv. Linux, glibc or musl, x86-64 and arm64
/// constants. Errors come back through errno: read <see cref="Errno"/> right after the call.
/// </summary>
internal static unsafe partial class Libc
{
    private const string Lib = "libc";

    // errno values (Linux generic ABI, the same on x86-64 and arm64).
    public const int ENOENT = 2, EINTR = 4, EBADF = 9, ECHILD = 10, EAGAIN = 11, EACCES = 13, EEXIST = 17, EPIPE = 32,
        ENETUNREACH = 101, ECONNABORTED = 103, ECONNRESET = 104, ENOTCONN = 107, ESHUTDOWN = 108, ETIMEDOUT = 110,
        ECONNREFUSED = 111, EHOSTUNREACH = 113, EINPROGRESS = 115;

    public const int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_ACCMODE = 3, O_CREAT = 0x40, O_NOCTTY = 0x100,
        O_TRUNC = 0x200, O_APPEND = 0x400, O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000;
    public const int F_GETFD = 1, F_SETFD = 2, F_GETFL = 3, F_SETFL = 4, FD_CLOEXEC = 1, F_DUPFD_CLOEXEC = 1030;
    public const short POLLIN = 1, POLLOUT = 4, POLLERR = 8, POLLHUP = 16, POLLNVAL = 32;
    public const int AF_UNIX = 1, AF_INET = 2, AF_INET6 = 10;
    public const int SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_SEQPACKET = 5, SOCK_NONBLOCK = 0x800, SOCK_CLOEXEC = 0x80000;
    public const int SOL_SOCKET = 1, SO_REUSEADDR = 2, SO_TYPE = 3, SO_DOMAIN = 39, SO_ACCEPTCONN = 30;
    public const int SHUT_RD = 0, SHUT_WR = 1, SHUT_RDWR = 2;
    public const int MSG_DONTWAIT = 0x40, MSG_NOSIGNAL = 0x4000, MSG_CMSG_CLOEXEC = 0x40000000, SCM_RIGHTS = 1;
    public const int WNOHANG = 1;
    public const short POSIX_SPAWN_SETSIGDEF = 0x04, POSIX_SPAWN_SETSIGMASK = 0x08, POSIX_SPAWN_SETSID = 0x80;
    public const int S_IFMT = 0xF000, S_IFSOCK = 0xC000;
    public const int CLOCK_MONOTONIC = 1;

    public const int EPOLL_CLOEXEC = 0x80000;
    public const int EPOLL_CTL_ADD = 1, EPOLL_CTL_DEL = 2, EPOLL_CTL_MOD = 3;
    public const uint EPOLLIN = 0x001, EPOLLOUT = 0x004, EPOLLERR = 0x008, EPOLLHUP = 0x010, EPOLLRDHUP = 0x2000, EPOLLET = 1u << 31;

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Timespec
    {
        public long Sec;
        public long Nsec;
    }

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

    // Descriptors and files.
    [LibraryImport(Lib, SetLastError = true)] public static partial nint read(int fd, byte* buf, nuint count);
    [LibraryImport(Lib, SetLastError = true)] public static partial nint write(int fd, byte* buf, nuint count);
    [LibraryImport(Lib, SetLastError = true)] public static partial int close(int fd);
    [LibraryImport(Lib, SetLastError = true)] public static partial int dup(int fd);
    [LibraryImport(Lib, SetLastError = true)] public static partial int dup2(int fd, int target);
    [LibraryImport(Lib, SetLastError = true)] public static partial int pipe2(int* fds, int flags);
    [LibraryImport(Lib, SetLastError = true)] public static partial int fcntl(int fd, int cmd, int arg);
    [LibraryImport(Lib, SetLastError = true)] public static partial int poll(PollFd* fds, nuint nfds, int timeout);
    [LibraryImport(Lib, SetLastError = true)] public static partial int open(byte* path, int flags, int mode);
    [LibraryImport(Lib, SetLastError = true)] public static partial int fsync(int fd);
    [LibraryImport(Lib, SetLastError = true)] public static partial int chdir(byte* path);
    [LibraryImport(Lib, SetLastError = true)] public static partial int mkdir(byte* path, int mode);
    [LibraryImport(Lib, SetLastError = true)] public static partial int unlink(byte* path);
    [LibraryImport(Lib, SetLastError = true)] public static partial int rename(byte* from, byte* to);
    [LibraryImport(Lib, SetLastError = true)] public static partial int umask(int mask);

    // Sockets.
    [LibraryImport(Lib, SetLastError = true)] public static partial int socket(int domain, int type, int protocol);
    [LibraryImport(Lib, SetLastError = true)] public static partial int socketpair(int domain, int type, int protocol, int* sv);
    [LibraryImport(Lib, SetLastError = true)] public static partial int bind(int fd, byte* addr, uint len);
    [LibraryImport(Lib, SetLastError = true)] public static partial int listen(int fd, int backlog);
    [LibraryImport(Lib, SetLastError = true)] public static partial int accept4(int fd, byte* addr, uint* len, int flags);
    [LibraryImport(Lib, SetLastError = true)] public static partial int connect(int fd, byte* addr, uint len);
    [LibraryImport(Lib, SetLastError = true)] public static partial int setsockopt(int fd, int level, int name, int* value, uint len);
    [LibraryImport(Lib, SetLastError = true)] public static partial int getsockopt(int fd, int level, int name, int* value, uint* len);
    [LibraryImport(Lib, SetLastError = true)] public static partial int shutdown(int fd, int how);
    [LibraryImport(Lib, SetLastError = true)] public static partial nint recv(int fd, byte* buf, nuint len, int flags);
    [LibraryImport(Lib, SetLastError = true)] public static partial nint send(int fd, byte* buf, nuint len, int flags);
    [LibraryImport(Lib, SetLastError = true)] public static partial nint sendmsg(int fd, MsgHdr* msg, int flags);
    [LibraryImport(Lib, SetLastError = true)] public static partial nint recvmsg(int fd, MsgHdr* msg, int flags);

    // epoll (the layout of struct epoll_event is EpollNative's business).
    [LibraryImport(Lib, SetLastError = true)] public static partial int epoll_create1(int flags);
    [LibraryImport(Lib, SetLastError = true)] public static partial int epoll_ctl(int epfd, int op, int fd, byte* ev);
    [LibraryImport(Lib, SetLastError = true)] public static partial int epoll_wait(int epfd, byte* events, int maxevents, int timeout);

    // Processes, signals, identity, environment, time.
    [LibraryImport(Lib, SetLastError = true)] public static partial int kill(int pid, int sig);
    [LibraryImport(Lib, SetLastError = true)] public static partial int killpg(int pgrp, int sig);
    [LibraryImport(Lib, SetLastError = true)] public static partial int waitpid(int pid, int* status, int options);
    [LibraryImport(Lib, SetLastError = true)] public static partial int clock_gettime(int clock, Timespec* ts);
    [LibraryImport(Lib, SetLastError = true)] public static partial int setenv(byte* name, byte* value, int overwrite);
    [LibraryImport(Lib, SetLastError = true)] public static partial int unsetenv(byte* name);
    [LibraryImport(Lib, SetLastError = true)] public static partial int execvp(byte* file, byte** argv);
    [LibraryImport(Lib, SetLastError = true)] public static partial nint signal(int sig, nint handler);
    [LibraryImport(Lib, SetLastError = true)] public static partial int sigprocmask(int how, byte* set, byte* old);
    [LibraryImport(Lib, SetLastError = true)] public static partial int mlockall(int flags);
    [LibraryImport(Lib, SetLastError = true)] public static partial int getpid();
    [LibraryImport(Lib, SetLastError = true)] public static partial int setsid();
    [LibraryImport(Lib, SetLastError = true)] public static partial int setuid(uint uid);
    [LibraryImport(Lib, SetLastError = true)] public static partial int setgid(uint gid);
    [LibraryImport(Lib, SetLastError = true)] public static partial int initgroups(byte* user, uint group);
    [LibraryImport(Lib)] public static partial uint getuid();
    [LibraryImport(Lib)] public static partial uint geteuid();
    [LibraryImport(Lib)] public static partial nint strerror(int errnum);

    [LibraryImport(Lib)] public static partial int posix_spawn_file_actions_init(void* fa);
    [LibraryImport(Lib)] public static partial int posix_spawn_file_actions_destroy(void* fa);
    [LibraryImport(Lib)] public static partial int posix_spawn_file_actions_adddup2(void* fa, int fd, int newfd);
    [LibraryImport(Lib)] public static partial int posix_spawn_file_actions_addclose(void* fa, int fd);
    [LibraryImport(Lib)] public static partial int posix_spawn_file_actions_addclosefrom_np(void* fa, int from);
    [LibraryImport(Lib)] public static partial int posix_spawn_file_actions_addchdir_np(void* fa, byte* path);
    [LibraryImport(Lib)] public static partial int posix_spawnattr_init(void* attr);
    [LibraryImport(Lib)] public static partial int posix_spawnattr_destroy(void* attr);
    [LibraryImport(Lib)] public static partial int posix_spawnattr_setflags(void* attr, short flags);
    [LibraryImport(Lib)] public static partial int posix_spawnattr_setsigmask(void* attr, void* set);
    [LibraryImport(Lib)] public static partial int posix_spawnattr_setsigdefault(void* attr, void* set);
    [LibraryImport(Lib)] public static partial int posix_spawnp(int* pid, byte* file, void* fa, void* attr, byte** argv, byte** envp);
    [LibraryImport(Lib)] public static partial int sigemptyset(void* set);
    [LibraryImport(Lib)] public static partial int sigfillset(void* set);
    [LibraryImport(Lib)] public static partial int sigdelset(void* set, int sig);

    /// <summary>errno of the last call above (the one errno read of the project).</summary>
    public static int Errno => Marshal.GetLastPInvokeError();

    /// <summary>The text of an errno value, as strerror gives it (daemonproxy §5 quotes these on the wire).</summary>
    public static string StrError(int errno) => Marshal.PtrToStringUTF8(strerror(errno)) ?? $"errno {errno}";

    /// <summary>The symbolic name of an errno value (EACCES, ENOENT, …), for one-line configuration errors.</summary>
    public static string ErrnoName(int errno) => Mono.Unix.Native.NativeConvert.ToErrno(errno).ToString();

    /// <summary>The SocketError for an errno, so callers see the same exceptions as from the runtime's sockets.</summary>
    public static SocketError ToSocketError(int errno) => errno switch
    {
        ECONNREFUSED => SocketError.ConnectionRefused,
        ENOENT => SocketError.AddressNotAvailable,
        EACCES => SocketError.AccessDenied,
        ETIMEDOUT => SocketError.TimedOut,
        EHOSTUNREACH => SocketError.HostUnreachable,
        ENETUNREACH => SocketError.NetworkUnreachable,
        ECONNRESET => SocketError.ConnectionReset,
        ECONNABORTED => SocketError.ConnectionAborted,
        EPIPE or ESHUTDOWN => SocketError.Shutdown,
        ENOTCONN => SocketError.NotConnected,
        EAGAIN => SocketError.WouldBlock,
        EINPROGRESS => SocketError.InProgress,
        _ => SocketError.SocketError,
    };

    /// <summary>A SocketException for an errno, with the kernel's text.</summary>
    public static SocketException SocketException(int errno) => new((int)ToSocketError(errno), Marshal.GetPInvokeErrorMessage(errno));

    /// <summary>NUL-terminated copy for a native call.</summary>
    /// <remarks>
    /// Wire text is held as Latin-1 strings (one char per byte), so paths and argv reach the kernel with the
    /// exact bytes the controller sent, whatever their encoding.
    /// </remarks>
    public static byte[] Z(string s)
    {
        var bytes = new byte[s.Length + 1];
        System.Text.Encoding.Latin1.GetBytes(s, bytes);
        return bytes;
    }

    /// <summary>NUL-terminated UTF-8 copy (file names and user names from configuration, which is UTF-8).</summary>
    public static byte[] Utf8Z(string s)
    {
        var bytes = new byte[System.Text.Encoding.UTF8.GetByteCount(s) + 1];
        System.Text.Encoding.UTF8.GetBytes(s, bytes);
        return bytes;
    }

    public static bool SetNonBlocking(int fd)
    {
        var flags = fcntl(fd, F_GETFL, 0);
        return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
    }

    public static void SetCloseOnExec(int fd)
    {
        var flags = fcntl(fd, F_GETFD, 0);
        if (flags >= 0 && (flags & FD_CLOEXEC) == 0)
        {
            fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
        }
    }

    public static int Open(string path, int flags, int mode)
    {
        fixed (byte* p = Z(path))
        {
            return open(p, flags, mode);
        }
    }

    /// <summary>CLOCK_MONOTONIC in nanoseconds (daemonproxy §16 shows whole seconds; systemd's MONOTONIC_USEC
    /// wants microseconds, ecosystem.md 1.9 item 8).</summary>
    public static long MonotonicNs()
    {
        Timespec ts;
        if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        {
            // Stopwatch is CLOCK_MONOTONIC on Linux; only a fallback.
            return (long)(System.Diagnostics.Stopwatch.GetTimestamp() * (1_000_000_000.0 / System.Diagnostics.Stopwatch.Frequency));
        }

        return ts.Sec * 1_000_000_000L + ts.Nsec;
    }

    /// <summary>Writes all bytes to a blocking descriptor (help text, the daemonize PID).</summary>
    public static void WriteAll(int fd, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            var done = 0;
            while (done < data.Length)
            {
                var n = write(fd, p + done, (nuint)(data.Length - done));
                if (n < 0 && Errno == EINTR)
                {
                    continue;
                }

                if (n <= 0)
                {
                    return;
                }

                done += (int)n;
            }
        }
    }

    /// <summary>
    /// Removes a variable from both the managed environment (Process.Start children) and libc's environ
    /// (posix_spawn children): .NET's SetEnvironmentVariable only changes its own copy on Unix.
    /// </summary>
    public static void RemoveEnvironmentVariable(string name)
    {
        Environment.SetEnvironmentVariable(name, null);
        fixed (byte* p = Utf8Z(name))
        {
            _ = unsetenv(p);
        }
    }
}
