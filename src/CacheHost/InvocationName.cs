namespace CacheHost;

/// <summary>
/// The name the program was started under (argv[0]'s file name), so symlinks or copies named
/// <c>dc_server</c>, <c>daemonproxy</c>, … select that tool. Environment.ProcessPath resolves symlinks, so
/// the raw argv[0] is read from /proc/self/cmdline.
/// </summary>
internal static class InvocationName
{
    public static string Get()
    {
        try
        {
            var cmdline = File.ReadAllBytes("/proc/self/cmdline");
            var end = Array.IndexOf(cmdline, (byte)0);
            var argv0 = System.Text.Encoding.UTF8.GetString(cmdline, 0, end < 0 ? cmdline.Length : end);
            var name = Path.GetFileName(argv0);
            // Under "dotnet cachehost.dll" argv[0] is the dotnet host: fall back to the assembly name.
            if (!string.IsNullOrEmpty(name) && name != "dotnet")
            {
                return name;
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return "cachehost";
    }
}
