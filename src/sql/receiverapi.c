/*-------------------------------------------------------------------------
 *
 * receiverapi.c
 *	  The SQL functions of SSF receivers (issue 13), the clients of the
 *	  listener's management API (server/ssf.c):
 *
 *	    create_receiver(name, audience, max_streams)    a receiver
 *	    issue_receiver_token(receiver, scopes)           its bearer token
 *	    set_stream_receiver(stream, receiver)            what it reaches
 *	    add_subject(stream, subject, verified)           SSF subjects
 *	    remove_subject(stream, subject)                  (0.4.0)
 *
 *	  A receiver belongs to the role that made it: only that role, a role
 *	  with its rights, or one that bypasses row-level security issues its
 *	  tokens and attaches streams to it; to any other role it "does not
 *	  exist" (42704), as a stream without rights does.  Tokens are 256
 *	  random bits, shown once; only their SHA-256 is kept.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "base/pg_builtins.h"


#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/jsonb.h"
#include "nodes/value.h"

#include "base/digest.h"
#include "base/streamname.h"
#include "codec/json.h"
#include "jose/jose.h"
#include "set/subject.h"
#include "sql/privileges.h"
#include "store/store.h"

PG_FUNCTION_INFO_V1(setstream_create_receiver);
PG_FUNCTION_INFO_V1(setstream_issue_receiver_token);
PG_FUNCTION_INFO_V1(setstream_set_stream_receiver);
PG_FUNCTION_INFO_V1(setstream_add_subject);
PG_FUNCTION_INFO_V1(setstream_remove_subject);

#define RECEIVER_TOKEN_PREFIX "ssr_"

/* Receiver names: what a stream name may be (letters, digits, . _ ~ -) */
static void
check_receiver_name(const char *name)
{
	size_t		len = strlen(name);

	if (!stream_name_valid(name, len))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid receiver name \"%s\"", name),
				 errdetail("A receiver name has 1 to 128 letters, digits, '.', '_', '~' or '-', and starts with a letter or digit.")));
}

/* The strings of a text[] argument; NULL elements and empty ones refused */
static List *
text_list(ArrayType *arr, const char *what)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *out = NIL;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *s;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain NULL", what)));
		s = TextDatumGetCString(elems[i]);
		if (*s == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must not contain an empty string", what)));
		out = lappend(out, s);
	}
	return out;
}

/*
 * The receiver, which must exist and be the caller's (42704 otherwise,
 * whether it is missing or another role's)
 */
static void
require_receiver_owner(const char *receiver)
{
	Oid			owner;

	if (!store_receiver_owner(receiver, &owner) ||
		(!privileges_caller_bypasses() && !has_privs_of_role(GetUserId(), owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("receiver \"%s\" does not exist", receiver)));
}

/* create_receiver(name, audience, max_streams) returns jsonb */
Datum
setstream_create_receiver(PG_FUNCTION_ARGS)
{
	char	   *name;
	List	   *audience = NIL;
	int			max_streams = 0;
	json_t	   *out;
	json_t	   *aud;
	ListCell   *lc;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("receiver name must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	check_receiver_name(name);
	if (!PG_ARGISNULL(1))
		audience = text_list(PG_GETARG_ARRAYTYPE_P(1), "audience");
	if (!PG_ARGISNULL(2))
	{
		max_streams = PG_GETARG_INT32(2);
		if (max_streams < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_streams must be at least 1, or NULL for no limit")));
	}
	if (!store_insert_receiver(name, audience, max_streams, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("receiver \"%s\" already exists", name)));

	out = json_object();
	json_object_set_new(out, "name", json_string(name));
	aud = json_array();
	foreach(lc, audience)
		json_array_append_new(aud, json_string(lfirst(lc)));
	json_object_set_new(out, "audience", audience != NIL ? aud : json_null());
	if (audience == NIL)
		json_decref(aud);
	json_object_set_new(out, "max_streams",
						max_streams > 0 ? json_integer(max_streams) : json_null());
	json_object_set_new(out, "owner",
						json_string(GetUserNameFromId(GetUserId(), false)));
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in,
										CStringGetDatum(json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS))));
}

/* issue_receiver_token(receiver, scopes) returns text, shown once */
Datum
setstream_issue_receiver_token(PG_FUNCTION_ARGS)
{
	char	   *receiver;
	List	   *scopes;
	List	   *uniq = NIL;
	ListCell   *lc;
	unsigned char raw[32];
	uint8		hash[32];
	char	   *token;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("receiver name must not be NULL")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scopes must not be NULL"),
				 errhint("Use ssf.read, ssf.manage or both.")));
	receiver = text_to_cstring(PG_GETARG_TEXT_PP(0));
	scopes = text_list(PG_GETARG_ARRAYTYPE_P(1), "scopes");
	if (scopes == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a receiver token needs at least one scope"),
				 errhint("Use ssf.read, ssf.manage or both.")));
	foreach(lc, scopes)
	{
		const char *s = lfirst(lc);

		if (strcmp(s, "ssf.read") != 0 && strcmp(s, "ssf.manage") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown receiver token scope \"%s\"", s),
					 errhint("Use ssf.read, ssf.manage or both.")));
		if (!list_member(uniq, makeString((char *) s)))
			uniq = lappend(uniq, makeString((char *) s));
	}
	require_receiver_owner(receiver);

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes for a token")));
	token = psprintf(RECEIVER_TOKEN_PREFIX "%s",
					 jose_b64url_encode(raw, sizeof(raw)));
	OPENSSL_cleanse(raw, sizeof(raw));
	digest_token(token, strlen(token), hash);
	scopes = NIL;
	foreach(lc, uniq)
		scopes = lappend(scopes, strVal(lfirst(lc)));
	store_insert_receiver_token(receiver, hash, scopes);
	PG_RETURN_TEXT_P(cstring_to_text(token));
}

/* set_stream_receiver(stream, receiver): NULL receiver detaches */
Datum
setstream_set_stream_receiver(PG_FUNCTION_ARGS)
{
	char	   *stream;
	char	   *receiver = NULL;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream name must not be NULL")));
	stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	privileges_require(stream, "manage");
	store_get_stream(stream);	/* 42704 when missing */
	if (!PG_ARGISNULL(1))
	{
		receiver = text_to_cstring(PG_GETARG_TEXT_PP(1));
		require_receiver_owner(receiver);
	}
	store_set_stream_receiver(stream, receiver);
	PG_RETURN_VOID();
}

/*
 * add_subject(stream, subject, verified) and remove_subject(stream,
 * subject): the manage right; the subject checked as a SET's sub_id is.
 * Under setstream.default_subjects ALL a removal is kept (the stream
 * delivers every subject not removed), under NONE it deletes the added one.
 */
static void
change_subject(FunctionCallInfo fcinfo, bool add)
{
	char	   *stream;
	char	   *jtext;
	json_t	   *subject;
	json_error_t jerr;
	SetFailure	f;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream name must not be NULL")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("subject must not be NULL")));
	stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	privileges_require(stream, "manage");
	store_get_stream(stream);	/* 42704 when missing */
	jtext = DatumGetCString(DirectFunctionCall1(jsonb_out, PG_GETARG_DATUM(1)));
	subject = json_loads(jtext, 0, &jerr);
	if (!json_is_object(subject))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid subject identifier: the subject must be a JSON object")));
	if (!subject_validate(subject, "subject", &f))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid subject identifier: %s", f.description)));
	store_set_subject(stream, json_dumps(subject, JSON_COMPACT | JSON_SORT_KEYS),
					  add, add && !PG_ARGISNULL(2) ? PG_GETARG_BOOL(2) : true,
					  setstream_default_subjects == SSF_DEFAULT_SUBJECTS_ALL);
}

Datum
setstream_add_subject(PG_FUNCTION_ARGS)
{
	change_subject(fcinfo, true);
	PG_RETURN_VOID();
}

Datum
setstream_remove_subject(PG_FUNCTION_ARGS)
{
	change_subject(fcinfo, false);
	PG_RETURN_VOID();
}
