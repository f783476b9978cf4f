
# Copyright (c) setstream contributors
#
# 002_reload.pl — the listener's identity in pg_stat_activity, and SIGHUP
# reloads of its settings.
#
#   * pg_stat_activity shows the worker with backend_type and
#     application_name 'setstream listener', connected to
#     setstream.database (postgres);
#   * ALTER SYSTEM SET setstream.poll_timeout + pg_reload_conf(): a long
#     poll (returnImmediately false, nothing to deliver) then returns after
#     about the new timeout (1 s, then 3 s, then 1 s again);
#   * the worker keeps its pid across the reloads (a reload is no restart).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
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

my $node = PostgreSQL::Test::Cluster->new('reload');
$node->init;
my $http_port = PostgreSQL::Test::Cluster::get_free_port();
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'setstream'
setstream.port = $http_port
setstream.listen_addresses = '127.0.0.1'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION setstream');
my $base = "http://127.0.0.1:$http_port";

# ------------------------------------------------------------ identity

ok(wait_until(10, sub { scalar(listener_pids($node)) == 1 }),
	'one listener worker in pg_stat_activity');
my ($pid) = listener_pids($node);
is( $node->safe_psql(
		'postgres',
		"SELECT backend_type || '|' || coalesce(application_name, '') || '|' || coalesce(datname, '') "
		  . "FROM pg_stat_activity WHERE pid = $pid"),
	'setstream listener|setstream listener|postgres',
	"the worker's backend_type, application_name and database");
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'setstream listener'"
	),
	'1',
	'application_name names only the listener');

# ------------------------------------------------------------ reload

$node->safe_psql('postgres', qq{
SELECT setstream.create_stream('lp', 'https://db.example.com/lp',
    ARRAY['https://receiver.example.com/lp'])});
my $token = $node->safe_psql('postgres', "SELECT setstream.issue_token('lp')");

my $http = HTTP::Tiny->new(timeout => 40);

# the worker opens its port once it has seen CREATE EXTENSION (it looks
# every 2 s)
ok( wait_until(
		10, sub { $http->request('GET', "$base/jwks.json")->{status} == 200 }),
	'the listener serves GET /jwks.json');

# A long poll on a stream with nothing to deliver: (status, seconds, body)
sub long_poll
{
	my $t0 = time;
	my $r = $http->request('POST', "$base/streams/lp/poll",
		{
			headers => {
				'Content-Type' => 'application/json',
				'Authorization' => "Bearer $token"
			},
			content => '{"returnImmediately":false,"maxEvents":10}'
		});
	return ($r->{status}, time - $t0, $r->{content});
}

# set_poll_timeout(VALUE): ALTER SYSTEM, reload, and give the worker time
# to process its SIGHUP (it does so on its next loop turn, at most
# 250 ms away).
sub set_poll_timeout
{
	my ($value) = @_;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET setstream.poll_timeout = '$value'");
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	usleep(1_000_000);
}

my ($status, $elapsed, $body);

# a quick poll answers at once, whatever the timeout
my $r = $http->request('POST', "$base/streams/lp/poll",
	{
		headers => {
			'Content-Type' => 'application/json',
			'Authorization' => "Bearer $token"
		},
		content => '{"returnImmediately":true}'
	});
is($r->{status}, 200, 'a returnImmediately poll answers 200')
  or diag($r->{content});

set_poll_timeout('1s');
($status, $elapsed, $body) = long_poll();
is($status, 200, 'long poll with poll_timeout = 1s answers 200') or diag($body);
like($body, qr/"sets"\s*:\s*\{\s*\}/, 'and delivers no SET');
note(sprintf('long poll took %.2f s', $elapsed));
ok($elapsed >= 0.8 && $elapsed < 2.5,
	sprintf('long poll with poll_timeout = 1s returns after about 1 s (%.2f s)', $elapsed));

set_poll_timeout('3s');
($status, $elapsed, $body) = long_poll();
is($status, 200, 'long poll with poll_timeout = 3s answers 200') or diag($body);
note(sprintf('long poll took %.2f s', $elapsed));
ok($elapsed >= 2.8 && $elapsed < 4.5,
	sprintf('long poll with poll_timeout = 3s returns after about 3 s (%.2f s)', $elapsed));

set_poll_timeout('1s');
($status, $elapsed, $body) = long_poll();
is($status, 200, 'back to 1s: the long poll answers 200') or diag($body);
ok($elapsed >= 0.8 && $elapsed < 2.5,
	sprintf('back to 1s: the long poll returns after about 1 s (%.2f s)', $elapsed));

# a plain SIGHUP to the postmaster (pg_ctl reload) is fine as well
$node->reload;
usleep(500_000);
$r = $http->request('GET', "$base/jwks.json");
is($r->{status}, 200, 'the listener serves after pg_ctl reload');

is_deeply([ listener_pids($node) ], [$pid],
	'the worker kept its pid across the reloads');

my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|exited with exit code/,
	'no worker exited during the reloads');

$node->stop;
done_testing();
