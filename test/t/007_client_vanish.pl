
# Copyright (c) setstream contributors
#
# 007_client_vanish.pl — clients that vanish mid-request and mid-WebSocket
# message.
#
# Each case pushes a SET of its own and goes away part way, with a FIN
# (close) or a RST (SO_LINGER 0):
#   * half the headers; the full headers and half the body; a pushpull
#     WebSocket after the upgrade, half a text frame carrying a
#     Communication Object;
#   * half the headers, then silence: closed after setstream.idle_timeout;
#   * a whole push, the client resetting while the listener stores it
#     (a slow trigger holds the turn): the answer cannot be written.
# After every case:
#   * nothing of the unfinished requests is stored (the last case: at most
#     once);
#   * the listener keeps serving, under the same pid (a push is answered
#     202);
#   * its connection count (setstream.listener_stats()) returns to zero.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use FaultUtil;
use PostgreSQL::Test::Utils;
use Socket qw(SOL_SOCKET SO_LINGER);
use Test::More;
use IO::Select;
use Time::HiRes qw(time usleep);

my $IDLE = 3;	# setstream.idle_timeout, seconds

my ($node, $port) = start_node('vanish', "setstream.idle_timeout = '${IDLE}s'\n");
my $token = make_stream($node, 'gone', 0);
$node->safe_psql('postgres', q{
CREATE FUNCTION public.slow_insert() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN IF NEW.jti LIKE 'slow-%' THEN PERFORM pg_sleep(1); END IF; RETURN NEW; END$$;
CREATE TRIGGER slow_insert BEFORE INSERT ON setstream.events
    FOR EACH ROW EXECUTE FUNCTION public.slow_insert()});

my ($served, %answered) = (0);
sub push_ok
{
	my $jti = sprintf('ok-%02d', ++$served);
	my $r = http_client()->request('POST', "http://127.0.0.1:$port/streams/gone/events",
		{
			headers => {
				'Content-Type' => 'application/secevent+jwt',
				'Authorization' => "Bearer $token"
			},
			content => unsigned_set('gone', $jti)
		});
	$answered{$jti} = 1 if $r->{status} == 202;
	return $r->{status} == 202;
}

ok(wait_until(10, \&push_ok), 'the listener serves');
my ($pid) = listener_pids($node);
ok(wait_until(5, sub { (listener_connections($node) // -1) == 0 }),
	'baseline: no open connection');

sub vanish
{
	my ($s, $how) = @_;
	setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) if $how eq 'RST';
	close $s;
}

# after_case(NAME, SECONDS): the listener serves, same pid, no connection
sub after_case
{
	my ($name, $seconds) = @_;
	ok(push_ok(), "$name: the listener still serves");
	is_deeply([ listener_pids($node) ], [$pid], "$name: same listener process");
	ok(wait_until($seconds // 5, sub { (listener_connections($node) // -1) == 0 }),
		"$name: its connection count returns to zero")
	  or diag('connections: ' . (listener_connections($node) // 'unknown'));
}

my $push_path = '/streams/gone/events';
my @unfinished;

for my $how ('FIN', 'RST')
{
	# half the headers
	my $jti = "half-headers-$how";
	push @unfinished, $jti;
	my $req = raw_request($push_path, $token, 'application/secevent+jwt',
		unsigned_set('gone', $jti));
	my $head_end = index($req, "\r\n\r\n");
	my $s = raw_connect($port);
	syswrite($s, substr($req, 0, int($head_end / 2)));
	usleep(200_000);
	vanish($s, $how);
	after_case("half the headers, $how");

	# the headers and half the body
	$jti = "half-body-$how";
	push @unfinished, $jti;
	$req = raw_request($push_path, $token, 'application/secevent+jwt',
		unsigned_set('gone', $jti));
	$head_end = index($req, "\r\n\r\n") + 4;
	$s = raw_connect($port);
	syswrite($s, substr($req, 0, $head_end + int((length($req) - $head_end) / 2)));
	usleep(200_000);
	vanish($s, $how);
	after_case("half the body, $how");

	# a WebSocket, half a frame
	$jti = "half-frame-$how";
	push @unfinished, $jti;
	my $resp;
	($s, $resp) = ws_open($port, 'gone', $token);
	like($resp, qr{^HTTP/1\.1 101 }, "half a frame, $how: the upgrade is answered 101");
	my $payload = sprintf('{"sets":{"%s":"%s"}}', $jti, unsigned_set('gone', $jti));
	my $frame = ws_frame($payload);
	syswrite($s, substr($frame, 0, 8 + int(length($payload) / 2)));
	usleep(200_000);
	vanish($s, $how);
	after_case("half a frame, $how");
}

# half the headers, then silence
my $s = raw_connect($port);
syswrite($s, "POST $push_path HTTP/1.1\r\nHost: 127.0.0.1\r\n");
my $opened = time;
ok(wait_until(2, sub { (listener_connections($node) // 0) == 1 }),
	'silent client: its connection is counted');
after_case('silent client', $IDLE + 3);
my $closed_after = time - $opened;
note(sprintf('silent connection closed after %.1f s', $closed_after));
cmp_ok($closed_after, '>=', $IDLE - 0.5,
	'silent client: kept until setstream.idle_timeout');
# closed, and nothing sent first: the next read is the end of the stream
my $readable = IO::Select->new($s)->can_read(5);
my $n = $readable ? sysread($s, my $buf, 4096) : undef;
ok($readable && defined $n && $n == 0,
	'silent client: the listener closed the connection without sending a byte')
  or diag($readable
	? (defined $n ? "read $n bytes: " . substr($buf, 0, 200) : "read failed: $!")
	: 'the connection is still open after 5 s');
close $s;

# a whole push; the client resets while the listener stores it
$s = raw_connect($port);
syswrite($s, raw_request($push_path, $token, 'application/secevent+jwt',
		unsigned_set('gone', 'slow-1')));
usleep(300_000);
vanish($s, 'RST');
usleep(1_500_000);
after_case('reset while stored');

# ------------------------------------------------------------ the end state

my $rows = $node->safe_psql('postgres',
	"SELECT jti || ' ' || count(*) FROM setstream.events GROUP BY jti");
my %stored = map { split / / } split /\n/, $rows;
is_deeply([ sort grep { exists $stored{$_} } @unfinished ], [],
	'no unfinished request stored anything');
cmp_ok($stored{'slow-1'} // 0, '<=', 1, 'the reset push is stored at most once');
is_deeply([ sort grep { /^ok-/ } keys %stored ], [ sort keys %answered ],
	'exactly the pushes answered 202 are stored');
is(scalar(grep { $_ != 1 } values %stored), 0, 'nothing is stored twice');
unlike(slurp_file($node->logfile), qr/PANIC|terminated by signal/,
	'no crash in the server log');

$node->stop;
done_testing();
