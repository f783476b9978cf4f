/*-------------------------------------------------------------------------
 *
 * listener.h
 *	  The listener's connections and requests, shared by listener.c (the
 *	  event loop), http.c (HTTP/1.1 on a connection), tls.c and routes.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_LISTENER_H
#define SETSTREAM_LISTENER_H

#include <http_parser.h>
#include <openssl/ssl.h>

#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/timestamp.h"

#include "codec/json.h"
#include "server/auth/auth.h"
#include "setstream.h"

#define MAX_HEADER_BYTES	16384
#define MAX_URL_BYTES		2048

typedef enum ConnPhase
{
	PHASE_READ,					/* reading a request */
	PHASE_AUTH,					/* headers read; its stream must be loaded */
	PHASE_READY,				/* a whole request waits for the next turn */
	PHASE_PARKED,				/* a long poll waits for SETs */
	PHASE_WRITE,				/* writing a response */
	PHASE_DRAIN,				/* answered an error early; discarding input */
	PHASE_WEBSOCKET,			/* a pushpull WebSocket session */
	PHASE_CLOSED				/* to be freed */
} ConnPhase;

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

typedef struct Conn
{
	int			fd;
	SSL		   *ssl;			/* NULL for plain TCP */
	bool		tls_want_write; /* OpenSSL needs the socket writable */
	bool		tls_peer_known; /* the handshake is done, peer cert looked at */
	bool		tls_cert_rejected;	/* the peer's chain failed verification */
	bool		client_cert_verified;	/* a client cert verified by the CAs */
	uint8		client_cert_sha256[32]; /* its fingerprint (DER, SHA-256) */
	MemoryContext cxt;			/* the connection's memory */
	MemoryContext reqcxt;		/* the current request's memory */
	char		peer[64];		/* address, for log lines */
	AuthLimitKey peer_key;		/* whom failed authentications count against */

	http_parser parser;
	char	   *in;				/* received bytes not yet parsed */
	int			inlen;
	int			incap;
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
	Request		req;

	StringInfoData out;			/* response bytes */
	int			outpos;
	bool		close_after_write;

	ConnPhase	phase;
	uint32		epoll_events;	/* what the private epoll watches */
	TimestampTz last_activity;
	TimestampTz request_started;	/* first byte of the request being read */

	/* a parked long poll */
	char	   *poll_stream;
	int			poll_slot;
	uint64		poll_generation;
	int			poll_max_events;
	TimestampTz poll_deadline;

	/* the pushpull WebSocket binding (ws.c) */
	bool		websocket;		/* upgraded, or upgrading after this response */
	void	   *ws;				/* wslay_event_context_ptr */
	char	   *ws_stream;
	int			ws_slot;
	uint64		ws_generation;	/* the stream's generation at the last take */
	List	   *ws_inbox;		/* received messages (char *), next turn */
	int64		ws_inbox_bytes; /* their bytes (in listener_buffered_bytes) */
	TimestampTz ws_full_since;	/* output over its cap since, or 0 */
	List	   *ws_prepared;	/* this turn's messages, parsed and verified */
	List	   *ws_outbox;		/* messages to send after the commit */
	List	   *ws_in_flight;	/* InFlight *: sent, not yet acked */
	TimestampTz ws_next_take;
	TimestampTz ws_last_rx;
	bool		ws_ping_sent;
	bool		ws_closing;		/* peer gone: one last turn for its acks */
	bool		ws_denied;		/* no longer authorized: closing with 1008 */
	int			ws_close_code;	/* close with this after the turn, or 0 */
	const char *ws_close_reason;

	void	   *route_state;	/* routes.c: the prepared request */

	dlist_node	node;			/* in the listener's list of connections */
} Conn;

/* http.c */
extern void http_conn_init(Conn *conn);
extern bool http_conn_read(Conn *conn);
extern void http_conn_parse(Conn *conn);
extern void http_request_reset(Conn *conn);
extern void http_conn_release(Conn *conn);
extern void http_send_continue(Conn *conn);
extern int64 listener_buffered_bytes;
extern void http_respond(Conn *conn, int status, const char *content_type,
						 const char *body, size_t len, const char *extra_headers);
extern void http_respond_json(Conn *conn, int status, json_t *body,
							  const char *extra_headers);
extern void http_respond_error(Conn *conn, int status, const char *err,
							   const char *description, const char *extra_headers);
extern void http_respond_answer(Conn *conn, const SetAnswer *a);
extern bool http_conn_flush(Conn *conn);
extern const char *http_status_text(int status);

/* tls.c */
extern void tls_configure(void);
extern bool tls_enabled(void);
extern bool tls_configured(void);
extern bool tls_conn_start(Conn *conn);
extern ssize_t conn_recv(Conn *conn, char *buf, size_t len);
extern ssize_t conn_send(Conn *conn, const char *buf, size_t len);
extern void tls_conn_close(Conn *conn);

/* routes.c */
typedef enum RouteResult
{
	ROUTE_ANSWERED,				/* a response is in conn->out */
	ROUTE_PARKED				/* a long poll waits; see conn->poll_* */
} RouteResult;

typedef enum PrepResult
{
	PREP_ANSWERED,				/* answered without the database */
	PREP_EXECUTE,				/* route_execute must run in the transaction */
	PREP_LOAD					/* load the stream into the cache, then again */
} PrepResult;

extern PrepResult route_prepare(Conn *conn, char **load_stream);
extern PrepResult route_authorize_headers(Conn *conn, char **load_stream);
extern RouteResult route_execute(Conn *conn, const uint64 *generations);
extern bool route_is_push(Conn *conn);
extern void route_store_pushes(List *conns);
extern void route_answer_push(Conn *conn);
extern RouteResult route_parked_poll(Conn *conn, bool timed_out,
									 const uint64 *generations);

/* wssession.c */
extern bool route_ws_prepare(Conn *conn, char **load_stream);
extern void route_ws_turn(Conn *conn, const uint64 *generations,
						  TimestampTz now);

/* ws.c */
#define WS_MAX_IN_FLIGHT 1000	/* SETs sent, not yet acknowledged */
#define WS_MAX_INBOX 16			/* messages waiting for the next turn */
#define WS_MAX_QUEUED_MSGS 64	/* messages (pongs too) queued to send */
#define WS_MAX_QUEUED_BYTES (1024 * 1024)	/* their bytes */

typedef struct InFlight
{
	char	   *jti;
	TimestampTz sent_at;
} InFlight;

extern bool ws_handshake(Conn *conn, const char *stream);
extern bool ws_start(Conn *conn);
extern bool ws_on_event(Conn *conn, uint32 events);
extern bool ws_send_outbox(Conn *conn);
extern bool ws_housekeeping(Conn *conn, TimestampTz now);
extern bool ws_wants_write(Conn *conn);
extern bool ws_reading(Conn *conn);
extern bool ws_may_take(Conn *conn);
extern void ws_inbox_clear(Conn *conn);
extern void ws_free(Conn *conn);
extern void ws_abandon_turn(Conn *conn);
extern bool ws_turn_due(Conn *conn, const uint64 *generations, TimestampTz now);

/* listener.c */
extern void listener_run(int index);

/* listensock.c */
extern void listensock_hold_ports(void);
extern int	listensock_open(int *fds, int max);

#endif
