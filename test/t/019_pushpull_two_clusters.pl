
# Copyright (c) setstream contributors
#
# setstream to setstream by pushpull over HTTP across two clusters (issue
# 17): cluster A initiates the pushpull HTTP binding (set_delivery ...
# 'pushpull') to the listener of cluster B, a pushpull responder.  SETs
# travel both ways on that one exchange at once: those emitted on A in
# A's requests, those emitted on B in B's responses.  Each side verifies
# the other's SETs with its public key and stores them; A's acks of B's
# SETs ride A's next request, after A's commit.  Then the faults: B down
# for a while (A backs off and resumes by itself), and an immediate restart
# of A mid-flight (its acks in memory are lost: B hands those SETs out
# again after its redelivery interval, A finds them stored).  After each,
# every SET emitted on either side is stored exactly once on the other,
# byte for byte, and both outboxes are acked: nothing lost, nothing stored
# twice.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use FaultUtil;
use PostgreSQL::Test::Utils;
use Test::More;

my ($node_a) = start_node(
	'initiator_a', q{
setstream.outbound_allowed_networks = '127.0.0.0/8'
setstream.max_backoff = '2s'
setstream.pushpull_poll_interval = '200ms'
setstream.redelivery_interval = '2s'
});
my ($node_b, $b_port) = start_node(
	'responder_b', q{
setstream.redelivery_interval = '2s'
});

my $a_iss = 'https://a.example.com/a-pp';
my $b_iss = 'https://b.example.com/b-pp';

# each stream addresses the other and verifies the other's key
$node_a->safe_psql('postgres',
	"SELECT setstream.create_stream('a-pp', '$a_iss', ARRAY['$b_iss'], peer_issuer => '$b_iss')"
);
$node_b->safe_psql('postgres',
	"SELECT setstream.create_stream('b-pp', '$b_iss', ARRAY['$a_iss'], peer_issuer => '$a_iss')"
);
my $a_jwk = $node_a->safe_psql('postgres', "SELECT setstream.generate_key('a-pp', 'ES256')");
my $b_jwk = $node_b->safe_psql('postgres', "SELECT setstream.generate_key('b-pp', 'ES256')");
$node_b->safe_psql('postgres', "SELECT setstream.add_key('b-pp', '$a_jwk'::jsonb)");
$node_a->safe_psql('postgres', "SELECT setstream.add_key('a-pp', '$b_jwk'::jsonb)");
my $token = $node_b->safe_psql('postgres', "SELECT setstream.issue_token('b-pp')");
$node_a->safe_psql('postgres', qq{
SELECT setstream.set_delivery('a-pp', 'pushpull',
    'http://127.0.0.1:$b_port/streams/b-pp/pushpull', 'Bearer $token')});

my %emitted = (a => 0, b => 0);
my %node = (a => $node_a, b => $node_b);
my %other = (a => 'b', b => 'a');

sub emit
{
	my ($side, $n) = @_;
	my $from = $emitted{$side} + 1;
	$emitted{$side} += $n;
	$node{$side}->safe_psql('postgres', qq{
SELECT setstream.emit('$side-pp', '@{[EVENT_TYPE]}', '{}'::jsonb,
    jsonb_build_object('format', 'email', 'email', '$side' || i || '\@example.com'))
  FROM generate_series($from, $emitted{$side}) AS i});
}

sub val
{
	my ($side, $sql) = @_;
	my ($rc, $out) = try_psql($node{$side}, $sql);
	return $rc == 0 ? $out : undef;
}

sub acked
{
	my ($side) = @_;
	return val($side,
		"SELECT count(*) FROM setstream.outbox WHERE stream = '$side-pp' AND state = 'acked'");
}

sub stored
{
	my ($side) = @_;
	return val($side, "SELECT count(*) FROM setstream.events WHERE stream = '$side-pp'");
}

# every SET emitted on FROM is stored once on the other side and acked
sub check_exactly_once
{
	my ($what, $from) = @_;
	my $to = $other{$from};
	my $n = $emitted{$from};
	my $all_acked = wait_until(90, sub { (acked($from) // -1) == $n });
	ok($all_acked, "$what: all $n SETs of $from acked")
	  or diag('acked: ' . (acked($from) // 'n/a') . ', stored: ' . (stored($to) // 'n/a'));
	is(stored($to), $n, "$what: $to stored $n SETs");
	is(val($to, "SELECT count(DISTINCT jti) FROM setstream.events WHERE stream = '$to-pp'"),
		$n, "$what: each jti once on $to");
	my $sent = val($from,
		"SELECT md5(string_agg(jti || ':' || token, ',' ORDER BY jti)) FROM setstream.outbox WHERE stream = '$from-pp'"
	);
	my $got = val($to,
		"SELECT md5(string_agg(jti || ':' || token, ',' ORDER BY jti)) FROM setstream.events WHERE stream = '$to-pp'"
	);
	is($got, $sent, "$what: $to holds byte for byte the tokens $from sent");
}

sub delivery_state
{
	return val('a', "SELECT state FROM setstream.deliveries WHERE stream = 'a-pp'") // '';
}

# 1. Both directions at once
emit('b', 200);
emit('a', 300);
emit('b', 200);
check_exactly_once('both ways', 'a');
check_exactly_once('both ways', 'b');
is(delivery_state(), 'active', 'the delivery stays active');

# 2. The responder down for a while: A backs off, does not give up, and
# resumes by itself once B is back
$node_b->stop('fast');
emit('a', 50);
ok(wait_until(20, sub { delivery_state() eq 'backoff' }),
	'a responder that is down puts the delivery in backoff');
$node_b->start;
emit('b', 50);
check_exactly_once('B back after being down', 'a');
check_exactly_once('B back after being down', 'b');
ok(wait_until(10, sub { delivery_state() eq 'active' }), 'the delivery is active again');

# 3. An immediate restart of A mid-flight, both ways.  B's SETs are
# emitted last and outnumber what travels in the moments between the
# first 100 stored and the stop (once, 2000 emitted before A's 2000 had
# all been acked by then, and the restart was no longer mid-flight)
my $before = $emitted{b};
emit('a', 2000);
emit('b', 8000);
wait_until(20, sub { (stored('a') // 0) > $before + 100 });
$node_a->stop('immediate');
my $at_stop = val('b', "SELECT count(*) FROM setstream.outbox WHERE stream = 'b-pp' AND state = 'acked'") // -1;
ok($at_stop < $emitted{b}, "A stopped mid-flight ($at_stop of $emitted{b} of B's SETs acked)");
$node_a->start;
check_exactly_once('A restarted immediately mid-flight', 'a');
check_exactly_once('A restarted immediately mid-flight', 'b');

$node_a->stop;
$node_b->stop;
done_testing();
