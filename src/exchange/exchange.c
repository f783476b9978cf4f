/*-------------------------------------------------------------------------
 *
 * exchange.c
 *	  Protocol operations on a stream, shared by the SQL API (sqlapi.c) and
 *	  the listener (routes.c):
 *
 *	  - exchange_verify: check every SET of a Communication Object (no
 *	    database access when the stream's keys are cached, so the listener
 *	    does it outside any transaction);
 *	  - exchange_ingest: apply the peer's ack and setErrs to the outbox,
 *	    store the valid SETs (together; one by one, each in a subtransaction
 *	    of its own, only if that fails, so that a SET whose user trigger
 *	    raises does not fail its neighbours), and hand out due SETs;
 *	  - exchange_poll: an RFC 8936 poll: ack and setErrs first, then up to
 *	    maxEvents due SETs;
 *	  - exchange_store_push(es), exchange_settle, exchange_jwks: the
 *	    single steps the listener's routes and WebSocket sessions take.
 *
 *	  The listener reaches the store through this file only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "exchange/exchange.h"

#include "mb/pg_wchar.h"

#include "shmem/jwksreq.h"
#include "shmem/stats.h"
#include "store/store.h"
#include "store/xact.h"

/* The public keys of every signing key, as a JWK Set (GET /jwks.json) */
char *
exchange_jwks(void)
{
	return store_jwks();
}

/*
 * The sum of setstream.generations (false before 0.3.0): another node's
 * configuration changes, seen by the listener's generation check
 */
bool
exchange_generation_sum(int64 *sum)
{
	return store_generation_sum(sum);
}

/*
 * A fingerprint of the stream's SETs that became due since SINCE (an
 * _order_key value), and their count: SETs emitted on another node
 */
uint64
exchange_recent_due(const char *stream, int64 since, int64 *count)
{
	return store_recent_due(stream, since, count);
}

/* Store one verified pushed SET (RFC 8935) */
void
exchange_store_push(StreamInfo *stream, ParsedSet *ps)
{
	store_insert_event(stream, ps);
}

/* Store n verified pushed SETs, of any streams, with one statement */
void
exchange_store_pushes(StreamInfo **streams, ParsedSet **sets, int n)
{
	store_insert_events(streams, sets, n);
}

/* Apply the peer's "ack" and "setErrs" of obj to the stream's outbox */
void
exchange_settle(StreamInfo *stream, CommObj *obj)
{
	store_apply_acks(stream->name, obj->ack);
	store_apply_errs(stream->name, obj->errs);
}

/*
 * A SET failed with a kid none of the stream's keys has: when the stream
 * takes its keys from a peer_jwks_uri and a refetch is (now) pending, the
 * SET is to be tried again later rather than refused (jwksreq.c).
 */
bool
exchange_key_pending(StreamInfo *stream, const SetFailure *f)
{
	return f->code == SETERR_INVALID_KEY && f->unknown_key &&
		stream->peer_jwks && jwksreq_unknown_kid(stream->name);
}

/* Verify every SET of the object; the key of each must be its jti */
IngestItem *
exchange_verify(StreamInfo *stream, CommObj *obj)
{
	IngestItem *items = palloc0(sizeof(IngestItem) * (list_length(obj->sets) + 1));
	SetRules	rules = streamcache_rules(stream);
	ListCell   *lc;
	int			i = 0;

	foreach(lc, obj->sets)
	{
		IngestItem *item = &items[i++];

		item->entry = lfirst(lc);
		if (stream->refuse_inbound)
		{
			item->valid = set_fail(&item->f, SETERR_ACCESS_DENIED,
								   STREAM_REFUSES_INBOUND);
			continue;
		}
		item->valid = set_verify(&rules, item->entry->token,
								 strlen(item->entry->token), &item->ps, &item->f);
		if (item->valid && strcmp(item->ps.jti, item->entry->key) != 0)
			item->valid = set_fail(&item->f, SETERR_INVALID_REQUEST,
								   "the key of this SET in \"sets\" is not its jti");
		if (!item->valid)
			item->key_pending = exchange_key_pending(stream, &item->f);
	}
	return items;
}

typedef struct StoreOneArgs
{
	StreamInfo *stream;
	IngestItem *item;
} StoreOneArgs;

static void
store_one(void *arg)
{
	StoreOneArgs *a = arg;

	store_insert_event(a->stream, &a->item->ps);
}

/*
 * Store one verified SET in a subtransaction of its own.  A failure with
 * an RFC 8935 code becomes a setErr; any other (a user trigger that
 * raises, say) leaves the SET unacknowledged, so that the peer resends it.
 */
static IngestOutcome
exchange_store_item(StreamInfo *stream, IngestItem *item, SetFailure *f)
{
	StoreOneArgs args = {stream, item};
	ErrorData  *edata;
	SetErr		code;
	IngestOutcome outcome;

	if (!item->valid)
	{
		*f = item->f;
		return item->key_pending ? INGEST_UNACKED : INGEST_SETERR;
	}
	if (xact_try(store_one, &args, &edata))
		return INGEST_ACK;

	/*
	 * A condition of the database (read-only, disk full) is not this SET's
	 * fault, and its neighbours would fail alike: it stops the whole call.
	 */
	if (sqlstate_is_transient(edata->sqlerrcode))
		ReThrowError(edata);

	code = seterr_from_sqlstate(edata->sqlerrcode);
	if (code != SETERR_NONE)
	{
		f->code = code;
		strlcpy(f->description, seterr_description(code, edata->message),
				sizeof(f->description));
		outcome = INGEST_SETERR;
	}
	else
	{
		ereport(WARNING,
				(errmsg("setstream: SET \"%s\" of stream \"%s\" was not stored: %s",
						setstream_log_escape(item->entry->key, 128),
						stream->name,
						setstream_log_escape(edata->message, 1024)),
				 errdetail("It is not acknowledged; the peer will send it again.")));
		outcome = INGEST_UNACKED;
	}
	FreeErrorData(edata);
	return outcome;
}

typedef struct StoreAllArgs
{
	StreamInfo *stream;
	IngestItem *items;
	int			n;
} StoreAllArgs;

static void
store_valid_items(void *arg)
{
	StoreAllArgs *a = arg;
	StreamInfo **streams = palloc(sizeof(StreamInfo *) * (a->n + 1));
	ParsedSet **sets = palloc(sizeof(ParsedSet *) * (a->n + 1));
	int			m = 0;

	for (int i = 0; i < a->n; i++)
	{
		if (!a->items[i].valid)
			continue;
		streams[m] = a->stream;
		sets[m++] = &a->items[i].ps;
	}
	store_insert_events(streams, sets, m);
}

/*
 * Store every valid SET of the object in one subtransaction.  False when
 * any of them failed; nothing is stored then, and the caller retries them
 * one by one.
 */
static bool
store_all(StreamInfo *stream, IngestItem *items, int n)
{
	StoreAllArgs args = {stream, items, n};

	return xact_try(store_valid_items, &args, NULL);
}

/*
 * Store the object's SETs, adding to the "ack" array and "setErrs" object.
 * All valid SETs go in together; only when that fails (a user trigger
 * raised, say) is each retried in a subtransaction of its own, so that one
 * SET never fails its neighbours.
 */
void
exchange_collect(StreamInfo *stream, CommObj *obj, IngestItem *items,
				 json_t *ack, json_t *set_errs)
{
	int			n = list_length(obj->sets);
	bool		together = n > 0 && store_all(stream, items, n);

	for (int i = 0; i < n; i++)
	{
		IngestItem *item = &items[i];
		SetFailure	f;
		json_t	   *e;
		IngestOutcome outcome;

		if (together)
		{
			outcome = item->valid ? INGEST_ACK :
				item->key_pending ? INGEST_UNACKED : INGEST_SETERR;
			f = item->f;
		}
		else
			outcome = exchange_store_item(stream, item, &f);

		switch (outcome)
		{
			case INGEST_ACK:
				stats_count_received(stream->name);
				json_array_append_new(ack, json_string(item->entry->key));
				break;
			case INGEST_SETERR:
				stats_count_rejected(stream->name, f.code);
				e = json_object();
				json_object_set_new(e, "err", json_string(seterr_name(f.code)));
				json_object_set_new(e, "description", json_string(f.description));
				json_object_set_new(set_errs, item->entry->key, e);
				break;
			case INGEST_UNACKED:
				break;
		}
	}
}

/*
 * A taken SET into the "sets" object.  Text from a UTF-8 database is valid
 * UTF-8 (PostgreSQL checks every value it stores), so jansson's check of
 * each token, a kilobyte or more, is skipped there.
 */
static void
add_taken(json_t *sets, OutSet *o)
{
	if (GetDatabaseEncoding() == PG_UTF8)
		json_object_set_new_nocheck(sets, o->jti,
									json_stringn_nocheck(o->token,
														 strlen(o->token)));
	else
		json_object_set_new(sets, o->jti, json_string(o->token));
}

/*
 * Take up to max_events (all due, up to setstream.max_poll_events, when
 * negative) due SETs as a "sets" object.  While the stream is paused or
 * disabled only its SSF stream-updated SETs are due (the store's
 * RELEASE_CONDITION, issue 13): the others are held, or failed.
 */
json_t *
exchange_take(StreamInfo *stream, int max_events, bool *more)
{
	json_t	   *sets = json_object();
	int			limit = setstream_max_poll_events;
	List	   *taken;
	ListCell   *lc;

	*more = false;
	if (max_events >= 0 && max_events < limit)
		limit = max_events;
	if (limit == 0)
	{
		*more = store_any_due(stream->name);
		return sets;
	}
	taken = store_take_due(stream->name, limit, 0, more);
	foreach(lc, taken)
		add_taken(sets, lfirst(lc));
	return sets;
}

/*
 * Apply a Communication Object; returns the response object.  items are
 * the verification results of its SETs, or NULL to verify here.
 */
json_t *
exchange_ingest(StreamInfo *stream, CommObj *obj, IngestItem *items)
{
	json_t	   *ack = json_array();
	json_t	   *set_errs = json_object();
	json_t	   *response = json_object();
	json_t	   *sets;
	bool		more;

	if (items == NULL)
		items = exchange_verify(stream, obj);
	exchange_settle(stream, obj);
	exchange_collect(stream, obj, items, ack, set_errs);

	json_object_set_new(response, "ack", ack);
	json_object_set_new(response, "setErrs", set_errs);
	sets = exchange_take(stream, obj->max_events, &more);
	if (json_object_size(sets) > 0)
		json_object_set_new(response, "sets", sets);
	return response;
}

/* Apply an RFC 8936 poll request; returns {"sets", "moreAvailable"} */
json_t *
exchange_poll(StreamInfo *stream, CommObj *req, bool *more)
{
	json_t	   *response = json_object();

	exchange_settle(stream, req);
	json_object_set_new(response, "sets",
						exchange_take(stream, req->max_events, more));
	json_object_set_new(response, "moreAvailable", json_boolean(*more));
	return response;
}
