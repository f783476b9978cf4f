/*-------------------------------------------------------------------------
 *
 * ws.c
 *	  WebSocket frames on a connection (RFC 6455, with wslay), over plain
 *	  TCP or TLS (sock.c): the opening handshake of the pushpull binding on
 *	  a listener connection (only when the client offers the "pushpull"
 *	  subprotocol), and the frames of the session, inside the listener's
 *	  own loop.  The same frames serve the client side, masked
 *	  (ws_start_client), on a connection setstream opens itself.
 *
 *	  Messages are text frames, one Communication Object each, in both
 *	  directions at any time.  Received messages wait in the session's
 *	  inbox for the next database turn (wssession.c); what the turn
 *	  answers (acks, setErrs, outbound SETs) waits in its outbox and is
 *	  queued to wslay only after the commit.  Idle peers are pinged; a peer
 *	  that stays silent past setstream.idle_timeout is dropped, and the SETs
 *	  it held are redelivered after setstream.redelivery_interval.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <wslay/wslay.h>

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "server/ws_int.h"
#include "setstream.h"
#include "shmem/wakeup.h"

static void ws_close(Conn *conn, int code, const char *reason);

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static wslay_event_context_ptr
ctx_of(Conn *conn)
{
	return (wslay_event_context_ptr) conn->ws->ctx;
}

/* Does a comma-separated header value hold this token (case-insensitive)? */
static bool
header_has_token(const char *value, const char *token)
{
	size_t		tlen = strlen(token);
	const char *p = value;

	while (p && *p)
	{
		size_t		len;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		len = strcspn(p, ", \t");
		if (len == tlen && pg_strncasecmp(p, token, tlen) == 0)
			return true;
		p += len;
	}
	return false;
}

/*
 * Answer an upgrade request on /streams/{name}/pushpull.  Returns true
 * when a 101 is queued; otherwise an error response is queued.
 */
bool
ws_handshake(Conn *conn, const char *stream)
{
	Request    *r = &conn->http.req;
	unsigned char digest[SHA_DIGEST_LENGTH];
	char		accept[64];
	char	   *keyed;

	if (r->upgrade == NULL || !header_has_token(r->upgrade, "websocket"))
	{
		http_respond_error(conn, 426, NULL,
						   "GET on this endpoint is the pushpull WebSocket binding: send Upgrade: websocket, or POST a Communication Object",
						   "Upgrade: websocket\r\n");
		return false;
	}
	if (r->ws_version == NULL || strcmp(r->ws_version, "13") != 0)
	{
		http_respond_error(conn, 426, NULL, "WebSocket version 13 is required",
						   "Sec-WebSocket-Version: 13\r\n");
		return false;
	}
	if (r->ws_key == NULL || strlen(r->ws_key) != 24)
	{
		http_respond_error(conn, 400, NULL, "Sec-WebSocket-Key is missing or malformed", NULL);
		return false;
	}
	if (r->ws_protocol == NULL || !header_has_token(r->ws_protocol, "pushpull"))
	{
		http_respond_error(conn, 400, NULL,
						   "the WebSocket subprotocol \"pushpull\" is required (Sec-WebSocket-Protocol: pushpull)",
						   NULL);
		return false;
	}

	keyed = psprintf("%s" WS_GUID, r->ws_key);
	SHA1((unsigned char *) keyed, strlen(keyed), digest);
	EVP_EncodeBlock((unsigned char *) accept, digest, sizeof(digest));
	appendStringInfo(&conn->sock.out,
					 "HTTP/1.1 101 Switching Protocols\r\n"
					 "Server: setstream\r\n"
					 "Upgrade: websocket\r\n"
					 "Connection: Upgrade\r\n"
					 "Sec-WebSocket-Accept: %s\r\n"
					 "Sec-WebSocket-Protocol: pushpull\r\n\r\n", accept);
	conn->ws = ws_new(conn, false);
	conn->ws->stream = MemoryContextStrdup(conn->cxt, stream);
	conn->ws->slot = wakeup_slot(stream);
	return true;
}

/* The connection's session, not started yet (in its memory) */
WsSession *
ws_new(Conn *conn, bool client)
{
	WsSession  *ws = MemoryContextAllocZero(conn->cxt, sizeof(WsSession));

	ws->client = client;
	return ws;
}

/* wslay reads: first what the HTTP parser left over, then the socket */
static ssize_t
ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
		void *user_data)
{
	Conn	   *conn = user_data;
	ssize_t		n;

	/* bound what one peer can queue: the turn drains the inbox first */
	if (!ws_reading(conn))
	{
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	if (conn->sock.inlen > 0)
		return sock_take_input(&conn->sock, (char *) buf, len);
	n = sock_recv(&conn->sock, (char *) buf, len);
	if (n > 0)
	{
		conn->ws->last_rx = GetCurrentTimestamp();
		conn->ws->ping_sent = false;
		return n;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
	else
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static ssize_t
ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
		int flags, void *user_data)
{
	Conn	   *conn = user_data;
	ssize_t		n = sock_send(&conn->sock, (const char *) data, len);

	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
	else
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static void
ws_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
		  void *user_data)
{
	static const char nul_reason[] = "a Communication Object holds no NUL byte";
	Conn	   *conn = user_data;

	/*
	 * The inbox keeps C strings: a NUL byte would cut the message short and
	 * hide what follows it (JSON text has none).  An empty message comes with
	 * msg NULL, which pnstrdup must not get.
	 */
	if (conn->ws->denied)
		return;					/* closing: nothing more is applied */
	if (arg->opcode == WSLAY_TEXT_FRAME && arg->msg_length > 0 &&
		memchr(arg->msg, '\0', arg->msg_length) != NULL)
		wslay_event_queue_close(ctx, 1007, (const uint8_t *) nul_reason,
								sizeof(nul_reason) - 1);
	else if (arg->opcode == WSLAY_TEXT_FRAME)
	{
		conn->ws->inbox = lappend(conn->ws->inbox, arg->msg_length == 0 ? pstrdup("") :
								  pnstrdup((const char *) arg->msg, arg->msg_length));
		conn->ws->inbox_bytes += arg->msg_length;
		listener_buffered_bytes += arg->msg_length;
	}
	else if (arg->opcode == WSLAY_BINARY_FRAME)
		wslay_event_queue_close(ctx, WSLAY_CODE_UNSUPPORTED_DATA,
								(const uint8_t *) "pushpull uses text frames", 25);
}

/* A client's frames are masked (RFC 6455 5.3): the key from OpenSSL */
static int
ws_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
		   void *user_data)
{
	return RAND_bytes(buf, (int) len) == 1 ? 0 : -1;
}

static bool
ws_begin(Conn *conn)
{
	struct wslay_event_callbacks callbacks;
	wslay_event_context_ptr ctx;
	MemoryContext old = MemoryContextSwitchTo(conn->cxt);
	int			rc;

	memset(&callbacks, 0, sizeof(callbacks));
	callbacks.recv_callback = ws_recv;
	callbacks.send_callback = ws_send;
	callbacks.on_msg_recv_callback = ws_on_msg;
	if (conn->ws->client)
	{
		callbacks.genmask_callback = ws_genmask;
		rc = wslay_event_context_client_init(&ctx, &callbacks, conn);
	}
	else
		rc = wslay_event_context_server_init(&ctx, &callbacks, conn);
	if (rc != 0)
	{
		MemoryContextSwitchTo(old);
		return false;
	}
	wslay_event_config_set_max_recv_msg_length(ctx, setstream_max_request_bytes);
	conn->ws->ctx = ctx;
	conn->ws->last_rx = GetCurrentTimestamp();
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * After the 101 is written: begin the session (the caller puts the
 * connection in its WebSocket phase).  Returns false when it is over
 * already.
 */
bool
ws_start(Conn *conn)
{
	if (!ws_begin(conn))
		return false;
	http_count_ws_session(conn, 1);
	conn->handler = &ws_session_handler;
	conn->ws->next_take = 0;	/* take due SETs at the next turn */
	conn->ws->generation = wakeup_generation(conn->ws->slot) - 1;
	return ws_on_event(conn, 0);
}

/*
 * The client side, on a connection setstream opened (its handshake
 * answered 101): the same frames, masked, with the same limits.  No
 * session of the listener uses it; it is the seam for one that will.
 */
bool
ws_start_client(Conn *conn)
{
	if (conn->ws == NULL)
		conn->ws = ws_new(conn, true);
	if (!ws_begin(conn))
		return false;
	return ws_on_event(conn, 0);
}

/*
 * Move bytes: read what arrived (events has EPOLLIN, or bytes are left
 * over from the handshake) and write what is queued.  Returns false when
 * the session is over and the connection should close.
 */
bool
ws_on_event(Conn *conn, uint32 events)
{
	wslay_event_context_ptr ctx = ctx_of(conn);
	MemoryContext old = MemoryContextSwitchTo(conn->cxt);
	bool		ok = true;

	if (wslay_event_want_read(ctx) && wslay_event_recv(ctx) != 0)
		ok = false;
	if (ok && wslay_event_want_write(ctx) && wslay_event_send(ctx) != 0)
		ok = false;
	MemoryContextSwitchTo(old);
	if (!ok)
		return false;
	/* both sides closed, or we closed and nothing is left to write */
	if (!wslay_event_want_read(ctx) && !wslay_event_want_write(ctx))
		return false;
	return true;
}

/*
 * Is the output queued to the peer over its cap (the peer does not read
 * fast enough, or floods pings and leaves their pongs unread)?
 */
static bool
ws_output_full(Conn *conn)
{
	wslay_event_context_ptr ctx = conn->ws->ctx;

	return conn->ws->ctx != NULL &&
		(wslay_event_get_queued_msg_count(ctx) >= WS_MAX_QUEUED_MSGS ||
		 wslay_event_get_queued_msg_length(ctx) >= WS_MAX_QUEUED_BYTES);
}

/*
 * May the next turn hand out more SETs?  Not while anything sent before is
 * still waiting to leave (wslay's counts leave out the message it is in
 * the middle of sending, so ask whether it wants to write at all): a peer
 * that does not read holds one batch at most, however often its SETs fall
 * due again.
 */
bool
ws_may_take(Conn *conn)
{
	wslay_event_context_ptr ctx = conn->ws->ctx;

	return ctx == NULL || !wslay_event_want_write(ctx);
}

/*
 * May the session read more now?  Not while the inbox holds what the next
 * turn takes (WS_MAX_INBOX messages, or setstream.max_request_bytes), while
 * the worker buffers setstream.max_buffered_bytes, or while its output is
 * over its cap: a peer that does not read what it is sent (pongs included)
 * gets nothing more read either.
 */
bool
ws_reading(Conn *conn)
{
	return list_length(conn->ws->inbox) < WS_MAX_INBOX &&
		conn->ws->inbox_bytes < setstream_max_request_bytes &&
		listener_buffered_bytes < setstream_max_buffered_bytes &&
		!ws_output_full(conn);
}

/* The turn took the inbox (or it is dropped) */
void
ws_inbox_clear(Conn *conn)
{
	list_free_deep(conn->ws->inbox);
	conn->ws->inbox = NIL;
	listener_buffered_bytes -= conn->ws->inbox_bytes;
	conn->ws->inbox_bytes = 0;
}

bool
ws_wants_write(Conn *conn)
{
	return conn->ws != NULL && conn->ws->ctx != NULL &&
		wslay_event_want_write(ctx_of(conn));
}

/*
 * The turn's messages wait for their WAL flush past the turn (conn.c):
 * the outbox moves into the connection's memory, out of the turn's
 */
void
ws_keep_outbox(Conn *conn)
{
	List	   *outbox = conn->ws->outbox;
	List	   *kept = NIL;
	MemoryContext old;
	ListCell   *lc;

	/* the messages are in conn->cxt already (wssession.c); the list may not be */
	if (outbox == NIL || GetMemoryChunkContext(outbox) == conn->cxt)
		return;
	old = MemoryContextSwitchTo(conn->cxt);
	foreach(lc, outbox)
		kept = lappend(kept, lfirst(lc));
	MemoryContextSwitchTo(old);
	conn->ws->outbox = kept;
}

/* Queue what the turn produced, and any close it asked for */
bool
ws_send_outbox(Conn *conn)
{
	wslay_event_context_ptr ctx = ctx_of(conn);
	ListCell   *lc;

	foreach(lc, conn->ws->outbox)
	{
		char	   *body = lfirst(lc);
		struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, (const uint8_t *) body, strlen(body)};

		wslay_event_queue_msg(ctx, &msg);
		pfree(body);
	}
	list_free(conn->ws->outbox);
	conn->ws->outbox = NIL;
	if (conn->ws->close_code != 0)
	{
		ws_close(conn, conn->ws->close_code, conn->ws->close_reason);
		conn->ws->close_code = 0;
	}
	return ws_on_event(conn, 0);
}

static void
ws_close(Conn *conn, int code, const char *reason)
{
	wslay_event_queue_close(ctx_of(conn), (uint16_t) code,
							(const uint8_t *) reason, reason ? strlen(reason) : 0);
}

/*
 * The socket has events for the session (events), or hung up (hangup):
 * move bytes, and say whether it goes on.  A peer that left after sending
 * messages gets one last turn for them (its acks still count).
 */
WsEvent
ws_event(Conn *conn, uint32 events, bool hangup)
{
	if (conn->ws->closing)
		return WS_WAITING;
	if (hangup || !ws_on_event(conn, events))
	{
		if (conn->ws->inbox != NIL)
		{
			conn->ws->closing = true;
			return WS_LAST_TURN;
		}
		return WS_OVER;
	}
	return WS_GOING;
}

/* Has the peer sent messages that the next turn takes? */
bool
ws_has_input(Conn *conn)
{
	return conn->ws->inbox != NIL;
}

/* May the session read now (and has the peer not left)? */
bool
ws_wants_read(Conn *conn)
{
	return !conn->ws->closing && ws_reading(conn);
}

/*
 * After the turn committed: send what it produced.  Returns false when
 * the session is over (the peer had left, or it failed).
 */
bool
ws_after_turn(Conn *conn)
{
	return !conn->ws->closing && ws_send_outbox(conn);
}

/*
 * Liveness: ping a peer silent for half of setstream.idle_timeout; drop
 * one silent for all of it.  Returns false when the peer is gone.
 */
bool
ws_housekeeping(Conn *conn, TimestampTz now)
{
	if (TimestampDifferenceExceeds(conn->ws->last_rx, now, setstream_idle_timeout_ms))
		return false;
	/* a peer that reads nothing of what it is sent for half of it goes */
	if (!ws_output_full(conn))
		conn->ws->full_since = 0;
	else if (conn->ws->full_since == 0)
		conn->ws->full_since = now;
	else if (TimestampDifferenceExceeds(conn->ws->full_since, now,
										setstream_idle_timeout_ms / 2))
		return false;
	if (!conn->ws->ping_sent &&
		TimestampDifferenceExceeds(conn->ws->last_rx, now, setstream_idle_timeout_ms / 2))
	{
		struct wslay_event_msg ping = {WSLAY_PING, (const uint8_t *) "", 0};

		wslay_event_queue_msg(ctx_of(conn), &ping);
		conn->ws->ping_sent = true;
		return ws_on_event(conn, 0);
	}
	return true;
}

void
ws_free(Conn *conn)
{
	if (conn->ws == NULL)
		return;
	ws_inbox_clear(conn);
	if (conn->ws->ctx != NULL)
	{
		wslay_event_context_free(ctx_of(conn));
		conn->ws->ctx = NULL;
		if (!conn->ws->client)
			http_count_ws_session(conn, -1);
	}
}

/*
 * The turn failed: nothing it produced may be sent.  Drop the messages
 * (the peer resends SETs it gets no ack for) and close with 1011.
 */
void
ws_abandon_turn(Conn *conn)
{
	ws_inbox_clear(conn);
	conn->ws->prepared = NIL;	/* turn memory, gone with the turn */
	list_free_deep(conn->ws->outbox);
	conn->ws->outbox = NIL;
	conn->ws->close_code = SETERR_WS_INTERNAL_ERROR;
	conn->ws->close_reason = "the server could not process the messages";
}

/*
 * The window of in-flight SETs, the same for both sides of a session (the
 * listener's, wssession.c, and the one setstream opens, pushpullws.c)
 */

/* Forget an in-flight SET the peer acknowledged or rejected */
void
ws_settle(Conn *conn, const char *jti)
{
	ListCell   *f;

	foreach(f, conn->ws->in_flight)
	{
		InFlight   *inf = lfirst(f);

		if (strcmp(inf->jti, jti) == 0)
		{
			conn->ws->in_flight = foreach_delete_current(conn->ws->in_flight, f);
			pfree(inf->jti);
			pfree(inf);
			return;
		}
	}
}

/* In-flight SETs past setstream.redelivery_interval are due again anywhere */
void
ws_expire_in_flight(Conn *conn, TimestampTz now)
{
	ListCell   *f;

	foreach(f, conn->ws->in_flight)
	{
		InFlight   *inf = lfirst(f);

		if (TimestampDifferenceExceeds(inf->sent_at, now,
									   setstream_redelivery_interval_ms))
		{
			conn->ws->in_flight = foreach_delete_current(conn->ws->in_flight, f);
			pfree(inf->jti);
			pfree(inf);
		}
	}
}
