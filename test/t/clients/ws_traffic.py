"""ws_traffic.py — the pushpull WebSocket load client of the crash test
(test/t/006_crash_under_traffic.pl).  Not a test itself.

    /usr/bin/python3 ws_traffic.py WS_URL TOKEN STREAM N_IN N_OUT OUTFILE SECONDS PAUSE_MS

Sequential: each message it sends carries one new inbound SET and the
acks of (at most two of) the SETs received and not yet acknowledged.  The server answers
the inbound SET (ack) in a later message only after the commit of the turn
that read the whole message, so that answer also proves that the acks it
carried were committed.  OUTFILE is the ordered log that traffic.pl
writes too (A inbound acknowledged, G outbound received, K outbound ack
committed, E anything unexpected).  On a dropped connection it reconnects
and sends the unanswered message again.  It stops when at least N_IN
inbound SETs are acknowledged and N_OUT outbound SETs acked, or after
SECONDS.
"""

import asyncio
import base64
import json
import sys
import time
import warnings

import websockets

# websockets 14 made a new client the default (additional_headers=,
# InvalidStatus, no .open); the legacy client, with the API these tests use,
# is there from 10.4 (Debian 12) to 15 (Debian 13), deprecated from 14 on.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from websockets.legacy.client import connect as ws_connect

EVENT = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_set(stream, jti):
    claims = {"iss": "https://idp.example.com/", "aud": "https://db.example.com/" + stream,
              "iat": int(time.time()), "jti": jti,
              "sub_id": {"format": "opaque", "id": jti},
              "events": {EVENT: {"initiating_entity": "policy"}}}
    return (b64u(b'{"alg":"none","typ":"secevent+jwt"}') + "."
            + b64u(json.dumps(claims).encode()) + ".")


class Client:
    def __init__(self, argv):
        (self.url, self.token, self.stream, n_in, n_out, outfile, seconds,
         pause_ms) = argv
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.deadline = time.time() + float(seconds)
        self.pause = int(pause_ms) / 1000.0
        self.out = open(outfile, "a", buffering=1)
        self.acked_in, self.got, self.acked_out = set(), set(), set()
        self.to_ack = []          # received, not yet sent back
        self.next_in = 0
        self.pending = None       # (jti, acks) of the unanswered message
        self.reconnects = 0

    def log(self, line):
        self.out.write(line + "\n")

    def done(self):
        return len(self.acked_in) >= self.n_in and len(self.acked_out) >= self.n_out

    def on_message(self, text):
        try:
            obj = json.loads(text)
        except ValueError:
            self.log("E unparsable " + text[:200].replace("\n", " "))
            return
        for jti in sorted(obj.get("sets", {})):
            self.log("G " + jti)
            self.got.add(jti)
            if jti not in self.to_ack and jti not in self.acked_out:
                self.to_ack.append(jti)
        for jti, err in sorted(obj.get("setErrs", {}).items()):
            self.log("E setErr %s %s" % (jti, json.dumps(err)))
        for jti in obj.get("ack", []):
            if jti not in self.acked_in:
                self.log("A " + jti)
                self.acked_in.add(jti)
            if self.pending and jti == self.pending[0]:
                for sent in self.pending[1]:
                    if sent not in self.acked_out:
                        self.log("K " + sent)
                        self.acked_out.add(sent)
                self.pending = None

    async def session(self):
        async with ws_connect(
                self.url, subprotocols=["pushpull"], open_timeout=5,
                extra_headers={"Authorization": "Bearer " + self.token}) as ws:
            if self.pending:          # resend what the lost connection held
                await self.send(ws, *self.pending)
            while not self.done() and time.time() < self.deadline:
                if self.pending is None:
                    self.next_in += 1
                    jti = "%s-%04d" % (self.stream, self.next_in)
                    # two acks a message: the acks spread over the run
                    acks, self.to_ack = self.to_ack[:2], self.to_ack[2:]
                    self.pending = (jti, acks)
                    await self.send(ws, jti, acks)
                # read until the pending message is answered
                limit = time.time() + 5
                while self.pending and time.time() < limit:
                    try:
                        text = await asyncio.wait_for(ws.recv(), limit - time.time())
                    except asyncio.TimeoutError:
                        break
                    self.on_message(text)
                if self.pending:      # no answer in time: send it again
                    await self.send(ws, *self.pending)
                    continue
                await asyncio.sleep(self.pause)

    async def send(self, ws, jti, acks):
        await ws.send(json.dumps({"sets": {jti: unsigned_set(self.stream, jti)},
                                  "ack": acks}))

    async def run(self):
        while not self.done() and time.time() < self.deadline:
            try:
                await self.session()
            except (OSError, asyncio.TimeoutError,
                    websockets.exceptions.WebSocketException) as e:
                # the unanswered message (its acks may not have been
                # committed) is sent again as it was on the next connection
                self.reconnects += 1
                if isinstance(e, websockets.exceptions.InvalidStatusCode) \
                        and e.status_code != 503:
                    self.log("E connect %s" % e)
                await asyncio.sleep(0.1)
        print("ws: %d in, %d out acked, %d out received; reconnects: %d"
              % (len(self.acked_in), len(self.acked_out), len(self.got),
                 self.reconnects))


if __name__ == "__main__":
    asyncio.run(Client(sys.argv[1:]).run())
