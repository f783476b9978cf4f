
# Copyright (c) setstream contributors
#
# clients/traffic.pl — one load client for the crash tests
# (006_crash_under_traffic.pl).  Not a test file itself.
#
#   perl clients/traffic.pl MODE BASE TOKEN STREAM N_IN N_OUT OUTFILE SECONDS PAUSE_MS
#
# MODE is push (RFC 8935), pushpull (HTTP binding) or poll (RFC 8936).  The
# client is sequential; it retries a request unchanged after a connection
# error or a 503 (the server restarting), so its OUTFILE is an ordered log:
#   A jti     an inbound SET answered 202 (push) or acknowledged (pushpull)
#   G jti     an outbound SET received (poll or pushpull response)
#   K jti     the server answered 200 to a request acknowledging this SET
#   E ...     any other answer (never expected)
# It stops when every inbound SET is answered and N_OUT outbound SETs are
# acknowledged, or after SECONDS.

use strict;
use warnings;

use HTTP::Tiny;
use IO::Handle;
use JSON::PP;
use MIME::Base64 qw(encode_base64url);
use Time::HiRes qw(time usleep);

delete @ENV{qw(http_proxy HTTP_PROXY all_proxy ALL_PROXY)};

my ($mode, $base, $token, $stream, $n_in, $n_out, $outfile, $seconds, $pause_ms) = @ARGV;
my $deadline = time + $seconds;
my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 10);
my $json = JSON::PP->new->canonical;
open my $out, '>>', $outfile or die "$outfile: $!";
$out->autoflush(1);

my $EVENT = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked';

sub unsigned_set
{
	my ($jti) = @_;
	my $claims = sprintf(
		'{"iss":"https://idp.example.com/","aud":"https://db.example.com/%s","iat":%d,'
		  . '"jti":"%s","sub_id":{"format":"opaque","id":"%s"},'
		  . '"events":{"%s":{"initiating_entity":"policy"}}}',
		$stream, time, $jti, $jti, $EVENT);
	return encode_base64url('{"alg":"none","typ":"secevent+jwt"}') . '.'
	  . encode_base64url($claims) . '.';
}

# post(PATH, CTYPE, BODY): the response, retried on 599 and 503; undef at
# the deadline
my %retries;
sub post
{
	my ($path, $ctype, $body) = @_;
	while (time < $deadline)
	{
		my $r = $http->request('POST', "$base/streams/$stream/$path",
			{
				headers => {
					'Content-Type' => $ctype,
					'Authorization' => "Bearer $token"
				},
				content => $body
			});
		return $r unless $r->{status} == 599 || $r->{status} == 503;
		$retries{ $r->{status} }++;
		usleep(50_000);
	}
	return undef;
}

sub error
{
	my ($what, $r) = @_;
	(my $body = $r->{content} // '') =~ s/\s+/ /g;
	print $out "E $what $r->{status} $body\n";
}

my @inbound = map { sprintf('%s-%04d', $stream, $_) } 1 .. $n_in;
my (%acked_in, %got, %acked_out);
my @to_ack;

# The server answered 200 to a request that acknowledged @$sent: log
# those, and the outbound SETs of the response.
sub settle
{
	my ($sent, $sets) = @_;
	for my $jti (@$sent)
	{
		print $out "K $jti\n" unless $acked_out{$jti}++;
	}
	@to_ack = sort keys %$sets;
	for my $jti (@to_ack)
	{
		print $out "G $jti\n";
		$got{$jti}++;
	}
}

sub done
{
	return scalar(keys %acked_in) == $n_in && scalar(keys %acked_out) >= $n_out;
}

if ($mode eq 'push')
{
	for my $jti (@inbound)
	{
		my $r = post('events', 'application/secevent+jwt', unsigned_set($jti)) or last;
		if ($r->{status} == 202)
		{
			print $out "A $jti\n";
			$acked_in{$jti} = 1;
		}
		else
		{
			error($jti, $r);
		}
		usleep($pause_ms * 1000);
	}
}
else
{
	while (!done() && time < $deadline)
	{
		my @sent = @to_ack;
		my ($path, %req) = ($mode);
		if ($mode eq 'pushpull')
		{
			my @batch = (grep { !$acked_in{$_} } @inbound)[ 0 .. 1 ];
			@batch = grep { defined } @batch;
			%req = (
				sets => { map { ($_ => unsigned_set($_)) } @batch },
				ack => \@sent,
				maxResponseEvents => 2);
		}
		else
		{
			%req = (ack => \@sent, maxEvents => 2, returnImmediately => JSON::PP::true);
		}
		my $r = post($path, 'application/json', $json->encode(\%req)) or last;
		if ($r->{status} != 200)
		{
			error($mode, $r);
			usleep(200_000);
			next;
		}
		my $resp = eval { $json->decode($r->{content}) };
		if (!$resp)
		{
			error("$mode unparsable", $r);
			next;
		}
		for my $jti (@{ $resp->{ack} // [] })
		{
			print $out "A $jti\n" unless $acked_in{$jti}++;
		}
		for my $jti (sort keys %{ $resp->{setErrs} // {} })
		{
			print $out "E setErr $jti " . $json->encode($resp->{setErrs}{$jti}) . "\n";
		}
		settle(\@sent, $resp->{sets} // {});
		# nothing due: the rest is delivered, or due again later
		usleep(@to_ack ? $pause_ms * 1000 : 200_000);
	}
}
printf "%s: %d in, %d out acked, %d out received; retries 599: %d, 503: %d\n",
  $mode, scalar(keys %acked_in), scalar(keys %acked_out), scalar(keys %got),
  $retries{599} // 0, $retries{503} // 0;
