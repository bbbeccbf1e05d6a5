using System.Diagnostics;
using System.Globalization;
using System.Text;
using CacheHost.Protocols.Clacks;
using Xunit;

namespace CacheHost.Clacks.Tests;

/// <summary>
/// Persistence files against YAML::Syck, the library the original server reads and writes them with
/// (Debian packages perl + libyaml-syck-perl, listed in .ci/apt-packages): files written by Syck load here,
/// and files written here load in Syck with every byte, time and flag intact.
/// </summary>
public sealed class SyckInteropTests
{
    private static string RunPerl(string script, byte[]? input = null)
    {
        var start = new ProcessStartInfo("perl") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add("-MYAML::Syck");
        start.ArgumentList.Add("-e");
        start.ArgumentList.Add(script);
        using var perl = Process.Start(start)!;
        var stdout = perl.StandardOutput.BaseStream;
        var output = new MemoryStream();
        var copy = stdout.CopyToAsync(output);
        var error = perl.StandardError.ReadToEndAsync();
        if (input is not null)
        {
            perl.StandardInput.BaseStream.Write(input);
        }

        perl.StandardInput.Close();
        Assert.True(perl.WaitForExit(30_000), "perl hung");
        copy.Wait(10_000);
        Assert.True(perl.ExitCode == 0, "perl failed: " + error.Result);
        return Encoding.Latin1.GetString(output.ToArray());
    }

    [Fact]
    public void A_file_written_by_yaml_syck_like_the_original_server_loads()
    {
        // The reference writes "\0CLACKSV3" . Dump(\%cache) . "\0CLACKSV3" with sorted keys.
        var file = RunPerl("""
            $YAML::Syck::SortKeys = 1;
            my %c = (
              "colon" => {data=>"a: b # c", cachetime=>"1795313291.76876", accesstime=>"1795313291.76876", deleted=>0},
              "key with spaces=and=eq" => {data=>("word " x 60) . "end", cachetime=>1795313291.5, accesstime=>"1795313291.7688", deleted=>0},
              "tomb" => {data=>"", cachetime=>"1795313291.76882", accesstime=>"1795313291.76882", deleted=>1},
              "utf8" => {data=>"Gr\xc3\xbc\xc3\x9fe \xe2\x98\x83", cachetime=>"1", accesstime=>"2", deleted=>0},
              "item" => {data=>"- item", cachetime=>"1", accesstime=>"2", deleted=>0},
              "ctl" => {data=>"tab\there\x01\x7f\"q\" 's' back\\slash", cachetime=>"1", accesstime=>"2", deleted=>0},
              "num" => {data=>"42", cachetime=>"1", accesstime=>"2", deleted=>0},
              "lead" => {data=>"  spaced  ", cachetime=>"1", accesstime=>"2", deleted=>0},
              "~" => {data=>"~", cachetime=>"1", accesstime=>"2", deleted=>0},
              "b64" => {data=>"PAGECAMELCLACKSB64:bGluZTEKbGluZTI=", cachetime=>"3", accesstime=>"4", deleted=>0},
            );
            binmode STDOUT; print "\0CLACKSV3" . Dump(\%c) . "\0CLACKSV3";
            """);
        Assert.True(PersistenceFormat.TryRead(Encoding.Latin1.GetBytes(file), out var e, out var error), error);
        Assert.Equal(10, e.Count);
        Assert.Equal("a: b # c", e["colon"].Data);
        Assert.Equal(string.Concat(Enumerable.Repeat("word ", 60)) + "end", e["key with spaces=and=eq"].Data);
        Assert.Equal(1795313291.5, e["key with spaces=and=eq"].CacheTime);
        Assert.Equal(1795313291.7688, e["key with spaces=and=eq"].AccessTime);
        Assert.True(e["tomb"].Deleted);
        Assert.Equal("Grüße ☃", ClacksWire.ToUtf8(e["utf8"].Data));
        Assert.Equal("- item", e["item"].Data);
        Assert.Equal("tab\there\x01\x7f\"q\" 's' back\\slash", e["ctl"].Data);
        Assert.Equal("42", e["num"].Data);
        Assert.Equal("  spaced  ", e["lead"].Data);
        Assert.Equal("~", e["~"].Data);
        Assert.Equal((3.0, 4.0), (e["b64"].CacheTime, e["b64"].AccessTime));
    }

    [Fact]
    public void A_file_written_here_loads_in_yaml_syck_with_every_byte_intact()
    {
        var entries = new Dictionary<string, CacheEntry>
        {
            ["colon"] = new("a: b # c", 1795313291.76876, 1795313291.7688, false),
            ["key with spaces=and=eq"] = new("- item 'x' \"y\" \\ end", 1, 2, false),
            ["tomb"] = new(string.Empty, 1795313291.76882, 1795313291.76882, true),
            [ClacksWire.FromUtf8("unicode ☃")] = new(ClacksWire.FromUtf8("Grüße") + "\x01\x7f\xff\t", 5, 6, false),
            ["~"] = new("~", 7, 8, false),
            ["null"] = new("null", 7, 8, false),
            ["empty"] = new(string.Empty, 9, 10, false),
        };
        var output = RunPerl("""
            binmode STDIN; binmode STDOUT; local $/; my $f = <STDIN>;
            $f =~ s/^\0CLACKSV3//; $f =~ s/\0CLACKSV3$//;
            my $c = Load($f);
            for my $k (sort keys %$c) {
              my $e = $c->{$k};
              print join("\t", unpack("H*", $k), unpack("H*", $e->{data}), $e->{cachetime}, $e->{accesstime}, $e->{deleted}), "\n";
            }
            """, PersistenceFormat.Write(entries));
        var loaded = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => line.Split('\t')).ToDictionary(
            f => Encoding.Latin1.GetString(Convert.FromHexString(f[0])),
            f => new CacheEntry(Encoding.Latin1.GetString(Convert.FromHexString(f[1])), double.Parse(f[2], CultureInfo.InvariantCulture),
                double.Parse(f[3], CultureInfo.InvariantCulture), f[4] == "1"));
        Assert.Equal(entries.OrderBy(x => x.Key, StringComparer.Ordinal), loaded.OrderBy(x => x.Key, StringComparer.Ordinal));
    }
}
