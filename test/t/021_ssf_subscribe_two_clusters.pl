
# Copyright (c) setstream contributors
#
# setstream as an SSF receiver of setstream as an SSF transmitter, across
# two clusters (issue 13): B subscribes (subscribe()) to A's transmitter,
# once with push and once with poll delivery; the SETs emitted on the
# streams A made for B arrive on B, verified with the keys of A's
# jwks_uri; B reads and changes its streams at A, asks for a verification
# (it arrives with B's state), pauses and enables its streams at A (the
# CAEP events A emits meanwhile are held and then arrive), and records
# the pause A announces itself (stream-updated); unsubscribe() deletes A's
# streams.  The commands are those of the README's walk-through ("SSF
# receiver").

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

# B reads its streams at A and asks for credential-change too
my $cc = 'https://schemas.openid.net/secevent/caep/event-type/credential-change';
my $sr = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked';
for my $d ('push', 'poll')
{
	like(b_val("SELECT setstream.subscription_config('b-$d') ->> 'stream_id'"),
		qr/^\Q$remote{$d}\E$/, "$d: B reads its stream's configuration at A");
	b_val(qq{SELECT setstream.update_subscription('b-$d',
	    jsonb_build_object('events_requested', jsonb_build_array('$sr', '$cc')))});
	is(a_val("SELECT array_to_string(events_requested, ' ') FROM setstream.streams WHERE name = '$remote{$d}'"),
		"$sr $cc", "$d: B's update changed the stream at A");
}

# verification: B asks, A sends a verification SET with B's state
for my $d ('push', 'poll')
{
	b_val("SELECT setstream.request_verification('b-$d')");
	ok( wait_until(
			30,
			sub {
				b_val(
					"SELECT verified_at IS NOT NULL FROM setstream.subscriptions WHERE stream = 'b-$d'"
				) eq 't';
			}),
		"$d: the verification B asked for arrived with its state");
}

# pause and resume: B pauses its stream at A; A holds the CAEP events it
# emits meanwhile and releases them, in order, once B enables it again
my $caep = q{jsonb_build_object('credential_type', 'fido2-roaming', 'change_type', 'create',
    'initiating_entity', 'user', 'reason_admin', jsonb_build_object('en', 'self-enrollment'),
    'event_timestamp', 1615304991 + i)};
for my $d ('push', 'poll')
{
	is(b_val("SELECT setstream.set_subscription_status('b-$d', 'paused', 'maintenance') ->> 'status'"),
		'paused', "$d: B paused its stream at A");
	is(a_val("SELECT status FROM setstream.streams WHERE name = '$remote{$d}'"),
		'paused', "$d: A's stream is paused");
	a_val(qq{SELECT setstream.emit('$remote{$d}', '$cc', $caep,
	    jsonb_build_object('format', 'email', 'email', 'u' || i || '\@example.com'))
	  FROM generate_series(1, 5) AS i});
}
sleep 3;
for my $d ('push', 'poll')
{
	is(b_val("SELECT count(*) FROM setstream.events WHERE stream = 'b-$d' AND '$cc' = ANY (event_types)"),
		0, "$d: nothing of a paused stream reached B");
	is(b_val("SELECT setstream.set_subscription_status('b-$d', 'enabled') ->> 'status'"),
		'enabled', "$d: B enabled its stream at A again");
}
for my $d ('push', 'poll')
{
	ok( wait_until(
			60,
			sub {
				b_val(
					"SELECT count(*) FROM setstream.events WHERE stream = 'b-$d' AND '$cc' = ANY (event_types)"
				) == 5;
			}),
		"$d: the 5 CAEP events held at A arrived on B");
	is( b_val(
			"SELECT string_agg((events -> '$cc' ->> 'event_timestamp'), ',' ORDER BY events -> '$cc' ->> 'event_timestamp') FROM setstream.events WHERE stream = 'b-$d' AND '$cc' = ANY (event_types)"
		),
		'1615304992,1615304993,1615304994,1615304995,1615304996',
		"$d: each with its CAEP claims");
	is( b_val(
			"SELECT count(DISTINCT subject) FROM setstream.events WHERE stream = 'b-$d' AND '$cc' = ANY (event_types)"
		),
		5, "$d: about five subjects");
}

# A pausing the stream itself: its stream-updated SET reaches B, which
# records the status A announced
for my $d ('push', 'poll')
{
	a_val("SELECT setstream.set_stream_status('$remote{$d}', 'paused')");
	ok( wait_until(
			60,
			sub {
				b_val(
					"SELECT transmitter_status || ': ' || transmitter_status_reason FROM setstream.subscriptions WHERE stream = 'b-$d'"
				) eq "paused: changed by the transmitter's administrator";
			}),
		"$d: B recorded the pause A announced (stream-updated)");
	a_val("SELECT setstream.set_stream_status('$remote{$d}', 'enabled')");
}

# unsubscribe deletes the streams at A
b_val("SELECT setstream.unsubscribe('b-push'), setstream.unsubscribe('b-poll')");
is(a_val("SELECT count(*) FROM setstream.streams WHERE receiver = 'rp-b'"),
	0, 'unsubscribe deleted both streams at A');
is(b_val("SELECT count(*) FROM setstream.subscriptions"), 0, 'no subscription left on B');

done_testing();
