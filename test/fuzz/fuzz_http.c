/*-------------------------------------------------------------------------
 *
 * fuzz_http.c
 *	  libFuzzer target: bytes from a peer into a listener connection, read
 *	  in pieces, through the real http.c state machine (http_conn_read,
 *	  http_conn_parse: keep-alive, pipelining, chunked bodies, Expect,
 *	  limits) and, for each complete request, route_prepare: routing,
 *	  bearer authentication, media types, the body parsers, SET
 *	  verification, the WebSocket handshake.  The database step
 *	  (route_execute) is not run; a request that reaches it is answered
 *	  200 here so that pipelined requests after it are parsed.
 *
 *	  Input: a byte for the stream's settings (bit 4: the smallest
 *	  setstream.max_request_bytes, 1kB, instead of the default 1MB), a byte
 *	  for how the rest is cut into reads (fixture_next_chunk), then the
 *	  bytes of the connection.  Every response queued must be a well-formed HTTP/1.1
 *	  response with a status setstream documents, and no request may end
 *	  in an ERROR (which the listener would answer 500).
 *
 *-------------------------------------------------------------------------
 */
#include "shim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utils/memutils.h"

#include "server/conn.h"

typedef struct HttpInput
{
	const uint8 *data;
	size_t		len;
	uint32		plan;
	Conn	   *conn;
	StreamInfo *stream;			/* what the cache holds for "fuzz" */
	PrepResult	result;
} HttpInput;

static void
fail(const char *what, const StringInfoData *out)
{
	fprintf(stderr, "fuzz_http: %s\n%.*s\n", what, out->len, out->data);
	abort();
}

/* A response that says it is JSON holds one JSON object */
static void
check_json_body(const char *head, const char *body, long len,
				const StringInfoData *out)
{
	const char *ct = strstr(head, "Content-Type: application/json\r\n");
	json_error_t jerr;

	if (ct == NULL || ct > body)
		return;
	if (!json_is_object(json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr)))
		fail("a JSON response body is not a JSON object", out);
}

/* Each queued response: status line, headers, body of Content-Length */
static void
check_responses(const StringInfoData *out)
{
	const char *p = out->data;
	const char *end = out->data + out->len;

	while (p < end)
	{
		const char *hdr_end;
		const char *cl;
		int			status;
		long		len;

		if (end - p < 13 || strncmp(p, "HTTP/1.1 ", 9) != 0)
			fail("a response does not start with a status line", out);
		status = atoi(p + 9);
		if (strcmp(http_status_text(status), "Unknown") == 0)
			fail("a response has an undocumented status", out);
		hdr_end = strstr(p, "\r\n\r\n");
		if (hdr_end == NULL || hdr_end >= end)
			fail("a response has no end of headers", out);
		hdr_end += 4;
		if (status == 100 || status == 101)
		{
			p = hdr_end;
			continue;
		}
		cl = strstr(p, "Content-Length: ");
		if (cl == NULL || cl > hdr_end)
			fail("a response has no Content-Length", out);
		len = atol(cl + 16);
		if (len < 0 || len > end - hdr_end)
			fail("a response is shorter than its Content-Length", out);
		check_json_body(p, hdr_end, len, out);
		p = hdr_end + len;
	}
}

/*
 * Only a request with the stream's bearer token may reach the database
 * step or open a WebSocket session, and no push on a stream that refuses
 * inbound SETs (a disabled stream is served: issue 13).
 */
static void
check_authorized(HttpInput *in)
{
	Conn	   *conn = in->conn;
	const char *auth = conn->http.req.authorization;
	bool		reached = in->result == PREP_EXECUTE || conn->ws != NULL;
	const char *url = conn->http.req.url.data;
	size_t		path_len = strcspn(url, "?#");
	bool		push = path_len >= 7 && strncmp(url + path_len - 7, "/events", 7) == 0;

	if (reached && strstr(url, "/streams/") != NULL &&
		(auth == NULL || strstr(auth, FIXTURE_TOKEN) == NULL))
		fail("a request got past authentication", &conn->sock.out);
	if (in->result == PREP_EXECUTE && in->stream->refuse_inbound && push)
		fail("a push reached the database on a stream refusing inbound SETs",
			 &conn->sock.out);
}

static void
prepare_request(void *arg)
{
	HttpInput  *in = arg;
	char	   *load = NULL;

	MemoryContextSwitchTo(in->conn->http.reqcxt);
	in->result = route_prepare(in->conn, &load);
}

/* One complete request: answer it, as the listener's turn would */
static void
answer_request(HttpInput *in)
{
	Conn	   *conn = in->conn;
	MemoryContext cxt = CurrentMemoryContext;

	if (!shim_run(prepare_request, in))
	{
		fprintf(stderr, "fuzz_http: the request raised an ERROR (the listener answers 500): %s\n",
				shim_last_error());
		abort();
	}
	MemoryContextSwitchTo(cxt);
	check_authorized(in);
	if (in->result == PREP_LOAD)
		fail("route_prepare asked to load a stream the cache has", &conn->sock.out);
	if (in->result == PREP_EXECUTE)
		http_respond(conn, 200, NULL, NULL, 0, NULL);
	if (conn->sock.out.len == 0)
		fail("a request got no response", &conn->sock.out);
}

static void
authorize_request(void *arg)
{
	HttpInput  *in = arg;
	char	   *load = NULL;

	MemoryContextSwitchTo(in->conn->http.reqcxt);
	in->result = route_authorize_headers(in->conn, &load);
}

/*
 * The headers of a request with a body, as conn.c authorize_headers
 * takes them: go on reading the body, or answer now and read past the body
 * (or close, when the client waits for 100 Continue).  False when the
 * connection is over.
 */
static bool
authorize_headers(HttpInput *in)
{
	Conn	   *conn = in->conn;
	MemoryContext cxt = CurrentMemoryContext;

	http_await_authorization(conn);
	if (!shim_run(authorize_request, in))
	{
		fprintf(stderr, "fuzz_http: authorizing headers raised an ERROR: %s\n",
				shim_last_error());
		abort();
	}
	MemoryContextSwitchTo(cxt);
	check_authorized(in);
	if (in->result == PREP_LOAD)
		fail("route_authorize_headers asked to load a stream the cache has", &conn->sock.out);
	if (in->result == PREP_EXECUTE)
	{
		http_authorized(conn);
		http_conn_parse(conn);
		return true;
	}
	if (conn->sock.out.len == 0)
		fail("a refused request got no response", &conn->sock.out);
	check_responses(&conn->sock.out);
	http_conn_flush(conn);
	if (conn->http.close_after_write)
		return false;
	http_refused_on_headers(conn);
	http_conn_parse(conn);
	return true;
}

/* Read what the peer sends next; false when the connection is over */
static bool
read_more(HttpInput *in)
{
	size_t		n = fixture_next_chunk(&in->plan, in->len);

	fixture_feed(in->data, n, n == 0);
	in->data += n;
	in->len -= n;
	if (!http_conn_read(in->conn))
		return false;
	/* the input buffer may be full: keep what was not read for later */
	in->data -= fixture_feed_left();
	in->len += fixture_feed_left();
	return true;
}

static void
run_connection(HttpInput *in)
{
	Conn	   *conn = in->conn;

	http_conn_init(conn);
	route_handler.unprepare(conn);
	conn->http.keep_alive = true;
	for (;;)
	{
		if (!conn->http.message_complete)
		{
			if (conn->http.auth_pending)
			{
				if (!authorize_headers(in))
					return;
				continue;
			}
			if (!read_more(in))
				return;
			http_conn_parse(conn);
			if (conn->sock.out.len > conn->sock.outpos && !conn->http.message_complete)
				http_conn_flush(conn);	/* 100 Continue */
			continue;
		}
		if (!conn->http.discarding || conn->http.req.reject_status != 0)
		{
			if (conn->sock.out.len == 0)
				answer_request(in);
			check_responses(&conn->sock.out);
			http_conn_flush(conn);
			if (conn->ws != NULL || conn->http.close_after_write)
				return;
		}
		/* else a request refused on its headers, its body now read past */
		/* after_response: the next request, maybe pipelined already */
		route_handler.unprepare(conn);
		http_next_request(conn);
		http_conn_parse(conn);
	}
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	MemoryContext cxt;
	HttpInput	in;

	if (size < 2)
		return 0;
	fixture_init();
	fixture_select_stream(data[0]);
	cxt = fuzz_input_begin();
	in.plan = data[1];
	in.data = data + 2;
	in.len = size - 2;
	in.stream = fixture_stream(data[0]);
	in.conn = palloc0(sizeof(Conn));
	in.conn->cxt = AllocSetContextCreate(cxt, "fuzz connection",
										 ALLOCSET_DEFAULT_SIZES);
	in.conn->sock.ssl = fixture_tls();	/* the fixture plays TLS (fixture.c) */
	setstream_max_request_bytes = (data[0] & 0x10) ? 1024 : 1024 * 1024;
	run_connection(&in);
	fuzz_input_end(cxt);
	return 0;
}
