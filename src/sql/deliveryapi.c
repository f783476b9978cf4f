/*-------------------------------------------------------------------------
 *
 * deliveryapi.c
 *	  SQL-callable helpers of outbound delivery (issue 17): storing a push
 *	  stream's Authorization header where only the extension owner reads
 *	  it, and waking the sender.  set_delivery, resume_delivery and
 *	  redeliver themselves are PL/pgSQL (setstream--0.1.0--0.2.0.sql).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "base/pg_builtins.h"

#include "sql/privileges.h"
#include "store/store.h"
#include "shmem/wakeup.h"

PG_FUNCTION_INFO_V1(setstream_set_delivery_secret);
PG_FUNCTION_INFO_V1(setstream_wake_sender);
PG_FUNCTION_INFO_V1(setstream_set_source_secret);

/*
 * An Authorization header of an outbound request, stored by "store" for
 * the stream of argument 0 from argument 1 (NULL removes it), after the
 * caller's manage right is checked; the senders read their streams again
 * at commit.  The value is never echoed: errors name the stream only.
 */
static void
set_outbound_secret(FunctionCallInfo fcinfo,
					void (*store) (const char *stream, const char *header))
{
	char	   *stream;
	char	   *header = NULL;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream must not be null")));
	stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	privileges_require(stream, "manage");
	if (!PG_ARGISNULL(1))
	{
		header = text_to_cstring(PG_GETARG_TEXT_PP(1));
		if (header[0] == '\0' || strpbrk(header, "\r\n") != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid authorization_header for stream \"%s\"", stream),
					 errdetail("An Authorization header value is not empty and holds no line break.")));
	}
	store(stream, header);
	if (header != NULL)
		explicit_bzero(header, strlen(header));
	wakeup_note_config();
}

/* _set_delivery_secret(stream, authorization_header): the push's header */
Datum
setstream_set_delivery_secret(PG_FUNCTION_ARGS)
{
	set_outbound_secret(fcinfo, store_set_delivery_secret);
	PG_RETURN_VOID();
}

/* _set_source_secret(stream, authorization_header): the poll client's */
Datum
setstream_set_source_secret(PG_FUNCTION_ARGS)
{
	set_outbound_secret(fcinfo, store_set_source_secret);
	PG_RETURN_VOID();
}

/* _wake_sender(stream): the sender looks at the stream after the commit */
Datum
setstream_wake_sender(PG_FUNCTION_ARGS)
{
	char	   *stream = text_to_cstring(PG_GETARG_TEXT_PP(0));

	privileges_require(stream, "manage");
	wakeup_note_emit(stream);
	PG_RETURN_VOID();
}

