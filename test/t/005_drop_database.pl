
# Copyright (c) setstream contributors
#
# 005_drop_database.pl — setstream.database is dropped under a running
# listener, and created again.
#
#   * before the database exists, the supervisor logs once that it waits
#     for it; no listener crash-loops;
#   * DROP DATABASE ... WITH (FORCE) ends the listener; the supervisor logs
#     once that it waits for the database, and the log stays quiet (no
#     FATAL "does not exist", no worker exits) while it is missing;
#   * after CREATE DATABASE and CREATE EXTENSION, GET /jwks.json answers
#     200 again.
#
# No sender (setstream.senders = 0): the exits counted are the listener's.

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

sub count_matches
{
	my ($text, $re) = @_;
	my $n = () = $text =~ /$re/g;
	return $n;
}

my $node = PostgreSQL::Test::Cluster->new('dropdb');
$node->init;
my $http_port = PostgreSQL::Test::Cluster::get_free_port();
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'setstream'
setstream.port = $http_port
setstream.listen_addresses = '127.0.0.1'
setstream.database = 'sdb'
setstream.senders = 0
});
$node->start;
my $base = "http://127.0.0.1:$http_port";
my $http = HTTP::Tiny->new(timeout => 5);
my $waits = qr/setstream listener waits for database "sdb" \(setstream\.database\) to exist/;

ok( wait_until(10, sub { slurp_file($node->logfile) =~ $waits }),
	'before the database exists, the supervisor logs that it waits for it');
sleep 3;
my $log = slurp_file($node->logfile);
is(count_matches($log, $waits), 1, 'it says so once');
is(count_matches($log, qr/FATAL/), 0, 'no FATAL while the database is missing');

$node->safe_psql('postgres', 'CREATE DATABASE sdb');
$node->safe_psql('sdb', 'CREATE EXTENSION setstream');
ok( wait_until(15, sub { $http->get("$base/jwks.json")->{status} == 200 }),
	'once the database and the extension exist, GET /jwks.json answers 200');

my $offset = -s $node->logfile;
$node->safe_psql('postgres', 'DROP DATABASE sdb WITH (FORCE)');
ok( wait_until(10, sub { $http->get("$base/jwks.json")->{status} != 200 }),
	'after DROP DATABASE the listener no longer serves');
ok( wait_until(15, sub { slurp_file($node->logfile, $offset) =~ $waits }),
	'the supervisor logs that it waits for the database again');
sleep 6;
$log = slurp_file($node->logfile, $offset);
is(count_matches($log, $waits), 1, 'once');
is(count_matches($log, qr/database "sdb" does not exist/), 0,
	'no listener tries to connect to the missing database');
is(count_matches($log, qr/exited with exit code/), 1,
	'only the listener ended by DROP DATABASE exited: no restart loop');

$node->safe_psql('postgres', 'CREATE DATABASE sdb');
$node->safe_psql('sdb', 'CREATE EXTENSION setstream');
ok( wait_until(20, sub { $http->get("$base/jwks.json")->{status} == 200 }),
	'after the database is created again, the listener serves');

$node->stop;
done_testing();
