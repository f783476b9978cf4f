/*-------------------------------------------------------------------------
 *
 * sender.c
 *	  The sender's event loop: RFC 8935 push of the SETs emitted on streams
 *	  whose delivery method is push (set_delivery).  The same loop drives
 *	  the poll client (pollclient.c) and pushpull as initiator, over HTTP
 *	  (pushpullclient.c) and over a WebSocket (pushpullws.c).
 *
 *	  Each sender (setstream.senders of them) serves the push streams whose
 *	  name hashes to its index, so one stream is pushed by one process.
 *	  The loop waits on its latch (set at the commit of an emit on any
 *	  stream, wakeup.c, and at configuration changes), postmaster death,
 *	  the private epoll set of libcurl's sockets (httpclient.c) and that of
 *	  the pushpull WebSockets' sockets (pushpullws.c).
 *
 *	  A database turn is one transaction: it records the outcome of every
 *	  push answered since the last turn (outbound.c says what each answer
 *	  means), writes the streams' delivery states, and reads, per stream,
 *	  the oldest SETs that are due, up to push_concurrency in flight.  The
 *	  pushes start after the commit: no transaction is open during network
 *	  I/O.  Nothing marks a SET as being pushed: what has no recorded
 *	  answer is pushed again after a crash, byte for byte (the stored
 *	  token), and receivers deduplicate by jti.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "base/streamlist.h"
#include "outbound/httpclient.h"
#include "outbound/jwksfetch.h"
#include "outbound/outbound.h"
#include "outbound/pollclient.h"
#include "outbound/pushpullclient.h"
#include "outbound/pushpullws.h"
#include "outbound/sender.h"
#include "outbound/tokenrenew.h"
#include "store/xact.h"
#include "setstream.h"
#include "store/store.h"
#include "shmem/wakeup.h"

#define SCAN_INTERVAL_MS 1000	/* look for due SETs at least this often */
#define RETRY_TURN_MS 1000		/* after a failed database turn */
#define RETIRE_INTERVAL_MS 1000	/* sender 0 retires replaced keys this often */
#define INACTIVITY_INTERVAL_MS 1000 /* sender 0 checks SSF inactivity this often */

/* One push in flight (or answered, its outcome not yet recorded) */
typedef struct Push
{
	char	   *stream;
	char	   *url;
	char	   *authorization;	/* NULL: none */
	int64		seq;
	char	   *jti;
	char	   *token;
	char	   *state;
	int			attempts;
	TimestampTz created_at;
	bool		answered;
	int			status;
	PushClass	cls;
} Push;

STREAM_NAMED(PushStream);

static int	sender_index;
static MemoryContext turn_cxt;
static MemoryContext push_cxt;
static List *pushes = NIL;		/* Push *, in push_cxt */
static int	nanswered = 0;
static TimestampTz next_scan_at = 0;
static uint64 seen_config = 0;

/* The slots of the push streams of the last turn, with their generations */
static int	nslots = 0;
static int *slots = NULL;
static uint64 *slot_gens = NULL;
static uint64 turn_gens[WAKEUP_SLOTS];	/* every slot's, before the turn */

static bool
mine(const char *stream)
{
	uint32		h = hash_bytes((const unsigned char *) stream, strlen(stream));

	return setstream_senders <= 1 || (int) (h % setstream_senders) == sender_index;
}

static void
push_answered(void *arg, const HttpResult *res)
{
	Push	   *p = arg;
	PushAnswer	a;

	a.status = res->status;
	a.body = res->body;
	a.body_len = res->body_len;
	a.retry_after_s = res->retry_after_s;
	a.transport_error = res->error;
	outbound_classify(&a, &p->cls);
	p->status = res->status;
	p->answered = true;
	nanswered++;
}

typedef struct TurnState
{
	List	   *streams;		/* PushStream * of this sender */
	int64	   *nonconformant;	/* per stream, parallel to streams */
	bool	   *changed;
	List	   *to_start;		/* Push * */
	TimestampTz now;
} TurnState;

static int
stream_position(TurnState *t, PushStream *s)
{
	int			i = 0;
	ListCell   *lc;

	foreach(lc, t->streams)
	{
		if (lfirst(lc) == s)
			return i;
		i++;
	}
	elog(ERROR, "push stream not in this turn's list");
	return -1;					/* keep the compiler quiet */
}

/*
 * Store the outcomes of a turn, one statement per stream (n outcomes,
 * streams[i] the stream of rows[i]; rows are reordered)
 */
static void
store_outcomes_by_stream(const char **streams, PushOutcomeRow *rows, int n)
{
	int			done = 0;

	while (done < n)
	{
		const char *stream = streams[done];
		int			k = done + 1;

		/* gather the stream's rows right after its first one */
		for (int i = done + 1; i < n; i++)
		{
			if (strcmp(streams[i], stream) == 0)
			{
				PushOutcomeRow tmp = rows[k];
				const char *ts = streams[k];

				rows[k] = rows[i];
				streams[k] = streams[i];
				rows[i] = tmp;
				streams[i] = ts;
				k++;
			}
		}
		store_push_outcomes(stream, &rows[done], k - done);
		done = k;
	}
}

/* Record the answered pushes' outcomes */
static void
record_answers(TurnState *t)
{
	ListCell   *lc;
	int			n = 0;
	PushOutcomeRow *rows = palloc(sizeof(PushOutcomeRow) * (list_length(pushes) + 1));
	const char **streams = palloc(sizeof(char *) * (list_length(pushes) + 1));

	foreach(lc, pushes)
	{
		Push	   *p = lfirst(lc);
		PushStream *s;
		PushStream	orphan;
		PushRow		r;
		PushOutcomeRow o;
		int64		nonconf = 0;
		int			pos;
		bool		was_suspended;

		if (!p->answered)
			continue;
		s = stream_list_find(t->streams, p->stream);
		if (s == NULL)
		{
			/* no longer a push stream of ours: record the row only */
			memset(&orphan, 0, sizeof(orphan));
			orphan.stream = p->stream;
			orphan.state = "active";
			s = &orphan;
		}
		memset(&r, 0, sizeof(r));
		r.seq = p->seq;
		r.jti = p->jti;
		r.token = p->token;
		r.state = p->state;
		r.attempts = p->attempts;
		r.created_at = p->created_at;
		was_suspended = strcmp(s->state, "suspended") == 0;
		if (outbound_apply(s, &r, &p->cls, p->status, t->now, &o, &nonconf) &&
			s != &orphan)
		{
			pos = stream_position(t, s);
			t->changed[pos] = true;
			t->nonconformant[pos] += nonconf;
			if (!was_suspended && strcmp(s->state, "suspended") == 0)
				ereport(LOG,
						(errmsg("setstream sender: delivery of stream \"%s\" suspended",
								s->stream),
						 errdetail("%s", s->suspended_reason)));
		}
		/*
		 * A stream no longer pushed (its delivery changed while the push
		 * was in flight): an ack is kept (the receiver has the SET), any
		 * other outcome is not, so that the row is due on its new route at
		 * once rather than after a push's backoff.
		 */
		if (s == &orphan && o.acked_at == 0)
			continue;
		streams[n] = p->stream;
		rows[n++] = o;
	}
	store_outcomes_by_stream(streams, rows, n);
}

static int
in_flight_of(const char *stream, int64 **seqs)
{
	ListCell   *lc;
	int			n = 0;

	*seqs = palloc(sizeof(int64) * (list_length(pushes) + 1));
	foreach(lc, pushes)
	{
		Push	   *p = lfirst(lc);

		if (strcmp(p->stream, stream) == 0)
			(*seqs)[n++] = p->seq;
	}
	return n;
}

/* Read the SETs due on each stream that may push now */
static void
take_due(TurnState *t)
{
	TimestampTz expire_before = outbound_expire_before(t->now);
	ListCell   *lc;

	foreach(lc, t->streams)
	{
		PushStream *s = lfirst(lc);
		int64	   *seqs;
		int			busy = in_flight_of(s->stream, &seqs);
		int			room = s->concurrency;
		List	   *rows;
		ListCell   *rc;

		if (strcmp(s->state, "suspended") == 0)
			continue;
		if (strcmp(s->state, "backoff") == 0)
		{
			if (s->backoff_until > t->now)
			{
				if (next_scan_at == 0 || s->backoff_until < next_scan_at)
					next_scan_at = s->backoff_until;
				continue;
			}
			room = 1;			/* one probe until an answer succeeds */
		}
		if (busy >= room)
			continue;
		rows = store_push_due(s->stream, t->now, expire_before, seqs, busy,
							  room - busy);
		foreach(rc, rows)
		{
			PushRow    *r = lfirst(rc);
			MemoryContext old;
			Push	   *p;

			if (r->expired)
			{
				PushOutcomeRow o;

				outbound_expire(r, t->now, &o);
				store_push_outcome(s->stream, &o);
				continue;
			}
			old = MemoryContextSwitchTo(push_cxt);
			p = palloc0(sizeof(Push));
			p->stream = pstrdup(s->stream);
			p->url = pstrdup(s->endpoint_url);
			p->authorization = s->authorization ? pstrdup(s->authorization) : NULL;
			p->seq = r->seq;
			p->jti = pstrdup(r->jti);
			p->token = pstrdup(r->token);
			p->state = pstrdup(r->state);
			p->attempts = r->attempts;
			p->created_at = r->created_at;
			/* the list outlives the transaction */
			MemoryContextSwitchTo(turn_cxt);
			t->to_start = lappend(t->to_start, p);
			MemoryContextSwitchTo(old);
		}
	}
}

static void
turn_work(TurnState *t)
{
	List	   *all;
	ListCell   *lc;
	int			n;
	int			i = 0;

	/* DROP EXTENSION under a running sender: wait quietly for it to return */
	if (xact_begin_turn() == XACT_NO_EXTENSION)
		return;
	all = store_push_streams();
	t->streams = NIL;
	foreach(lc, all)
	{
		PushStream *s = lfirst(lc);

		if (mine(s->stream))
			t->streams = lappend(t->streams, s);
	}
	n = list_length(t->streams);
	t->nonconformant = palloc0(sizeof(int64) * (n + 1));
	t->changed = palloc0(sizeof(bool) * (n + 1));

	record_answers(t);
	foreach(lc, t->streams)
	{
		if (t->changed[i])
			store_delivery_state(lfirst(lc), t->nonconformant[i], t->now);
		i++;
	}
	take_due(t);
	jwksfetch_turn(t->now, mine);	/* peer keys from a jwks_uri */

	/* the slots whose wake-ups concern us from now on */
	if (slots != NULL)
	{
		pfree(slots);
		pfree(slot_gens);
	}
	slots = MemoryContextAlloc(TopMemoryContext, sizeof(int) * (n + 1));
	slot_gens = MemoryContextAlloc(TopMemoryContext, sizeof(uint64) * (n + 1));
	nslots = 0;
	foreach(lc, t->streams)
	{
		PushStream *s = lfirst(lc);

		slots[nslots] = wakeup_slot(s->stream);
		slot_gens[nslots] = 0;	/* set from turn_gens after the turn */
		nslots++;
	}
}

/* Forget the pushes whose outcome is now committed (or lost with an abort) */
static void
drop_answered(void)
{
	List	   *keep = NIL;
	ListCell   *lc;
	MemoryContext old = MemoryContextSwitchTo(push_cxt);

	foreach(lc, pushes)
	{
		Push	   *p = lfirst(lc);

		if (p->answered)
		{
			pfree(p->stream);
			pfree(p->url);
			if (p->authorization)
			{
				explicit_bzero(p->authorization, strlen(p->authorization));
				pfree(p->authorization);
			}
			pfree(p->jti);
			pfree(p->token);
			pfree(p->state);
			pfree(p);
		}
		else
			keep = lappend(keep, p);
	}
	list_free(pushes);
	pushes = keep;
	nanswered = 0;
	MemoryContextSwitchTo(old);
}

/*
 * Start the pushes read by the committed turn.  One that libcurl refuses
 * to start is answered at once as a transport error.
 */
static void
start_pushes(List *to_start)
{
	ListCell   *lc;

	foreach(lc, to_start)
	{
		Push	   *p = lfirst(lc);
		MemoryContext old = MemoryContextSwitchTo(push_cxt);

		pushes = lappend(pushes, p);
		MemoryContextSwitchTo(old);
		if (!httpclient_post(p->url, p->token, strlen(p->token),
							 "application/secevent+jwt", "application/json",
							 p->authorization, push_answered, p))
		{
			HttpResult	res;

			memset(&res, 0, sizeof(res));
			res.retry_after_s = -1;
			res.error = "the HTTP request could not be started";
			push_answered(p, &res);
		}
	}
}

/* Discard pushes read by a turn that did not commit */
static void
discard_pushes(List *to_start)
{
	ListCell   *lc;

	MemoryContext old = MemoryContextSwitchTo(push_cxt);

	foreach(lc, to_start)
	{
		Push	   *p = lfirst(lc);

		p->answered = true;
		pushes = lappend(pushes, p);
	}
	MemoryContextSwitchTo(old);
	drop_answered();
}

/*
 * Sender 0 retires the signing keys rotate_key replaced, once their SETs
 * are settled and setstream.jwks_max_age is up (store_retire_keys).
 */
static void
retire_keys_when_due(TimestampTz now)
{
	static TimestampTz next_retire_at = 0;

	if (sender_index != 0 || now < next_retire_at)
		return;
	(void) store_retire_keys(setstream_jwks_max_age_s);
	next_retire_at = now + RETIRE_INTERVAL_MS * 1000;
}

/*
 * SSF inactivity (issue 13): sender 0, once a second while
 * setstream.ssf_inactivity_timeout is set, pauses the SSF streams whose
 * receiver made no management call and no poll for that long, and
 * disables them after twice that, each with a stream-updated SET
 * (setstream._ssf_inactivity; 0.4.0 schema only).
 */
static void
ssf_inactivity_when_due(TimestampTz now)
{
	static TimestampTz next_check_at = 0;

	if (sender_index != 0 || setstream_ssf_inactivity_timeout_s <= 0 ||
		now < next_check_at)
		return;
	next_check_at = now + INACTIVITY_INTERVAL_MS * 1000;
	if (!store_schema_is_0_4())
		return;
	(void) store_ssf_inactivity(setstream_ssf_inactivity_timeout_s);
}

/* The work of a database turn, inside xact_run's transaction */
static void
sender_turn(void *arg)
{
	TurnState  *t = arg;

	t->now = GetCurrentTimestamp();
	next_scan_at = 0;
	turn_work(t);
	retire_keys_when_due(t->now);
	ssf_inactivity_when_due(t->now);
	if (sender_index == 0)
		tokenrenew_when_due(t->now);
	for (int i = 0; i < nslots; i++)
		slot_gens[i] = turn_gens[slots[i]];
}

/*
 * One database turn.  Returns false (the error logged, the transaction
 * aborted) when it failed; the answered pushes are then forgotten, and
 * their SETs pushed again later.
 */
static bool
database_turn(void)
{
	TurnState	t;
	bool		ok;

	memset(&t, 0, sizeof(t));
	pgstat_report_activity(STATE_RUNNING, "setstream sender");
	/*
	 * The generations before the snapshot: an emit that commits after it
	 * moves them, and the next wake-up is then ours.
	 */
	seen_config = wakeup_config_generation();
	for (int i = 0; i < WAKEUP_SLOTS; i++)
		turn_gens[i] = wakeup_generation(i);
	ok = xact_run(sender_turn, &t);
	jwksfetch_after_turn(ok);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (ok)
	{
		drop_answered();
		start_pushes(t.to_start);
	}
	else
	{
		discard_pushes(t.to_start);
		next_scan_at = GetCurrentTimestamp() + RETRY_TURN_MS * 1000;
	}
	{
		TimestampTz periodic = GetCurrentTimestamp() + SCAN_INTERVAL_MS * 1000;

		if (next_scan_at == 0 || periodic < next_scan_at)
			next_scan_at = periodic;
	}
	return ok;
}

/* Did an emit on one of our push streams, or a configuration change, commit? */
static bool
woken_for_us(void)
{
	if (wakeup_config_generation() != seen_config)
		return true;
	for (int i = 0; i < nslots; i++)
		if (wakeup_generation(slots[i]) != slot_gens[i])
			return true;
	return false;
}

static long
wait_timeout_ms(void)
{
	long		curl_ms = httpclient_timeout_ms();
	long		scan_ms = (long) ((next_scan_at - GetCurrentTimestamp()) / 1000);

	long		poll_ms = pollclient_timeout_ms();
	long		pushpull_ms = pushpullclient_timeout_ms();
	long		ws_ms = pushpullws_timeout_ms();

	if (scan_ms < 0)
		scan_ms = 0;
	if (poll_ms >= 0 && poll_ms < scan_ms)
		scan_ms = poll_ms;
	if (pushpull_ms >= 0 && pushpull_ms < scan_ms)
		scan_ms = pushpull_ms;
	if (ws_ms >= 0 && ws_ms < scan_ms)
		scan_ms = ws_ms;
	if (curl_ms >= 0 && curl_ms < scan_ms)
		return curl_ms;
	return scan_ms;
}

static void
sender_shutdown(int code, Datum arg)
{
	wakeup_set_sender_latch(sender_index, NULL);
}

void
sender_run(int index)
{
	WaitEventSet *wait_set;
	WaitEvent	events[4];

	sender_index = index;
	turn_cxt = AllocSetContextCreate(TopMemoryContext, "setstream sender turn",
									 ALLOCSET_DEFAULT_SIZES);
	push_cxt = AllocSetContextCreate(TopMemoryContext, "setstream pushes",
									 ALLOCSET_DEFAULT_SIZES);
	httpclient_init();
	pollclient_init(index);
	pushpullclient_init(index);
	pushpullws_init(index);

	wait_set = CreateWaitEventSetTop(4);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_POSTMASTER_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, httpclient_epoll_fd(), NULL, NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, pushpullws_epoll_fd(), NULL, NULL);

	before_shmem_exit(sender_shutdown, (Datum) 0);
	wakeup_set_sender_latch(index, MyLatch);
	ereport(LOG, (errmsg("setstream sender %d started", index)));

	MemoryContextSwitchTo(turn_cxt);
	(void) database_turn();
	for (;;)
	{
		bool		sockets = false;
		bool		latch = false;
		int			n;

		MemoryContextReset(turn_cxt);
		n = WaitEventSetWait(wait_set, wait_timeout_ms(), events,
							 lengthof(events), PG_WAIT_EXTENSION);
		for (int i = 0; i < n; i++)
		{
			if (events[i].events & WL_POSTMASTER_DEATH)
				proc_exit(1);
			if (events[i].events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				latch = true;
			}
			if (events[i].events & WL_SOCKET_READABLE)
				sockets = true;
		}
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			httpclient_configure();
			latch = true;
			next_scan_at = 0;
		}
		httpclient_drive(sockets);
		if (nanswered > 0 || (latch && woken_for_us()) || jwksfetch_wanted() ||
			GetCurrentTimestamp() >= next_scan_at)
			(void) database_turn();
		pollclient_step();		/* the sources' polls (set_source) */
		pushpullws_step();		/* pushpull-ws we initiate (set_delivery) */
		pushpullclient_step();	/* pushpull we initiate (set_delivery) */
	}
}
