
# Copyright (c) setstream contributors
#
# 001_restart.pl — the listener worker is killed (SIGKILL) while pushes are
# in flight.
#
# Three background pushers send 300 distinct unsigned SETs (RFC 8935 push,
# keep-alive connections) and record every jti answered 202; a user
# trigger on setstream.events slows each insert so that the listener's
# transactions are long.  At a third and at two thirds the test SIGKILLs
# the listener; Postgres then restarts every backend (crash recovery, since
# a worker died by a signal) and the listener comes back.
# The pushers retry on connection errors and 503 until every SET has been
# answered 202.  Afterwards:
#   * every jti answered 202 is stored exactly once (nothing acknowledged
#     is lost, nothing redelivered is stored twice);
#   * the stream holds no row beyond those (the row count equals the number
#     of distinct jtis answered);
#   * the listener is back (pg_stat_activity) within bgw_restart_time plus
#     a margin, under a new pid.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use IPC::Run;
use MIME::Base64 qw(encode_base64url);
use Time::HiRes qw(time usleep);

delete @ENV{qw(http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY)};

my $N_PUSHERS = 3;
my $PER_PUSHER = 100;
my $N = $N_PUSHERS * $PER_PUSHER;
my $RESTART_TIME = 5;	# bgw_restart_time of the listener (worker.c)

# ------------------------------------------------------------ helpers

# wait_until(SECONDS, CODE): poll CODE every 100 ms until it returns true
# or SECONDS pass; returns CODE's last value.
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

# psql that tolerates a server in crash recovery: (rc, stdout)
sub try_psql
{
	my ($node, $sql) = @_;
	my ($stdout, $stderr) = ('', '');
	my $rc = $node->psql('postgres', $sql,
		stdout => \$stdout, stderr => \$stderr,
		on_error_die => 0, timeout => 10);
	return ($rc, $stdout);
}

sub listener_pids
{
	my ($node) = @_;
	my ($rc, $out) = try_psql($node,
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'setstream listener' ORDER BY pid");
	return () if $rc != 0;
	return grep { /^\d+$/ } split /\n/, $out;
}

sub count_lines
{
	my ($file) = @_;
	open my $fh, '<', $file or return 0;
	my $n = 0;
	$n++ while defined(my $line = <$fh>);
	close $fh;
	return $n;
}

# ------------------------------------------------------------ the node

my $node = PostgreSQL::Test::Cluster->new('restart');
$node->init;
my $http_port = PostgreSQL::Test::Cluster::get_free_port();
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'setstream'
setstream.port = $http_port
setstream.listen_addresses = '127.0.0.1'
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION setstream');

my $base = "http://127.0.0.1:$http_port";
my $iss = 'https://idp.example.com/push';
my $aud = 'https://db.example.com/push';
$node->safe_psql('postgres', qq{
SELECT setstream.create_stream('push', '$aud',
    ARRAY['https://receiver.example.com/push'],
    peer_issuer => '$iss', allow_unsigned => true)});
my $token = $node->safe_psql('postgres', "SELECT setstream.issue_token('push')");

# A user trigger that makes each stored SET take a little while: the
# listener's transactions then last long enough for the kill to land while
# SETs are read but not yet committed.
$node->safe_psql('postgres', q{
CREATE FUNCTION public.slow_insert() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN PERFORM pg_sleep(0.01); RETURN NEW; END$$;
CREATE TRIGGER slow_insert BEFORE INSERT ON setstream.events
    FOR EACH ROW EXECUTE FUNCTION public.slow_insert()});

ok( wait_until(10, sub { scalar(listener_pids($node)) == 1 }),
	'one listener worker runs');
my ($old_pid) = listener_pids($node);

# An unsigned SET the stream accepts
sub unsigned_set
{
	my ($jti) = @_;
	my $claims = sprintf(
		'{"iss":"%s","aud":"%s","iat":%d,"jti":"%s",'
		  . '"sub_id":{"format":"email","email":"%s@example.com"},'
		  . '"events":{"https://schemas.openid.net/secevent/caep/event-type/session-revoked":{"initiating_entity":"policy"}}}',
		$iss, $aud, time, $jti, $jti);
	return encode_base64url('{"alg":"none","typ":"secevent+jwt"}') . '.'
	  . encode_base64url($claims) . '.';
}

my $http = HTTP::Tiny->new(timeout => 10);
my $r;
wait_until(
	10,
	sub {
		$r = $http->request('POST', "$base/streams/push/events",
			{
				headers => {
					'Content-Type' => 'application/secevent+jwt',
					'Authorization' => "Bearer $token"
				},
				content => unsigned_set('probe')
			});
		$r->{status} != 599;
	});
is($r->{status}, 202, 'the listener accepts an unsigned SET (202)')
  or diag("response: $r->{status} $r->{content}");

# ------------------------------------------------------------ the pushers

# One pusher: pushes PREFIX-0001 .. PREFIX-NNNN in order over a keep-alive
# connection; a jti is retried (connection errors, 503) until it is
# answered 202, then appended to OUTFILE.  Any other answer is recorded as
# "ERR jti status body".
my $pusher = <<'PUSHER';
use strict;
use warnings;
use HTTP::Tiny;
use IO::Handle;
use MIME::Base64 qw(encode_base64url);
use Time::HiRes qw(time usleep);

delete @ENV{qw(http_proxy HTTP_PROXY all_proxy ALL_PROXY)};
my ($url, $token, $iss, $aud, $prefix, $n, $outfile, $seconds) = @ARGV;
my $deadline = time + $seconds;
my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 10);
open my $out, '>>', $outfile or die "$outfile: $!";
$out->autoflush(1);
my $header = encode_base64url('{"alg":"none","typ":"secevent+jwt"}');
my ($retries, %seen) = (0);
JTI: for my $i (1 .. $n)
{
	my $jti = sprintf('%s-%04d', $prefix, $i);
	my $claims = sprintf(
		'{"iss":"%s","aud":"%s","iat":%d,"jti":"%s",'
		  . '"sub_id":{"format":"opaque","id":"%s"},'
		  . '"events":{"https://schemas.openid.net/secevent/caep/event-type/session-revoked":{"initiating_entity":"policy"}}}',
		$iss, $aud, time, $jti, $jti);
	my $set = "$header." . encode_base64url($claims) . '.';
	while (1)
	{
		my $r = $http->request('POST', $url,
			{
				headers => {
					'Content-Type' => 'application/secevent+jwt',
					'Authorization' => "Bearer $token"
				},
				content => $set
			});
		if ($r->{status} == 202)
		{
			print $out "$jti\n";
			last;
		}
		if ($r->{status} == 599 || $r->{status} == 503)
		{
			$seen{$r->{status}}++;
			$retries++;
			if (time >= $deadline)
			{
				print STDERR "$prefix: deadline reached at $jti\n";
				last JTI;
			}
			usleep(50_000);
			next;
		}
		(my $body = $r->{content} // '') =~ s/\s+/ /g;
		print $out "ERR $jti $r->{status} $body\n";
		last;
	}
	usleep(5_000);
}
printf "%s retries=%d (599: %d, 503: %d)\n", $prefix, $retries,
  $seen{599} // 0, $seen{503} // 0;
PUSHER

my $tmp = PostgreSQL::Test::Utils::tempdir();
my @harnesses;
my @outfiles;
for my $p (1 .. $N_PUSHERS)
{
	my $outfile = "$tmp/pusher$p.txt";
	push @outfiles, $outfile;
	my ($stdout, $stderr) = ('', '');
	my $h = IPC::Run::start(
		[
			$^X, '-e', $pusher, "$base/streams/push/events", $token, $iss,
			$aud, "p$p", $PER_PUSHER, $outfile, 40
		],
		'>', \$stdout, '2>', \$stderr,
		IPC::Run::timeout(60));
	push @harnesses, [ $h, \$stdout, \$stderr ];
}

sub answered_so_far
{
	my $n = 0;
	for my $f (@outfiles)
	{
		$n += count_lines($f);
	}
	return $n;
}

# Kill the listener twice: once a third, and again once two thirds of the
# SETs are acknowledged.  Each time Postgres restarts everything (crash
# recovery) and the listener must come back under a new pid.
my $pid = $old_pid;
for my $round (1, 2)
{
	ok(wait_until(30, sub { answered_so_far() >= $round * $N / 3 }),
		"round $round: the pushers are under way");
	my $at_kill = answered_so_far();
	my $log_offset = -s $node->logfile;
	ok(kill('KILL', $pid), "round $round: SIGKILL the listener (pid $pid)");
	my $killed_at = time;
	note("$at_kill of $N SETs were answered when the listener was killed");
	cmp_ok($at_kill, '<', $N,
		"round $round: the listener was killed while pushes were in flight");

	my @new_pids;
	ok( wait_until(
			$RESTART_TIME + 15,
			sub {
				@new_pids = listener_pids($node);
				@new_pids == 1 && $new_pids[0] != $pid;
			}),
		"round $round: the listener is back in pg_stat_activity");
	my $back_after = time - $killed_at;
	note(sprintf('listener back after %.1f s (new pid %s)', $back_after,
			$new_pids[0] // 'none'));
	cmp_ok($back_after, '<=', $RESTART_TIME + 10,
		"round $round: the listener came back within bgw_restart_time plus a margin");
	my $log = slurp_file($node->logfile, $log_offset);
	like($log, qr/terminated by signal 9/,
		"round $round: the server log records the killed worker");
	$pid = $new_pids[0] // $pid;
}

# The pushers finish
for my $ph (@harnesses)
{
	my ($h, $stdout, $stderr) = @$ph;
	eval { $h->finish; };
	if ($@)
	{
		diag("pusher did not finish: $@");
		eval { $h->kill_kill; };
	}
	note($$stdout) if $$stdout ne '';
	diag($$stderr) if $$stderr ne '';
}

# ------------------------------------------------------------ the checks

my %answered;
my @errors;
for my $f (@outfiles)
{
	open my $fh, '<', $f or die "$f: $!";
	while (my $line = <$fh>)
	{
		chomp $line;
		if ($line =~ /^ERR /)
		{
			push @errors, $line;
		}
		else
		{
			$answered{$line}++;
		}
	}
	close $fh;
}
is_deeply(\@errors, [], 'no SET got an answer other than 202, 503 or a connection error');
is(scalar(keys %answered), $N, "all $N SETs were answered 202 eventually");
is(scalar(grep { $answered{$_} > 1 } keys %answered),
	0, 'each pusher recorded each jti once');

my $rows = $node->safe_psql('postgres',
	"SELECT jti || ' ' || count(*) FROM setstream.events "
	  . "WHERE stream = 'push' AND jti <> 'probe' GROUP BY jti");
my %stored = map { split / / } split /\n/, $rows;

my @lost = sort grep { !exists $stored{$_} } keys %answered;
is_deeply(\@lost, [], 'every SET answered 202 is stored')
  or diag('lost: ' . join(' ', @lost[ 0 .. ($#lost < 9 ? $#lost : 9) ]));
my @twice = sort grep { $stored{$_} != 1 } keys %stored;
is_deeply(\@twice, [], 'no SET is stored twice');
my @unanswered = sort grep { !exists $answered{$_} } keys %stored;
is_deeply(\@unanswered, [],
	'no stored SET went unanswered (rows equal the distinct jtis answered)');
is(scalar(keys %stored), scalar(keys %answered),
	'row count equals the number of distinct jtis answered');

# The new listener serves as before
$r = $http->request('GET', "$base/jwks.json");
is($r->{status}, 200, 'GET /jwks.json answers 200 after the restart');
is(scalar(listener_pids($node)), 1, 'exactly one listener after the restart');

$node->stop;
done_testing();
