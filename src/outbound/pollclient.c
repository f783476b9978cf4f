/*-------------------------------------------------------------------------
 *
 * pollclient.c
 *	  The RFC 8936 poll client: for each stream with a source (set_source),
 *	  the sender serving the stream (its name hashes to the sender's index,
 *	  as for pushes) long-polls the peer's endpoint_url and stores the SETs
 *	  that arrive, as the listener stores pushed ones.
 *
 *	  One poll per source is in flight at a time, on the sender's libcurl
 *	  multi handle (httpclient.c: TLS verified, allowed networks checked on
 *	  the connected address, no redirect, timeouts), with a total timeout of
 *	  setstream.source_poll_timeout (longer than the peer's long-poll wait)
 *	  and a response cut at setstream.max_request_bytes.  The request is
 *	  {"maxEvents", "returnImmediately", "ack", "setErrs"}: it waits for
 *	  SETs (returnImmediately false) unless the last answer said
 *	  moreAvailable, and it always carries the acks and setErrs pending.
 *
 *	  An answer is handled in the sender's loop (inbound.c, shared with
 *	  the pushpull initiator): its SETs are verified outside any
 *	  transaction, then stored with the source's new state in one
 *	  transaction (exchange_collect: the listener's rules, the same store
 *	  functions).  Their jtis become pending acks (or setErrs) only once it
 *	  committed: the next poll sends them.  Pending acks are kept in
 *	  memory: after a crash the peer sends the unacknowledged SETs again,
 *	  they are found stored (events are unique per stream and jti) and
 *	  acknowledged.
 *
 *	  A failed poll is classified as a failed push (outbound.c) and changes
 *	  the source's state alike: backoff on 5xx, transport errors, bad
 *	  answers; wait on 429/503 with Retry-After; suspension on 403, 404,
 *	  410, redirects and repeated 401s.  Acks sent with a failed poll are
 *	  sent again with the next.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "outbound/inbound.h"
#include "outbound/pollclient.h"
#include "setstream.h"
#include "shmem/wakeup.h"
#include "store/store.h"
#include "store/streamcache.h"
#include "store/xact.h"

#define REFRESH_INTERVAL_MS 5000	/* reread the sources at least this often */
#define RETRY_MS 1000			/* after a failed transaction */
#define QUICK_EMPTY_MS 1000		/* an empty answer quicker than this... */

int			setstream_source_poll_timeout_ms = 90000;
int			setstream_source_max_events = 100;


/* One source of this sender */
typedef struct Source
{
	InboundPeer in;				/* first: the peer, its acks, its answer */
	TimestampTz next_poll_at;	/* 0: at once */
	bool		more;			/* the last answer said moreAvailable */
	TimestampTz started_at;		/* of the poll in flight */
} Source;

static int	my_index;
static MemoryContext src_cxt;
static MemoryContext step_cxt;
static List *sources = NIL;		/* Source *, in src_cxt */
static int	nanswered = 0;
static uint64 seen_config = 0;
static bool loaded = false;
static TimestampTz next_refresh_at = 0;
static TimestampTz retry_at = 0;	/* after a failed read of the sources */

static void
free_source(void *arg)
{
	Source	   *s = arg;

	inbound_free(&s->in);
	pfree(s);
}

/* ---------------------------------------------------------------------
 * The sources
 * ---------------------------------------------------------------------
 */

typedef struct ReadWork
{
	List	   *rows;			/* PushStream *, or NIL */
	bool		installed;
} ReadWork;

static void
read_work(void *arg)
{
	ReadWork   *w = arg;

	w->installed = xact_begin_turn() != XACT_NO_EXTENSION;
	/* what outlives the transaction: in the step's context */
	MemoryContextSwitchTo(step_cxt);
	if (w->installed)
		w->rows = store_sources();
}

/* Reread the sources; those gone are dropped once their poll answered */
static void
refresh(TimestampTz now)
{
	ReadWork	w = {NIL, false};
	ListCell   *lc;
	MemoryContext old;

	seen_config = wakeup_config_generation();
	if (!xact_run(read_work, &w))
	{
		retry_at = now + RETRY_MS * 1000;
		return;
	}
	loaded = true;
	retry_at = 0;
	next_refresh_at = now + (TimestampTz) REFRESH_INTERVAL_MS * 1000;

	foreach(lc, sources)
		((Source *) lfirst(lc))->in.removed = true;
	foreach(lc, w.rows)
	{
		PushStream *row = lfirst(lc);
		Source	   *s = NULL;
		ListCell   *sc;

		if (!inbound_mine(row->stream, my_index))
			continue;
		foreach(sc, sources)
		{
			Source	   *c = lfirst(sc);

			if (c->in.removed && strcmp(c->in.conf.stream, row->stream) == 0 &&
				strcmp(c->in.conf.endpoint_url, row->endpoint_url) == 0)
				s = c;
		}
		if (s == NULL)
		{
			old = MemoryContextSwitchTo(src_cxt);
			s = palloc0(sizeof(Source));
			inbound_init(&s->in, src_cxt, &nanswered);
			sources = lappend(sources, s);
			MemoryContextSwitchTo(old);
		}
		s->in.removed = false;
		inbound_copy_conf(&s->in, row);
		if (row->authorization)
			explicit_bzero(row->authorization, strlen(row->authorization));
	}

	/* a source gone (or with another endpoint) is freed when idle */
	sources = inbound_free_idle(sources, src_cxt, free_source);
}

/* ---------------------------------------------------------------------
 * Polls
 * ---------------------------------------------------------------------
 */
static void
start_poll(Source *s, TimestampTz now)
{
	json_t	   *req = json_object();
	bool		immediately = s->more;

	json_object_set_new(req, "maxEvents", json_integer(setstream_source_max_events));
	json_object_set_new(req, "returnImmediately", json_boolean(immediately));
	json_object_set(req, "ack", s->in.pending_ack);
	json_object_set(req, "setErrs", s->in.pending_errs);
	s->started_at = now;
	s->more = false;

	/* the client's timeout must outlast the peer's long-poll wait */
	inbound_post(&s->in, req,
				 immediately ? setstream_outbound_timeout_ms :
				 setstream_source_poll_timeout_ms);
	json_decref(req);
}

static bool
may_poll(Source *s, TimestampTz now)
{
	return inbound_may_send(&s->in, now) && s->next_poll_at <= now;
}

/* ---------------------------------------------------------------------
 * Answers
 * ---------------------------------------------------------------------
 */

/*
 * Read a poll response: {"sets": {jti: SET}, "moreAvailable": bool}.
 * False, with why in err, when it is not one.
 */
static bool
parse_response(Source *s, CommObj *obj, bool *more, char *err, size_t errlen)
{
	char		why[256];
	json_t	   *j;
	json_t	   *m;

	*more = false;
	if (s->in.body == NULL || s->in.body_len == 0)
	{
		snprintf(err, errlen, "the poll response is empty");
		return false;
	}
	if (!commobj_parse(s->in.body, s->in.body_len, obj, why, sizeof(why)))
	{
		snprintf(err, errlen, "invalid poll response: %s", why);
		return false;
	}
	j = json_loadb(s->in.body, s->in.body_len, 0, NULL);
	m = j ? json_object_get(j, "moreAvailable") : NULL;
	if (m != NULL && !json_is_boolean(m))
	{
		json_decref(j);
		snprintf(err, errlen, "invalid poll response: \"moreAvailable\" is not a boolean");
		return false;
	}
	*more = m != NULL && json_is_true(m);
	json_decref(j);
	return true;
}

typedef struct StoreWork
{
	PushStream *conf;			/* the state to record */
	InboundBatch *batch;		/* its stream NULL: record the state only */
	CommObj    *obj;
	int			status;
	const char *error;
	TimestampTz now;
	bool		skipped;
} StoreWork;

static void
store_work(void *arg)
{
	StoreWork  *w = arg;
	InboundBatch *b = w->batch;

	/* DROP EXTENSION, or DROP and CREATE: the stream copy is not valid */
	if (xact_begin_turn() != XACT_SAME)
	{
		w->skipped = true;
		return;
	}
	/* the acks and errs grow in the step's context, not the transaction's */
	MemoryContextSwitchTo(step_cxt);
	inbound_store(b, w->obj);
	store_source_state(w->conf, w->status, w->error,
					   b->ack ? (int64) json_array_size(b->ack) : 0,
					   b->errs ? (int64) json_object_size(b->errs) : 0,
					   w->now);
}

static void
handle_answer(void *arg, TimestampTz now)
{
	Source	   *s = arg;
	PushClass	cls;
	PushStream	conf = s->in.conf;
	CommObj		obj;
	bool		more = false;
	bool		ok = false;
	char		err[300];
	InboundBatch b;
	StoreWork	w;
	bool		was_suspended = strcmp(conf.state, "suspended") == 0;

	memset(&w, 0, sizeof(w));
	memset(&obj, 0, sizeof(obj));
	err[0] = '\0';
	if (s->in.status >= 200 && s->in.status < 300)
		ok = parse_response(s, &obj, &more, err, sizeof(err));
	/* the new state of the source, as a push's answer changes a stream's */
	(void) inbound_classify(&s->in, ok, err, "pending", &conf, now, &cls);

	if (!inbound_receive(&s->in, ok, &obj, &b))
	{
		s->next_poll_at = now + RETRY_MS * 1000;
		return;
	}

	w.conf = &conf;
	w.batch = &b;
	w.obj = &obj;
	w.status = s->in.status;
	w.error = ok ? NULL : cls.description;
	w.now = now;
	if (!xact_run(store_work, &w) || w.skipped)
	{
		/* not stored: the peer sends the SETs again */
		inbound_discard(&b);
		s->next_poll_at = now + RETRY_MS * 1000;
		return;
	}

	/* committed: acknowledge with the next poll */
	inbound_committed(&s->in, &b, &conf, was_suspended, "polling");
	s->more = ok && more;
	s->next_poll_at = 0;
	if (ok && !more && list_length(obj.sets) == 0 &&
		now - s->started_at < (TimestampTz) QUICK_EMPTY_MS * 1000)
	{
		/* a peer that does not wait: do not spin */
		s->next_poll_at = s->started_at + (TimestampTz) QUICK_EMPTY_MS * 1000;
	}
}

/* ---------------------------------------------------------------------
 * API
 * ---------------------------------------------------------------------
 */
void
pollclient_init(int sender_index)
{
	my_index = sender_index;
	src_cxt = AllocSetContextCreate(TopMemoryContext, "setstream sources",
									ALLOCSET_DEFAULT_SIZES);
	step_cxt = AllocSetContextCreate(TopMemoryContext, "setstream poll step",
									 ALLOCSET_DEFAULT_SIZES);
}

void
pollclient_step(void)
{
	MemoryContext old = MemoryContextSwitchTo(step_cxt);
	TimestampTz now = GetCurrentTimestamp();
	ListCell   *lc;

	/* streams or keys changed: verify with fresh copies */
	(void) streamcache_check_generation();
	if ((!loaded || wakeup_config_generation() != seen_config ||
		 now >= next_refresh_at) && now >= retry_at)
		refresh(now);

	if (nanswered > 0)
	{
		nanswered = 0;
		inbound_handle_answers(sources, step_cxt, handle_answer, NULL);
		sources = inbound_free_idle(sources, src_cxt, free_source);
	}

	now = GetCurrentTimestamp();
	foreach(lc, sources)
	{
		Source	   *s = lfirst(lc);

		if (may_poll(s, now))
			start_poll(s, now);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(step_cxt);
}

long
pollclient_timeout_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = loaded ? next_refresh_at : now;
	ListCell   *lc;

	if (retry_at > next)
		next = retry_at;
	if (nanswered > 0)
		return 0;
	foreach(lc, sources)
	{
		Source	   *s = lfirst(lc);
		TimestampTz at;

		if (!inbound_due_at(&s->in, s->next_poll_at, &at))
			continue;
		if (at < next)
			next = at;
	}
	if (next <= now)
		return 0;
	return (long) ((next - now) / 1000);
}
