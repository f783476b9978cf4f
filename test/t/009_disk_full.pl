
# Copyright (c) setstream contributors
#
# 009_disk_full.pl — setstream.events lives on a tablespace that fills up
# (ENOSPC), then gets space back.
#
# Needs a small tmpfs the postgres user can write: scripts/test.sh mounts
# one when run as root (as CI does) and passes it in SETSTREAM_TMPFS.
# Without it the test skips and says why, except when
# SETSTREAM_TMPFS_REQUIRED is set (scripts/test.sh sets it as root and with
# CI=true): then the missing tmpfs is a failure.
#
#   * setstream.events is moved to a tablespace on the tmpfs, and a filler
#     file takes every free byte;
#   * pushes are answered 202 while the table's last page has room, then
#     503 with Retry-After (the heap cannot be extended: disk full); the
#     SET answered 503 is not stored, and a pushpull Communication Object
#     carrying it is answered 503 too;
#   * the listener keeps its pid and the log names the cause;
#   * once the filler is removed the same SET is answered 202, without a
#     restart, and every SET answered 202 is stored exactly once.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use FaultUtil;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $tmpfs = $ENV{SETSTREAM_TMPFS};
if ((!defined $tmpfs || !-d $tmpfs || !-w $tmpfs)
	&& $ENV{SETSTREAM_TMPFS_REQUIRED})
{
	# as root or under CI (scripts/test.sh sets SETSTREAM_TMPFS_REQUIRED)
	# the tmpfs must be there: a skip would hide that this never ran
	plan tests => 1;
	fail('a writable tmpfs in SETSTREAM_TMPFS (required as root and under CI=true; scripts/test.sh could not mount one)');
	exit 0;
}
if (!defined $tmpfs || !-d $tmpfs || !-w $tmpfs)
{
	# one visible skip, which scripts/test.sh counts in its summary
	plan tests => 1;
  SKIP:
	{
		skip 'needs a writable tmpfs in SETSTREAM_TMPFS (scripts/test.sh mounts one when run as root)', 1;
	}
	exit 0;
}

my ($node, $port) = start_node('disk_full');
my $base = "http://127.0.0.1:$port";
my $token = make_stream($node, 'full', 0);

my $ts = "$tmpfs/ts_$$";
mkdir $ts or die "$ts: $!";
$node->safe_psql('postgres', "CREATE TABLESPACE small LOCATION '$ts'");
$node->safe_psql('postgres', 'ALTER TABLE setstream.events SET TABLESPACE small');

my $http = http_client();
sub post
{
	my ($path, $ctype, $body) = @_;
	return $http->request('POST', "$base/streams/full/$path",
		{
			headers => {
				'Content-Type' => $ctype,
				'Authorization' => "Bearer $token"
			},
			content => $body
		});
}
sub push_set { post('events', 'application/secevent+jwt', unsigned_set('full', $_[0])) }

my %answered;
ok(wait_until(10, sub { push_set('full-0000')->{status} == 202 }),
	'a push is stored on the tablespace');
$answered{'full-0000'} = 1;

# Take every free byte of the tmpfs
my $filler = "$tmpfs/filler_$$";
open my $fh, '>', $filler or die "$filler: $!";
binmode $fh;
my $chunk = "\0" x (1024 * 1024);
my $written = 0;
for my $size (1024 * 1024, 4096)
{
	$chunk = "\0" x $size;
	while (1)
	{
		my $n = syswrite($fh, $chunk);
		last unless defined $n && $n == $size;
		$written += $n;
	}
}
close $fh;
note("filler took $written bytes");
cmp_ok($written, '>', 0, 'the filler file took the free space');

# Push until one is refused: the last page's free room goes first
my ($refused, $r);
my $log_offset = -s $node->logfile;
for my $i (1 .. 300)
{
	my $jti = sprintf('full-%04d', $i);
	$r = push_set($jti);
	if ($r->{status} == 202)
	{
		$answered{$jti} = 1;
		next;
	}
	$refused = $jti;
	last;
}
ok(defined $refused, 'a push is refused once the heap cannot grow')
  or BAIL_OUT('the table never filled');
note(scalar(keys %answered) . " SETs answered 202 before $refused was refused");
is($r->{status}, 503, 'disk full: the push is answered 503');
is($r->{headers}{'retry-after'}, '1', 'disk full: with Retry-After: 1');
like($r->{content}, qr/^\{"err":"temporarily_unavailable","description":"[^"]+"\}$/,
	'disk full: and a JSON body with err temporarily_unavailable and a description');

my $co = sprintf('{"sets":{"%s":"%s"}}', $refused, unsigned_set('full', $refused));
is(post('pushpull', 'application/json', $co)->{status},
	503, 'disk full: a Communication Object carrying the SET is answered 503');
is(push_set($refused)->{status}, 503, 'disk full: a retry is answered 503 again');

is($node->safe_psql('postgres',
		"SELECT count(*) FROM setstream.events WHERE jti = '$refused'"),
	'0', 'disk full: the refused SET is not stored');
my ($pid) = listener_pids($node);
ok($pid, 'disk full: the listener keeps running');
like(slurp_file($node->logfile, $log_offset), qr/No space left on device|could not extend file/,
	'disk full: the server log names the cause');

# ------------------------------------------------------------ space back

unlink $filler or die "$filler: $!";
ok(wait_until(10, sub { push_set($refused)->{status} == 202 }),
	'space back: the refused SET is answered 202, without a restart');
$answered{$refused} = 1;
is_deeply([ listener_pids($node) ], [$pid], 'space back: the same listener process');

my $rows = $node->safe_psql('postgres',
	"SELECT jti || ' ' || count(*) FROM setstream.events GROUP BY jti");
my %stored = map { split / / } split /\n/, $rows;
is_deeply(\%stored, { map { ($_ => 1) } keys %answered },
	'space back: exactly the SETs answered 202 are stored, each once');

$node->safe_psql('postgres', 'ALTER TABLE setstream.events SET TABLESPACE pg_default');
$node->safe_psql('postgres', 'DROP TABLESPACE small');
$node->stop;
done_testing();
