/*-------------------------------------------------------------------------
 *
 * poll.c
 *	  A parked RFC 8936 long poll: a poll that found no SET due waits on
 *	  its connection (routes.c parks it) until its stream's generation
 *	  moves (shmem/wakeup.c), the configuration does, or
 *	  setstream.poll_timeout passes; then, in a database turn, it is
 *	  authorized again and takes what is due, or answers empty at its
 *	  deadline.  This file owns the parked state and its counts (the
 *	  listener's gauge, the stream's long_polls).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "exchange/exchange.h"
#include "server/auth/auth.h"
#include "server/conn.h"
#include "setstream.h"
#include "shmem/stats.h"
#include "shmem/wakeup.h"
#include "store/streamcache.h"

typedef struct ParkedPoll
{
	bool		parked;			/* counted as waiting */
	char	   *stream;			/* in the request's memory */
	int			slot;
	uint64		generation;
	int			max_events;
	TimestampTz deadline;
} ParkedPoll;

static int	nparked = 0;

static TurnResult poll_execute(Conn *conn, const uint64 *generations,
							   TimestampTz now);
static TurnResult poll_fail(Conn *conn, const SetAnswer *answer);
static bool poll_due(Conn *conn, const uint64 *generations, TimestampTz now);
static bool poll_wake_at(Conn *conn, TimestampTz *at);
static const char *poll_waits_on(Conn *conn);

static const ConnHandler poll_handler = {
	.name = "long poll",
	.prepare = NULL,			/* prepared when it was a request */
	.execute = poll_execute,
	.fail = poll_fail,
	.due = poll_due,
	.wake_at = poll_wake_at,
	.waits_on = poll_waits_on,
};

/*
 * Park the poll on its connection (in the turn's transaction, when no SET
 * is due): it waits for the generation of the stream's slot to move from
 * what the turn began with.
 */
void
poll_park(Conn *conn, const char *name, int max_events,
		  const uint64 *generations)
{
	ParkedPoll *p = conn->poll;

	if (p == NULL)
		p = conn->poll = MemoryContextAllocZero(conn->cxt, sizeof(ParkedPoll));
	p->stream = MemoryContextStrdup(conn->http.reqcxt, name);
	p->slot = wakeup_slot(name);
	p->generation = generations[p->slot];
	p->max_events = max_events;
	p->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											  setstream_poll_timeout_ms);
	if (!p->parked)
	{
		p->parked = true;
		nparked++;
		stats_count_long_poll(p->stream, 1);
	}
	conn->handler = &poll_handler;
}

/* It waits no more (answered, failed or closed); a no-op otherwise */
void
poll_unpark(Conn *conn)
{
	ParkedPoll *p = conn->poll;

	if (p == NULL || !p->parked)
		return;
	p->parked = false;
	nparked--;
	stats_count_long_poll(p->stream, -1);
}

/* Long polls waiting in this listener */
int
poll_parked_count(void)
{
	return nparked;
}

static bool
poll_due(Conn *conn, const uint64 *generations, TimestampTz now)
{
	ParkedPoll *p = conn->poll;

	return generations[p->slot] != p->generation || now >= p->deadline;
}

static bool
poll_wake_at(Conn *conn, TimestampTz *at)
{
	*at = conn->poll->deadline;
	return true;
}

static const char *
poll_waits_on(Conn *conn)
{
	return conn->poll->stream;
}

/*
 * The stream's generation moved, the configuration did, or its time is
 * up.  It is authorized again first: a revoked token or an unbound
 * certificate ends it with 401 or 403.  A stream disabled meanwhile
 * answers it at once with no SETs.
 */
static TurnResult
poll_execute(Conn *conn, const uint64 *generations, TimestampTz now)
{
	ParkedPoll *p = conn->poll;
	json_t	   *response = json_object();
	json_t	   *sets;
	bool		more = false;
	StreamInfo *stream = streamcache_get(p->stream, true, true);
	const char *why;
	int			denied = auth_session_denied(conn, stream, &why);

	if (denied == 401)
	{
		poll_unpark(conn);
		http_respond_error(conn, 401, seterr_name(SETERR_AUTHENTICATION_FAILED), why,
						   auth_bearer_challenge_invalid);
		return TURN_ANSWERED;
	}
	if (denied != 0)
	{
		poll_unpark(conn);
		http_respond_error(conn, denied, seterr_name(SETERR_ACCESS_DENIED), why, NULL);
		return TURN_ANSWERED;
	}
	if (now >= p->deadline || stream->status == 'd')
		sets = json_object();
	else
	{
		sets = exchange_take(stream, p->max_events, &more);
		if (json_object_size(sets) == 0)
		{
			p->generation = generations[p->slot];
			return TURN_PARKED;
		}
	}
	poll_unpark(conn);
	json_object_set_new(response, "sets", sets);
	json_object_set_new(response, "moreAvailable", json_boolean(more));
	http_respond_json(conn, 200, response, NULL);
	return TURN_ANSWERED;
}

static TurnResult
poll_fail(Conn *conn, const SetAnswer *answer)
{
	poll_unpark(conn);
	sock_discard_output(&conn->sock);
	http_respond_answer(conn, answer);
	return TURN_ANSWERED;
}
