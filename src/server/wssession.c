/*-------------------------------------------------------------------------
 *
 * wssession.c
 *	  The pushpull WebSocket session (GET /streams/{name}/pushpull with
 *	  Upgrade; ws.c frames the messages): each turn parses and verifies
 *	  what the peer sent outside any transaction (route_ws_prepare), then,
 *	  in the turn's transaction, checks that the session's credentials
 *	  still hold, applies the peer's acks, setErrs and SETs, and takes due
 *	  SETs to send (route_ws_turn).  What to send waits in the
 *	  connection's outbox for the commit.  SETs sent and not yet
 *	  acknowledged are due again after setstream.redelivery_interval.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <string.h>

#include "utils/memutils.h"

#include "codec/commobj.h"
#include "exchange/exchange.h"
#include "server/auth/auth.h"
#include "server/ws_int.h"
#include "setstream.h"
#include "store/streamcache.h"

/* A received message, parsed and verified before the transaction */
typedef struct WsMessage
{
	CommObj		obj;
	IngestItem *items;
} WsMessage;

/*
 * Parse and verify what the peer sent since the last turn (outside any
 * transaction, in the turn's memory).  Returns PREP_LOAD when the stream
 * must be loaded into the cache first (*load_stream).  A malformed message
 * makes the session close with 1007 after this turn.
 */
PrepResult
route_ws_prepare(Conn *conn, char **load_stream)
{
	StreamInfo *stream;
	ListCell   *lc;

	if (conn->ws->inbox == NIL)
		return PREP_EXECUTE;
	if (conn->ws->denied)
	{
		ws_inbox_clear(conn);
		return PREP_EXECUTE;
	}
	if (!streamcache_lookup(conn->ws->stream, &stream))
	{
		*load_stream = conn->ws->stream;
		return PREP_LOAD;
	}
	foreach(lc, conn->ws->inbox)
	{
		const char *text = lfirst(lc);
		WsMessage  *m = palloc0(sizeof(WsMessage));
		char		err[256];

		if (stream == NULL)
			break;				/* dropped: route_ws_turn ends the session */
		if (!commobj_parse(text, strlen(text), &m->obj, err, sizeof(err)))
		{
			conn->ws->close_code = 1007;
			conn->ws->close_reason = MemoryContextStrdup(conn->cxt, err);
			break;
		}
		m->items = exchange_verify(stream, &m->obj);
		conn->ws->prepared = lappend(conn->ws->prepared, m);
	}
	ws_inbox_clear(conn);
	return PREP_EXECUTE;
}

/* Apply one received Communication Object */
static void
ws_apply_message(Conn *conn, StreamInfo *stream, WsMessage *m,
				 json_t *ack, json_t *set_errs)
{
	ListCell   *lc;

	exchange_settle(stream, &m->obj);
	foreach(lc, m->obj.ack)
		ws_settle(conn, lfirst(lc));
	foreach(lc, m->obj.errs)
		ws_settle(conn, ((SetErrEntry *) lfirst(lc))->jti);
	exchange_collect(stream, &m->obj, m->items, ack, set_errs);
}

/* Hand out due SETs, within the connection's in-flight window */
static json_t *
ws_take(Conn *conn, StreamInfo *stream, TimestampTz now, bool *more)
{
	int			window = WS_MAX_IN_FLIGHT - list_length(conn->ws->in_flight);
	json_t	   *sets;
	const char *jti;
	json_t	   *v;

	*more = false;
	if (window <= 0 || !ws_may_take(conn))
		return json_object();
	sets = exchange_take(stream, window, more);
	json_object_foreach(sets, jti, v)
	{
		MemoryContext old = MemoryContextSwitchTo(conn->cxt);
		InFlight   *inf = palloc(sizeof(InFlight));

		inf->jti = pstrdup(jti);
		inf->sent_at = now;
		conn->ws->in_flight = lappend(conn->ws->in_flight, inf);
		MemoryContextSwitchTo(old);
	}
	return sets;
}

/*
 * One database turn of a WebSocket session: apply what the peer sent, then
 * hand out due SETs.  What to send waits in conn->ws->outbox for the commit.
 */
static TurnResult
route_ws_turn(Conn *conn, const uint64 *generations, TimestampTz now)
{
	StreamInfo *stream = streamcache_get(conn->ws->stream, true, true);
	json_t	   *ack = json_array();
	json_t	   *set_errs = json_object();
	json_t	   *response = json_object();
	json_t	   *sets;
	List	   *prepared = conn->ws->prepared;
	ListCell   *lc;
	bool		more;
	const char *why;

	/*
	 * The messages live in turn memory: forget them before applying, so that
	 * a turn that fails leaves no dangling list for the next one.
	 */
	conn->ws->prepared = NIL;
	if (conn->ws->denied)
		return TURN_SESSION;

	/*
	 * Revoked or unbound since the session opened: close with 1008
	 * and apply nothing the peer sent.
	 */
	if (auth_session_denied(conn, stream, &why) != 0)
	{
		conn->ws->denied = true;
		list_free_deep(conn->ws->outbox);
		conn->ws->outbox = NIL;
		conn->ws->close_code = 1008;
		conn->ws->close_reason = why;
		return TURN_SESSION;
	}
	foreach(lc, prepared)
		ws_apply_message(conn, stream, lfirst(lc), ack, set_errs);

	conn->ws->generation = generations[conn->ws->slot];
	ws_expire_in_flight(conn, now);
	if (conn->ws->closing)
		return TURN_SESSION;	/* the acks are applied; nothing more to send */
	/* output still waiting to be sent: take again as soon as it is out */
	more = !ws_may_take(conn);
	if (!more)
		sets = ws_take(conn, stream, now, &more);
	else
		sets = json_object();
	conn->ws->next_take = more && list_length(conn->ws->in_flight) < WS_MAX_IN_FLIGHT ?
		now : TimestampTzPlusMilliseconds(now, Max(setstream_redelivery_interval_ms, 1000));

	if (json_array_size(ack) > 0)
		json_object_set_new(response, "ack", ack);
	if (json_object_size(set_errs) > 0)
		json_object_set_new(response, "setErrs", set_errs);
	if (json_object_size(sets) > 0)
		json_object_set_new(response, "sets", sets);
	if (json_object_size(response) > 0)
	{
		StringInfoData text;

		initStringInfo(&text);
		json_write(&text, response);
		conn->ws->outbox = lappend(conn->ws->outbox,
								   MemoryContextStrdup(conn->cxt, text.data));
		pfree(text.data);
	}
	return TURN_SESSION;
}

/* The turn failed: nothing it produced may be sent (ws.c closes, 1011) */
static TurnResult
ws_session_fail(Conn *conn, const SetAnswer *answer)
{
	ws_abandon_turn(conn);
	return TURN_SESSION;
}

/* Should the next database turn look at this session? */
static bool
ws_session_due(Conn *conn, const uint64 *generations, TimestampTz now)
{
	WsSession  *ws = conn->ws;

	return !ws->denied &&
		(ws->inbox != NIL || ws->prepared != NIL ||
		 (ws_may_take(conn) &&
		  (generations[ws->slot] != ws->generation || now >= ws->next_take)));
}

/* When to take due SETs again, if it may */
static bool
ws_session_wake_at(Conn *conn, TimestampTz *at)
{
	*at = conn->ws->next_take;
	return ws_may_take(conn);
}

static const char *
ws_session_waits_on(Conn *conn)
{
	return conn->ws->stream;
}

const ConnHandler ws_session_handler = {
	.name = "WebSocket session",
	.log_failures = true,
	.prepare = route_ws_prepare,
	.execute = route_ws_turn,
	.fail = ws_session_fail,
	.due = ws_session_due,
	.wake_at = ws_session_wake_at,
	.waits_on = ws_session_waits_on,
};
