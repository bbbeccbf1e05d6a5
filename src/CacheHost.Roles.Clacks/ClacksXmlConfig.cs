using System.Globalization;
using System.Xml;
using System.Xml.Linq;

namespace CacheHost.Roles.Clacks;

/// <summary>
/// Reads the original server's XML configuration (clacks §14) and turns it into configuration keys under
/// <c>CacheHost:Clacks</c>, so <c>cachehost clacks CONFIG.xml</c> runs the same host as appsettings would.
/// File lookup via <c>PC_CONFIG_PATHS</c>, <c>PC_*</c> text substitution and <c>&lt;hosts&gt;</c> overrides
/// behave as in the reference. Unknown elements are ignored, as the reference does.
/// </summary>
public static class ClacksXmlConfig
{
    private const string Prefix = "CacheHost:Clacks:";

    private static readonly Dictionary<string, string> Scalars = new(StringComparer.Ordinal)
    {
        ["username"] = "Username",
        ["password"] = "Password",
        ["port"] = "Port",
        ["socketchmod"] = "SocketChmod",
        ["pingtimeout"] = "PingTimeout",
        ["interclackspingtimeout"] = "InterclacksPingTimeout",
        ["interclacksreconnecttimeout"] = "InterclacksReconnectTimeout",
        ["authtimeout"] = "AuthTimeout",
        ["persistancefile"] = "PersistanceFile",
        ["persistanceinterval"] = "PersistanceInterval",
        ["deletedcachetime"] = "DeletedCacheTime",
        ["stalecachetime"] = "StaleCacheTime",
        ["cachecleaninterval"] = "CacheCleanInterval",
        ["readfailtimeout"] = "ReadFailTimeout",
        ["interclacksreadfailtimeout"] = "InterclacksReadFailTimeout",
        ["stalledwritetimeout"] = "StalledWriteTimeout",
        ["interclacksstalledwritetimeout"] = "InterclacksStalledWriteTimeout",
        ["debugfile"] = "DebugFile",
        ["appname"] = "AppName",
    };

    /// <summary>
    /// <c>cachehost clacks CONFIG.xml [--Key=Value ...]</c>: loads the file and returns the configuration
    /// overrides plus the remaining host arguments; prints one line to stderr and returns null on errors.
    /// </summary>
    public static (Dictionary<string, string?> Overrides, string[] HostArgs)? ParseCommandLine(string[] args)
    {
        if (args.Length == 0 || args[0].StartsWith('-'))
        {
            Console.Error.WriteLine("usage: cachehost clacks CONFIG.xml [--Key=Value ...]");
            return null;
        }

        try
        {
            return (Load(args[0]), args[1..]);
        }
        catch (Exception ex) when (ex is IOException or FormatException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"cachehost clacks: {ex.Message}");
            return null;
        }
    }

    /// <summary>Finds the file as the reference does: <c>PC_CONFIG_PATHS</c> directories, else ./ then configs/.</summary>
    public static string Locate(string name)
    {
        if (Path.IsPathRooted(name))
        {
            return name;
        }

        var paths = Environment.GetEnvironmentVariable("PC_CONFIG_PATHS");
        var dirs = string.IsNullOrEmpty(paths) ? [".", "configs"] : paths.Split(':', StringSplitOptions.RemoveEmptyEntries);
        foreach (var dir in dirs)
        {
            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate))
            {
                return Path.GetFullPath(candidate);
            }
        }

        throw new FileNotFoundException($"clacks config '{name}' not found in {string.Join(", ", dirs)}");
    }

    /// <summary>Loads the file and returns configuration overrides (roles included).</summary>
    public static Dictionary<string, string?> Load(string name, IDictionary<string, string?>? environment = null, string? hostName = null)
    {
        var path = Locate(name);
        var text = File.ReadAllText(path);
        environment ??= Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .ToDictionary(e => (string)e.Key, e => (string?)e.Value, StringComparer.Ordinal);

        // PC_ substitution: plain text replacement of the variable's name (clacks §14.1); longest names first so
        // PC_PORT2 is not clobbered by PC_PORT.
        foreach (var (key, value) in environment.Where(e => e.Key.StartsWith("PC_", StringComparison.Ordinal)).OrderByDescending(e => e.Key.Length))
        {
            text = text.Replace(key, value ?? string.Empty, StringComparison.Ordinal);
        }

        XElement root;
        try
        {
            root = XDocument.Parse(text).Root ?? throw new FormatException($"{path}: empty XML document");
        }
        catch (XmlException ex)
        {
            throw new FormatException($"{path}: {ex.Message}", ex);
        }

        ApplyHostOverrides(root, hostName ?? Environment.MachineName);
        var result = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase) { ["CacheHost:Roles"] = "Clacks" };
        foreach (var (element, key) in Scalars)
        {
            var value = Value(root, element);
            if (value is not null)
            {
                result[Prefix + key] = value;
            }
        }

        AddList(result, "Ips", root.Elements("ip").Select(e => e.Value.Trim()));
        AddList(result, "Sockets", root.Elements("socket").Select(e => e.Value.Trim()));
        AddList(result, "SocketCommands", root.Elements("socketcommands").Elements("item").Select(e => e.Value));
        var ssl = root.Element("ssl");
        if (ssl is not null)
        {
            Set(result, "SslCert", Value(ssl, "cert"));
            Set(result, "SslKey", Value(ssl, "key"));
        }

        var master = root.Element("master");
        if (master is not null)
        {
            Set(result, "Master:Socket", Value(master, "socket"));
            Set(result, "Master:Ip", Value(master, "ip"));
            Set(result, "Master:Port", Value(master, "port"));
        }

        var i = 0;
        foreach (var user in root.Elements("user"))
        {
            var p = $"{Prefix}Users:{i++}:";
            result[p + "Username"] = Value(user, "username") ?? string.Empty;
            result[p + "Password"] = Value(user, "password") ?? string.Empty;
            result[p + "Read"] = PerlTrue(Value(user, "read"));
            result[p + "Write"] = PerlTrue(Value(user, "write"));
            result[p + "Manage"] = PerlTrue(Value(user, "manage"));
        }

        var throttle = root.Element("throttle");
        if (throttle is not null)
        {
            foreach (var child in throttle.Elements())
            {
                result[$"{Prefix}Throttle:{child.Name.LocalName}"] = child.Value.Trim();
            }
        }

        var offset = environment.TryGetValue("CLACKS_SIMULATED_TIME_OFFSET", out var o) ? o : null;
        if (!string.IsNullOrEmpty(offset))
        {
            result[Prefix + "SimulatedTimeOffset"] = offset.Trim();
        }

        return result;
    }

    /// <summary><c>&lt;hosts&gt;&lt;HOSTNAME&gt;…</c>: children replace root elements of the same name (clacks §14.1).</summary>
    private static void ApplyHostOverrides(XElement root, string hostName)
    {
        var block = root.Element("hosts")?.Elements().FirstOrDefault(e => e.Name.LocalName == hostName);
        if (block is null)
        {
            return;
        }

        foreach (var group in block.Elements().GroupBy(e => e.Name))
        {
            root.Elements(group.Key).Remove();
            foreach (var element in group)
            {
                root.Add(new XElement(element));
            }
        }
    }

    /// <summary>Child element text, or the attribute of that name (XML::Simple accepts both).</summary>
    private static string? Value(XElement parent, string name)
    {
        var element = parent.Element(name);
        if (element is not null)
        {
            return element.Value.Trim();
        }

        return parent.Attribute(name)?.Value.Trim();
    }

    private static string PerlTrue(string? value) =>
        (!string.IsNullOrEmpty(value) && value != "0").ToString(CultureInfo.InvariantCulture);

    private static void Set(Dictionary<string, string?> result, string key, string? value)
    {
        if (value is not null)
        {
            result[Prefix + key] = value;
        }
    }

    private static void AddList(Dictionary<string, string?> result, string key, IEnumerable<string> values)
    {
        var i = 0;
        foreach (var value in values)
        {
            result[$"{Prefix}{key}:{i++}"] = value;
        }
    }
}
