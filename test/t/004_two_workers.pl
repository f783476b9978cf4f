
# Copyright (c) setstream contributors
#
# 004_two_workers.pl — setstream.workers = 2: two listener processes share
# one port (SO_REUSEPORT).
#
#   * pg_stat_activity shows two 'setstream listener' workers;
#   * 50 new connections to GET /jwks.json all succeed;
#   * six long polls parked over both workers: an emit answers exactly
#     one; over ten emits the time from COMMIT to the answer has a median
#     under 30 ms and a maximum under 150 ms (the listeners' 250 ms
#     housekeeping tick would not meet that: only the commit's wake-up);
#   * connections spread evenly: 40 keep-alive connections opened one
#     after another hold 20 and 20 (at most one apart) on the two
#     listeners, three times over, and again after a worker restarts;
#     the kernel's SO_REUSEPORT hash alone splits 40 exactly evenly one
#     time in eight (server/handoff.c passes a connection on instead);
#   * SIGTERM one worker: it exits cleanly (no crash restart of the
#     server: the other worker keeps its pid), the other keeps serving new
#     connections while it is down (a refused connection is retried at most
#     a few times), and Postgres starts it again after bgw_restart_time
#     (5 s), so two workers serve again within about 10 s;
#   * the restarted worker serves as well (a long poll parks on one worker
#     while the other answers).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time usleep);

delete @ENV{qw(http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY)};

my $RESTART_TIME = 5;	# bgw_restart_time of the listener (worker.c)

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

my $node = PostgreSQL::Test::Cluster->new('two');
$node->init;
my $http_port = PostgreSQL::Test::Cluster::get_free_port();
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'setstream'
setstream.port = $http_port
setstream.listen_addresses = '127.0.0.1'
setstream.workers = 2
setstream.poll_timeout = '20s'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION setstream');
my $base = "http://127.0.0.1:$http_port";

# GET /jwks.json on a new connection (HTTP::Tiny without keep-alive):
# the status, 599 for a connection error.
sub jwks_status
{
	my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 10);
	my $r = $http->request('GET', "$base/jwks.json");
	return wantarray ? ($r->{status}, $r->{content}) : $r->{status};
}

# ------------------------------------------------------------ two workers

my @pids;
ok(wait_until(10, sub { @pids = listener_pids($node); @pids == 2 }),
	'two listener workers in pg_stat_activity');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'setstream listener' "
		  . "AND application_name = 'setstream listener' AND datname = 'postgres'"),
	'2',
	'both have application_name setstream listener and database postgres');

# both open the port once they have seen the extension (within 2 s)
ok( wait_until(
		10,
		sub {
			my $log = slurp_file($node->logfile);
			$log =~ /setstream listener 0 serving/
			  && $log =~ /setstream listener 1 serving/;
		}),
	'both workers log that they serve the port');

my $ok = 0;
my @bad;
for my $i (1 .. 50)
{
	my ($status, $body) = jwks_status();
	if ($status == 200) { $ok++ }
	else { push @bad, "$status $body" }
}
is($ok, 50, '50 new connections to GET /jwks.json all answer 200')
  or diag(join("\n", @bad[ 0 .. ($#bad < 4 ? $#bad : 4) ]));

# A long poll parks on one worker; the other answers meanwhile.  With
# SO_REUSEPORT the kernel picks the worker, so open a few long polls: at
# least one lands on each worker with near certainty, and every quick
# request must still be answered while they are parked.
$node->safe_psql('postgres', q{
SELECT setstream.create_stream('two', 'https://db.example.com/two',
    ARRAY['https://receiver.example.com/two'])});
my $token = $node->safe_psql('postgres', "SELECT setstream.issue_token('two')");
my $poll_body = '{"returnImmediately":false,"maxEvents":10}';
my $poll_request =
    "POST /streams/two/poll HTTP/1.1\r\nHost: 127.0.0.1\r\n"
  . "Authorization: Bearer $token\r\nContent-Type: application/json\r\n"
  . "Content-Length: " . length($poll_body) . "\r\n\r\n"
  . $poll_body;
my @parked;
for my $i (1 .. 6)
{
	my $s = IO::Socket::INET->new(
		PeerAddr => '127.0.0.1',
		PeerPort => $http_port,
		Proto => 'tcp',
		Timeout => 5);
	next unless $s;
	print $s $poll_request;
	push @parked, $s;
}
is(scalar(@parked), 6, 'six long polls are open');
usleep(300_000);
$ok = 0;
$ok += (jwks_status() == 200) for 1 .. 20;
is($ok, 20, 'quick requests are answered while long polls are parked');

# emit: the parked polls wake; exactly one of them takes the SET and
# answers within a moment, the others park again (each SET goes to one
# poll only).  Ten emits, each committed in a psql session that is
# already connected: the time from sending COMMIT to the first byte of the
# answer is the wake-up latency (the listener's housekeeping tick, 250 ms,
# must not be what answers).
$node->safe_psql('postgres', q{SELECT setstream.generate_key('two')});
my $emit_sql =
  "SELECT setstream.emit('two', 'https://schemas.openid.net/secevent/caep/event-type/session-revoked', '{}', '{\"format\":\"opaque\",\"id\":\"x\"}')";
my $psql = $node->background_psql('postgres');
my @latencies;
my ($with_set_first, $answered_first, $status_first);

# wait_answers(SECONDS, LINGER, T0, @socks): read every socket until one
# has a whole answer and LINGER seconds have passed since T0, or SECONDS
# have; returns (seconds from T0 to the first whole answer or undef,
# {index => bytes})
sub wait_answers
{
	my ($seconds, $linger, $t0, @socks) = @_;
	my %buf = map { ($_ => '') } 0 .. $#socks;
	my $sel = IO::Select->new(@socks);
	my $first;
	while (time - $t0 < $seconds)
	{
		for my $s ($sel->can_read(0.002))
		{
			my ($i) = grep { $socks[$_] == $s } 0 .. $#socks;
			my $n = sysread($s, my $chunk, 65536);
			if (defined $n && $n > 0) { $buf{$i} .= $chunk }
			else { $sel->remove($s) }
		}
		$first //= time - $t0
		  if grep { m{^HTTP/1\.1 \d+ .*\r\n\r\n.*\}}s } values %buf;
		last if defined $first && time - $t0 >= $linger;
	}
	return ($first, \%buf);
}

sub open_parked_poll
{
	my $s = IO::Socket::INET->new(
		PeerAddr => '127.0.0.1',
		PeerPort => $http_port,
		Proto => 'tcp',
		Timeout => 5) or die "connect: $!";
	print $s $poll_request;
	$s->blocking(0);
	return $s;
}

$_->blocking(0) for @parked;
for my $round (1 .. 10)
{
	$psql->query_safe("BEGIN; $emit_sql;");
	my $t0 = time;
	$psql->{stdin} .= "COMMIT;\n";
	$psql->{run}->pump_nb;
	# the first round lingers: the other polls must stay parked
	my ($first, $buf) = wait_answers(3, $round == 1 ? 1 : 0, $t0, @parked);
	push @latencies, $first // 99;
	my @answered = grep { $buf->{$_} ne '' } sort keys %$buf;
	if ($round == 1)
	{
		my @with_set = grep { $buf->{$_} =~ /"sets"\s*:\s*\{\s*"/ } @answered;
		is(scalar(@with_set), 1,
			'exactly one parked long poll received the emitted SET');
		is(scalar(@answered), 1, 'the other long polls stay parked')
		  or diag(join("\n---\n", map { $buf->{$_} } @answered));
		like($buf->{ $with_set[0] // 0 }, qr{^HTTP/1\.1 200}, 'with 200');
	}
	# replace the polls that answered with new parked ones
	for my $i (@answered)
	{
		close $parked[$i];
		$parked[$i] = open_parked_poll();
	}
	# each new poll must be parked before the next emit
	ok( wait_until(
			5,
			sub {
				$node->safe_psql('postgres',
					"SELECT waiting_long_polls FROM setstream.stats WHERE stream = 'two'"
				) == scalar(@parked);
			}),
		"round $round: six long polls parked again")
	  if $round < 10;
}
$psql->quit;
my @sorted = sort { $a <=> $b } @latencies;
my $median = ($sorted[4] + $sorted[5]) / 2;
note(sprintf('commit -> answer of a parked poll (ms): median %.1f, max %.1f; all %s',
	1000 * $median, 1000 * $sorted[-1],
	join(' ', map { sprintf('%.1f', 1000 * $_) } @latencies)));
ok($median < 0.030,
	sprintf('median commit-to-answer latency under 30 ms (%.1f ms)', 1000 * $median));
ok($sorted[-1] < 0.150,
	sprintf('every commit-to-answer latency under 150 ms (max %.1f ms)',
		1000 * $sorted[-1]));
close $_ for @parked;

# ------------------------------------------------------------ balance

# The listener pid that holds each established connection to the port
# (its socket inodes in /proc/PID/fd, their ports in /proc/net/tcp).
sub connections_per_listener
{
	my (@listeners) = @_;
	my %state;
	open(my $fh, '<', '/proc/net/tcp') or die "/proc/net/tcp: $!";
	while (my $line = <$fh>)
	{
		my @f = split ' ', $line;
		next unless @f > 9 && $f[1] =~ /:([0-9A-F]{4})$/;
		$state{ $f[9] } = $f[3] if hex($1) == $http_port;
	}
	close $fh;
	my %count;
	for my $pid (@listeners)
	{
		$count{$pid} = 0;
		opendir(my $d, "/proc/$pid/fd") or die "/proc/$pid/fd: $!";
		for my $fd (readdir $d)
		{
			my $link = readlink("/proc/$pid/fd/$fd") // '';
			$count{$pid}++
			  if $link =~ /^socket:\[(\d+)\]$/ && ($state{$1} // '') eq '01';
		}
		closedir $d;
	}
	return \%count;
}

# Open n keep-alive connections one after another, each answered once
# (GET /jwks.json), so that the listener serving it has counted it before
# the next one is opened.
sub open_answered
{
	my ($n) = @_;
	my @socks;
	for my $i (1 .. $n)
	{
		my $s = IO::Socket::INET->new(
			PeerAddr => '127.0.0.1',
			PeerPort => $http_port,
			Proto => 'tcp',
			Timeout => 5) or die "connect: $!";
		print $s "GET /jwks.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
		my $got = '';
		my $sel = IO::Select->new($s);
		while ($got !~ /\r\n\r\n/ && $sel->can_read(5))
		{
			my $r = sysread($s, my $chunk, 65536);
			last unless $r;
			$got .= $chunk;
		}
		die "no answer on connection $i: $got" unless $got =~ m{^HTTP/1\.1 200};
		push @socks, $s;
	}
	return @socks;
}

sub check_balance
{
	my ($label) = @_;
	my @listeners = listener_pids($node);
	my @socks = open_answered(40);
	my $count = connections_per_listener(@listeners);
	my @n = map { $count->{$_} } @listeners;
	my ($min, $max) = (sort { $a <=> $b } @n)[ 0, -1 ];
	ok(@n == 2 && $n[0] + $n[1] == 40 && $max - $min <= 1,
		"$label: 40 connections held evenly by the two listeners (@n)");
	close $_ for @socks;
	# closed on the listeners' side too before the next round
	wait_until(5, sub {
		my $c = connections_per_listener(@listeners);
		!grep { $c->{$_} } @listeners;
	});
}

check_balance("round $_") for 1 .. 3;

# ------------------------------------------------------------ SIGTERM one

my ($victim, $survivor) = @pids;
my $log_offset = -s $node->logfile;
ok(kill('TERM', $victim), "SIGTERM listener pid $victim");
my $killed_at = time;
ok( wait_until(5, sub { my @p = listener_pids($node); @p == 1 }),
	'the terminated worker leaves pg_stat_activity');

# Service continues while it is down: the surviving worker accepts every
# new connection (a refused one is retried at most 3 times).
my ($served, $retried, $failed) = (0, 0, 0);
my $down_checks = 0;
while (time - $killed_at < $RESTART_TIME - 1)
{
	my $tries = 0;
	my $status;
	while ($tries < 4)
	{
		$status = jwks_status();
		last if $status == 200;
		$tries++;
		usleep(50_000);
	}
	$retried += $tries;
	if   ($status == 200) { $served++ }
	else                  { $failed++ }
	$down_checks++;
	usleep(50_000);
}
note("while one worker was down: $served served, $retried retries, $failed failed");
is($failed, 0, 'while one worker is down, the other serves every request');
cmp_ok($served, '>', 10, 'and it served a good number of them');
is_deeply([ listener_pids($node) ], [$survivor],
	'the surviving worker keeps its pid (SIGTERM caused no crash restart)');

# Postgres restarts it after bgw_restart_time
my @after;
ok( wait_until(
		10,
		sub {
			@after = listener_pids($node);
			@after == 2;
		}),
	'two workers again within ~10 s');
my $back_after = time - $killed_at;
note(sprintf('worker back after %.1f s', $back_after));
ok(!grep({ $_ == $victim } @after), 'the restarted worker has a new pid');
ok(scalar(grep { $_ == $survivor } @after), 'the survivor is still there');
cmp_ok($back_after, '<=', $RESTART_TIME + 5, 'back within bgw_restart_time plus a margin');

my $log = slurp_file($node->logfile, $log_offset);
unlike($log, qr/terminated by signal|server process .* was terminated/,
	'no crash: the worker exited on its own');
unlike($log, qr/all server processes terminated; reinitializing/,
	'no crash restart of the server');

# and both serve again
ok( wait_until(
		5,
		sub {
			my $l = slurp_file($node->logfile, $log_offset);
			my @serving = $l =~ /(setstream listener \d serving)/g;
			@serving >= 1;
		}),
	'the restarted worker logs that it serves');
$ok = 0;
$ok += (jwks_status() == 200) for 1 .. 50;
is($ok, 50, 'after the restart, 50 new connections all answer 200');
check_balance('after the restart');

$node->stop;
done_testing();
