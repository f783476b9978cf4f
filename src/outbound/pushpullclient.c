/*-------------------------------------------------------------------------
 *
 * pushpullclient.c
 *	  pushpull as initiator over HTTP (set_delivery(stream, 'pushpull',
 *	  endpoint_url, authorization_header)): the sender serving the stream
 *	  (its name hashes to the sender's index, as for pushes) POSTs
 *	  Communication Objects to the peer's pushpull endpoint, and SETs travel
 *	  both ways on that one exchange.
 *
 *	  One request per stream is in flight at a time, on the sender's
 *	  libcurl multi handle (httpclient.c: TLS verified, allowed networks
 *	  checked on the connected address, no redirect, timeouts; the response
 *	  cut at setstream.max_request_bytes).  Each request carries
 *	    sets               up to setstream.pushpull_batch of the stream's
 *	                       due SETs, oldest first (taken as the listener's
 *	                       poll takes them: marked delivered, and due again
 *	                       after setstream.redelivery_interval when the
 *	                       peer neither acknowledges nor rejects them);
 *	    ack, setErrs       the peer's SETs we stored (or rejected) from
 *	                       earlier responses, once that store committed;
 *	    maxResponseEvents  setstream.pushpull_batch.
 *	  Content-Type and Accept are application/json, and Authorization is
 *	  the stored header byte for byte.
 *
 *	  Transactions (none is open during network I/O):
 *	    - a turn reads the pushpull streams and takes the due SETs of each
 *	      stream that is to send; the requests start after its commit;
 *	    - an answer is handled alone (inbound.c, shared with the poll
 *	      client): its SETs are verified outside any transaction, then one transaction applies its "ack" (outbox rows
 *	      acked) and "setErrs" (failed with err and description: the
 *	      responder side's semantics, exchange_settle), stores its SETs
 *	      (exchange_collect: the listener's rules) and records the stream's
 *	      delivery state when it changed.  Their acks (or setErrs) become
 *	      pending only once that committed, and the next request, started at
 *	      once, carries them.  Pending acks are kept in memory: after a crash
 *	      the peer sends the unacknowledged SETs again, they are found stored
 *	      and acknowledged.
 *
 *	  A pushpull-ws stream (pushpullws.c) is served here too while its
 *	  peer refuses the WebSocket upgrade (pushpullws_http_fallback).
 *
 *	  A request is sent at once while there is something to send (due SETs,
 *	  pending acks or setErrs, more due than one batch, SETs just received);
 *	  otherwise every setstream.pushpull_poll_interval, to collect the
 *	  peer's SETs (the HTTP binding has no long poll), and at once when an
 *	  emit on the stream commits.
 *
 *	  A failed request (no answer, a status other than 2xx, a 2xx that is
 *	  not a Communication Object) is classified as a failed push
 *	  (outbound.c) and changes the stream's delivery state alike: backoff
 *	  (exponential, with jitter) on 5xx, transport errors and bad answers;
 *	  wait exactly Retry-After on 429 / 503 with Retry-After; suspension on
 *	  403, 404, 410, redirects and setstream.auth_retries 401s in a row
 *	  (resume_delivery lifts it).  The SETs it carried are due again at
 *	  once, its acks and setErrs are sent again with the next request.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "outbound/inbound.h"
#include "outbound/pushpullclient.h"
#include "outbound/pushpullws.h"
#include "setstream.h"
#include "shmem/wakeup.h"
#include "store/store.h"
#include "store/streamcache.h"
#include "store/xact.h"

#define REFRESH_INTERVAL_MS 5000	/* reread the streams at least this often */
#define RETRY_MS 1000			/* after a failed transaction */

int			setstream_pushpull_poll_interval_ms = 1000;
int			setstream_pushpull_batch = 100;

/* One pushpull stream of this sender */
typedef struct Peer
{
	InboundPeer in;				/* first: the peer, its acks, its answer */
	int			slot;			/* its wake-up slot */
	uint64		seen_gen;		/* the slot's generation before the last take */
	uint64		gen_before;		/* ... before the turn under way */
	TimestampTz next_at;		/* a request is due then; 0: at once */

	/* the request in flight */
	List	   *sent_jtis;		/* char *, the SETs it carries */
	bool		more_due;		/* more SETs were due than it carries */
} Peer;

static int	my_index;
static MemoryContext pp_cxt;
static MemoryContext step_cxt;
static List *peers = NIL;		/* Peer *, in pp_cxt */
static int	nanswered = 0;
static uint64 seen_config = 0;
static bool loaded = false;
static TimestampTz next_refresh_at = 0;
static TimestampTz retry_at = 0;	/* after a failed turn */

static void
free_sent_jtis(void *arg)
{
	Peer	   *p = arg;

	list_free_deep(p->sent_jtis);
	p->sent_jtis = NIL;
}

static void
free_peer(void *arg)
{
	Peer	   *p = arg;

	inbound_free(&p->in);
	free_sent_jtis(p);
	pfree(p);
}

static bool
has_pending(Peer *p)
{
	return json_array_size(p->in.pending_ack) > 0 ||
		json_object_size(p->in.pending_errs) > 0;
}

/* Is a request due (a poll, pending acks) or may SETs be (an emit)? */
static bool
wants_turn(Peer *p, TimestampTz now)
{
	return inbound_may_send(&p->in, now) &&
		(p->next_at <= now || has_pending(p) ||
		 wakeup_generation(p->slot) != p->seen_gen);
}

static Peer *
find_peer(const char *stream, const char *url, bool removed_too)
{
	ListCell   *lc;

	foreach(lc, peers)
	{
		Peer	   *p = lfirst(lc);

		if ((removed_too || !p->in.removed) &&
			strcmp(p->in.conf.stream, stream) == 0 &&
			strcmp(p->in.conf.endpoint_url, url) == 0)
			return p;
	}
	return NULL;
}

/* ---------------------------------------------------------------------
 * Turns: read the streams, take the due SETs of those that send
 * ---------------------------------------------------------------------
 */
typedef struct Taken
{
	PushStream *row;
	List	   *sets;			/* OutSet * */
	bool		more;
	bool		send;			/* a request is due even without SETs */
} Taken;

typedef struct TurnWork
{
	TimestampTz now;
	bool		installed;
	List	   *rows;			/* PushStream * */
	List	   *taken;			/* Taken * */
} TurnWork;

static void
turn_work(void *arg)
{
	TurnWork   *w = arg;
	ListCell   *lc;

	w->installed = xact_begin_turn() != XACT_NO_EXTENSION;
	/* what outlives the transaction: in the step's context */
	MemoryContextSwitchTo(step_cxt);
	if (!w->installed)
		return;
	w->rows = store_pushpull_streams();
	/* pushpull-ws streams whose peer refused the upgrade (pushpullws.c) */
	foreach(lc, pushpullws_any_fallback() ? store_pushpull_ws_streams() : NIL)
	{
		PushStream *row = lfirst(lc);

		if (inbound_mine(row->stream, my_index) &&
			pushpullws_http_fallback(row->stream, row->endpoint_url))
			w->rows = lappend(w->rows, row);
	}
	foreach(lc, w->rows)
	{
		PushStream *row = lfirst(lc);
		Peer	   *p;
		Taken	   *t;
		bool		send;

		if (!inbound_mine(row->stream, my_index))
			continue;
		if (strcmp(row->state, "suspended") == 0 ||
			(strcmp(row->state, "backoff") == 0 && row->backoff_until > w->now))
			continue;
		p = find_peer(row->stream, row->endpoint_url, true);
		if (p != NULL && (p->in.in_flight || p->in.answered))
			continue;
		send = p == NULL || p->next_at <= w->now || has_pending(p);
		if (!send && wakeup_generation(p->slot) == p->seen_gen)
			continue;
		t = palloc0(sizeof(Taken));
		t->row = row;
		t->send = send;
		t->sets = store_take_due(row->stream, setstream_pushpull_batch,
								 outbound_expire_before(w->now), &t->more);
		w->taken = lappend(w->taken, t);
	}
}

static void
start_request(Peer *p, Taken *t, TimestampTz now)
{
	json_t	   *req = json_object();
	json_t	   *sets = json_object();
	MemoryContext old;
	ListCell   *lc;

	free_sent_jtis(p);
	old = MemoryContextSwitchTo(pp_cxt);
	foreach(lc, t->sets)
	{
		OutSet	   *o = lfirst(lc);

		p->sent_jtis = lappend(p->sent_jtis, pstrdup(o->jti));
	}
	MemoryContextSwitchTo(old);
	foreach(lc, t->sets)
	{
		OutSet	   *o = lfirst(lc);

		json_object_set_new(sets, o->jti, json_string(o->token));
	}
	if (json_object_size(sets) > 0)
		json_object_set(req, "sets", sets);
	json_decref(sets);
	json_object_set(req, "ack", p->in.pending_ack);
	json_object_set(req, "setErrs", p->in.pending_errs);
	json_object_set_new(req, "maxResponseEvents",
						json_integer(setstream_pushpull_batch));

	p->more_due = t->more;
	p->next_at = now + (TimestampTz) setstream_pushpull_poll_interval_ms * 1000;
	inbound_post(&p->in, req, setstream_outbound_timeout_ms);
	json_decref(req);
}

/*
 * One turn: reread the streams (those gone are dropped once their request
 * answered), take the due SETs, and start the requests after the commit
 */
static void
turn(TimestampTz now)
{
	TurnWork	w;
	ListCell   *lc;
	MemoryContext old;

	memset(&w, 0, sizeof(w));
	w.now = now;
	seen_config = wakeup_config_generation();
	foreach(lc, peers)
	{
		Peer	   *p = lfirst(lc);

		p->gen_before = wakeup_generation(p->slot);
	}
	if (!xact_run(turn_work, &w))
	{
		retry_at = now + RETRY_MS * 1000;
		return;
	}
	retry_at = 0;
	if (!w.installed)
	{
		next_refresh_at = now + (TimestampTz) REFRESH_INTERVAL_MS * 1000;
		return;
	}
	loaded = true;
	next_refresh_at = now + (TimestampTz) REFRESH_INTERVAL_MS * 1000;

	foreach(lc, peers)
		((Peer *) lfirst(lc))->in.removed = true;
	foreach(lc, w.rows)
	{
		PushStream *row = lfirst(lc);
		Peer	   *p;

		if (!inbound_mine(row->stream, my_index))
			continue;
		p = find_peer(row->stream, row->endpoint_url, true);
		if (p == NULL)
		{
			old = MemoryContextSwitchTo(pp_cxt);
			p = palloc0(sizeof(Peer));
			inbound_init(&p->in, pp_cxt, &nanswered);
			p->slot = wakeup_slot(row->stream);
			p->gen_before = wakeup_generation(p->slot);
			peers = lappend(peers, p);
			MemoryContextSwitchTo(old);
		}
		p->in.removed = false;
		/* a request in flight records the state its answer brings */
		if (!p->in.in_flight && !p->in.answered)
			inbound_copy_conf(&p->in, row);
		if (row->authorization)
			explicit_bzero(row->authorization, strlen(row->authorization));
	}

	/* the SETs taken: send them */
	foreach(lc, w.taken)
	{
		Taken	   *t = lfirst(lc);
		Peer	   *p = find_peer(t->row->stream, t->row->endpoint_url, false);

		if (p == NULL || p->in.in_flight || p->in.answered)
			continue;			/* can't happen: read above, taken idle */
		p->seen_gen = p->gen_before;
		if (t->sets == NIL && !t->send)
			continue;			/* woken, but nothing of ours is due */
		start_request(p, t, now);
	}

	/* a stream gone (or with another endpoint) is freed when idle */
	peers = inbound_free_idle(peers, pp_cxt, free_peer);
}

/* ---------------------------------------------------------------------
 * Answers
 * ---------------------------------------------------------------------
 */
/*
 * Read a response: a Communication Object ({"sets", "ack", "setErrs"}); an
 * empty body is one with nothing in it.  False, with why in err, when it
 * is not one.
 */
static bool
parse_response(Peer *p, CommObj *obj, char *err, size_t errlen)
{
	char		why[256];

	if (p->in.body == NULL || p->in.body_len == 0)
		return true;
	if (!commobj_parse(p->in.body, p->in.body_len, obj, why, sizeof(why)))
	{
		snprintf(err, errlen, "invalid pushpull response: %s", why);
		return false;
	}
	return true;
}

typedef struct StoreWork
{
	Peer	   *p;
	PushStream *conf;			/* the state to record */
	bool		changed;		/* record it */
	bool		ok;				/* a Communication Object came back */
	InboundBatch *batch;		/* its stream NULL: no SETs to store */
	CommObj    *obj;
	TimestampTz now;
	bool		skipped;
} StoreWork;

static void
store_work(void *arg)
{
	StoreWork  *w = arg;
	const char *name = w->p->in.conf.stream;

	/* DROP EXTENSION, or DROP and CREATE: the stream copy is not valid */
	if (xact_begin_turn() != XACT_SAME)
	{
		w->skipped = true;
		return;
	}
	/* the acks and errs grow in the step's context, not the transaction's */
	MemoryContextSwitchTo(step_cxt);
	if (w->ok)
	{
		/* the peer's ack and setErrs, as the responder side applies them */
		store_apply_acks(name, w->obj->ack);
		store_apply_errs(name, w->obj->errs);
		inbound_store(w->batch, w->obj);
	}
	else
		store_untake(name, w->p->sent_jtis);
	if (w->changed)
		store_delivery_state(w->conf, 0, w->now);
}

static void
handle_answer(void *arg, TimestampTz now)
{
	Peer	   *p = arg;
	PushClass	cls;
	PushStream	conf = p->in.conf;
	CommObj		obj;
	bool		ok = false;
	char		err[300];
	InboundBatch b;
	StoreWork	w;
	bool		was_suspended = strcmp(conf.state, "suspended") == 0;
	bool		received;

	memset(&w, 0, sizeof(w));
	memset(&obj, 0, sizeof(obj));
	err[0] = '\0';
	/* any 2xx with a Communication Object is acknowledged */
	if (p->in.status >= 200 && p->in.status < 300)
		ok = parse_response(p, &obj, err, sizeof(err));
	/* the new state of the stream, as a push's answer changes it */
	w.changed = inbound_classify(&p->in, ok, err, "delivered", &conf, now,
								 &cls);

	if (!inbound_receive(&p->in, ok, &obj, &b))
	{
		p->next_at = now + RETRY_MS * 1000;
		return;
	}

	w.p = p;
	w.conf = &conf;
	w.ok = ok;
	w.batch = &b;
	w.obj = &obj;
	w.now = now;
	if (!xact_run(store_work, &w) || w.skipped)
	{
		/*
		 * Not stored: the peer sends its SETs again, ours are delivered
		 * again after setstream.redelivery_interval
		 */
		inbound_discard(&b);
		free_sent_jtis(p);
		p->next_at = now + RETRY_MS * 1000;
		return;
	}

	/* committed: acknowledge with the next request */
	received = ok && list_length(obj.sets) > 0;
	inbound_committed(&p->in, &b, &conf, was_suspended, "pushpull delivery");

	/*
	 * Again at once while there is anything to send or the peer may have
	 * more; a failed request waits for its backoff only
	 */
	if (!ok || received || p->more_due || has_pending(p) ||
		(p->sent_jtis != NIL &&
		 list_length(p->sent_jtis) >= setstream_pushpull_batch))
		p->next_at = 0;
	free_sent_jtis(p);
}

/* ---------------------------------------------------------------------
 * API
 * ---------------------------------------------------------------------
 */
void
pushpullclient_init(int sender_index)
{
	my_index = sender_index;
	pp_cxt = AllocSetContextCreate(TopMemoryContext, "setstream pushpull",
								   ALLOCSET_DEFAULT_SIZES);
	step_cxt = AllocSetContextCreate(TopMemoryContext, "setstream pushpull step",
									 ALLOCSET_DEFAULT_SIZES);
}

static bool
turn_wanted(TimestampTz now)
{
	ListCell   *lc;

	if (now < retry_at)
		return false;
	if (!loaded || wakeup_config_generation() != seen_config ||
		now >= next_refresh_at)
		return true;
	foreach(lc, peers)
	{
		if (wants_turn(lfirst(lc), now))
			return true;
	}
	return false;
}

void
pushpullclient_step(void)
{
	MemoryContext old = MemoryContextSwitchTo(step_cxt);
	TimestampTz now;

	/* streams or keys changed: verify with fresh copies */
	(void) streamcache_check_generation();

	if (nanswered > 0)
	{
		nanswered = 0;
		inbound_handle_answers(peers, step_cxt, handle_answer,
							   free_sent_jtis);
	}

	now = GetCurrentTimestamp();
	if (turn_wanted(now))
		turn(now);
	MemoryContextSwitchTo(old);
	MemoryContextReset(step_cxt);
}

void
pushpullclient_refresh(void)
{
	loaded = false;
}

long
pushpullclient_timeout_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = loaded ? next_refresh_at : now;
	ListCell   *lc;

	if (nanswered > 0)
		return 0;
	foreach(lc, peers)
	{
		Peer	   *p = lfirst(lc);
		TimestampTz at;

		if (!inbound_due_at(&p->in, has_pending(p) ? 0 : p->next_at, &at))
			continue;
		if (at < next)
			next = at;
	}
	if (retry_at > next)
		next = retry_at;
	if (next <= now)
		return 0;
	return (long) ((next - now) / 1000);
}
