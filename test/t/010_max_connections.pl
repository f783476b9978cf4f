
# Copyright (c) setstream contributors
#
# 010_max_connections.pl — every client connection slot of the server
# (max_connections) is taken by other sessions.
#
# The listener is a background worker: its PGPROC comes from the
# max_worker_processes pool, not from max_connections.  With every
# max_connections slot held by sleeping sessions:
#   * one more client session is refused ("too many clients"): the slots
#     really are exhausted;
#   * the listener keeps answering pushes 202 and polls 200;
#   * terminated meanwhile, the listener is started again by its
#     supervisor and connects to its database although no client slot is
#     free, and serves again;
#   * once the sessions end, every SET answered 202 is stored once, and
#     the polled SET is acked.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use FaultUtil;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $SLOTS = 3;

my ($node, $port) = start_node('max_connections', qq{
max_connections = $SLOTS
superuser_reserved_connections = 0
client_connection_check_interval = '100ms'
});
my $base = "http://127.0.0.1:$port";
my $token = make_stream($node, 'conns', 1);
$node->safe_psql('postgres',
	"SELECT setstream.emit('conns', '@{[EVENT_TYPE]}', '{}')");

my $http = http_client();
sub post
{
	my ($path, $ctype, $body) = @_;
	return $http->request('POST', "$base/streams/conns/$path",
		{
			headers => {
				'Content-Type' => $ctype,
				'Authorization' => "Bearer $token"
			},
			content => $body
		});
}
sub push_status
{
	return post('events', 'application/secevent+jwt', unsigned_set('conns', $_[0]))->{status};
}

ok(wait_until(10, sub { push_status('conns-1') == 202 }), 'the listener serves');
my ($pid) = listener_pids($node);

# Take every client slot, one session after the other: each says on stderr
# (unbuffered) that it is connected before the next starts, and the probe
# below starts only then (a probe racing a connecting session could take
# its slot, and the slots would never all be held).
my @sessions;
for my $i (1 .. $SLOTS)
{
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			'psql', '-X', '-d', $node->connstr('postgres'),
			'-c', '\warn connected', '-c', 'SELECT pg_sleep(30)'
		],
		'>', \$out, '2>', \$err);
	push @sessions, [ $h, \$err ];
	ok(wait_until(10, sub { $h->pump_nb; $err =~ /connected/ }),
		"session $i holds a client slot")
	  or diag("psql: $err");
}
my ($rc, $stdout, $stderr);
ok( wait_until(
		10,
		sub {
			($rc, $stdout, $stderr) = try_psql($node, 'SELECT 1');
			$rc != 0 && $stderr =~ /too many clients/;
		}),
	"all $SLOTS client slots are taken: another session is refused")
  or diag("psql: rc $rc, $stderr");

is(push_status('conns-2'), 202, 'slots exhausted: a push is answered 202');
my $r = post('poll', 'application/json', '{"returnImmediately":true}');
is($r->{status}, 200, 'slots exhausted: a poll is answered 200');
my ($jti) = ($r->{content} =~ /"([0-9a-f-]{36})"\s*:/);
ok($jti, 'slots exhausted: the poll delivers the emitted SET');
$r = post('poll', 'application/json', qq({"ack":["$jti"],"maxEvents":0}));
is($r->{status}, 200, 'slots exhausted: its acknowledgement is answered 200');

ok(kill('TERM', $pid), 'slots exhausted: terminate the listener');
ok(wait_until(15, sub { push_status('conns-3') == 202 }),
	'slots exhausted: the restarted listener connects and serves again');

# release the slots (the backends notice their client is gone)
for my $s (@sessions)
{
	$s->[0]->kill_kill;
}
ok(wait_until(10, sub { (try_psql($node, 'SELECT 1'))[0] == 0 }),
	'the sessions ended: clients connect again');
is($node->safe_psql('postgres',
		"SELECT string_agg(jti || ':' || n, ',' ORDER BY jti) FROM "
		  . "(SELECT jti, count(*) n FROM setstream.events GROUP BY jti) e"),
	'conns-1:1,conns-2:1,conns-3:1', 'every SET answered 202 is stored once');
is($node->safe_psql('postgres', "SELECT state FROM setstream.outbox WHERE jti = '$jti'"),
	'acked', 'the acknowledged SET is acked');
my @pids = listener_pids($node);
ok(@pids == 1 && $pids[0] != $pid, 'one listener, a new process');

$node->stop;
done_testing();
