using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace CacheHost.Core;

/// <summary>
/// Binds role options with validation at start-up and errors that name the configuration key, without
/// reflection (NativeAOT): the binding is the configuration binder's source generator (the caller's
/// <c>section.Bind(options, …)</c> with a concrete type is what it generates code for, so a new field binds
/// with no code of its own) and the DataAnnotations checks are an <c>[OptionsValidator]</c> generated
/// validator kept next to each options class.
/// </summary>
public static class RoleOptionsExtensions
{
    /// <summary>Binder options for every section: an unknown key (a typo) is an error that names it.</summary>
    public static readonly Action<BinderOptions> RejectUnknownKeys = static o => o.ErrorOnUnknownConfiguration = true;

    /// <summary>
    /// Binds <typeparamref name="TOptions"/> from <paramref name="sectionPath"/> through <paramref name="bind"/>
    /// (write it as <c>static (section, o) =&gt; section.Bind(o, RoleOptionsExtensions.RejectUnknownKeys)</c>,
    /// which the binder's source generator turns into plain code), re-binds on configuration reload
    /// (IOptionsMonitor), validates with <typeparamref name="TValidator"/> (the generated DataAnnotations
    /// validator; nested option objects are marked <c>[ValidateObjectMembers]</c>) plus
    /// <paramref name="validate"/>, and validates on start. Each failure reads "<c>Section:Key: problem</c>".
    /// </summary>
    public static OptionsBuilder<TOptions> AddValidatedOptions<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicParameterlessConstructor)] TOptions, TValidator>(
        this IServiceCollection services, string sectionPath, Action<IConfiguration, TOptions> bind, Func<TOptions, IEnumerable<string>>? validate = null)
        where TOptions : class
        where TValidator : IValidateOptions<TOptions>, new()
    {
        return services.AddValidatedOptions(sectionPath, bind, new TValidator(), validate);
    }

    /// <summary>The same for an options class without DataAnnotations (only <paramref name="validate"/> checks it).</summary>
    public static OptionsBuilder<TOptions> AddValidatedOptions<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicParameterlessConstructor)] TOptions>(
        this IServiceCollection services, string sectionPath, Action<IConfiguration, TOptions> bind, Func<TOptions, IEnumerable<string>>? validate = null)
        where TOptions : class =>
        services.AddValidatedOptions(sectionPath, bind, annotations: null, validate);

    private static OptionsBuilder<TOptions> AddValidatedOptions<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicParameterlessConstructor)] TOptions>(
        this IServiceCollection services, string sectionPath, Action<IConfiguration, TOptions> bind, IValidateOptions<TOptions>? annotations, Func<TOptions, IEnumerable<string>>? validate)
        where TOptions : class
    {
        services.AddSingleton<IValidateOptions<TOptions>>(new KeyNamingValidator<TOptions>(sectionPath, annotations, validate));
        services.AddSingleton<IOptionsChangeTokenSource<TOptions>>(sp => new ConfigurationChangeTokenSource<TOptions>(sp.GetRequiredService<IConfiguration>()));
        return services.AddOptions<TOptions>()
            .Configure<IConfiguration>((options, configuration) => bind(configuration.GetSection(sectionPath), options))
            .ValidateOnStart();
    }

    private sealed class KeyNamingValidator<TOptions>(string sectionPath, IValidateOptions<TOptions>? annotations, Func<TOptions, IEnumerable<string>>? extra) : IValidateOptions<TOptions>
        where TOptions : class
    {
        public ValidateOptionsResult Validate(string? name, TOptions options)
        {
            var failures = new List<string>();
            // The generated validator names a member "<name>.<Member>[.<Nested>…]" in its message.
            var result = annotations?.Validate(sectionPath, options);
            if (result is { Failed: true })
            {
                foreach (var failure in result.Failures ?? [result.FailureMessage])
                {
                    failures.Add(NameTheKey(sectionPath, failure));
                }
            }

            if (extra is not null)
            {
                foreach (var message in extra(options))
                {
                    failures.Add(message.StartsWith(sectionPath, StringComparison.Ordinal) ? message : $"{sectionPath}:{message}");
                }
            }

            return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
        }
    }

    /// <summary>
    /// Rewrites a generated validator's failure ("Capacity: The field CacheHost:CacheServer.Capacity must be
    /// between 1 and 500000000.") into the form every CacheHost error has: "CacheHost:CacheServer:Capacity:
    /// The field Capacity must be between 1 and 500000000.". A message without the display name (a custom
    /// ErrorMessage without {0}) is named by its member.
    /// </summary>
    internal static string NameTheKey(string sectionPath, string failure)
    {
        var at = failure.IndexOf(sectionPath + ".", StringComparison.Ordinal);
        if (at < 0)
        {
            var colon = failure.IndexOf(": ", StringComparison.Ordinal);
            var member = colon > 0 ? failure[..colon] : "";
            return member.Length > 0 && member.All(c => char.IsLetterOrDigit(c) || c == '_')
                ? $"{sectionPath}:{member}: {failure[(colon + 2)..]}"
                : $"{sectionPath}: {failure}";
        }

        var start = at + sectionPath.Length + 1;
        var end = start;
        while (end < failure.Length && (char.IsLetterOrDigit(failure[end]) || failure[end] is '_' or '[' or ']'
            || (failure[end] == '.' && end + 1 < failure.Length && char.IsLetterOrDigit(failure[end + 1]))))
        {
            end++;
        }

        var dotted = failure[start..end];
        var leaf = dotted[(dotted.LastIndexOf('.') + 1)..];
        var message = failure[..at] + leaf + failure[end..];
        // The builder put "Member: " in front; the key replaces it.
        if (message.StartsWith(leaf + ": ", StringComparison.Ordinal))
        {
            message = message[(leaf.Length + 2)..];
        }

        return $"{sectionPath}:{dotted.Replace('.', ':')}: {message}";
    }

    /// <summary>Reads <c>CacheHost:Roles</c> as an array or as one comma-separated string.</summary>
    public static IReadOnlyList<string> ReadRoles(IConfiguration configuration)
    {
        var section = configuration.GetSection("CacheHost:Roles");
        var roles = new List<string>();
        if (!string.IsNullOrWhiteSpace(section.Value))
        {
            roles.AddRange(section.Value.Split([',', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        }

        foreach (var child in section.GetChildren().OrderBy(c => int.TryParse(c.Key, out var i) ? i : int.MaxValue))
        {
            if (!string.IsNullOrWhiteSpace(child.Value))
            {
                roles.Add(child.Value.Trim());
            }
        }

        return roles.Distinct(StringComparer.OrdinalIgnoreCase).ToArray();
    }
}
