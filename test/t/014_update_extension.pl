
# Copyright (c) setstream contributors
#
# 014_update_extension.pl — a running listener survives ALTER EXTENSION
# setstream UPDATE in its database (issue 15).
#
# The database has setstream 0.2.0 (the last release) under the current
# binaries; the listener serves it.  Sessions are open across the update:
# a keep-alive connection, a parked long poll and a pushpull WebSocket.
# After ALTER EXTENSION setstream UPDATE:
#   * the same listener process (no restart) answers push (202) and poll,
#     on the kept connection and on new ones;
#   * the parked long poll is answered by the commit of an emit made after
#     the update, and the WebSocket session gets that emit's SET pushed;
#   * what the update added works (setstream.metrics(), GET /metrics);
#   * the log shows no failed request, no FATAL, no exited worker.

use strict;
use warnings;

use File::Spec;
use FindBin;
use lib $FindBin::RealBin;

use FaultUtil;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('update');
$node->init;
my $http_port = PostgreSQL::Test::Cluster::get_free_port();
# absolute: the framework's data directory path may be relative (17)
my $token_file = File::Spec->rel2abs($node->data_dir . '/metrics_token');
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'setstream'
setstream.port = $http_port
setstream.listen_addresses = '127.0.0.1'
setstream.metrics_token_file = '$token_file'
});
PostgreSQL::Test::Utils::append_to_file($token_file, "metrics-secret\n");
chmod 0600, $token_file;
$node->start;

$node->safe_psql('postgres', "CREATE EXTENSION setstream VERSION '0.2.0'");
is($node->safe_psql('postgres',
		"SELECT extversion FROM pg_extension WHERE extname = 'setstream'"),
	'0.2.0', 'the database has setstream 0.2.0');
ok(wait_until(30, sub { scalar(listener_pids($node)) >= 1 }),
	'the listener starts on 0.2.0');
my @pids_before = listener_pids($node);

my $token = make_stream($node, 'up', 1);
# the WebSocket session's own stream: it would compete with the long poll
# of stream up for the same SETs
my $ws_token = make_stream($node, 'upws', 1);
my $http = http_client();
my $base = "http://127.0.0.1:$http_port";

sub push_set
{
	my ($client, $jti) = @_;
	return $client->request(
		'POST',
		"$base/streams/up/events",
		{
			headers => {
				Authorization => "Bearer $token",
				'Content-Type' => 'application/secevent+jwt'
			},
			content => unsigned_set('up', $jti)
		});
}

sub poll_now
{
	my ($client) = @_;
	return $client->request(
		'POST',
		"$base/streams/up/poll",
		{
			headers => {
				Authorization => "Bearer $token",
				'Content-Type' => 'application/json'
			},
			content => '{"returnImmediately": true}'
		});
}

sub emit
{
	my ($stream) = @_;
	$stream //= 'up';
	return $node->safe_psql('postgres',
		"SELECT setstream.emit('$stream', '@{[EVENT_TYPE]}', '{}'::jsonb)");
}

# read from a raw socket until PATTERN matches or SECONDS pass
sub read_until
{
	my ($s, $pattern, $seconds) = @_;
	my $buf = '';
	my $deadline = time + $seconds;
	while (time < $deadline && $buf !~ $pattern)
	{
		my $rin = '';
		vec($rin, fileno($s), 1) = 1;
		next unless select(my $rout = $rin, undef, undef, 0.1);
		last unless sysread($s, $buf, 65536, length $buf);
	}
	return $buf;
}

# ------------------------------------------------------------ on 0.2.0

is(push_set($http, 'before-1')->{status}, 202, 'push on 0.2.0: 202');
my $e0 = emit();
my $r = poll_now($http);
is($r->{status}, 200, 'poll on 0.2.0: 200');
like($r->{content}, qr/\Q$e0\E/, 'poll on 0.2.0 returns the emitted SET');

# sessions held across the update
my $keep = HTTP::Tiny->new(timeout => 10, keep_alive => 1);
is(push_set($keep, 'before-2')->{status}, 202, 'push on a keep-alive connection');

my $lp = raw_connect($http_port) or die "connect: $!";
my $body = '{"returnImmediately": false}';
syswrite($lp, raw_request('/streams/up/poll', $token, 'application/json', $body));
ok( wait_until(
		10,
		sub {
			$node->safe_psql('postgres',
				"SELECT coalesce(sum(long_polls), 0) FROM setstream.stream_counters() WHERE stream = 'up'"
			) >= 1;
		}),
	'a long poll is parked');

my ($ws, $head) = ws_open($http_port, 'upws', $ws_token);
like($head, qr{^HTTP/1\.1 101}, 'a WebSocket session is open');
# the session's first turn (nothing due) before the update
usleep(300_000);

# ------------------------------------------------------------ the update

my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', 'ALTER EXTENSION setstream UPDATE');
is($node->safe_psql('postgres',
		"SELECT extversion FROM pg_extension WHERE extname = 'setstream'"),
	$node->safe_psql('postgres',
		"SELECT default_version FROM pg_available_extensions WHERE name = 'setstream'"),
	'ALTER EXTENSION setstream UPDATE reached the default version');

# ------------------------------------------------------------ after it

my $e1 = emit();
my $e1ws = emit('upws');
my $answer = read_until($lp, qr/\Q$e1\E/, 10);
like($answer, qr{^HTTP/1\.1 200}, 'the parked long poll is answered after the update');
like($answer, qr/\Q$e1\E/, 'with the SET emitted after the update');
close($lp);

my $got = '';
my $deadline = time + 10;
while (time < $deadline && $got !~ /\Q$e1ws\E/)
{
	my ($op, $payload) = ws_read_frame($ws, 1);
	$got .= $payload // '';
}
like($got, qr/\Q$e1ws\E/, 'the WebSocket session gets the SET pushed after the update');
close($ws);

is(push_set($keep, 'after-1')->{status}, 202, 'push on the kept connection after the update: 202');
is(push_set($http, 'after-2')->{status}, 202, 'push on a new connection after the update: 202');
is(push_set($http, 'before-1')->{status}, 202, 'a duplicate of a SET stored before the update: 202');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM setstream.events WHERE stream = 'up' AND jti IN ('before-1','before-2','after-1','after-2')"),
	4, 'each pushed SET stored once');

my $e2 = emit();
$r = poll_now($http);
is($r->{status}, 200, 'poll after the update: 200');
like($r->{content}, qr/\Q$e2\E/, 'poll after the update returns the new SET');

is_deeply([ listener_pids($node) ], \@pids_before,
	'the same listener process serves before and after the update');

# what 0.3.0 added works under the running listener
ok($node->safe_psql('postgres',
		"SELECT count(*) > 0 FROM setstream.metrics() WHERE labels->>'stream' = 'up'"),
	'setstream.metrics() of the update');
$r = $http->request('GET', "$base/metrics",
	{ headers => { Authorization => 'Bearer metrics-secret' } });
is($r->{status}, 200, 'GET /metrics after the update: 200');
like($r->{content}, qr/^setstream_sets_received_total\{stream="up"\} [1-9]/m,
	'GET /metrics counts the stream\'s pushes');

my $log = substr(slurp_file($node->logfile), $log_offset);
unlike($log, qr/request failed|FATAL|terminated by signal|exited with exit code/,
	'no failed request, FATAL or exited worker in the log since the update');

$node->stop;
done_testing();
