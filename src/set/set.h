/*-------------------------------------------------------------------------
 *
 * set.h
 *	  Security Event Tokens: the checks that make a received SET valid,
 *	  against the rules and keys of its stream that the caller hands over.
 *	  No table is read here.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_SET_H
#define SETSTREAM_SET_H

#include "jose/jose.h"
#include "nodes/pg_list.h"

/* A peer's verification key, as the check of a SET reads it */
typedef struct SetKey
{
	char	   *kid;
	char	   *kty;
	char	   *crv;			/* EC and OKP, else NULL */
	char	   *alg;			/* the key's own alg, or NULL */
	char	   *jwk;			/* JWK text to import (public, or the secret) */
	struct JoseKey *imported;	/* jose_key_get_cached() */
	uint64		imported_generation;
} SetKey;

/*
 * What the check of a received SET needs to know of its stream, and no
 * more: the caller hands over the keys too (the stream cache holds them),
 * so that checking a SET reads no table.
 */
typedef struct SetRules
{
	const char *stream;			/* its name, for messages */
	const char *issuer;			/* our issuer: the aud a SET must name */
	const char *peer_issuer;	/* the iss accepted, or NULL (none is) */
	bool		ssf;			/* profile 'ssf' (else 'rfc8417') */
	bool		allow_unsigned; /* alg "none" accepted */
	List	   *keys;			/* active verification keys (SetKey *) */
} SetRules;

/* A SET that passed every check */
typedef struct ParsedSet
{
	const char *token;
	size_t		token_len;
	JwsParts	jws;
	json_t	   *claims;
	Datum		claims_jsonb;	/* claims as jsonb; (Datum) 0 when not built */
	const char *alg;
	const char *kid;			/* NULL when the header has none */
	const char *jti;
	const char *iss;
	const char *txn;			/* NULL when absent */
	double		iat;
	bool		has_toe;
	double		toe;
	json_t	   *aud;			/* string, array, or NULL */
	json_t	   *events;
	json_t	   *sub_id;			/* NULL when absent */
} ParsedSet;

extern bool set_verify(const SetRules *rules, const char *token, size_t len,
					   ParsedSet *ps, SetFailure *f);

#endif
