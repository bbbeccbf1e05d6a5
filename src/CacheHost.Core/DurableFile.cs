using Mono.Unix.Native;

namespace CacheHost.Core;

/// <summary>
/// Replaces a file so that a crash at any moment (kill -9, power loss) leaves either the old or the new content
/// complete, never a mix: write a temporary file beside it, fsync it, rename it over the target, fsync the
/// directory (the rename itself is only durable once the directory is).
/// </summary>
public static class DurableFile
{
    /// <summary>The temporary file <see cref="Replace"/> writes before renaming it to <paramref name="path"/>.</summary>
    public static string TemporaryPathOf(string path) => path + ".tmp";

    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/> as described on the class.</summary>
    public static void Replace(string path, Action<FileStream> write)
    {
        var temp = TemporaryPathOf(path);
        try
        {
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1, FileOptions.None))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }

        SyncDirectoryOf(path);
    }

    /// <summary>fsync of the directory holding <paramref name="path"/>, so that a rename into it is durable.</summary>
    public static void SyncDirectoryOf(string path)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var fd = Syscall.open(dir, OpenFlags.O_RDONLY);
        if (fd >= 0)
        {
            Syscall.fsync(fd);
            Syscall.close(fd);
        }
    }
}
