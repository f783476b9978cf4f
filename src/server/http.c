/*-------------------------------------------------------------------------
 *
 * http.c
 *	  HTTP/1.1 on one listener connection, with http-parser: reading bytes,
 *	  parsing requests (keep-alive, pipelining, Content-Length and chunked
 *	  bodies, Expect: 100-continue) and writing responses.
 *
 *	  The parser is paused at the end of each request, so that pipelined
 *	  bytes stay buffered until the response to the request before them is
 *	  written.  Everything a peer controls is bounded: header bytes, URL
 *	  length, body size (setstream.max_request_bytes) and the input buffer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "utils/memutils.h"

#include "server/listener.h"
#include "server/metrics.h"
#include "setstream.h"

/*
 * Bytes of request bodies this process holds, across all its connections
 * (and WebSocket messages waiting for a turn, ws.c): bounded by
 * setstream.max_buffered_bytes.
 */
int64		listener_buffered_bytes = 0;

static http_parser_settings parser_settings;
static bool parser_settings_ready = false;

static Conn *
conn_of(http_parser *p)
{
	return (Conn *) p->data;
}

static void
reject(Conn *conn, int status, const char *reason)
{
	if (conn->req.reject_status == 0)
	{
		conn->req.reject_status = status;
		conn->req.reject_reason = reason;
	}
}

static int
on_message_begin(http_parser *p)
{
	Conn	   *conn = conn_of(p);

	http_request_reset(conn);
	conn->request_started = GetCurrentTimestamp();
	return 0;
}

/* RFC 9110 token characters: what a header name may hold */
static bool
is_token(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (!(isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL) || c == '\0')
			return false;
	}
	return true;
}

static int
on_url(http_parser *p, const char *at, size_t len)
{
	Conn	   *conn = conn_of(p);

	if (conn->req.url.len + len > MAX_URL_BYTES)
	{
		reject(conn, 414, "the request URI is too long");
		return 1;
	}
	appendBinaryStringInfo(&conn->req.url, at, len);
	return 0;
}

static bool
count_header_bytes(Conn *conn, size_t len)
{
	conn->header_bytes += len;
	if (conn->header_bytes > MAX_HEADER_BYTES)
	{
		reject(conn, 431, "the request headers are too large");
		return false;
	}
	return true;
}

/* A whole header has been read: keep the ones setstream looks at */
static void
finish_header(Conn *conn)
{
	const char *name = conn->hfield.data;
	char	   *value;

	if (conn->hfield.len == 0)
		return;
	value = MemoryContextStrdup(conn->reqcxt, conn->hvalue.data);
	if (pg_strcasecmp(name, "Authorization") == 0)
		conn->req.authorization = value;
	else if (pg_strcasecmp(name, "Content-Type") == 0)
		conn->req.content_type = value;
	else if (pg_strcasecmp(name, "Host") == 0)
		conn->req.has_host = true;
	else if (pg_strcasecmp(name, "Expect") == 0)
		conn->req.expect_continue = pg_strcasecmp(value, "100-continue") == 0;
	else if (pg_strcasecmp(name, "Upgrade") == 0)
		conn->req.upgrade = value;
	else if (pg_strcasecmp(name, "Sec-WebSocket-Key") == 0)
		conn->req.ws_key = value;
	else if (pg_strcasecmp(name, "Sec-WebSocket-Version") == 0)
		conn->req.ws_version = value;
	else if (pg_strcasecmp(name, "Sec-WebSocket-Protocol") == 0)
		conn->req.ws_protocol = conn->req.ws_protocol ?
			psprintf("%s, %s", conn->req.ws_protocol, value) : value;
	resetStringInfo(&conn->hfield);
	resetStringInfo(&conn->hvalue);
}

static int
on_header_field(http_parser *p, const char *at, size_t len)
{
	Conn	   *conn = conn_of(p);

	if (!count_header_bytes(conn, len))
		return 1;
	if (!is_token(at, len))
	{
		/* e.g. "Transfer-Encoding : chunked", a request smuggling vector */
		reject(conn, 400, "a header name holds a character that is not allowed");
		return 1;
	}
	if (conn->in_value)
	{
		finish_header(conn);
		conn->in_value = false;
	}
	appendBinaryStringInfo(&conn->hfield, at, len);
	return 0;
}

static int
on_header_value(http_parser *p, const char *at, size_t len)
{
	Conn	   *conn = conn_of(p);

	if (!count_header_bytes(conn, len))
		return 1;
	conn->in_value = true;
	appendBinaryStringInfo(&conn->hvalue, at, len);
	return 0;
}

static int
on_headers_complete(http_parser *p)
{
	Conn	   *conn = conn_of(p);

	finish_header(conn);
	conn->in_value = false;
	conn->req.method = p->method;
	conn->keep_alive = http_should_keep_alive(p) != 0;
	if (p->http_major == 1 && p->http_minor >= 1 && !conn->req.has_host)
	{
		reject(conn, 400, "an HTTP/1.1 request must have a Host header");
		return -1;
	}
	if (p->content_length != ULLONG_MAX &&
		p->content_length > (uint64) setstream_max_request_bytes)
	{
		reject(conn, 413, "the request body is larger than setstream.max_request_bytes");
		return -1;				/* 1 would mean "no body" here */
	}
	if (p->content_length != ULLONG_MAX && p->content_length > 0 &&
		listener_buffered_bytes + (int64) p->content_length >
		(int64) setstream_max_buffered_bytes)
	{
		reject(conn, 503, "the server holds too many request bytes now; try again shortly");
		return -1;
	}
	conn->req.has_body = (p->content_length != ULLONG_MAX && p->content_length > 0) ||
		(p->flags & F_CHUNKED) != 0;
	if (conn->req.has_body)
	{
		/*
		 * Who sends it, and where to, is known now: authorize before the
		 * body is read or 100 Continue sent (the listener resumes the
		 * parser when it may go on).
		 */
		conn->auth_pending = true;
		http_parser_pause(p, 1);
	}
	return 0;
}

/* Tell a client that waits for it to send the body */
void
http_send_continue(Conn *conn)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

	if (!conn->req.expect_continue)
		return;
	appendBinaryStringInfo(&conn->out, cont, sizeof(cont) - 1);
	http_conn_flush(conn);
}

static int
on_body(http_parser *p, const char *at, size_t len)
{
	Conn	   *conn = conn_of(p);

	if (conn->discarding)
	{
		/* answered already: read past the body, keeping none of it */
		conn->discarded += len;
		if (conn->discarded > setstream_max_request_bytes)
		{
			reject(conn, 413, "the request body is larger than setstream.max_request_bytes");
			return 1;
		}
		return 0;
	}
	if (conn->req.body.len + len > (size_t) setstream_max_request_bytes)
	{
		reject(conn, 413, "the request body is larger than setstream.max_request_bytes");
		return 1;
	}
	if (listener_buffered_bytes + (int64) len > (int64) setstream_max_buffered_bytes)
	{
		reject(conn, 503, "the server holds too many request bytes now; try again shortly");
		return 1;
	}
	appendBinaryStringInfo(&conn->req.body, at, len);
	conn->body_counted += len;
	listener_buffered_bytes += len;
	return 0;
}

static int
on_message_complete(http_parser *p)
{
	Conn	   *conn = conn_of(p);

	conn->message_complete = true;
	conn->keep_alive = http_should_keep_alive(p) != 0;
	http_parser_pause(p, 1);
	return 0;
}

void
http_conn_init(Conn *conn)
{
	if (!parser_settings_ready)
	{
		memset(&parser_settings, 0, sizeof(parser_settings));
		parser_settings.on_message_begin = on_message_begin;
		parser_settings.on_url = on_url;
		parser_settings.on_header_field = on_header_field;
		parser_settings.on_header_value = on_header_value;
		parser_settings.on_headers_complete = on_headers_complete;
		parser_settings.on_body = on_body;
		parser_settings.on_message_complete = on_message_complete;
		parser_settings_ready = true;
	}
	http_parser_init(&conn->parser, HTTP_REQUEST);
	conn->parser.data = conn;
	conn->incap = 16384;
	conn->in = MemoryContextAlloc(conn->cxt, conn->incap);
	conn->inlen = 0;
	conn->reqcxt = AllocSetContextCreate(conn->cxt, "setstream request",
										 ALLOCSET_DEFAULT_SIZES);
	http_request_reset(conn);
	initStringInfo(&conn->out);
}

/* The connection's buffered body no longer counts (it is freed) */
void
http_conn_release(Conn *conn)
{
	listener_buffered_bytes -= conn->body_counted;
	conn->body_counted = 0;
}

/* Forget the last request; its memory goes with it */
void
http_request_reset(Conn *conn)
{
	MemoryContext old;

	http_conn_release(conn);
	MemoryContextReset(conn->reqcxt);
	old = MemoryContextSwitchTo(conn->reqcxt);
	memset(&conn->req, 0, sizeof(conn->req));
	initStringInfo(&conn->req.url);
	initStringInfo(&conn->req.body);
	initStringInfo(&conn->hfield);
	initStringInfo(&conn->hvalue);
	MemoryContextSwitchTo(old);
	conn->in_value = false;
	conn->header_bytes = 0;
	conn->message_complete = false;
	conn->auth_pending = false;
	conn->discarding = false;
	conn->discarded = 0;
	conn->poll_stream = NULL;
	conn->route_state = NULL;
}

/*
 * Read what the socket has.  Returns false when the peer closed the
 * connection or it failed.
 */
bool
http_conn_read(Conn *conn)
{
	for (;;)
	{
		ssize_t		n;

		if (conn->inlen == conn->incap)
			return true;		/* parse before reading more */
		n = conn_recv(conn, conn->in + conn->inlen, conn->incap - conn->inlen);
		if (n > 0)
		{
			conn->inlen += n;
			conn->last_activity = GetCurrentTimestamp();
			continue;
		}
		if (n == 0)
			return false;
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
	}
}

/*
 * Parse buffered bytes until a request is complete (the parser pauses) or
 * the bytes run out.  A malformed request gets a 400 and the connection
 * closes; an over-limit one gets its 4xx.
 */
void
http_conn_parse(Conn *conn)
{
	MemoryContext old;
	size_t		used;
	enum http_errno err;

	if (conn->inlen == 0 || conn->message_complete || conn->auth_pending)
		return;

	/*
	 * Everything here, the error answer too, goes in the request's memory:
	 * the caller runs in the listener's long-lived context.
	 */
	old = MemoryContextSwitchTo(conn->reqcxt);
	used = http_parser_execute(&conn->parser, &parser_settings,
							   conn->in, conn->inlen);
	err = HTTP_PARSER_ERRNO(&conn->parser);

	if (err == HPE_PAUSED)
	{
		/*
		 * At the end of a message (the byte that completed it is consumed
		 * too), or at the end of headers to authorize: the parser goes on
		 * from where it stopped at the next call.
		 */
		http_parser_pause(&conn->parser, 0);
	}
	else if (err != HPE_OK && conn->req.reject_status == 0)
		reject(conn, 400, http_errno_description(err));
	else if (err == HPE_OK && conn->parser.upgrade)
		conn->message_complete = true;

	if (used < (size_t) conn->inlen)
		memmove(conn->in, conn->in + used, conn->inlen - used);
	conn->inlen -= used;

	/* the connection closes after these: say so in the response */
	if (conn->req.reject_status != 0)
	{
		conn->close_after_write = true;
		if (conn->req.reject_status == 503)
			http_respond_error(conn, 503, NULL, conn->req.reject_reason,
							   "Retry-After: 1\r\n");
		else
			http_respond_error(conn, conn->req.reject_status, seterr_name(SETERR_INVALID_REQUEST),
							   conn->req.reject_reason, NULL);
		conn->message_complete = true;
	}
	else if (!conn->message_complete && !conn->auth_pending &&
			 conn->inlen == conn->incap)
	{
		/* cannot happen with http-parser's streaming, but bound it anyway */
		conn->close_after_write = true;
		http_respond_error(conn, 400, seterr_name(SETERR_INVALID_REQUEST), "request too large", NULL);
		conn->message_complete = true;
	}
	MemoryContextSwitchTo(old);
}

const char *
http_status_text(int status)
{
	switch (status)
	{
		case 100:
			return "Continue";
		case 101:
			return "Switching Protocols";
		case 200:
			return "OK";
		case 202:
			return "Accepted";
		case 204:
			return "No Content";
		case 400:
			return "Bad Request";
		case 401:
			return "Unauthorized";
		case 403:
			return "Forbidden";
		case 404:
			return "Not Found";
		case 405:
			return "Method Not Allowed";
		case 408:
			return "Request Timeout";
		case 413:
			return "Content Too Large";
		case 414:
			return "URI Too Long";
		case 415:
			return "Unsupported Media Type";
		case 426:
			return "Upgrade Required";
		case 429:
			return "Too Many Requests";
		case 431:
			return "Request Header Fields Too Large";
		case 500:
			return "Internal Server Error";
		case 501:
			return "Not Implemented";
		case 503:
			return "Service Unavailable";
	}
	return "Unknown";
}

/* Queue a whole response on the connection */
void
http_respond(Conn *conn, int status, const char *content_type,
			 const char *body, size_t len, const char *extra_headers)
{
	bool		close = conn->close_after_write || !conn->keep_alive ||
		conn->parser.upgrade;	/* a refused upgrade */

	metrics_count_response(conn, status);
	appendStringInfo(&conn->out, "HTTP/1.1 %d %s\r\n", status,
					 http_status_text(status));
	appendStringInfoString(&conn->out, "Server: setstream\r\n");
	if (content_type)
		appendStringInfo(&conn->out, "Content-Type: %s\r\n", content_type);
	appendStringInfo(&conn->out, "Content-Length: %zu\r\n", len);
	if (extra_headers)
		appendStringInfoString(&conn->out, extra_headers);
	appendStringInfoString(&conn->out, close ? "Connection: close\r\n\r\n"
						   : "Connection: keep-alive\r\n\r\n");
	if (len > 0)
		appendBinaryStringInfo(&conn->out, body, len);
	if (close)
		conn->close_after_write = true;
}

void
http_respond_json(Conn *conn, int status, json_t *body,
				  const char *extra_headers)
{
	StringInfoData text;

	initStringInfo(&text);
	json_write(&text, body);
	http_respond(conn, status, "application/json", text.data, text.len,
				 extra_headers);
	pfree(text.data);
}

/*
 * An RFC 8935 error body: {"err", "description"}, in English.  Without an
 * err, 429, 500 and 503 get theirs from seterr_for_status.
 */
void
http_respond_error(Conn *conn, int status, const char *err,
				   const char *description, const char *extra_headers)
{
	json_t	   *body = json_object();
	char	   *headers;

	if (err == NULL)
		err = seterr_for_status(status);
	if (err)
		json_object_set_new(body, "err", json_string(err));
	json_object_set_new(body, "description", json_string(description));
	headers = psprintf("Content-Language: en\r\n%s",
					   extra_headers ? extra_headers : "");
	http_respond_json(conn, status, body, headers);
}

/* The answer to a failed request (seterr_answer) */
void
http_respond_answer(Conn *conn, const SetAnswer *a)
{
	http_respond_error(conn, a->http_status, a->err, a->description, a->headers);
}

/*
 * Write queued bytes.  Returns true when everything is written; false when
 * the socket is full (wait for it to be writable) or failed (then the
 * connection is marked closed).
 */
bool
http_conn_flush(Conn *conn)
{
	while (conn->outpos < conn->out.len)
	{
		ssize_t		n = conn_send(conn, conn->out.data + conn->outpos,
								  conn->out.len - conn->outpos);

		if (n > 0)
		{
			conn->outpos += n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return false;
		conn->phase = PHASE_CLOSED;
		return false;
	}
	resetStringInfo(&conn->out);
	conn->outpos = 0;
	return true;
}
