using System.Text;

namespace CacheHost.Protocols.Clacks;

/// <summary>Output side of the protocol (clacks §2.2): every line ends with CR LF, text is Latin-1 (byte = char).</summary>
public static class ClacksWire
{
    /// <summary>Emergency prefix of server-initiated QUIT (clacks §2.2).</summary>
    public const string QuitLine = "\r\nQUIT";

    /// <summary>Emergency prefix of the timeout notice (clacks §10).</summary>
    public const string TimeoutLine = "\r\nTIMEOUT";

    /// <summary>Close-all cascade notice sent to links before QUIT (clacks §6.1 flag C).</summary>
    public const string CloseAllCascadeLine = "\r\nOVERHEAD GC 1";

    /// <summary>Encodes one line plus CR LF.</summary>
    public static byte[] EncodeLine(string line)
    {
        var bytes = new byte[line.Length + 2];
        Encoding.Latin1.GetBytes(line, bytes);
        bytes[^2] = (byte)'\r';
        bytes[^1] = (byte)'\n';
        return bytes;
    }

    /// <summary>Converts text that is really Latin-1-mapped bytes back to a .NET string of those bytes decoded as UTF-8 (for logs and tests).</summary>
    public static string ToUtf8(string latin1) => Encoding.UTF8.GetString(Encoding.Latin1.GetBytes(latin1));

    /// <summary>Maps a UTF-8 .NET string to the Latin-1 byte-per-char form the protocol code uses.</summary>
    public static string FromUtf8(string text) => Encoding.Latin1.GetString(Encoding.UTF8.GetBytes(text));
}
