/*-------------------------------------------------------------------------
 *
 * exchange.c
 *	  Protocol operations on a stream inside the caller's transaction,
 *	  shared by the SQL API (sqlapi.c) and the listener (routes.c):
 *
 *	  - exchange_ingest: a pushpull Communication Object: apply the peer's
 *	    ack and setErrs to the outbox, verify and store each SET in a
 *	    subtransaction of its own (a bad SET, or one whose user trigger
 *	    raises, does not fail its neighbours), and hand out due SETs;
 *	  - exchange_poll: an RFC 8936 poll: ack and setErrs first, then up to
 *	    maxEvents due SETs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "exchange.h"
#include "stats.h"
#include "store.h"

static void
verify_and_store(StreamInfo *stream, SetEntry *entry)
{
	ParsedSet	ps;
	SetFailure	f;

	if (!set_verify(stream, entry->token, strlen(entry->token), &ps, &f))
		seterr_raise(f.code, f.description);
	if (strcmp(ps.jti, entry->key) != 0)
		seterr_raise(SETERR_INVALID_REQUEST,
					 "the key of this SET in \"sets\" is not its jti");
	store_insert_event(stream, &ps);
}

/* Strip the "code: " prefix that seterr_raise put before a description */
const char *
seterr_description(SetErr code, const char *message)
{
	size_t		n = strlen(seterr_name(code));

	if (strncmp(message, seterr_name(code), n) == 0 && message[n] == ':')
		return message + n + 2;
	return message;
}

/*
 * Verify and store one SET in a subtransaction of its own, so that a SET
 * that fails (or whose user trigger raises) leaves its neighbours alone.
 */
IngestOutcome
exchange_ingest_set(StreamInfo *stream, SetEntry *entry, SetFailure *f)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile IngestOutcome outcome = INGEST_ACK;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		verify_and_store(stream, entry);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		SetErr		code;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;

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
					(errmsg("setstream: SET \"%.128s\" of stream \"%s\" was not stored: %s",
							entry->key, stream->name, edata->message),
					 errdetail("It is not acknowledged; the peer will send it again.")));
			outcome = INGEST_UNACKED;
		}
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return outcome;
}

/*
 * Take up to max_events (all due, up to setstream.max_poll_events, when
 * negative) due SETs as a "sets" object; none while the stream is paused.
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
	if (stream->status == 'p')
		return sets;
	if (limit == 0)
	{
		*more = store_any_due(stream->name);
		return sets;
	}
	taken = store_take_due(stream->name, limit, more);
	foreach(lc, taken)
	{
		OutSet	   *o = lfirst(lc);

		json_object_set_new(sets, o->jti, json_string(o->token));
	}
	return sets;
}

/* Apply a Communication Object; returns the response object */
json_t *
exchange_ingest(StreamInfo *stream, CommObj *obj)
{
	json_t	   *ack = json_array();
	json_t	   *set_errs = json_object();
	json_t	   *response = json_object();
	json_t	   *sets;
	ListCell   *lc;
	bool		more;

	store_apply_acks(stream->name, obj->ack);
	store_apply_errs(stream->name, obj->errs);

	foreach(lc, obj->sets)
	{
		SetEntry   *entry = lfirst(lc);
		SetFailure	f;
		json_t	   *e;

		switch (exchange_ingest_set(stream, entry, &f))
		{
			case INGEST_ACK:
				stats_count_received(stream->name);
				json_array_append_new(ack, json_string(entry->key));
				break;
			case INGEST_SETERR:
				stats_count_rejected(stream->name, f.code);
				e = json_object();
				json_object_set_new(e, "err", json_string(seterr_name(f.code)));
				json_object_set_new(e, "description", json_string(f.description));
				json_object_set_new(set_errs, entry->key, e);
				break;
			case INGEST_UNACKED:
				break;
		}
	}

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

	store_apply_acks(stream->name, req->ack);
	store_apply_errs(stream->name, req->errs);
	json_object_set_new(response, "sets",
						exchange_take(stream, req->max_events, more));
	json_object_set_new(response, "moreAvailable", json_boolean(*more));
	return response;
}
