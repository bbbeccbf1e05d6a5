using System.Buffers;
using System.Text;

namespace CacheHost.Protocols.Tsv;

/// <summary>Writes TAB-separated, LF-terminated lines as UTF-8 into any buffer writer.</summary>
public static class TsvWriter
{
    /// <summary>Writes the fields joined by TAB, then LF.</summary>
    public static void WriteLine(IBufferWriter<byte> writer, params ReadOnlySpan<string> fields)
    {
        var length = fields.Length; // TABs plus LF
        foreach (var field in fields)
        {
            length += Encoding.UTF8.GetByteCount(field);
        }

        var span = writer.GetSpan(length);
        var offset = 0;
        for (var i = 0; i < fields.Length; i++)
        {
            if (i > 0)
            {
                span[offset++] = (byte)'\t';
            }

            offset += Encoding.UTF8.GetBytes(fields[i], span[offset..]);
        }

        span[offset++] = (byte)'\n';
        writer.Advance(offset);
    }

    /// <summary>Formats the fields as one line (with LF), for callers that queue strings.</summary>
    public static string FormatLine(params ReadOnlySpan<string> fields) => string.Join('\t', fields.ToArray()) + "\n";
}
