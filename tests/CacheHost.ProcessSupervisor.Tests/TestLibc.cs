using System.Runtime.InteropServices;

namespace CacheHost.ProcessSupervisor.Tests;

/// <summary>The few native calls the tests need: signals, the monotonic clock, SCM_RIGHTS sends.</summary>
internal static unsafe class TestLibc
{
    [DllImport("libc", SetLastError = true)] public static extern int kill(int pid, int sig);
    [DllImport("libc", SetLastError = true)] private static extern int clock_gettime(int clock, long* ts);
    [DllImport("libc", SetLastError = true)] private static extern nint sendmsg(int fd, MsgHdr* msg, int flags);
    [DllImport("libc", SetLastError = true)] public static extern int pipe(int* fds);
    [DllImport("libc", SetLastError = true)] public static extern int close(int fd);
    [DllImport("libc", SetLastError = true)] public static extern nint read(int fd, byte* buf, nuint count);
    [DllImport("libc", SetLastError = true)] public static extern nint write(int fd, byte* buf, nuint count);
    [DllImport("libc", SetLastError = true)] private static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, int mode);
    [DllImport("libc", SetLastError = true)] private static extern int mkfifo([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int mode);

    public const int O_RDONLY = 0, O_WRONLY = 1, O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000;

    /// <summary>open(2) that fails the test on error.</summary>
    public static int Open(string path, int flags)
    {
        var fd = open(path, flags | O_CLOEXEC, 0);
        Assert.True(fd >= 0, $"open({path}) failed: errno {Marshal.GetLastPInvokeError()}");
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
        while ((n = write(fd, chunk, 4096)) > 0 || (n < 0 && Marshal.GetLastPInvokeError() == 4))
        {
            total += (int)Math.Max(n, 0);
        }

        // A pipe with less than 4096 bytes free refuses a 4096-byte write: top it up byte by byte.
        while ((n = write(fd, chunk, 1)) > 0)
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

    [StructLayout(LayoutKind.Sequential)]
    private struct IoVec
    {
        public void* Base;
        public nuint Len;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct MsgHdr
    {
        public void* Name;
        public uint NameLen;
        public IoVec* Iov;
        public nuint IovLen;
        public void* Control;
        public nuint ControlLen;
        public int Flags;
    }

    /// <summary>Whole seconds of CLOCK_MONOTONIC, the clock of the wire.</summary>
    public static long MonotonicSeconds()
    {
        var ts = stackalloc long[2];
        clock_gettime(1, ts);
        return ts[0];
    }

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
            var iov = new IoVec { Base = p, Len = (nuint)data.Length };
            var msg = new MsgHdr { Iov = &iov, IovLen = 1, Control = control, ControlLen = 24 };
            var n = sendmsg((int)socket.Handle, &msg, 0);
            Assert.True(n == data.Length, $"sendmsg returned {n}, errno {Marshal.GetLastPInvokeError()}");
        }
    }
}
