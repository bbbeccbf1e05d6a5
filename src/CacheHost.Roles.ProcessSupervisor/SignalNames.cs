namespace CacheHost.Roles.ProcessSupervisor;

/// <summary>Signal names accepted on Linux and the number-to-name rule of daemonproxy §3.3.</summary>
internal static class SignalNames
{
    private static readonly Dictionary<string, int> ByName = new(StringComparer.Ordinal)
    {
        ["ABRT"] = 6, ["ALRM"] = 14, ["BUS"] = 7, ["CHLD"] = 17, ["CLD"] = 17, ["CONT"] = 18, ["FPE"] = 8,
        ["HUP"] = 1, ["ILL"] = 4, ["INT"] = 2, ["IO"] = 29, ["IOT"] = 6, ["KILL"] = 9, ["PIPE"] = 13,
        ["POLL"] = 29, ["PROF"] = 27, ["PWR"] = 30, ["QUIT"] = 3, ["SEGV"] = 11, ["STKFLT"] = 16, ["STOP"] = 19,
        ["SYS"] = 31, ["TERM"] = 15, ["TRAP"] = 5, ["TSTP"] = 20, ["TTIN"] = 21, ["TTOU"] = 22, ["URG"] = 23,
        ["USR1"] = 10, ["USR2"] = 12, ["VTALRM"] = 26, ["WINCH"] = 28, ["XCPU"] = 24, ["XFSZ"] = 25,
    };

    // The first name in alphabetical order wins: 6 is ABRT (not IOT), 17 is CHLD, 29 is IO (daemonproxy §3.3).
    private static readonly Dictionary<int, string> ByNumber = ByName
        .OrderBy(p => p.Key, StringComparer.Ordinal)
        .GroupBy(p => p.Value)
        .ToDictionary(g => g.Key, g => "SIG" + g.First().Key);

    /// <summary>"SIGTERM" for 15; "SIG-?" for a number with no name.</summary>
    public static string Name(int number) => ByNumber.TryGetValue(number, out var name) ? name : "SIG-?";

    /// <summary>Looks up a name with or without the SIG prefix (case-sensitive).</summary>
    public static bool TryLookup(string name, out int number)
    {
        if (name.StartsWith("SIG", StringComparison.Ordinal) && ByName.TryGetValue(name[3..], out number))
        {
            return true;
        }

        return ByName.TryGetValue(name, out number);
    }

    /// <summary>
    /// Parses a signal argument (daemonproxy §3.3): digits are a number 0..65535, anything else a name. Unknown names
    /// are rejected (defect 5 fixed) instead of becoming signal 0.
    /// </summary>
    public static string? TryParse(string field, out int number)
    {
        number = 0;
        if (field.Length == 0)
        {
            return "Expected signal argument";
        }

        if (char.IsAsciiDigit(field[0]))
        {
            long value = 0;
            foreach (var c in field)
            {
                if (!char.IsAsciiDigit(c))
                {
                    return "Invalid signal number";
                }

                value = value * 10 + (c - '0');
                if (value > 65535)
                {
                    return "Invalid signal number";
                }
            }

            number = (int)value;
            return null;
        }

        return TryLookup(field, out number) ? null : "Invalid signal argument";
    }
}
