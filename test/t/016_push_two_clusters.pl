
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
use TwoClusters;
use PostgreSQL::Test::Utils;
use Test::More;

my ($node_b, $b_port) = start_node('receiver_b');
my ($node_a) = start_node(
	'transmitter_a', q{
setstream.outbound_allowed_networks = '127.0.0.0/8'
setstream.max_backoff = '2s'
});

two_clusters($node_a, $node_b, 'a2b');
pair_streams('https://a.example.com/a2b', 'https://b.example.com/b-in');
my $token = $node_b->safe_psql('postgres', "SELECT setstream.issue_token('b-in')");

$node_a->safe_psql('postgres', qq{
SELECT setstream.set_delivery('a2b', 'push',
    'http://127.0.0.1:$b_port/streams/b-in/events', 'Bearer $token')});

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
