/*-------------------------------------------------------------------------
 *
 * unreachable.c
 *	  Symbols the fuzzed files reference on paths that need the database,
 *	  a transaction or shared memory (route_execute, xact_try,
 *	  a stream missing from the cache).  The targets stop before those
 *	  paths, as the listener's preparation step does; reaching one of these
 *	  is a harness bug, so each aborts with its name.
 *
 *-------------------------------------------------------------------------
 */
#include "shim.h"

#include <stdio.h>
#include <stdlib.h>

#include "utils/jsonb.h"

#include "server/conn.h"
#include "server/metrics.h"
#include "store/store.h"
#include "store/streamcache.h"
#include "store/xact.h"

static void
unreachable(const char *name)
{
	fprintf(stderr, "fuzz shim: %s needs the database and must not be reached\n",
			name);
	abort();
}

#define UNREACHABLE(name) unreachable(#name)

bool
store_insert_event(const StreamInfo *stream, const ParsedSet *ps)
{
	UNREACHABLE(store_insert_event);
	return false;
}

void
store_insert_events(StreamInfo **streams, ParsedSet **sets, int n)
{
	UNREACHABLE(store_insert_events);
}

void
store_apply_acks(const char *stream, List *jtis)
{
	UNREACHABLE(store_apply_acks);
}

void
store_apply_errs(const char *stream, List *errs)
{
	UNREACHABLE(store_apply_errs);
}

List *
store_take_due(const char *stream, int limit, TimestampTz expire_before,
			   bool *more)
{
	UNREACHABLE(store_take_due);
	return NIL;
}

char *
store_jwks(void)
{
	UNREACHABLE(store_jwks);
	return NULL;
}

bool
store_any_due(const char *stream)
{
	UNREACHABLE(store_any_due);
	return false;
}

bool
store_generation_sum(int64 *sum)
{
	UNREACHABLE(store_generation_sum);
	return false;
}

uint64
store_recent_due(const char *stream, int64 since, int64 *count)
{
	UNREACHABLE(store_recent_due);
	return 0;
}

StreamInfo *
streamcache_get(const char *name, bool with_tokens, bool missing_ok)
{
	UNREACHABLE(streamcache_get);
	return NULL;
}

bool
xact_try(XactWork work, void *arg, ErrorData **error)
{
	UNREACHABLE(xact_try);
	return false;
}

/* Only route_execute (never run here) parks a poll */
void
poll_park(Conn *conn, const char *stream, int max_events,
		  const uint64 *generations)
{
	UNREACHABLE(poll_park);
}

/*
 * metrics.c (SQL) and counters.c (shared memory) are not linked into the
 * targets: there are no counters to bump, as without
 * shared_preload_libraries, and GET /metrics answers as it does with no
 * setstream.metrics_token configured (404).
 */
MetricsShared *
metrics_counters(void)
{
	return NULL;
}

void
metrics_count_request(int route, int status, TimestampTz started)
{
	UNREACHABLE(metrics_count_request);
}

void
metrics_count_ws_session(int delta)
{
	UNREACHABLE(metrics_count_ws_session);
}

int
metrics_check_request(struct Conn *conn)
{
	http_respond_error(conn, 404, NULL, "no such endpoint", NULL);
	return PREP_ANSWERED;
}

void
metrics_respond(struct Conn *conn)
{
	UNREACHABLE(metrics_respond);
}

/* no shared memory in the targets: never a pending refetch (jwksreq.c) */
bool
jwksreq_unknown_kid(const char *stream)
{
	return false;
}

List *
store_receiver_tokens(void)
{
	UNREACHABLE(store_receiver_tokens);
	return NIL;
}

char *
store_receiver_stream_status(const char *stream, const char *receiver)
{
	UNREACHABLE(store_receiver_stream_status);
	return NULL;
}

void
store_set_stream_status(const char *stream, const char *status)
{
	UNREACHABLE(store_set_stream_status);
}

char *
store_ssf_create_stream(const SsfNewStream *n)
{
	UNREACHABLE(store_ssf_create_stream);
	return NULL;
}

char *
store_ssf_stream_config(const char *stream, const char *receiver,
						const char *public_url)
{
	UNREACHABLE(store_ssf_stream_config);
	return NULL;
}

char *
store_ssf_receiver_streams(const char *receiver, const char *public_url)
{
	UNREACHABLE(store_ssf_receiver_streams);
	return NULL;
}

bool
store_ssf_delete_stream(const char *stream, const char *receiver)
{
	UNREACHABLE(store_ssf_delete_stream);
	return false;
}

char *
store_ssf_update_stream(const SsfStreamUpdate *u)
{
	UNREACHABLE(store_ssf_update_stream);
	return NULL;
}

void
store_set_subject(const char *stream, const char *subject, bool included,
				  bool verified, bool keep_removed)
{
	UNREACHABLE(store_set_subject);
}

/* issue 13: SSF status semantics */
void
store_receiver_active(const char *receiver, const char *stream)
{
	UNREACHABLE(store_receiver_active);
}

bool
store_ssf_verify(const char *stream, const char *state, bool receiver_asked,
				 int min_interval, int *retry_after)
{
	UNREACHABLE(store_ssf_verify);
	return false;
}

bool
store_schema_is_0_4(void)
{
	UNREACHABLE(store_schema_is_0_4);
	return false;
}

/* jsonread.c builds jsonb only in a UTF-8 database: backend.c has none */
JsonbValue *
pushJsonbValue(JsonbParseState **pstate, JsonbIteratorToken seq,
			   JsonbValue *jbval)
{
	UNREACHABLE(pushJsonbValue);
	return NULL;
}

Jsonb *
JsonbValueToJsonb(JsonbValue *val)
{
	UNREACHABLE(JsonbValueToJsonb);
	return NULL;
}

Datum
numeric_in(PG_FUNCTION_ARGS)
{
	UNREACHABLE(numeric_in);
	return (Datum) 0;
}

Datum
DirectFunctionCall3Coll(PGFunction func, Oid collation, Datum arg1,
						Datum arg2, Datum arg3)
{
	UNREACHABLE(DirectFunctionCall3Coll);
	return (Datum) 0;
}

struct varlena *
pg_detoast_datum(struct varlena *datum)
{
	UNREACHABLE(pg_detoast_datum);
	return NULL;
}
