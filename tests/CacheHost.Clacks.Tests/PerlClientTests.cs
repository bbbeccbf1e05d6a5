using System.Diagnostics;
using Xunit;

namespace CacheHost.Clacks.Tests;

/// <summary>
/// A plain Perl socket client doing what Net::Clacks::Client and ClacksCache do on the wire (Net::Clacks
/// itself is not installable here): two-part base64 token from MIME::Base64, greeting check, ClacksCache's
/// connect sequence and B64 values, pub/sub between two connections, FLUSH/QUIT disconnect; over a unix
/// socket and over TLS with IO::Socket::SSL in verify-none mode like the real client.
/// </summary>
public sealed class PerlClientTests
{
    private const string Script = """
        use strict; use warnings; use MIME::Base64; use IO::Socket::UNIX; use IO::Socket::SSL;
        my ($mode, $target) = @ARGV;
        sub conn {
            my $s = $mode eq 'unix'
                ? IO::Socket::UNIX->new(Peer => $target, Type => SOCK_STREAM)
                : IO::Socket::SSL->new(PeerHost => '127.0.0.1', PeerPort => $target, SSL_verify_mode => SSL_VERIFY_NONE);
            die "connect: $! $SSL_ERROR" unless $s;
            binmode $s; $s->autoflush(1);
            print $s "CLACKS perltest\r\n";
            print $s "OVERHEAD A " . encode_base64('admin', '') . ':' . encode_base64('adminpass', '') . "\r\n";
            my $first;
            while (defined(my $l = <$s>)) { $l =~ s/\r?\n$//; next if $l eq 'NOP'; $first = $l; last; }
            die "bad greeting '$first'" unless $first =~ /^CLACKS /;
            while (defined(my $l = <$s>)) { $l =~ s/\r?\n$//; die "auth failed" if $l =~ /^OVERHEAD F/; last if $l eq 'OVERHEAD O Welcome!'; }
            return $s;
        }
        sub upto { my ($s, $re) = @_; while (defined(my $l = <$s>)) { $l =~ s/\r?\n$//; return $l if $l =~ $re; } die "eof waiting for $re"; }
        my $a = conn(); my $b = conn();
        print $a "NOPING\r\nSTORE VERSION::perltest=36\r\nNOPING\r\n";
        print $a "STORE multi=PAGECAMELCLACKSB64:" . encode_base64("line1\nline2", '') . "\r\n";
        print $a "RETRIEVE multi\r\n";
        my $r = upto($a, qr/^(NOT)?RETRIEVED multi/);
        $r =~ s/^RETRIEVED multi=PAGECAMELCLACKSB64://; my $decoded = decode_base64($r);
        print $a "INCREMENT hits\r\nINCREMENT hits=5\r\nRETRIEVE hits\r\n";
        my $hits = upto($a, qr/^RETRIEVED hits=/);
        print $b "LISTEN Kitchen::Temperature\r\nFLUSH l1\r\n"; upto($b, qr/^FLUSHED l1$/);
        print $a "LISTEN Kitchen::Temperature\r\nSET Kitchen::Temperature=21.5\r\nNOTIFY Kitchen::Temperature\r\n";
        my $set = upto($b, qr/^SET /); my $notify = upto($b, qr/^NOTIFY /);
        print $a "FLUSH bye123\r\n"; my $echo = 0;
        while (defined(my $l = <$a>)) { $l =~ s/\r?\n$//; $echo++ if $l =~ /^(SET|NOTIFY) /; last if $l eq 'FLUSHED bye123'; }
        print $a "QUIT\r\n"; my $rest = join('', <$a>);
        print "decoded=$decoded|$hits|$set|$notify|echo=$echo|rest=" . length($rest) . "\n";
        """;

    private static async Task<string> RunPerl(params string[] args)
    {
        var start = new ProcessStartInfo("perl") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add("-e");
        start.ArgumentList.Add(Script);
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }

        using var perl = Process.Start(start)!;
        var output = perl.StandardOutput.ReadToEndAsync();
        var error = perl.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            await perl.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            perl.Kill();
            throw new TimeoutException("perl client hung: " + await error);
        }

        Assert.True(perl.ExitCode == 0, "perl client failed: " + await error);
        return (await output).Trim();
    }

    private const string Expected = "decoded=line1\nline2|RETRIEVED hits=6|SET Kitchen::Temperature=21.5|NOTIFY Kitchen::Temperature|echo=0|rest=0";

    [Fact]
    public async Task Perl_client_over_a_unix_socket()
    {
        using var dir = new TempDir();
        await using var server = await TestServer.StartAsync(dir.File("s.sock"));
        Assert.Equal(Expected, await RunPerl("unix", server.Socket));
        await using var c = await RawClient.LoginAsync(server.Socket);
        Assert.Equal("36", await c.RetrieveAsync("VERSION::perltest"));
    }

    [Fact]
    public async Task Perl_client_over_tls_with_io_socket_ssl()
    {
        using var dir = new TempDir();
        using var ca = TlsAndBadInputTests.MakeCertificates(dir);
        await using var server = await TlsAndBadInputTests.StartTls(dir);
        Assert.Equal(Expected, await RunPerl("tls", server.TlsPort.ToString(System.Globalization.CultureInfo.InvariantCulture)));
    }
}
