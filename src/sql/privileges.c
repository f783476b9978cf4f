/*-------------------------------------------------------------------------
 *
 * privileges.c
 *	  Rights per stream.  A stream's owner (the role that created it) holds
 *	  every right on it and may grant them to other roles: emit, receive,
 *	  read, deliver, manage (grant_stream, revoke_stream).  A role that is a
 *	  superuser, owns setstream's tables or has BYPASSRLS holds every right
 *	  on every stream; the listener's role (setstream_worker) is one.
 *
 *	  The SQL-callable functions check the caller's right first
 *	  (privileges_require): a stream on which it holds no right at all
 *	  "does not exist" (42704), exactly like a missing one; one it holds
 *	  another right on is 42501.  Row-level security on every table (the
 *	  policies call setstream._streams_with) enforces the same for plain SQL.
 *
 *	  Rights are decided for the current user (GetUserId(), so SET ROLE and
 *	  SECURITY DEFINER functions count) on every call, never cached across
 *	  transactions or roles; the one-entry cache below serves the rows of one
 *	  statement (emit_trigger) within one transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "base/pg_builtins.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"
#include "utils/syscache.h"

#include "base/pg_compat.h"
#include "sql/privileges.h"
#include "store/store.h"

PG_FUNCTION_INFO_V1(setstream_streams_with);
PG_FUNCTION_INFO_V1(setstream_has_stream_privilege);
PG_FUNCTION_INFO_V1(setstream_require);
PG_FUNCTION_INFO_V1(setstream_holds_role);
PG_FUNCTION_INFO_V1(setstream_grant_stream);
PG_FUNCTION_INFO_V1(setstream_revoke_stream);
PG_FUNCTION_INFO_V1(setstream_allow_stream_creation);

static const char *const privilege_names[] = {
	"emit", "receive", "read", "deliver", "manage", NULL
};

/*
 * The table and function privileges each right needs, granted by
 * grant_stream (%s: the quoted role).  Row-level security limits them to
 * the streams the role holds the right on.
 */
static const char *const grants_common[] = {
	"GRANT USAGE ON SCHEMA setstream TO %s",
	"GRANT SELECT ON setstream.streams, setstream.keys, setstream.stream_grants,"
	" setstream.events, setstream.outbox, setstream.stats TO %s",
	"GRANT EXECUTE ON FUNCTION setstream.stream_counters(), setstream.listener_stats(),"
	" setstream._holds_role(oid), setstream.jwks() TO %s",
	"GRANT SELECT ON setstream.deliveries TO %s",
	NULL
};
static const char *const grants_emit[] = {
	"GRANT INSERT ON setstream.outbox TO %s",
	"GRANT EXECUTE ON FUNCTION setstream.emit(text, text, jsonb, jsonb, text),"
	" setstream.emit_trigger() TO %s",
	NULL
};
static const char *const grants_receive[] = {
	"GRANT SELECT, INSERT ON setstream.events TO %s",
	"GRANT EXECUTE ON FUNCTION setstream.receive(text, text),"
	" setstream.ingest(text, jsonb) TO %s",
	NULL
};
static const char *const grants_read[] = {
	"GRANT SELECT ON setstream.events, setstream.outbox TO %s",
	NULL
};
static const char *const grants_deliver[] = {
	"GRANT SELECT, UPDATE ON setstream.outbox TO %s",
	"GRANT EXECUTE ON FUNCTION setstream.poll(text, jsonb),"
	" setstream.ingest(text, jsonb) TO %s",
	NULL
};
static const char *const grants_manage[] = {
	/* not owner (the owner's to give) nor name (the key of everything) */
	"GRANT UPDATE (issuer, audience, peer_issuer, profile, allow_unsigned, status,"
	" client_auth) ON setstream.streams TO %s",
	"GRANT DELETE ON setstream.streams TO %s",
	"GRANT INSERT, UPDATE, DELETE ON setstream.keys TO %s",
	"GRANT SELECT, INSERT, UPDATE, DELETE ON setstream.tokens,"
	" setstream.client_certs TO %s",
	"GRANT SELECT, DELETE ON setstream.events, setstream.outbox TO %s",
	"GRANT EXECUTE ON FUNCTION setstream.add_key(text, jsonb),"
	" setstream.generate_key(text, text), setstream.revoke_key(text, text),"
	" setstream.issue_token(text), setstream.check_token(text, text),"
	" setstream.revoke_token(text, text), setstream.revoke_token(text, bigint),"
	" setstream.revoke_token_hash(text, text),"
	" setstream.bind_client_cert(text, text),"
	" setstream.unbind_client_cert(text, text),"
	" setstream.set_stream_status(text, text), setstream.enable_stream(text),"
	" setstream.disable_stream(text), setstream.drop_stream(text),"
	" setstream.purge_outbox(interval, text) TO %s",
	/* outbound delivery (issue 17) */
	"GRANT INSERT, UPDATE, DELETE ON setstream.deliveries TO %s",
	"GRANT UPDATE ON setstream.outbox TO %s",
	"GRANT EXECUTE ON FUNCTION setstream.set_delivery(text, text, text, text, integer),"
	" setstream.resume_delivery(text), setstream.redeliver(text, text[]),"
	" setstream._set_delivery_secret(text, text), setstream._wake_sender(text) TO %s",
	NULL
};
static const char *const grants_create[] = {
	"GRANT INSERT ON setstream.streams TO %s",
	NULL
};

static const char *const *const grants_by_privilege[] = {
	grants_emit, grants_receive, grants_read, grants_deliver, grants_manage
};

#define MANAGE_INDEX 4

/*
 * What changed with 0.3.0 (issue 17: peer keys from a jwks_uri, so
 * alter_stream and create_stream take peer_jwks_uri, and the poll client's
 * sources; issue 13: set_inbound, rotate_key and a forced revoke_key): granted in the schema the extension
 * has, so that an extension not yet updated still grants what it has.
 */
static const char *const grants_common_0_3[] = {
	"GRANT SELECT ON setstream.peer_jwks, setstream.sources TO %s",
	NULL
};
static const char *const grants_manage_0_3[] = {
	"GRANT UPDATE (peer_jwks_uri, inbound) ON setstream.streams TO %s",
	"GRANT EXECUTE ON FUNCTION setstream.set_inbound(text, text) TO %s",
	/* the poll client's sources (set_source) */
	"GRANT INSERT, UPDATE, DELETE ON setstream.sources TO %s",
	"GRANT EXECUTE ON FUNCTION setstream.set_source(text, text, text, text),"
	" setstream._set_source_secret(text, text) TO %s",
	"GRANT EXECUTE ON FUNCTION"
	" setstream.alter_stream(text, text, text[], text, text, boolean, text, text) TO %s",
	/* key rotation (issue 13) */
	"GRANT EXECUTE ON FUNCTION setstream.rotate_key(text, text),"
	" setstream.revoke_key(text, text, boolean) TO %s",
	/* SSF: the receiver whose management API reaches the stream */
	"GRANT EXECUTE ON FUNCTION setstream.set_stream_receiver(text, text) TO %s",
	NULL
};
/*
 * What 0.4.0 adds (issue 13: SSF subjects, status semantics; setstream as an
 * SSF receiver, subscribe): granted only in a schema updated to it (store_schema_is_0_4)
 */
static const char *const grants_common_0_4[] = {
	"GRANT SELECT ON setstream.subscriptions TO %s",
	NULL
};
static const char *const grants_manage_0_4[] = {
	"GRANT EXECUTE ON FUNCTION setstream.add_subject(text, jsonb, boolean),"
	" setstream.remove_subject(text, jsonb) TO %s",
	"GRANT INSERT, UPDATE, DELETE ON setstream.subscriptions TO %s",
	"GRANT EXECUTE ON FUNCTION"
	" setstream.subscribe(text, text, text, text[], jsonb),"
	" setstream.unsubscribe(text), setstream.request_verification(text),"
	" setstream._set_subscription_secret(text, text),"
	" setstream._ssf_call(text, text, text, text, boolean),"
	" setstream._ssf_source_token(text),"
	" setstream._ssf_answer(integer, text, text, text, integer[]) TO %s",
	/* SSF status semantics */
	"GRANT EXECUTE ON FUNCTION setstream.verify_stream(text, text),"
	" setstream._set_stream_status(text, text, text, boolean),"
	" setstream._control_event(text, text, jsonb) TO %s",
	/* the receiver reads and changes its stream at the transmitter */
	"GRANT EXECUTE ON FUNCTION setstream._subscription_row(text),"
	" setstream._subscription_config_answer(setstream.subscriptions, jsonb),"
	" setstream.subscription_config(text),"
	" setstream.update_subscription(text, jsonb, boolean),"
	" setstream._subscription_status_answer(setstream.subscriptions, jsonb),"
	" setstream.subscription_status(text),"
	" setstream.set_subscription_status(text, text, text) TO %s",
	NULL
};
static const char *const grants_manage_0_2[] = {
	"GRANT EXECUTE ON FUNCTION"
	" setstream.alter_stream(text, text, text[], text, text, boolean, text) TO %s",
	NULL
};
static const char *const grants_create_0_3[] = {
	"GRANT EXECUTE ON FUNCTION"
	" setstream.create_stream(text, text, text[], text, text, boolean, text, text) TO %s",
	/* SSF receivers: clients of the management API */
	"GRANT EXECUTE ON FUNCTION setstream.create_receiver(text, text[], integer),"
	" setstream.issue_receiver_token(text, text[]) TO %s",
	NULL
};
static const char *const grants_create_0_2[] = {
	"GRANT EXECUTE ON FUNCTION"
	" setstream.create_stream(text, text, text[], text, text, boolean, text) TO %s",
	NULL
};

/* Index of a privilege name in privilege_names; raises 22023 if unknown */
static int
privilege_index(const char *name)
{
	for (int i = 0; privilege_names[i] != NULL; i++)
		if (strcmp(name, privilege_names[i]) == 0)
			return i;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown stream privilege \"%s\"", name),
			 errhint("Use emit, receive, read, deliver or manage.")));
	return -1;					/* keep the compiler quiet */
}

/*
 * Does the current user bypass row-level security on setstream's tables
 * (superuser, their owner, BYPASSRLS)?  Then it holds every right.
 */
static bool
caller_bypasses(void)
{
	Oid			nsp = get_namespace_oid("setstream", false);
	Oid			rel = get_relname_relid("streams", nsp);

	if (!OidIsValid(rel))
		elog(ERROR, "setstream.streams is missing");
	/* the SQL of 0.1.0 (ALTER EXTENSION setstream UPDATE not run yet) */
	if (!OidIsValid(get_relname_relid("stream_grants", nsp)))
		return true;
	return check_enable_rls(rel, InvalidOid, true) != RLS_ENABLED;
}

/* Is "right" held by the current user for "privilege" (NULL: any)? */
static bool
right_grants(const StreamRight *right, const char *privilege)
{
	if (!has_privs_of_role(GetUserId(), right->role))
		return false;
	return strcmp(right->privilege, "owner") == 0 || privilege == NULL ||
		strcmp(right->privilege, privilege) == 0;
}

/*
 * Does the current user hold "privilege" (NULL: any right) on "stream"?
 * *any tells whether it holds any right there (false for a stream that
 * does not exist).  A role that bypasses row-level security holds every
 * right on every stream; whether the stream exists is then the caller's
 * next question (the SQL API raises 42704 for a missing one).
 */
static bool
holds(const char *stream, const char *privilege, bool *any)
{
	ListCell   *lc;
	bool		held = false;

	*any = caller_bypasses();
	if (*any)
		return true;
	foreach(lc, store_stream_rights(stream))
	{
		StreamRight *r = lfirst(lc);

		if (right_grants(r, NULL))
			*any = true;
		if (right_grants(r, privilege))
			held = true;
	}
	return held;
}

/*
 * The names of the streams on which the current user holds "privilege"
 * (NULL: any right), as its grants and ownerships say (no bypass here).
 * store_stream_rights lists each stream's rows together.
 */
static List *
streams_held(const char *privilege)
{
	List	   *names = NIL;
	ListCell   *lc;
	const char *last = NULL;

	foreach(lc, store_stream_rights(NULL))
	{
		StreamRight *r = lfirst(lc);

		if (last != NULL && strcmp(last, r->stream) == 0)
			continue;
		if (right_grants(r, privilege))
		{
			names = lappend(names, r->stream);
			last = r->stream;
		}
	}
	return names;
}

/* One-entry cache: the last right found held, in this transaction */
static struct
{
	LocalTransactionId lxid;
	Oid			userid;
	int			privilege;
	char		stream[NAMEDATALEN * 2 + 1];
}			last_held;

/* Rights changed in this transaction: decide again */
static void
forget_held(void)
{
	last_held.lxid = InvalidLocalTransactionId;
}

/*
 * Raise unless the current user holds "privilege" on "stream": 42704 when
 * it holds nothing there (or the stream does not exist), 42501 otherwise.
 */
void
privileges_require(const char *stream, const char *privilege)
{
	int			index = privilege_index(privilege);
	bool		any;

	if (stream == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stream name must not be NULL")));
	if (last_held.lxid == MyProcLocalTransactionId() && last_held.userid == GetUserId() &&
		last_held.privilege == index && strcmp(last_held.stream, stream) == 0)
		return;
	if (holds(stream, privilege, &any))
	{
		if (strlen(stream) < sizeof(last_held.stream))
		{
			last_held.lxid = MyProcLocalTransactionId();
			last_held.userid = GetUserId();
			last_held.privilege = index;
			strlcpy(last_held.stream, stream, sizeof(last_held.stream));
		}
		return;
	}
	if (!any)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" does not exist", stream)));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for stream \"%s\"", stream),
			 errdetail("Role \"%s\" does not hold the %s right on it.",
					   GetUserNameFromId(GetUserId(), false), privilege),
			 errhint("The stream's owner can give it with setstream.grant_stream().")));
}

/* Does the current user hold "privilege" on "stream" (false if missing)? */
bool
privileges_held(const char *stream, const char *privilege)
{
	bool		any;

	(void) privilege_index(privilege);
	return holds(stream, privilege, &any);
}

/* setstream._streams_with(privilege): streams the current user holds it on */
Datum
setstream_streams_with(PG_FUNCTION_ARGS)
{
	const char *privilege = NULL;
	List	   *names;
	ListCell   *lc;
	Datum	   *elems;
	int			n = 0;

	if (!PG_ARGISNULL(0))
	{
		privilege = text_to_cstring(PG_GETARG_TEXT_PP(0));
		(void) privilege_index(privilege);
	}
	names = streams_held(privilege);
	elems = palloc(sizeof(Datum) * (list_length(names) + 1));
	foreach(lc, names)
		elems[n++] = CStringGetTextDatum((char *) lfirst(lc));
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, TEXTOID, -1, false,
										  TYPALIGN_INT));
}

/*
 * The names of the streams the current user may see (holds any right on),
 * or *all = true when it sees every stream.
 */
List *
privileges_visible_streams(bool *all)
{
	*all = caller_bypasses();
	return *all ? NIL : streams_held(NULL);
}

/* Does the current user bypass row-level security (every right)? */
bool
privileges_caller_bypasses(void)
{
	return caller_bypasses();
}

/* setstream.has_stream_privilege(stream, privilege) */
Datum
setstream_has_stream_privilege(PG_FUNCTION_ARGS)
{
	char	   *stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *privilege = text_to_cstring(PG_GETARG_TEXT_PP(1));
	bool		any;

	(void) privilege_index(privilege);
	if (caller_bypasses())
		PG_RETURN_BOOL(store_find_stream(stream) != NULL);
	PG_RETURN_BOOL(holds(stream, privilege, &any));
}

/* setstream._require(stream, privilege) */
Datum
setstream_require(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(1))
		elog(ERROR, "setstream._require: privilege is NULL");
	privileges_require(PG_ARGISNULL(0) ? NULL :
					   text_to_cstring(PG_GETARG_TEXT_PP(0)),
					   text_to_cstring(PG_GETARG_TEXT_PP(1)));
	PG_RETURN_VOID();
}

/* setstream._holds_role(role): has the current user the rights of role? */
Datum
setstream_holds_role(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(has_privs_of_role(GetUserId(), PG_GETARG_OID(0)));
}

/* The privilege names of a text[] argument, each checked */
static List *
privilege_list(ArrayType *arr)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *out = NIL;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no privilege named"),
				 errhint("Use emit, receive, read, deliver or manage.")));
	for (int i = 0; i < n; i++)
	{
		char	   *p;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a privilege must not be NULL")));
		p = TextDatumGetCString(elems[i]);
		(void) privilege_index(p);
		out = lappend(out, p);
	}
	return out;
}

/* Run each GRANT of "grants" for "role" as the extension owner */
static void
run_grants(const char *const *grants, Oid role)
{
	const char *quoted = quote_identifier(GetUserNameFromId(role, false));

	for (int i = 0; grants[i] != NULL; i++)
		store_grant_as_owner(psprintf(grants[i], quoted));
}

/* The grants every right brings */
static void
run_common_grants(Oid role)
{
	run_grants(grants_common, role);
	if (store_schema_is_0_3())
		run_grants(grants_common_0_3, role);
	if (store_schema_is_0_4())
		run_grants(grants_common_0_4, role);
}

/* The grants of one right (an index into grants_by_privilege) */
static void
run_right_grants(int index, Oid role)
{
	run_grants(grants_by_privilege[index], role);
	if (index == MANAGE_INDEX)
	{
		run_grants(store_schema_is_0_3() ? grants_manage_0_3 : grants_manage_0_2, role);
		if (store_schema_is_0_4())
			run_grants(grants_manage_0_4, role);
	}
}

/*
 * Only the stream's owner (a role whose rights the caller has) or a role
 * that bypasses row-level security may give and take rights on a stream.
 */
static void
require_stream_owner(const char *stream)
{
	List	   *rights;
	bool		any;

	if (caller_bypasses())
	{
		store_get_stream(stream);	/* 42704 when missing */
		return;
	}
	rights = store_stream_rights(stream);
	if (rights != NIL &&
		has_privs_of_role(GetUserId(), ((StreamRight *) linitial(rights))->role))
		return;
	(void) holds(stream, NULL, &any);
	if (!any)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" does not exist", stream)));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("only the owner of stream \"%s\" may grant or revoke rights on it",
					stream)));
}

static void
check_grantee(Oid role)
{
	if (!OidIsValid(role) || !SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(role)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u does not exist", role)));
}

/* grant_stream(stream, grantee, privileges) */
Datum
setstream_grant_stream(PG_FUNCTION_ARGS)
{
	char	   *stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			role = PG_GETARG_OID(1);
	List	   *privileges = privilege_list(PG_GETARG_ARRAYTYPE_P(2));
	ListCell   *lc;

	check_grantee(role);
	require_stream_owner(stream);
	store_change_grants(stream, role, privileges, true);
	forget_held();
	run_common_grants(role);
	foreach(lc, privileges)
		run_right_grants(privilege_index(lfirst(lc)), role);
	PG_RETURN_VOID();
}

/*
 * revoke_stream(stream, grantee, privileges): the table privileges stay
 * (other streams may need them); row-level security hides this stream.
 */
Datum
setstream_revoke_stream(PG_FUNCTION_ARGS)
{
	char	   *stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			role = PG_GETARG_OID(1);
	List	   *privileges = privilege_list(PG_GETARG_ARRAYTYPE_P(2));

	require_stream_owner(stream);
	store_change_grants(stream, role, privileges, false);
	forget_held();
	PG_RETURN_VOID();
}

/* allow_stream_creation(grantee): may create streams, and use its own */
Datum
setstream_allow_stream_creation(PG_FUNCTION_ARGS)
{
	Oid			role = PG_GETARG_OID(0);

	check_grantee(role);
	if (!caller_bypasses())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to let roles create streams"),
				 errdetail("Only the extension's owner, a superuser or a role with BYPASSRLS may.")));
	run_common_grants(role);
	run_grants(grants_create, role);
	run_grants(store_schema_is_0_3() ? grants_create_0_3 : grants_create_0_2, role);
	for (int i = 0; i < lengthof(grants_by_privilege); i++)
		run_right_grants(i, role);
	PG_RETURN_VOID();
}
