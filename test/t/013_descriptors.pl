
# Copyright (c) setstream contributors
#
# 013_descriptors.pl — the listener and its open files limit.
#
#   * the listener lifts its soft RLIMIT_NOFILE to the hard limit: with
#     the postmaster's soft limit lowered (prlimit), a restarted listener
#     runs with soft = hard;
#   * out of descriptors (the listener's limit lowered to a few more than
#     it has open), new connections are answered 503 with Retry-After: 1
#     and closed (the spare descriptor makes room to accept them), the log
#     says why, and once connections close the listener serves again.
#
# Needs prlimit (util-linux).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use FaultUtil;
use IO::Select;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $prlimit = (grep { -x "$_/prlimit" } split /:/, "$ENV{PATH}:/usr/bin:/bin")[0];
if (!defined $prlimit)
{
	plan skip_all => 'prlimit (util-linux) is not installed';
}
$prlimit .= '/prlimit';

# (soft, hard) open files limit of a process
sub nofile
{
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/limits" or die "/proc/$pid/limits: $!";
	while (<$fh>)
	{
		return ($1, $2) if /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/;
	}
	die "no open files limit in /proc/$pid/limits";
}

my ($node, $port) = start_node('descriptors');
my ($pm) = split /\n/, slurp_file($node->data_dir . '/postmaster.pid');
my ($old) = listener_pids($node);
ok($old, "the listener runs (pid $old)");

my ($pm_soft, $hard) = nofile($pm);
note("postmaster open files: soft $pm_soft, hard $hard");
my $low = $hard eq 'unlimited' ? 256 : ($hard > 256 ? 256 : $hard - 1);
system($prlimit, '--pid', $pm, "--nofile=$low:$hard") == 0
  or BAIL_OUT("prlimit on the postmaster failed");
is((nofile($pm))[0], $low, "the postmaster's soft limit is now $low");

# a new listener (forked by the postmaster) inherits that soft limit
ok(kill('TERM', $old), 'terminate the listener');
my $new;
ok( wait_until(
		20,
		sub {
			($new) = grep { $_ != $old } listener_pids($node);
			return $new;
		}),
	'the supervisor starts a new listener');
ok( wait_until(
		10,
		sub {
			my $s = raw_connect($port) or return 0;
			print $s "GET /jwks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
			my $r = join '', <$s>;
			return $r =~ m{^HTTP/1\.1 200};
		}),
	'the new listener serves');
my ($soft) = nofile($new);
is($soft, $hard, "the listener lifted its soft open files limit to the hard one ($hard)");

# ---------------------------------------------------------- out of fds

opendir my $dh, "/proc/$new/fd" or die "/proc/$new/fd: $!";
my $open = scalar(grep { !/^\./ } readdir $dh);
closedir $dh;
my $limit = $open + 3;
system($prlimit, '--pid', $new, "--nofile=$limit:$limit") == 0
  or BAIL_OUT("prlimit on the listener failed");
note("listener has $open descriptors open; its limit is now $limit");

my $log_offset = -s $node->logfile;
my @socks = grep { defined } map { raw_connect($port) } 1 .. 10;
is(scalar(@socks), 10, 'ten connections are made (the kernel accepts them)');
my (@refused, @held);
for my $s (@socks)
{
	my $got = '';
	if (IO::Select->new($s)->can_read(3))
	{
		while (IO::Select->new($s)->can_read(0.5))
		{
			my $n = sysread($s, my $chunk, 4096);
			last unless $n;
			$got .= $chunk;
		}
	}
	if ($got eq '') { push @held, $s }
	else { push @refused, $got }
}
note(sprintf('%d connections held, %d refused', scalar(@held), scalar(@refused)));
# the limit leaves about three descriptors free (the listener may close
# or open a file of its own meanwhile): most of the ten are refused
ok(@held >= 1, 'the listener keeps the connections it has descriptors for');
ok(@refused >= 4, 'the others are refused') or diag(explain \@refused);
is( scalar(grep { m{^HTTP/1\.1 503 .*\r\nRetry-After: 1\r\n}s } @refused),
	scalar(@refused),
	'each refused connection got 503 with Retry-After: 1');
ok( wait_until(
		5,
		sub {
			my $log = slurp_file($node->logfile, $log_offset);
			return $log =~ /out of file descriptors/;
		}),
	'the log says the listener is out of file descriptors');

close $_ for @held;
ok( wait_until(
		10,
		sub {
			my $s = raw_connect($port) or return 0;
			print $s "GET /jwks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
			IO::Select->new($s)->can_read(3) or return 0;
			my $r = join '', <$s>;
			return $r =~ m{^HTTP/1\.1 200};
		}),
	'once connections close the listener serves again');
is(scalar(listener_pids($node)), 1, 'one listener');
is((listener_pids($node))[0], $new, 'the same listener process');

$node->stop;
done_testing();
