using System.Diagnostics;

namespace CacheHost.Testing;

/// <summary>
/// Which <c>cachehost</c> the real-program tests start: by default the JIT build copied next to the tests
/// (<c>dotnet cachehost.dll</c>, or its apphost); with <c>CACHEHOST_TEST_PROGRAM=/path/to/cachehost</c> that
/// executable instead, e.g. the NativeAOT publish (.ci/run runs a named subset of the tests that way, README
/// "Native binary").
/// </summary>
public static class ProgramUnderTest
{
    /// <summary>The environment variable that names another executable.</summary>
    public const string Variable = "CACHEHOST_TEST_PROGRAM";

    /// <summary>The executable named by <see cref="Variable"/>, or null for the JIT build.</summary>
    public static string? Native => Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } path ? Path.GetFullPath(path) : null;

    /// <summary>cachehost.dll next to the tests.</summary>
    public static string Dll => Path.Combine(AppContext.BaseDirectory, "cachehost.dll");

    /// <summary>An executable file to start or to link under a drop-in name (dc_server …): the native program or the apphost.</summary>
    public static string Executable => Native ?? Path.Combine(AppContext.BaseDirectory, "cachehost");

    /// <summary>The command line that runs the program: the native executable, or <c>dotnet cachehost.dll</c>.</summary>
    public static string[] Command => Native is { } native ? [native] : ["dotnet", Dll];

    /// <summary>
    /// The environment variable that names a native <c>cachehost-probe</c> (tests/CacheHost.ProbeHost: the program
    /// plus the test-only Probe role); without it the probe tests run the JIT build next to the tests.
    /// </summary>
    public const string ProbeVariable = "CACHEHOST_TEST_PROBE_PROGRAM";

    /// <summary>The executable named by <see cref="ProbeVariable"/>, or null for the JIT build.</summary>
    public static string? NativeProbe => Environment.GetEnvironmentVariable(ProbeVariable) is { Length: > 0 } path ? Path.GetFullPath(path) : null;

    /// <summary>
    /// The program with the Probe role: the native <see cref="ProbeVariable"/>, else the apphost
    /// <c>cachehost-probe</c> next to the tests, else <c>dotnet cachehost-probe.dll</c>.
    /// </summary>
    public static string[] ProbeCommand
    {
        get
        {
            var apphost = Path.Combine(AppContext.BaseDirectory, "cachehost-probe");
            return NativeProbe is { } native ? [native] : File.Exists(apphost) ? [apphost] : ["dotnet", Path.Combine(AppContext.BaseDirectory, "cachehost-probe.dll")];
        }
    }

    /// <summary>Sets <paramref name="start"/>'s file name (and the dll argument); call before adding arguments.</summary>
    public static void Configure(ProcessStartInfo start)
    {
        if (Native is { } native)
        {
            start.FileName = native;
            return;
        }

        start.FileName = "dotnet";
        start.ArgumentList.Add(Dll);
    }
}
