/*-------------------------------------------------------------------------
 *
 * fuzz_client.c
 *	  libFuzzer target: what a peer sends back on a connection setstream
 *	  opens itself, through the client seams of the listener's code:
 *
 *	  - an HTTP response (or several, keep-alive), read in pieces by
 *	    http.c's parser in HTTP_RESPONSE mode (http_parse_response): the
 *	    status is three digits, the body never exceeds its bound, no byte
 *	    is used twice;
 *	  - or, after a 101, a server's WebSocket frames read by ws.c on the
 *	    client side (ws_start_client: our frames are masked, the server's
 *	    must not be), messages taken from the inbox as a turn would.
 *
 *	  Input: a byte that picks the mode (0x40: WebSocket) and the body
 *	  bound (0x10: 64 bytes, else 1 MiB), a byte for how the rest is cut
 *	  into reads (fixture_next_chunk), then the peer's bytes.
 *
 *-------------------------------------------------------------------------
 */
#include "shim.h"

#include <stdio.h>
#include <stdlib.h>

#include "utils/memutils.h"

#include "server/ws_int.h"

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_client: %s\n", what);
	abort();
}

static void
run_responses(const uint8 *data, size_t size, uint32 plan, int64 max_body)
{
	http_parser parser;
	HttpResponse resp;

	http_response_init(&parser, &resp, max_body);
	while (size > 0)
	{
		size_t		n = fixture_next_chunk(&plan, size);
		size_t		used = http_parse_response(&parser, &resp, (const char *) data, n);

		if (used > n)
			fail("the parser used more bytes than it was given");
		if (resp.body.len > max_body)
			fail("a response body is over its bound");
		if (resp.error != NULL)
			return;				/* the connection would close */
		if (resp.complete)
		{
			if (resp.status < 100 || resp.status > 999)
				fail("a complete response has no three-digit status");
			if (!resp.keep_alive)
				return;
			http_response_init(&parser, &resp, max_body);	/* the next one */
		}
		else if (used < n)
			fail("the parser stopped short without an error or a response");
		data += used;
		size -= used;
	}
}

static void
run_ws_client(const uint8 *data, size_t size, uint32 plan, MemoryContext cxt)
{
	Conn	   *conn = palloc0(sizeof(Conn));
	bool		alive;

	conn->cxt = AllocSetContextCreate(cxt, "fuzz connection",
									  ALLOCSET_DEFAULT_SIZES);
	conn->sock.ssl = fixture_tls(); /* the fixture plays TLS (fixture.c) */
	sock_init_buffers(&conn->sock, conn->cxt);
	fixture_feed(NULL, 0, false);
	alive = ws_start_client(conn);
	while (alive)
	{
		size_t		n = fixture_next_chunk(&plan, size);

		fixture_feed(data, n, n == 0);
		alive = ws_on_event(conn, 1);
		data += n - fixture_feed_left();
		size -= n - fixture_feed_left();
		if (ws_has_input(conn))
			ws_inbox_clear(conn);	/* a turn took them */
		if (n == 0)
			break;
	}
	ws_free(conn);
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	MemoryContext cxt;
	int64		max_body;

	if (size < 2)
		return 0;
	fixture_init();
	cxt = fuzz_input_begin();
	max_body = (data[0] & 0x10) ? 64 : 1024 * 1024;
	setstream_max_request_bytes = (int) max_body;
	if (data[0] & 0x40)
		run_ws_client(data + 2, size - 2, data[1], cxt);
	else
		run_responses(data + 2, size - 2, data[1], max_body);
	fuzz_input_end(cxt);
	return 0;
}
