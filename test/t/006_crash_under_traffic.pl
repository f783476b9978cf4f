
# Copyright (c) setstream contributors
#
# 006_crash_under_traffic.pl — the listener is SIGKILLed, and later the
# whole cluster is restarted in immediate mode (pg_ctl -m immediate, no
# shutdown checkpoint), while three clients (test/t/clients/traffic.pl)
# keep the listener busy:
#   push      RFC 8935 pushes of distinct SETs;
#   pushpull  HTTP Communication Objects carrying SETs, and acknowledging
#             the SETs the previous response delivered;
#   poll      RFC 8936 polls acknowledging the SETs the previous poll
#             delivered;
#   ws        a pushpull WebSocket (clients/ws_traffic.py): each message
#             carries a new SET and acks of SETs it received;
#             the server's ack of that SET proves the acks were committed.
# The outbound SETs are emitted beforehand; setstream.redelivery_interval
# is 2 s, so a SET delivered in an answer that was lost comes back.  A
# slow trigger on setstream.events and setstream.outbox makes the
# listener's turns long.  Each
# fault lands when every client is between a third and the end of its
# work.  The clients retry unchanged on connection errors and 503.
# Afterwards:
#   * no client ever got another answer (no 500, no setErr);
#   * push: every jti answered 202 is stored exactly once, and nothing
#     else is stored;
#   * pushpull and ws: every SET acknowledged in a response is stored
#     exactly once, and nothing else is stored;
#   * pushpull, poll and ws: every outbox row is acked in the end; no SET was
#     delivered again after a request acknowledging it was answered 200;
#     every emitted SET was delivered;
#   * the listener is back after each fault.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use FaultUtil;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my %work = (	# stream => [inbound SETs, outbound SETs, pause between requests (ms)]
	push => [ 120, 0, 80 ],
	pushpull => [ 60, 60, 400 ],
	poll => [ 0, 80, 300 ],
	ws => [ 30, 60, 450 ]);

my ($node, $port) = start_node('crash', q{
setstream.redelivery_interval = '2s'
});
my $base = "http://127.0.0.1:$port";
my %token;
for my $stream (sort keys %work)
{
	$token{$stream} = make_stream($node, $stream, $work{$stream}[1] > 0);
	$node->safe_psql('postgres',
		"SELECT setstream.emit('$stream', '@{[EVENT_TYPE]}', '{}') "
		  . "FROM generate_series(1, $work{$stream}[1])")
	  if $work{$stream}[1] > 0;
}
$node->safe_psql('postgres', q{
CREATE FUNCTION public.slow_insert() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN PERFORM pg_sleep(0.02); RETURN NEW; END$$;
CREATE TRIGGER slow_insert BEFORE INSERT ON setstream.events
    FOR EACH ROW EXECUTE FUNCTION public.slow_insert();
CREATE TRIGGER slow_update BEFORE UPDATE ON setstream.outbox
    FOR EACH ROW EXECUTE FUNCTION public.slow_insert()});

ok(wait_until(10, sub { http_client()->get("$base/jwks.json")->{status} == 200 }),
	'the listener serves');
my ($pid) = listener_pids($node);

# ------------------------------------------------------------ the clients

my $tmp = PostgreSQL::Test::Utils::tempdir();
my (%outfile, @harnesses);
for my $stream (sort keys %work)
{
	$outfile{$stream} = "$tmp/$stream.log";
	my ($stdout, $stderr) = ('', '');
	my @args = (
		$token{$stream}, $stream, @{ $work{$stream} }[ 0, 1 ],
		$outfile{$stream}, 50, $work{$stream}[2]);
	my @cmd =
	  $stream eq 'ws'
	  ? ('/usr/bin/python3', "$FindBin::RealBin/clients/ws_traffic.py",
		"ws://127.0.0.1:$port/streams/ws/pushpull", @args)
	  : ($^X, "$FindBin::RealBin/clients/traffic.pl", $stream, $base, @args);
	my $h = IPC::Run::start(
		\@cmd,
		'>', \$stdout, '2>', \$stderr,
		IPC::Run::timeout(70));
	push @harnesses, [ $stream, $h, \$stdout, \$stderr ];
}

# fraction of its work a client has done: answered inbound + acked outbound
sub progress
{
	my ($stream) = @_;
	my $n = 0;
	if (open my $fh, '<', $outfile{$stream})
	{
		while (my $line = <$fh>) { $n++ if $line =~ /^[AK] / }
		close $fh;
	}
	$n /= $work{$stream}[0] + $work{$stream}[1];
	return $n < 1 ? $n : 1;
}

sub all_between
{
	my ($low) = @_;
	my @p = map { progress($_) } sort keys %work;
	return !grep { $_ < $low } @p;
}

sub listener_back
{
	my ($old) = @_;
	my @new;
	my $ok = wait_until(25, sub { @new = listener_pids($node); @new == 1 && $new[0] != $old });
	return $ok ? $new[0] : undef;
}

for my $fault ('SIGKILL of the listener', 'immediate restart')
{
	my $low = $fault =~ /SIGKILL/ ? 0.2 : 0.5;
	ok(wait_until(40, sub { all_between($low) }), "$fault: every client is under way");
	my %at = map { ($_ => progress($_)) } sort keys %work;
	my @where;
	push @where, sprintf('%s %.0f%%', $_, 100 * $at{$_}) for sort keys %at;
	note("$fault with the clients at " . join(', ', @where));
	is(scalar(grep { $at{$_} >= 1 } keys %at), 0, "$fault: no client had finished");
	my $t0 = time;
	if ($fault =~ /SIGKILL/)
	{
		ok(kill('KILL', $pid), "$fault: SIGKILL pid $pid");
	}
	else
	{
		$node->stop('immediate');
		$node->start;
		pass("$fault: pg_ctl -m immediate stop, then start");
	}
	my $new = listener_back($pid);
	ok($new, "$fault: the listener is back")
	  and note(sprintf('%s: listener back after %.1f s', $fault, time - $t0));
	$pid = $new // $pid;
}

for my $hh (@harnesses)
{
	my ($stream, $h, $stdout, $stderr) = @$hh;
	eval { $h->finish; };
	if ($@)
	{
		diag("client $stream did not finish: $@");
		eval { $h->kill_kill; };
	}
	note($$stdout) if $$stdout ne '';
	diag($$stderr) if $$stderr ne '';
}

# ------------------------------------------------------------ the checks

# the client's log: (errors, {A}, {G}, {K}, violations: G after K)
sub read_log
{
	my ($stream) = @_;
	my (@errors, %a, %g, %k, @late);
	open my $fh, '<', $outfile{$stream} or die "$outfile{$stream}: $!";
	while (my $line = <$fh>)
	{
		chomp $line;
		my ($tag, $rest) = split / /, $line, 2;
		if ($tag eq 'A') { $a{$rest}++ }
		elsif ($tag eq 'G')
		{
			$g{$rest}++;
			push @late, $rest if $k{$rest};
		}
		elsif ($tag eq 'K') { $k{$rest}++ }
		else { push @errors, $line }
	}
	close $fh;
	return (\@errors, \%a, \%g, \%k, \@late);
}

sub stored
{
	my ($stream) = @_;
	my $rows = $node->safe_psql('postgres',
		"SELECT jti || ' ' || count(*) FROM setstream.events WHERE stream = '$stream' GROUP BY jti");
	return { map { split / / } split /\n/, $rows };
}

sub first_few { my @l = sort @_; return join(' ', @l[ 0 .. ($#l < 9 ? $#l : 9) ]) }

for my $stream (sort keys %work)
{
	my ($n_in, $n_out) = @{ $work{$stream} };
	my ($errors, $a, $g, $k, $late) = read_log($stream);
	is_deeply($errors, [], "$stream: no answer but success, 503 or a connection error");

	if ($n_in)
	{
		my $rows = stored($stream);
		# the WebSocket client sends new SETs until its acks are through
		cmp_ok(scalar(keys %$a), '>=', $n_in,
			"$stream: all $n_in inbound SETs were answered in the end");
		my @lost = grep { !$rows->{$_} } keys %$a;
		is_deeply(\@lost, [], "$stream: every SET answered is stored")
		  or diag('lost: ' . first_few(@lost));
		my @twice = grep { $rows->{$_} != 1 } keys %$rows;
		is_deeply(\@twice, [], "$stream: no SET is stored twice");
		my @extra = grep { !$a->{$_} } keys %$rows;
		is_deeply(\@extra, [], "$stream: nothing stored that was not answered");
	}
	if ($n_out)
	{
		is(scalar(keys %$k), $n_out, "$stream: all $n_out outbound SETs acknowledged in the end");
		is_deeply($late, [],
			"$stream: no SET delivered again after its acknowledgement was answered 200")
		  or diag('redelivered: ' . first_few(@$late));
		is($node->safe_psql('postgres',
				"SELECT count(*) FILTER (WHERE state = 'acked') || '/' || count(*) "
				  . "FROM setstream.outbox WHERE stream = '$stream'"),
			"$n_out/$n_out", "$stream: every outbox row is acked");
		my @acked_db = split /\n/, $node->safe_psql('postgres',
			"SELECT jti FROM setstream.outbox WHERE stream = '$stream' AND state = 'acked'");
		is_deeply([ sort keys %$k ], [ sort @acked_db ],
			"$stream: the SETs acknowledged are exactly the outbox's acked rows");
		is(scalar(grep { !$g->{$_} } @acked_db), 0,
			"$stream: every emitted SET was delivered before it was acked");
		note(sprintf('%s: %d deliveries for %d SETs', $stream,
				eval { my $s = 0; $s += $_ for values %$g; $s }, $n_out));
	}
}
my @pids = listener_pids($node);
is(scalar(@pids), 1, 'one listener at the end');

$node->stop;
done_testing();
