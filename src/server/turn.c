/*-------------------------------------------------------------------------
 *
 * turn.c
 *	  The listener's database turn: prepare, one transaction, answer after
 *	  the commit.
 *
 *	  A turn gathers every connection with work: a complete request, a
 *	  WebSocket session's received messages, a parked long poll or a
 *	  session whose stream moved or whose time is up.  Each is served by
 *	  its connection's handler (conn.h), which this file calls by phase
 *	  and never by route: prepare runs first, outside any transaction
 *	  (routing, authentication, parsing, JWS verification, on the cached
 *	  streams; the streams not cached yet are loaded in one short
 *	  transaction); then every connection that needs the database is
 *	  executed in one transaction (store/xact.c), those whose handler
 *	  stores many at once (RFC 8935 pushes) together in one
 *	  subtransaction (each alone again if that fails), every other in a
 *	  subtransaction of its own; an error is answered as base/errors.c
 *	  maps it (seterr_answer), through the handler's fail.  The listener
 *	  writes the responses only after that transaction commits: a 202 or
 *	  an acknowledgement always follows the commit that made it durable.
 *	  If the commit fails, every connection of the turn gets a 503.
 *
 *	  Every setstream.generation_check_interval the turn also looks for
 *	  changes no commit of this node noted (check_generations).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pgstat.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "base/streamlist.h"
#include "exchange/exchange.h"
#include "server/conn.h"
#include "setstream.h"
#include "shmem/wakeup.h"
#include "shmem/walflush.h"
#include "store/streamcache.h"
#include "store/xact.h"

static int	turn_listener;		/* this listener's index */
static XLogRecPtr unflushed_turn = InvalidXLogRecPtr;	/* the last turn held */
static MemoryContext turn_cxt;
static MemoryContext turn_old_cxt;
static uint64 generations[WAKEUP_SLOTS];
static TimestampTz last_error_log = 0;
static bool config_moved_early = false; /* seen by turn_prepare_headers */
static TimestampTz last_generation_check = 0;

/* What the last generation checks saw of each waited-on stream */
typedef struct SeenDue
{
	char	   *stream;
	uint64		fingerprint;
} SeenDue;

STREAM_NAMED(SeenDue);
static List *seen_due = NIL;	/* of SeenDue, in TopMemoryContext */

#define MAX_SEEN_DUE 4096
#define RECENT_DUE_WINDOW_S 60	/* emits committing later than this are found
								 * by the poll's timeout */

void
turn_init(int listener_index)
{
	turn_listener = listener_index;
	turn_cxt = AllocSetContextCreate(TopMemoryContext, "setstream turn",
									 ALLOCSET_DEFAULT_SIZES);
}

static void
log_internal_error(ErrorData *edata)
{
	TimestampTz now = GetCurrentTimestamp();

	/* at most one line a second: a flood of failures must not flood the log */
	if (TimestampDifferenceExceeds(last_error_log, now, 1000))
	{
		ereport(LOG,
				(errmsg("setstream listener: request failed: %s",
						setstream_log_escape(edata->message, 1024))));
		last_error_log = now;
	}
}

/* The handler's answer to a failure; a session keeps its phase */
static void
fail_conn(Conn *conn, const SetAnswer *answer)
{
	if (conn->handler->fail(conn, answer) != TURN_SESSION)
		conn->phase = PHASE_WRITE;
}

/* What one connection's step in the turn's transaction came to */
typedef struct ConnStep
{
	Conn	   *conn;
	TimestampTz now;
	TurnResult	result;
} ConnStep;

static void
conn_step(void *arg)
{
	ConnStep   *step = arg;

	step->result = step->conn->handler->execute(step->conn, generations,
												step->now);
}

/* Handle one connection in a subtransaction of its own */
static void
handle_in_subxact(Conn *conn, TimestampTz now)
{
	ConnStep	step = {conn, now, TURN_ANSWERED};
	ErrorData  *edata;

	MemoryContextSwitchTo(turn_cxt);
	if (!xact_try(conn_step, &step, &edata))
	{
		SetAnswer	answer;

		seterr_answer(edata->sqlerrcode, edata->message, &answer);
		if (answer.log || conn->handler->log_failures)
			log_internal_error(edata);
		step.result = conn->handler->fail(conn, &answer);
	}
	if (step.result == TURN_PARKED)
		conn->phase = PHASE_PARKED;
	else if (step.result == TURN_ANSWERED)
		conn->phase = PHASE_WRITE;
}

static void
respond_unavailable(List *batch, const char *why)
{
	SetAnswer	answer = {503, NULL, why, "Retry-After: 1\r\n", 0, false};
	ListCell   *lc;

	foreach(lc, batch)
		fail_conn((Conn *) lfirst(lc), &answer);
}

typedef struct BatchWork
{
	const ConnHandler *handler;
	List	   *conns;
} BatchWork;

static void
execute_batch(void *arg)
{
	BatchWork  *w = arg;

	w->handler->execute_batch(w->conns);
}

/*
 * Handle the batch: the connections whose handler can, together (all
 * prepared pushes in one subtransaction: a subtransaction per request
 * would cost an XID each); everything else, and each of those again if
 * that failed, in a subtransaction of its own, so that one failing request
 * does not fail its neighbours.
 */
static void
handle_batch(List *batch, TimestampTz now)
{
	BatchWork	together = {NULL, NIL};
	List	   *others = NIL;
	ListCell   *lc;

	foreach(lc, batch)
	{
		Conn	   *conn = lfirst(lc);

		if (conn->handler->execute_batch != NULL &&
			(together.handler == NULL || together.handler == conn->handler))
		{
			together.handler = conn->handler;
			together.conns = lappend(together.conns, conn);
		}
		else
			others = lappend(others, conn);
	}
	/* together in one subtransaction; each alone again if that fails */
	if (list_length(together.conns) > 1 && xact_try(execute_batch, &together, NULL))
	{
		foreach(lc, together.conns)
		{
			Conn	   *conn = lfirst(lc);

			together.handler->answer_batched(conn);
			conn->phase = PHASE_WRITE;
		}
	}
	else
		others = list_concat(together.conns, others);
	foreach(lc, others)
		handle_in_subxact((Conn *) lfirst(lc), now);
}

/*
 * Pipelined, the turn's commit does not wait for its WAL flush; its
 * answers wait for it instead (shmem/walflush.c).  The session pins
 * synchronous_commit on (worker.c): it is off only from the end of the
 * turn's work to its commit (an abort puts it back by itself), so that
 * nothing the turn runs, user triggers included, sees it off.
 */
static void
commit_without_flush_wait(bool on)
{
	SetConfigOption("synchronous_commit", on ? "off" : "on", PGC_SUSET,
					PGC_S_OVERRIDE);
}

typedef struct TurnWork
{
	List	   *batch;
	TimestampTz now;
	bool		pipelined;		/* commit without waiting for the flush */
} TurnWork;

static void
turn_work(void *arg)
{
	TurnWork   *w = arg;
	XactTurn	state = xact_begin_turn();
	ListCell   *lc;

	if (state == XACT_NO_EXTENSION)
		respond_unavailable(w->batch, "setstream is not installed in this database");
	else if (state == XACT_RECREATED)
	{
		/*
		 * Requests prepared against the dropped extension's streams are
		 * prepared again, next turn, on the new ones.
		 */
		List	   *rest = NIL;

		foreach(lc, w->batch)
		{
			Conn	   *conn = lfirst(lc);

			if (conn->phase == PHASE_READY)
				conn->handler->unprepare(conn);
			else
				rest = lappend(rest, conn);
		}
		handle_batch(rest, w->now);
	}
	else
		handle_batch(w->batch, w->now);
	if (w->pipelined)
		commit_without_flush_wait(true);
}

/*
 * Everything the turn's connections need from the database, committed.
 * Pipelined, each answer carries the WAL position it waits for.
 */
static void
database_turn(List *batch, TimestampTz now)
{
	TurnWork	work = {batch, now, walflush_available(turn_listener)};
	ListCell   *lc;
	bool		committed;

	pgstat_report_activity(STATE_RUNNING, "setstream listener");
	committed = xact_run(turn_work, &work);
	if (work.pipelined)
		commit_without_flush_wait(false);
	if (!committed)
		respond_unavailable(batch, "the database could not commit; try again later");
	else if (work.pipelined)
	{
		XLogRecPtr	lsn = walflush_turn_end();

		if (!walflush_done(lsn))
		{
			foreach(lc, batch)
				((Conn *) lfirst(lc))->flush_lsn = lsn;
			walflush_ask(turn_listener, lsn);

			/*
			 * At most two turns wait for their flush: the one before this
			 * is flushed before the next turn starts.  Without the bound,
			 * turns shrink to the few requests that came in since the last
			 * one, and a CPU-bound listener spends more on each turn than
			 * the overlap saves (bench/RESULTS-flush.md).
			 */
			if (unflushed_turn != InvalidXLogRecPtr)
				walflush_now(unflushed_turn);
			unflushed_turn = lsn;
		}
	}
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

typedef struct LoadWork
{
	List	   *names;
	bool		installed;
} LoadWork;

static void
load_work(void *arg)
{
	LoadWork   *w = arg;
	ListCell   *lc;

	w->installed = xact_begin_turn() != XACT_NO_EXTENSION;
	if (!w->installed)
		return;
	foreach(lc, w->names)
	{
		StreamInfo *unused;

		if (!streamcache_lookup(lfirst(lc), &unused))
			streamcache_load(lfirst(lc), true);
	}
}

/* Read streams the prepared requests need into the cache */
static bool
load_streams(List *names)
{
	LoadWork	work = {names, false};

	return xact_run(load_work, &work) && work.installed;
}

/* Step one for a connection, outside any transaction */
static PrepResult
prepare_one(Conn *conn, char **load)
{
	volatile PrepResult result = PREP_ANSWERED;

	MemoryContextSwitchTo(turn_cxt);
	PG_TRY();
	{
		result = conn->handler->prepare(conn, load);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		SetAnswer	answer = {0};

		MemoryContextSwitchTo(turn_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		log_internal_error(edata);
		if (sqlstate_is_transient(edata->sqlerrcode))
		{
			answer.http_status = 503;
			answer.description = "the database cannot take this request now; try again later";
			answer.headers = "Retry-After: 1\r\n";
		}
		else
		{
			answer.http_status = 500;
			answer.description = "the request could not be processed; try again later";
		}
		(void) conn->handler->fail(conn, &answer);
		result = PREP_ANSWERED;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(turn_cxt);
	return result;
}

/*
 * A request with a body has sent its headers (conn.c): prepare it on
 * them, on streams, tokens and certificates as they are now.
 */
PrepResult
turn_prepare_headers(Conn *conn, char **load)
{
	MemoryContext old = CurrentMemoryContext;
	PrepResult	result;

	/* streams, tokens or certificates changed: not on a stale copy */
	if (streamcache_check_generation())
		config_moved_early = true;
	result = prepare_one(conn, load);
	MemoryContextSwitchTo(old);
	return result;
}

/*
 * Step one for every new request and WebSocket message: route,
 * authenticate, parse and verify outside any transaction, loading into the
 * cache (one short transaction) the streams not in it yet.  Returns the
 * connections that need the database.
 */
static List *
prepare_all(List *fresh, List **resumed)
{
	List	   *db = NIL;
	List	   *waiting = NIL;
	List	   *names = NIL;
	ListCell   *lc;

	for (int pass = 0; pass < 2 && fresh != NIL; pass++)
	{
		foreach(lc, fresh)
		{
			Conn	   *conn = lfirst(lc);
			char	   *load = NULL;

			switch (prepare_one(conn, &load))
			{
				case PREP_EXECUTE:
					if (conn->phase == PHASE_AUTH)
						*resumed = lappend(*resumed, conn);
					else
						db = lappend(db, conn);
					break;
				case PREP_LOAD:
					waiting = lappend(waiting, conn);
					names = lappend(names, load);
					break;
				case PREP_ANSWERED:
					/* a WebSocket session that failed only sends its close */
					if (conn->phase != PHASE_WEBSOCKET)
						conn->phase = PHASE_WRITE;
					break;
			}
		}
		fresh = NIL;
		if (waiting != NIL)
		{
			if (pass == 0 && load_streams(names))
				fresh = waiting;
			else
				respond_unavailable(waiting, "the database is not available; try again later");
			waiting = names = NIL;
		}
	}
	return db;
}

/* ---------------------------------------------------------------------
 * Generations (issue 18)
 *
 * A change committed on this node always moves the shared generations at
 * its commit (wakeup.c).  What no commit of this node notes is caught
 * here, every setstream.generation_check_interval: a configuration change
 * that reached this node's placements through another node's two-phase
 * commit, or any write of setstream.generations (its sum moves: every
 * cache drops, every waiting session looks again); and SETs that became
 * due on another node, for the streams that long polls and WebSocket
 * sessions wait on here (the set of the stream's recent due SETs moved:
 * its sessions look again).
 * ---------------------------------------------------------------------
 */
static void
check_generations_work(void *arg)
{
	List	   *streams = (List *) arg;
	int64		sum;
	int64		since;
	ListCell   *lc;

	if (!OidIsValid(xact_extension()))
		return;
	if (exchange_generation_sum(&sum))
		(void) wakeup_table_generation_seen((uint64) sum);
	else
		return;					/* older than 0.3.0: no seq is a clock yet */
	since = (int64) (GetCurrentTimestamp() -
					 (TimestampTz) RECENT_DUE_WINDOW_S * USECS_PER_SEC) << 10;
	if (list_length(seen_due) + list_length(streams) > MAX_SEEN_DUE)
	{
		foreach(lc, seen_due)
			pfree(((SeenDue *) lfirst(lc))->stream);
		list_free_deep(seen_due);	/* a spurious look each, then settled */
		seen_due = NIL;
	}
	foreach(lc, streams)
	{
		const char *name = lfirst(lc);
		int64		count;
		uint64		fp = exchange_recent_due(name, since, &count);
		SeenDue    *d = stream_list_find(seen_due, name);

		if (d == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			d = palloc(sizeof(SeenDue));
			d->stream = pstrdup(name);
			d->fingerprint = fp;
			seen_due = lappend(seen_due, d);
			MemoryContextSwitchTo(old);
			if (count > 0)
				wakeup_bump_stream(name);
		}
		else if (d->fingerprint != fp)
		{
			d->fingerprint = fp;
			wakeup_bump_stream(name);
		}
	}
}

static bool
has_name(List *names, const char *name)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp((const char *) lfirst(lc), name) == 0)
			return true;
	return false;
}

static void
check_generations(TimestampTz now)
{
	List	   *streams = NIL;
	dlist_iter	iter;
	MemoryContext old;

	if (setstream_generation_check_ms <= 0 ||
		!TimestampDifferenceExceeds(last_generation_check, now,
									setstream_generation_check_ms))
		return;
	last_generation_check = now;
	old = MemoryContextSwitchTo(turn_cxt);	/* reset at the end of the turn */
	dlist_foreach(iter, &listener_conns)
	{
		Conn	   *conn = dlist_container(Conn, node, iter.cur);
		const char *name = NULL;

		if (conn->phase == PHASE_PARKED || conn->phase == PHASE_WEBSOCKET)
			name = conn->handler->waits_on(conn);
		if (name != NULL && !has_name(streams, name))
			streams = lappend(streams, (void *) name);
	}
	(void) xact_run(check_generations_work, streams);
	MemoryContextSwitchTo(old);
}


/*
 * One turn: every connection with work, prepared, executed in one
 * transaction.  What the connections do next (write, wait, send frames;
 * read the body of a request authorized on its headers) is in *done, in
 * the turn's memory, which stays current until turn_end().
 */
void
turn_run(TurnDone *done)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		config_moved;
	List	   *fresh = NIL;
	List	   *due = NIL;
	dlist_mutable_iter iter;

	done->touched = NIL;
	done->resumed = NIL;
	check_generations(now);
	for (int i = 0; i < WAKEUP_SLOTS; i++)
		generations[i] = wakeup_generation(i);
	config_moved = streamcache_check_generation() || config_moved_early;
	config_moved_early = false;

	/*
	 * Requests prepared in this turn point into the stream cache: nothing
	 * of it is freed, and nothing they use evicted, until the turn is over.
	 */
	streamcache_begin_turn();
	turn_old_cxt = MemoryContextSwitchTo(turn_cxt);
	dlist_foreach_modify(iter, &listener_conns)
	{
		Conn	   *conn = dlist_container(Conn, node, iter.cur);

		if (conn->phase == PHASE_READY || conn->phase == PHASE_AUTH ||
			(conn->phase == PHASE_WEBSOCKET && ws_has_input(conn)))
			fresh = lappend(fresh, conn);
		else if ((conn->phase == PHASE_PARKED || conn->phase == PHASE_WEBSOCKET) &&
				 (conn->handler->due(conn, generations, now) || config_moved))
			due = lappend(due, conn);	/* a re-enabled stream has SETs */
	}
	if (fresh != NIL || due != NIL)
	{
		done->touched = list_concat(list_copy(fresh), due);
		due = list_concat(due, prepare_all(fresh, &done->resumed));
		if (due != NIL)
			database_turn(due, now);
	}
}

/* After the connections wrote what the turn answered: the turn is over */
void
turn_end(void)
{
	MemoryContextSwitchTo(turn_old_cxt);
	MemoryContextReset(turn_cxt);
	streamcache_end_turn();
}
