
# Copyright (c) setstream contributors
#
# 008_read_only.pl — the database turns read-only under the listener
# (ALTER SYSTEM SET default_transaction_read_only = on + reload) and back.
#
# While it is read-only:
#   * a push, a poll that acknowledges, a poll that would deliver and a
#     pushpull Communication Object are each answered 503 with
#     Retry-After and a JSON body (err temporarily_unavailable, a description;
#     README, "The listener");
#   * a pushpull WebSocket carrying a SET is closed with 1011 (the turn
#     could not commit) and its SET is not acknowledged; the listener
#     keeps serving while that session is half closed;
#   * nothing changes: setstream.events and the outbox (state, attempts)
#     are exactly as before, and the listener keeps its pid;
#   * the server log names the cause (a read-only transaction).
# After RESET + reload, without a restart, the same requests succeed: the
# pushed SET is stored once, the acknowledged SETs are acked, the pushpull
# SET is acknowledged.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use FaultUtil;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my ($node, $port) = start_node('read_only');
my $base = "http://127.0.0.1:$port";
my $token = make_stream($node, 'ro', 1);
$node->safe_psql('postgres',
	"SELECT setstream.emit('ro', '@{[EVENT_TYPE]}', '{}') FROM generate_series(1, 4)");

my $http = http_client();
sub post
{
	my ($path, $ctype, $body) = @_;
	return $http->request('POST', "$base/streams/ro/$path",
		{
			headers => {
				'Content-Type' => $ctype,
				'Authorization' => "Bearer $token"
			},
			content => $body
		});
}
sub push_set { post('events', 'application/secevent+jwt', unsigned_set('ro', $_[0])) }
sub poll { post('poll', 'application/json', $_[0]) }

ok(wait_until(10, sub { push_set('ro-1')->{status} == 202 }),
	'the listener accepts a push before the change');

# two SETs delivered (not acknowledged yet), two still pending
my $r = poll('{"returnImmediately":true,"maxEvents":2}');
is($r->{status}, 200, 'a poll delivers two SETs');
my @delivered = ($r->{content} =~ /"([0-9a-f-]{36})"\s*:/g);
is(scalar(@delivered), 2, 'two jtis delivered');
my $ack = join(',', map { "\"$_\"" } @delivered);

my $snapshot_sql =
    "SELECT (SELECT string_agg(jti, ',' ORDER BY jti) FROM setstream.events) || ' | ' || "
  . "(SELECT string_agg(jti || ':' || state || ':' || attempts, ',' ORDER BY seq) FROM setstream.outbox)";
my $before = $node->safe_psql('postgres', $snapshot_sql);
my ($pid) = listener_pids($node);

# ------------------------------------------------------------ read-only

my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', 'ALTER SYSTEM SET default_transaction_read_only = on');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
# the listener reloads at its next loop turn; give SIGHUP a moment
usleep(1_000_000);

$r = push_set('ro-2');
is($r->{status}, 503, 'read-only: a push is answered 503');
is($r->{headers}{'retry-after'}, '1', 'read-only: with Retry-After: 1');
like($r->{content}, qr/^\{"err":"temporarily_unavailable","description":"[^"]+"\}$/,
	'read-only: and a JSON body with err temporarily_unavailable and a description')
  or diag($r->{content});

$r = poll(qq({"ack":[$ack],"maxEvents":0,"returnImmediately":true}));
is($r->{status}, 503, 'read-only: a poll that acknowledges is answered 503');

$r = poll('{"returnImmediately":true}');
is($r->{status}, 503, 'read-only: a poll that would deliver SETs is answered 503');

my $co = sprintf('{"sets":{"ro-3":"%s"},"ack":[%s]}', unsigned_set('ro', 'ro-3'), $ack);
$r = post('pushpull', 'application/json', $co);
is($r->{status}, 503, 'read-only: a pushpull Communication Object is answered 503');

my ($ws, $head) = ws_open($port, 'ro', $token);
like($head, qr{^HTTP/1\.1 101 }, 'read-only: a WebSocket upgrade is answered 101');
syswrite($ws, ws_frame(sprintf('{"sets":{"ro-4":"%s"}}', unsigned_set('ro', 'ro-4'))));
my ($op, $payload);
for (1 .. 10)
{
	($op, $payload) = ws_read_frame($ws, 5);
	last if !defined $op || $op == 8;	# close
	unlike($payload, qr/"ack"\s*:\s*\[\s*"ro-4"/, 'read-only: the WebSocket SET is not acknowledged')
	  if $op == 1;
}
is($op, 8, 'read-only: the WebSocket is closed');
is(unpack('n', $payload // "\0\0"), 1011, 'read-only: with close code 1011');
# the session is half closed (the peer has not answered the close): the
# listener's next turns must not touch what the failed turn left behind
is(http_client()->get("$base/jwks.json")->{status}, 200,
	'read-only: the listener answers while the WebSocket is half closed');
usleep(300_000);

is($node->safe_psql('postgres', $snapshot_sql), $before,
	'read-only: events and outbox are unchanged');
is_deeply([ listener_pids($node) ], [$pid], 'read-only: the listener kept running');
close $ws;
like(slurp_file($node->logfile, $log_offset), qr/read-only transaction/,
	'read-only: the server log names the cause');

# ------------------------------------------------------------ back

$node->safe_psql('postgres', 'ALTER SYSTEM RESET default_transaction_read_only');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');

ok(wait_until(10, sub { push_set('ro-2')->{status} == 202 }),
	'after RESET and reload: the push is answered 202, without a restart');
$r = poll(qq({"ack":[$ack],"maxEvents":0,"returnImmediately":true}));
is($r->{status}, 200, 'after: the acknowledging poll is answered 200');
$r = post('pushpull', 'application/json', $co);
is($r->{status}, 200, 'after: the Communication Object is answered 200');
like($r->{content}, qr/"ack":\["ro-3"\]/, 'after: its SET is acknowledged');

is($node->safe_psql('postgres',
		"SELECT string_agg(jti || ':' || n, ',' ORDER BY jti) FROM "
		  . "(SELECT jti, count(*) n FROM setstream.events GROUP BY jti) e"),
	'ro-1:1,ro-2:1,ro-3:1', 'after: every SET is stored exactly once');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM setstream.outbox WHERE state = 'acked' AND jti IN ("
		  . join(',', map { "'$_'" } @delivered) . ')'),
	'2', 'after: the acknowledged SETs are acked');
is_deeply([ listener_pids($node) ], [$pid], 'after: the same listener process');

$node->stop;
done_testing();
