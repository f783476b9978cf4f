/*-------------------------------------------------------------------------
 *
 * subscribeapi.c
 *	  The C half of setstream as an SSF receiver (issue 13, subscribe):
 *	  the storing of a subscription's credentials (owner-only table) and
 *	  the bounded synchronous HTTP request that subscribe, unsubscribe
 *	  and request_verification make to the transmitter from the calling
 *	  backend.  The protocol itself (discovery, stream creation, the
 *	  checks of what the transmitter answers) is SQL, in
 *	  setstream--0.3.0--0.4.0.sql.
 *
 *	  Both functions require the manage right on the stream; the
 *	  credentials are never returned, shown or logged: the request reads
 *	  the bearer token itself, as the extension owner.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "base/pg_builtins.h"

#include "outbound/httpclient.h"
#include "shmem/wakeup.h"
#include "sql/privileges.h"
#include "store/store.h"

PG_FUNCTION_INFO_V1(setstream_set_subscription_secret);
PG_FUNCTION_INFO_V1(setstream_ssf_call);

/*
 * _set_subscription_secret(stream, credentials jsonb): store (NULL:
 * remove) the credentials subscribe presents to the transmitter
 */
Datum
setstream_set_subscription_secret(PG_FUNCTION_ARGS)
{
	char	   *stream;
	char	   *credentials = NULL;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream must not be null")));
	stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	privileges_require(stream, "manage");
	if (!PG_ARGISNULL(1))
		credentials = text_to_cstring(PG_GETARG_TEXT_PP(1));
	store_set_subscription_secret(stream, credentials);
	if (credentials != NULL)
		explicit_bzero(credentials, strlen(credentials));
	PG_RETURN_VOID();
}

/*
 * _ssf_call(stream, method, url, body, authorize, OUT status, OUT body,
 * OUT error): one request to the stream's transmitter, waited for here.
 * method is GET, POST (body: JSON) or DELETE; with authorize the
 * subscription's bearer token goes as Authorization.  status 0: no
 * answer, error says why.
 */
Datum
setstream_ssf_call(PG_FUNCTION_ARGS)
{
	char	   *stream;
	char	   *method;
	char	   *url;
	char	   *body = NULL;
	char	   *authorization = NULL;
	HttpSyncResult result;
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream, method and url must not be null")));
	stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	method = text_to_cstring(PG_GETARG_TEXT_PP(1));
	url = text_to_cstring(PG_GETARG_TEXT_PP(2));
	privileges_require(stream, "manage");
	if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0 &&
		strcmp(method, "DELETE") != 0)
		elog(ERROR, "unexpected method \"%s\"", method);
	if (pg_strncasecmp(url, "https://", 8) != 0 &&
		pg_strncasecmp(url, "http://", 7) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the transmitter's URL \"%s\" is not http or https", url)));
	if (strcmp(method, "POST") == 0)
		body = PG_ARGISNULL(3) ? "{}" : text_to_cstring(PG_GETARG_TEXT_PP(3));
	if (!PG_ARGISNULL(4) && PG_GETARG_BOOL(4))
	{
		char	   *bearer = store_subscription_bearer(stream);

		if (bearer != NULL)
		{
			authorization = psprintf("Bearer %s", bearer);
			explicit_bzero(bearer, strlen(bearer));
		}
	}

	httpclient_request_sync(method, url, body, authorization, &result);
	if (authorization != NULL)
		explicit_bzero(authorization, strlen(authorization));

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "_ssf_call must return a record");
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = Int32GetDatum(result.status);
	if (result.body != NULL)
		values[1] = CStringGetTextDatum(result.body);
	else
		nulls[1] = true;
	if (result.error != NULL)
		values[2] = CStringGetTextDatum(result.error);
	else
		nulls[2] = true;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
