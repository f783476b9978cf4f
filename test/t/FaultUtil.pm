
# Copyright (c) setstream contributors
#
# FaultUtil.pm — helpers shared by the fault-injection TAP tests
# (test/t/006_* and later): a node with the listener, streams, unsigned
# SETs, raw HTTP over a socket, the listener's pids and connection count,
# and waiting for a condition.

package FaultUtil;

use strict;
use warnings;

use Exporter 'import';
use HTTP::Tiny;
use IO::Socket::INET;
use MIME::Base64 qw(encode_base64 encode_base64url);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(
  wait_until try_psql listener_pids listener_connections start_node
  make_stream unsigned_set raw_connect raw_request http_client
  ws_open ws_frame ws_read_frame
  EVENT_TYPE PEER_ISS
);

delete @ENV{qw(http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY)};

use constant EVENT_TYPE =>
  'https://schemas.openid.net/secevent/caep/event-type/session-revoked';
use constant PEER_ISS => 'https://idp.example.com/';

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

# psql that tolerates a server that is down or in crash recovery:
# (rc, stdout, stderr)
sub try_psql
{
	my ($node, $sql, $db) = @_;
	my ($stdout, $stderr) = ('', '');
	my $rc = $node->psql($db // 'postgres', $sql,
		stdout => \$stdout, stderr => \$stderr,
		on_error_die => 0, timeout => 10);
	return ($rc, $stdout, $stderr);
}

sub listener_pids
{
	my ($node) = @_;
	my ($rc, $out) = try_psql($node,
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'setstream listener' ORDER BY pid");
	return () if $rc != 0;
	return grep { /^\d+$/ } split /\n/, $out;
}

# The listener's open client connections (setstream.listener_stats())
sub listener_connections
{
	my ($node) = @_;
	my ($rc, $out) = try_psql($node,
		'SELECT connections FROM setstream.listener_stats()');
	return $rc == 0 ? $out : undef;
}

# start_node(NAME, EXTRA_CONF): a started node with the listener on a free
# port and the extension created.  Returns (node, http_port).
sub start_node
{
	my ($name, $extra) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	my $http_port = PostgreSQL::Test::Cluster::get_free_port();
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'setstream'
setstream.port = $http_port
setstream.listen_addresses = '127.0.0.1'
restart_after_crash = on
log_min_messages = warning
} . ($extra // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION setstream');
	# CREATE EXTENSION creates the listener's role; the supervisor, which
	# looks for it every 2 s, then starts the listener
	wait_until(30, sub { scalar(listener_pids($node)) >= 1 })
	  or die "no setstream listener started within 30 s";
	return ($node, $http_port);
}

# make_stream(NODE, NAME, SIGNING): a stream that accepts unsigned SETs
# from PEER_ISS (its issuer, the inbound aud, is https://db.example.com/NAME),
# with a signing key when SIGNING.  Returns its bearer token.
sub make_stream
{
	my ($node, $name, $signing) = @_;
	$node->safe_psql('postgres', qq{
SELECT setstream.create_stream('$name', 'https://db.example.com/$name',
    ARRAY['https://receiver.example.com/$name'],
    peer_issuer => '@{[PEER_ISS]}', allow_unsigned => true)});
	$node->safe_psql('postgres', "SELECT setstream.generate_key('$name')")
	  if $signing;
	return $node->safe_psql('postgres', "SELECT setstream.issue_token('$name')");
}

# An unsigned SET that stream NAME accepts
sub unsigned_set
{
	my ($name, $jti) = @_;
	my $claims = sprintf(
		'{"iss":"%s","aud":"https://db.example.com/%s","iat":%d,"jti":"%s",'
		  . '"sub_id":{"format":"opaque","id":"%s"},'
		  . '"events":{"%s":{"initiating_entity":"policy"}}}',
		PEER_ISS, $name, time, $jti, $jti, EVENT_TYPE);
	return encode_base64url('{"alg":"none","typ":"secevent+jwt"}') . '.'
	  . encode_base64url($claims) . '.';
}

sub raw_connect
{
	my ($port) = @_;
	return IO::Socket::INET->new(
		PeerAddr => '127.0.0.1',
		PeerPort => $port,
		Proto => 'tcp',
		Timeout => 5);
}

# The bytes of one HTTP/1.1 POST
sub raw_request
{
	my ($path, $token, $ctype, $body) = @_;
	return "POST $path HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	  . "Authorization: Bearer $token\r\nContent-Type: $ctype\r\n"
	  . 'Content-Length: ' . length($body) . "\r\n\r\n" . $body;
}

sub http_client
{
	return HTTP::Tiny->new(timeout => 10, keep_alive => 0);
}

# ws_open(PORT, STREAM, TOKEN): a socket upgraded to the pushpull
# WebSocket of STREAM, and the handshake's answer: (socket, response head)
sub ws_open
{
	my ($port, $stream, $token) = @_;
	my $s = raw_connect($port) or return;
	my $key = encode_base64(join('', map { chr(int(rand(256))) } 1 .. 16), '');
	syswrite($s,
		    "GET /streams/$stream/pushpull HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		  . "Authorization: Bearer $token\r\nUpgrade: websocket\r\n"
		  . "Connection: Upgrade\r\nSec-WebSocket-Key: $key\r\n"
		  . "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: pushpull\r\n\r\n");
	my $head = '';
	my $deadline = time + 5;
	# byte by byte: nothing after the head may be consumed here
	while ($head !~ /\r\n\r\n$/ && time < $deadline)
	{
		my $rin = '';
		vec($rin, fileno($s), 1) = 1;
		next unless select(my $rout = $rin, undef, undef, 0.1);
		last unless sysread($s, my $c, 1);
		$head .= $c;
	}
	return ($s, $head);
}

# The bytes of a masked (client) text frame carrying PAYLOAD (< 64 KiB)
sub ws_frame
{
	my ($payload) = @_;
	my @mask = map { int(rand(256)) } 1 .. 4;
	my $masked = join('',
		map { chr(ord(substr($payload, $_, 1)) ^ $mask[ $_ % 4 ]) } 0 .. length($payload) - 1);
	return chr(0x81) . chr(0x80 | 126) . pack('n', length $payload)
	  . pack('C4', @mask) . $masked;
}

# ws_read_frame(SOCKET, SECONDS): the next server frame as (opcode,
# payload), or () at a timeout or EOF
sub ws_read_frame
{
	my ($s, $seconds) = @_;
	my $buf = '';
	my $want = 2;
	my $deadline = time + $seconds;
	my ($len, $hdr);
	while (time < $deadline)
	{
		my $rin = '';
		vec($rin, fileno($s), 1) = 1;
		next unless select(my $rout = $rin, undef, undef, 0.1);
		my $n = sysread($s, $buf, 65536, length $buf);
		return () unless $n;
		next if length($buf) < 2;
		$len = ord(substr($buf, 1, 1)) & 0x7f;
		$hdr = 2;
		($len, $hdr) = (unpack('n', substr($buf, 2, 2)), 4) if $len == 126 && length($buf) >= 4;
		($len, $hdr) = (unpack('Q>', substr($buf, 2, 8)), 10) if $len == 127 && length($buf) >= 10;
		return (ord(substr($buf, 0, 1)) & 0x0f, substr($buf, $hdr, $len))
		  if length($buf) >= $hdr + $len;
	}
	return ();
}

1;
