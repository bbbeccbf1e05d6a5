using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using CacheHost.Testing;
using Xunit;

namespace CacheHost.Host.Tests;

/// <summary>
/// The layering README's "Architecture" section states, checked on the code (issue 16): every project is on the
/// map; roles never reference each other; protocol projects reference nothing but the BCL; roles do not reach
/// into the epoll engine (<c>CacheHost.Transport.Epoll</c>), only the transport seams. Project references are
/// read from the csproj files (what the build uses); type references from the built role assemblies' metadata
/// (what the code uses), which are copied next to these tests because the program references every role.
/// </summary>
public sealed partial class ArchitectureTests
{
    /// <summary>
    /// Known violations, each to be removed by the issue that fixes it. Key: "assembly -> referenced type".
    /// </summary>
    private static readonly HashSet<string> KnownEpollUses = new(StringComparer.Ordinal)
    {
        // Empty: the last one (ClientProxy's write coalescer on EpollEngine.RunAtBatchEnd) now goes through
        // CacheHost.Transport's IBatchEndScheduler seam (issue 16 item 3).
    };

    private static string Root => TestPaths.RepoRoot;

    private static IEnumerable<string> Projects(string top) =>
        Directory.EnumerateFiles(Path.Combine(Root, top), "*.csproj", SearchOption.AllDirectories)
            .Where(p => !p.Contains("/bin/", StringComparison.Ordinal) && !p.Contains("/obj/", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal);

    private static string ProjectName(string csproj) => Path.GetFileNameWithoutExtension(csproj);

    private static string[] ProjectReferences(string csproj) =>
        [.. XDocument.Load(csproj).Descendants("ProjectReference")
            .Select(r => Path.GetFileNameWithoutExtension(r.Attribute("Include")!.Value.Replace('\\', '/')))];

    private static string[] PackageReferences(string csproj) =>
        [.. XDocument.Load(csproj).Descendants("PackageReference").Select(r => r.Attribute("Include")!.Value)];

    private static bool IsRole(string name) => name.StartsWith("CacheHost.Roles.", StringComparison.Ordinal);

    private static bool IsProtocol(string name) => name.StartsWith("CacheHost.Protocols.", StringComparison.Ordinal);

    [Fact]
    public void Every_project_in_src_and_tests_is_on_the_README_map()
    {
        var readme = File.ReadAllText(Path.Combine(Root, "README.md"));
        var section = readme[readme.IndexOf("\n## Architecture", StringComparison.Ordinal)..];
        section = section[..section.IndexOf("\n## ", 1, StringComparison.Ordinal)];
        var missing = Projects("src").Concat(Projects("tests"))
            .Select(p => Path.GetRelativePath(Root, Path.GetDirectoryName(p)!))
            .Where(dir => !Regex.IsMatch(section, @"(^|\s)" + Regex.Escape(dir) + @"\s", RegexOptions.Multiline))
            .ToArray();
        Assert.True(missing.Length == 0, "README's Architecture section does not list: " + string.Join(", ", missing));
    }

    [Fact]
    public void A_role_never_references_another_role()
    {
        var roles = Projects("src").Where(p => IsRole(ProjectName(p))).ToArray();
        Assert.True(roles.Length >= 5, "role projects not found under src/");
        var violations = roles.SelectMany(p => ProjectReferences(p).Where(IsRole).Select(r => $"{ProjectName(p)} -> {r}")).ToArray();
        Assert.True(violations.Length == 0, "roles reference roles: " + string.Join(", ", violations));

        // The built assemblies agree (a reference could also come in through a package or a copied dll).
        var assemblyViolations = roles.Select(ProjectName)
            .SelectMany(role => ReferencedAssemblies(role).Where(r => IsRole(r) && r != role).Select(r => $"{role} -> {r}"))
            .ToArray();
        Assert.True(assemblyViolations.Length == 0, "role assemblies reference roles: " + string.Join(", ", assemblyViolations));
    }

    [Fact]
    public void A_protocol_project_references_nothing_but_the_BCL()
    {
        var protocols = Projects("src").Where(p => IsProtocol(ProjectName(p))).ToArray();
        Assert.True(protocols.Length >= 3, "protocol projects not found under src/");
        foreach (var project in protocols)
        {
            Assert.True(ProjectReferences(project).Length == 0, $"{ProjectName(project)} has project references: {string.Join(", ", ProjectReferences(project))}");
            Assert.True(PackageReferences(project).Length == 0, $"{ProjectName(project)} has package references: {string.Join(", ", PackageReferences(project))}");
            var foreign = ReferencedAssemblies(ProjectName(project)).Where(a => !IsBcl(a)).ToArray();
            Assert.True(foreign.Length == 0, $"{ProjectName(project)} references non-BCL assemblies: {string.Join(", ", foreign)}");
        }
    }

    [Fact]
    public void A_role_does_not_use_the_epoll_engine()
    {
        var uses = Projects("src").Select(ProjectName).Where(IsRole)
            .SelectMany(role => ReferencedTypes(role)
                .Where(t => t.StartsWith("CacheHost.Transport.Epoll.", StringComparison.Ordinal) || t == "CacheHost.Transport.Epoll")
                .Select(t => $"{role} -> {t}"))
            .Distinct()
            .ToArray();
        var unexpected = uses.Where(u => !KnownEpollUses.Contains(u)).ToArray();
        Assert.True(unexpected.Length == 0, "roles use CacheHost.Transport.Epoll (go through the transport's seams): " + string.Join(", ", unexpected));

        // A fixed violation must leave the allow-list too, so the list never hides a new one.
        var stale = KnownEpollUses.Where(k => !uses.Contains(k)).ToArray();
        Assert.True(stale.Length == 0, "remove from KnownEpollUses (no longer true): " + string.Join(", ", stale));
    }

    [Fact]
    public void The_rule_checks_see_a_real_type_reference()
    {
        // The metadata scan is what the epoll rule rests on: it must find types a role really uses.
        Assert.Contains("CacheHost.Transport.TransportConnection", ReferencedTypes("CacheHost.Roles.CacheServer"));
        Assert.Contains("CacheHost.Core.ListenerRoleService", ReferencedTypes("CacheHost.Roles.Snoop"));
    }

    [Fact]
    public void The_shipped_program_references_no_test_project()
    {
        var program = Path.Combine(Root, "src/CacheHost/CacheHost.csproj");
        var testProjects = Projects("tests").Select(ProjectName).ToHashSet(StringComparer.Ordinal);
        Assert.DoesNotContain(ProjectReferences(program), testProjects.Contains);
        Assert.DoesNotContain("CacheHost.Roles.Probe", ReferencedAssemblies("cachehost"));
        foreach (var project in Projects("src"))
        {
            Assert.DoesNotContain(ProjectReferences(project), testProjects.Contains);
        }
    }

    [Fact]
    public void Every_role_follows_the_naming_scheme()
    {
        // {Role}Role (registrar with Name and Add{Role}Role), {Role}Options.SectionName = "CacheHost:{Role}",
        // {Role}Statistics, {Role}Log (issue 16: one name per concept).
        foreach (var project in Projects("src").Select(ProjectName).Where(IsRole))
        {
            var role = project["CacheHost.Roles.".Length..];
            var assembly = System.Reflection.Assembly.LoadFrom(AssemblyPath(project));
            var types = assembly.GetTypes();
            var registrar = assembly.GetType($"{project}.{role}Role");
            Assert.True(registrar is { IsAbstract: true, IsSealed: true }, $"{project}: no static class {role}Role");
            Assert.Equal(role, registrar!.GetField("Name")?.GetRawConstantValue());
            Assert.NotNull(registrar.GetMethod($"Add{role}Role"));
            var options = assembly.GetType($"{project}.{role}Options");
            Assert.True(options is not null, $"{project}: no {role}Options");
            Assert.Equal($"CacheHost:{role}", options!.GetField("SectionName")?.GetRawConstantValue());
            Assert.DoesNotContain(types, t => t.Name.EndsWith("RoleExtensions", StringComparison.Ordinal));
            Assert.All(types.Where(t => t.DeclaringType is null && (t.Name.EndsWith("Stats", StringComparison.Ordinal) || t.Name.EndsWith("Statistics", StringComparison.Ordinal))),
                t => Assert.Equal($"{role}Statistics", t.Name));
            Assert.All(types.Where(t => t is { IsAbstract: true, IsSealed: true } && t.Name.EndsWith("Log", StringComparison.Ordinal) && t.DeclaringType is null),
                t => Assert.Equal($"{role}Log", t.Name));
        }
    }

    private static bool IsBcl(string assembly) =>
        assembly is "System" or "mscorlib" or "netstandard" || assembly.StartsWith("System.", StringComparison.Ordinal)
        || assembly.StartsWith("Microsoft.Win32.", StringComparison.Ordinal);

    private static string AssemblyPath(string name)
    {
        var path = Path.Combine(AppContext.BaseDirectory, name + ".dll");
        Assert.True(File.Exists(path), $"{name}.dll is not next to the tests (the program references every src project)");
        return path;
    }

    private static string[] ReferencedAssemblies(string name)
    {
        using var pe = new PEReader(File.OpenRead(AssemblyPath(name)));
        var reader = pe.GetMetadataReader();
        return [.. reader.AssemblyReferences.Select(h => reader.GetString(reader.GetAssemblyReference(h).Name))];
    }

    /// <summary>Full names of the types <paramref name="name"/>'s code refers to in other assemblies (its TypeRef table).</summary>
    private static HashSet<string> ReferencedTypes(string name)
    {
        using var pe = new PEReader(File.OpenRead(AssemblyPath(name)));
        var reader = pe.GetMetadataReader();
        var types = new HashSet<string>(StringComparer.Ordinal);
        foreach (var handle in reader.TypeReferences)
        {
            var type = reader.GetTypeReference(handle);
            var ns = type.Namespace;
            var scope = type.ResolutionScope;
            // A nested type's namespace is its outer type's.
            while (ns.IsNil && scope.Kind == HandleKind.TypeReference)
            {
                var outer = reader.GetTypeReference((TypeReferenceHandle)scope);
                ns = outer.Namespace;
                scope = outer.ResolutionScope;
            }

            types.Add(reader.GetString(ns) + "." + reader.GetString(type.Name));
        }

        return types;
    }
}
