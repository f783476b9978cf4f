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
 *	  them itself, as the extension owner.  Credentials are a static
 *	  bearer token ({"bearer"}), or an OAuth 2.0 client_credentials client
 *	  ({"client_id", "client_secret", "token_endpoint", "scope"?,
 *	  "token_endpoint_auth_method"?: client_secret_basic (default) or
 *	  client_secret_post}) whose access token is cached, with its expiry
 *	  less a margin, in subscription_secrets, and fetched anew when the
 *	  transmitter answers 401.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "base/pg_builtins.h"
#include "utils/timestamp.h"

#include "setstream.h"
#include "codec/json.h"
#include "jose/jose.h"
#include "outbound/httpclient.h"
#include "shmem/wakeup.h"
#include "sql/privileges.h"
#include "sql/subscribeapi.h"
#include "store/store.h"

PG_FUNCTION_INFO_V1(setstream_set_subscription_secret);
PG_FUNCTION_INFO_V1(setstream_ssf_call);
PG_FUNCTION_INFO_V1(setstream_ssf_source_token);

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

/* Wipe a secret (NULL: nothing) */
static void
forget(char *secret)
{
	if (secret != NULL)
		explicit_bzero(secret, strlen(secret));
}

/* s, application/x-www-form-urlencoded (RFC 6749, appendix B) */
static void
append_form(StringInfo buf, const char *s)
{
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
			c == '~')
			appendStringInfoChar(buf, (char) c);
		else if (c == ' ')
			appendStringInfoChar(buf, '+');
		else
			appendStringInfo(buf, "%%%02X", c);
	}
}

/* "Basic " and base64 (with padding) of user:password, each form-encoded */
static char *
basic_authorization(const char *user, const char *password)
{
	StringInfoData pair;
	StringInfoData out;
	char	   *b64;
	size_t		n;

	initStringInfo(&pair);
	append_form(&pair, user);
	appendStringInfoChar(&pair, ':');
	append_form(&pair, password);
	b64 = jose_b64url_encode((const unsigned char *) pair.data, pair.len);
	forget(pair.data);
	initStringInfo(&out);
	appendStringInfoString(&out, "Basic ");
	for (char *c = b64; *c; c++)
		appendStringInfoChar(&out, *c == '-' ? '+' : *c == '_' ? '/' : *c);
	n = strlen(b64);
	while (n++ % 4 != 0)
		appendStringInfoChar(&out, '=');
	forget(b64);
	return out.data;
}

/* A string member of obj, or NULL */
static const char *
member(json_t *obj, const char *name)
{
	json_t	   *v = json_object_get(obj, name);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/*
 * The algorithm of a private JWK: its "alg", else the one its key type
 * implies (EC P-256 ES256, P-384 ES384, RSA RS256, Ed25519 EdDSA)
 */
static const char *
jwk_alg(json_t *jwk)
{
	const char *alg = member(jwk, "alg");
	const char *kty = member(jwk, "kty");
	const char *crv = member(jwk, "crv");

	if (alg != NULL)
		return alg;
	if (kty == NULL)
		return NULL;
	if (strcmp(kty, "RSA") == 0)
		return "RS256";
	if (crv == NULL)
		return NULL;
	if (strcmp(kty, "EC") == 0 && strcmp(crv, "P-256") == 0)
		return "ES256";
	if (strcmp(kty, "EC") == 0 && strcmp(crv, "P-384") == 0)
		return "ES384";
	if (strcmp(kty, "OKP") == 0 && strcmp(crv, "Ed25519") == 0)
		return "EdDSA";
	return NULL;
}

/*
 * A client assertion (RFC 7523, section 2.2): iss and sub the client_id,
 * aud the token endpoint, a random jti, valid for 5 minutes, signed with
 * the credentials' private_key_jwk (header kid: the JWK's kid, if any)
 */
static char *
client_assertion(const char *stream, json_t *cred, const char *id,
				 const char *endpoint)
{
	json_t	   *jwk = json_object_get(cred, "private_key_jwk");
	const char *alg = json_is_object(jwk) ? jwk_alg(jwk) : NULL;
	char	   *jwk_text;
	JoseKey    *key;
	json_t	   *claims;
	char	   *payload;
	char	   *out;
	uint8		random[16];
	char		jti[33];
	int64		now = (int64) time(NULL);

	if (alg == NULL || member(jwk, "kty") == NULL || member(jwk, "d") == NULL ||
		!jose_alg_fits(alg, member(jwk, "kty"), member(jwk, "crv"), 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the private_key_jwk of stream \"%s\" is no private key of an algorithm setstream signs with",
						stream)));
	jwk_text = json_dumps(jwk, JSON_COMPACT);
	key = jwk_text ? jose_key_get(jwk_text) : NULL;
	/* (jansson allocates with palloc here: jose_init_allocators) */
	if (jwk_text)
	{
		forget(jwk_text);
		pfree(jwk_text);
	}
	if (key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the private_key_jwk of stream \"%s\" is not a usable private key",
						stream)));
	if (!pg_strong_random(random, sizeof(random)))
		elog(ERROR, "could not generate a random jti");
	for (int i = 0; i < 16; i++)
		snprintf(jti + 2 * i, 3, "%02x", random[i]);
	claims = json_object();
	json_object_set_new(claims, "iss", json_string(id));
	json_object_set_new(claims, "sub", json_string(id));
	json_object_set_new(claims, "aud", json_string(endpoint));
	json_object_set_new(claims, "jti", json_string(jti));
	json_object_set_new(claims, "iat", json_integer(now));
	json_object_set_new(claims, "exp", json_integer(now + 300));
	payload = json_dumps(claims, JSON_COMPACT);
	json_decref(claims);
	out = jose_sign_typ(key, alg, member(jwk, "kid"), "JWT", payload,
						strlen(payload));
	pfree(payload);
	return out;
}

/*
 * A new access token from the token endpoint (OAuth 2.0 client
 * credentials grant), cached until shortly before it expires
 */
static char *
fetch_access_token(const char *stream, json_t *cred)
{
	const char *endpoint = member(cred, "token_endpoint");
	const char *id = member(cred, "client_id");
	const char *secret = member(cred, "client_secret");
	const char *scope = member(cred, "scope");
	const char *method = member(cred, "token_endpoint_auth_method");
	bool		post = method != NULL && strcmp(method, "client_secret_post") == 0;
	StringInfoData body;
	char	   *authorization = NULL;
	HttpSyncResult r;
	json_t	   *answer;
	json_t	   *expires;
	const char *token;
	const char *type;
	long		lifetime = 3600;
	char	   *out;

	if (endpoint == NULL || id == NULL ||
		(secret == NULL && json_object_get(cred, "private_key_jwk") == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the OAuth credentials of stream \"%s\" lack a token_endpoint, client_id, client_secret or private_key_jwk",
						stream)));
	initStringInfo(&body);
	appendStringInfoString(&body, "grant_type=client_credentials");
	if (scope != NULL)
	{
		appendStringInfoString(&body, "&scope=");
		append_form(&body, scope);
	}
	if (secret == NULL)
	{
		/* private_key_jwt (RFC 7523): a signed assertion in the body */
		char	   *assertion = client_assertion(stream, cred, id, endpoint);

		appendStringInfoString(&body, "&client_id=");
		append_form(&body, id);
		appendStringInfoString(&body, "&client_assertion_type=");
		append_form(&body, "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
		appendStringInfoString(&body, "&client_assertion=");
		append_form(&body, assertion);
		forget(assertion);
	}
	else if (post)
	{
		appendStringInfoString(&body, "&client_id=");
		append_form(&body, id);
		appendStringInfoString(&body, "&client_secret=");
		append_form(&body, secret);
	}
	else
		authorization = basic_authorization(id, secret);
	httpclient_request_sync("POST", endpoint, body.data,
							"application/x-www-form-urlencoded", authorization,
							&r);
	forget(body.data);
	forget(authorization);
	if (r.status == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("no answer from the token endpoint of stream \"%s\": %s",
						stream, r.error)));
	answer = r.body ? json_loads(r.body, 0, NULL) : NULL;
	if (r.body)
		forget(r.body);
	if (r.status != 200 || !json_is_object(answer) ||
		(token = member(answer, "access_token")) == NULL || token[0] == '\0' ||
		strpbrk(token, "\r\n") != NULL)
	{
		const char *err = json_is_object(answer) ? member(answer, "error") : NULL;

		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("the token endpoint of stream \"%s\" gave no access token (HTTP %d%s%s)",
						stream, r.status, err ? ", error " : "",
						err ? setstream_log_escape(err, 64) : "")));
	}
	type = member(answer, "token_type");
	if (type != NULL && pg_strcasecmp(type, "bearer") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("the token endpoint of stream \"%s\" gave a token of type \"%s\", not Bearer",
						stream, setstream_log_escape(type, 32))));
	expires = json_object_get(answer, "expires_in");
	if (json_is_integer(expires) && json_integer_value(expires) > 0)
		lifetime = (long) Min(json_integer_value(expires), 86400 * 365);
	/* good until shortly before it expires: a tenth of its life, 60 s at most */
	lifetime -= Min(60, lifetime / 10);
	out = pstrdup(token);
	json_decref(answer);
	store_subscription_token(stream, out,
							 GetCurrentTimestamp() + (TimestampTz) lifetime * USECS_PER_SEC);
	return out;
}

/*
 * The Authorization header of a request to the stream's transmitter, or
 * NULL without credentials: the static bearer token, or the cached OAuth
 * access token (a new one when it is near expiry or "renew")
 */
static char *
authorization_for(const char *stream, bool renew, bool *oauth)
{
	char	   *cached;
	TimestampTz good_until;
	char	   *text = store_subscription_credentials(stream, &cached, &good_until);
	json_t	   *cred;
	const char *bearer;
	char	   *out = NULL;

	*oauth = false;
	if (text == NULL)
		return NULL;
	cred = json_loads(text, 0, NULL);
	forget(text);
	if (!json_is_object(cred))
		elog(ERROR, "the credentials of stream \"%s\" are no JSON object", stream);
	if ((bearer = member(cred, "bearer")) != NULL)
		out = psprintf("Bearer %s", bearer);
	else
	{
		*oauth = true;
		if (cached == NULL || renew || good_until <= GetCurrentTimestamp())
		{
			forget(cached);
			cached = fetch_access_token(stream, cred);
		}
		out = psprintf("Bearer %s", cached);
		forget(cached);
	}
	/* (jansson's copies of the secrets go with the object) */
	json_decref(cred);
	return out;
}

/*
 * _ssf_call(stream, method, url, body, authorize, OUT status, OUT body,
 * OUT error): one request to the stream's transmitter, waited for here.
 * method is GET, POST, PATCH or PUT (body: JSON) or DELETE; with authorize the
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
	bool		oauth = false;
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
		strcmp(method, "PATCH") != 0 && strcmp(method, "PUT") != 0 &&
		strcmp(method, "DELETE") != 0)
		elog(ERROR, "unexpected method \"%s\"", method);
	if (pg_strncasecmp(url, "https://", 8) != 0 &&
		pg_strncasecmp(url, "http://", 7) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the transmitter's URL \"%s\" is not http or https", url)));
	if (strcmp(method, "POST") == 0 || strcmp(method, "PATCH") == 0 ||
		strcmp(method, "PUT") == 0)
		body = PG_ARGISNULL(3) ? "{}" : text_to_cstring(PG_GETARG_TEXT_PP(3));
	if (!PG_ARGISNULL(4) && PG_GETARG_BOOL(4))
		authorization = authorization_for(stream, false, &oauth);

	httpclient_request_sync(method, url, body, NULL, authorization, &result);
	if (result.status == 401 && oauth)
	{
		/* the cached access token is no longer good: a new one, once */
		forget(authorization);
		authorization = authorization_for(stream, true, &oauth);
		httpclient_request_sync(method, url, body, NULL, authorization, &result);
	}
	forget(authorization);

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

/*
 * The poll client's access token renewed (the token renewer of
 * outbound/tokenrenew.c, in a transaction): a new one from the token
 * endpoint, cached and stored as the source's Authorization header; the
 * senders read their sources again at commit.  No right is checked: the
 * renewer is setstream's own worker, acting on what subscribe stored.
 * ERROR (naming the stream and the HTTP status, never a secret) when the
 * endpoint gives no token.  Nothing for credentials that are no OAuth
 * client.
 */
void
subscription_renew_source_token(const char *stream)
{
	bool		oauth;
	char	   *authorization = authorization_for(stream, true, &oauth);

	if (authorization == NULL)
		return;
	if (oauth)
	{
		store_set_source_secret(stream, authorization);
		wakeup_note_config();
	}
	forget(authorization);
}

/*
 * _ssf_source_token(stream): the poll client's Authorization header of a
 * subscription with OAuth credentials, from its current access token
 * (stored as the owner; the sender reads the sources again at commit)
 */
Datum
setstream_ssf_source_token(PG_FUNCTION_ARGS)
{
	char	   *stream = text_to_cstring(PG_GETARG_TEXT_PP(0));
	bool		oauth;
	char	   *authorization;

	privileges_require(stream, "manage");
	authorization = authorization_for(stream, false, &oauth);
	if (authorization != NULL)
	{
		store_set_source_secret(stream, authorization);
		forget(authorization);
		wakeup_note_config();
	}
	PG_RETURN_VOID();
}
