#!/usr/bin/perl
# Emulates the reply wait of Net::Clacks::Client 36 (retrieve/flush/keylist/clientlist): read what has already
# arrived, then block up to 0.5 s in select() for more, and only then scan the queue for the reply. A reply that
# was already there when the client looked costs a full 0.5 s. With "fixed" the queue is scanned first and select()
# is only entered while the reply is missing (the client-side fix documented in docs/clacks.md).
# Usage: stall.pl SOCKET CLIENTS SECONDS quirk|fixed
use strict; use warnings; use IO::Socket::UNIX; use MIME::Base64; use Time::HiRes qw(time);
my ($path, $clients, $seconds, $mode) = @ARGV;
my $token = encode_base64('admin', '') . ':' . encode_base64('adminpass', '');
my @pipes;
for my $c (1 .. $clients) {
    pipe(my $r, my $w) or die;
    my $pid = fork() // die;
    if ($pid == 0) {
        close $r;
        my $s = IO::Socket::UNIX->new(Peer => $path, Type => SOCK_STREAM) or die "connect: $!";
        binmode $s; $s->blocking(0);
        my ($buf, @queue) = ('');
        my $drain = sub {
            while (1) { my $n = sysread($s, my $chunk, 65536); last unless $n; $buf .= $chunk; }
            while ($buf =~ s/^([^\n]*)\n//) { (my $l = $1) =~ s/\r//g; push @queue, $l if length $l; }
        };
        my $wait = sub { my $rin = ''; vec($rin, fileno($s), 1) = 1; return select(my $rout = $rin, undef, undef, 0.5); };
        syswrite($s, "CLACKS stall$c\r\nOVERHEAD A $token\r\nNOPING\r\n");
        until (grep { $_ eq 'OVERHEAD O Welcome!' } @queue) { $wait->(); $drain->(); }
        @queue = ();
        my ($trips, $stalls, $end) = (0, 0, time + $seconds);
        while (time < $end) {
            syswrite($s, "STORE k$c=v$trips\r\nRETRIEVE k$c\r\n");
            my $found;
            while (!$found) {
                $drain->();
                if ($mode eq 'fixed') { ($found) = grep { /^RETRIEVED k$c=/ } @queue; last if $found; }
                my $n = $wait->();
                $stalls++ if $n == 0;
                $drain->();
                ($found) = grep { /^RETRIEVED k$c=/ } @queue;
            }
            @queue = (); $trips++;
        }
        print $w "$trips $stalls\n"; close $w; exit 0;
    }
    close $w; push @pipes, $r;
}
my ($trips, $stalls) = (0, 0);
for my $r (@pipes) { my $l = <$r>; my ($t, $s) = split ' ', $l; $trips += $t; $stalls += $s; }
wait() for 1 .. $clients;
printf "%s clients=%d seconds=%d round_trips=%d per_second=%.0f stalls=%d stalled_share=%.0f%%\n",
    $mode, $clients, $seconds, $trips, $trips / $seconds, $stalls, $trips ? 100 * $stalls / $trips : 0;
