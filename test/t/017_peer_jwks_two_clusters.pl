
# Copyright (c) setstream contributors
#
# Peer keys from a jwks_uri across two clusters (issue 17): B's stream
# takes its verification keys from A's GET /jwks.json (peer_jwks_uri), A
# pushes (RFC 8935) to B.  B verifies with the key it fetched; then A
# rotates its signing key (generate_key): the first SET signed with the new
# kid makes B refetch (answering 503 with Retry-After meanwhile, which A
# waits out), and every SET is stored once on B, with no operator step and
# nothing failed on A.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use FaultUtil;
use TwoClusters;
use PostgreSQL::Test::Utils;
use Test::More;

my ($node_a, $a_port) = start_node(
	'jwks_a', q{
setstream.outbound_allowed_networks = '127.0.0.0/8'
setstream.max_backoff = '2s'
});
my ($node_b, $b_port) = start_node(
	'jwks_b', q{
setstream.outbound_allowed_networks = '127.0.0.0/8'
});

two_clusters($node_a, $node_b, 'a2b');

my $a_iss = 'https://a.example.com/a2b';
my $b_iss = 'https://b.example.com/b-in';

$node_a->safe_psql('postgres',
	"SELECT setstream.create_stream('a2b', '$a_iss', ARRAY['$b_iss'])");
my $kid1 = $node_a->safe_psql('postgres',
	"SELECT setstream.generate_key('a2b', 'ES256') ->> 'kid'");

# B: no add_key; its keys come from A's /jwks.json
$node_b->safe_psql('postgres', qq{
SELECT setstream.create_stream('b-in', '$b_iss',
    ARRAY['https://unused.example.com/'], peer_issuer => '$a_iss');
SELECT setstream.alter_stream('b-in',
    peer_jwks_uri => 'http://127.0.0.1:$a_port/jwks.json')});
my $token = $node_b->safe_psql('postgres', "SELECT setstream.issue_token('b-in')");

ok( wait_until(
		20,
		sub {
			(b_val(
					"SELECT string_agg(kid, ',') FROM setstream.keys WHERE stream = 'b-in' AND origin = 'jwks_uri'"
				) // '') eq $kid1;
		}),
	'B fetched A\'s key from its jwks_uri');
is(b_val("SELECT failures || ' ' || keys FROM setstream.peer_jwks WHERE stream = 'b-in'"),
	'0 1', 'B records the fetch');

$node_a->safe_psql('postgres', qq{
SELECT setstream.set_delivery('a2b', 'push',
    'http://127.0.0.1:$b_port/streams/b-in/events', 'Bearer $token')});

sub check_all_stored
{
	my ($what) = @_;
	ok(wait_until(60, sub { (acked() // -1) == $emitted }),
		"$what: all $emitted SETs acked on A");
	is(b_val("SELECT count(DISTINCT jti) FROM setstream.events WHERE stream = 'b-in'"),
		$emitted, "$what: B stored each SET once");
	is(a_val("SELECT count(*) FROM setstream.outbox WHERE stream = 'a2b' AND state = 'failed'"),
		0, "$what: nothing failed on A");
	is(a_val("SELECT state FROM setstream.deliveries WHERE stream = 'a2b'"),
		'active', "$what: A's delivery is active");
}

emit(50);
check_all_stored('with the fetched key');
my $fetches = b_val("SELECT fetched_at FROM setstream.peer_jwks WHERE stream = 'b-in'");

# A rotates: a new signing key, the newest, signs what A emits from now on
my $kid2 = $node_a->safe_psql('postgres',
	"SELECT setstream.generate_key('a2b', 'ES256') ->> 'kid'");
isnt($kid2, $kid1, 'A has a new signing key');
emit(50);
check_all_stored('after A rotated its key');
is( b_val(
		"SELECT string_agg(kid, ',' ORDER BY kid) FROM setstream.keys WHERE stream = 'b-in' AND origin = 'jwks_uri'"
	),
	join(',', sort ($kid1, $kid2)),
	'B picked up the new key by itself');
isnt(b_val("SELECT fetched_at FROM setstream.peer_jwks WHERE stream = 'b-in'"),
	$fetches, 'B refetched');
# the first SETs with the new kid were answered 503 (Retry-After), never
# 400 invalid_key
my $answered_503 = b_val(
	"SELECT coalesce(sum(value), 0) FROM setstream.metrics() WHERE name = 'setstream_listener_requests_total' AND labels ->> 'status' = '503'"
);
ok($answered_503 >= 1, "B answered 503 while it refetched ($answered_503)");
is(b_val("SELECT rejected FROM setstream.stats WHERE stream = 'b-in'"),
	'{}', 'B rejected no SET');
is( b_val(
		"SELECT count(*) FROM setstream.events WHERE stream = 'b-in' AND header ->> 'kid' = '$kid2'"
	),
	50,
	'B verified the 50 SETs signed with the new key');

$node_a->stop;
$node_b->stop;
done_testing();
