/*-------------------------------------------------------------------------
 *
 * set.c
 *	  Validation of received Security Event Tokens (RFC 8417), under the
 *	  stream's profile: 'ssf' (OpenID SSF 1.0: typ secevent+jwt, sub_id
 *	  required, no sub, no exp) or 'rfc8417' (the plain RFC).
 *
 *	  The order of the checks is cheap to expensive, and fixes which RFC
 *	  8935 error code a SET with several faults gets:
 *	    1. compact serialization, header, claims: invalid_request
 *	    2. iss is the stream's peer issuer: invalid_issuer
 *	    3. signature with a key of the stream, alg bound to the key type,
 *	       "none" only where the stream allows it: invalid_key
 *	    4. aud contains the stream's issuer: invalid_audience
 *	    5. profile rules and the subject identifier: invalid_request
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "set/set.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

#include "set/subject.h"

#define MAX_JTI_LEN 256
#define MAX_NUMERIC_DATE 253402300799.0	/* 9999-12-31T23:59:59Z */

static bool
is_numeric_date(json_t *v)
{
	double		d;

	if (!json_is_number(v))
		return false;
	d = json_number_value(v);
	return isfinite(d) && d >= 0 && d <= MAX_NUMERIC_DATE;
}

static const char *
opt_string(json_t *obj, const char *name)
{
	json_t	   *v = json_object_get(obj, name);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* typ is a media type: case-insensitive, "application/" optional */
static bool
typ_is_secevent(const char *typ)
{
	if (pg_strncasecmp(typ, "application/", 12) == 0)
		typ += 12;
	return pg_strcasecmp(typ, "secevent+jwt") == 0;
}

static bool
check_header(ParsedSet *ps, const SetRules *rules, SetFailure *f)
{
	json_t	   *hdr = ps->jws.header;
	json_t	   *typ = json_object_get(hdr, "typ");
	json_t	   *kid = json_object_get(hdr, "kid");

	ps->alg = opt_string(hdr, "alg");
	if (ps->alg == NULL || ps->alg[0] == '\0')
		return set_fail(f, SETERR_INVALID_REQUEST,
						"the JOSE header has no \"alg\"");
	if (json_object_get(hdr, "crit") != NULL)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"the JOSE header has \"crit\" extensions, which are not supported");
	if (json_object_get(hdr, "enc") != NULL)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"encrypted (JWE) SETs are not supported");
	if (typ != NULL && !json_is_string(typ))
		return set_fail(f, SETERR_INVALID_REQUEST,
						"the JOSE header \"typ\" is not a string");
	if (rules->ssf && typ == NULL)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"the JOSE header has no \"typ\"; the SSF profile requires \"secevent+jwt\"");
	if (typ != NULL && !typ_is_secevent(json_string_value(typ)) &&
		(rules->ssf || pg_strcasecmp(json_string_value(typ), "JWT") != 0))
		return set_fail(f, SETERR_INVALID_REQUEST,
						"the JOSE header \"typ\" is \"%.64s\", not \"secevent+jwt\"",
						json_string_value(typ));
	if (kid != NULL && (!json_is_string(kid) || json_string_length(kid) == 0))
		return set_fail(f, SETERR_INVALID_REQUEST,
						"the JOSE header \"kid\" is not a non-empty string");
	ps->kid = kid ? json_string_value(kid) : NULL;
	return true;
}

static bool
check_events(json_t *events, SetFailure *f)
{
	const char *name;
	json_t	   *payload;

	if (!json_is_object(events) || json_object_size(events) == 0)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"claim \"events\" must be a JSON object with at least one event");
	json_object_foreach(events, name, payload)
	{
		if (!uri_is_absolute(name))
			return set_fail(f, SETERR_INVALID_REQUEST,
							"event type \"%.128s\" is not a URI", name);
		if (!json_is_object(payload))
			return set_fail(f, SETERR_INVALID_REQUEST,
							"the payload of event \"%.128s\" is not a JSON object", name);
	}
	return true;
}

static bool
check_aud_shape(json_t *aud, SetFailure *f)
{
	size_t		i;
	json_t	   *v;

	if (aud == NULL)
		return true;
	if (json_is_string(aud) && json_string_length(aud) > 0)
		return true;
	if (!json_is_array(aud) || json_array_size(aud) == 0)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"claim \"aud\" must be a string or a non-empty array of strings");
	json_array_foreach(aud, i, v)
	{
		if (!json_is_string(v))
			return set_fail(f, SETERR_INVALID_REQUEST,
							"claim \"aud\" must be a string or a non-empty array of strings");
	}
	return true;
}

/* Types of the claims RFC 8417 and RFC 7519 define */
static bool
check_claim_types(ParsedSet *ps, SetFailure *f)
{
	json_t	   *c = ps->claims;
	json_t	   *v;

	ps->iss = opt_string(c, "iss");
	if (ps->iss == NULL || ps->iss[0] == '\0')
		return set_fail(f, SETERR_INVALID_REQUEST,
						"claim \"iss\" is missing or not a non-empty string");
	ps->jti = opt_string(c, "jti");
	if (ps->jti == NULL || ps->jti[0] == '\0')
		return set_fail(f, SETERR_INVALID_REQUEST,
						"claim \"jti\" is missing or not a non-empty string");
	if (strlen(ps->jti) > MAX_JTI_LEN)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"claim \"jti\" is longer than %d bytes", MAX_JTI_LEN);
	v = json_object_get(c, "iat");
	if (!is_numeric_date(v))
		return set_fail(f, SETERR_INVALID_REQUEST,
						"claim \"iat\" is missing or not a NumericDate");
	ps->iat = json_number_value(v);
	ps->events = json_object_get(c, "events");
	if (!check_events(ps->events, f))
		return false;
	ps->aud = json_object_get(c, "aud");
	if (!check_aud_shape(ps->aud, f))
		return false;
	v = json_object_get(c, "txn");
	if (v != NULL && (!json_is_string(v) || json_string_length(v) == 0))
		return set_fail(f, SETERR_INVALID_REQUEST,
						"claim \"txn\" is not a non-empty string");
	ps->txn = v ? json_string_value(v) : NULL;
	v = json_object_get(c, "toe");
	if (v != NULL && !is_numeric_date(v))
		return set_fail(f, SETERR_INVALID_REQUEST,
						"claim \"toe\" is not a NumericDate");
	ps->has_toe = v != NULL;
	ps->toe = v ? json_number_value(v) : 0;
	if ((v = json_object_get(c, "exp")) != NULL && !is_numeric_date(v))
		return set_fail(f, SETERR_INVALID_REQUEST,
						"claim \"exp\" is not a NumericDate");
	if ((v = json_object_get(c, "nbf")) != NULL && !is_numeric_date(v))
		return set_fail(f, SETERR_INVALID_REQUEST,
						"claim \"nbf\" is not a NumericDate");
	if ((v = json_object_get(c, "sub")) != NULL && !json_is_string(v))
		return set_fail(f, SETERR_INVALID_REQUEST,
						"claim \"sub\" is not a string");
	ps->sub_id = json_object_get(c, "sub_id");
	return true;
}

static bool
check_issuer(const ParsedSet *ps, const SetRules *rules, SetFailure *f)
{
	if (rules->peer_issuer == NULL)
		return set_fail(f, SETERR_INVALID_ISSUER,
						"stream \"%s\" accepts no inbound SETs: it has no peer_issuer",
						rules->stream);
	if (strcmp(ps->iss, rules->peer_issuer) != 0)
		return set_fail(f, SETERR_INVALID_ISSUER,
						"issuer \"%.200s\" is not the issuer this stream accepts",
						ps->iss);
	return true;
}

/* The key's own alg, and its type, allow alg (oct key length: see caller) */
static bool
key_allows_alg(const SetKey *key, const char *alg)
{
	if (key->alg != NULL && strcmp(key->alg, alg) != 0)
		return false;
	if (strcmp(key->kty, "oct") == 0)
		return strncmp(alg, "HS", 2) == 0;
	return jose_alg_fits(alg, key->kty, key->crv, 0);
}

static bool
check_signature(const ParsedSet *ps, const SetRules *rules, SetFailure *f)
{
	ListCell   *lc;
	bool		kid_found = false;
	bool		alg_fitted = false;

	if (strcmp(ps->alg, "none") == 0)
	{
		if (!rules->allow_unsigned)
			return set_fail(f, SETERR_INVALID_KEY,
							"unsigned SETs (alg \"none\") are not accepted on this stream");
		if (ps->token[ps->token_len - 1] != '.')
			return set_fail(f, SETERR_INVALID_KEY,
							"an unsigned SET (alg \"none\") must have an empty signature");
		return true;
	}

	/* the stream's active keys, or the one named by kid */
	foreach(lc, rules->keys)
	{
		SetKey	   *key = lfirst(lc);
		JoseKey    *jk;

		if (ps->kid != NULL && strcmp(key->kid, ps->kid) != 0)
			continue;
		kid_found = true;
		if (!key_allows_alg(key, ps->alg))
			continue;
		jk = jose_key_get_cached(key->jwk, &key->imported, &key->imported_generation);
		if (jk == NULL)
			continue;
		if (strcmp(key->kty, "oct") == 0 &&
			!jose_alg_fits(ps->alg, "oct", NULL, jose_key_bits(jk)))
			continue;
		alg_fitted = true;
		if (jose_verify(jk, ps->alg, ps->token, ps->token_len, &ps->jws))
			return true;
	}
	if (!kid_found)
	{
		/* a key the peer may have rotated in (see jwksreq.c) */
		if (ps->kid)
			set_fail(f, SETERR_INVALID_KEY,
					 "no active key with kid \"%.128s\" on this stream", ps->kid);
		else
			set_fail(f, SETERR_INVALID_KEY,
					 "the stream has no active verification key");
		f->unknown_key = true;
		return false;
	}
	if (!alg_fitted)
		return set_fail(f, SETERR_INVALID_KEY,
						"algorithm \"%.32s\" is not allowed for the %s",
						ps->alg, ps->kid ? "key named by kid" : "stream's keys");
	return set_fail(f, SETERR_INVALID_KEY, "the SET's signature does not verify");
}

static bool
aud_contains(json_t *aud, const char *want)
{
	size_t		i;
	json_t	   *v;

	if (json_is_string(aud))
		return strcmp(json_string_value(aud), want) == 0;
	json_array_foreach(aud, i, v)
	{
		if (strcmp(json_string_value(v), want) == 0)
			return true;
	}
	return false;
}

static bool
check_audience(const ParsedSet *ps, const SetRules *rules, SetFailure *f)
{
	if (ps->aud == NULL)
	{
		if (rules->ssf)
			return set_fail(f, SETERR_INVALID_AUDIENCE,
							"the SET has no \"aud\"; it must name \"%.200s\"",
							rules->issuer);
		return true;
	}
	if (!aud_contains(ps->aud, rules->issuer))
		return set_fail(f, SETERR_INVALID_AUDIENCE,
						"the SET's audience does not include \"%.200s\"",
						rules->issuer);
	return true;
}

static bool
check_profile(const ParsedSet *ps, const SetRules *rules, SetFailure *f)
{
	if (rules->ssf)
	{
		if (json_object_get(ps->claims, "sub") != NULL)
			return set_fail(f, SETERR_INVALID_REQUEST,
							"claim \"sub\" must not be present under the SSF profile; use \"sub_id\"");
		if (json_object_get(ps->claims, "exp") != NULL)
			return set_fail(f, SETERR_INVALID_REQUEST,
							"claim \"exp\" must not be present in a SET under the SSF profile");
		if (ps->sub_id == NULL)
			return set_fail(f, SETERR_INVALID_REQUEST,
							"claim \"sub_id\" is required under the SSF profile");
	}
	if (ps->sub_id != NULL && !subject_validate(ps->sub_id, "sub_id", f))
		return false;
	return true;
}

/*
 * Check a received SET against the rules and keys of its stream.  On
 * success *ps describes it; on failure *f holds the RFC 8935 code and a
 * description.
 */
bool
set_verify(const SetRules *rules, const char *token, size_t len,
		   ParsedSet *ps, SetFailure *f)
{
	memset(ps, 0, sizeof(*ps));
	ps->token = token;
	ps->token_len = len;

	if (len == 0)
		return set_fail(f, SETERR_INVALID_REQUEST, "the SET is empty");
	if (len > (size_t) setstream_max_request_bytes)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"the SET is larger than setstream.max_request_bytes (%d bytes)",
						setstream_max_request_bytes);
	if (!jose_split(token, len, &ps->jws, f) || !check_header(ps, rules, f))
		return false;
	ps->claims = jose_parse_json_object(ps->jws.payload, ps->jws.payload_len,
										"the SET's claims", &ps->claims_jsonb, f);
	if (ps->claims == NULL || !check_claim_types(ps, f))
		return false;
	return check_issuer(ps, rules, f) &&
		check_signature(ps, rules, f) &&
		check_audience(ps, rules, f) &&
		check_profile(ps, rules, f);
}
