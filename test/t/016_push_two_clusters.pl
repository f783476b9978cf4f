
# Copyright (c) setstream contributors
#
# setstream to setstream across two clusters (issue 17): cluster A pushes
# (RFC 8935) the SETs emitted on one of its streams to the listener of
# cluster B, which verifies each with A's public key and stores it before
# answering 202.  Then the faults: B down for a while (A backs off and
# resumes by itself), an immediate restart of A while pushes are in flight
# and one of B.  After each, every SET emitted on A is stored exactly once
# on B, byte for byte, and A's outbox rows are acked: nothing lost, nothing
# stored twice.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use FaultUtil;
use PostgreSQL::Test::Utils;
use Test::More;

my ($node_b, $b_port) = start_node('receiver_b');
my ($node_a) = start_node(
	'transmitter_a', q{
setstream.outbound_allowed_networks = '127.0.0.0/8'
setstream.max_backoff = '2s'
});

my $a_iss = 'https://a.example.com/a2b';
my $b_iss = 'https://b.example.com/b-in';

# A's stream: issuer $a_iss, SETs addressed to $b_iss, signed ES256
$node_a->safe_psql('postgres',
	"SELECT setstream.create_stream('a2b', '$a_iss', ARRAY['$b_iss'])");
my $jwk = $node_a->safe_psql('postgres', "SELECT setstream.generate_key('a2b', 'ES256')");

# B's stream: its issuer is the audience A addresses; its peer is A
$node_b->safe_psql('postgres', qq{
SELECT setstream.create_stream('b-in', '$b_iss',
    ARRAY['https://unused.example.com/'], peer_issuer => '$a_iss')});
$node_b->safe_psql('postgres', "SELECT setstream.add_key('b-in', '$jwk'::jsonb)");
my $token = $node_b->safe_psql('postgres', "SELECT setstream.issue_token('b-in')");

$node_a->safe_psql('postgres', qq{
SELECT setstream.set_delivery('a2b', 'push',
    'http://127.0.0.1:$b_port/streams/b-in/events', 'Bearer $token')});

my $emitted = 0;

sub emit
{
	my ($n) = @_;
	my $from = $emitted + 1;
	$emitted += $n;
	$node_a->safe_psql('postgres', qq{
SELECT setstream.emit('a2b', '@{[EVENT_TYPE]}', '{}'::jsonb,
    jsonb_build_object('format', 'email', 'email', 'u' || i || '\@example.com'))
  FROM generate_series($from, $emitted) AS i});
}

sub a_val { my ($rc, $out) = try_psql($node_a, $_[0]); return $rc == 0 ? $out : undef; }
sub b_val { my ($rc, $out) = try_psql($node_b, $_[0]); return $rc == 0 ? $out : undef; }

sub acked
{
	return a_val(
		"SELECT count(*) FROM setstream.outbox WHERE stream = 'a2b' AND state = 'acked'");
}

# Every SET emitted so far is acked on A and stored once on B, the same
# bytes A sent (A's token and jti per row against B's)
sub check_exactly_once
{
	my ($what) = @_;
	my $all_acked = wait_until(90, sub { (acked() // -1) == $emitted });
	ok($all_acked, "$what: all $emitted SETs acked on A")
	  or diag('acked: ' . (acked() // 'n/a'));
	is(b_val("SELECT count(*) FROM setstream.events WHERE stream = 'b-in'"),
		$emitted, "$what: B stored $emitted SETs");
	is(b_val("SELECT count(DISTINCT jti) FROM setstream.events WHERE stream = 'b-in'"),
		$emitted, "$what: each jti once on B");
	my $sent = a_val(
		"SELECT md5(string_agg(jti || ':' || token, ',' ORDER BY jti)) FROM setstream.outbox WHERE stream = 'a2b'");
	my $got = b_val(
		"SELECT md5(string_agg(jti || ':' || token, ',' ORDER BY jti)) FROM setstream.events WHERE stream = 'b-in'");
	is($got, $sent, "$what: B holds byte for byte the tokens A sent");
}

# 1. Plain delivery
emit(300);
check_exactly_once('push');
is(a_val("SELECT state FROM setstream.deliveries WHERE stream = 'a2b'"),
	'active', 'delivery stays active');

# 2. The receiver down for a while: A retries with backoff, does not give
# up (no suspension: a refused connection is a transport error), and
# resumes by itself once B is back
$node_b->stop('fast');
emit(100);
ok( wait_until(
		20,
		sub {
			(a_val(
					"SELECT count(*) FROM setstream.outbox WHERE stream = 'a2b' AND state <> 'acked' AND attempts > 0"
				) // 0) > 0;
		}),
	'A tried while B was down');
sleep 3;    # more than one backoff period (max_backoff = 2s)
is(acked(), 300, 'nothing acked while B is down');
is(a_val("SELECT state FROM setstream.deliveries WHERE stream = 'a2b'"),
	'backoff', 'a receiver that is down puts the delivery in backoff, not suspended');
$node_b->start;
check_exactly_once('B back after being down');
ok( wait_until(
		10,
		sub {
			(a_val("SELECT state FROM setstream.deliveries WHERE stream = 'a2b'")
				  // '') eq 'active';
		}),
	'the delivery is active again');

# 3. An immediate restart of A while pushes are in flight (crash
# recovery: the outbox is what was committed; answered pushes whose ack
# was not committed are sent again and B stores them once)
my $before = $emitted;
emit(3000);
wait_until(10, sub { (acked() // 0) > $before });
my $at_stop = acked() // -1;
$node_a->stop('immediate');
ok($at_stop > $before && $at_stop < $emitted,
	"A stopped mid-flight ($at_stop of $emitted acked)");
$node_a->start;
check_exactly_once('A restarted immediately mid-flight');

# 4. An immediate restart of B while pushes are in flight: nothing it
# answered 202 is lost (B stored it before answering), what it did not
# answer is sent again
$before = $emitted;
emit(3000);
wait_until(10, sub { (acked() // 0) > $before });
$at_stop = acked() // -1;
$node_b->stop('immediate');
ok($at_stop > $before && $at_stop < $emitted,
	"B stopped mid-flight ($at_stop of $emitted acked)");
$node_b->start;
check_exactly_once('B restarted immediately mid-flight');

$node_a->stop;
$node_b->stop;
done_testing();
