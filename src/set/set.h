/*-------------------------------------------------------------------------
 *
 * set.h
 *	  Security Event Tokens: the stream settings that govern them and the
 *	  checks that make a received SET valid.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_SET_H
#define SETSTREAM_SET_H

#include "jose/jose.h"
#include "nodes/pg_list.h"

/* What a row of setstream.streams says, as the C code needs it */
typedef struct StreamInfo
{
	char	   *name;
	char	   *issuer;			/* iss of SETs we emit; aud of inbound SETs */
	List	   *audience;		/* aud of SETs we emit (char *) */
	char	   *peer_issuer;	/* iss accepted on inbound SETs, or NULL */
	bool		ssf;			/* profile 'ssf' (else 'rfc8417') */
	bool		allow_unsigned; /* alg "none" accepted on inbound SETs */
	char		status;			/* 'e'nabled, 'p'aused, 'd'isabled */
	bool		auth_bearer;	/* client_auth: a bearer token is required */
	bool		auth_cert;		/* client_auth: a bound client cert is required */
	/* the listener's cache preloads these; otherwise they are read on use */
	bool		keys_loaded;
	List	   *keys;			/* active verification keys (StoredKey *) */
	List	   *token_hashes;	/* SHA-256 of active tokens (uint8[32]) */
	List	   *cert_hashes;	/* SHA-256 of bound client certs (uint8[32]) */
	bool		sign_key_loaded;
	struct SignKey *sign_key;	/* the active signing key, or NULL */
} StreamInfo;

/* A peer's verification key as stored */
typedef struct StoredKey
{
	char	   *kid;
	char	   *kty;
	char	   *crv;			/* EC and OKP, else NULL */
	char	   *alg;			/* the key's own alg, or NULL */
	char	   *jwk;			/* JWK text to import (public, or the secret) */
	struct JoseKey *imported;	/* jose_key_get_cached() */
	uint64		imported_generation;
} StoredKey;

/* A SET that passed every check */
typedef struct ParsedSet
{
	const char *token;
	size_t		token_len;
	JwsParts	jws;
	json_t	   *claims;
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

extern List *set_stream_keys(const StreamInfo *stream, const char *kid);
extern bool set_verify(const StreamInfo *stream, const char *token, size_t len,
					   ParsedSet *ps, SetFailure *f);
extern bool set_is_uri(const char *s);

#endif
