/*-------------------------------------------------------------------------
 *
 * http.h
 *	  HTTP/1.1 on one connection (server/http.c): the message being read,
 *	  with http-parser, and the responses queued on the connection's socket
 *	  buffers (server/sock.h).  A listener connection reads requests; a
 *	  connection setstream opens itself would read responses with the same
 *	  parser (http_parse_response).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_HTTP_H
#define SETSTREAM_HTTP_H

#include <http_parser.h>

#include "lib/stringinfo.h"
#include "utils/timestamp.h"

#include "codec/json.h"
#include "setstream.h"

#define MAX_HEADER_BYTES	16384
#define MAX_URL_BYTES		2048

struct Conn;

/* What a request carries that setstream looks at */
typedef struct Request
{
	int			method;			/* enum http_method */
	StringInfoData url;
	StringInfoData body;
	char	   *authorization;
	char	   *content_type;
	bool		expect_continue;
	bool		has_body;		/* Content-Length > 0, or chunked */
	bool		has_host;
	char	   *upgrade;		/* Upgrade */
	char	   *ws_key;			/* Sec-WebSocket-Key */
	char	   *ws_version;		/* Sec-WebSocket-Version */
	char	   *ws_protocol;	/* Sec-WebSocket-Protocol (all of them) */
	int			reject_status;	/* set while parsing: answer this and close */
	const char *reject_reason;
} Request;

/* The HTTP side of a connection: written by http.c only */
typedef struct HttpConn
{
	http_parser parser;
	MemoryContext reqcxt;		/* the current request's memory */
	StringInfoData hfield;		/* header being parsed */
	StringInfoData hvalue;
	bool		in_value;
	int			header_bytes;
	bool		message_complete;
	bool		auth_pending;	/* headers read, body not: authorize first */
	int64		body_counted;	/* bytes of req.body in buffered_bytes */
	bool		discarding;		/* refused on its headers: skip its body */
	int64		discarded;
	bool		keep_alive;
	bool		close_after_write;
	TimestampTz request_started;	/* first byte of the request being read */
	Request		req;
} HttpConn;

extern int64 listener_buffered_bytes;

extern void http_conn_init(struct Conn *conn);
extern bool http_conn_read(struct Conn *conn);
extern void http_conn_parse(struct Conn *conn);
extern void http_request_reset(struct Conn *conn);
extern void http_conn_release(struct Conn *conn);
extern void http_send_continue(struct Conn *conn);
extern void http_await_authorization(struct Conn *conn);
extern void http_authorized(struct Conn *conn);
extern void http_refused_on_headers(struct Conn *conn);
extern bool http_body_unread(struct Conn *conn);
extern bool http_request_complete(struct Conn *conn);
extern bool http_auth_pending(struct Conn *conn);
extern bool http_close_after_write(struct Conn *conn);
extern bool http_refused_request_over(struct Conn *conn);
extern TimestampTz http_request_started(struct Conn *conn);
extern void http_next_request(struct Conn *conn);
extern void http_respond(struct Conn *conn, int status, const char *content_type,
						 const char *body, size_t len, const char *extra_headers);
extern void http_respond_json(struct Conn *conn, int status, json_t *body,
							  const char *extra_headers);
extern void http_respond_error(struct Conn *conn, int status, const char *err,
							   const char *description, const char *extra_headers);
extern void http_respond_answer(struct Conn *conn, const SetAnswer *a);
extern bool http_conn_flush(struct Conn *conn);
extern const char *http_status_text(int status);
extern void http_count_ws_session(struct Conn *conn, int delta);

/* A response, as a connection setstream opens itself would read it */
typedef struct HttpResponse
{
	int			status;
	StringInfoData body;
	char	   *content_type;
	bool		complete;
	bool		keep_alive;
	bool		in_content_type;	/* parsing: the header is Content-Type */
	int64		max_body;		/* refuse a longer body */
	const char *error;			/* why it could not be parsed, or NULL */
} HttpResponse;

extern void http_response_init(http_parser *parser, HttpResponse *resp,
							   int64 max_body);
extern size_t http_parse_response(http_parser *parser, HttpResponse *resp,
								  const char *data, size_t len);

#endif
