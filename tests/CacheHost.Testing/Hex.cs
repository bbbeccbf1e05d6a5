namespace CacheHost.Testing;

/// <summary>Hex helpers for vectors and assertions.</summary>
public static class Hex
{
    /// <summary>Lowercase hex without separators.</summary>
    public static string Of(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(bytes);

    /// <summary>Bytes from hex (spaces allowed).</summary>
    public static byte[] Bytes(string hex) => Convert.FromHexString(hex.Replace(" ", string.Empty, StringComparison.Ordinal));
}
