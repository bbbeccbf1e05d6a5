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
