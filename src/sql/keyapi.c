/*-------------------------------------------------------------------------
 *
 * keyapi.c
 *	  What SQL needs of a signed SET to rotate keys safely:
 *	  setstream._token_kid(token), the kid of a compact JWS's protected
 *	  header.  setstream._key_in_use (revoke_key, rotate_key's retirement
 *	  sweep) asks it of each unsettled outbox row, so that a key is never
 *	  retired while a SET it signed may still be delivered.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "base/pg_builtins.h"

#include "fmgr.h"

#include "jose/jose.h"

PG_FUNCTION_INFO_V1(setstream_token_kid);

/*
 * _token_kid(token text) returns text: NULL when the text is not a JWS
 * compact serialization or its header has no string kid (never an error:
 * it is evaluated over stored rows).
 */
Datum
setstream_token_kid(PG_FUNCTION_ARGS)
{
	char	   *token = text_to_cstring(PG_GETARG_TEXT_PP(0));
	JwsParts	parts;
	SetFailure	f;
	const char *kid;

	if (!jose_split(token, strlen(token), &parts, &f))
		PG_RETURN_NULL();
	kid = json_string_value(json_object_get(parts.header, "kid"));
	if (kid == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(kid));
}
