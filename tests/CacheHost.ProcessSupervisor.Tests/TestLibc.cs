using System.Runtime.InteropServices;
using CacheHost.Posix;

namespace CacheHost.ProcessSupervisor.Tests;

/// <summary>
/// The native calls the tests need (signals, the monotonic clock, SCM_RIGHTS sends, FIFOs), through the product's
/// POSIX layer; only mkfifo, which the product never calls, is declared here.
/// </summary>
internal static unsafe partial class TestLibc
{
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int mkfifo(string path, int mode);

    public const int O_RDONLY = Libc.O_RDONLY, O_WRONLY = Libc.O_WRONLY, O_NONBLOCK = Libc.O_NONBLOCK;

    public static int kill(int pid, int sig) => Libc.kill(pid, sig);

    public static int pipe(int* fds) => Libc.pipe2(fds, 0);

    public static int close(int fd) => Libc.close(fd);

    public static nint read(int fd, byte* buf, nuint count) => Libc.read(fd, buf, count);

    /// <summary>open(2) that fails the test on error.</summary>
    public static int Open(string path, int flags)
    {
        var fd = Libc.Open(path, flags | Libc.O_CLOEXEC, 0);
        Assert.True(fd >= 0, $"open({path}) failed: errno {Libc.Errno}");
        return fd;
    }

    /// <summary>Creates a FIFO at <paramref name="path"/>.</summary>
    public static void MakeFifo(string path) => Assert.Equal(0, mkfifo(path, 0x180));

    /// <summary>Writes <paramref name="fill"/> to a non-blocking descriptor until it is full (EAGAIN); returns the bytes written.</summary>
    public static int FillUntilFull(int fd, byte fill)
    {
        var chunk = stackalloc byte[4096];
        new Span<byte>(chunk, 4096).Fill(fill);
        var total = 0;
        nint n;
        while ((n = Libc.write(fd, chunk, 4096)) > 0 || (n < 0 && Libc.Errno == Libc.EINTR))
        {
            total += (int)Math.Max(n, 0);
        }

        // A pipe with less than 4096 bytes free refuses a 4096-byte write: top it up byte by byte.
        while ((n = Libc.write(fd, chunk, 1)) > 0)
        {
            total++;
        }

        return total;
    }

    /// <summary>Reads what a non-blocking descriptor holds now (empty when nothing is there).</summary>
    public static byte[] ReadAvailable(int fd)
    {
        var result = new List<byte>();
        var buffer = stackalloc byte[65536];
        nint n;
        while ((n = read(fd, buffer, 65536)) > 0)
        {
            result.AddRange(new ReadOnlySpan<byte>(buffer, (int)n).ToArray());
        }

        return result.ToArray();
    }

    /// <summary>Whole seconds of CLOCK_MONOTONIC, the clock of the wire.</summary>
    public static long MonotonicSeconds() => Libc.MonotonicNs() / 1_000_000_000;

    /// <summary>Sends <paramref name="data"/> with one descriptor attached (SCM_RIGHTS).</summary>
    public static void SendWithFd(System.Net.Sockets.Socket socket, byte[] data, int fd)
    {
        var control = stackalloc byte[24];
        *(nuint*)control = 20; // cmsg_len = CMSG_LEN(sizeof(int))
        *(int*)(control + 8) = 1; // SOL_SOCKET
        *(int*)(control + 12) = 1; // SCM_RIGHTS
        *(int*)(control + 16) = fd;
        fixed (byte* p = data)
        {
            var iov = new Libc.IoVec { Base = p, Len = (nuint)data.Length };
            var msg = new Libc.MsgHdr { Iov = &iov, IovLen = 1, Control = control, ControlLen = 24 };
            var n = Libc.sendmsg((int)socket.Handle, &msg, 0);
            Assert.True(n == data.Length, $"sendmsg returned {n}, errno {Libc.Errno}");
        }
    }
}
