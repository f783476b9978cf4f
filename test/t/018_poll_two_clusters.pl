
# Copyright (c) setstream contributors
#
# setstream to setstream by poll across two clusters (issue 17): cluster B
# polls (RFC 8936, set_source) the listener of cluster A for the SETs
# emitted on one of A's streams, verifies each with A's public key and
# stores it; its acks ride its next poll, after its commit.  Then the
# faults: A down for a while (B backs off and resumes by itself), an
# immediate restart of B while its acks are in memory only (A sends those
# SETs again, B finds them stored), and one of A.  After each, every SET
# emitted on A is stored exactly once on B, byte for byte, and A's outbox
# rows are acked: nothing lost, nothing stored twice.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use FaultUtil;
use TwoClusters;
use PostgreSQL::Test::Utils;
use Test::More;

my ($node_a, $a_port) = start_node(
	'transmitter_a', q{
setstream.redelivery_interval = '2s'
});
my ($node_b) = start_node(
	'poller_b', q{
setstream.outbound_allowed_networks = '127.0.0.0/8'
setstream.max_backoff = '2s'
});

# A's stream is delivered by poll (the default) to whoever holds its token
two_clusters($node_a, $node_b, 'a-out');
pair_streams('https://a.example.com/a-out', 'https://b.example.com/b-in');
my $token = $node_a->safe_psql('postgres', "SELECT setstream.issue_token('a-out')");
$node_b->safe_psql('postgres', qq{
SELECT setstream.set_source('b-in', 'poll',
    'http://127.0.0.1:$a_port/streams/a-out/poll', 'Bearer $token')});

# 1. Plain polling
emit(300);
check_exactly_once('poll');
is(b_val("SELECT state FROM setstream.sources WHERE stream = 'b-in'"),
	'active', 'the source stays active');

# 2. The transmitter down for a while: B backs off, does not give up, and
# resumes by itself once A is back
$node_a->stop('fast');
ok( wait_until(
		20,
		sub {
			(b_val("SELECT state FROM setstream.sources WHERE stream = 'b-in'") // '')
			  eq 'backoff';
		}),
	'a transmitter that is down puts the source in backoff');
$node_a->start;
emit(100);
check_exactly_once('A back after being down');
ok( wait_until(
		10,
		sub {
			(b_val("SELECT state FROM setstream.sources WHERE stream = 'b-in'") // '')
			  eq 'active';
		}),
	'the source is active again');

# 3. An immediate restart of B mid-flight: the acks it kept in memory are
# lost; A sends those SETs again and B acknowledges them as stored
my $before = $emitted;
emit(3000);
wait_until(20, sub { (stored() // 0) > $before + 100 });
$node_b->stop('immediate');
my $at_stop = acked() // -1;
ok($at_stop < $emitted, "B stopped mid-flight ($at_stop of $emitted acked)");
$node_b->start;
check_exactly_once('B restarted immediately mid-flight');
ok( (a_val("SELECT count(*) FROM setstream.outbox WHERE stream = 'a-out' AND attempts > 1")
		  // 0) > 0,
	'some SETs were sent twice (their acks died with B) and stored once');

# 4. An immediate restart of A mid-flight
$before = $emitted;
emit(3000);
wait_until(20, sub { (acked() // 0) > $before + 100 });
$node_a->stop('immediate');
$node_a->start;
check_exactly_once('A restarted immediately mid-flight');

$node_a->stop;
$node_b->stop;
done_testing();
