/*-------------------------------------------------------------------------
 *
 * ws.c
 *	  The pushpull WebSocket binding on a listener connection: the RFC 6455
 *	  opening handshake (only when the client offers the "pushpull"
 *	  subprotocol) and the session, framed by wslay inside the listener's
 *	  own loop, over plain TCP or TLS.
 *
 *	  Messages are text frames, one Communication Object each, in both
 *	  directions at any time.  Received messages wait in the connection's
 *	  inbox for the next database turn (routes.c, route_ws_turn); what the
 *	  turn answers (acks, setErrs, outbound SETs) waits in its outbox and is
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
#include <openssl/sha.h>
#include <wslay/wslay.h>

#include "utils/memutils.h"

#include "server/listener.h"
#include "server/metrics.h"
#include "setstream.h"
#include "shmem/wakeup.h"

static void ws_close(Conn *conn, int code, const char *reason);

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static wslay_event_context_ptr
ctx_of(Conn *conn)
{
	return (wslay_event_context_ptr) conn->ws;
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
	Request    *r = &conn->req;
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
	appendStringInfo(&conn->out,
					 "HTTP/1.1 101 Switching Protocols\r\n"
					 "Server: setstream\r\n"
					 "Upgrade: websocket\r\n"
					 "Connection: Upgrade\r\n"
					 "Sec-WebSocket-Accept: %s\r\n"
					 "Sec-WebSocket-Protocol: pushpull\r\n\r\n", accept);
	conn->websocket = true;
	conn->ws_stream = MemoryContextStrdup(conn->cxt, stream);
	conn->ws_slot = wakeup_slot(stream);
	return true;
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
	if (conn->inlen > 0)
	{
		n = Min((size_t) conn->inlen, len);
		memcpy(buf, conn->in, n);
		memmove(conn->in, conn->in + n, conn->inlen - n);
		conn->inlen -= n;
		return n;
	}
	n = conn_recv(conn, (char *) buf, len);
	if (n > 0)
	{
		conn->ws_last_rx = GetCurrentTimestamp();
		conn->ws_ping_sent = false;
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
	ssize_t		n = conn_send(conn, (const char *) data, len);

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
	 * hide what follows it (JSON text has none).  An empty message comes
	 * with msg NULL, which pnstrdup must not get.
	 */
	if (conn->ws_denied)
		return;					/* closing: nothing more is applied */
	if (arg->opcode == WSLAY_TEXT_FRAME && arg->msg_length > 0 &&
		memchr(arg->msg, '\0', arg->msg_length) != NULL)
		wslay_event_queue_close(ctx, 1007, (const uint8_t *) nul_reason,
								sizeof(nul_reason) - 1);
	else if (arg->opcode == WSLAY_TEXT_FRAME)
	{
		conn->ws_inbox = lappend(conn->ws_inbox, arg->msg_length == 0 ? pstrdup("") :
								 pnstrdup((const char *) arg->msg, arg->msg_length));
		conn->ws_inbox_bytes += arg->msg_length;
		listener_buffered_bytes += arg->msg_length;
	}
	else if (arg->opcode == WSLAY_BINARY_FRAME)
		wslay_event_queue_close(ctx, WSLAY_CODE_UNSUPPORTED_DATA,
								(const uint8_t *) "pushpull uses text frames", 25);
}

/* After the 101 is written: begin the session */
bool
ws_start(Conn *conn)
{
	struct wslay_event_callbacks callbacks;
	wslay_event_context_ptr ctx;
	MemoryContext old = MemoryContextSwitchTo(conn->cxt);

	memset(&callbacks, 0, sizeof(callbacks));
	callbacks.recv_callback = ws_recv;
	callbacks.send_callback = ws_send;
	callbacks.on_msg_recv_callback = ws_on_msg;
	if (wslay_event_context_server_init(&ctx, &callbacks, conn) != 0)
	{
		MemoryContextSwitchTo(old);
		return false;
	}
	wslay_event_config_set_max_recv_msg_length(ctx, setstream_max_request_bytes);
	conn->ws = ctx;
	metrics_ws_session(conn, 1);
	conn->phase = PHASE_WEBSOCKET;
	conn->ws_last_rx = GetCurrentTimestamp();
	conn->ws_next_take = 0;		/* take due SETs at the next turn */
	conn->ws_generation = wakeup_generation(conn->ws_slot) - 1;
	MemoryContextSwitchTo(old);
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
	wslay_event_context_ptr ctx = ctx_of(conn);

	return ctx != NULL &&
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
	wslay_event_context_ptr ctx = ctx_of(conn);

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
	return list_length(conn->ws_inbox) < WS_MAX_INBOX &&
		conn->ws_inbox_bytes < setstream_max_request_bytes &&
		listener_buffered_bytes < setstream_max_buffered_bytes &&
		!ws_output_full(conn);
}

/* The turn took the inbox (or it is dropped) */
void
ws_inbox_clear(Conn *conn)
{
	list_free_deep(conn->ws_inbox);
	conn->ws_inbox = NIL;
	listener_buffered_bytes -= conn->ws_inbox_bytes;
	conn->ws_inbox_bytes = 0;
}

bool
ws_wants_write(Conn *conn)
{
	return conn->ws != NULL && wslay_event_want_write(ctx_of(conn));
}

/* Queue what the turn produced, and any close it asked for */
bool
ws_send_outbox(Conn *conn)
{
	wslay_event_context_ptr ctx = ctx_of(conn);
	ListCell   *lc;

	foreach(lc, conn->ws_outbox)
	{
		char	   *text = lfirst(lc);
		struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, (const uint8_t *) text, strlen(text)};

		wslay_event_queue_msg(ctx, &msg);
		pfree(text);
	}
	list_free(conn->ws_outbox);
	conn->ws_outbox = NIL;
	if (conn->ws_close_code != 0)
	{
		ws_close(conn, conn->ws_close_code, conn->ws_close_reason);
		conn->ws_close_code = 0;
	}
	return ws_on_event(conn, 0);
}

static void
ws_close(Conn *conn, int code, const char *reason)
{
	wslay_event_queue_close(ctx_of(conn), (uint16_t) code,
							(const uint8_t *) reason, reason ? strlen(reason) : 0);
}

/* Should the next database turn look at this session? */
bool
ws_turn_due(Conn *conn, const uint64 *generations, TimestampTz now)
{
	return conn->phase == PHASE_WEBSOCKET && !conn->ws_denied &&
		(conn->ws_inbox != NIL || conn->ws_prepared != NIL ||
		 (ws_may_take(conn) &&
		  (generations[conn->ws_slot] != conn->ws_generation ||
		   now >= conn->ws_next_take)));
}

/*
 * Liveness: ping a peer silent for half of setstream.idle_timeout; drop
 * one silent for all of it.  Returns false when the peer is gone.
 */
bool
ws_housekeeping(Conn *conn, TimestampTz now)
{
	if (TimestampDifferenceExceeds(conn->ws_last_rx, now, setstream_idle_timeout_ms))
		return false;
	/* a peer that reads nothing of what it is sent for half of it goes */
	if (!ws_output_full(conn))
		conn->ws_full_since = 0;
	else if (conn->ws_full_since == 0)
		conn->ws_full_since = now;
	else if (TimestampDifferenceExceeds(conn->ws_full_since, now,
										setstream_idle_timeout_ms / 2))
		return false;
	if (!conn->ws_ping_sent &&
		TimestampDifferenceExceeds(conn->ws_last_rx, now, setstream_idle_timeout_ms / 2))
	{
		struct wslay_event_msg ping = {WSLAY_PING, (const uint8_t *) "", 0};

		wslay_event_queue_msg(ctx_of(conn), &ping);
		conn->ws_ping_sent = true;
		return ws_on_event(conn, 0);
	}
	return true;
}

void
ws_free(Conn *conn)
{
	ws_inbox_clear(conn);
	if (conn->ws != NULL)
	{
		wslay_event_context_free(ctx_of(conn));
		conn->ws = NULL;
		metrics_ws_session(conn, -1);
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
	conn->ws_prepared = NIL;	/* turn memory, gone with the turn */
	list_free_deep(conn->ws_outbox);
	conn->ws_outbox = NIL;
	conn->ws_close_code = SETERR_WS_INTERNAL_ERROR;
	conn->ws_close_reason = "the server could not process the messages";
}
