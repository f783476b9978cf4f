/*-------------------------------------------------------------------------
 *
 * sqlapi.c
 *	  The SQL-callable functions of setstream: keys and tokens, receive and
 *	  ingest of inbound SETs, emit and emit_trigger, and RFC 8936 poll.
 *	  Each checks the caller's rights (privileges.c), then works through
 *	  jose/set/codec (checks), exchange (protocol operations) and store
 *	  (tables); signing and the emit batches are done here.
 *
 *	  Signing happens at emit, inside the emitting transaction: the outbox
 *	  keeps the signed token, so every redelivery is byte-identical and a
 *	  key rotated later does not change what is already queued.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "base/pg_builtins.h"
#include "setstream.h"

#include <openssl/rand.h>

#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "storage/proc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "base/digest.h"
#include "base/pg_compat.h"
#include "codec/commobj.h"
#include "store/emitbuf.h"
#include "store/emitfilter.h"
#include "exchange/exchange.h"
#include "jose/jose.h"
#include "sql/privileges.h"
#include "sql/ssfcontrol.h"
#include "set/set.h"
#include "store/store.h"
#include "shmem/jwksreq.h"
#include "shmem/stats.h"
#include "store/streamcache.h"
#include "store/xact.h"
#include "set/subject.h"
#include "shmem/wakeup.h"

PG_FUNCTION_INFO_V1(setstream_add_key);
PG_FUNCTION_INFO_V1(setstream_generate_key);
PG_FUNCTION_INFO_V1(setstream_issue_token);
PG_FUNCTION_INFO_V1(setstream_check_token);
PG_FUNCTION_INFO_V1(setstream_receive);
PG_FUNCTION_INFO_V1(setstream_ingest);
PG_FUNCTION_INFO_V1(setstream_emit);
PG_FUNCTION_INFO_V1(setstream_emit_trigger);
PG_FUNCTION_INFO_V1(setstream_poll);
PG_FUNCTION_INFO_V1(setstream_config_changed);
PG_FUNCTION_INFO_V1(setstream_outbox_row_valid);
PG_FUNCTION_INFO_V1(setstream_order_key);
PG_FUNCTION_INFO_V1(setstream_error_code);

#define TOKEN_PREFIX "sst_"

/* ---------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------
 */
static char *
jsonb_to_cstring(Jsonb *jb)
{
	return JsonbToCString(NULL, &jb->root, VARSIZE(jb));
}

static Datum
json_to_jsonb_datum(json_t *j)
{
	return DirectFunctionCall1(jsonb_in,
							   CStringGetDatum(json_dumps(j, JSON_COMPACT)));
}

/* Parse SQL-supplied JSON (jsonb text) with jansson */
static json_t *
sql_json(Jsonb *jb, const char *what)
{
	char	   *text = jsonb_to_cstring(jb);
	json_error_t jerr;
	json_t	   *j = json_loads(text, JSON_DECODE_ANY, &jerr);

	if (j == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s cannot be read: %s", what, jerr.text)));
	return j;
}

/*
 * The cached copy of a stream for an SQL function (inside a transaction):
 * a turn begins (store/xact.c: a re-created extension voids the cache),
 * stale entries go, and the stream is loaded on first use.
 */
static StreamInfo *
sql_stream(const char *name)
{
	if (xact_begin_turn() == XACT_NO_EXTENSION)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"%s\" does not exist", "setstream")));
	streamcache_check_generation();
	return streamcache_get(name, false, false);
}

/* The stream, after checking the caller's privilege on it */
static StreamInfo *
stream_for(const char *name, const char *privilege)
{
	privileges_require(name, privilege);
	return sql_stream(name);
}

/* ---------------------------------------------------------------------
 * Keys and tokens
 * ---------------------------------------------------------------------
 */

/* add_key(stream, jwk): register a peer's public key (or oct secret) */
Datum
setstream_add_key(PG_FUNCTION_ARGS)
{
	char	   *stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	json_t	   *jwk = sql_json(PG_GETARG_JSONB_P(1), "the JWK");
	char		err[256];
	char	   *kty;
	char	   *alg;
	bool		secret;
	const char *kid;
	char	   *text;
	char	   *public_text;

	privileges_require(stream, "manage");
	store_get_stream(stream);
	if (!jose_check_public_jwk(jwk, &kty, &alg, &secret, err, sizeof(err)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid JWK: %s", err)));
	/* a copy: setting "kid" below frees the string the JWK holds */
	kid = json_is_string(json_object_get(jwk, "kid")) ?
		pstrdup(json_string_value(json_object_get(jwk, "kid"))) :
		jose_thumbprint(jwk);
	json_object_set_new(jwk, "kid", json_string(kid));
	text = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
	if (jose_key_get(text) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid JWK: the key cannot be used"),
				 errdetail("The key material is not a valid %s key.", kty)));
	if (secret)
		json_object_del(jwk, "k");
	public_text = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);

	if (!store_insert_key(stream, kid, "verify", kty, alg, public_text,
						  secret ? text : NULL))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("stream \"%s\" already has a key with kid \"%s\"",
						stream, kid)));
	PG_RETURN_TEXT_P(cstring_to_text(kid));
}

/* generate_key(stream, alg): this database's signing key; returns public JWK */
Datum
setstream_generate_key(PG_FUNCTION_ARGS)
{
	char	   *stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *alg = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *public_json;
	char	   *private_json;
	char		err[256];
	SetFailure	f;
	json_t	   *pub;

	privileges_require(stream, "manage");
	store_get_stream(stream);
	if (!jose_generate(alg, &public_json, &private_json, err, sizeof(err)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", err),
				 errhint("Supported algorithms: ES256 (default), ES384, ES512, RS256, RS384, RS512, PS256, PS384, PS512, EdDSA.")));
	pub = jose_parse_json_object(public_json, strlen(public_json), "JWK",
								 NULL, &f);
	if (!store_insert_key(stream,
						  json_string_value(json_object_get(pub, "kid")),
						  "sign",
						  json_string_value(json_object_get(pub, "kty")),
						  alg, public_json, private_json))
		elog(ERROR, "generated key collides with an existing kid");
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(public_json)));
}

/* issue_token(stream): a new 256-bit bearer token; only its hash is kept */
Datum
setstream_issue_token(PG_FUNCTION_ARGS)
{
	char	   *stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	unsigned char raw[32];
	uint8		hash[32];
	char	   *token;

	privileges_require(stream, "manage");
	store_get_stream(stream);
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes for a token")));
	token = psprintf(TOKEN_PREFIX "%s", jose_b64url_encode(raw, sizeof(raw)));
	OPENSSL_cleanse(raw, sizeof(raw));
	digest_token(token, strlen(token), hash);
	store_insert_token(stream, hash);
	PG_RETURN_TEXT_P(cstring_to_text(token));
}

/* True when token is an active token of this stream (constant time) */
static bool
token_valid(const char *stream, const char *token, size_t len)
{
	return digest_token_in_list(store_token_hashes(stream), token, len);
}

Datum
setstream_check_token(PG_FUNCTION_ARGS)
{
	char	   *stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	text	   *token = PG_GETARG_TEXT_PP(1);

	/* a stream the caller may not manage answers false, like a missing one */
	if (!privileges_held(stream, "manage"))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(token_valid(stream, VARDATA_ANY(token),
										 VARSIZE_ANY_EXHDR(token)));
}

/* ---------------------------------------------------------------------
 * Inbound SETs
 * ---------------------------------------------------------------------
 */

/* receive(stream, set): verify and store one SET; returns its jti */
Datum
setstream_receive(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	text	   *token = PG_GETARG_TEXT_PP(1);
	StreamInfo *stream = stream_for(name, "receive");
	SetRules	rules = streamcache_rules(stream);
	ParsedSet	ps;
	SetFailure	f;

	if (stream->refuse_inbound)
	{
		stats_count_rejected(stream->name, SETERR_ACCESS_DENIED);
		seterr_raise(SETERR_ACCESS_DENIED, STREAM_REFUSES_INBOUND);
	}
	if (!set_verify(&rules, VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token), &ps, &f))
	{
		/*
		 * An unknown kid on a stream with a peer_jwks_uri asks for a refetch,
		 * as the listener does; while it is pending the SET is to be tried
		 * again (the listener's 503), not refused.  Not counted as rejected.
		 */
		if (exchange_key_pending(stream, &f))
			ereport(ERROR,
					(errcode(ERRCODE_SET_KEY_PENDING),
					 errmsg("key_pending: the key of this SET is being fetched from the stream's peer_jwks_uri"),
					 errdetail("%s", f.description),
					 errhint("Try again in %d seconds; the SET was not stored.",
							 JWKS_RETRY_AFTER_S)));
		stats_count_rejected(stream->name, f.code);
		seterr_raise(f.code, f.description);
	}
	store_insert_event(stream, &ps);
	stats_count_received(stream->name);
	PG_RETURN_TEXT_P(cstring_to_text(ps.jti));
}

/* ingest(stream, body): one pushpull Communication Object in, one out */
Datum
setstream_ingest(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *body = jsonb_to_cstring(PG_GETARG_JSONB_P(1));
	StreamInfo *stream;
	CommObj		obj;
	char		err[256];

	privileges_require(name, "deliver");
	stream = stream_for(name, "receive");
	if (!commobj_parse(body, strlen(body), &obj, err, sizeof(err)))
		seterr_raise(SETERR_INVALID_REQUEST, err);
	PG_RETURN_DATUM(json_to_jsonb_datum(exchange_ingest(stream, &obj, NULL)));
}

/* ---------------------------------------------------------------------
 * Outbound SETs
 * ---------------------------------------------------------------------
 */

/* A random (version 4) UUID in its text form */
static char *
new_jti(void)
{
	uint8		u[16];

	if (!pg_strong_random(u, sizeof(u)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random jti")));
	u[6] = (u[6] & 0x0f) | 0x40;
	u[8] = (u[8] & 0x3f) | 0x80;
	return psprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
					u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7],
					u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

static json_t *
audience_json(const StreamInfo *stream)
{
	json_t	   *aud;
	ListCell   *lc;

	if (list_length(stream->audience) == 1)
		return json_string(linitial(stream->audience));
	aud = json_array();
	foreach(lc, stream->audience)
		json_array_append_new(aud, json_string(lfirst(lc)));
	return aud;
}

/*
 * The emit filter (store/emitfilter.c): false, with a DEBUG1 message that
 * says why, when the stream does not take this SET (the README, "SSF
 * transmitter": a DEBUG1, not a NOTICE, so that an INSERT ... SELECT
 * through emit_trigger does not flood the client)
 */
static bool
emit_filter_passes(StreamInfo *stream, const char *event_type, json_t *subject)
{
	const char *why = NULL;

	if (emitfilter_allows(stream, event_type, subject, &why))
		return true;
	ereport(DEBUG1,
			(errmsg_internal("setstream: SET of type \"%s\" not emitted to stream \"%s\": %s",
							 event_type, stream->name, why)));
	return false;
}

/*
 * Sign and queue one SET; subject NULL means the stream itself (opaque id
 * = stream name, as SSF does for stream-level events).  SETs from
 * emit_trigger are stored in batches per statement (emitbuf.c).  Returns the jti, or
 * NULL when the stream is disabled (SSF: a disabled stream holds nothing)
 * or its emit filter leaves the SET out.
 */
static char *
emit_set_as(const char *name, const char *event_type, json_t *event,
			json_t *subject, const char *txn, bool from_trigger,
			bool control)
{
	StreamInfo *stream;
	SignKey    *key;
	JoseKey    *jk;
	SetFailure	f;
	json_t	   *claims = json_object();
	json_t	   *events = json_object();
	char	   *jti;
	StringInfoData payload;
	char	   *token;
	bool		subject_given;

	if (!control)
		privileges_require(name, "emit");
	stream = sql_stream(name);
	if (stream->status == 'd' && !control)
		return NULL;
	if (!uri_is_absolute(event_type))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event type \"%s\" is not a URI", event_type)));
	if (!json_is_object(event))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the event payload must be a JSON object")));
	subject_given = subject != NULL;
	if (subject == NULL)
	{
		subject = json_object();
		json_object_set_new(subject, "format", json_string("opaque"));
		json_object_set_new(subject, "id", json_string(stream->name));
	}
	if (!subject_validate(subject, "subject", &f))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid subject identifier: %s", f.description)));
	if (txn != NULL && txn[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("txn must be NULL or a non-empty string")));
	if (!emit_filter_passes(stream, event_type, subject_given ? subject : NULL))
		return NULL;

	key = streamcache_sign_key(stream);
	if (key == NULL && control)
		return NULL;
	if (key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream \"%s\" has no signing key", stream->name),
				 errhint("Create one with setstream.generate_key('%s').", stream->name)));
	jk = jose_key_get_cached(key->private_jwk, &key->imported,
							 &key->imported_generation);
	if (jk == NULL)
		elog(ERROR, "signing key \"%s\" of stream \"%s\" cannot be loaded",
			 key->kid, stream->name);

	jti = new_jti();
	json_object_set_new(claims, "iss", json_string(stream->issuer));
	json_object_set_new(claims, "aud", audience_json(stream));
	json_object_set_new(claims, "iat",
						json_integer((json_int_t) time(NULL)));
	json_object_set_new(claims, "jti", json_string(jti));
	json_object_set(claims, "sub_id", subject);
	json_object_set(events, event_type, event);
	json_object_set_new(claims, "events", events);
	if (txn != NULL)
		json_object_set_new(claims, "txn", json_string(txn));

	initStringInfo(&payload);
	json_write(&payload, claims);
	token = jose_sign(jk, key->alg, key->kid, payload.data, payload.len);
	if (from_trigger)
		emitbuf_add(stream->name, jti, event_type, payload.data, token);
	else if (control)
		store_insert_outbox_as_owner(stream->name, jti, event_type,
									 payload.data, token);
	else
		store_insert_outbox(stream->name, jti, event_type, payload.data, token);
	wakeup_note_emit(stream->name);
	return jti;
}

static char *
emit_set(const char *name, const char *event_type, json_t *event,
		 json_t *subject, const char *txn, bool from_trigger)
{
	return emit_set_as(name, event_type, event, subject, txn, from_trigger,
					   false);
}

/*
 * Queue an SSF stream event about the stream itself (issue 13:
 * stream-updated, verification): sub_id opaque = the stream's name,
 * signed with its key, inserted as the extension owner whatever the
 * stream's status.  The caller has checked the right to do so.  NULL when
 * the stream has no signing key.
 */
char *
sqlapi_emit_control(const char *name, const char *event_type, json_t *event)
{
	return emit_set_as(name, event_type, event, NULL, NULL, false, true);
}

/* emit(stream, event_type, event, subject, txn) */
Datum
setstream_emit(PG_FUNCTION_ARGS)
{
	char	   *jti;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream, event_type and event must not be NULL")));
	jti = emit_set(text_to_cstring(PG_GETARG_TEXT_PP(0)),
				   text_to_cstring(PG_GETARG_TEXT_PP(1)),
				   sql_json(PG_GETARG_JSONB_P(2), "the event payload"),
				   PG_ARGISNULL(3) ? NULL :
				   sql_json(PG_GETARG_JSONB_P(3), "the subject"),
				   PG_ARGISNULL(4) ? NULL :
				   text_to_cstring(PG_GETARG_TEXT_PP(4)), false);
	if (jti == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(jti));
}

static char *
row_value(HeapTuple tuple, TupleDesc tupdesc, const char *column,
		  const char *trigger)
{
	int			attnum = SPI_fnumber(tupdesc, column);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("trigger \"%s\": column \"%s\" does not exist",
						trigger, column)));
	return SPI_getvalue(tuple, tupdesc, attnum);
}

/*
 * emit_trigger(): AFTER ... FOR EACH ROW trigger.  Arguments: stream,
 * event type, subject format, the column holding the subject's value,
 * and optionally a json/jsonb column holding the event payload (default
 * {}).  The subject is {"format": F, <F's member>: NEW.column}; on DELETE
 * the old row is used.
 */
Datum
setstream_emit_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Trigger    *tg;
	HeapTuple	row;
	TupleDesc	tupdesc;
	const char *member;
	char	   *value;
	json_t	   *subject;
	json_t	   *event;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("emit_trigger() must be called as a trigger")));
	tg = td->tg_trigger;
	if (!TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\": emit_trigger() must be an AFTER ... FOR EACH ROW trigger",
						tg->tgname)));
	if (tg->tgnargs < 4 || tg->tgnargs > 5)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("trigger \"%s\": emit_trigger() takes 4 or 5 arguments",
						tg->tgname),
				 errhint("Arguments: stream, event type, subject format, subject column[, payload column].")));
	member = subject_member_for_format(tg->tgargs[2]);
	if (member == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("trigger \"%s\": subject format \"%s\" cannot be built from one column",
						tg->tgname, tg->tgargs[2]),
				 errhint("Use email, opaque, phone_number, account, did or uri.")));

	row = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	tupdesc = td->tg_relation->rd_att;
	value = row_value(row, tupdesc, tg->tgargs[3], tg->tgname);
	if (value == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("trigger \"%s\": subject column \"%s\" is NULL",
						tg->tgname, tg->tgargs[3])));
	subject = json_object();
	json_object_set_new(subject, "format", json_string(tg->tgargs[2]));
	json_object_set_new(subject, member, json_string(value));

	event = json_object();
	if (tg->tgnargs == 5)
	{
		char	   *payload = row_value(row, tupdesc, tg->tgargs[4], tg->tgname);
		json_error_t jerr;

		if (payload != NULL)
			event = json_loads(payload, 0, &jerr);
		if (!json_is_object(event))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("trigger \"%s\": payload column \"%s\" is not a JSON object",
							tg->tgname, tg->tgargs[4])));
	}

	emit_set(tg->tgargs[0], tg->tgargs[1], event, subject, NULL, true);
	return PointerGetDatum(NULL);
}

/* poll(stream, request): one RFC 8936 poll, answered at once */
Datum
setstream_poll(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *body = jsonb_to_cstring(PG_GETARG_JSONB_P(1));
	StreamInfo *stream = stream_for(name, "deliver");
	CommObj		req;
	char		err[256];
	bool		more;

	if (!commobj_parse_poll(body, strlen(body), &req, err, sizeof(err)))
		seterr_raise(SETERR_INVALID_REQUEST, err);
	PG_RETURN_DATUM(json_to_jsonb_datum(exchange_poll(stream, &req, &more)));
}

/*
 * Statement trigger on streams, keys, key_secrets, tokens and
 * client_certs: the listeners drop their cached copies when this
 * transaction commits.
 */
Datum
setstream_config_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("setstream._config_changed() must be called as a trigger")));
	wakeup_note_config();
	streamcache_invalidate();
	return PointerGetDatum(NULL);
}

/*
 * The outbox's state machine, as the one CHECK constraint of the table:
 * _outbox_row_valid(state, attempts, acked_at, err, failed_at).  A call of a C
 * function is a small expression tree; every INSERT prepares the table's
 * CHECKs anew, and the same rules as four SQL expressions cost about as
 * much as the rest of the INSERT of an emitted SET.
 *
 * state is one of pending, delivered, acked, failed; err and failed_at are
 * set exactly when failed, acked_at exactly when acked (so the due index's
 * predicate, on acked_at and failed_at, is "pending or delivered");
 * delivered rows have attempts > 0 (acked and failed may be reached
 * without a delivery, by an ack or error for a SET the peer got elsewhere).
 */
Datum
setstream_outbox_row_valid(PG_FUNCTION_ARGS)
{
	char	   *state;
	bool		failed;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	state = text_to_cstring(PG_GETARG_TEXT_PP(0));
	failed = strcmp(state, "failed") == 0;
	if (strcmp(state, "pending") != 0 && strcmp(state, "delivered") != 0 &&
		strcmp(state, "acked") != 0 && !failed)
		PG_RETURN_BOOL(false);
	if (failed != !PG_ARGISNULL(3) || failed != !PG_ARGISNULL(4))
		PG_RETURN_BOOL(false);
	if ((strcmp(state, "acked") == 0) != !PG_ARGISNULL(2))
		PG_RETURN_BOOL(false);
	if (strcmp(state, "delivered") == 0 &&
		(PG_ARGISNULL(1) || PG_GETARG_INT32(1) <= 0))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(true);
}

/*
 * setstream._order_key(): the outbox's seq (and a token's id) without a
 * node-local sequence.  The clock's microseconds shifted left 10 bits, the
 * low 10 bits the backend's number, and never less than this backend's
 * last value plus 1024 (the same low bits): strictly increasing within a
 * session whatever the clock does, oldest first across sessions and nodes
 * as far as their clocks agree, and no two sessions of one node draw the
 * same value.  Until 2285 it stays below 2^63.
 */
Datum
setstream_order_key(PG_FUNCTION_ARGS)
{
	static int64 last = 0;
	int64		id = MyProcNumberOrZero() & 1023;
	int64		now = (int64) GetCurrentTimestamp();
	int64		key = (now << 10) | id;

	if (key <= last)
		key = last + 1024;
	last = key;
	PG_RETURN_INT64(key);
}

/*
 * error_code(sqlstate): the RFC 8935 code of one of setstream's SQLSTATEs,
 * else NULL; from errors.c's table, the one mapping (0.3.0; before, a SQL
 * CASE copied it)
 */
Datum
setstream_error_code(PG_FUNCTION_ARGS)
{
	char	   *state = text_to_cstring(PG_GETARG_TEXT_PP(0));
	SetErr		code;

	if (strlen(state) != 5 || strspn(state, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 5)
		PG_RETURN_NULL();
	code = seterr_from_sqlstate(MAKE_SQLSTATE(state[0], state[1], state[2],
											  state[3], state[4]));
	if (code == SETERR_NONE)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(seterr_name(code)));
}
