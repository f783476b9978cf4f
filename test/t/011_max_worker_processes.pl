
# Copyright (c) setstream contributors
#
# 011_max_worker_processes.pl — every max_worker_processes slot is taken
# when the supervisor wants to start its listener.
#
# max_worker_processes = 2 holds the supervisor and its listener and
# nothing else (setstream.senders = 0: no sender supervisor takes a slot).  The listener is terminated; while the supervisor waits
# its 5 s, a parallel query takes the freed slot for 12 s.  Then:
#   * the supervisor logs one WARNING naming the cause, with an errhint
#     about max_worker_processes, and no more while the slot stays taken
#     (no log spam);
#   * it does not spin: it uses well under a second of CPU meanwhile;
#   * once the query ends and frees the slot, the listener starts within
#     a few seconds (without a restart of the server) and serves again.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use FaultUtil;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $HOLD = 12;	# seconds the parallel query holds the slot

my ($node, $port) = start_node('worker_slots', q{
max_worker_processes = 2
setstream.senders = 0
max_logical_replication_workers = 0
max_parallel_workers = 2
});
my $base = "http://127.0.0.1:$port";
my $token = make_stream($node, 'slots', 0);

sub push_status
{
	my ($jti) = @_;
	return http_client()->request('POST', "$base/streams/slots/events",
		{
			headers => {
				'Content-Type' => 'application/secevent+jwt',
				'Authorization' => "Bearer $token"
			},
			content => unsigned_set('slots', $jti)
		})->{status};
}

ok(wait_until(10, sub { push_status('slots-1') == 202 }), 'the listener serves');
my ($pid) = listener_pids($node);
my $supervisor = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'setstream supervisor'");
like($supervisor, qr/^\d+$/, 'one supervisor');

# CPU time (clock ticks) the supervisor has used
sub cpu_ticks
{
	open my $fh, '<', "/proc/$supervisor/stat" or return undef;
	my @f = split / /, (<$fh> =~ s/^.*\) //r);
	return $f[11] + $f[12];	# utime, stime
}

my $log_offset = -s $node->logfile;
ok(kill('TERM', $pid), 'terminate the listener');
ok(wait_until(5, sub { !kill(0, $pid) }), 'the listener is gone');

# a parallel query takes the free slot before the supervisor's 5 s are up
# (force_parallel_mode is debug_parallel_query from 16 on)
my $force_parallel =
  $node->pg_version >= 16 ? 'debug_parallel_query' : 'force_parallel_mode';
my ($out, $err) = ('', '');
my $h = IPC::Run::start(
	[
		'psql', '-X', '-d', $node->connstr('postgres'), '-c',
		"SET $force_parallel = on; SET parallel_setup_cost = 0; SELECT pg_sleep($HOLD)"
	],
	'>', \$out, '2>', \$err);
my $started = time;
ok( wait_until(
		3,
		sub {
			$node->safe_psql('postgres',
				"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel worker'"
			) eq '1';
		}),
	'a parallel worker holds the slot');
my $ticks0 = cpu_ticks();

# the supervisor finds no slot at the end of its 5 s
ok( wait_until(
		10,
		sub { slurp_file($node->logfile, $log_offset) =~ /could not start its listener/ }),
	'the supervisor logs that it could not start its listener');
my $log = slurp_file($node->logfile, $log_offset);
like($log, qr/WARNING:  setstream supervisor 0 could not start its listener: no background worker slot is free/,
	'a WARNING that names the cause');
like($log, qr/HINT:  Raise max_worker_processes/, 'with an errhint about max_worker_processes');

$h->finish;
my $freed = time;
note(sprintf('the parallel query held the slot for %.1f s', $freed - $started));
my $ticks1 = cpu_ticks();
ok(defined $ticks0 && defined $ticks1, 'the supervisor kept running');
cmp_ok($ticks1 - $ticks0, '<', 50,
	'the supervisor did not spin while it waited (under 0.5 s of CPU)');

ok(wait_until(10, sub { push_status('slots-2') == 202 }),
	'the listener serves again once the slot is free');
my $back = time - $freed;
note(sprintf('listener back %.1f s after the slot was freed', $back));
cmp_ok($back, '<', 4, 'within a few seconds of the slot being freed');

$log = slurp_file($node->logfile, $log_offset);
my $warnings = () = $log =~ /could not start its listener/g;
is($warnings, 1, "one WARNING in the ${HOLD} s the slot was taken (no log spam)");
isnt(join(',', listener_pids($node)), $pid, 'a new listener process');
is($node->safe_psql('postgres', 'SELECT count(*) FROM setstream.events'),
	'2', 'both SETs answered 202 are stored');

$node->stop;
done_testing();
