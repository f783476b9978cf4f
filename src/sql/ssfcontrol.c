/*-------------------------------------------------------------------------
 *
 * ssfcontrol.c
 *	  The SQL functions that queue SSF stream events about a stream itself
 *	  (issue 13): setstream._control_event (stream-updated from
 *	  _set_stream_status, verification after a create or a re-enable) and
 *	  setstream.verify_stream.  Both need the manage privilege on the
 *	  stream; the SET is signed with the stream's key and queued as the
 *	  extension owner (sqlapi_emit_control), so that the manage right is
 *	  enough without the emit right.  The subject is always the stream:
 *	  sub_id {"format": "opaque", "id": <stream name>}.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "base/pg_builtins.h"

#include "fmgr.h"
#include "utils/jsonb.h"

#include "sql/privileges.h"
#include "sql/ssfcontrol.h"
#include "store/streamcache.h"
#include "store/xact.h"

PG_FUNCTION_INFO_V1(setstream_control_event);
PG_FUNCTION_INFO_V1(setstream_verify_stream);

static Datum
jti_datum(char *jti, FunctionCallInfo fcinfo)
{
	if (jti == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(jti));
}

/* _control_event(stream, event_type, event): NULL without a signing key */
Datum
setstream_control_event(PG_FUNCTION_ARGS)
{
	char	   *stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *event_type = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *text = JsonbToCString(NULL, &PG_GETARG_JSONB_P(2)->root, -1);
	json_error_t jerr;
	json_t	   *event;

	if (strcmp(event_type, SSF_EVENT_STREAM_UPDATED) != 0 &&
		strcmp(event_type, SSF_EVENT_VERIFICATION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not an SSF stream event type", event_type),
				 errhint("Use emit() for other events.")));
	privileges_require(stream, "manage");
	event = json_loads(text, 0, &jerr);
	if (event == NULL || !json_is_object(event))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the event payload must be a JSON object")));
	return jti_datum(sqlapi_emit_control(stream, event_type, event), fcinfo);
}

/*
 * verify_stream(stream, state): a verification SET, state echoed when
 * given; NULL when the stream is disabled (SSF: nothing is held then)
 */
Datum
setstream_verify_stream(PG_FUNCTION_ARGS)
{
	char	   *stream;
	json_t	   *event = json_object();
	char	   *jti;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream must not be NULL")));
	stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	privileges_require(stream, "manage");
	if (xact_begin_turn() == XACT_NO_EXTENSION)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"%s\" does not exist", "setstream")));
	streamcache_check_generation();
	if (streamcache_get(stream, false, false)->status == 'd')
		PG_RETURN_NULL();
	if (!PG_ARGISNULL(1))
		json_object_set_new(event, "state",
							json_string(text_to_cstring(PG_GETARG_TEXT_PP(1))));
	jti = sqlapi_emit_control(stream, SSF_EVENT_VERIFICATION, event);
	if (jti == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream \"%s\" has no signing key", stream),
				 errhint("Create one with setstream.generate_key('%s').", stream)));
	return jti_datum(jti, fcinfo);
}
