using System.Runtime.InteropServices;

namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>
/// The few libc calls the supervisor needs that .NET does not expose: raw descriptors, posix_spawn with exact
/// fd mapping (research 2.5), per-pid reaping (research 2.6), CLOCK_MONOTONIC (daemonproxy §16) and execvp for
/// exec-on-exit (daemonproxy §12). Linux/glibc x86-64 and arm64 constants. Errors come back through errno, read with
/// Marshal.GetLastPInvokeError() immediately after the call.
/// </summary>
internal static unsafe partial class Libc
{
    private const string Lib = "libc";

    public const int EINTR = 4, EAGAIN = 11, EBADF = 9, ECHILD = 10, EPIPE = 32, ENOENT = 2, ECONNABORTED = 103;
    public const int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_ACCMODE = 3, O_CREAT = 0x40, O_NOCTTY = 0x100,
        O_TRUNC = 0x200, O_APPEND = 0x400, O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000;
    public const int F_GETFD = 1, F_SETFD = 2, F_GETFL = 3, F_SETFL = 4, FD_CLOEXEC = 1, F_DUPFD_CLOEXEC = 1030;
    public const short POLLIN = 1, POLLOUT = 4, POLLERR = 8, POLLHUP = 16, POLLNVAL = 32;
    public const int AF_UNIX = 1, AF_INET = 2, AF_INET6 = 10;
    public const int SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_SEQPACKET = 5, SOCK_NONBLOCK = 0x800, SOCK_CLOEXEC = 0x80000;
    public const int SOL_SOCKET = 1, SO_REUSEADDR = 2, SO_TYPE = 3, SO_DOMAIN = 39, SO_ACCEPTCONN = 30;
    public const int SHUT_RD = 0, SHUT_WR = 1;
    public const int MSG_DONTWAIT = 0x40, MSG_CMSG_CLOEXEC = 0x40000000, SCM_RIGHTS = 1;
    public const int WNOHANG = 1;
    public const short POSIX_SPAWN_SETSIGDEF = 0x04, POSIX_SPAWN_SETSIGMASK = 0x08, POSIX_SPAWN_SETSID = 0x80;
    public const int S_IFMT = 0xF000, S_IFSOCK = 0xC000;

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

    [DllImport(Lib, SetLastError = true)] public static extern nint read(int fd, byte* buf, nuint count);
    [DllImport(Lib, SetLastError = true)] public static extern nint write(int fd, byte* buf, nuint count);
    [DllImport(Lib, SetLastError = true)] public static extern int close(int fd);
    [DllImport(Lib, SetLastError = true)] public static extern int pipe2(int* fds, int flags);
    [DllImport(Lib, SetLastError = true)] public static extern int fcntl(int fd, int cmd, int arg);
    [DllImport(Lib, SetLastError = true)] public static extern int poll(PollFd* fds, nuint nfds, int timeout);
    [DllImport(Lib, SetLastError = true, EntryPoint = "open")] public static extern int open(byte* path, int flags, int mode);
    [DllImport(Lib, SetLastError = true)] public static extern int socket(int domain, int type, int protocol);
    [DllImport(Lib, SetLastError = true)] public static extern int socketpair(int domain, int type, int protocol, int* sv);
    [DllImport(Lib, SetLastError = true)] public static extern int bind(int fd, byte* addr, uint len);
    [DllImport(Lib, SetLastError = true)] public static extern int listen(int fd, int backlog);
    [DllImport(Lib, SetLastError = true)] public static extern int accept4(int fd, byte* addr, uint* len, int flags);
    [DllImport(Lib, SetLastError = true)] public static extern int setsockopt(int fd, int level, int name, int* value, uint len);
    [DllImport(Lib, SetLastError = true)] public static extern int getsockopt(int fd, int level, int name, int* value, uint* len);
    [DllImport(Lib, SetLastError = true)] public static extern int shutdown(int fd, int how);
    [DllImport(Lib, SetLastError = true)] public static extern nint recvmsg(int fd, MsgHdr* msg, int flags);
    [DllImport(Lib, SetLastError = true)] public static extern int kill(int pid, int sig);
    [DllImport(Lib, SetLastError = true)] public static extern int killpg(int pgrp, int sig);
    [DllImport(Lib, SetLastError = true)] public static extern int waitpid(int pid, int* status, int options);
    [DllImport(Lib, SetLastError = true)] public static extern int clock_gettime(int clock, Timespec* ts);
    [DllImport(Lib, SetLastError = true)] public static extern int umask(int mask);
    [DllImport(Lib, SetLastError = true)] public static extern int chdir(byte* path);
    [DllImport(Lib, SetLastError = true)] public static extern int mkdir(byte* path, int mode);
    [DllImport(Lib, SetLastError = true)] public static extern int unlink(byte* path);
    [DllImport(Lib, SetLastError = true)] public static extern int setenv(byte* name, byte* value, int overwrite);
    [DllImport(Lib, SetLastError = true)] public static extern int execvp(byte* file, byte** argv);
    [DllImport(Lib, SetLastError = true)] public static extern nint signal(int sig, nint handler);
    [DllImport(Lib, SetLastError = true)] public static extern int sigprocmask(int how, byte* set, byte* old);
    [DllImport(Lib, SetLastError = true)] public static extern int mlockall(int flags);
    [DllImport(Lib, SetLastError = true)] public static extern int getpid();
    [DllImport(Lib, SetLastError = true)] public static extern int setsid();
    [DllImport(Lib)] public static extern nint strerror(int errnum);

    [DllImport(Lib)] public static extern int posix_spawn_file_actions_init(void* fa);
    [DllImport(Lib)] public static extern int posix_spawn_file_actions_destroy(void* fa);
    [DllImport(Lib)] public static extern int posix_spawn_file_actions_adddup2(void* fa, int fd, int newfd);
    [DllImport(Lib)] public static extern int posix_spawn_file_actions_addclose(void* fa, int fd);
    [DllImport(Lib)] public static extern int posix_spawn_file_actions_addclosefrom_np(void* fa, int from);
    [DllImport(Lib)] public static extern int posix_spawnattr_init(void* attr);
    [DllImport(Lib)] public static extern int posix_spawnattr_destroy(void* attr);
    [DllImport(Lib)] public static extern int posix_spawnattr_setflags(void* attr, short flags);
    [DllImport(Lib)] public static extern int posix_spawnattr_setsigmask(void* attr, void* set);
    [DllImport(Lib)] public static extern int posix_spawnattr_setsigdefault(void* attr, void* set);
    [DllImport(Lib)] public static extern int posix_spawnp(int* pid, byte* file, void* fa, void* attr, byte** argv, byte** envp);
    [DllImport(Lib)] public static extern int sigemptyset(void* set);
    [DllImport(Lib)] public static extern int sigfillset(void* set);
    [DllImport(Lib)] public static extern int sigdelset(void* set, int sig);

    /// <summary>The text of an errno value, as strerror gives it (the wire quotes these, daemonproxy §5).</summary>
    public static string StrError(int errno) => Marshal.PtrToStringUTF8(strerror(errno)) ?? $"errno {errno}";

    /// <summary>NUL-terminated UTF-8 copy for a native call.</summary>
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

    public static int Errno => Marshal.GetLastPInvokeError();

    public static bool SetNonBlocking(int fd)
    {
        var flags = fcntl(fd, F_GETFL, 0);
        return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
    }

    public static void SetCloseOnExec(int fd)
    {
        var flags = fcntl(fd, F_GETFD, 0);
        if (flags >= 0)
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

    /// <summary>CLOCK_MONOTONIC in nanoseconds; the wire shows whole seconds of it (spec notation, 16).</summary>
    public static long MonotonicNs()
    {
        Timespec ts;
        clock_gettime(1, &ts);
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
}
