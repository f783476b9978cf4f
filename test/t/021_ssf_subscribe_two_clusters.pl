
# Copyright (c) setstream contributors
#
# setstream as an SSF receiver of setstream as an SSF transmitter, across
# two clusters (issue 13): B subscribes (subscribe()) to A's transmitter,
# once with push and once with poll delivery; the SETs emitted on the
# streams A made for B arrive on B, verified with the keys of A's
# jwks_uri; unsubscribe() deletes A's streams.  The commands are those of
# the README's walk-through ("SSF receiver").

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use FaultUtil;
use PostgreSQL::Test::Utils;
use Test::More;

my $loopback = q{
setstream.outbound_allowed_networks = '127.0.0.0/8'
};
my ($node_a, $a_port) = start_node('ssf_transmitter_a', $loopback);
my ($node_b, $b_port) = start_node('ssf_receiver_b', $loopback);
my $a_url = "http://127.0.0.1:$a_port";
my $b_url = "http://127.0.0.1:$b_port";
$node_a->append_conf('postgresql.conf',
	"setstream.public_url = '$a_url/'\nsetstream.issuer = '$a_url'\n");
$node_a->reload;
$node_b->append_conf('postgresql.conf', "setstream.public_url = '$b_url/'\n");
$node_b->reload;

sub a_val { return $node_a->safe_psql('postgres', $_[0]); }
sub b_val { return $node_b->safe_psql('postgres', $_[0]); }

# A: a receiver (a client of A's management API) and its token
a_val("SELECT setstream.create_receiver('rp-b', ARRAY['https://b.example.com/in'])");
my $token = a_val("SELECT setstream.issue_receiver_token('rp-b')");
like($token, qr/^ssr_/, 'a receiver token on A');

# B: subscribe twice, push and poll
for my $d ('push', 'poll')
{
	b_val(qq{SELECT setstream.subscribe('b-$d', '$a_url', '$d',
	    ARRAY['https://schemas.openid.net/secevent/caep/event-type/session-revoked'],
	    jsonb_build_object('bearer', '$token'))});
}
is(a_val("SELECT count(*) FROM setstream.streams WHERE receiver = 'rp-b'"),
	2, 'A made two streams for rp-b');
my %remote;
for my $d ('push', 'poll')
{
	$remote{$d} = b_val(
		"SELECT remote_stream_id FROM setstream.subscriptions WHERE stream = 'b-$d'");
	is(a_val("SELECT receiver FROM setstream.streams WHERE name = '$remote{$d}'"),
		'rp-b', "$d: the remote stream is rp-b's");
	is(b_val("SELECT issuer || ' ' || peer_issuer FROM setstream.streams WHERE name = 'b-$d'"),
		"https://b.example.com/in $a_url", "$d: B accepts iss A, aud rp-b's");
}
is(a_val("SELECT endpoint_url FROM setstream.deliveries WHERE stream = '$remote{push}'"),
	"$b_url/streams/b-push/events", 'push: A pushes to B');
is(b_val("SELECT endpoint_url FROM setstream.sources WHERE stream = 'b-poll'"),
	"$a_url/streams/$remote{poll}/poll", 'poll: B polls A');

# SETs emitted on A arrive on B, once each
for my $d ('push', 'poll')
{
	a_val(qq{SELECT setstream.emit('$remote{$d}',
	    'https://schemas.openid.net/secevent/caep/event-type/session-revoked', '{}'::jsonb,
	    jsonb_build_object('format', 'email', 'email', 'u' || i || '\@example.com'))
	  FROM generate_series(1, 50) AS i});
}
for my $d ('push', 'poll')
{
	ok( wait_until(
			60,
			sub {
				# (A also sends its own verification SET after the create)
				b_val(
					"SELECT count(*) FROM setstream.events WHERE stream = 'b-$d' AND 'https://schemas.openid.net/secevent/caep/event-type/session-revoked' = ANY (event_types)"
				) == 50;
			}),
		"$d: the 50 SETs arrived on B");
	is( b_val(
			"SELECT md5(string_agg(token, ',' ORDER BY jti)) FROM setstream.events WHERE stream = 'b-$d'"
		),
		a_val(
			"SELECT md5(string_agg(token, ',' ORDER BY jti)) FROM setstream.outbox WHERE stream = '$remote{$d}'"
		),
		"$d: byte for byte what A signed");
}

# unsubscribe deletes the streams at A
b_val("SELECT setstream.unsubscribe('b-push'), setstream.unsubscribe('b-poll')");
is(a_val("SELECT count(*) FROM setstream.streams WHERE receiver = 'rp-b'"),
	0, 'unsubscribe deleted both streams at A');
is(b_val("SELECT count(*) FROM setstream.subscriptions"), 0, 'no subscription left on B');

done_testing();
