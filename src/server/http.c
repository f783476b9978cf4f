/*-------------------------------------------------------------------------
 *
 * http.c
 *	  HTTP/1.1 on one connection, with http-parser: parsing requests
 *	  (keep-alive, pipelining, Content-Length and chunked bodies, Expect:
 *	  100-continue), answering them, and the state of the request being
 *	  answered (HttpConn, this file's alone: the listener's connection code
 *	  moves it on through the functions here).  Bytes come from and go to
 *	  the connection's socket buffers (sock.c).  The same parser reads
 *	  responses (http_parse_response), for a connection setstream opens
 *	  itself.
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

#include "server/conn.h"
#include "shmem/counters.h"
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
	if (conn->http.req.reject_status == 0)
	{
		conn->http.req.reject_status = status;
		conn->http.req.reject_reason = reason;
	}
}

static int
on_message_begin(http_parser *p)
{
	Conn	   *conn = conn_of(p);

	http_request_reset(conn);
	conn->http.request_started = GetCurrentTimestamp();
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

	if (conn->http.req.url.len + len > MAX_URL_BYTES)
	{
		reject(conn, 414, "the request URI is too long");
		return 1;
	}
	appendBinaryStringInfo(&conn->http.req.url, at, len);
	return 0;
}

static bool
count_header_bytes(Conn *conn, size_t len)
{
	conn->http.header_bytes += len;
	if (conn->http.header_bytes > MAX_HEADER_BYTES)
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
	const char *name = conn->http.hfield.data;
	char	   *value;

	if (conn->http.hfield.len == 0)
		return;
	value = MemoryContextStrdup(conn->http.reqcxt, conn->http.hvalue.data);
	if (pg_strcasecmp(name, "Authorization") == 0)
		conn->http.req.authorization = value;
	else if (pg_strcasecmp(name, "Content-Type") == 0)
		conn->http.req.content_type = value;
	else if (pg_strcasecmp(name, "Host") == 0)
		conn->http.req.has_host = true;
	else if (pg_strcasecmp(name, "Expect") == 0)
		conn->http.req.expect_continue = pg_strcasecmp(value, "100-continue") == 0;
	else if (pg_strcasecmp(name, "Upgrade") == 0)
		conn->http.req.upgrade = value;
	else if (pg_strcasecmp(name, "Sec-WebSocket-Key") == 0)
		conn->http.req.ws_key = value;
	else if (pg_strcasecmp(name, "Sec-WebSocket-Version") == 0)
		conn->http.req.ws_version = value;
	else if (pg_strcasecmp(name, "Sec-WebSocket-Protocol") == 0)
		conn->http.req.ws_protocol = conn->http.req.ws_protocol ?
			psprintf("%s, %s", conn->http.req.ws_protocol, value) : value;
	resetStringInfo(&conn->http.hfield);
	resetStringInfo(&conn->http.hvalue);
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
	if (conn->http.in_value)
	{
		finish_header(conn);
		conn->http.in_value = false;
	}
	appendBinaryStringInfo(&conn->http.hfield, at, len);
	return 0;
}

static int
on_header_value(http_parser *p, const char *at, size_t len)
{
	Conn	   *conn = conn_of(p);

	if (!count_header_bytes(conn, len))
		return 1;
	conn->http.in_value = true;
	appendBinaryStringInfo(&conn->http.hvalue, at, len);
	return 0;
}

static int
on_headers_complete(http_parser *p)
{
	Conn	   *conn = conn_of(p);

	finish_header(conn);
	conn->http.in_value = false;
	conn->http.req.method = p->method;
	conn->http.keep_alive = http_should_keep_alive(p) != 0;
	if (p->http_major == 1 && p->http_minor >= 1 && !conn->http.req.has_host)
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
	conn->http.req.has_body = (p->content_length != ULLONG_MAX && p->content_length > 0) ||
		(p->flags & F_CHUNKED) != 0;
	if (conn->http.req.has_body)
	{
		/*
		 * Who sends it, and where to, is known now: authorize before the body
		 * is read or 100 Continue sent (the listener resumes the parser when
		 * it may go on).
		 */
		conn->http.auth_pending = true;
		http_parser_pause(p, 1);
	}
	return 0;
}

/* Tell a client that waits for it to send the body */
void
http_send_continue(Conn *conn)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

	if (!conn->http.req.expect_continue)
		return;
	appendBinaryStringInfo(&conn->sock.out, cont, sizeof(cont) - 1);
	http_conn_flush(conn);
}

static int
on_body(http_parser *p, const char *at, size_t len)
{
	Conn	   *conn = conn_of(p);

	if (conn->http.discarding)
	{
		/* answered already: read past the body, keeping none of it */
		conn->http.discarded += len;
		if (conn->http.discarded > setstream_max_request_bytes)
		{
			reject(conn, 413, "the request body is larger than setstream.max_request_bytes");
			return 1;
		}
		return 0;
	}
	if (conn->http.req.body.len + len > (size_t) setstream_max_request_bytes)
	{
		reject(conn, 413, "the request body is larger than setstream.max_request_bytes");
		return 1;
	}
	if (listener_buffered_bytes + (int64) len > (int64) setstream_max_buffered_bytes)
	{
		reject(conn, 503, "the server holds too many request bytes now; try again shortly");
		return 1;
	}
	appendBinaryStringInfo(&conn->http.req.body, at, len);
	conn->http.body_counted += len;
	listener_buffered_bytes += len;
	return 0;
}

static int
on_message_complete(http_parser *p)
{
	Conn	   *conn = conn_of(p);

	conn->http.message_complete = true;
	conn->http.keep_alive = http_should_keep_alive(p) != 0;
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
	http_parser_init(&conn->http.parser, HTTP_REQUEST);
	conn->http.parser.data = conn;
	sock_init_buffers(&conn->sock, conn->cxt);
	conn->http.reqcxt = AllocSetContextCreate(conn->cxt, "setstream request",
											  ALLOCSET_DEFAULT_SIZES);
	http_request_reset(conn);
}

/* The connection's buffered body no longer counts (it is freed) */
void
http_conn_release(Conn *conn)
{
	listener_buffered_bytes -= conn->http.body_counted;
	conn->http.body_counted = 0;
}

/* Forget the last request; its memory goes with it */
void
http_request_reset(Conn *conn)
{
	MemoryContext old;

	http_conn_release(conn);
	MemoryContextReset(conn->http.reqcxt);
	old = MemoryContextSwitchTo(conn->http.reqcxt);
	memset(&conn->http.req, 0, sizeof(conn->http.req));
	initStringInfo(&conn->http.req.url);
	initStringInfo(&conn->http.req.body);
	initStringInfo(&conn->http.hfield);
	initStringInfo(&conn->http.hvalue);
	MemoryContextSwitchTo(old);
	conn->http.in_value = false;
	conn->http.header_bytes = 0;
	conn->http.message_complete = false;
	conn->http.auth_pending = false;
	conn->http.discarding = false;
	conn->http.discarded = 0;
}

/* Headers read, body not: a client waiting for 100 Continue gets none */
void
http_await_authorization(Conn *conn)
{
	conn->http.close_after_write = conn->http.req.expect_continue;
}

/* Authorized on its headers: read the body (after 100 Continue if asked) */
void
http_authorized(Conn *conn)
{
	conn->http.auth_pending = false;
	conn->http.close_after_write = false;
	http_send_continue(conn);
}

/* Refused on its headers and answered: read past its body, keeping none */
void
http_refused_on_headers(Conn *conn)
{
	conn->http.auth_pending = false;
	conn->http.discarding = true;
}

/* Its body was not read (refused on its headers, or while parsing) */
bool
http_body_unread(Conn *conn)
{
	return conn->http.req.reject_status != 0 || conn->http.auth_pending;
}

/*
 * Where the request being read stands, for the connection's loop
 * (server/conn.c): the HTTP side's state stays http.c's to change.
 */

/* A whole request was read (or parsing ended with an answer to write) */
bool
http_request_complete(Conn *conn)
{
	return conn->http.message_complete;
}

/* Its headers are read and wait for authorization before its body */
bool
http_auth_pending(Conn *conn)
{
	return conn->http.auth_pending;
}

/* The answer being written is the connection's last */
bool
http_close_after_write(Conn *conn)
{
	return conn->http.close_after_write;
}

/* A request refused on its headers was read past to its end */
bool
http_refused_request_over(Conn *conn)
{
	return conn->http.discarding && conn->http.message_complete &&
		conn->http.req.reject_status == 0;
}

/* When the first byte of the request being read came, or 0 */
TimestampTz
http_request_started(Conn *conn)
{
	return conn->http.request_started;
}

/* The response is written: on to the next request on the connection */
void
http_next_request(Conn *conn)
{
	conn->http.message_complete = false;
	conn->http.request_started = 0;
	http_request_reset(conn);
}

/*
 * Read what the socket has.  Returns false when the peer closed the
 * connection or it failed.
 */
bool
http_conn_read(Conn *conn)
{
	Sock	   *sock = &conn->sock;

	for (;;)
	{
		ssize_t		n;

		if (sock->inlen == sock->incap)
			return true;		/* parse before reading more */
		n = sock_recv(sock, sock->in + sock->inlen, sock->incap - sock->inlen);
		if (n > 0)
		{
			sock->inlen += n;
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

	if (conn->sock.inlen == 0 || conn->http.message_complete || conn->http.auth_pending)
		return;

	/*
	 * Everything here, the error answer too, goes in the request's memory:
	 * the caller runs in the listener's long-lived context.
	 */
	old = MemoryContextSwitchTo(conn->http.reqcxt);
	used = http_parser_execute(&conn->http.parser, &parser_settings,
							   conn->sock.in, conn->sock.inlen);
	err = HTTP_PARSER_ERRNO(&conn->http.parser);

	if (err == HPE_PAUSED)
	{
		/*
		 * At the end of a message (the byte that completed it is consumed
		 * too), or at the end of headers to authorize: the parser goes on
		 * from where it stopped at the next call.
		 */
		http_parser_pause(&conn->http.parser, 0);
	}
	else if (err != HPE_OK && conn->http.req.reject_status == 0)
		reject(conn, 400, http_errno_description(err));
	else if (err == HPE_OK && conn->http.parser.upgrade)
		conn->http.message_complete = true;

	if (used < (size_t) conn->sock.inlen)
		memmove(conn->sock.in, conn->sock.in + used, conn->sock.inlen - used);
	conn->sock.inlen -= used;

	/* the connection closes after these: say so in the response */
	if (conn->http.req.reject_status != 0)
	{
		conn->http.close_after_write = true;
		if (conn->http.req.reject_status == 503)
			http_respond_error(conn, 503, NULL, conn->http.req.reject_reason,
							   "Retry-After: 1\r\n");
		else
			http_respond_error(conn, conn->http.req.reject_status, seterr_name(SETERR_INVALID_REQUEST),
							   conn->http.req.reject_reason, NULL);
		conn->http.message_complete = true;
	}
	else if (!conn->http.message_complete && !conn->http.auth_pending &&
			 conn->sock.inlen == conn->sock.incap)
	{
		/* cannot happen with http-parser's streaming, but bound it anyway */
		conn->http.close_after_write = true;
		http_respond_error(conn, 400, seterr_name(SETERR_INVALID_REQUEST), "request too large", NULL);
		conn->http.message_complete = true;
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

/* The route of a request, from its URL's path */
static int
route_of(Conn *conn)
{
	const char *path = conn->http.req.url.data;
	size_t		len;
	const char *slash;

	if (path == NULL || path[0] != '/')
		return ROUTE_OTHER;
	len = strcspn(path, "?#");
	if (len == 10 && strncmp(path, "/jwks.json", 10) == 0)
		return ROUTE_JWKS;
	if (len == 8 && strncmp(path, "/metrics", 8) == 0)
		return ROUTE_METRICS;
	if (len <= 9 || strncmp(path, "/streams/", 9) != 0)
		return ROUTE_OTHER;
	slash = memchr(path + 9, '/', len - 9);
	if (slash == NULL)
		return ROUTE_OTHER;
	len -= slash - path;
	if (len == 7 && strncmp(slash, "/events", 7) == 0)
		return ROUTE_EVENTS;
	if (len == 5 && strncmp(slash, "/poll", 5) == 0)
		return ROUTE_POLL;
	if (len == 9 && strncmp(slash, "/pushpull", 9) == 0)
		return ROUTE_PUSHPULL;
	return ROUTE_OTHER;
}

/* A response was queued: count it by route and status, with its duration */
static void
count_response(Conn *conn, int status)
{
	if (metrics_counters() == NULL)
		return;
	metrics_count_request(route_of(conn), status, conn->http.request_started);
}

/* A WebSocket session began (delta 1: its 101 counts too) or ended */
void
http_count_ws_session(Conn *conn, int delta)
{
	if (metrics_counters() == NULL)
		return;
	if (delta > 0)
		metrics_count_request(route_of(conn), 101, conn->http.request_started);
	metrics_count_ws_session(delta);
}

/* Queue a whole response on the connection */
void
http_respond(Conn *conn, int status, const char *content_type,
			 const char *body, size_t len, const char *extra_headers)
{
	bool		close = conn->http.close_after_write || !conn->http.keep_alive ||
	conn->http.parser.upgrade;	/* a refused upgrade */

	count_response(conn, status);
	appendStringInfo(&conn->sock.out, "HTTP/1.1 %d %s\r\n", status,
					 http_status_text(status));
	appendStringInfoString(&conn->sock.out, "Server: setstream\r\n");
	if (content_type)
		appendStringInfo(&conn->sock.out, "Content-Type: %s\r\n", content_type);
	appendStringInfo(&conn->sock.out, "Content-Length: %zu\r\n", len);
	if (extra_headers)
		appendStringInfoString(&conn->sock.out, extra_headers);
	appendStringInfoString(&conn->sock.out, close ? "Connection: close\r\n\r\n"
						   : "Connection: keep-alive\r\n\r\n");
	if (len > 0)
		appendBinaryStringInfo(&conn->sock.out, body, len);
	if (close)
		conn->http.close_after_write = true;
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

/* Write queued bytes (sock_flush); false until all are written */
bool
http_conn_flush(Conn *conn)
{
	return sock_flush(&conn->sock);
}

/* ---------------------------------------------------------------------
 * Responses, as a connection setstream opens itself reads them: the same
 * parser in HTTP_RESPONSE mode, with the same care for what the peer
 * controls (the body is bounded).  Nothing of the listener uses it yet.
 * ---------------------------------------------------------------------
 */
static int
on_response_header_field(http_parser *p, const char *at, size_t len)
{
	HttpResponse *resp = p->data;

	/* only Content-Type is kept: remember whether this is its name */
	resp->in_content_type = len == 12 && pg_strncasecmp(at, "Content-Type", 12) == 0;
	return 0;
}

static int
on_response_header_value(http_parser *p, const char *at, size_t len)
{
	HttpResponse *resp = p->data;

	if (resp->in_content_type)
		resp->content_type = resp->content_type == NULL ?
			pnstrdup(at, Min(len, 256)) :
			psprintf("%s%.*s", resp->content_type, (int) Min(len, 256), at);
	return 0;
}

static int
on_response_body(http_parser *p, const char *at, size_t len)
{
	HttpResponse *resp = p->data;

	if (resp->body.len + len > (size_t) resp->max_body)
	{
		resp->error = "the response body is too large";
		return 1;
	}
	appendBinaryStringInfo(&resp->body, at, len);
	return 0;
}

static int
on_response_complete(http_parser *p)
{
	HttpResponse *resp = p->data;

	if (p->status_code < 100)
	{
		resp->error = "the response status is not valid";
		return 1;
	}
	resp->status = p->status_code;
	resp->keep_alive = http_should_keep_alive(p) != 0;
	resp->complete = true;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings response_settings = {
	.on_header_field = on_response_header_field,
	.on_header_value = on_response_header_value,
	.on_body = on_response_body,
	.on_message_complete = on_response_complete,
};

/* Ready to read one response of at most max_body bytes (current memory) */
void
http_response_init(http_parser *parser, HttpResponse *resp, int64 max_body)
{
	memset(resp, 0, sizeof(*resp));
	initStringInfo(&resp->body);
	resp->max_body = max_body;
	http_parser_init(parser, HTTP_RESPONSE);
	parser->data = resp;
}

/*
 * Parse received bytes of the response.  Returns how many were used: the
 * parser stops after a whole response (resp->complete; the bytes after it
 * belong to the next one) or at an error (resp->error).
 */
size_t
http_parse_response(http_parser *parser, HttpResponse *resp,
					const char *data, size_t len)
{
	size_t		used = http_parser_execute(parser, &response_settings, data, len);
	enum http_errno err = HTTP_PARSER_ERRNO(parser);

	if (err == HPE_PAUSED)
		http_parser_pause(parser, 0);
	else if (err != HPE_OK && resp->error == NULL)
		resp->error = http_errno_description(err);
	return used;
}
