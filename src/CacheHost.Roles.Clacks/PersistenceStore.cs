using CacheHost.Protocols.Clacks;
using Microsoft.Extensions.Logging;

namespace CacheHost.Roles.Clacks;

/// <summary>
/// The persistence file on disk (clacks §13): load with fallback <c>file</c>, <c>file_bck</c>, <c>file_</c>;
/// save by backing up the current file to <c>file_bck</c>, writing <c>file_</c>, fsync, and renaming it over
/// <c>file</c>, then fsync of the directory. A crash at any point leaves every complete file complete: the
/// main file is only ever replaced by rename, and the backup is refreshed the same way.
/// </summary>
internal sealed class PersistenceStore(string path, ILogger logger)
{
    private bool _refreshBackupAfterSave;

    public string Path { get; } = path;

    /// <summary>Loads the first valid candidate. <paramref name="saveNow"/> asks for an immediate save (fallback or blank start).</summary>
    public Dictionary<string, CacheEntry> Load(out bool saveNow)
    {
        foreach (var candidate in new[] { Path, Path + "_bck", Path + "_" })
        {
            if (!File.Exists(candidate))
            {
                continue;
            }

            byte[] bytes;
            try
            {
                bytes = File.ReadAllBytes(candidate);
            }
            catch (IOException ex)
            {
                ClacksLog.PersistenceInvalid(logger, candidate, ex.Message);
                continue;
            }

            if (PersistenceFormat.TryRead(bytes, out var entries, out var error))
            {
                ClacksLog.PersistenceLoaded(logger, entries.Count, candidate);
                saveNow = candidate != Path;
                _refreshBackupAfterSave = saveNow;
                return entries;
            }

            ClacksLog.PersistenceInvalid(logger, candidate, error);
        }

        ClacksLog.PersistenceBlank(logger, Path);
        saveNow = true;
        _refreshBackupAfterSave = true;
        return new Dictionary<string, CacheEntry>(StringComparer.Ordinal);
    }

    /// <summary>Writes a snapshot (clacks §13.2 write cycle, made crash-safe).</summary>
    public void Save(IEnumerable<KeyValuePair<string, CacheEntry>> entries)
    {
        var content = PersistenceFormat.Write(entries);
        if (!_refreshBackupAfterSave && File.Exists(Path))
        {
            CopyAtomically(Path, Path + "_bck");
        }

        WriteDurably(Path + "_", content);
        File.Move(Path + "_", Path, overwrite: true);
        SyncDirectory();
        if (_refreshBackupAfterSave)
        {
            CopyAtomically(Path, Path + "_bck");
            _refreshBackupAfterSave = false;
        }
    }

    private void CopyAtomically(string from, string to)
    {
        var temp = to + ".tmp";
        WriteDurably(temp, File.ReadAllBytes(from));
        File.Move(temp, to, overwrite: true);
    }

    private static void WriteDurably(string file, byte[] content)
    {
        using var stream = new FileStream(file, FileMode.Create, FileAccess.Write, FileShare.None, 1, FileOptions.None);
        stream.Write(content);
        stream.Flush(flushToDisk: true);
    }

    private void SyncDirectory() => CacheHost.Core.DurableFile.SyncDirectoryOf(Path);
}
