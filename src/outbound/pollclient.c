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
 *	  An answer is handled in the sender's loop: its SETs are verified
 *	  outside any transaction (the stream's cached copy, exchange_verify),
 *	  then stored with the source's new state in one transaction
 *	  (exchange_collect: the listener's rules, the same store functions).
 *	  Their jtis become pending acks (or setErrs) only once it committed:
 *	  the next poll sends them.  Pending acks are kept in memory: after a
 *	  crash the peer sends the unacknowledged SETs again, they are found
 *	  stored (events are unique per stream and jti) and acknowledged.
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

#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "codec/commobj.h"
#include "codec/json.h"
#include "exchange/exchange.h"
#include "outbound/httpclient.h"
#include "outbound/outbound.h"
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
	PushStream	conf;			/* as last read (strings in src_cxt) */
	bool		removed;		/* no longer a source of ours */
	TimestampTz next_poll_at;	/* 0: at once */
	bool		more;			/* the last answer said moreAvailable */

	/* the poll in flight */
	bool		in_flight;
	char	   *polled_url;
	char	   *request;		/* in src_cxt */
	json_t	   *sent_ack;
	json_t	   *sent_errs;
	TimestampTz started_at;

	/* its answer, until handled */
	bool		answered;
	int			status;
	char	   *body;
	size_t		body_len;
	long		retry_after_s;
	char	   *error;

	/* committed, to be sent with the next poll */
	json_t	   *pending_ack;
	json_t	   *pending_errs;
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

static bool
mine(const char *stream)
{
	uint32		h = hash_bytes((const unsigned char *) stream, strlen(stream));

	return setstream_senders <= 1 || (int) (h % setstream_senders) == my_index;
}

static char *
src_strdup(const char *s)
{
	return s ? MemoryContextStrdup(src_cxt, s) : NULL;
}

static void
free_str(char **s, bool secret)
{
	if (*s == NULL)
		return;
	if (secret)
		explicit_bzero(*s, strlen(*s));
	pfree(*s);
	*s = NULL;
}

static void
free_conf(PushStream *c)
{
	free_str(&c->stream, false);
	free_str(&c->endpoint_url, false);
	free_str(&c->authorization, true);
	free_str(&c->state, false);
	free_str(&c->suspended_reason, false);
}

static void
copy_conf(PushStream *dst, const PushStream *src)
{
	PushStream	old = *dst;

	dst->stream = src_strdup(src->stream);
	dst->endpoint_url = src_strdup(src->endpoint_url);
	dst->authorization = src_strdup(src->authorization);
	dst->state = src_strdup(src->state);
	dst->suspended_reason = src_strdup(src->suspended_reason);
	dst->backoff_until = src->backoff_until;
	dst->failures = src->failures;
	dst->auth_failures = src->auth_failures;
	dst->concurrency = 1;
	free_conf(&old);
}

static void
forget_answer(Source *s)
{
	s->answered = false;
	free_str(&s->body, false);
	free_str(&s->error, false);
}

static void
free_source(Source *s)
{
	free_conf(&s->conf);
	free_str(&s->polled_url, false);
	forget_answer(s);
	free_str(&s->request, false);
	json_decref(s->sent_ack);
	json_decref(s->sent_errs);
	json_decref(s->pending_ack);
	json_decref(s->pending_errs);
	pfree(s);
}

/* ---------------------------------------------------------------------
 * The sources
 * ---------------------------------------------------------------------
 */

/* Free the sources marked removed that have no poll in flight or answered */
static void
free_idle_removed(void)
{
	MemoryContext old = MemoryContextSwitchTo(src_cxt);
	List	   *keep = NIL;
	ListCell   *lc;

	foreach(lc, sources)
	{
		Source	   *s = lfirst(lc);

		if (s->removed && !s->in_flight && !s->answered)
			free_source(s);
		else
			keep = lappend(keep, s);
	}
	list_free(sources);
	sources = keep;
	MemoryContextSwitchTo(old);
}

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
		((Source *) lfirst(lc))->removed = true;
	foreach(lc, w.rows)
	{
		PushStream *row = lfirst(lc);
		Source	   *s = NULL;
		ListCell   *sc;

		if (!mine(row->stream))
			continue;
		foreach(sc, sources)
		{
			Source	   *c = lfirst(sc);

			if (c->removed && strcmp(c->conf.stream, row->stream) == 0 &&
				strcmp(c->conf.endpoint_url, row->endpoint_url) == 0)
				s = c;
		}
		if (s == NULL)
		{
			old = MemoryContextSwitchTo(src_cxt);
			s = palloc0(sizeof(Source));
			s->pending_ack = json_array();
			s->pending_errs = json_object();
			sources = lappend(sources, s);
			MemoryContextSwitchTo(old);
		}
		s->removed = false;
		copy_conf(&s->conf, row);
		if (row->authorization)
			explicit_bzero(row->authorization, strlen(row->authorization));
	}

	/* a source gone (or with another endpoint) is freed when idle */
	free_idle_removed();
}

/* ---------------------------------------------------------------------
 * Polls
 * ---------------------------------------------------------------------
 */
static void
poll_answered(void *arg, const HttpResult *res)
{
	Source	   *s = arg;

	s->in_flight = false;
	s->answered = true;
	s->status = res->status;
	s->retry_after_s = res->retry_after_s;
	if (res->body != NULL && res->status != 0)
	{
		s->body = MemoryContextAlloc(src_cxt, res->body_len + 1);
		memcpy(s->body, res->body, res->body_len);
		s->body[res->body_len] = '\0';
		s->body_len = res->body_len;
	}
	if (res->error)
		s->error = MemoryContextStrdup(src_cxt, res->error);
	free_str(&s->request, false);
	nanswered++;
}

/*
 * Add the acks and setErrs of ack and errs to the pending ones.  jansson
 * allocates in CurrentMemoryContext (jws.c): what outlives a step is made
 * in src_cxt, and copied.
 */
static void
add_pending(Source *s, json_t *ack, json_t *errs)
{
	MemoryContext old = MemoryContextSwitchTo(src_cxt);
	size_t		i;
	json_t	   *v;
	const char *k;

	if (ack)
		json_array_foreach(ack, i, v)
			json_array_append_new(s->pending_ack, json_deep_copy(v));
	if (errs)
		json_object_foreach(errs, k, v)
			json_object_set_new(s->pending_errs, k, json_deep_copy(v));
	MemoryContextSwitchTo(old);
}

/* Put the acks and setErrs of a failed poll back with the pending ones */
static void
unsend(Source *s)
{
	add_pending(s, s->sent_ack, s->sent_errs);
	json_decref(s->sent_ack);
	json_decref(s->sent_errs);
	s->sent_ack = s->sent_errs = NULL;
}

static void
start_poll(Source *s, TimestampTz now)
{
	json_t	   *req = json_object();
	bool		immediately = s->more;
	StringInfoData text;
	MemoryContext old;

	json_object_set_new(req, "maxEvents", json_integer(setstream_source_max_events));
	json_object_set_new(req, "returnImmediately", json_boolean(immediately));
	json_object_set(req, "ack", s->pending_ack);
	json_object_set(req, "setErrs", s->pending_errs);
	old = MemoryContextSwitchTo(src_cxt);
	initStringInfo(&text);
	json_write(&text, req);
	s->request = text.data;

	s->sent_ack = s->pending_ack;
	s->sent_errs = s->pending_errs;
	s->pending_ack = json_array();
	s->pending_errs = json_object();
	MemoryContextSwitchTo(old);
	json_decref(req);
	free_str(&s->polled_url, false);
	s->polled_url = src_strdup(s->conf.endpoint_url);
	s->in_flight = true;
	s->started_at = now;
	s->more = false;

	/* the client's timeout must outlast the peer's long-poll wait */
	if (s->request == NULL ||
		!httpclient_post_limits(s->polled_url, s->request, strlen(s->request),
								"application/json", "application/json",
								s->conf.authorization,
								immediately ? setstream_outbound_timeout_ms :
								setstream_source_poll_timeout_ms,
								(size_t) setstream_max_request_bytes,
								poll_answered, s))
	{
		HttpResult	res;

		memset(&res, 0, sizeof(res));
		res.retry_after_s = -1;
		res.error = "the HTTP request could not be started";
		poll_answered(s, &res);
	}
}

static bool
may_poll(Source *s, TimestampTz now)
{
	if (s->removed || s->in_flight || s->answered)
		return false;
	if (strcmp(s->conf.state, "suspended") == 0)
		return false;
	if (strcmp(s->conf.state, "backoff") == 0 && s->conf.backoff_until > now)
		return false;
	return s->next_poll_at <= now;
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
	if (s->body == NULL || s->body_len == 0)
	{
		snprintf(err, errlen, "the poll response is empty");
		return false;
	}
	if (!commobj_parse(s->body, s->body_len, obj, why, sizeof(why)))
	{
		snprintf(err, errlen, "invalid poll response: %s", why);
		return false;
	}
	j = json_loadb(s->body, s->body_len, 0, NULL);
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
	Source	   *s;
	PushStream *conf;			/* the state to record */
	StreamInfo *stream;			/* NULL: record the state only */
	CommObj    *obj;
	IngestItem *items;
	json_t	   *ack;
	json_t	   *errs;
	int			status;
	const char *error;
	TimestampTz now;
	bool		skipped;
} StoreWork;

static void
store_work(void *arg)
{
	StoreWork  *w = arg;

	/* DROP EXTENSION, or DROP and CREATE: the stream copy is not valid */
	if (xact_begin_turn() != XACT_SAME)
	{
		w->skipped = true;
		return;
	}
	/* w->ack and w->errs grow in the step's context, not the transaction's */
	MemoryContextSwitchTo(step_cxt);
	if (w->stream != NULL)
		exchange_collect(w->stream, w->obj, w->items, w->ack, w->errs);
	store_source_state(w->conf, w->status, w->error,
					   w->ack ? (int64) json_array_size(w->ack) : 0,
					   w->errs ? (int64) json_object_size(w->errs) : 0,
					   w->now);
}

typedef struct LoadWork
{
	const char *name;
	bool		ok;
} LoadWork;

static void
load_work(void *arg)
{
	LoadWork   *w = arg;
	StreamInfo *unused;

	if (xact_begin_turn() == XACT_NO_EXTENSION)
		return;
	if (!streamcache_lookup(w->name, &unused))
		streamcache_load(w->name, false);
	w->ok = true;
}

/* The stream's cached copy (loaded if need be), or NULL */
static StreamInfo *
cached_stream(const char *name)
{
	StreamInfo *stream = NULL;
	LoadWork	w = {name, false};

	if (streamcache_lookup(name, &stream))
		return stream;
	if (!xact_run(load_work, &w) || !w.ok)
		return NULL;
	if (!streamcache_lookup(name, &stream))
		return NULL;
	return stream;
}

static void
handle_answer(Source *s, TimestampTz now)
{
	PushAnswer	a;
	PushClass	cls;
	PushStream	conf = s->conf;
	PushRow		row;
	PushOutcomeRow unused;
	int64		nonconf = 0;
	CommObj		obj;
	bool		more = false;
	bool		ok = false;
	char		err[300];
	StoreWork	w;
	bool		was_suspended = strcmp(conf.state, "suspended") == 0;

	memset(&w, 0, sizeof(w));
	memset(&obj, 0, sizeof(obj));
	a.status = s->status;
	a.body = s->body;
	a.body_len = s->body_len;
	a.retry_after_s = s->retry_after_s;
	a.transport_error = s->error;
	outbound_classify(&a, &cls);
	if (s->status >= 200 && s->status < 300)
	{
		ok = parse_response(s, &obj, &more, err, sizeof(err));
		if (ok)
			cls.verdict = PUSH_ACKED;
		else
		{
			cls.verdict = PUSH_BACKOFF;
			strlcpy(cls.description, err, sizeof(cls.description));
		}
	}
	else if (cls.verdict == PUSH_FAILED || cls.verdict == PUSH_RETRY_KEY ||
			 cls.verdict == PUSH_ACKED || cls.verdict == PUSH_ACKED_NONCONFORMANT)
		cls.verdict = PUSH_BACKOFF; /* a poll has no row to fail */

	/* the new state of the source, as a push's answer changes a stream's */
	memset(&row, 0, sizeof(row));
	row.jti = "";
	row.state = "pending";
	row.created_at = now;
	(void) outbound_apply(&conf, &row, &cls, s->status, now, &unused, &nonconf);

	if (ok)
	{
		/* the peer applied the acks it answered */
		json_decref(s->sent_ack);
		json_decref(s->sent_errs);
		s->sent_ack = s->sent_errs = NULL;
		w.ack = json_array();
		w.errs = json_object();
		if (list_length(obj.sets) > 0)
		{
			w.stream = cached_stream(s->conf.stream);
			if (w.stream == NULL)
			{
				/* gone: nothing stored, nothing acknowledged */
				json_decref(w.ack);
				json_decref(w.errs);
				s->next_poll_at = now + RETRY_MS * 1000;
				return;
			}
			w.obj = &obj;
			/* verified outside any transaction */
			w.items = exchange_verify(w.stream, &obj);
		}
	}
	else
		unsend(s);

	w.s = s;
	w.conf = &conf;
	w.status = s->status;
	w.error = ok ? NULL : cls.description;
	w.now = now;
	if (!xact_run(store_work, &w) || w.skipped)
	{
		/* not stored: the peer sends the SETs again */
		json_decref(w.ack);
		json_decref(w.errs);
		s->next_poll_at = now + RETRY_MS * 1000;
		return;
	}

	/* committed: acknowledge with the next poll */
	add_pending(s, w.ack, w.errs);
	json_decref(w.ack);
	json_decref(w.errs);
	if (!was_suspended && strcmp(conf.state, "suspended") == 0)
		ereport(LOG,
				(errmsg("setstream sender: polling of stream \"%s\" suspended",
						s->conf.stream),
				 errdetail("%s", conf.suspended_reason)));
	copy_conf(&s->conf, &conf);
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
		streamcache_begin_turn();
		foreach(lc, sources)
		{
			Source	   *s = lfirst(lc);

			if (!s->answered)
				continue;
			if (s->removed ||
				strcmp(s->polled_url, s->conf.endpoint_url) != 0)
			{
				/* no longer polled there: nothing stored or acknowledged */
				json_decref(s->sent_ack);
				json_decref(s->sent_errs);
				s->sent_ack = s->sent_errs = NULL;
			}
			else
				handle_answer(s, GetCurrentTimestamp());
			forget_answer(s);
			MemoryContextReset(step_cxt);
		}
		streamcache_end_turn();

		free_idle_removed();
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

		if (s->removed || s->in_flight || s->answered ||
			strcmp(s->conf.state, "suspended") == 0)
			continue;
		at = s->next_poll_at;
		if (strcmp(s->conf.state, "backoff") == 0 && s->conf.backoff_until > at)
			at = s->conf.backoff_until;
		if (at < next)
			next = at;
	}
	if (next <= now)
		return 0;
	return (long) ((next - now) / 1000);
}
