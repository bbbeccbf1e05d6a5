using System.Buffers;
using System.Text;
using CacheHost.Protocols.Clacks;
using Xunit;

namespace CacheHost.Clacks.Tests;

/// <summary>The pure codec: framing, parsing, flags, tokens, Perl numbers, persistence format.</summary>
public sealed class CodecTests
{
    [Theory]
    [InlineData(null, null, false, "1")]
    [InlineData("1", "+5", false, "6")]
    [InlineData("6", "2", true, "4")]
    [InlineData("4", null, true, "3")]
    [InlineData("6", "2.5", true, "3.5")]
    [InlineData("9007199254740993", null, false, "9007199254740994")]
    [InlineData("0.1", "0.2", false, "0.3")]
    [InlineData("999999999999999", "1e0", false, "1e+15")]
    [InlineData("0", "0.00001", false, "1e-05")]
    [InlineData("0", "0.3333333333333333", false, "0.333333333333333")]
    [InlineData("18446744073709551615", null, false, "1.84467440737096e+19")]
    [InlineData("9223372036854775807", null, false, "9223372036854775808")]
    [InlineData("-9223372036854775808", null, true, "-9.22337203685478e+18")]
    [InlineData("0", "1e3", false, "1000")]
    [InlineData("hello world", null, false, "1")]
    [InlineData("12abc", null, false, "1")]
    [InlineData(" 7 \n", null, false, "8")]
    [InlineData("0 but true", "5", false, "5")]
    [InlineData("10", "5abc", false, "15")]
    [InlineData("10", " 7", false, "17")]
    [InlineData("10", "abc", false, "10")]
    [InlineData("10", "0x10", false, "10")]
    [InlineData("10", "1_000", false, "11")]
    [InlineData("10", ".5", false, "10.5")]
    [InlineData("10", "5.", false, "15")]
    [InlineData("1", "Inf", false, "Inf")]
    [InlineData("1", "-infinity", false, "-Inf")]
    [InlineData("1", "nan", false, "NaN")]
    [InlineData("Inf", "Inf", true, "NaN")]
    [InlineData("3.5", null, false, "4.5")]
    public void Perl_number_semantics(string? old, string? step, bool negate, string expected)
    {
        Assert.Equal(expected, PerlNumber.Apply(old, step, negate));
    }

    [Theory]
    [InlineData(1795313291.76982, "1795313291.76982")]
    [InlineData(1795313291.7688, "1795313291.7688")]
    [InlineData(0, "0")]
    [InlineData(1e15, "1e+15")]
    [InlineData(123456789012345.0, "123456789012345")]
    [InlineData(-0.5, "-0.5")]
    public void Double_formatting_is_percent_15g(double value, string expected) => Assert.Equal(expected, PerlNumber.FormatDouble(value));

    [Fact]
    public void Framer_strips_every_cr_skips_empty_lines_and_reports_overlong_once()
    {
        var framer = new ClacksLineFramer(32);
        var input = new ReadOnlySequence<byte>(Encoding.Latin1.GetBytes("A\rB\r\n\r\n\nPING\n" + new string('x', 40) + "\nnext\npartial"));
        Assert.Equal(ClacksFrameStatus.Line, framer.TryReadLine(ref input, out var line));
        Assert.Equal("AB", line);
        Assert.Equal(ClacksFrameStatus.Line, framer.TryReadLine(ref input, out line));
        Assert.Equal("PING", line);
        Assert.Equal(ClacksFrameStatus.Overlong, framer.TryReadLine(ref input, out _));
        Assert.Equal(ClacksFrameStatus.Line, framer.TryReadLine(ref input, out line));
        Assert.Equal("next", line);
        Assert.Equal(ClacksFrameStatus.NeedMoreData, framer.TryReadLine(ref input, out _));
        Assert.Equal("partial", Encoding.Latin1.GetString(input.ToArray()));

        // An overlong line without LF yet is reported once, then its tail is discarded up to the LF.
        var stream = new ReadOnlySequence<byte>(new byte[40]);
        Assert.Equal(ClacksFrameStatus.Overlong, framer.TryReadLine(ref stream, out _));
        var tail = new ReadOnlySequence<byte>(Encoding.Latin1.GetBytes("more junk\nQUIT\n"));
        Assert.Equal(ClacksFrameStatus.Line, framer.TryReadLine(ref tail, out line));
        Assert.Equal("QUIT", line);
    }

    [Fact]
    public async Task Framer_scans_a_16_mib_line_arriving_in_small_reads_once()
    {
        // Before, every read re-searched the whole unconsumed line for LF: 16 MiB in 4 KiB reads scanned ~32 TiB
        // worth of bytes (2.5-5.3 s of CPU). Now each byte is searched once.
        const int total = ClacksLineFramer.DefaultMaxLineBytes;
        const int chunk = 4096;
        var framer = new ClacksLineFramer();
        var pipe = new System.IO.Pipelines.Pipe(new System.IO.Pipelines.PipeOptions(pauseWriterThreshold: 0));
        var payload = new byte[chunk];
        payload.AsSpan().Fill((byte)'x');
        "STORE k="u8.CopyTo(payload);
        string? line = null;
        for (var sent = 0; sent < total; sent += chunk)
        {
            pipe.Writer.Write(sent + chunk >= total ? [.. payload.AsSpan(0, chunk - 1), (byte)'\n'] : payload);
            await pipe.Writer.FlushAsync();
            Assert.True(pipe.Reader.TryRead(out var result));
            var buffer = result.Buffer;
            var status = framer.TryReadLine(ref buffer, out var read);
            if (status == ClacksFrameStatus.Line)
            {
                line = read;
            }
            else
            {
                Assert.Equal(ClacksFrameStatus.NeedMoreData, status);
            }

            pipe.Reader.AdvanceTo(buffer.Start, buffer.End);
            payload.AsSpan().Fill((byte)'x');
        }

        Assert.Equal(total - 1, line!.Length);
        Assert.Equal(total, framer.ScannedBytes);
    }

    [Fact]
    public void Framer_applies_a_lower_per_call_limit()
    {
        var framer = new ClacksLineFramer();
        var input = new ReadOnlySequence<byte>(Encoding.Latin1.GetBytes(new string('x', 5000)));
        Assert.Equal(ClacksFrameStatus.Overlong, framer.TryReadLine(ref input, 4096, out _));
        var ok = new ReadOnlySequence<byte>(Encoding.Latin1.GetBytes("tail\n" + new string('y', 5000) + "\n"));
        Assert.Equal(ClacksFrameStatus.Line, framer.TryReadLine(ref ok, out var line));
        Assert.Equal(5000, line.Length);
    }

    [Fact]
    public void Framer_keeps_utf8_and_binary_bytes_exact()
    {
        var framer = new ClacksLineFramer();
        var bytes = Encoding.UTF8.GetBytes("STORE k=Grüße ☃").Concat(new byte[] { 0xff, 0x00, 0x80, (byte)'\n' }).ToArray();
        var input = new ReadOnlySequence<byte>(bytes);
        Assert.Equal(ClacksFrameStatus.Line, framer.TryReadLine(ref input, out var line));
        Assert.Equal(bytes[..^1], ClacksWire.EncodeLine(line)[..^2]);
    }

    [Theory]
    [InlineData("NOTIFY ", ClacksCommandKind.Notify, "", null)]
    [InlineData("SET a=b=c", ClacksCommandKind.Set, "a", "b=c")]
    [InlineData("SET nokey", ClacksCommandKind.Unknown, "SET nokey", null)]
    [InlineData("SETANDSTORE a=1", ClacksCommandKind.SetAndStore, "a", "1")]
    [InlineData("STORE a b=c=d e", ClacksCommandKind.Store, "a b", "c=d e")]
    [InlineData("RETRIEVE a b", ClacksCommandKind.Retrieve, "a b", null)]
    [InlineData("INCREMENT k=v=3", ClacksCommandKind.Increment, "k=v", "3")]
    [InlineData("INCREMENT dangling=", ClacksCommandKind.Increment, "dangling=", null)]
    [InlineData("DECREMENT c", ClacksCommandKind.Decrement, "c", null)]
    [InlineData("KEYLISTfoo", ClacksCommandKind.KeyList, "", null)]
    [InlineData("PINGxyz", ClacksCommandKind.Ping, "", null)]
    [InlineData("NOPING", ClacksCommandKind.NoPing, "", null)]
    [InlineData("UNLISTEN x", ClacksCommandKind.Unlisten, "x", null)]
    [InlineData("UNMONITOR", ClacksCommandKind.Unmonitor, "", null)]
    [InlineData("FLUSH ", ClacksCommandKind.Unknown, "FLUSH ", null)]
    [InlineData("store x=1", ClacksCommandKind.Unknown, "store x=1", null)]
    [InlineData("CLIENTDISCONNECT a:b:1", ClacksCommandKind.ClientDisconnect, "a:b:1", null)]
    public void Command_dispatch_follows_the_reference_order(string line, ClacksCommandKind kind, string name, string? value)
    {
        var command = ClacksCommandParser.Parse(line);
        Assert.Equal(kind, command.Kind);
        Assert.Equal(name, command.Name);
        Assert.Equal(value, command.Value);
    }

    [Fact]
    public void Keysync_fields_are_split_as_specified()
    {
        var c = ClacksCommandParser.Parse("KEYSYNC 1795313228.59242 0 D gone=REMOVED");
        Assert.Equal((ClacksCommandKind.KeySync, "1795313228.59242", "0", "D", "gone", "REMOVED"), (c.Kind, c.CacheTime, c.AccessTime, c.Mode, c.Name, c.Value));
        Assert.Equal(ClacksCommandKind.Unknown, ClacksCommandParser.Parse("KEYSYNC 1 2 U").Kind);
    }

    [Theory]
    [InlineData("OVERHEAD GNU Terry Pratchett", "GN", "Terry Pratchett")]
    [InlineData("OVERHEAD GM hello all", "GM", "hello all")]
    [InlineData("OVERHEAD GI 1", "I", "1")]
    [InlineData("OVERHEAD UG x", "G", "x")]
    [InlineData("OVERHEAD U x", "Z", "x")]
    [InlineData("OVERHEAD XQG x", "G", "x")]
    public void Overhead_forward_flags(string line, string flags, string value)
    {
        Assert.True(OverheadLine.TryParse(line, out var o));
        Assert.Equal(flags, o.ForwardFlags());
        Assert.Equal(value, o.Value);
    }

    [Theory]
    [InlineData("OVERHEAD M")]
    [InlineData("OVERHEAD M ")]
    [InlineData("OVERHEADM x")]
    public void Overhead_without_value_does_not_match(string line) => Assert.False(OverheadLine.TryParse(line, out _));

    [Fact]
    public void Login_token_is_two_separately_encoded_parts()
    {
        Assert.Equal("YWRtaW4=:YWRtaW5wYXNz", LoginToken.Create("admin", "adminpass"));
        Assert.True(LoginToken.TryDecode("YWRtaW4=:d3Jvbmc=", out var u, out var p));
        Assert.Equal(("admin", "wrong"), (u, p));
    }

    [Fact]
    public void Persistence_round_trip_keeps_bytes_times_and_tombstones()
    {
        var entries = new Dictionary<string, CacheEntry>
        {
            ["b64"] = new("PAGECAMELCLACKSB64:bGluZTEKbGluZTI=", 1795313291.7688, 1795313291.7688, false),
            ["colon"] = new("a: b # c", 1795313291.76876, 1795313291.76876, false),
            ["quote\"back\\slash"] = new("- item 'x' \"y\"", 1, 2, false),
            ["tomb"] = new(string.Empty, 1795313291.76882, 1795313291.76882, true),
            [ClacksWire.FromUtf8("unicode ☃")] = new(ClacksWire.FromUtf8("Grüße") + "\x01\xff", 5, 6, false),
        };
        var file = PersistenceFormat.Write(entries);
        Assert.True(file.AsSpan().StartsWith(PersistenceFormat.Marker) && file.AsSpan().EndsWith(PersistenceFormat.Marker));
        Assert.True(PersistenceFormat.TryRead(file, out var back, out var error), error);
        Assert.Equal(entries.OrderBy(e => e.Key, StringComparer.Ordinal), back.OrderBy(e => e.Key, StringComparer.Ordinal));
    }

    [Fact]
    public void Persistence_reads_the_reference_format_and_rejects_torn_files()
    {
        // The layout YAML::Syck writes (clacks §13.1), including raw UTF-8 and plain/single/double-quoted scalars.
        var text = "\0CLACKSV3--- \nb64: \n  accesstime: '1795313291.7688'\n  cachetime: '1795313291.7688'\n  data: PAGECAMELCLACKSB64:bGluZTEKbGluZTI=\n  deleted: 0\n" +
            "colon: \n  accesstime: '1795313291.76876'\n  cachetime: '1795313291.76876'\n  data: \"a: b # c\"\n  deleted: 0\n" +
            "num: \n  accesstime: 1795313291\n  cachetime: 1795313291\n  data: 42\n  deleted: 0\n" +
            "'quoted key': \n  accesstime: '1'\n  cachetime: '2'\n  data: 'it''s'\n  deleted: 0\n" +
            "long: \n  accesstime: '1'\n  cachetime: '2'\n  data: \"folded\\\n    \\ text with \\x41 and\n    more\"\n  deleted: 0\n" +
            "tomb: \n  accesstime: '1795313291.76882'\n  cachetime: '1795313291.76882'\n  data: ''\n  deleted: 1\n" +
            "unicode: \n  accesstime: '1795313291.76992'\n  cachetime: '1795313291.76879'\n  data: Grüße ☃\n  deleted: 0\n\0CLACKSV3";
        var file = Encoding.UTF8.GetBytes(text);
        Assert.True(PersistenceFormat.TryRead(file, out var entries, out var error), error);
        Assert.Equal("PAGECAMELCLACKSB64:bGluZTEKbGluZTI=", entries["b64"].Data);
        Assert.Equal(1795313291.7688, entries["b64"].CacheTime);
        Assert.Equal("a: b # c", entries["colon"].Data);
        Assert.Equal("42", entries["num"].Data);
        Assert.Equal("it's", entries["quoted key"].Data);
        Assert.Equal("folded text with A and more", entries["long"].Data);
        Assert.True(entries["tomb"].Deleted);
        Assert.Equal("Grüße ☃", ClacksWire.ToUtf8(entries["unicode"].Data));

        Assert.True(PersistenceFormat.TryRead(Encoding.Latin1.GetBytes("\0CLACKSV3--- {}\n\n\0CLACKSV3"), out var empty, out _));
        Assert.Empty(empty);
        Assert.False(PersistenceFormat.TryRead(file[..^3], out _, out _));
        Assert.False(PersistenceFormat.TryRead(file[..20], out _, out _));
    }
}
