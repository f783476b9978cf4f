
# Copyright (c) setstream contributors
#
# 003_create_extension_later.pl — the listener is configured (preloaded)
# before CREATE EXTENSION setstream has run in setstream.database.
#
#   * the supervisor waits for the listener's role (setstream_worker) and
#     refuses one without BYPASSRLS;
#   * the worker logs that it waits for CREATE EXTENSION, and does not
#     crash-loop: its pid stays the same, and the log shows no FATAL and no
#     exited worker;
#   * until then its port is closed (or answers 503);
#   * after CREATE EXTENSION, GET /jwks.json answers 200 within a few
#     seconds, served by the same process;
#   * DROP EXTENSION under a running listener: requests get 503 (not a
#     crash), and after CREATE EXTENSION again the listener serves the new
#     tables (push and poll work), still in the same process.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use MIME::Base64 qw(encode_base64url);
use Time::HiRes qw(time usleep);

delete @ENV{qw(http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY)};

sub wait_until
{
	my ($seconds, $code) = @_;
	my $deadline = time + $seconds;
	while (1)
	{
		my $v = $code->();
		return $v if $v;
		return $v if time >= $deadline;
		usleep(100_000);
	}
}

sub listener_pids
{
	my ($node) = @_;
	my $out = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'setstream listener' ORDER BY pid"
	);
	return grep { /^\d+$/ } split /\n/, $out;
}

my $node = PostgreSQL::Test::Cluster->new('later');
$node->init;
my $http_port = PostgreSQL::Test::Cluster::get_free_port();
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'setstream'
setstream.port = $http_port
setstream.listen_addresses = '127.0.0.1'
});
$node->start;
my $base = "http://127.0.0.1:$http_port";
my $http = HTTP::Tiny->new(timeout => 10);

# ------------------------------------------------------------ the role

# On a new cluster the listener's role (setstream.role, setstream_worker)
# does not exist yet: the supervisor waits for it, says so once, and starts
# no listener.  An operator may create it ahead of CREATE EXTENSION (which
# gives it BYPASSRLS and its grants); until it has BYPASSRLS the supervisor
# refuses it.
ok( wait_until(
		10,
		sub {
			slurp_file($node->logfile) =~
			  /setstream listener waits for role "setstream_worker" \(setstream.role\) to exist/;
		}),
	'the supervisor logs that it waits for the role');
is(scalar(listener_pids($node)), 0, 'no listener runs without its role');
$node->safe_psql('postgres', 'CREATE ROLE setstream_worker LOGIN');
ok( wait_until(
		10,
		sub {
			slurp_file($node->logfile) =~
			  /role "setstream_worker" \(setstream.role\) does not have BYPASSRLS/;
		}),
	'a role without BYPASSRLS is refused, with the reason');
$node->safe_psql('postgres', 'ALTER ROLE setstream_worker BYPASSRLS');

# ------------------------------------------------------------ waiting

is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_extension WHERE extname = 'setstream'"),
	'0', 'the extension does not exist yet');

ok( wait_until(
		10,
		sub {
			slurp_file($node->logfile) =~
			  /setstream listener waits for CREATE EXTENSION setstream in database "postgres"/;
		}),
	'the worker logs that it waits for CREATE EXTENSION');

my @pids;
ok(wait_until(10, sub { @pids = listener_pids($node); @pids == 1 }),
	'the waiting worker is in pg_stat_activity');
my $pid = $pids[0];

my $r = $http->request('GET', "$base/jwks.json");
ok($r->{status} == 599 || $r->{status} == 503,
	"before CREATE EXTENSION the port is closed or answers 503 (got $r->{status})");

# no crash loop: the same process waits for 5 s
usleep(5_000_000);
is_deeply([ listener_pids($node) ], [$pid],
	'the waiting worker keeps its pid over 5 s');
my $log = slurp_file($node->logfile);
my @fatal = $log =~ /^(.*FATAL.*)$/mg;
is_deeply(\@fatal, [], 'no FATAL in the server log while waiting');
unlike($log, qr/background worker "setstream listener[^"]*" \(PID \d+\) exited/,
	'no listener exited while waiting');
# each worker (the listener, the sender) says it once
my @waits = $log =~ /(setstream listener waits for CREATE EXTENSION)/g;
is(scalar(@waits), 1, 'the wait is logged once, not once a try');
my @sender_waits = $log =~ /(setstream sender waits for CREATE EXTENSION)/g;
ok(scalar(@sender_waits) <= 1, 'the sender says it at most once too');

$r = $http->request('GET', "$base/jwks.json");
ok($r->{status} == 599 || $r->{status} == 503,
	"still closed or 503 after 5 s (got $r->{status})");

# ------------------------------------------------------------ CREATE EXTENSION

$node->safe_psql('postgres', 'CREATE EXTENSION setstream');
my $t0 = time;
ok( wait_until(
		8,
		sub {
			slurp_file($node->logfile) =~
			  /setstream listener 0 serving 127\.0\.0\.1 on port $http_port/;
		}),
	'after CREATE EXTENSION the worker logs that it serves the port');
my $took = time - $t0;
note(sprintf('the listener opened its port after %.1f s', $took));
cmp_ok($took, '<=', 5.5, 'within about 5 s');

# the very first request the worker sees is served normally
$r = $http->request('GET', "$base/jwks.json");
is($r->{status}, 200, 'the first GET /jwks.json after CREATE EXTENSION answers 200')
  or diag($r->{content});
ok(wait_until(5, sub { $http->request('GET', "$base/jwks.json")->{status} == 200 }),
	'GET /jwks.json answers 200');
is_deeply([ listener_pids($node) ], [$pid],
	'the same worker process serves (no restart was needed)');

# ------------------------------------------------------------ DROP / CREATE again

$node->safe_psql('postgres', 'DROP EXTENSION setstream');
$r = $http->request('GET', "$base/jwks.json");
is($r->{status}, 503, 'after DROP EXTENSION the listener answers 503')
  or diag($r->{content});
is_deeply([ listener_pids($node) ], [$pid],
	'DROP EXTENSION does not kill the worker');

$node->safe_psql('postgres', 'CREATE EXTENSION setstream');
$node->safe_psql('postgres', q{
SELECT setstream.create_stream('again', 'https://db.example.com/again',
    ARRAY['https://receiver.example.com/again'],
    peer_issuer => 'https://idp.example.com/again', allow_unsigned => true)});
my $token = $node->safe_psql('postgres', "SELECT setstream.issue_token('again')");

$r = $http->request('GET', "$base/jwks.json");
is($r->{status}, 200, 'after CREATE EXTENSION again, GET /jwks.json answers 200')
  or diag($r->{content});

my $claims =
  '{"iss":"https://idp.example.com/again","aud":"https://db.example.com/again",'
  . '"iat":' . int(time) . ',"jti":"again-1",'
  . '"sub_id":{"format":"email","email":"alice@example.com"},'
  . '"events":{"https://schemas.openid.net/secevent/caep/event-type/session-revoked":{}}}';
my $set = encode_base64url('{"alg":"none","typ":"secevent+jwt"}') . '.'
  . encode_base64url($claims) . '.';
$r = $http->request('POST', "$base/streams/again/events",
	{
		headers => {
			'Content-Type' => 'application/secevent+jwt',
			'Authorization' => "Bearer $token"
		},
		content => $set
	});
is($r->{status}, 202, 'a push into the recreated extension answers 202')
  or diag($r->{content});
is($node->safe_psql('postgres',
		"SELECT count(*) FROM setstream.events WHERE stream = 'again' AND jti = 'again-1'"),
	'1', 'and the SET is stored');

my $jwk = $node->safe_psql('postgres', "SELECT setstream.generate_key('again')");
my ($kid) = $jwk =~ /"kid"\s*:\s*"([^"]+)"/;
ok(defined $kid, 'generate_key returns a JWK with a kid');
$r = $http->request('GET', "$base/jwks.json");
is($r->{status}, 200, 'GET /jwks.json answers 200');
like($r->{content}, qr/\Q$kid\E/, 'and serves the new signing key')
  or diag($r->{content});

$node->safe_psql('postgres',
	"SELECT setstream.emit('again', 'https://schemas.openid.net/secevent/caep/event-type/session-revoked', '{}', '{\"format\":\"opaque\",\"id\":\"x\"}')"
);
$r = $http->request('POST', "$base/streams/again/poll",
	{
		headers => {
			'Content-Type' => 'application/json',
			'Authorization' => "Bearer $token"
		},
		content => '{"returnImmediately":true}'
	});
is($r->{status}, 200, 'a poll on the recreated extension answers 200')
  or diag($r->{content});
like($r->{content}, qr/"sets"\s*:\s*\{\s*"/, 'and delivers the emitted SET');

is_deeply([ listener_pids($node) ], [$pid],
	'the worker survived DROP and CREATE EXTENSION');
unlike(slurp_file($node->logfile), qr/terminated by signal|exited with exit code/,
	'no worker exited');

$node->stop;
done_testing();
