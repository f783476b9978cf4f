
# Copyright (c) setstream contributors
#
# 012_no_preload.pl — setstream without shared_preload_libraries: no
# shared memory, no listener, and the SQL API still works.
#
#   * CREATE EXTENSION loads the library on first use; no listener runs;
#   * emit() signs and queues SETs, poll() hands them out;
#   * receive() verifies (with the emitting stream's public key) and
#     stores a SET on a peer stream;
#   * the per-process stream cache lives one transaction only: after
#     another session revokes the key, the next transaction of a session
#     that had the key cached rejects a SET signed with it (SE002).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('no_preload');
$node->init;
$node->start;

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'', 'setstream is not in shared_preload_libraries');
$node->safe_psql('postgres', 'CREATE EXTENSION setstream');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'setstream%'"),
	'0',
	'no setstream worker runs');

# x emits SETs whose audience is y's issuer; y accepts x's issuer and key
my $jwk = $node->safe_psql('postgres', q{
SELECT setstream.create_stream('x', 'https://x.example', ARRAY['https://y.example']);
SELECT setstream.generate_key('x');});
$jwk = (split /\n/, $jwk)[-1];
my $kid = $node->safe_psql('postgres', qq{
SELECT setstream.create_stream('y', 'https://y.example', ARRAY['https://x.example'],
                               'https://x.example');
SELECT setstream.add_key('y', '$jwk'::jsonb);});
$kid = (split /\n/, $kid)[-1];
like($kid, qr/^\S+$/, 'y has the public key of x');

my @jtis;
for my $i (1 .. 2)
{
	push @jtis, $node->safe_psql('postgres', qq{
SELECT setstream.emit('x', 'https://schemas.openid.net/secevent/caep/event-type/session-revoked',
                      '{"n": $i}', '{"format":"opaque","id":"u$i"}')});
}
like($jtis[$_], qr/^[0-9a-f-]{36}$/, "emit $_ returns a jti") for 0 .. 1;
my $polled = $node->safe_psql('postgres',
	q{SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(
	      setstream.poll('x', '{"maxEvents": 10}')->'sets') k});
is($polled, join(',', sort @jtis), 'poll hands out both SETs');
my @tokens = map {
	$node->safe_psql('postgres',
		"SELECT token FROM setstream.outbox WHERE stream = 'x' AND jti = '$_'")
} @jtis;

$node->safe_psql('postgres', q{
CREATE FUNCTION public.try_receive(s text, t text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM setstream.receive(s, t);
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$});

# one session keeps its backend (and its cache) across transactions
my $bg = $node->background_psql('postgres');
is($bg->query_safe("SELECT public.try_receive('y', '$tokens[0]')"),
	'ok', 'receive verifies and stores the first SET (the key is now cached)');
$node->safe_psql('postgres', "SELECT setstream.revoke_key('y', '$kid')");
is($bg->query_safe("SELECT public.try_receive('y', '$tokens[1]')"),
	'SE002',
	'the next transaction of that session sees the revoked key (the cache lived one transaction)');
$bg->quit;

is( $node->safe_psql(
		'postgres', "SELECT string_agg(jti, ',') FROM setstream.events WHERE stream = 'y'"),
	$jtis[0],
	'only the SET received before the revocation is stored');

$node->stop;
done_testing();
