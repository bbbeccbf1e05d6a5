using System.Text;

namespace CacheHost.Protocols.Clacks;

/// <summary>
/// The login token of <c>OVERHEAD A</c> (clacks §3.4): base64(username) + ':' + base64(password), each part
/// encoded separately with the standard alphabet and padding. Tokens are compared as exact strings.
/// </summary>
public static class LoginToken
{
    /// <summary>Builds the token for a user. Inputs are UTF-8 text as written in the configuration.</summary>
    public static string Create(string username, string password) =>
        Convert.ToBase64String(Encoding.UTF8.GetBytes(username)) + ":" + Convert.ToBase64String(Encoding.UTF8.GetBytes(password));

    /// <summary>Splits a token into its decoded parts (for diagnostics; authentication compares whole tokens).</summary>
    public static bool TryDecode(string token, out string username, out string password)
    {
        username = password = string.Empty;
        var colon = token.IndexOf(':');
        if (colon < 0)
        {
            return false;
        }

        try
        {
            username = Encoding.UTF8.GetString(Convert.FromBase64String(token[..colon]));
            password = Encoding.UTF8.GetString(Convert.FromBase64String(token[(colon + 1)..]));
            return true;
        }
        catch (FormatException)
        {
            return false;
        }
    }
}
