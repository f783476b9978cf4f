/*-------------------------------------------------------------------------
 *
 * ws_int.h
 *	  Inside the pushpull WebSocket session: shared by ws.c (the frames,
 *	  with wslay) and wssession.c (what a turn does with them), and seen
 *	  by no other file of the listener.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_WS_INT_H
#define SETSTREAM_WS_INT_H

#include "server/conn.h"

typedef struct InFlight
{
	char	   *jti;
	TimestampTz sent_at;
} InFlight;

typedef struct WsSession
{
	void	   *ctx;			/* wslay_event_context_ptr, once started */
	bool		client;			/* our frames are masked (we opened it) */
	char	   *stream;
	int			slot;
	uint64		generation;		/* the stream's generation at the last take */
	List	   *inbox;			/* received messages (char *), next turn */
	int64		inbox_bytes;	/* their bytes (in listener_buffered_bytes) */
	TimestampTz full_since;		/* output over its cap since, or 0 */
	List	   *prepared;		/* this turn's messages, parsed and verified */
	List	   *outbox;			/* messages to send after the commit */
	List	   *in_flight;		/* InFlight *: sent, not yet acked */
	TimestampTz next_take;
	TimestampTz last_rx;
	bool		ping_sent;
	bool		closing;		/* peer gone: one last turn for its acks */
	bool		denied;			/* no longer authorized: closing with 1008 */
	int			close_code;		/* close with this after the turn, or 0 */
	const char *close_reason;
} WsSession;

/* ws.c, for wssession.c */
extern WsSession *ws_new(Conn *conn, bool client);
extern bool ws_may_take(Conn *conn);
extern void ws_inbox_clear(Conn *conn);
extern void ws_abandon_turn(Conn *conn);
extern bool ws_send_outbox(Conn *conn);
extern void ws_settle(Conn *conn, const char *jti);
extern void ws_expire_in_flight(Conn *conn, TimestampTz now);

/* wssession.c, for the fuzz target */
extern PrepResult route_ws_prepare(Conn *conn, char **load_stream);

#endif
