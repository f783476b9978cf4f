/*-------------------------------------------------------------------------
 *
 * fuzz_ws.c
 *	  libFuzzer target: bytes from a peer on an upgraded pushpull
 *	  connection, read in pieces, through the real ws.c session (wslay's
 *	  frame parser: masking, fragmentation, control frames, close, message
 *	  size limits) and, for each turn, route_ws_prepare: the inbound
 *	  Communication Objects parsed and their SETs verified, as the listener
 *	  does before the turn's transaction.  The database part of the turn
 *	  (route_ws_turn) is not run; its prepared messages are dropped with
 *	  the turn's memory.
 *
 *	  Input: a byte for the stream's settings, a byte for how the rest is
 *	  cut into reads (fixture_next_chunk), then the client's bytes after
 *	  the 101 response.
 *
 *-------------------------------------------------------------------------
 */
#include "shim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/ws_int.h"

typedef struct WsInput
{
	Conn	   *conn;
	MemoryContext turn_cxt;
} WsInput;

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_ws: %s\n", what);
	abort();
}

static void
prepare_turn(void *arg)
{
	WsInput    *in = arg;
	char	   *load = NULL;

	MemoryContextSwitchTo(in->turn_cxt);
	if (route_ws_prepare(in->conn, &load) != PREP_EXECUTE)
		fail("route_ws_prepare asked to load a stream the cache has");
}

/* One turn, as the listener runs it when the inbox has messages */
static bool
run_turn(WsInput *in)
{
	Conn	   *conn = in->conn;

	if (!shim_run(prepare_turn, in))
	{
		fprintf(stderr, "fuzz_ws: a message raised an ERROR: %s\n",
				shim_last_error());
		abort();
	}
	MemoryContextSwitchTo(conn->cxt);
	if (conn->ws->inbox != NIL)
		fail("the turn left messages in the inbox");
	if (conn->ws->close_code != 0 &&
		(conn->ws->close_reason == NULL || conn->ws->close_reason[0] == '\0'))
		fail("a session is closed without a reason");
	conn->ws->prepared = NIL;	/* turn memory */
	MemoryContextReset(in->turn_cxt);
	return ws_send_outbox(conn);
}

/* The connection right after the 101: what ws_handshake leaves behind */
static Conn *
upgraded_conn(MemoryContext parent)
{
	Conn	   *conn = palloc0(sizeof(Conn));

	conn->cxt = AllocSetContextCreate(parent, "fuzz connection",
									  ALLOCSET_DEFAULT_SIZES);
	conn->sock.ssl = fixture_tls(); /* the fixture plays TLS (fixture.c) */
	http_conn_init(conn);
	conn->ws = ws_new(conn, false);
	conn->ws->stream = "fuzz";
	conn->ws->slot = 0;
	return conn;
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	MemoryContext cxt;
	WsInput		in;
	uint32		plan;
	bool		alive;

	if (size < 2)
		return 0;
	fixture_init();
	fixture_select_stream(data[0]);
	plan = data[1];
	data += 2;
	size -= 2;
	cxt = fuzz_input_begin();
	in.conn = upgraded_conn(cxt);
	in.turn_cxt = AllocSetContextCreate(cxt, "fuzz turn", ALLOCSET_DEFAULT_SIZES);

	fixture_feed(NULL, 0, false);
	alive = ws_start(in.conn);
	while (alive)
	{
		size_t		n = fixture_next_chunk(&plan, size);

		fixture_feed(data, n, n == 0);
		alive = ws_on_event(in.conn, 1);
		/* what wslay did not read waits for the next event */
		data += n - fixture_feed_left();
		size -= n - fixture_feed_left();
		if (in.conn->ws->inbox != NIL && !run_turn(&in))
			break;
		if (n == 0)
			break;
	}
	ws_free(in.conn);
	fuzz_input_end(cxt);
	return 0;
}
