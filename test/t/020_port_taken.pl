
# Copyright (c) setstream contributors
#
# 020_port_taken.pl — setstream.port held by somebody else.
#
# Listeners bind with SO_REUSEPORT, which would let a second cluster of the
# same OS user on the same setstream.port take a share of the first one's
# connections.  The postmaster holds the port instead (listensock.c):
#
#   * cluster A serves port P; cluster B, started with the same P, logs a
#     WARNING at start, its listener says it has no socket and stays idle,
#     and every request on P is still answered by A (A's JWKS, A's token);
#   * B keeps running: no restart loop, one line, not one every 5 s;
#   * a plain process listening on a port: cluster C logs the WARNING too;
#   * once A is gone and B restarts, B serves P.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use FaultUtil;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use IO::Socket::INET;

sub new_node
{
	my ($name, $port) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'setstream'
setstream.port = $port
setstream.listen_addresses = '127.0.0.1'
setstream.workers = 2
});
	return $node;
}

# The kid of the stream's signing key in this cluster
sub stream_with_key
{
	my ($node) = @_;
	$node->safe_psql('postgres', 'CREATE EXTENSION IF NOT EXISTS setstream');
	$node->safe_psql('postgres', q{
SELECT setstream.create_stream('p', 'https://db.example.com/p', ARRAY['https://rx.example.com/p'])});
	return $node->safe_psql('postgres', "SELECT setstream.generate_key('p')->>'kid'");
}

sub jwks
{
	my ($port) = @_;
	my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 10);
	my $r = $http->request('GET', "http://127.0.0.1:$port/jwks.json");
	return $r->{status} == 200 ? $r->{content} : "status $r->{status}";
}

my $port = PostgreSQL::Test::Cluster::get_free_port();

my $a = new_node('a', $port);
$a->start;
my $kid_a = stream_with_key($a);
ok(wait_until(10, sub { slurp_file($a->logfile) =~ /setstream listener 1 serving/ }),
	'cluster A serves the port');
like(jwks($port), qr/\Q$kid_a\E/, "A's key is served on the port");

my $b = new_node('b', $port);
$b->start;
my $kid_b = stream_with_key($b);
ok( wait_until(
		10,
		sub {
			my $log = slurp_file($b->logfile);
			$log =~ /WARNING:  setstream: could not listen on "127\.0\.0\.1" port $port: Address already in use/
			  && $log =~ /setstream listener 0 has no listen socket/
			  && $log =~ /setstream listener 1 has no listen socket/;
		}),
	'cluster B warns at start that the port is taken, and its listeners say they have no socket');

my ($only_a, @other) = (0);
for my $i (1 .. 40)
{
	my $body = jwks($port);
	if ($body =~ /\Q$kid_a\E/ && $body !~ /\Q$kid_b\E/) { $only_a++ }
	else { push @other, $body }
}
is($only_a, 40, '40 new connections on the port all reach cluster A')
  or diag(join("\n", @other[ 0 .. ($#other < 2 ? $#other : 2) ]));

sleep 6;	# longer than a listener restart (5 s)
my @lines = (slurp_file($b->logfile) =~ /has no listen socket/g);
is(scalar @lines, 2, 'B logs it once per listener, and does not restart them');
is( $b->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'setstream listener'"),
	'2', "B's listeners are alive (idle)");

# a plain process on another port
my $plain = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1',
	LocalPort => 0,
	Listen => 5,
	ReuseAddr => 1) or die "listen: $!";
my $plain_port = $plain->sockport;
my $c = new_node('c', $plain_port);
$c->start;
ok( wait_until(
		10,
		sub {
			slurp_file($c->logfile)
			  =~ /WARNING:  setstream: could not listen on "127\.0\.0\.1" port $plain_port/;
		}),
	'a port a plain process listens on: the WARNING too');
$c->stop;
close $plain;

# A gone: B serves the port after its restart
$a->stop;
$b->restart;
ok(wait_until(10, sub { jwks($port) =~ /\Q$kid_b\E/ }),
	'after A stops and B restarts, B serves the port');
$b->stop;

done_testing();
