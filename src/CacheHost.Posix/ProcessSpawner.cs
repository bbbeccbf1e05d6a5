using System.Collections;
using System.Runtime.InteropServices;
using System.Text;

namespace CacheHost.Posix;

/// <summary>
/// Starts a program with posix_spawnp: daemonproxy's services (daemonproxy §7.2 step 3, research 2.5) and the
/// detached child of <see cref="Daemonizer"/>: the given descriptors land exactly on
/// child fd 0..N-1, <c>-</c> slots (source -1) stay closed, every other descriptor is closed
/// (addclosefrom_np), all signals get their default disposition and an empty mask, argv[0] is looked up in
/// PATH, and the environment, cwd and umask are the supervisor's.
/// </summary>
internal static unsafe class ProcessSpawner
{
    private const int SigsetBytes = 128;
    private const int FileActionsBytes = 256;
    private const int AttrBytes = 512;

    /// <summary>Spawns; returns the pid, or -errno when exec (or the spawn itself) failed.</summary>
    public static int Spawn(IReadOnlyList<string> argv, IReadOnlyList<int> childFds, bool newSession = false, IReadOnlyDictionary<string, string>? extraEnv = null, string? workingDirectory = null)
        => SpawnCore(argv, childFds, null, newSession, extraEnv, workingDirectory);

    /// <summary>
    /// Spawns with explicit (source, target) pairs and no closing of other descriptors: used by daemonize
    /// for daemonproxy -D, whose child must keep the inherited fd_N descriptors at their numbers.
    /// </summary>
    public static int SpawnKeepingFds(IReadOnlyList<string> argv, IReadOnlyList<(int Source, int Target)> dups, bool newSession, IReadOnlyDictionary<string, string>? extraEnv, string? workingDirectory = null)
        => SpawnCore(argv, [], dups, newSession, extraEnv, workingDirectory);

    private static int SpawnCore(IReadOnlyList<string> argv, IReadOnlyList<int> childFds, IReadOnlyList<(int Source, int Target)>? dups, bool newSession, IReadOnlyDictionary<string, string>? extraEnv, string? workingDirectory)
    {
        // Copy every source to a fresh CLOEXEC number first so overlapping mappings (A->B, B->A, or a source
        // that is also a target) cannot corrupt each other (research 2.5.2 item 5).
        var copies = new int[childFds.Count];
        for (var i = 0; i < childFds.Count; i++)
        {
            copies[i] = childFds[i] < 0 ? -1 : Libc.fcntl(childFds[i], Libc.F_DUPFD_CLOEXEC, 10);
            if (childFds[i] >= 0 && copies[i] < 0)
            {
                var err = Libc.Errno;
                CloseAll(copies);
                return -err;
            }
        }

        var fa = NativeMemory.AllocZeroed(FileActionsBytes);
        var attr = NativeMemory.AllocZeroed(AttrBytes);
        var sigdef = NativeMemory.AllocZeroed(SigsetBytes);
        var sigmask = NativeMemory.AllocZeroed(SigsetBytes);
        var strings = new List<nint>();
        try
        {
            Libc.posix_spawn_file_actions_init(fa);
            Libc.posix_spawnattr_init(attr);
            for (var i = 0; i < copies.Length; i++)
            {
                if (copies[i] >= 0)
                {
                    Libc.posix_spawn_file_actions_adddup2(fa, copies[i], i);
                }
            }

            for (var i = 0; i < copies.Length; i++)
            {
                if (copies[i] < 0)
                {
                    Libc.posix_spawn_file_actions_addclose(fa, i);
                }
            }

            if (dups is null)
            {
                Libc.posix_spawn_file_actions_addclosefrom_np(fa, copies.Length);
            }
            else
            {
                foreach (var (source, target) in dups)
                {
                    // dup2(fd, fd) clears close-on-exec in glibc (research 2.5.2 item 3).
                    Libc.posix_spawn_file_actions_adddup2(fa, source, target);
                }
            }

            if (workingDirectory is not null)
            {
                fixed (byte* directory = Libc.Utf8Z(workingDirectory))
                {
                    Libc.posix_spawn_file_actions_addchdir_np(fa, directory);
                }
            }

            Libc.sigfillset(sigdef);
            Libc.sigdelset(sigdef, 9);
            Libc.sigdelset(sigdef, 19);
            Libc.sigemptyset(sigmask);
            Libc.posix_spawnattr_setsigdefault(attr, sigdef);
            Libc.posix_spawnattr_setsigmask(attr, sigmask);
            var flags = (short)(Libc.POSIX_SPAWN_SETSIGDEF | Libc.POSIX_SPAWN_SETSIGMASK | (newSession ? Libc.POSIX_SPAWN_SETSID : 0));
            Libc.posix_spawnattr_setflags(attr, flags);

            var argvPtr = (byte**)NativeMemory.AllocZeroed((nuint)((argv.Count + 1) * sizeof(nint)));
            strings.Add((nint)argvPtr);
            for (var i = 0; i < argv.Count; i++)
            {
                argvPtr[i] = AllocZ(argv[i], strings, Encoding.Latin1);
            }

            var env = BuildEnvironment(extraEnv);
            var envPtr = (byte**)NativeMemory.AllocZeroed((nuint)((env.Count + 1) * sizeof(nint)));
            strings.Add((nint)envPtr);
            for (var i = 0; i < env.Count; i++)
            {
                envPtr[i] = AllocZ(env[i], strings, Encoding.UTF8);
            }

            int pid;
            var rc = Libc.posix_spawnp(&pid, argvPtr[0], fa, attr, argvPtr, envPtr);
            return rc == 0 ? pid : -rc;
        }
        finally
        {
            Libc.posix_spawn_file_actions_destroy(fa);
            Libc.posix_spawnattr_destroy(attr);
            NativeMemory.Free(fa);
            NativeMemory.Free(attr);
            NativeMemory.Free(sigdef);
            NativeMemory.Free(sigmask);
            foreach (var p in strings)
            {
                NativeMemory.Free((void*)p);
            }

            CloseAll(copies);
        }
    }

    private static List<string> BuildEnvironment(IReadOnlyDictionary<string, string>? extra)
    {
        var list = new List<string>();
        foreach (DictionaryEntry entry in Environment.GetEnvironmentVariables())
        {
            var key = (string)entry.Key;
            if (extra is not null && extra.ContainsKey(key))
            {
                continue;
            }

            list.Add($"{key}={entry.Value}");
        }

        if (extra is not null)
        {
            foreach (var (key, value) in extra)
            {
                list.Add($"{key}={value}");
            }
        }

        return list;
    }

    private static byte* AllocZ(string s, List<nint> owned, Encoding encoding)
    {
        var count = encoding.GetByteCount(s);
        var p = (byte*)NativeMemory.Alloc((nuint)count + 1);
        encoding.GetBytes(s, new Span<byte>(p, count));
        p[count] = 0;
        owned.Add((nint)p);
        return p;
    }

    private static void CloseAll(int[] fds)
    {
        foreach (var fd in fds)
        {
            if (fd >= 0)
            {
                Libc.close(fd);
            }
        }
    }
}
