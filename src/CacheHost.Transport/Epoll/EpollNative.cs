using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using CacheHost.Posix;

namespace CacheHost.Transport.Epoll;

/// <summary>
/// The architecture-dependent layout of <c>struct epoll_event</c>; the calls themselves are the POSIX layer's
/// (<see cref="Libc"/>).
/// </summary>
internal static unsafe class EpollNative
{
    /// <summary>x86-64 packs <c>struct epoll_event</c> to 12 bytes; arm64 aligns its 64-bit data to offset 8.</summary>
    public static readonly bool PackedEvent = RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.X86;

    public static int EventSize => PackedEvent ? 12 : 16;

    /// <summary>epoll_ctl with the event laid out for this architecture. Returns 0 or errno.</summary>
    public static int Control(int epfd, int op, int fd, uint events, ulong data)
    {
        var ev = stackalloc byte[16];
        Unsafe.WriteUnaligned(ev, events);
        Unsafe.WriteUnaligned(ev + (PackedEvent ? 4 : 8), data);
        return Libc.epoll_ctl(epfd, op, fd, ev) == 0 ? 0 : Libc.Errno;
    }

    public static uint EventMask(byte* events, int index) => Unsafe.ReadUnaligned<uint>(events + (index * EventSize));

    public static ulong EventData(byte* events, int index) => Unsafe.ReadUnaligned<ulong>(events + (index * EventSize) + (PackedEvent ? 4 : 8));
}
