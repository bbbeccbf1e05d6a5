using System.ComponentModel.DataAnnotations;
using System.Reflection;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace CacheHost.Core;

/// <summary>Binds role options with validation at start-up and errors that name the configuration key.</summary>
public static class RoleOptionsExtensions
{
    /// <summary>
    /// Binds <typeparamref name="TOptions"/> from <paramref name="sectionPath"/>, validates DataAnnotations
    /// recursively (nested option objects included) plus <paramref name="validate"/>, and validates on start.
    /// Each failure reads "<c>Section:Key: problem</c>".
    /// </summary>
    public static OptionsBuilder<TOptions> AddValidatedOptions<TOptions>(this IServiceCollection services, string sectionPath, Func<TOptions, IEnumerable<string>>? validate = null)
        where TOptions : class
    {
        services.AddSingleton<IValidateOptions<TOptions>>(new KeyNamingValidator<TOptions>(sectionPath, validate));
        return services.AddOptions<TOptions>()
            .BindConfiguration(sectionPath, o => o.ErrorOnUnknownConfiguration = true)
            .ValidateOnStart();
    }

    private sealed class KeyNamingValidator<TOptions>(string sectionPath, Func<TOptions, IEnumerable<string>>? extra) : IValidateOptions<TOptions>
        where TOptions : class
    {
        public ValidateOptionsResult Validate(string? name, TOptions options)
        {
            var failures = new List<string>();
            ValidateObject(options, sectionPath, failures, depth: 0);
            if (extra is not null)
            {
                foreach (var message in extra(options))
                {
                    failures.Add(message.StartsWith(sectionPath, StringComparison.Ordinal) ? message : $"{sectionPath}:{message}");
                }
            }

            return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
        }

        private static void ValidateObject(object instance, string path, List<string> failures, int depth)
        {
            var results = new List<ValidationResult>();
            Validator.TryValidateObject(instance, new ValidationContext(instance), results, validateAllProperties: true);
            foreach (var result in results)
            {
                var member = result.MemberNames.FirstOrDefault() ?? "?";
                failures.Add($"{path}:{member}: {result.ErrorMessage}");
            }

            if (depth > 4)
            {
                return;
            }

            foreach (var property in instance.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance))
            {
                var type = property.PropertyType;
                if (type.IsClass && type != typeof(string) && !typeof(System.Collections.IEnumerable).IsAssignableFrom(type)
                    && property.GetIndexParameters().Length == 0 && property.GetValue(instance) is { } child)
                {
                    ValidateObject(child, $"{path}:{property.Name}", failures, depth + 1);
                }
            }
        }
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
