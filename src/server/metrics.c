/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  Prometheus metrics of setstream: GET /metrics on the listener (text
 *	  exposition format 0.0.4) and the same samples from SQL,
 *	  setstream.metrics() (name, labels, value).
 *
 *	  Where each figure comes from:
 *	  - per stream, SETs received and rejected by RFC 8935 code: the
 *	    counters of stats.c (setstream.stream_counters());
 *	  - per stream, SETs emitted, delivered, acked, failed: counters in
 *	    shared memory (shmem/counters.c), counted by store.c's outbox statements
 *	    when the transaction that made the change commits (a subtransaction
 *	    abort drops its counts), in whichever process made it (a backend's
 *	    emit() or poll(), the listener, the sender);
 *	  - per stream, the outbox backlog (neither acked nor failed) and the
 *	    age of its oldest due SET: read from setstream.outbox at scrape
 *	    time (outbox_due_idx);
 *	  - per listener: connections accepted, requests by route and status,
 *	    request durations by route, WebSocket sessions (opened; open now,
 *	    per listener process, zeroed when it starts), from
 *	    shmem/counters.c; open connections and long polls waiting from
 *	    wakeup.c;
 *	  - the emit-to-delivery latency: from an outbox row's created_at (the
 *	    emitting transaction's start) to the commit that first delivered
 *	    it (a poll or WebSocket response taking it for the first time, or a
 *	    push the receiver acknowledged).
 *
 *	  Access: GET /metrics answers only a request that carries
 *	  "Authorization: Bearer <token>", the token being the content of the
 *	  file setstream.metrics_token_file names (read at each request,
 *	  surrounding white space ignored; compared in constant time; a failure
 *	  counts against the address like a stream token's).  A file, not the
 *	  setting's value: PostgreSQL logs the new value of every setting a
 *	  reload changes, and the token must never reach the log.  With no file
 *	  configured, /metrics does not exist (404); with a file that cannot be
 *	  read or is empty, it answers 503 and logs why (never the content).
 *	  The token is a secret a superuser configured, so it sees every
 *	  stream.  setstream.metrics() shows the streams on which the caller
 *	  holds the read right; the listener-wide figures name no stream and
 *	  are shown to every caller.  At most setstream.metrics_max_streams
 *	  streams are shown (by name); setstream_metrics_streams_omitted counts
 *	  the rest.
 *
 *	  Without shared_preload_libraries no counter exists: the samples that
 *	  come from the tables are still there, the counters read zero.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "base/pg_builtins.h"

#include <ctype.h>
#include <math.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#define json_object pg_builtin_json_object
#include "utils/json.h"
#undef json_object
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "server/auth/auth.h"
#include "server/conn.h"
#include "server/metrics.h"
#include "shmem/counters.h"
#include "sql/privileges.h"
#include "setstream.h"
#include "shmem/stats.h"
#include "shmem/wakeup.h"

#define NCODES ((int) SETERR_INVALID_STATE + 1)

/* GUCs */
static char *metrics_token_file = NULL;
static int	metrics_max_streams = 100;

PG_FUNCTION_INFO_V1(setstream_metrics);

/* From _PG_init: the GUCs; the counters (shmem/counters.c) */
void
metrics_init(void)
{
	DefineCustomStringVariable("setstream.metrics_token_file",
							   "File holding the bearer token that GET /metrics on the listener requires; empty: no /metrics.",
							   NULL, &metrics_token_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("setstream.metrics_max_streams",
							"Most streams whose samples GET /metrics and setstream.metrics() show.",
							NULL, &metrics_max_streams, 100, 1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	counters_init();
}

/* ------------------------------------------------------------- collection */

typedef enum Family
{
	F_RECEIVED, F_REJECTED, F_EMITTED, F_DELIVERED, F_ACKED, F_FAILED,
	F_BACKLOG, F_OLDEST_DUE, F_OMITTED,
	F_LISTENERS, F_CONNECTIONS, F_OPEN_CONNECTIONS, F_REQUESTS,
	F_WS_SESSIONS, F_WS_OPEN, F_LONG_POLLS,
	F_DURATION, F_LATENCY, NFAMILIES
} Family;

typedef struct FamilyInfo
{
	const char *name;
	const char *type;
	const char *help;
} FamilyInfo;

static const FamilyInfo families[NFAMILIES] = {
	{"setstream_sets_received_total", "counter",
	"SETs received and stored (duplicates included), counted at commit."},
	{"setstream_sets_rejected_total", "counter",
	"SETs rejected, by RFC 8935 error code."},
	{"setstream_sets_emitted_total", "counter",
	"SETs emitted into the outbox, counted at commit."},
	{"setstream_sets_delivered_total", "counter",
	"SETs delivered for the first time (poll, WebSocket, acknowledged push)."},
	{"setstream_sets_acked_total", "counter",
	"Emitted SETs acknowledged by the receiver."},
	{"setstream_sets_failed_total", "counter",
	"Emitted SETs failed (setErrs, a push refused, undeliverable)."},
	{"setstream_outbox_backlog", "gauge",
	"Emitted SETs neither acknowledged nor failed."},
	{"setstream_outbox_oldest_due_age_seconds", "gauge",
	"Age of the oldest SET due for delivery now (0: none due)."},
	{"setstream_metrics_streams_omitted", "gauge",
	"Streams not shown because of setstream.metrics_max_streams."},
	{"setstream_listeners", "gauge",
	"Listener processes running."},
	{"setstream_listener_connections_total", "counter",
	"Client connections accepted by the listener."},
	{"setstream_listener_open_connections", "gauge",
	"Client connections open now."},
	{"setstream_listener_requests_total", "counter",
	"Requests answered by the listener, by route and HTTP status."},
	{"setstream_listener_websocket_sessions_total", "counter",
	"pushpull WebSocket sessions opened."},
	{"setstream_listener_websocket_sessions", "gauge",
	"pushpull WebSocket sessions open now."},
	{"setstream_listener_long_polls_waiting", "gauge",
	"RFC 8936 long polls waiting now."},
	{"setstream_listener_request_duration_seconds", "histogram",
	"Time from a request's first byte to its response, by route."},
	{"setstream_delivery_latency_seconds", "histogram",
	"Time from an emitted SET's created_at to the commit of its first delivery."},
};

#define MAX_LABELS 3

typedef struct Sample
{
	Family		family;
	const char *suffix;			/* "", "_bucket", "_sum", "_count" */
	int			nlabels;
	const char *key[MAX_LABELS];
	const char *value[MAX_LABELS];
	double		v;
} Sample;

static List *
add_sample(List *samples, Family f, const char *suffix, double v, int nlabels,...)
{
	Sample	   *s = palloc0(sizeof(Sample));
	va_list		ap;

	s->family = f;
	s->suffix = suffix;
	s->v = v;
	s->nlabels = nlabels;
	va_start(ap, nlabels);
	for (int i = 0; i < nlabels; i++)
	{
		s->key[i] = va_arg(ap, const char *);
		s->value[i] = va_arg(ap, const char *);
	}
	va_end(ap);
	return lappend(samples, s);
}

static char *
bound_text(double b)
{
	return psprintf("%g", b);
}

static List *
add_histogram(List *samples, Family f, ShmHist *h, const double *bounds,
			  int nbounds, const char *route)
{
	uint64		cum = 0;
	int			nl = route ? 1 : 0;

	for (int i = 0; i <= nbounds; i++)
	{
		const char *le = i < nbounds ? bound_text(bounds[i]) : "+Inf";

		cum += h ? pg_atomic_read_u64(&h->bucket[i]) : 0;
		if (route)
			samples = add_sample(samples, f, "_bucket", (double) cum, 2,
								 "route", route, "le", le);
		else
			samples = add_sample(samples, f, "_bucket", (double) cum, 1, "le", le);
	}
	samples = add_sample(samples, f, "_sum",
						 h ? (double) pg_atomic_read_u64(&h->sum_us) / 1e6 : 0,
						 nl, "route", route);
	samples = add_sample(samples, f, "_count",
						 h ? (double) pg_atomic_read_u64(&h->count) : 0,
						 nl, "route", route);
	return samples;
}

static char *stream_query = NULL;

/*
 * Per stream: received, rejected by code, backlog, oldest due age, and how
 * many streams there are in all.  The streams are limited first, so that a
 * scrape reads the outbox (by outbox_due_idx) of the shown streams only.
 */
static const char *
get_stream_query(void)
{
	StringInfoData q;

	if (stream_query != NULL)
		return stream_query;
	initStringInfo(&q);
	appendStringInfoString(&q,
						   "SELECT s.name, COALESCE(c.received, 0)::pg_catalog.int8,"
						   " b.backlog, COALESCE(b.oldest_due_age, 0), s.total");
	for (int c = SETERR_INVALID_REQUEST; c < NCODES; c++)
		appendStringInfo(&q,
						 ", COALESCE((c.rejected OPERATOR(pg_catalog.->>) '%s')::pg_catalog.int8, 0)",
						 seterr_name((SetErr) c));
	appendStringInfoString(&q,
						   " FROM (SELECT st.name, pg_catalog.count(*) OVER () AS total"
						   " FROM setstream.streams st"
						   " WHERE $1 OR st.name OPERATOR(pg_catalog.=) ANY ($4)"
						   " ORDER BY st.name LIMIT $2) s"
						   " LEFT JOIN setstream.stream_counters() c"
						   " ON c.stream OPERATOR(pg_catalog.=) s.name"
						   " CROSS JOIN LATERAL (SELECT pg_catalog.count(*) AS backlog,"
						   " pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-)"
						   " pg_catalog.min(o.created_at) FILTER (WHERE"
						   " (o.state OPERATOR(pg_catalog.=) 'pending'"
						   " OR o.delivered_at OPERATOR(pg_catalog.<=) $3)"
						   " AND (o.next_attempt_at IS NULL"
						   " OR o.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now())))"
						   " AS oldest_due_age"
						   " FROM setstream.outbox o"
						   " WHERE o.stream OPERATOR(pg_catalog.=) s.name"
						   " AND o.acked_at IS NULL AND o.failed_at IS NULL) b"
						   " ORDER BY s.name");
	stream_query = MemoryContextStrdup(TopMemoryContext, q.data);
	pfree(q.data);
	return stream_query;
}

static char *
int_text(int64 v)
{
	return psprintf(INT64_FORMAT, v);
}

/*
 * The streams the caller holds the read right on, as a text[] (all: it
 * sees every stream).
 */
static Datum
readable_streams(bool *all)
{
	List	   *visible = privileges_visible_streams(all);
	Datum	   *elems = palloc(sizeof(Datum) * (list_length(visible) + 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, visible)
		if (privileges_held(lfirst(lc), "read"))
			elems[n++] = CStringGetTextDatum(lfirst(lc));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/*
 * Run the stream query as the extension owner, in a security-restricted
 * operation with search_path pinned: the caller's right to read a stream
 * was decided before (readable_streams), and a role may call
 * setstream.metrics() without SELECT on the tables.  Every name in the
 * query is schema-qualified.  On error the transaction's abort restores
 * the user.
 */
static void
run_stream_query(Datum *args, Oid *types)
{
	Oid			owner;
	Oid			save_userid;
	int			save_sec;
	int			nestlevel;
	bool		isnull;

	if (SPI_execute("SELECT extowner FROM pg_catalog.pg_extension"
					" WHERE extname OPERATOR(pg_catalog.=) 'setstream'",
					true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "extension setstream has no owner");
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	if (SPI_execute_with_args(get_stream_query(), 4, types, args, NULL,
							  true, 0) != SPI_OK_SELECT)
		elog(ERROR, "metrics: the stream query failed");
	AtEOXact_GUC(true, nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec);
}

/* Every sample, in family order; all_streams: no read right needed */
static List *
collect(bool all_streams)
{
	List	   *samples = NIL;
	List	   *per[NFAMILIES] = {NIL};
	Datum		args[4];
	Oid			types[4] = {BOOLOID, INT4OID, TIMESTAMPTZOID, TEXTARRAYOID};
	int			omitted = 0;
	int			connections = 0,
				long_polls = 0,
				listeners = 0;
	MemoryContext cxt = CurrentMemoryContext;
	MetricsShared *shared = metrics_counters();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	args[3] = all_streams ? PointerGetDatum(construct_empty_array(TEXTOID)) :
		readable_streams(&all_streams);
	args[0] = BoolGetDatum(all_streams);
	args[1] = Int32GetDatum(metrics_max_streams);
	args[2] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp() -
								  (TimestampTz) setstream_redelivery_interval_ms * 1000);

	run_stream_query(args, types);
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		HeapTuple	tup = SPI_tuptable->vals[row];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(cxt);
		char	   *name = SPI_getvalue(tup, desc, 1);
		StreamMetrics *e = shared ? metrics_stream_entry(name, false) : NULL;
		int64		total = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));

		if (row == 0 && total > (int64) SPI_processed)
			omitted = (int) (total - SPI_processed);
		per[F_RECEIVED] = add_sample(per[F_RECEIVED], F_RECEIVED, "",
									 (double) DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull)),
									 1, "stream", name);
		for (int c = SETERR_INVALID_REQUEST; c < NCODES; c++)
			per[F_REJECTED] = add_sample(per[F_REJECTED], F_REJECTED, "",
										 (double) DatumGetInt64(SPI_getbinval(tup, desc, 5 + c, &isnull)),
										 2, "stream", name, "err", seterr_name((SetErr) c));
		for (int k = 0; k < METRIC_NOUTBOX; k++)
			per[F_EMITTED + k] = add_sample(per[F_EMITTED + k], F_EMITTED + k, "",
											e ? (double) pg_atomic_read_u64(&e->n[k]) : 0,
											1, "stream", name);
		per[F_BACKLOG] = add_sample(per[F_BACKLOG], F_BACKLOG, "",
									(double) DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull)),
									1, "stream", name);
		per[F_OLDEST_DUE] = add_sample(per[F_OLDEST_DUE], F_OLDEST_DUE, "",
									   DatumGetFloat8(SPI_getbinval(tup, desc, 4, &isnull)),
									   1, "stream", name);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();

	per[F_OMITTED] = add_sample(NIL, F_OMITTED, "", omitted, 0);
	wakeup_listener_totals(&connections, &long_polls, &listeners);
	per[F_LISTENERS] = add_sample(NIL, F_LISTENERS, "", listeners, 0);
	per[F_CONNECTIONS] = add_sample(NIL, F_CONNECTIONS, "",
									shared ? (double) pg_atomic_read_u64(&shared->connections) : 0, 0);
	per[F_OPEN_CONNECTIONS] = add_sample(NIL, F_OPEN_CONNECTIONS, "", connections, 0);
	for (int r = 0; r < NROUTES; r++)
		for (int s = 0; s < NSTATUS; s++)
		{
			uint64		n = shared ? pg_atomic_read_u64(&shared->requests[r][s]) : 0;

			/* every route's 200 is always shown; others once they happen */
			if (n == 0 && statuses[s] != 200)
				continue;
			per[F_REQUESTS] = add_sample(per[F_REQUESTS], F_REQUESTS, "", (double) n, 2,
										 "route", route_names[r], "status",
										 s == 0 ? "other" : int_text(statuses[s]));
		}
	per[F_WS_SESSIONS] = add_sample(NIL, F_WS_SESSIONS, "",
									shared ? (double) pg_atomic_read_u64(&shared->ws_sessions) : 0, 0);
	{
		uint64		open = 0;

		for (int i = 0; shared && i < MAX_LISTENERS; i++)
			open += pg_atomic_read_u32(&shared->ws_open[i]);
		per[F_WS_OPEN] = add_sample(NIL, F_WS_OPEN, "", (double) open, 0);
	}
	per[F_LONG_POLLS] = add_sample(NIL, F_LONG_POLLS, "", long_polls, 0);
	for (int r = 0; r < NROUTES; r++)
		per[F_DURATION] = add_histogram(per[F_DURATION], F_DURATION,
										shared ? &shared->duration[r] : NULL,
										duration_bounds, lengthof(duration_bounds),
										route_names[r]);
	per[F_LATENCY] = add_histogram(NIL, F_LATENCY, shared ? &shared->latency : NULL,
								   latency_bounds, lengthof(latency_bounds), NULL);

	for (int f = 0; f < NFAMILIES; f++)
		samples = list_concat(samples, per[f]);
	return samples;
}

/* --------------------------------------------------------------- output */

static void
append_value(StringInfo out, double v)
{
	if (isinf(v))
		appendStringInfoString(out, v > 0 ? "+Inf" : "-Inf");
	else if (v == floor(v) && fabs(v) < 1e15)
		appendStringInfo(out, "%.0f", v);
	else
		appendStringInfo(out, "%.9g", v);
}

/* A label value: backslash, double quote and line feed escaped */
static void
append_label_value(StringInfo out, const char *s)
{
	for (; *s; s++)
	{
		if (*s == '\\' || *s == '"')
			appendStringInfoChar(out, '\\');
		if (*s == '\n')
		{
			appendStringInfoString(out, "\\n");
			continue;
		}
		appendStringInfoChar(out, *s);
	}
}

static char *
exposition(List *samples)
{
	StringInfoData out;
	ListCell   *lc;
	int			last = -1;

	initStringInfo(&out);
	for (int f = 0; f < NFAMILIES; f++)
	{
		bool		any = false;

		foreach(lc, samples)
			if (((Sample *) lfirst(lc))->family == f)
				any = true;
		if (any)
			continue;
		/* a family with no sample still says what it is */
		appendStringInfo(&out, "# HELP %s %s\n# TYPE %s %s\n",
						 families[f].name, families[f].help,
						 families[f].name, families[f].type);
	}
	foreach(lc, samples)
	{
		Sample	   *s = lfirst(lc);
		const FamilyInfo *fi = &families[s->family];

		if ((int) s->family != last)
		{
			appendStringInfo(&out, "# HELP %s %s\n# TYPE %s %s\n",
							 fi->name, fi->help, fi->name, fi->type);
			last = s->family;
		}
		appendStringInfo(&out, "%s%s", fi->name, s->suffix);
		if (s->nlabels > 0)
		{
			appendStringInfoChar(&out, '{');
			for (int i = 0; i < s->nlabels; i++)
			{
				appendStringInfo(&out, "%s%s=\"", i ? "," : "", s->key[i]);
				append_label_value(&out, s->value[i]);
				appendStringInfoChar(&out, '"');
			}
			appendStringInfoChar(&out, '}');
		}
		appendStringInfoChar(&out, ' ');
		append_value(&out, s->v);
		appendStringInfoChar(&out, '\n');
	}
	return out.data;
}

/*
 * setstream.metrics(): one row per sample, name (with _bucket, _sum,
 * _count for histograms), labels (jsonb object), value.
 */
Datum
setstream_metrics(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *samples;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	samples = collect(false);
	foreach(lc, samples)
	{
		Sample	   *s = lfirst(lc);
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		StringInfoData labels;

		initStringInfo(&labels);
		appendStringInfoChar(&labels, '{');
		for (int i = 0; i < s->nlabels; i++)
		{
			if (i > 0)
				appendStringInfoString(&labels, ", ");
			escape_json(&labels, s->key[i]);
			appendStringInfoString(&labels, ": ");
			escape_json(&labels, s->value[i]);
		}
		appendStringInfoChar(&labels, '}');
		values[0] = CStringGetTextDatum(psprintf("%s%s", families[s->family].name,
												 s->suffix));
		values[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(labels.data));
		values[2] = Float8GetDatum(s->v);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* -------------------------------------------------------------- the route */

static const char *const metrics_challenge =
"WWW-Authenticate: Bearer realm=\"setstream-metrics\"\r\n";

/*
 * The SHA-256 of the token in setstream.metrics_token_file, without
 * surrounding white space; false (and a LOG line naming the file, never
 * its content) when it cannot be read or holds nothing.
 */
static bool
configured_token_hash(unsigned char *want)
{
	char		buf[1024];
	FILE	   *f = AllocateFile(metrics_token_file, "r");
	size_t		len;
	char	   *start = buf;

	if (f == NULL)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("setstream: could not open setstream.metrics_token_file \"%s\": %m",
						metrics_token_file)));
		return false;
	}
	len = fread(buf, 1, sizeof(buf) - 1, f);
	FreeFile(f);
	buf[len] = '\0';
	while (len > 0 && isspace((unsigned char) buf[len - 1]))
		buf[--len] = '\0';
	while (*start && isspace((unsigned char) *start))
		start++;
	if (*start == '\0')
	{
		ereport(LOG,
				(errmsg("setstream: setstream.metrics_token_file \"%s\" holds no token",
						metrics_token_file)));
		return false;
	}
	SHA256((const unsigned char *) start, strlen(start), want);
	explicit_bzero(buf, sizeof(buf));
	return true;
}

/* Does the request carry the metrics token?  Constant time in its bytes. */
static bool
token_matches(Conn *conn, const unsigned char *want)
{
	const char *auth = conn->http.req.authorization;
	unsigned char given[SHA256_DIGEST_LENGTH];

	if (auth == NULL || pg_strncasecmp(auth, "Bearer ", 7) != 0)
		return false;
	auth += 7;
	while (*auth == ' ')
		auth++;
	SHA256((const unsigned char *) auth, strlen(auth), given);
	return CRYPTO_memcmp(given, want, SHA256_DIGEST_LENGTH) == 0;
}

/*
 * GET /metrics, on its headers: 404 without a token file configured, 405
 * for another method, 429 for an address that failed too often, 503 when
 * the token file cannot be read, 401 without the token; PREP_EXECUTE when
 * it may be answered.
 */
int
metrics_check_request(Conn *conn)
{
	unsigned char want[SHA256_DIGEST_LENGTH];

	if (metrics_token_file == NULL || metrics_token_file[0] == '\0')
	{
		http_respond_error(conn, 404, NULL, "no such endpoint", NULL);
		return PREP_ANSWERED;
	}
	if (conn->http.req.method != HTTP_GET)
	{
		http_respond_error(conn, 405, NULL, "use GET", "Allow: GET\r\n");
		return PREP_ANSWERED;
	}
	if (auth_too_many_failures(conn))
		return PREP_ANSWERED;
	if (!configured_token_hash(want))
	{
		http_respond_error(conn, 503, NULL,
						   "the metrics token file cannot be read (see the server log)", NULL);
		return PREP_ANSWERED;
	}
	if (!token_matches(conn, want))
	{
		auth_record_failure(conn);
		http_respond_error(conn, 401, NULL, "the metrics token is required",
						   metrics_challenge);
		return PREP_ANSWERED;
	}
	return PREP_EXECUTE;
}

/* Inside the listener's transaction: every stream, the token sees all */
void
metrics_respond(Conn *conn)
{
	char	   *text = exposition(collect(true));

	http_respond(conn, 200, "text/plain; version=0.0.4; charset=utf-8",
				 text, strlen(text), "Cache-Control: no-store\r\n");
}
