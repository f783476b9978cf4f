/*-------------------------------------------------------------------------
 *
 * inbound.c
 *	  A peer the sender exchanges SETs with over HTTP, receiving them in
 *	  its answers: what the RFC 8936 poll client (pollclient.c) and the
 *	  pushpull initiator (pushpullclient.c) do alike.
 *
 *	  The acks and setErrs of the SETs stored are pending until a request
 *	  carries them; they are in flight with it, and pending again when it
 *	  fails.  An answer is captured by the HTTP callback and handled in the
 *	  sender's loop: classified as a push's answer (outbound.c), its SETs
 *	  verified outside any transaction (the stream's cached copy,
 *	  exchange_verify), stored in the client's transaction
 *	  (exchange_collect: the listener's rules), and their acks (or setErrs)
 *	  pending only once that committed.  Pending acks are kept in memory:
 *	  after a crash the peer sends the unacknowledged SETs again, they are
 *	  found stored (events are unique per stream and jti) and acknowledged.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "outbound/inbound.h"
#include "store/xact.h"

bool
inbound_mine(const char *stream, int sender_index)
{
	uint32		h = hash_bytes((const unsigned char *) stream, strlen(stream));

	return setstream_senders <= 1 || (int) (h % setstream_senders) == sender_index;
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

static char *
peer_strdup(InboundPeer *p, const char *s)
{
	return s ? MemoryContextStrdup(p->cxt, s) : NULL;
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

void
inbound_copy_conf(InboundPeer *p, const PushStream *src)
{
	PushStream *dst = &p->conf;
	PushStream	old = *dst;

	dst->stream = peer_strdup(p, src->stream);
	dst->endpoint_url = peer_strdup(p, src->endpoint_url);
	dst->authorization = peer_strdup(p, src->authorization);
	dst->state = peer_strdup(p, src->state);
	dst->suspended_reason = peer_strdup(p, src->suspended_reason);
	dst->backoff_until = src->backoff_until;
	dst->failures = src->failures;
	dst->auth_failures = src->auth_failures;
	dst->concurrency = 1;
	free_conf(&old);
}

void
inbound_init(InboundPeer *p, MemoryContext cxt, int *nanswered)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);

	p->cxt = cxt;
	p->nanswered = nanswered;
	p->pending_ack = json_array();
	p->pending_errs = json_object();
	MemoryContextSwitchTo(old);
}

static void
forget_answer(InboundPeer *p)
{
	p->answered = false;
	free_str(&p->body, false);
	free_str(&p->error, false);
}

static void
drop_sent(InboundPeer *p)
{
	json_decref(p->sent_ack);
	json_decref(p->sent_errs);
	p->sent_ack = p->sent_errs = NULL;
}

void
inbound_free(InboundPeer *p)
{
	free_conf(&p->conf);
	free_str(&p->url, false);
	forget_answer(p);
	free_str(&p->request, false);
	drop_sent(p);
	json_decref(p->pending_ack);
	json_decref(p->pending_errs);
}

bool
inbound_may_send(InboundPeer *p, TimestampTz now)
{
	if (p->removed || p->in_flight || p->answered)
		return false;
	if (strcmp(p->conf.state, "suspended") == 0)
		return false;
	if (strcmp(p->conf.state, "backoff") == 0 && p->conf.backoff_until > now)
		return false;
	return true;
}

bool
inbound_due_at(InboundPeer *p, TimestampTz at, TimestampTz *due)
{
	if (p->removed || p->in_flight || p->answered ||
		strcmp(p->conf.state, "suspended") == 0)
		return false;
	if (strcmp(p->conf.state, "backoff") == 0 && p->conf.backoff_until > at)
		at = p->conf.backoff_until;
	*due = at;
	return true;
}

List *
inbound_free_idle(List *peers, MemoryContext cxt, void (*free_peer) (void *))
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	List	   *keep = NIL;
	ListCell   *lc;

	foreach(lc, peers)
	{
		InboundPeer *p = lfirst(lc);

		if (p->removed && !p->in_flight && !p->answered)
			free_peer(p);
		else
			keep = lappend(keep, p);
	}
	list_free(peers);
	MemoryContextSwitchTo(old);
	return keep;
}

/* ---------------------------------------------------------------------
 * Requests and their answers
 * ---------------------------------------------------------------------
 */
/* The HTTP callback: capture the answer */
static void
answered(void *arg, const HttpResult *res)
{
	InboundPeer *p = arg;

	p->in_flight = false;
	p->answered = true;
	p->status = res->status;
	p->retry_after_s = res->retry_after_s;
	if (res->body != NULL && res->status != 0)
	{
		p->body = MemoryContextAlloc(p->cxt, res->body_len + 1);
		memcpy(p->body, res->body, res->body_len);
		p->body[res->body_len] = '\0';
		p->body_len = res->body_len;
	}
	if (res->error)
		p->error = MemoryContextStrdup(p->cxt, res->error);
	free_str(&p->request, false);
	(*p->nanswered)++;
}

void
inbound_post(InboundPeer *p, json_t *req, int timeout_ms)
{
	StringInfoData text;
	MemoryContext old = MemoryContextSwitchTo(p->cxt);
	bool		has_errs = json_object_size(p->pending_errs) > 0;

	initStringInfo(&text);
	json_write(&text, req);
	p->request = text.data;
	p->sent_ack = p->pending_ack;
	p->sent_errs = p->pending_errs;
	p->pending_ack = json_array();
	p->pending_errs = json_object();
	MemoryContextSwitchTo(old);

	free_str(&p->url, false);
	p->url = peer_strdup(p, p->conf.endpoint_url);
	p->in_flight = true;

	if (p->request == NULL ||
		!httpclient_post_limits(p->url, p->request, strlen(p->request),
								"application/json", "application/json",
								has_errs ? "en" : NULL,
								p->conf.authorization, timeout_ms,
								(size_t) setstream_max_request_bytes,
								answered, p))
	{
		HttpResult	res;

		memset(&res, 0, sizeof(res));
		res.retry_after_s = -1;
		res.error = "the HTTP request could not be started";
		answered(p, &res);
	}
}

void
inbound_handle_answers(List *peers, MemoryContext step_cxt,
					   void (*handle) (void *peer, TimestampTz now),
					   void (*stale) (void *peer))
{
	ListCell   *lc;

	streamcache_begin_turn();
	foreach(lc, peers)
	{
		InboundPeer *p = lfirst(lc);

		if (!p->answered)
			continue;
		if (p->removed || strcmp(p->url, p->conf.endpoint_url) != 0)
		{
			/* no longer sent there: nothing stored or acknowledged */
			drop_sent(p);
			if (stale)
				stale(p);
		}
		else
			handle(p, GetCurrentTimestamp());
		forget_answer(p);
		MemoryContextReset(step_cxt);
	}
	streamcache_end_turn();
}

/*
 * Add the acks and setErrs of ack and errs to the pending ones.  jansson
 * allocates in CurrentMemoryContext (jws.c): what outlives a step is made
 * in the peer's context, and copied.
 */
static void
add_pending(InboundPeer *p, json_t *ack, json_t *errs)
{
	MemoryContext old = MemoryContextSwitchTo(p->cxt);
	size_t		i;
	json_t	   *v;
	const char *k;

	if (ack)
		json_array_foreach(ack, i, v)
			json_array_append_new(p->pending_ack, json_deep_copy(v));
	if (errs)
		json_object_foreach(errs, k, v)
			json_object_set_new(p->pending_errs, k, json_deep_copy(v));
	MemoryContextSwitchTo(old);
}

/* Put the acks and setErrs of a failed request back with the pending ones */
static void
unsend(InboundPeer *p)
{
	add_pending(p, p->sent_ack, p->sent_errs);
	drop_sent(p);
}

bool
inbound_classify(InboundPeer *p, bool ok, const char *err,
				 const char *row_state, PushStream *conf, TimestampTz now,
				 PushClass *cls)
{
	PushAnswer	a;
	PushRow		row;
	PushOutcomeRow unused;
	int64		nonconf = 0;

	a.status = p->status;
	a.body = p->body;
	a.body_len = p->body_len;
	a.retry_after_s = p->retry_after_s;
	a.transport_error = p->error;
	outbound_classify(&a, cls);
	if (p->status >= 200 && p->status < 300)
	{
		if (ok)
			cls->verdict = PUSH_ACKED;
		else
		{
			cls->verdict = PUSH_BACKOFF;
			strlcpy(cls->description, err, sizeof(cls->description));
		}
	}
	else if (cls->verdict == PUSH_FAILED || cls->verdict == PUSH_RETRY_KEY ||
			 cls->verdict == PUSH_ACKED ||
			 cls->verdict == PUSH_ACKED_NONCONFORMANT)
		cls->verdict = PUSH_BACKOFF;	/* no row to fail */

	/* the new state, as a push's answer changes a stream's */
	memset(&row, 0, sizeof(row));
	row.jti = "";
	row.state = unconstify(char *, row_state);
	row.created_at = now;
	return outbound_apply(conf, &row, cls, p->status, now, &unused, &nonconf);
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

bool
inbound_receive(InboundPeer *p, bool ok, CommObj *obj, InboundBatch *b)
{
	memset(b, 0, sizeof(*b));
	if (!ok)
	{
		unsend(p);
		return true;
	}
	/* the peer has the acks and setErrs it answered */
	drop_sent(p);
	b->ack = json_array();
	b->errs = json_object();
	if (list_length(obj->sets) > 0)
	{
		b->stream = cached_stream(p->conf.stream);
		if (b->stream == NULL)
		{
			/* gone: nothing stored, nothing acknowledged */
			inbound_discard(b);
			return false;
		}
		/* verified outside any transaction */
		b->items = exchange_verify(b->stream, obj);
	}
	return true;
}

void
inbound_store(InboundBatch *b, CommObj *obj)
{
	if (b->stream != NULL)
		exchange_collect(b->stream, obj, b->items, b->ack, b->errs);
}

void
inbound_discard(InboundBatch *b)
{
	json_decref(b->ack);
	json_decref(b->errs);
	b->ack = b->errs = NULL;
}

void
inbound_committed(InboundPeer *p, InboundBatch *b, const PushStream *conf,
				  bool was_suspended, const char *what)
{
	add_pending(p, b->ack, b->errs);
	inbound_discard(b);
	if (!was_suspended && strcmp(conf->state, "suspended") == 0)
		ereport(LOG,
				(errmsg("setstream sender: %s of stream \"%s\" suspended",
						what, p->conf.stream),
				 errdetail("%s", conf->suspended_reason)));
	inbound_copy_conf(p, conf);
}
