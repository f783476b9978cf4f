
# Copyright (c) setstream contributors
#
# TwoClusters.pm — what the setstream-to-setstream TAP tests (test/t/016
# to 018) share: cluster A transmits on its stream, cluster B receives on
# 'b-in'.  two_clusters() names the nodes and A's stream; then a_val and
# b_val read one value from a node (undef while it is down), emit(N) emits
# N SETs on A (counted in $emitted), acked and stored count A's acked
# outbox rows and B's stored SETs, pair_streams creates both streams with
# B trusting A's signing key, and check_exactly_once checks that every SET
# emitted so far is acked on A and stored once on B, byte for byte.

package TwoClusters;

use strict;
use warnings;

use Exporter 'import';
use FaultUtil;
use Test::More;

our @EXPORT = qw(
  two_clusters pair_streams a_val b_val emit acked stored check_exactly_once
  $emitted
);

our $emitted = 0;    # SETs emitted on A's stream so far
my ($node_a, $node_b, $a_stream);
my $b_stream = 'b-in';

# two_clusters(A_NODE, B_NODE, A_STREAM)
sub two_clusters
{
	($node_a, $node_b, $a_stream) = @_;
	$emitted = 0;
	return;
}

# pair_streams(A_ISS, B_ISS): A's stream (issuer A_ISS, SETs addressed to
# B_ISS, signed ES256) and B's (its issuer the audience A addresses, its
# peer A, verifying with A's public key)
sub pair_streams
{
	my ($a_iss, $b_iss) = @_;
	$node_a->safe_psql('postgres',
		"SELECT setstream.create_stream('$a_stream', '$a_iss', ARRAY['$b_iss'])");
	my $jwk = $node_a->safe_psql('postgres',
		"SELECT setstream.generate_key('$a_stream', 'ES256')");
	$node_b->safe_psql('postgres', qq{
SELECT setstream.create_stream('$b_stream', '$b_iss',
    ARRAY['https://unused.example.com/'], peer_issuer => '$a_iss')});
	$node_b->safe_psql('postgres',
		"SELECT setstream.add_key('$b_stream', '$jwk'::jsonb)");
	return;
}

sub a_val { my ($rc, $out) = try_psql($node_a, $_[0]); return $rc == 0 ? $out : undef; }
sub b_val { my ($rc, $out) = try_psql($node_b, $_[0]); return $rc == 0 ? $out : undef; }

sub emit
{
	my ($n) = @_;
	my $from = $emitted + 1;
	$emitted += $n;
	$node_a->safe_psql('postgres', qq{
SELECT setstream.emit('$a_stream', '@{[EVENT_TYPE]}', '{}'::jsonb,
    jsonb_build_object('format', 'email', 'email', 'u' || i || '\@example.com'))
  FROM generate_series($from, $emitted) AS i});
	return;
}

sub acked
{
	return a_val(
		"SELECT count(*) FROM setstream.outbox WHERE stream = '$a_stream' AND state = 'acked'"
	);
}

sub stored
{
	return b_val("SELECT count(*) FROM setstream.events WHERE stream = '$b_stream'");
}

# Every SET emitted so far is acked on A and stored once on B, the same
# bytes A sent (A's token and jti per row against B's)
sub check_exactly_once
{
	my ($what) = @_;
	my $all_acked = wait_until(90, sub { (acked() // -1) == $emitted });
	ok($all_acked, "$what: all $emitted SETs acked on A")
	  or diag('acked: ' . (acked() // 'n/a') . ', stored: ' . (stored() // 'n/a'));
	is(stored(), $emitted, "$what: B stored $emitted SETs");
	is(b_val("SELECT count(DISTINCT jti) FROM setstream.events WHERE stream = '$b_stream'"),
		$emitted, "$what: each jti once on B");
	my $sent = a_val(
		"SELECT md5(string_agg(jti || ':' || token, ',' ORDER BY jti)) FROM setstream.outbox WHERE stream = '$a_stream'"
	);
	my $got = b_val(
		"SELECT md5(string_agg(jti || ':' || token, ',' ORDER BY jti)) FROM setstream.events WHERE stream = '$b_stream'"
	);
	is($got, $sent, "$what: B holds byte for byte the tokens A sent");
	return;
}

1;
