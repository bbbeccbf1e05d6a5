using System.Buffers;
using System.Text;
using CacheHost.Protocols.Tsv;
using CacheHost.Testing;
using Xunit;

namespace CacheHost.Protocols.Tests;

/// <summary>daemonproxy line framing (daemonproxy §3.1-3.2) under every fragmentation.</summary>
public sealed class TsvLineFramerTests
{
    private static List<string> Frame(ReadOnlySequence<byte> input, int max, out List<bool> overlong)
    {
        var framer = new TsvLineFramer(max);
        var lines = new List<string>();
        overlong = [];
        var buffer = input;
        while (true)
        {
            var status = framer.TryReadLine(ref buffer, out var line, out var comment);
            if (status == TsvLineStatus.NeedMoreData)
            {
                return lines;
            }

            if (status == TsvLineStatus.Line)
            {
                lines.Add(Encoding.UTF8.GetString(line.ToArray()));
            }
            else
            {
                lines.Add("<overlong>");
                overlong.Add(comment);
            }
        }
    }

    [Fact]
    public void LinesSurviveEveryFragmentationAndKeepCrAndEmptyFields()
    {
        var text = "echo\ta\t\tb\t\nstatedump\r\n\n# comment\n";
        foreach (var variant in SequenceFactory.Variants(Encoding.UTF8.GetBytes(text)))
        {
            var lines = Frame(variant.Sequence, 1023, out _);
            Assert.Equal(["echo\ta\t\tb\t", "statedump\r", "", "# comment"], lines);
        }
    }

    [Fact]
    public void AnOverlongLineIsReportedOnceAndDiscardedUpToItsLf()
    {
        var text = new string('x', 30) + "\necho\tok\n";
        var lines = Frame(new ReadOnlySequence<byte>(Encoding.UTF8.GetBytes(text)), 10, out var comments);
        Assert.Equal(["<overlong>", "echo\tok"], lines);
        Assert.Equal([false], comments);

        // 1023 bytes fit, 1024 do not (the reference's 1024-byte buffer holds the LF too).
        Assert.Equal([new string('y', 1023)], Frame(new ReadOnlySequence<byte>(Encoding.UTF8.GetBytes(new string('y', 1023) + "\n")), 1023, out _));
        Assert.Equal(["<overlong>"], Frame(new ReadOnlySequence<byte>(Encoding.UTF8.GetBytes(new string('y', 1024) + "\n")), 1023, out _));
    }

    [Fact]
    public void AnOverlongLineArrivingInPiecesIsReportedBeforeItsEndAndNeverBuffered()
    {
        var framer = new TsvLineFramer(8);
        var first = new ReadOnlySequence<byte>("#abcdefghijkl"u8.ToArray());
        Assert.Equal(TsvLineStatus.Overlong, framer.TryReadLine(ref first, out _, out var comment));
        Assert.True(comment);
        Assert.True(first.IsEmpty);
        var second = new ReadOnlySequence<byte>("mnop\nok\n"u8.ToArray());
        Assert.Equal(TsvLineStatus.Line, framer.TryReadLine(ref second, out var line, out _));
        Assert.Equal("ok", Encoding.UTF8.GetString(line.ToArray()));
    }
}
