/*-------------------------------------------------------------------------
 *
 * store.c
 *	  The only module that speaks SQL.  Each statement is prepared once per
 *	  backend and kept (SPI_keepplan); every value is a parameter.  Results
 *	  are copied into the caller's memory context before SPI_finish.
 *
 *	  setstream.key_secrets is readable by the extension owner only; the
 *	  statements that read or write it run with the owner's user id as a
 *	  security-restricted operation with search_path pinned to pg_catalog,
 *	  pg_temp (run_as_owner), restored at once afterwards and, on error, by
 *	  the transaction's abort.  Every operator, cast and function in every
 *	  statement is schema-qualified, so that no statement resolves anything
 *	  through the caller's search_path, whoever runs it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "base/pg_builtins.h"
#include "store/store.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "shmem/counters.h"

typedef struct StoreStmt
{
	const char *sql;
	int			nargs;
	Oid			argtypes[14];
	SPIPlanPtr	plan;
	bool		custom;			/* plan for the actual values every time */
} StoreStmt;

/*
 * SETs due for delivery.  "acked_at IS NULL AND failed_at IS NULL" repeats
 * the predicate of the partial index outbox_due_idx, so that plans find it:
 * the rows a stream has acked long ago must never be scanned.
 */
#define SSF_EVENT_VERIFICATION_URI \
	"https://schemas.openid.net/secevent/ssf/event-type/verification"

#define DUE_CONDITION \
	"acked_at IS NULL AND failed_at IS NULL AND " \
	"(state OPERATOR(pg_catalog.=) 'pending'" \
	" OR delivered_at OPERATOR(pg_catalog.<=) $2)"

/*
 * What a stream that is not enabled still delivers (issue 13): its SSF
 * stream-updated SETs, so that the receiver learns of a pause or a
 * disable before the hold begins.  Every other SET waits (paused) or has
 * failed (disabled).  $1 is the stream.
 */
#define RELEASE_CONDITION \
	"(EXISTS (SELECT 1 FROM setstream.streams g" \
	" WHERE g.name OPERATOR(pg_catalog.=) $1" \
	" AND g.status OPERATOR(pg_catalog.=) 'enabled')" \
	" OR event_types OPERATOR(pg_catalog.=)" \
	" '{https://schemas.openid.net/secevent/ssf/event-type/stream-updated}'::pg_catalog.text[])"

static StoreStmt stmt_get_stream = {
	"SELECT name, issuer, audience, peer_issuer, profile, allow_unsigned, status,"
	" client_auth, inbound OPERATOR(pg_catalog.=) 'refuse', peer_jwks_uri IS NOT NULL"
	" FROM setstream.streams WHERE name OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

/*
 * The same before 0.3.0 (an extension not updated yet): no column
 * "inbound" (a disabled stream refused inbound SETs then, which is what the
 * update keeps for it) and no peer_jwks_uri.
 */
static StoreStmt stmt_get_stream_0_2 = {
	"SELECT name, issuer, audience, peer_issuer, profile, allow_unsigned, status,"
	" client_auth, status OPERATOR(pg_catalog.=) 'disabled', false"
	" FROM setstream.streams WHERE name OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

static StoreStmt stmt_verify_keys = {
	"SELECT k.kid, k.kty, k.jwk OPERATOR(pg_catalog.->>) 'crv', k.alg,"
	" coalesce(s.jwk, k.jwk::pg_catalog.text)"
	" FROM setstream.keys k LEFT JOIN setstream.key_secrets s"
	" ON s.stream OPERATOR(pg_catalog.=) k.stream"
	" AND s.kid OPERATOR(pg_catalog.=) k.kid"
	" WHERE k.stream OPERATOR(pg_catalog.=) $1"
	" AND k.purpose OPERATOR(pg_catalog.=) 'verify' AND k.revoked_at IS NULL"
	" AND ($2 IS NULL OR k.kid OPERATOR(pg_catalog.=) $2)"
	" ORDER BY k.created_at LIMIT 100",
	2, {TEXTOID, TEXTOID}
};

static StoreStmt stmt_insert_event = {
	"INSERT INTO setstream.events (stream, jti, iss, aud, iat, txn, toe, subject,"
	" event_types, events, claims, header, token)"
	" VALUES ($1, $2, $3, $4, pg_catalog.to_timestamp($5), $6,"
	" pg_catalog.to_timestamp($7), $8::pg_catalog.jsonb,"
	" $9, $10::pg_catalog.jsonb, $11, $12, $13)"
	" ON CONFLICT (stream, iss, jti) DO NOTHING",
	13, {TEXTOID, TEXTOID, TEXTOID, TEXTARRAYOID, FLOAT8OID, TEXTOID, FLOAT8OID,
	TEXTOID, TEXTARRAYOID, TEXTOID, JSONBOID, JSONBOID, TEXTOID}
};

/*
 * Many SETs in one statement: one executor start, not one per row.  The
 * claims and header come as jsonb (jsonb_of); aud, sub_id and events are
 * taken from the claims.  event_types keep the SET's order: its events'
 * names, which are URIs without spaces, joined by spaces.
 */
static StoreStmt stmt_insert_events = {
	"INSERT INTO setstream.events (stream, jti, iss, aud, iat, txn, toe, subject,"
	" event_types, events, claims, header, token)"
	" SELECT r.stream, r.jti, r.iss,"
	" CASE WHEN pg_catalog.jsonb_typeof(r.claims OPERATOR(pg_catalog.->) 'aud')"
	" OPERATOR(pg_catalog.=) 'array'"
	" THEN ARRAY(SELECT e FROM pg_catalog.jsonb_array_elements_text("
	"r.claims OPERATOR(pg_catalog.->) 'aud') WITH ORDINALITY AS x (e, n) ORDER BY n)"
	" WHEN pg_catalog.jsonb_typeof(r.claims OPERATOR(pg_catalog.->) 'aud')"
	" OPERATOR(pg_catalog.=) 'string'"
	" THEN ARRAY[r.claims OPERATOR(pg_catalog.->>) 'aud'] END,"
	" pg_catalog.to_timestamp(r.iat), r.txn, pg_catalog.to_timestamp(r.toe),"
	" r.claims OPERATOR(pg_catalog.->) 'sub_id',"
	" pg_catalog.string_to_array(r.types, ' '), r.claims OPERATOR(pg_catalog.->) 'events',"
	" r.claims, r.header, r.token"
	" FROM (SELECT pg_catalog.unnest($1) AS stream, pg_catalog.unnest($2) AS jti,"
	" pg_catalog.unnest($3) AS iss, pg_catalog.unnest($4) AS iat,"
	" pg_catalog.unnest($5) AS txn, pg_catalog.unnest($6) AS toe,"
	" pg_catalog.unnest($7) AS types, pg_catalog.unnest($8) AS claims,"
	" pg_catalog.unnest($9) AS header, pg_catalog.unnest($10) AS token) AS r"
	" ON CONFLICT (stream, iss, jti) DO NOTHING",
	10, {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, FLOAT8ARRAYOID, TEXTARRAYOID,
		FLOAT8ARRAYOID, TEXTARRAYOID, JSONBARRAYOID, JSONBARRAYOID, TEXTARRAYOID}
};

static StoreStmt stmt_insert_key = {
	"INSERT INTO setstream.keys (stream, kid, purpose, kty, alg, jwk)"
	" VALUES ($1, $2, $3, $4, $5, $6::pg_catalog.jsonb) ON CONFLICT DO NOTHING",
	6, {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}
};

static StoreStmt stmt_insert_secret = {
	"INSERT INTO setstream.key_secrets (stream, kid, jwk) VALUES ($1, $2, $3)",
	3, {TEXTOID, TEXTOID, TEXTOID}
};

static StoreStmt stmt_sign_key = {
	"SELECT k.kid, k.alg, s.jwk FROM setstream.keys k"
	" JOIN setstream.key_secrets s ON s.stream OPERATOR(pg_catalog.=) k.stream"
	" AND s.kid OPERATOR(pg_catalog.=) k.kid"
	" WHERE k.stream OPERATOR(pg_catalog.=) $1"
	" AND k.purpose OPERATOR(pg_catalog.=) 'sign' AND k.revoked_at IS NULL"
	" ORDER BY k.created_at DESC LIMIT 1",
	1, {TEXTOID}
};

static StoreStmt stmt_insert_token = {
	"INSERT INTO setstream.tokens (stream, token_hash) VALUES ($1, $2)",
	2, {TEXTOID, BYTEAOID}
};

static StoreStmt stmt_token_hashes = {
	"SELECT token_hash FROM setstream.tokens"
	" WHERE stream OPERATOR(pg_catalog.=) $1 AND revoked_at IS NULL",
	1, {TEXTOID}
};

static StoreStmt stmt_insert_client_cert = {
	"INSERT INTO setstream.client_certs (stream, sha256, subject, not_after)"
	" VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
	4, {TEXTOID, BYTEAOID, TEXTOID, TIMESTAMPTZOID}
};

static StoreStmt stmt_cert_hashes = {
	"SELECT sha256 FROM setstream.client_certs WHERE stream OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

static StoreStmt stmt_insert_outbox = {
	"INSERT INTO setstream.outbox (stream, jti, event_types, claims, token)"
	" VALUES ($1, $2, ARRAY[$3], $4::pg_catalog.jsonb, $5)",
	5, {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}
};

/*
 * Many at once, seq in array order (emitbuf.c).  The arrays are unnested
 * in the select list of a subquery: its ProjectSet yields the elements in
 * order, one row at a time, and nothing between it and the insert
 * reorders rows.  (ROWS FROM in the FROM clause first copied every row
 * into a tuplestore, and needed a sort by ordinality on top: about a tenth
 * of emit_trigger's time.)
 */
static StoreStmt stmt_insert_outbox_rows = {
	"INSERT INTO setstream.outbox (stream, jti, event_types, claims, token)"
	" SELECT r.stream, r.jti, ARRAY[r.event_type], r.claims::pg_catalog.jsonb, r.token"
	" FROM (SELECT pg_catalog.unnest($1) AS stream, pg_catalog.unnest($2) AS jti,"
	" pg_catalog.unnest($3) AS event_type, pg_catalog.unnest($4) AS claims,"
	" pg_catalog.unnest($5) AS token) AS r",
	5, {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID}
};

/* Always an index scan on the outbox's key (jti, stream): see its comment */
static StoreStmt stmt_apply_acks = {
	"UPDATE setstream.outbox SET state = 'acked', acked_at = pg_catalog.now()"
	" WHERE stream OPERATOR(pg_catalog.=) $1 AND jti OPERATOR(pg_catalog.=) ANY ($2)"
	" AND state OPERATOR(pg_catalog.=) ANY ('{pending,delivered}')",
	2, {TEXTOID, TEXTARRAYOID}, NULL, true
};

static StoreStmt stmt_apply_errs = {
	"UPDATE setstream.outbox o SET state = 'failed', failed_at = pg_catalog.now(),"
	" err = e.err, description = e.description"
	" FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3),"
	" pg_catalog.unnest($4)) AS e (jti, err, description)"
	" WHERE o.stream OPERATOR(pg_catalog.=) $1 AND o.jti OPERATOR(pg_catalog.=) e.jti"
	" AND o.state OPERATOR(pg_catalog.=) ANY ('{pending,delivered}')",
	4, {TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID}, NULL, true
};

/*
 * The rows are locked by the subquery and updated by their ctid: a TID
 * scan, whatever the planner believes about the stream's history.  The
 * outer UPDATE names the stream too ("o.stream = $1"): with the outbox
 * distributed by stream (Citus), that is what routes the whole statement
 * to the stream's shard; a modification by ctid alone is refused there.
 */
static StoreStmt stmt_take_due = {
	"UPDATE setstream.outbox o SET state = 'delivered',"
	" attempts = o.attempts OPERATOR(pg_catalog.+) 1, delivered_at = pg_catalog.now()"
	" WHERE o.stream OPERATOR(pg_catalog.=) $1"
	" AND o.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT ctid FROM setstream.outbox"
	" WHERE stream OPERATOR(pg_catalog.=) $1 AND " DUE_CONDITION
	" AND " RELEASE_CONDITION
	" ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED))"
	" RETURNING o.seq, o.jti, o.token, o.attempts, o.created_at",
	3, {TEXTOID, TIMESTAMPTZOID, INT4OID}, NULL, true
};

static StoreStmt stmt_more_due = {
	"SELECT EXISTS (SELECT 1 FROM setstream.outbox"
	" WHERE stream OPERATOR(pg_catalog.=) $1 AND " DUE_CONDITION
	" AND " RELEASE_CONDITION
	" AND seq OPERATOR(pg_catalog.<>) ALL ($3))",
	3, {TEXTOID, TIMESTAMPTZOID, INT8ARRAYOID}, NULL, true
};

static StoreStmt stmt_any_due = {
	"SELECT EXISTS (SELECT 1 FROM setstream.outbox"
	" WHERE stream OPERATOR(pg_catalog.=) $1 AND " DUE_CONDITION
	" AND " RELEASE_CONDITION ")",
	2, {TEXTOID, TIMESTAMPTZOID}, NULL, true
};

static StoreStmt stmt_jwks = {
	"SELECT setstream.jwks()::pg_catalog.text",
	0, {InvalidOid}
};

static StoreStmt stmt_retire_keys = {
	"SELECT setstream._retire_keys($1)",
	1, {INT4OID}
};

static StoreStmt stmt_ext_owner = {
	"SELECT extowner FROM pg_catalog.pg_extension"
	" WHERE extname OPERATOR(pg_catalog.=) 'setstream'",
	0, {InvalidOid}
};

/*
 * Rights on streams (privileges.c): each stream with its owner and the
 * roles it was granted to.  Read as the extension owner (row-level security
 * would hide what the caller may not see, and that is what is decided).
 */
static StoreStmt stmt_stream_rights = {
	"SELECT s.name, s.owner::pg_catalog.oid, g.grantee, g.privilege"
	" FROM setstream.streams s LEFT JOIN setstream.stream_grants g"
	" ON g.stream OPERATOR(pg_catalog.=) s.name"
	" WHERE ($1 IS NULL OR s.name OPERATOR(pg_catalog.=) $1)"
	" ORDER BY s.name",			/* each stream's rows together */
	1, {TEXTOID}
};

static StoreStmt stmt_insert_grants = {
	"INSERT INTO setstream.stream_grants (stream, grantee, privilege, granted_by)"
	" SELECT $1, $2, p, $4 FROM pg_catalog.unnest($3) AS p"
	" ON CONFLICT DO NOTHING",
	4, {TEXTOID, OIDOID, TEXTARRAYOID, OIDOID}
};

static StoreStmt stmt_delete_grants = {
	"DELETE FROM setstream.stream_grants WHERE stream OPERATOR(pg_catalog.=) $1"
	" AND grantee OPERATOR(pg_catalog.=) $2"
	" AND privilege OPERATOR(pg_catalog.=) ANY ($3)",
	3, {TEXTOID, OIDOID, TEXTARRAYOID}
};

/* ---------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------
 */
static int
run(StoreStmt *st, Datum *values, const char *nulls, bool read_only)
{
	int			rc;

	if (st->plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(st->sql, st->nargs, st->argtypes,
											  st->custom ? CURSOR_OPT_CUSTOM_PLAN : 0);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s",
				 st->sql, SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		st->plan = plan;
	}
	rc = SPI_execute_plan(st->plan, values, nulls, read_only, 0);
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed for \"%s\": %s",
			 st->sql, SPI_result_code_string(rc));
	return rc;
}

static Datum
text_datum(const char *s)
{
	return CStringGetTextDatum(s);
}

static Datum
text_array_datum(List *strings)
{
	int			n = list_length(strings);
	Datum	   *elems = palloc(sizeof(Datum) * (n > 0 ? n : 1));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, strings)
		elems[i++] = CStringGetTextDatum((char *) lfirst(lc));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/* Column "col" (1-based) of row "row" as a string in "cxt", or NULL */
static char *
get_text(int row, int col, MemoryContext cxt)
{
	char	   *v = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);

	return v ? MemoryContextStrdup(cxt, v) : NULL;
}

static Datum
get_datum(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col,
						 isnull);
}

/* Fills "row" (zeroed, in "cxt") from row "i" of the result, strings in "cxt" */
typedef void (*RowReader) (void *row, int i, MemoryContext cxt);

/*
 * Every row of the last result as a list in "cxt" of "size"-byte structs
 * that "read" fills
 */
static List *
read_rows(Size size, RowReader read, MemoryContext cxt)
{
	List	   *out = NIL;

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		void	   *row = MemoryContextAllocZero(cxt, size);
		MemoryContext old;

		read(row, (int) i, cxt);
		old = MemoryContextSwitchTo(cxt);
		out = lappend(out, row);
		MemoryContextSwitchTo(old);
	}
	return out;
}

/* A 32-byte hash as a bytea Datum */
static Datum
hash_datum(const uint8 *hash)
{
	bytea	   *b = palloc(VARHDRSZ + 32);

	SET_VARSIZE(b, VARHDRSZ + 32);
	memcpy(VARDATA(b), hash, 32);
	return PointerGetDatum(b);
}

/*
 * Pin search_path to pg_catalog, pg_temp (pg_temp last: no function,
 * operator or type of the session's temporary schema can be resolved),
 * through a GUC nest level that pop_pinned_path pops at once afterwards
 * and, on error, the (sub)transaction's abort does.
 */
static int
push_pinned_path(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	return nestlevel;
}

static void
pop_pinned_path(int nestlevel)
{
	AtEOXact_GUC(false, nestlevel);
}

/* Run "st" with search_path pinned */
static int
run_pinned(StoreStmt *st, Datum *values, const char *nulls, bool read_only)
{
	int			nestlevel = push_pinned_path();
	int			rc;

	rc = run(st, values, nulls, read_only);
	pop_pinned_path(nestlevel);
	return rc;
}

/* The role that owns the extension, cached per extension OID */
static Oid
extension_owner(void)
{
	static Oid	cached_ext = InvalidOid;
	static Oid	cached_owner = InvalidOid;
	Oid			ext = get_extension_oid("setstream", false);
	bool		isnull;

	if (ext != cached_ext)
	{
		run_pinned(&stmt_ext_owner, NULL, NULL, true);
		if (SPI_processed != 1)
			elog(ERROR, "extension setstream has no owner");
		cached_owner = DatumGetObjectId(get_datum(0, 1, &isnull));
		cached_ext = ext;
	}
	return cached_owner;
}

/*
 * Become the extension owner for statements that touch key_secrets or
 * stream rights: a security-restricted operation (no SET ROLE, no
 * temporary objects, no deferred work left behind) with the search_path
 * pinned, so that nothing of the caller's (schemas, pg_temp, operators,
 * types) can run with the owner's rights.  Every name in these statements
 * is schema-qualified too.  leave_owner restores the caller; on error the
 * transaction's abort does.
 */
typedef struct OwnerSwitch
{
	Oid			save_userid;
	int			save_sec;
	int			nestlevel;
} OwnerSwitch;

static void
enter_owner(OwnerSwitch *sw)
{
	Oid			owner = extension_owner();

	GetUserIdAndSecContext(&sw->save_userid, &sw->save_sec);
	SetUserIdAndSecContext(owner, sw->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	sw->nestlevel = push_pinned_path();
}

static void
leave_owner(OwnerSwitch *sw)
{
	pop_pinned_path(sw->nestlevel);
	SetUserIdAndSecContext(sw->save_userid, sw->save_sec);
}

static int
run_as_owner(StoreStmt *st, Datum *values, const char *nulls, bool read_only)
{
	OwnerSwitch sw;
	int			rc;

	enter_owner(&sw);
	rc = run(st, values, nulls, read_only);
	leave_owner(&sw);
	return rc;
}

/*
 * Delivered SETs not acknowledged by this time are due again: now() less
 * setstream.redelivery_interval, computed here and passed as a parameter
 * (no arithmetic operator of the SQL text can be resolved to another one).
 */
static Datum
redelivery_cutoff(void)
{
	return TimestampTzGetDatum(GetCurrentTransactionStartTimestamp() -
							   (TimestampTz) setstream_redelivery_interval_ms * 1000);
}

static void
spi_connect(void)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/* ---------------------------------------------------------------------
 * Streams and keys
 * ---------------------------------------------------------------------
 */

/*
 * Is the schema 0.3.0's (streams.inbound, peer keys from a jwks_uri)?  An
 * extension not yet updated to it has neither: the listener and the SQL
 * API then keep to 0.2.0's statements and grants.
 */
bool
store_schema_is_0_3(void)
{
	Oid			nsp = get_namespace_oid("setstream", true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid("streams", nsp) : InvalidOid;

	return OidIsValid(rel) && get_attnum(rel, "inbound") != InvalidAttrNumber &&
		OidIsValid(get_relname_relid("peer_jwks", nsp));
}

/*
 * The installed version of the extension as "major.minor" numbers (0.4.0
 * is 4, 1.2.x would be 10002), or -1 when it is not installed.  Read from
 * pg_extension, so it follows ALTER EXTENSION UPDATE at the next
 * transaction.
 */
static int
extension_version_number(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	int			number = -1;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("setstream"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);
		int			major = 0;
		int			minor = 0;

		if (!isnull &&
			sscanf(text_to_cstring(DatumGetTextPP(d)), "%d.%d", &major, &minor) == 2)
			number = major * 10000 + minor;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return number;
}

/*
 * Is the schema 0.4.0's or later?  The binaries serve a database whose
 * extension is not updated yet with 0.3.0's statements: every use of what
 * setstream--0.3.0--0.4.0.sql adds is behind this test.
 */
bool
store_schema_is_0_4(void)
{
	return extension_version_number() >= 4;
}

/* The stream's settings; raises undefined_object when there is none */
StreamInfo *
store_get_stream(const char *name)
{
	StreamInfo *s = store_find_stream(name);

	if (s == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" does not exist", name)));
	return s;
}

/* The stream's settings, or NULL when there is no such stream */
StreamInfo *
store_find_stream(const char *name)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		values[1] = {text_datum(name)};
	StreamInfo *s;
	bool		isnull;
	Datum		aud;
	Datum	   *elems;
	int			nelems;
	char	   *profile;
	char	   *status;
	char	   *client_auth;

	spi_connect();
	run(store_schema_is_0_3() ? &stmt_get_stream : &stmt_get_stream_0_2,
		values, NULL, true);
	if (SPI_processed != 1)
	{
		SPI_finish();
		return NULL;
	}

	s = MemoryContextAllocZero(cxt, sizeof(StreamInfo));
	s->name = get_text(0, 1, cxt);
	s->issuer = get_text(0, 2, cxt);
	s->peer_issuer = get_text(0, 4, cxt);
	profile = get_text(0, 5, cxt);
	s->ssf = strcmp(profile, "ssf") == 0;
	s->allow_unsigned = DatumGetBool(get_datum(0, 6, &isnull));
	status = get_text(0, 7, cxt);
	s->status = status[0];
	client_auth = get_text(0, 8, cxt);
	s->refuse_inbound = DatumGetBool(get_datum(0, 9, &isnull));
	s->auth_bearer = strstr(client_auth, "bearer") != NULL;
	s->auth_cert = strstr(client_auth, "cert") != NULL;
	s->peer_jwks = DatumGetBool(get_datum(0, 10, &isnull));

	aud = get_datum(0, 3, &isnull);
	deconstruct_array(DatumGetArrayTypeP(aud), TEXTOID, -1, false,
					  TYPALIGN_INT, &elems, NULL, &nelems);
	for (int i = 0; i < nelems; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		s->audience = lappend(s->audience, TextDatumGetCString(elems[i]));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return s;
}

static void
read_verify_key(void *row, int i, MemoryContext cxt)
{
	SetKey	   *k = row;

	k->kid = get_text(i, 1, cxt);
	k->kty = get_text(i, 2, cxt);
	k->crv = get_text(i, 3, cxt);
	k->alg = get_text(i, 4, cxt);
	k->jwk = get_text(i, 5, cxt);
}

/* The stream's active verification keys, all or the one named by kid */
List *
store_verify_keys(const char *stream, const char *kid)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		values[2] = {text_datum(stream), kid ? text_datum(kid) : (Datum) 0};
	char		nulls[2] = {' ', kid ? ' ' : 'n'};
	List	   *keys;

	spi_connect();
	run_as_owner(&stmt_verify_keys, values, nulls, true);
	keys = read_rows(sizeof(SetKey), read_verify_key, cxt);
	SPI_finish();
	return keys;
}

/* Insert a key; false when the stream already has a key with that kid */
bool
store_insert_key(const char *stream, const char *kid, const char *purpose,
				 const char *kty, const char *alg, const char *public_jwk,
				 const char *secret_jwk)
{
	Datum		values[6] = {text_datum(stream), text_datum(kid),
		text_datum(purpose), text_datum(kty),
	alg ? text_datum(alg) : (Datum) 0, text_datum(public_jwk)};
	char		nulls[6] = {' ', ' ', ' ', ' ', alg ? ' ' : 'n', ' '};
	bool		inserted;

	spi_connect();
	run(&stmt_insert_key, values, nulls, false);
	inserted = SPI_processed == 1;
	if (inserted && secret_jwk != NULL)
	{
		Datum		svalues[3] = {values[0], values[1], text_datum(secret_jwk)};

		run_as_owner(&stmt_insert_secret, svalues, NULL, false);
	}
	SPI_finish();
	return inserted;
}

/* The newest active signing key of the stream, or NULL */
SignKey *
store_sign_key(const char *stream)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		values[1] = {text_datum(stream)};
	SignKey    *key = NULL;

	spi_connect();
	run_as_owner(&stmt_sign_key, values, NULL, true);
	if (SPI_processed == 1)
	{
		key = MemoryContextAllocZero(cxt, sizeof(SignKey));
		key->kid = get_text(0, 1, cxt);
		key->alg = get_text(0, 2, cxt);
		key->private_jwk = get_text(0, 3, cxt);
	}
	SPI_finish();
	return key;
}

/* ---------------------------------------------------------------------
 * Tokens
 * ---------------------------------------------------------------------
 */
void
store_insert_token(const char *stream, const uint8 *hash)
{
	Datum		values[2] = {text_datum(stream), hash_datum(hash)};

	spi_connect();
	run(&stmt_insert_token, values, NULL, false);
	SPI_finish();
}

/* The 32-byte hashes in column 1 of the result, in "cxt" */
static List *
get_hashes(MemoryContext cxt)
{
	List	   *hashes = NIL;

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		bytea	   *b = DatumGetByteaPP(get_datum(i, 1, &isnull));
		MemoryContext old;
		uint8	   *h;

		if (VARSIZE_ANY_EXHDR(b) != 32)
			continue;
		old = MemoryContextSwitchTo(cxt);
		h = palloc(32);
		memcpy(h, VARDATA_ANY(b), 32);
		hashes = lappend(hashes, h);
		MemoryContextSwitchTo(old);
	}
	return hashes;
}

/* The 32-byte hashes a statement of one stream's rows returns */
static List *
stream_hashes(StoreStmt *stmt, const char *stream)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		values[1] = {text_datum(stream)};
	List	   *hashes;

	spi_connect();
	run(stmt, values, NULL, true);
	hashes = get_hashes(cxt);
	SPI_finish();
	return hashes;
}

/* SHA-256 hashes (32-byte palloc'd buffers) of the stream's active tokens */
List *
store_token_hashes(const char *stream)
{
	return stream_hashes(&stmt_token_hashes, stream);
}

/* ---------------------------------------------------------------------
 * Client certificates
 * ---------------------------------------------------------------------
 */

/* Bind a certificate; false when the stream already has it */
bool
store_insert_client_cert(const char *stream, const uint8 *sha256,
						 const char *subject, TimestampTz not_after)
{
	Datum		values[4] = {text_datum(stream), hash_datum(sha256),
	text_datum(subject), TimestampTzGetDatum(not_after)};
	bool		inserted;

	spi_connect();
	run(&stmt_insert_client_cert, values, NULL, false);
	inserted = SPI_processed == 1;
	SPI_finish();
	return inserted;
}

/* SHA-256 fingerprints (uint8[32]) of the client certs bound to a stream */
List *
store_cert_hashes(const char *stream)
{
	return stream_hashes(&stmt_cert_hashes, stream);
}

/* ---------------------------------------------------------------------
 * Inbound SETs
 * ---------------------------------------------------------------------
 */

/*
 * A verified SET's claims or header as jsonb: the value built while it was
 * parsed for verification (jsonread_load_jsonb), or, where none was built
 * (a database that is not UTF-8), jsonb_in of its text as a cast would do
 */
static Datum
jsonb_of(Datum built, const char *text)
{
	if (built != (Datum) 0)
		return built;
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(text));
}

/* Store a verified SET; false when (stream, iss, jti) was stored before */
bool
store_insert_event(const StreamInfo *stream, const ParsedSet *ps)
{
	Datum		values[13];
	char		nulls[13];
	List	   *aud = NIL;
	List	   *types = NIL;
	const char *name;
	json_t	   *v;
	bool		inserted;

	memset(nulls, ' ', sizeof(nulls));
	if (json_is_string(ps->aud))
		aud = list_make1((char *) json_string_value(ps->aud));
	else if (json_is_array(ps->aud))
	{
		size_t		i;

		json_array_foreach(ps->aud, i, v)
			aud = lappend(aud, (char *) json_string_value(v));
	}
	json_object_foreach(ps->events, name, v)
		types = lappend(types, (char *) name);

	values[0] = text_datum(stream->name);
	values[1] = text_datum(ps->jti);
	values[2] = text_datum(ps->iss);
	values[3] = ps->aud ? text_array_datum(aud) : (Datum) 0;
	nulls[3] = ps->aud ? ' ' : 'n';
	values[4] = Float8GetDatum(ps->iat);
	values[5] = ps->txn ? text_datum(ps->txn) : (Datum) 0;
	nulls[5] = ps->txn ? ' ' : 'n';
	values[6] = Float8GetDatum(ps->toe);
	nulls[6] = ps->has_toe ? ' ' : 'n';
	values[7] = ps->sub_id ? text_datum(json_dumps(ps->sub_id, JSON_COMPACT)) : (Datum) 0;
	nulls[7] = ps->sub_id ? ' ' : 'n';
	values[8] = text_array_datum(types);
	values[9] = text_datum(json_dumps(ps->events, JSON_COMPACT));
	values[10] = jsonb_of(ps->claims_jsonb, ps->jws.payload);
	values[11] = jsonb_of(ps->jws.header_jsonb, ps->jws.header_text);
	values[12] = PointerGetDatum(cstring_to_text_with_len(ps->token, ps->token_len));

	spi_connect();
	run(&stmt_insert_event, values, nulls, false);
	inserted = SPI_processed == 1;
	SPI_finish();
	return inserted;
}

/* A one-dimensional array of n Datums (NULL where isnull) */
static Datum
array_datum(Datum *elems, bool *isnull, int n, Oid type)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, isnull, 1, dims, lbs, type,
											  typlen, typbyval, typalign));
}

/* The names of a SET's events (URIs: no spaces) joined by spaces */
static char *
event_types_text(json_t *events)
{
	StringInfoData buf;
	const char *name;
	json_t	   *v;

	initStringInfo(&buf);
	json_object_foreach(events, name, v)
	{
		if (buf.len > 0)
			appendStringInfoChar(&buf, ' ');
		appendStringInfoString(&buf, name);
	}
	return buf.data;
}

/*
 * Store n verified SETs (of any streams) with one statement; each is
 * stored once per (stream, iss, jti), duplicates are skipped.
 */
void
store_insert_events(StreamInfo **streams, ParsedSet **sets, int n)
{
	Datum	   *cols[10];
	bool	   *nulls[10];
	Datum		values[10];
	static const Oid types[10] = {TEXTOID, TEXTOID, TEXTOID, FLOAT8OID, TEXTOID,
	FLOAT8OID, TEXTOID, JSONBOID, JSONBOID, TEXTOID};

	if (n == 0)
		return;
	for (int c = 0; c < 10; c++)
	{
		cols[c] = palloc(sizeof(Datum) * n);
		nulls[c] = palloc0(sizeof(bool) * n);
	}
	for (int i = 0; i < n; i++)
	{
		ParsedSet  *ps = sets[i];

		cols[0][i] = text_datum(streams[i]->name);
		cols[1][i] = text_datum(ps->jti);
		cols[2][i] = text_datum(ps->iss);
		cols[3][i] = Float8GetDatum(ps->iat);
		cols[4][i] = ps->txn ? text_datum(ps->txn) : (Datum) 0;
		nulls[4][i] = ps->txn == NULL;
		cols[5][i] = Float8GetDatum(ps->toe);
		nulls[5][i] = !ps->has_toe;
		cols[6][i] = text_datum(event_types_text(ps->events));
		cols[7][i] = jsonb_of(ps->claims_jsonb, ps->jws.payload);
		cols[8][i] = jsonb_of(ps->jws.header_jsonb, ps->jws.header_text);
		cols[9][i] = PointerGetDatum(cstring_to_text_with_len(ps->token, ps->token_len));
	}
	for (int c = 0; c < 10; c++)
		values[c] = array_datum(cols[c], nulls[c], n, types[c]);

	spi_connect();
	run(&stmt_insert_events, values, NULL, false);
	SPI_finish();
}

/* ---------------------------------------------------------------------
 * Outbound SETs
 * ---------------------------------------------------------------------
 */
void
store_insert_outbox(const char *stream, const char *jti,
					const char *event_type, const char *claims,
					const char *token)
{
	Datum		values[5] = {text_datum(stream), text_datum(jti),
		text_datum(event_type), text_datum(claims), text_datum(token)};

	spi_connect();
	run(&stmt_insert_outbox, values, NULL, false);
	SPI_finish();
	metrics_count_outbox(stream, METRIC_EMITTED, 1);
}

/*
 * Queue one signed SET as the extension owner: the SSF stream events
 * (issue 13) a receiver or an administrator without the emit right causes
 */
void
store_insert_outbox_as_owner(const char *stream, const char *jti,
							 const char *event_type, const char *claims,
							 const char *token)
{
	Datum		values[5] = {text_datum(stream), text_datum(jti),
		text_datum(event_type), text_datum(claims), text_datum(token)};

	spi_connect();
	run_as_owner(&stmt_insert_outbox, values, NULL, false);
	SPI_finish();
	metrics_count_outbox(stream, METRIC_EMITTED, 1);
}

/* Queue n signed SETs with one statement; seq follows their order */
void
store_insert_outbox_rows(const EmitRow *rows, int n)
{
	Datum	   *cols[5];
	Datum		values[5];

	if (n == 1)
	{
		store_insert_outbox(rows[0].stream, rows[0].jti, rows[0].event_type,
							rows[0].claims, rows[0].token);
		return;
	}
	for (int c = 0; c < 5; c++)
		cols[c] = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		cols[0][i] = text_datum(rows[i].stream);
		cols[1][i] = text_datum(rows[i].jti);
		cols[2][i] = text_datum(rows[i].event_type);
		cols[3][i] = text_datum(rows[i].claims);
		cols[4][i] = text_datum(rows[i].token);
	}
	for (int c = 0; c < 5; c++)
		values[c] = array_datum(cols[c], NULL, n, TEXTOID);

	spi_connect();
	run(&stmt_insert_outbox_rows, values, NULL, false);
	SPI_finish();
	for (int i = 0; i < n; i++)
		metrics_count_outbox(rows[i].stream, METRIC_EMITTED, 1);
}

/* Mark acknowledged; unknown jtis, and jtis of other streams, are ignored */
void
store_apply_acks(const char *stream, List *jtis)
{
	Datum		values[2];

	if (jtis == NIL)
		return;
	values[0] = text_datum(stream);
	values[1] = text_array_datum(jtis);
	spi_connect();
	run(&stmt_apply_acks, values, NULL, false);
	metrics_count_outbox(stream, METRIC_ACKED, SPI_processed);
	SPI_finish();
}

/* Mark failed with the receiver's err and description */
void
store_apply_errs(const char *stream, List *errs)
{
	List	   *jtis = NIL,
			   *codes = NIL;
	ListCell   *lc;
	Datum		values[4];
	ArrayType  *desc_array;
	int			n = list_length(errs);
	Datum	   *elems;
	bool	   *elem_nulls;
	int			i = 0;
	int			dims[1];
	int			lbs[1] = {1};

	if (errs == NIL)
		return;
	elems = palloc(sizeof(Datum) * n);
	elem_nulls = palloc(sizeof(bool) * n);
	foreach(lc, errs)
	{
		SetErrEntry *e = lfirst(lc);

		jtis = lappend(jtis, e->jti);
		codes = lappend(codes, e->err);
		elems[i] = e->description ? CStringGetTextDatum(e->description) : (Datum) 0;
		elem_nulls[i] = e->description == NULL;
		i++;
	}
	dims[0] = n;
	desc_array = construct_md_array(elems, elem_nulls, 1, dims, lbs, TEXTOID,
									-1, false, TYPALIGN_INT);
	values[0] = text_datum(stream);
	values[1] = text_array_datum(jtis);
	values[2] = text_array_datum(codes);
	values[3] = PointerGetDatum(desc_array);
	spi_connect();
	run(&stmt_apply_errs, values, NULL, false);
	metrics_count_outbox(stream, METRIC_FAILED, SPI_processed);
	SPI_finish();
}

static int
compare_seq(const ListCell *a, const ListCell *b)
{
	int64		x = ((OutSet *) lfirst(a))->seq;
	int64		y = ((OutSet *) lfirst(b))->seq;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * Take up to "limit" SETs that are pending or due for redelivery, oldest
 * first (in the list too), skipping rows another transaction holds, and
 * mark them delivered.  *more tells whether further SETs are due.
 *
 * A SET created before expire_before (0: none is) is not returned but
 * failed as undeliverable: the pushpull bindings setstream initiates give
 * up on a SET its peer has not acknowledged within
 * setstream.max_delivery_age, as push does.  (SETs served to a peer that
 * polls or initiates pushpull wait for it.)
 */
List *
store_take_due(const char *stream, int limit, TimestampTz expire_before,
			   bool *more)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		values[3] = {text_datum(stream),
		redelivery_cutoff(), Int32GetDatum(limit)};
	List	   *out = NIL;
	List	   *expired = NIL;
	Datum	   *seqs;
	bool		isnull;
	uint64		n;

	spi_connect();
	run(&stmt_take_due, values, NULL, false);
	n = SPI_processed;
	seqs = palloc(sizeof(Datum) * (n > 0 ? n : 1));
	for (uint64 i = 0; i < n; i++)
	{
		TimestampTz created_at;
		MemoryContext old;
		OutSet	   *o;

		seqs[i] = get_datum(i, 1, &isnull);
		created_at = DatumGetTimestampTz(get_datum(i, 5, &isnull));
		if (expire_before != 0 && created_at < expire_before)
		{
			SetErrEntry *e = MemoryContextAlloc(cxt, sizeof(SetErrEntry));

			e->jti = get_text(i, 2, cxt);
			e->err = UNDELIVERABLE_ERR;
			e->description = UNDELIVERABLE_DESCRIPTION;
			old = MemoryContextSwitchTo(cxt);
			expired = lappend(expired, e);
			MemoryContextSwitchTo(old);
			continue;
		}
		old = MemoryContextSwitchTo(cxt);
		o = palloc(sizeof(OutSet));
		o->seq = DatumGetInt64(seqs[i]);
		MemoryContextSwitchTo(old);
		o->jti = get_text(i, 2, cxt);
		o->token = get_text(i, 3, cxt);
		if (DatumGetInt32(get_datum(i, 4, &isnull)) == 1)	/* first delivery */
		{
			metrics_count_outbox(stream, METRIC_DELIVERED, 1);
			metrics_observe_delivery(created_at);
		}
		old = MemoryContextSwitchTo(cxt);
		out = lappend(out, o);
		MemoryContextSwitchTo(old);
	}
	values[2] = PointerGetDatum(construct_array(seqs, (int) n, INT8OID, 8,
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	/* not read-only: it must see the acks and takes of this very call */
	run(&stmt_more_due, values, NULL, false);
	*more = DatumGetBool(get_datum(0, 1, &isnull));
	SPI_finish();
	store_apply_errs(stream, expired);
	/* RETURNING gives the rows in the TID scan's (physical) order */
	list_sort(out, compare_seq);
	return out;
}

/* The public JWK Set of every active signing key, as JSON text */
char *
store_jwks(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *result;

	spi_connect();
	run(&stmt_jwks, NULL, NULL, true);
	result = get_text(0, 1, cxt);
	SPI_finish();
	return result;
}

/*
 * Retire the signing keys rotate_key replaced whose SETs are all settled
 * and whose max_age_s (setstream.jwks_max_age) is up; returns how many.
 */
int
store_retire_keys(int max_age_s)
{
	Datum		values[1] = {Int32GetDatum(max_age_s)};
	bool		isnull;
	int			n;

	if (!store_schema_is_0_3())
		return 0;
	spi_connect();
	run(&stmt_retire_keys, values, NULL, false);
	n = DatumGetInt32(get_datum(0, 1, &isnull));
	SPI_finish();
	return isnull ? 0 : n;
}

/* Whether any SET of the stream is pending or due for redelivery */
bool
store_any_due(const char *stream)
{
	Datum		values[2] = {text_datum(stream),
		redelivery_cutoff()};
	bool		isnull;
	bool		result;

	spi_connect();
	/* not read-only: it must see the acks of this very call */
	run(&stmt_any_due, values, NULL, false);
	result = DatumGetBool(get_datum(0, 1, &isnull));
	SPI_finish();
	return result;
}

/* ---------------------------------------------------------------------
 * Generations (issue 18): what the listener reads every
 * setstream.generation_check_interval
 * ---------------------------------------------------------------------
 */
static StoreStmt stmt_generation_sum = {
	"SELECT pg_catalog.sum(generation)::pg_catalog.int8 FROM setstream.generations",
	0, {InvalidOid}
};

/*
 * The SETs of the stream neither acked nor failed whose seq is at least
 * $2: how many, and the exclusive or of their seqs.  A range of the due
 * index, the recent end only.
 */
static StoreStmt stmt_recent_due = {
	"SELECT pg_catalog.count(*), pg_catalog.bit_xor(seq) FROM setstream.outbox"
	" WHERE stream OPERATOR(pg_catalog.=) $1"
	" AND acked_at IS NULL AND failed_at IS NULL"
	" AND seq OPERATOR(pg_catalog.>=) $2",
	2, {TEXTOID, INT8OID}, NULL, true
};

/*
 * The sum of setstream.generations (0 when empty); false when the table
 * does not exist (the extension is older than 0.3.0, or not there).
 */
bool
store_generation_sum(int64 *sum)
{
	Oid			nsp = get_namespace_oid("setstream", true);
	bool		isnull;
	Datum		d;

	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("generations", nsp)))
		return false;
	spi_connect();
	run(&stmt_generation_sum, NULL, NULL, true);
	d = get_datum(0, 1, &isnull);
	*sum = isnull ? 0 : DatumGetInt64(d);
	SPI_finish();
	return true;
}

/*
 * A fingerprint of the set of the stream's SETs due (neither acked nor
 * failed) whose seq is at least "since": it moves when one is emitted or
 * settled.  *count is how many there are.
 */
uint64
store_recent_due(const char *stream, int64 since, int64 *count)
{
	Datum		values[2] = {text_datum(stream), Int64GetDatum(since)};
	bool		isnull;
	Datum		d;
	uint64		x;

	spi_connect();
	run(&stmt_recent_due, values, NULL, true);
	*count = DatumGetInt64(get_datum(0, 1, &isnull));
	d = get_datum(0, 2, &isnull);
	x = isnull ? 0 : (uint64) DatumGetInt64(d);
	SPI_finish();
	return x ^ ((uint64) *count * UINT64CONST(0x9E3779B97F4A7C15));
}

/* ---------------------------------------------------------------------
 * Rights on streams
 * ---------------------------------------------------------------------
 */

/*
 * Every (stream, role, privilege) of one stream (or of all, stream NULL):
 * the owner as privilege "owner", then each grant.  A stream without
 * grants still has its owner row.
 */
List *
store_stream_rights(const char *stream)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		values[1] = {stream ? text_datum(stream) : (Datum) 0};
	char		nulls[1] = {stream ? ' ' : 'n'};
	List	   *out = NIL;
	char	   *last = NULL;

	spi_connect();
	run_as_owner(&stmt_stream_rights, values, nulls, true);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		MemoryContext old;
		StreamRight *r;
		bool		isnull;
		char	   *name = get_text(i, 1, cxt);
		Oid			owner = DatumGetObjectId(get_datum(i, 2, &isnull));
		Datum		grantee = get_datum(i, 3, &isnull);

		old = MemoryContextSwitchTo(cxt);
		if (last == NULL || strcmp(last, name) != 0)
		{
			r = palloc(sizeof(StreamRight));
			r->stream = name;
			r->role = owner;
			r->privilege = "owner";
			out = lappend(out, r);
			last = name;
		}
		if (!isnull)
		{
			r = palloc(sizeof(StreamRight));
			r->stream = name;
			r->role = DatumGetObjectId(grantee);
			MemoryContextSwitchTo(old);
			r->privilege = get_text(i, 4, cxt);
			old = MemoryContextSwitchTo(cxt);
			out = lappend(out, r);
		}
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return out;
}

/* Record (grant) or remove (revoke) rights of a role on a stream */
void
store_change_grants(const char *stream, Oid role, List *privileges,
					bool grant)
{
	Datum		values[4] = {text_datum(stream), ObjectIdGetDatum(role),
		text_array_datum(privileges), ObjectIdGetDatum(GetUserId())};

	spi_connect();
	run_as_owner(grant ? &stmt_insert_grants : &stmt_delete_grants,
				 values, NULL, false);
	SPI_finish();
}

/*
 * Run one GRANT statement as the extension owner (its text is built by
 * privileges.c from constants and a quoted role name, never peer input).
 */
void
store_grant_as_owner(const char *sql)
{
	OwnerSwitch sw;
	int			rc;

	spi_connect();
	enter_owner(&sw);
	rc = SPI_execute(sql, false, 0);
	if (rc < 0)
		elog(ERROR, "SPI_execute failed for \"%s\": %s", sql,
			 SPI_result_code_string(rc));
	leave_owner(&sw);
	SPI_finish();
}

/* ---------------------------------------------------------------------
 * Outbound push (issue 17): the sender's statements
 * ---------------------------------------------------------------------
 */

static StoreStmt stmt_delete_delivery_secret = {
	"DELETE FROM setstream.delivery_secrets WHERE stream OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

static StoreStmt stmt_insert_delivery_secret = {
	"INSERT INTO setstream.delivery_secrets (stream, authorization_header)"
	" VALUES ($1, $2)",
	2, {TEXTOID, TEXTOID}
};

/*
 * Every enabled stream delivered by push ($1: push, or pushpull when we
 * initiate), with its credentials: read as
 * the extension owner (delivery_secrets is the owner's alone).
 */
static StoreStmt stmt_push_streams = {
	"SELECT d.stream, d.endpoint_url, d.push_concurrency, d.state,"
	" d.backoff_until, d.failures, d.auth_failures, c.authorization_header,"
	" NULL::pg_catalog.text"
	" FROM setstream.deliveries d"
	" JOIN setstream.streams s ON s.name OPERATOR(pg_catalog.=) d.stream"
	" LEFT JOIN setstream.delivery_secrets c"
	" ON c.stream OPERATOR(pg_catalog.=) d.stream"
	" WHERE d.method OPERATOR(pg_catalog.=) $1"
	" AND (s.status OPERATOR(pg_catalog.=) 'enabled'"
	" OR EXISTS (SELECT 1 FROM setstream.outbox o"
	" WHERE o.stream OPERATOR(pg_catalog.=) d.stream"
	" AND o.acked_at IS NULL AND o.failed_at IS NULL"
	" AND o.event_types OPERATOR(pg_catalog.=)"
	" '{https://schemas.openid.net/secevent/ssf/event-type/stream-updated}'::pg_catalog.text[]))",
	1, {TEXTOID}
};

/*
 * SETs taken for a pushpull request that got no valid answer: due again at
 * once (pending), unless acknowledged or failed meanwhile
 */
static StoreStmt stmt_untake = {
	"UPDATE setstream.outbox o SET state = 'pending'"
	" WHERE o.stream OPERATOR(pg_catalog.=) $1"
	" AND o.jti OPERATOR(pg_catalog.=) ANY ($2)"
	" AND o.state OPERATOR(pg_catalog.=) 'delivered'",
	2, {TEXTOID, TEXTARRAYOID}
};

/*
 * The stream's SETs due for a push, oldest first, but those in flight:
 * not acknowledged or failed (the due index's predicate), and their next
 * attempt time reached.  $3 is now() less setstream.max_delivery_age: a
 * SET created before it is reported expired, not pushed.
 */
static StoreStmt stmt_push_due = {
	"SELECT seq, jti, token, state, attempts,"
	" created_at OPERATOR(pg_catalog.<) $3, created_at"
	" FROM setstream.outbox"
	" WHERE stream OPERATOR(pg_catalog.=) $1"
	" AND acked_at IS NULL AND failed_at IS NULL"
	" AND (next_attempt_at IS NULL OR next_attempt_at OPERATOR(pg_catalog.<=) $2)"
	" AND seq OPERATOR(pg_catalog.<>) ALL ($4)"
	" AND " RELEASE_CONDITION
	" ORDER BY seq LIMIT $5",
	5, {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8ARRAYOID, INT4OID}, NULL, true
};

/*
 * The outcomes of a turn's pushes on one stream, one element per push in
 * each array (one statement per stream and turn, not one per answer: the
 * sender spent a third of its time planning and running the single-row
 * UPDATE); every time is computed by the sender.  "Not settled" is said
 * with state (the CHECK on outbox ties it to acked_at and failed_at), not
 * with outbox_due_idx's predicate: a plan may then only use the key (jti,
 * stream).  With "acked_at IS NULL AND failed_at IS NULL", a generic plan
 * made while the statistics did not know the stream (just after a bulk
 * emit) scanned the due index for the stream and filtered on jti: every
 * answer read every unsettled row of the stream.  Only an ack is recorded
 * once the stream is no longer pushed (its delivery changed while the
 * push was in flight): the row is then due on its new route, not held by
 * this push's backoff.  A jti appears once per call (a row has one push
 * in flight).
 */
static StoreStmt stmt_push_outcomes = {
	"UPDATE setstream.outbox o SET state = u.state,"
	" attempts = o.attempts OPERATOR(pg_catalog.+) u.attempts_add,"
	" delivered_at = COALESCE(u.delivered_at, o.delivered_at),"
	" acked_at = u.acked_at, failed_at = u.failed_at, err = u.err,"
	" description = u.description, next_attempt_at = u.next_attempt_at,"
	" last_status = COALESCE(u.last_status, o.last_status),"
	" last_error = u.last_error"
	" FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3),"
	" pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6),"
	" pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9),"
	" pg_catalog.unnest($10), pg_catalog.unnest($11), pg_catalog.unnest($12))"
	" AS u (jti, state, attempts_add, delivered_at, acked_at, failed_at, err,"
	" description, next_attempt_at, last_status, last_error)"
	" WHERE o.jti OPERATOR(pg_catalog.=) u.jti AND o.stream OPERATOR(pg_catalog.=) $1"
	" AND o.state OPERATOR(pg_catalog.=) ANY ('{pending,delivered}')"
	" AND (u.state OPERATOR(pg_catalog.=) 'acked' OR EXISTS (SELECT 1"
	" FROM setstream.deliveries d WHERE d.stream OPERATOR(pg_catalog.=) $1"
	" AND d.method OPERATOR(pg_catalog.=) 'push'))"
	" RETURNING o.state, o.created_at",
	12, {TEXTOID, TEXTARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
		TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, INT4ARRAYOID,
		TEXTARRAYOID}
};

static StoreStmt stmt_delivery_state = {
	"UPDATE setstream.deliveries SET state = $2, backoff_until = $3,"
	" suspended_reason = $4, failures = $5, auth_failures = $6,"
	" nonconformant_acks = nonconformant_acks OPERATOR(pg_catalog.+) $7,"
	" updated_at = $8"
	" WHERE stream OPERATOR(pg_catalog.=) $1"
	" AND method OPERATOR(pg_catalog.<>) 'poll'",
	8, {TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, INT4OID, INT4OID, INT8OID,
		TIMESTAMPTZOID}
};

/*
 * Replace a stream's secret (header not NULL) or remove it: the delete
 * and insert statements of its table, run as the owner
 */
static void
replace_secret(StoreStmt *delete, StoreStmt *insert, const char *stream,
			   const char *header)
{
	Datum		values[2];

	values[0] = text_datum(stream);
	spi_connect();
	run_as_owner(delete, values, NULL, false);
	if (header != NULL)
	{
		values[1] = text_datum(header);
		run_as_owner(insert, values, NULL, false);
	}
	SPI_finish();
}

/* Store (header not NULL) or remove the stream's Authorization header */
void
store_set_delivery_secret(const char *stream, const char *header)
{
	replace_secret(&stmt_delete_delivery_secret, &stmt_insert_delivery_secret,
				   stream, header);
}

/*
 * A PushStream from a row of stmt_push_streams or stmt_sources (the same
 * columns: stream, endpoint_url, concurrency, state, backoff_until,
 * failures, auth_failures, authorization, suspended_reason)
 */
static void
read_push_stream(void *row, int i, MemoryContext cxt)
{
	PushStream *p = row;
	bool		isnull;
	Datum		d;

	p->stream = get_text(i, 1, cxt);
	p->endpoint_url = get_text(i, 2, cxt);
	p->concurrency = DatumGetInt32(get_datum(i, 3, &isnull));
	p->state = get_text(i, 4, cxt);
	d = get_datum(i, 5, &isnull);
	p->backoff_until = isnull ? 0 : DatumGetTimestampTz(d);
	p->failures = DatumGetInt32(get_datum(i, 6, &isnull));
	p->auth_failures = DatumGetInt32(get_datum(i, 7, &isnull));
	p->authorization = get_text(i, 8, cxt);
	p->suspended_reason = get_text(i, 9, cxt);
}

/* The streams delivered by method (push; pushpull: we initiate) */
static List *
read_push_streams(const char *method)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		values[1] = {text_datum(method)};
	List	   *out;

	spi_connect();
	run_as_owner(&stmt_push_streams, values, NULL, true);
	out = read_rows(sizeof(PushStream), read_push_stream, cxt);
	SPI_finish();
	return out;
}

/* The push streams, in the caller's memory context */
List *
store_push_streams(void)
{
	return read_push_streams("push");
}

/* The pushpull streams (we initiate), in the caller's memory context */
List *
store_pushpull_streams(void)
{
	return read_push_streams("pushpull");
}

/* The pushpull-ws streams (we open the WebSocket), in the caller's memory */
List *
store_pushpull_ws_streams(void)
{
	return read_push_streams("pushpull-ws");
}

/* Make SETs taken for a pushpull request that failed due again */
void
store_untake(const char *stream, List *jtis)
{
	Datum		values[2];

	if (jtis == NIL)
		return;
	values[0] = text_datum(stream);
	values[1] = text_array_datum(jtis);
	spi_connect();
	run(&stmt_untake, values, NULL, false);
	SPI_finish();
}

static void
read_push_row(void *row, int i, MemoryContext cxt)
{
	PushRow    *r = row;
	bool		isnull;

	r->seq = DatumGetInt64(get_datum(i, 1, &isnull));
	r->jti = get_text(i, 2, cxt);
	r->token = get_text(i, 3, cxt);
	r->state = get_text(i, 4, cxt);
	r->attempts = DatumGetInt32(get_datum(i, 5, &isnull));
	r->expired = DatumGetBool(get_datum(i, 6, &isnull));
	r->created_at = DatumGetTimestampTz(get_datum(i, 7, &isnull));
}

/*
 * Up to "limit" SETs of the stream due at "now", oldest first, leaving out
 * the "nexclude" seqs in flight.  Nothing is changed: only this sender
 * pushes this stream, and what is not recorded as answered is pushed again
 * after a crash, byte for byte.
 */
List *
store_push_due(const char *stream, TimestampTz now, TimestampTz expire_before,
			   const int64 *exclude, int nexclude, int limit)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum	   *ex = palloc(sizeof(Datum) * (nexclude > 0 ? nexclude : 1));
	Datum		values[5];
	List	   *out;

	for (int i = 0; i < nexclude; i++)
		ex[i] = Int64GetDatum(exclude[i]);
	values[0] = text_datum(stream);
	values[1] = TimestampTzGetDatum(now);
	values[2] = TimestampTzGetDatum(expire_before);
	values[3] = PointerGetDatum(construct_array(ex, nexclude, INT8OID, 8,
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[4] = Int32GetDatum(limit);
	spi_connect();
	run(&stmt_push_due, values, NULL, true);
	out = read_rows(sizeof(PushRow), read_push_row, cxt);
	SPI_finish();
	return out;
}

static Datum
time_or_null(TimestampTz t, char *null)
{
	*null = t == 0 ? 'n' : ' ';
	return TimestampTzGetDatum(t);
}

static Datum
text_or_null(const char *s, char *null)
{
	*null = s == NULL ? 'n' : ' ';
	return s == NULL ? (Datum) 0 : text_datum(s);
}

/* The outcome rows' column "col" as an array (see push_outcome_value) */
static Datum
push_outcome_array(const PushOutcomeRow *rows, int n, int col, Oid type)
{
	Datum	   *elems = palloc(sizeof(Datum) * n);
	bool	   *isnull = palloc(sizeof(bool) * n);

	for (int i = 0; i < n; i++)
	{
		const PushOutcomeRow *o = &rows[i];
		const char *text = NULL;
		TimestampTz t = 0;

		isnull[i] = false;
		switch (col)
		{
			case 0:
				text = o->jti;
				break;
			case 1:
				text = o->state;
				break;
			case 2:
				elems[i] = Int32GetDatum(o->attempts_add);
				continue;
			case 3:
				t = o->delivered_at;
				break;
			case 4:
				t = o->acked_at;
				break;
			case 5:
				t = o->failed_at;
				break;
			case 6:
				text = o->err;
				break;
			case 7:
				text = o->description;
				break;
			case 8:
				t = o->next_attempt_at;
				break;
			case 9:
				elems[i] = Int32GetDatum(o->last_status);
				isnull[i] = o->last_status < 0;
				continue;
			case 10:
				text = o->last_error;
				break;
		}
		if (type == TEXTOID)
		{
			isnull[i] = text == NULL;
			elems[i] = text == NULL ? (Datum) 0 : text_datum(text);
		}
		else
		{
			isnull[i] = t == 0;
			elems[i] = TimestampTzGetDatum(t);
		}
	}
	return array_datum(elems, isnull, n, type);
}

/*
 * Record the outcomes of n pushes of one stream on their outbox rows (see
 * outbound.h), with one statement
 */
void
store_push_outcomes(const char *stream, const PushOutcomeRow *rows, int n)
{
	static const Oid col_types[11] = {TEXTOID, TEXTOID, INT4OID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, TEXTOID,
	TIMESTAMPTZOID, INT4OID, TEXTOID};
	Datum		values[12];
	bool		isnull;

	if (n == 0)
		return;
	values[0] = text_datum(stream);
	for (int c = 0; c < 11; c++)
		values[c + 1] = push_outcome_array(rows, n, c, col_types[c]);
	spi_connect();
	run(&stmt_push_outcomes, values, NULL, false);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *state = get_text((int) i, 1, CurrentMemoryContext);

		metrics_note_push(stream, state,
						  DatumGetTimestampTz(get_datum((int) i, 2, &isnull)));
	}
	SPI_finish();
}

/* Record one push's outcome on its outbox row */
void
store_push_outcome(const char *stream, const PushOutcomeRow *o)
{
	store_push_outcomes(stream, o, 1);
}

/*
 * After a suspension, the stream's SSF status follows (as the owner): an
 * enabled stream with a receiver is paused, with a stream-updated SET
 * (once per suspension; the function decides)
 */
static StoreStmt stmt_delivery_suspended = {
	"SELECT setstream._delivery_suspended($1)",
	1, {TEXTOID}
};

/* Record a push (or pushpull) stream's delivery state */
void
store_delivery_state(const PushStream *p, int64 nonconformant, TimestampTz now)
{
	Datum		values[8];
	char		nulls[9];

	memset(nulls, ' ', sizeof(nulls));
	nulls[8] = '\0';
	values[0] = text_datum(p->stream);
	values[1] = text_datum(p->state);
	values[2] = time_or_null(p->backoff_until, &nulls[2]);
	values[3] = text_or_null(p->suspended_reason, &nulls[3]);
	values[4] = Int32GetDatum(p->failures);
	values[5] = Int32GetDatum(p->auth_failures);
	values[6] = Int64GetDatum(nonconformant);
	values[7] = TimestampTzGetDatum(now);
	spi_connect();
	run(&stmt_delivery_state, values, nulls, false);
	if (SPI_processed == 1 && strcmp(p->state, "suspended") == 0 &&
		store_schema_is_0_4())
		run_as_owner(&stmt_delivery_suspended, values, NULL, false);
	SPI_finish();
}

/* ---------------------------------------------------------------------
 * Peer keys from a jwks_uri (issue 17; outbound/jwksfetch.c).  The
 * sender runs these as the extension owner: it writes setstream.keys and
 * setstream.peer_jwks, which setstream_worker may only read.
 * ---------------------------------------------------------------------
 */
static StoreStmt stmt_jwks_sources = {
	"SELECT s.name, s.peer_jwks_uri,"
	" CASE WHEN j.uri OPERATOR(pg_catalog.=) s.peer_jwks_uri THEN j.next_fetch_at END,"
	" j.failures"
	" FROM setstream.streams s LEFT JOIN setstream.peer_jwks j"
	" ON j.stream OPERATOR(pg_catalog.=) s.name"
	" WHERE s.peer_jwks_uri IS NOT NULL"
	" AND s.status OPERATOR(pg_catalog.<>) 'disabled'",
	0, {InvalidOid}
};

/* How many fetched keys would change: new, different, or gone */
static StoreStmt stmt_jwks_changes = {
	"SELECT (SELECT pg_catalog.count(*)"
	" FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3)) AS r (kid, jwk)"
	" LEFT JOIN setstream.keys k ON k.stream OPERATOR(pg_catalog.=) $1"
	" AND k.kid OPERATOR(pg_catalog.=) r.kid"
	" WHERE k.kid IS NULL OR (k.origin OPERATOR(pg_catalog.=) 'jwks_uri'"
	" AND k.revoked_at IS NULL"
	" AND NOT k.jwk OPERATOR(pg_catalog.=) r.jwk::pg_catalog.jsonb))"
	" OPERATOR(pg_catalog.+) (SELECT pg_catalog.count(*) FROM setstream.keys k"
	" WHERE k.stream OPERATOR(pg_catalog.=) $1"
	" AND k.origin OPERATOR(pg_catalog.=) 'jwks_uri'"
	" AND NOT k.kid OPERATOR(pg_catalog.=) ANY ($2))",
	3, {TEXTOID, TEXTARRAYOID, TEXTARRAYOID}
};

static StoreStmt stmt_jwks_delete = {
	"DELETE FROM setstream.keys k WHERE k.stream OPERATOR(pg_catalog.=) $1"
	" AND k.origin OPERATOR(pg_catalog.=) 'jwks_uri'"
	" AND NOT k.kid OPERATOR(pg_catalog.=) ANY ($2)",
	2, {TEXTOID, TEXTARRAYOID}
};

/*
 * A kid that a key of origin 'sql' has is left to that key; a fetched key
 * revoked by revoke_key stays revoked while the JWK Set still lists it.
 */
static StoreStmt stmt_jwks_upsert = {
	"INSERT INTO setstream.keys AS k (stream, kid, purpose, kty, alg, jwk, origin)"
	" SELECT $1, r.kid, 'verify', r.kty, r.alg, r.jwk::pg_catalog.jsonb, 'jwks_uri'"
	" FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3),"
	" pg_catalog.unnest($4), pg_catalog.unnest($5)) AS r (kid, kty, alg, jwk)"
	" ON CONFLICT (stream, kid) DO UPDATE"
	" SET kty = EXCLUDED.kty, alg = EXCLUDED.alg, jwk = EXCLUDED.jwk"
	" WHERE k.origin OPERATOR(pg_catalog.=) 'jwks_uri' AND k.revoked_at IS NULL"
	" AND NOT k.jwk OPERATOR(pg_catalog.=) EXCLUDED.jwk",
	5, {TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID}
};

static StoreStmt stmt_jwks_outcome = {
	"INSERT INTO setstream.peer_jwks AS j (stream, fetched_at, expires_at,"
	" next_fetch_at, keys, failures, last_status, last_error, last_error_at,"
	" updated_at, uri)"
	" VALUES ($1, CASE WHEN $2 THEN $3 END, $4, $5, $6,"
	" CASE WHEN $2 THEN 0 ELSE 1 END, $7, $8, CASE WHEN $2 THEN NULL ELSE $3 END, $3, $9)"
	" ON CONFLICT (stream) DO UPDATE SET"
	" uri = $9,"
	" fetched_at = CASE WHEN $2 THEN $3 ELSE j.fetched_at END,"
	" expires_at = CASE WHEN $2 THEN $4 ELSE j.expires_at END,"
	" next_fetch_at = $5,"
	" keys = CASE WHEN $2 THEN $6 ELSE j.keys END,"
	" failures = CASE WHEN $2 THEN 0"
	" WHEN j.uri OPERATOR(pg_catalog.<>) $9 THEN 1"
	" ELSE j.failures OPERATOR(pg_catalog.+) 1 END,"
	" last_status = $7,"
	" last_error = CASE WHEN $2 THEN j.last_error ELSE $8 END,"
	" last_error_at = CASE WHEN $2 THEN j.last_error_at ELSE $3 END,"
	" updated_at = $3",
	9, {TEXTOID, BOOLOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
	INT4OID, INT4OID, TEXTOID, TEXTOID}
};

static void
read_jwks_source(void *row, int i, MemoryContext cxt)
{
	JwksSource *j = row;
	bool		isnull;
	Datum		d;

	j->stream = get_text(i, 1, cxt);
	j->uri = get_text(i, 2, cxt);
	d = get_datum(i, 3, &isnull);
	j->next_fetch_at = isnull ? 0 : DatumGetTimestampTz(d);
	d = get_datum(i, 4, &isnull);
	j->failures = isnull ? 0 : DatumGetInt32(d);
}

/* The streams with a peer_jwks_uri (not disabled), with their fetch state */
List *
store_jwks_sources(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *out;

	if (!store_schema_is_0_3())
		return NIL;
	spi_connect();
	run_as_owner(&stmt_jwks_sources, NULL, NULL, true);
	out = read_rows(sizeof(JwksSource), read_jwks_source, cxt);
	SPI_finish();
	return out;
}

/*
 * Make the stream's keys of origin 'jwks_uri' those of the fetched set;
 * nothing is written (and no cache dropped anywhere) when nothing
 * changed.  Returns whether something did.
 */
bool
store_jwks_replace(const char *stream, List *keys)
{
	int			n = list_length(keys);
	Datum	   *kids = palloc(sizeof(Datum) * (n + 1));
	Datum	   *ktys = palloc(sizeof(Datum) * (n + 1));
	Datum	   *algs = palloc(sizeof(Datum) * (n + 1));
	bool	   *algnull = palloc0(sizeof(bool) * (n + 1));
	Datum	   *jwks = palloc(sizeof(Datum) * (n + 1));
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int			i = 0;
	bool		isnull;
	bool		changed;
	ListCell   *lc;

	foreach(lc, keys)
	{
		JwksKey    *k = lfirst(lc);

		kids[i] = text_datum(k->kid);
		ktys[i] = text_datum(k->kty);
		algs[i] = k->alg ? text_datum(k->alg) : (Datum) 0;
		algnull[i] = k->alg == NULL;
		jwks[i] = text_datum(k->jwk);
		i++;
	}
	values[0] = text_datum(stream);
	values[1] = array_datum(kids, NULL, n, TEXTOID);
	values[2] = array_datum(jwks, NULL, n, TEXTOID);
	spi_connect();
	run_as_owner(&stmt_jwks_changes, values, nulls, true);
	changed = DatumGetInt64(get_datum(0, 1, &isnull)) > 0;
	if (changed)
	{
		run_as_owner(&stmt_jwks_delete, values, nulls, false);
		values[2] = array_datum(ktys, NULL, n, TEXTOID);
		values[3] = array_datum(algs, algnull, n, TEXTOID);
		values[4] = array_datum(jwks, NULL, n, TEXTOID);
		if (n > 0)
			run_as_owner(&stmt_jwks_upsert, values, nulls, false);
	}
	SPI_finish();
	return changed;
}

/* Record a fetch's outcome in setstream.peer_jwks */
void
store_jwks_outcome(const char *stream, const char *uri, const JwksOutcome *o)
{
	Datum		values[9];
	char		nulls[10];

	memset(nulls, ' ', sizeof(nulls));
	nulls[9] = '\0';
	values[8] = text_datum(uri);
	values[0] = text_datum(stream);
	values[1] = BoolGetDatum(o->ok);
	values[2] = TimestampTzGetDatum(o->now);
	values[3] = time_or_null(o->ok ? o->expires_at : 0, &nulls[3]);
	values[4] = time_or_null(o->next_fetch_at, &nulls[4]);
	values[5] = Int32GetDatum(o->ok ? o->keys : 0);
	values[6] = Int32GetDatum(o->status);
	values[7] = text_or_null(o->ok ? NULL : o->error, &nulls[7]);
	spi_connect();
	run_as_owner(&stmt_jwks_outcome, values, nulls, false);
	SPI_finish();
}

/* ---------------------------------------------------------------------
 * The poll client's sources (issue 17, set_source)
 * ---------------------------------------------------------------------
 */
static StoreStmt stmt_delete_source_secret = {
	"DELETE FROM setstream.source_secrets WHERE stream OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

static StoreStmt stmt_insert_source_secret = {
	"INSERT INTO setstream.source_secrets (stream, authorization_header)"
	" VALUES ($1, $2)",
	2, {TEXTOID, TEXTOID}
};

/*
 * The sources of streams that accept inbound SETs (set_inbound; a disabled
 * stream still does), with their secrets (read as the owner)
 */
static StoreStmt stmt_sources = {
	"SELECT so.stream, so.endpoint_url, 1, so.state, so.backoff_until,"
	" so.failures, so.auth_failures, c.authorization_header,"
	" so.suspended_reason"
	" FROM setstream.sources so"
	" JOIN setstream.streams s ON s.name OPERATOR(pg_catalog.=) so.stream"
	" LEFT JOIN setstream.source_secrets c"
	" ON c.stream OPERATOR(pg_catalog.=) so.stream"
	" WHERE so.method OPERATOR(pg_catalog.=) 'poll'"
	" AND s.inbound OPERATOR(pg_catalog.=) 'accept'",
	0, {InvalidOid}
};

/*
 * A source's state after an answer.  The endpoint_url must still be the
 * one polled: an answer to a poll made before set_source changed it is not
 * recorded.
 */
static StoreStmt stmt_source_state = {
	"UPDATE setstream.sources SET state = $3, backoff_until = $4,"
	" suspended_reason = $5, failures = $6, auth_failures = $7,"
	" last_status = $8, last_error = $9,"
	" received = received OPERATOR(pg_catalog.+) $10,"
	" rejected = rejected OPERATOR(pg_catalog.+) $11,"
	" polled_at = $12, updated_at = $12"
	" WHERE stream OPERATOR(pg_catalog.=) $1"
	" AND endpoint_url OPERATOR(pg_catalog.=) $2",
	12, {TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, INT4OID, INT4OID,
		INT4OID, TEXTOID, INT8OID, INT8OID, TIMESTAMPTZOID}
};

/* Store (header not NULL) or remove the source's Authorization header */
void
store_set_source_secret(const char *stream, const char *header)
{
	replace_secret(&stmt_delete_source_secret, &stmt_insert_source_secret,
				   stream, header);
}

/* Every source of a stream accepting inbound SETs, as PushStream * */
List *
store_sources(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *out;
	Oid			nsp = get_namespace_oid("setstream", true);

	/* older than 0.3.0: no sources */
	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("sources", nsp)))
		return NIL;
	spi_connect();
	run_as_owner(&stmt_sources, NULL, NULL, true);
	out = read_rows(sizeof(PushStream), read_push_stream, cxt);
	SPI_finish();
	return out;
}

/* Record a source's state and its last answer */
void
store_source_state(const PushStream *p, int last_status,
				   const char *last_error, int64 received, int64 rejected,
				   TimestampTz now)
{
	Datum		values[12];
	char		nulls[13];

	memset(nulls, ' ', sizeof(nulls));
	nulls[12] = '\0';
	values[0] = text_datum(p->stream);
	values[1] = text_datum(p->endpoint_url);
	values[2] = text_datum(p->state);
	values[3] = time_or_null(p->backoff_until, &nulls[3]);
	values[4] = text_or_null(p->suspended_reason, &nulls[4]);
	values[5] = Int32GetDatum(p->failures);
	values[6] = Int32GetDatum(p->auth_failures);
	values[7] = Int32GetDatum(last_status);
	values[8] = text_or_null(last_error, &nulls[8]);
	values[9] = Int64GetDatum(received);
	values[10] = Int64GetDatum(rejected);
	values[11] = TimestampTzGetDatum(now);
	spi_connect();
	run(&stmt_source_state, values, nulls, false);
	SPI_finish();
}

/* ---------------------------------------------------------------------
 * SSF receivers (issue 13): clients of the management API.  Both tables
 * are the extension owner's alone: every statement runs as the owner,
 * after the caller (receiverapi.c, or the listener's management
 * authentication) decided.
 * ---------------------------------------------------------------------
 */
static StoreStmt stmt_insert_receiver = {
	"INSERT INTO setstream.receivers (name, audience, max_streams, owner)"
	" VALUES ($1, $2, $3, $4::pg_catalog.regrole) ON CONFLICT DO NOTHING",
	4, {TEXTOID, TEXTARRAYOID, INT4OID, OIDOID}
};

static StoreStmt stmt_receiver_owner = {
	"SELECT owner::pg_catalog.oid FROM setstream.receivers"
	" WHERE name OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

static StoreStmt stmt_insert_receiver_token = {
	"INSERT INTO setstream.receiver_tokens (receiver, token_hash, scopes)"
	" VALUES ($1, $2, $3)",
	3, {TEXTOID, BYTEAOID, TEXTARRAYOID}
};

static StoreStmt stmt_receiver_tokens = {
	"SELECT token_hash, receiver,"
	" 'ssf.read' OPERATOR(pg_catalog.=) ANY (scopes),"
	" 'ssf.manage' OPERATOR(pg_catalog.=) ANY (scopes)"
	" FROM setstream.receiver_tokens",
	0, {InvalidOid}
};

static StoreStmt stmt_set_stream_receiver = {
	"UPDATE setstream.streams SET receiver = $2"
	" WHERE name OPERATOR(pg_catalog.=) $1",
	2, {TEXTOID, TEXTOID}
};

static StoreStmt stmt_receiver_stream = {
	"SELECT status FROM setstream.streams"
	" WHERE name OPERATOR(pg_catalog.=) $1 AND receiver OPERATOR(pg_catalog.=) $2",
	2, {TEXTOID, TEXTOID}
};

static StoreStmt stmt_set_status = {
	"SELECT (setstream.set_stream_status($1, $2)).status",
	2, {TEXTOID, TEXTOID}
};

/* From 0.4.0: a change the receiver asks for is not announced (issue 13) */
static StoreStmt stmt_set_status_quietly = {
	"SELECT (setstream._set_stream_status($1, $2, NULL, false)).status",
	2, {TEXTOID, TEXTOID}
};

/* Make a receiver; false when one of that name exists */
bool
store_insert_receiver(const char *name, List *audience, int max_streams,
					  Oid owner)
{
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		made;

	values[0] = text_datum(name);
	values[1] = audience != NIL ? text_array_datum(audience) : (Datum) 0;
	if (audience == NIL)
		nulls[1] = 'n';
	values[2] = Int32GetDatum(max_streams);
	if (max_streams <= 0)
		nulls[2] = 'n';
	values[3] = ObjectIdGetDatum(owner);
	spi_connect();
	run_as_owner(&stmt_insert_receiver, values, nulls, false);
	made = SPI_processed == 1;
	SPI_finish();
	return made;
}

/* The role owning a receiver; false when there is no such receiver */
bool
store_receiver_owner(const char *name, Oid *owner)
{
	Datum		values[1] = {text_datum(name)};
	bool		found;
	bool		isnull;

	spi_connect();
	run_as_owner(&stmt_receiver_owner, values, NULL, true);
	found = SPI_processed == 1;
	if (found)
		*owner = DatumGetObjectId(get_datum(0, 1, &isnull));
	SPI_finish();
	return found;
}

/* Keep the SHA-256 of a receiver's new token, with its scopes */
void
store_insert_receiver_token(const char *receiver, const uint8 *hash,
							List *scopes)
{
	bytea	   *b = palloc(VARHDRSZ + 32);
	Datum		values[3];

	SET_VARSIZE(b, VARHDRSZ + 32);
	memcpy(VARDATA(b), hash, 32);
	values[0] = text_datum(receiver);
	values[1] = PointerGetDatum(b);
	values[2] = text_array_datum(scopes);
	spi_connect();
	run_as_owner(&stmt_insert_receiver_token, values, NULL, false);
	SPI_finish();
}

/* Every receiver token (ReceiverToken), in the caller's memory */
List *
store_receiver_tokens(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *tokens = NIL;

	spi_connect();
	run_as_owner(&stmt_receiver_tokens, NULL, NULL, true);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		bytea	   *b = DatumGetByteaPP(get_datum(i, 1, &isnull));
		MemoryContext old;
		ReceiverToken *t;

		if (VARSIZE_ANY_EXHDR(b) != 32)
			continue;
		old = MemoryContextSwitchTo(cxt);
		t = palloc0(sizeof(ReceiverToken));
		memcpy(t->hash, VARDATA_ANY(b), 32);
		MemoryContextSwitchTo(old);
		t->receiver = get_text(i, 2, cxt);
		t->read = DatumGetBool(get_datum(i, 3, &isnull)) && !isnull;
		t->manage = DatumGetBool(get_datum(i, 4, &isnull)) && !isnull;
		tokens = lappend(tokens, t);
	}
	SPI_finish();
	return tokens;
}

static StoreStmt stmt_receiver_read_hashes = {
	"SELECT t.token_hash FROM setstream.receiver_tokens t"
	" JOIN setstream.streams s ON s.receiver OPERATOR(pg_catalog.=) t.receiver"
	" WHERE s.name OPERATOR(pg_catalog.=) $1"
	" AND 'ssf.read' OPERATOR(pg_catalog.=) ANY (t.scopes)",
	1, {TEXTOID}
};

/*
 * SHA-256 hashes of the ssf.read tokens of the stream's SSF receiver (none
 * before 0.3.0's schema), read as the owner: they open its poll endpoint
 */
List *
store_receiver_read_hashes(const char *stream)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		values[1] = {text_datum(stream)};
	List	   *hashes;

	if (!store_schema_is_0_3())
		return NIL;
	spi_connect();
	run_as_owner(&stmt_receiver_read_hashes, values, NULL, true);
	hashes = get_hashes(cxt);
	SPI_finish();
	return hashes;
}

/* Let the receiver's API reach the stream (receiver NULL: none) */
void
store_set_stream_receiver(const char *stream, const char *receiver)
{
	Datum		values[2];
	char		nulls[2] = {' ', ' '};

	values[0] = text_datum(stream);
	values[1] = receiver ? text_datum(receiver) : (Datum) 0;
	if (receiver == NULL)
		nulls[1] = 'n';
	spi_connect();
	run_as_owner(&stmt_set_stream_receiver, values, nulls, false);
	SPI_finish();
}

/*
 * The status of a stream of this receiver, in the caller's memory; NULL
 * when the stream does not exist or is not the receiver's.
 */
char *
store_receiver_stream_status(const char *stream, const char *receiver)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		values[2] = {text_datum(stream), text_datum(receiver)};
	char	   *status = NULL;

	spi_connect();
	run_as_owner(&stmt_receiver_stream, values, NULL, true);
	if (SPI_processed == 1)
		status = get_text(0, 1, cxt);
	SPI_finish();
	return status;
}

/* setstream.set_stream_status, as the extension owner */
void
store_set_stream_status(const char *stream, const char *status)
{
	Datum		values[2] = {text_datum(stream), text_datum(status)};

	spi_connect();
	run_as_owner(store_schema_is_0_4() ? &stmt_set_status_quietly :
				 &stmt_set_status, values, NULL, false);
	SPI_finish();
}

/* ---------------------------------------------------------------------
 * SSF status semantics (issue 13; 0.4.0 schema only: the callers check
 * store_schema_is_0_4)
 * ---------------------------------------------------------------------
 */

/* The receiver was active: at most one write a second */
static StoreStmt stmt_receiver_active = {
	"UPDATE setstream.receivers r SET active_at = pg_catalog.now()"
	" WHERE r.name OPERATOR(pg_catalog.=) $1"
	" AND (r.active_at IS NULL OR r.active_at OPERATOR(pg_catalog.<)"
	" (pg_catalog.now() OPERATOR(pg_catalog.-) '1 s'::pg_catalog.interval))",
	1, {TEXTOID}
};

/* The receiver of the stream polled it */
static StoreStmt stmt_stream_receiver_active = {
	"UPDATE setstream.receivers r SET active_at = pg_catalog.now()"
	" FROM setstream.streams s"
	" WHERE s.name OPERATOR(pg_catalog.=) $1"
	" AND r.name OPERATOR(pg_catalog.=) s.receiver"
	" AND (r.active_at IS NULL OR r.active_at OPERATOR(pg_catalog.<)"
	" (pg_catalog.now() OPERATOR(pg_catalog.-) '1 s'::pg_catalog.interval))",
	1, {TEXTOID}
};

/*
 * Note the receiver's activity (a management call: receiver set; a poll:
 * stream set), for the inactivity timeout
 */
void
store_receiver_active(const char *receiver, const char *stream)
{
	Datum		values[1];

	values[0] = text_datum(receiver != NULL ? receiver : stream);
	spi_connect();
	run_as_owner(receiver != NULL ? &stmt_receiver_active :
				 &stmt_stream_receiver_active, values, NULL, false);
	SPI_finish();
}

/*
 * A verification the receiver asks for: records it and queues the SET,
 * unless the last one was less than min_interval seconds ago (then
 * *retry_after is the seconds left and nothing is queued).  Returns false
 * when throttled.
 */
static StoreStmt stmt_verification_requested = {
	"UPDATE setstream.streams s SET verification_requested_at = pg_catalog.now()"
	" WHERE s.name OPERATOR(pg_catalog.=) $1"
	" AND (s.verification_requested_at IS NULL"
	" OR s.verification_requested_at OPERATOR(pg_catalog.<=) (pg_catalog.now()"
	" OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $2)))"
	" RETURNING 0",
	2, {TEXTOID, FLOAT8OID}
};

static StoreStmt stmt_verification_wait = {
	"SELECT pg_catalog.ceil(pg_catalog.date_part('epoch',"
	" (s.verification_requested_at OPERATOR(pg_catalog.+)"
	" pg_catalog.make_interval(secs => $2))"
	" OPERATOR(pg_catalog.-) pg_catalog.now()))::integer"
	" FROM setstream.streams s WHERE s.name OPERATOR(pg_catalog.=) $1",
	2, {TEXTOID, FLOAT8OID}
};

static StoreStmt stmt_control_event = {
	"SELECT setstream._control_event($1, $2, $3::pg_catalog.jsonb)",
	3, {TEXTOID, TEXTOID, TEXTOID}
};

/*
 * Queue an SSF verification SET on the stream (state NULL: none), as the
 * owner.  receiver_asked: the receiver asked for it (POST /ssf/verify),
 * refused (false, *retry_after set) within min_interval seconds of the
 * last such request.
 */
bool
store_ssf_verify(const char *stream, const char *state, bool receiver_asked,
				 int min_interval, int *retry_after)
{
	Datum		values[3];
	bool		isnull;
	json_t	   *event = json_object();
	char	   *text;

	*retry_after = 0;
	spi_connect();
	if (receiver_asked)
	{
		values[0] = text_datum(stream);
		values[1] = Float8GetDatum((double) min_interval);
		run_as_owner(&stmt_verification_requested, values, NULL, false);
		if (SPI_processed == 0)
		{
			run_as_owner(&stmt_verification_wait, values, NULL, true);
			if (SPI_processed == 1)
			{
				Datum		d = get_datum(0, 1, &isnull);

				*retry_after = isnull ? 1 : Max(DatumGetInt32(d), 1);
			}
			else
				*retry_after = 1;
			SPI_finish();
			return false;
		}
	}
	if (state != NULL)
		json_object_set_new(event, "state", json_string(state));
	text = json_dumps(event, JSON_COMPACT);
	json_decref(event);
	values[0] = text_datum(stream);
	values[1] = text_datum(SSF_EVENT_VERIFICATION_URI);
	values[2] = text_datum(text);
	run_as_owner(&stmt_control_event, values, NULL, false);
	SPI_finish();
	return true;
}

/* The inactivity duty (sender 0): how many streams it paused or disabled */
static StoreStmt stmt_ssf_inactivity = {
	"SELECT setstream._ssf_inactivity($1)",
	1, {INT4OID}
};

int
store_ssf_inactivity(int timeout_s)
{
	Datum		values[1] = {Int32GetDatum(timeout_s)};
	bool		isnull;
	int			n = 0;

	spi_connect();
	run_as_owner(&stmt_ssf_inactivity, values, NULL, false);
	if (SPI_processed == 1)
		n = DatumGetInt32(get_datum(0, 1, &isnull));
	SPI_finish();
	return n;
}

/* The stream configuration endpoint (/ssf/streams): as the owner */
static StoreStmt stmt_ssf_create_stream = {
	"SELECT setstream._ssf_create_stream($1, $2, $3, $4, $5, $6, $7, $8)::pg_catalog.text",
	8, {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTARRAYOID, TEXTOID, TEXTOID, TEXTOID}
};

static StoreStmt stmt_ssf_stream_config = {
	"SELECT setstream._ssf_stream_config($1, $2, $3)::pg_catalog.text",
	3, {TEXTOID, TEXTOID, TEXTOID}
};

static StoreStmt stmt_ssf_receiver_streams = {
	"SELECT setstream._ssf_receiver_streams($1, $2)::pg_catalog.text",
	2, {TEXTOID, TEXTOID}
};

static StoreStmt stmt_ssf_delete_stream = {
	"SELECT setstream._ssf_delete_stream($1, $2)",
	2, {TEXTOID, TEXTOID}
};

/* Run a statement of one text result as the owner; the text, or NULL */
static char *
owner_text_result(StoreStmt *st, Datum *values, const char *nulls,
				  bool read_only)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *out = NULL;

	spi_connect();
	run_as_owner(st, values, nulls, read_only);
	if (SPI_processed == 1)
		out = get_text(0, 1, cxt);
	SPI_finish();
	return out;
}

/*
 * Make a stream for the receiver (setstream._ssf_create_stream): its
 * configuration object as JSON text, or NULL when the receiver has
 * max_streams streams already.  NULL arguments: SQL NULL.
 */
char *
store_ssf_create_stream(const SsfNewStream *n)
{
	Datum		values[8];
	char		nulls[8];
	const char *texts[8] = {n->receiver, n->issuer, n->public_url,
	n->description, NULL, n->method, n->endpoint_url, n->authorization_header};

	for (int i = 0; i < 8; i++)
	{
		nulls[i] = ' ';
		values[i] = (Datum) 0;
		if (i == 4)
		{
			if (n->has_events_requested)
				values[i] = text_array_datum(n->events_requested);
			else
				nulls[i] = 'n';
		}
		else if (texts[i] != NULL)
			values[i] = text_datum(texts[i]);
		else
			nulls[i] = 'n';
	}
	return owner_text_result(&stmt_ssf_create_stream, values, nulls, false);
}

/* The receiver's stream's configuration as JSON text; NULL: not its */
char *
store_ssf_stream_config(const char *stream, const char *receiver,
						const char *public_url)
{
	Datum		values[3] = {text_datum(stream), text_datum(receiver),
	text_datum(public_url)};

	return owner_text_result(&stmt_ssf_stream_config, values, NULL, true);
}

/* Every stream of the receiver, a JSON array as text */
char *
store_ssf_receiver_streams(const char *receiver, const char *public_url)
{
	Datum		values[2] = {text_datum(receiver), text_datum(public_url)};

	return owner_text_result(&stmt_ssf_receiver_streams, values, NULL, true);
}

/* Drop the receiver's stream; false when it is not the receiver's */
bool
store_ssf_delete_stream(const char *stream, const char *receiver)
{
	Datum		values[2] = {text_datum(stream), text_datum(receiver)};
	char	   *out = owner_text_result(&stmt_ssf_delete_stream, values, NULL,
										false);

	return out != NULL && strcmp(out, "t") == 0;
}

/* ---------------------------------------------------------------------
 * SSF subjects, the emit filter, PATCH/PUT (issue 13; 0.4.0)
 * ---------------------------------------------------------------------
 */

static StoreStmt stmt_set_subject = {
	"SELECT setstream._set_subject($1, $2::pg_catalog.jsonb, $3, $4, $5)",
	5, {TEXTOID, TEXTOID, BOOLOID, BOOLOID, BOOLOID}
};

static StoreStmt stmt_stream_filter = {
	"SELECT f.events_delivered, f.has_receiver, f.subjects::pg_catalog.text"
	" FROM setstream._stream_filter($1) f",
	1, {TEXTOID}
};

static StoreStmt stmt_ssf_update_stream = {
	"SELECT setstream._ssf_update_stream($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
	" $11)::pg_catalog.text",
	11, {TEXTOID, TEXTOID, TEXTOID, BOOLOID, TEXTOID, BOOLOID, TEXTARRAYOID,
	BOOLOID, TEXTOID, TEXTOID, TEXTOID}
};

/*
 * Add (included) or remove a subject of the stream, as the owner; the
 * caller checked the right or the receiver.  subject: JSON object text.
 */
void
store_set_subject(const char *stream, const char *subject, bool included,
				  bool verified, bool keep_removed)
{
	Datum		values[5] = {text_datum(stream), text_datum(subject),
		BoolGetDatum(included), BoolGetDatum(verified),
	BoolGetDatum(keep_removed)};

	spi_connect();
	run_as_owner(&stmt_set_subject, values, NULL, false);
	SPI_finish();
}

/*
 * What emit needs to filter the stream's SETs (setstream._stream_filter);
 * false when the schema has no filters (before 0.4.0) or no such stream.
 * *events_delivered: NIL with *has_events false when the stream has no
 * events_requested; *subjects: the JSON text of [[subject, included], ...]
 * or NULL.
 */
bool
store_stream_filter(const char *stream, bool *has_events,
					List **events_delivered, bool *has_receiver,
					char **subjects)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		values[1] = {text_datum(stream)};
	bool		isnull;
	Datum		d;

	*has_events = false;
	*events_delivered = NIL;
	*has_receiver = false;
	*subjects = NULL;
	if (!store_schema_is_0_4())
		return false;
	spi_connect();
	run_as_owner(&stmt_stream_filter, values, NULL, true);
	if (SPI_processed != 1)
	{
		SPI_finish();
		return false;
	}
	d = get_datum(0, 1, &isnull);
	if (!isnull)
	{
		Datum	   *elems;
		int			n;
		MemoryContext old;

		*has_events = true;
		deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false,
						  TYPALIGN_INT, &elems, NULL, &n);
		old = MemoryContextSwitchTo(cxt);
		for (int i = 0; i < n; i++)
			*events_delivered = lappend(*events_delivered,
										TextDatumGetCString(elems[i]));
		MemoryContextSwitchTo(old);
	}
	*has_receiver = DatumGetBool(get_datum(0, 2, &isnull));
	get_datum(0, 3, &isnull);
	if (!isnull)
		*subjects = get_text(0, 3, cxt);
	SPI_finish();
	return true;
}

/*
 * PATCH or PUT of the receiver's stream (setstream._ssf_update_stream):
 * its configuration object as JSON text, or NULL when it is not the
 * receiver's.
 */
char *
store_ssf_update_stream(const SsfStreamUpdate *u)
{
	Datum		values[11];
	char		nulls[11];
	const char *texts[11] = {u->stream, u->receiver, u->public_url, NULL,
		u->description, NULL, NULL, NULL, u->method, u->endpoint_url,
	u->authorization_header};

	for (int i = 0; i < 11; i++)
	{
		nulls[i] = ' ';
		values[i] = (Datum) 0;
		if (texts[i] != NULL)
			values[i] = text_datum(texts[i]);
		else if (i != 3 && i != 5 && i != 7 && i != 6)
			nulls[i] = 'n';
	}
	values[3] = BoolGetDatum(u->set_description);
	values[5] = BoolGetDatum(u->set_events);
	if (u->has_events_requested)
		values[6] = text_array_datum(u->events_requested);
	else
		nulls[6] = 'n';
	values[7] = BoolGetDatum(u->set_delivery);
	return owner_text_result(&stmt_ssf_update_stream, values, nulls, false);
}

/* ---------------------------------------------------------------------
 * The SSF receiver's subscriptions (issue 13, subscribe)
 * ---------------------------------------------------------------------
 */
static StoreStmt stmt_delete_subscription_secret = {
	"DELETE FROM setstream.subscription_secrets"
	" WHERE stream OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

static StoreStmt stmt_insert_subscription_secret = {
	"INSERT INTO setstream.subscription_secrets (stream, credentials)"
	" VALUES ($1, $2::pg_catalog.jsonb)",
	2, {TEXTOID, TEXTOID}
};

/* The credentials (JSON text) and the cached OAuth access token */
static StoreStmt stmt_subscription_credentials = {
	"SELECT c.credentials::pg_catalog.text, c.access_token,"
	" c.access_token_expires_at"
	" FROM setstream.subscription_secrets c"
	" WHERE c.stream OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

static StoreStmt stmt_subscription_token = {
	"UPDATE setstream.subscription_secrets"
	" SET access_token = $2, access_token_expires_at = $3"
	" WHERE stream OPERATOR(pg_catalog.=) $1",
	3, {TEXTOID, TEXTOID, TIMESTAMPTZOID}
};

/* Store (credentials not NULL: JSON text) or remove a subscription's */
void
store_set_subscription_secret(const char *stream, const char *credentials)
{
	replace_secret(&stmt_delete_subscription_secret,
				   &stmt_insert_subscription_secret, stream, credentials);
}

/*
 * The credentials a subscription presents to its transmitter, as JSON
 * text, and its cached access token (NULL: none) and the time it is good
 * until, read as the owner; NULL without credentials.  palloc'd in the
 * caller's context.
 */
char *
store_subscription_credentials(const char *stream, char **access_token,
							   TimestampTz *expires_at)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		values[1];
	char	   *out = NULL;

	*access_token = NULL;
	*expires_at = 0;
	values[0] = text_datum(stream);
	spi_connect();
	run_as_owner(&stmt_subscription_credentials, values, NULL, true);
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d;

		out = get_text(0, 1, cxt);
		*access_token = get_text(0, 2, cxt);
		d = get_datum(0, 3, &isnull);
		*expires_at = isnull ? 0 : DatumGetTimestampTz(d);
	}
	SPI_finish();
	return out;
}

/*
 * The subscriptions whose poll client's OAuth access token wants renewing
 * (tokenrenew.c): OAuth credentials (not a static bearer token), a poll
 * source that is not suspended, and a token that is past the time it is
 * good until (its expiry less a margin), or none, or refused (the source
 * counts 401s).  Soonest first; read as the owner.
 */
static StoreStmt stmt_tokens_due = {
	"SELECT x.stream"
	" FROM setstream.subscription_secrets x"
	" JOIN setstream.sources so ON so.stream OPERATOR(pg_catalog.=) x.stream"
	" WHERE (x.credentials OPERATOR(pg_catalog.->) 'bearer') IS NULL"
	" AND so.method OPERATOR(pg_catalog.=) 'poll'"
	" AND so.state OPERATOR(pg_catalog.<>) 'suspended'"
	" AND (x.access_token_expires_at IS NULL"
	" OR x.access_token_expires_at OPERATOR(pg_catalog.<=) $1"
	" OR so.auth_failures OPERATOR(pg_catalog.>) 0)"
	" ORDER BY x.access_token_expires_at NULLS FIRST, x.stream LIMIT 100",
	1, {TIMESTAMPTZOID}
};

/* Those streams (char *) */
List *
store_tokens_due(TimestampTz now)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		values[1] = {TimestampTzGetDatum(now)};
	List	   *out = NIL;

	spi_connect();
	run_as_owner(&stmt_tokens_due, values, NULL, true);
	for (int i = 0; i < (int) SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		out = lappend(out, get_text(i, 1, cxt));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return out;
}

/* Cache (token NULL: forget) the subscription's OAuth access token */
void
store_subscription_token(const char *stream, const char *token,
						 TimestampTz expires_at)
{
	Datum		values[3];
	char		nulls[4] = "   ";

	values[0] = text_datum(stream);
	values[1] = token ? text_datum(token) : (Datum) 0;
	values[2] = TimestampTzGetDatum(expires_at);
	if (token == NULL)
		nulls[1] = nulls[2] = 'n';
	spi_connect();
	run_as_owner(&stmt_subscription_token, values, nulls, false);
	SPI_finish();
}
