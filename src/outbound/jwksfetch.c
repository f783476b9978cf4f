/*-------------------------------------------------------------------------
 *
 * jwksfetch.c
 *	  Peer keys from a jwks_uri: the sender fetches the JWK Set of each of
 *	  its streams (sender.c's mine()) that has a peer_jwks_uri, and makes
 *	  its keys the stream's keys of origin 'jwks_uri' in setstream.keys,
 *	  where the listener's stream cache reads them like add_key's.
 *
 *	  A set is fetched when the stream has none yet (or its URI changed),
 *	  when the last one expired (its Cache-Control max-age, an hour without
 *	  one, never less than setstream.jwks_min_cache_time nor more than a
 *	  day), and when the listener asks for a refetch because a SET named a
 *	  kid no key has (shmem/jwksreq.c; rate-limited there).  Requests go
 *	  through httpclient.c like pushes: TLS verified, no redirects, the
 *	  allowed networks checked on the address connected to, its timeouts,
 *	  and the body limit of HTTP_MAX_RESPONSE.
 *
 *	  Like a push, a fetch starts after the sender's turn has committed and
 *	  its answer is applied in the next turn's transaction: the keys are
 *	  written (only when something changed: a write drops every process's
 *	  stream cache through the configuration triggers), the outcome goes to
 *	  setstream.peer_jwks, and, once that has committed, the listener's
 *	  request is cleared.  A failure (no answer, not 200, not a JWK Set, no
 *	  usable key, a private key in the set) keeps the keys of the last
 *	  success and is retried with exponential backoff.
 *
 *	  Each key is checked as add_key checks it (jose_check_public_jwk):
 *	  one that does not pass (an encryption key, an unsupported type) is
 *	  left out; a set with private key material or a symmetric (oct) key
 *	  is refused whole.  A key without kid gets its RFC 7638 thumbprint.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "base/streamlist.h"
#include "jose/jose.h"
#include "outbound/httpclient.h"
#include "outbound/jwksfetch.h"
#include "outbound/outbound.h"
#include "setstream.h"
#include "shmem/jwksreq.h"
#include "store/store.h"

#define JWKS_DEFAULT_MAX_AGE_S 3600
#define JWKS_MAX_MAX_AGE_S 86400
#define JWKS_MAX_KEYS 50
#define JWKS_FIRST_BACKOFF_S 5

/* One fetch in flight, or answered and not yet recorded */
typedef struct Fetch
{
	char	   *stream;
	char	   *uri;
	TimestampTz asked_at;		/* the listener's request it serves, or 0 */
	bool		answered;
	bool		recorded;		/* its outcome is in this turn's transaction */
	int			status;
	char	   *body;
	size_t		body_len;
	long		max_age_s;
	char	   *error;
} Fetch;

STREAM_NAMED(Fetch);
STREAM_NAMED(JwksSource);

static MemoryContext fetch_cxt = NULL;
static List *fetches = NIL;		/* Fetch *, in fetch_cxt */
static List *queued = NIL;		/* Fetch * to start after the commit */
static int	nanswered = 0;
static uint64 seen_requests = 0;

static void
fetch_answered(void *arg, const HttpResult *res)
{
	Fetch	   *f = arg;
	MemoryContext old = MemoryContextSwitchTo(fetch_cxt);

	f->answered = true;
	f->status = res->status;
	f->max_age_s = res->max_age_s;
	if (res->status != 0)
	{
		f->body = palloc(res->body_len + 1);
		memcpy(f->body, res->body, res->body_len);
		f->body[res->body_len] = '\0';
		f->body_len = res->body_len;
	}
	else
		f->error = pstrdup(res->error ? res->error : "no answer");
	MemoryContextSwitchTo(old);
	nanswered++;
}

static void
free_fetch(Fetch *f)
{
	pfree(f->stream);
	pfree(f->uri);
	if (f->body)
		pfree(f->body);
	if (f->error)
		pfree(f->error);
	pfree(f);
}

/* Is a JWK Set to be fetched for the sender: answers, or new requests? */
bool
jwksfetch_wanted(void)
{
	return nanswered > 0 || jwksreq_requests() != seen_requests;
}

static bool
has_private_member(json_t *jwk)
{
	static const char *const members[] = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"};

	for (int i = 0; i < lengthof(members); i++)
		if (json_object_get(jwk, members[i]) != NULL)
			return true;
	return false;
}

static bool
kid_taken(List *keys, const char *kid)
{
	ListCell   *lc;

	foreach(lc, keys)
	{
		if (strcmp(((JwksKey *) lfirst(lc))->kid, kid) == 0)
			return true;
	}
	return false;
}

/*
 * The usable keys of a JWK Set, or NIL with *error set.  Keys that do not
 * pass add_key's checks are left out; private or secret material refuses
 * the whole set (its publisher is misconfigured, or worse).
 */
static List *
parse_jwks(const char *body, size_t len, const char **error)
{
	json_error_t jerr;
	json_t	   *set = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	json_t	   *arr;
	json_t	   *jwk;
	size_t		i;
	List	   *keys = NIL;

	if (set == NULL || !json_is_object(set) ||
		!json_is_array(arr = json_object_get(set, "keys")))
	{
		*error = "the answer is not a JWK Set (a JSON object with a \"keys\" array)";
		if (set)
			json_decref(set);
		return NIL;
	}
	json_array_foreach(arr, i, jwk)
	{
		char		err[256];
		char	   *kty;
		char	   *alg;
		bool		secret;
		JwksKey    *k;
		char	   *kid;
		const char *kty_member;

		if (!json_is_object(jwk))
			continue;
		kty_member = json_string_value(json_object_get(jwk, "kty"));
		if (has_private_member(jwk) ||
			(kty_member != NULL && strcmp(kty_member, "oct") == 0))
		{
			*error = "the JWK Set holds private or symmetric key material; it is refused whole";
			json_decref(set);
			return NIL;
		}
		if (!jose_check_public_jwk(jwk, &kty, &alg, &secret, err, sizeof(err)) ||
			secret)
			continue;
		kid = json_is_string(json_object_get(jwk, "kid")) ?
			pstrdup(json_string_value(json_object_get(jwk, "kid"))) :
			jose_thumbprint(jwk);
		if (kid == NULL || kid_taken(keys, kid))
			continue;
		json_object_set_new(jwk, "kid", json_string(kid));
		k = palloc0(sizeof(JwksKey));
		k->kid = kid;
		k->kty = pstrdup(kty);
		k->alg = alg ? pstrdup(alg) : NULL;
		/* jansson allocates with palloc here (jws.c) */
		k->jwk = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
		if (k->jwk == NULL || jose_key_get(k->jwk) == NULL)
			continue;
		keys = lappend(keys, k);
		if (list_length(keys) >= JWKS_MAX_KEYS)
			break;
	}
	json_decref(set);
	if (keys == NIL)
		*error = "the JWK Set has no usable signature verification key";
	return keys;
}

/* Exponential backoff with jitter after the failures-th failure in a row */
static TimestampTz
backoff_until(TimestampTz now, int failures)
{
	double		s = JWKS_FIRST_BACKOFF_S;
	double		cap = setstream_max_backoff_ms / 1000.0;

	for (int i = 1; i < failures && s < cap; i++)
		s *= 2;
	if (s > cap)
		s = cap;
	s *= 0.8 + 0.4 * pg_prng_double(&pg_global_prng_state);
	return now + (TimestampTz) (s * USECS_PER_SEC);
}

/* Write what an answered fetch came to (inside the turn's transaction) */
static void
record(Fetch *f, JwksSource *src, TimestampTz now)
{
	JwksOutcome o;
	char		errbuf[128];
	List	   *keys = NIL;
	const char *error = NULL;

	memset(&o, 0, sizeof(o));
	o.now = now;
	o.status = f->status;
	if (f->status == 0)
		error = f->error;
	else if (f->status != 200)
	{
		snprintf(errbuf, sizeof(errbuf), "the answer is HTTP %d, not 200",
				 f->status);
		error = errbuf;
	}
	else
		keys = parse_jwks(f->body, f->body_len, &error);

	if (keys != NIL)
	{
		long		age = f->max_age_s < 0 ? JWKS_DEFAULT_MAX_AGE_S : f->max_age_s;

		if (age < setstream_jwks_min_cache_s)
			age = setstream_jwks_min_cache_s;
		if (age > JWKS_MAX_MAX_AGE_S)
			age = JWKS_MAX_MAX_AGE_S;
		(void) store_jwks_replace(f->stream, keys);
		o.ok = true;
		o.keys = list_length(keys);
		o.expires_at = now + (TimestampTz) age * USECS_PER_SEC;
		o.next_fetch_at = o.expires_at;
	}
	else
	{
		o.error = error;
		o.next_fetch_at = backoff_until(now, src->failures + 1);
		ereport(LOG,
				(errmsg("setstream sender: the JWK Set of stream \"%s\" could not be fetched: %s",
						f->stream, setstream_log_escape(error, 256)),
				 errdetail("The keys of the last success stay in use; retried at %s.",
						   timestamptz_to_str(o.next_fetch_at))));
	}
	store_jwks_outcome(f->stream, f->uri, &o);
}

/*
 * In the sender's turn (a transaction): record the answered fetches and
 * queue those now due for the streams that mine() says are this sender's.
 */
void
jwksfetch_turn(TimestampTz now, bool (*mine) (const char *stream))
{
	List	   *sources;
	ListCell   *lc;

	if (fetch_cxt == NULL)
		fetch_cxt = AllocSetContextCreate(TopMemoryContext,
										  "setstream jwks fetches",
										  ALLOCSET_SMALL_SIZES);
	seen_requests = jwksreq_requests();
	sources = store_jwks_sources();

	foreach(lc, fetches)
	{
		Fetch	   *f = lfirst(lc);
		JwksSource *src;

		if (!f->answered)
			continue;
		f->recorded = true;
		src = stream_list_find(sources, f->stream);
		/* the stream is gone, or has another URI now: forget the answer */
		if (src == NULL || strcmp(src->uri, f->uri) != 0 || !mine(f->stream))
			continue;
		record(f, src, now);
		src->next_fetch_at = -1;	/* just recorded: not due again */
	}

	foreach(lc, sources)
	{
		JwksSource *src = lfirst(lc);
		TimestampTz asked;
		MemoryContext old;
		Fetch	   *f;

		if (!mine(src->stream) || src->next_fetch_at == -1 ||
			stream_list_find(fetches, src->stream) != NULL)
			continue;
		asked = jwksreq_asked_at(src->stream);
		if (asked == 0 && src->next_fetch_at != 0 && src->next_fetch_at > now)
			continue;
		old = MemoryContextSwitchTo(fetch_cxt);
		f = palloc0(sizeof(Fetch));
		f->stream = pstrdup(src->stream);
		f->uri = pstrdup(src->uri);
		f->asked_at = asked;
		f->max_age_s = -1;
		queued = lappend(queued, f);
		MemoryContextSwitchTo(old);
	}
}

/*
 * After the turn: when it committed, the recorded fetches are done (and
 * the listener's requests they served cleared) and the queued ones start;
 * when it did not, both are forgotten (due again at the next turn).
 */
void
jwksfetch_after_turn(bool committed)
{
	List	   *keep = NIL;
	List	   *start = queued;
	ListCell   *lc;
	MemoryContext old;

	/* a turn that failed looks again at its next periodic scan, not at once */
	if (!committed || fetch_cxt == NULL)
		seen_requests = jwksreq_requests();
	if (fetch_cxt == NULL)
		return;
	old = MemoryContextSwitchTo(fetch_cxt);
	foreach(lc, fetches)
	{
		Fetch	   *f = lfirst(lc);

		if (f->recorded)
		{
			if (committed)
				jwksreq_done(f->stream, f->asked_at);
			nanswered--;
			free_fetch(f);
		}
		else
			keep = lappend(keep, f);
	}
	list_free(fetches);
	fetches = keep;
	queued = NIL;
	MemoryContextSwitchTo(old);

	foreach(lc, start)
	{
		Fetch	   *f = lfirst(lc);

		if (!committed)
		{
			free_fetch(f);
			continue;
		}
		old = MemoryContextSwitchTo(fetch_cxt);
		fetches = lappend(fetches, f);
		MemoryContextSwitchTo(old);
		if (!httpclient_get(f->uri, "application/jwk-set+json, application/json",
							fetch_answered, f))
		{
			HttpResult	res;

			memset(&res, 0, sizeof(res));
			res.retry_after_s = -1;
			res.max_age_s = -1;
			res.error = "the HTTP request could not be started";
			fetch_answered(f, &res);
		}
	}
	list_free(start);
}
