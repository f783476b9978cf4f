/*-------------------------------------------------------------------------
 *
 * jose.h
 *	  JOSE: JWS compact serialization, verifying and signing (jws.c); JWK
 *	  checks, import, RFC 7638 thumbprints and key generation (jwk.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_JOSE_H
#define SETSTREAM_JOSE_H

#include "codec/json.h"

#include "setstream.h"

/* A parsed key, ready to verify or sign; cached, never freed by callers */
typedef struct JoseKey JoseKey;

/* The three parts of a JWS compact serialization, decoded */
typedef struct JwsParts
{
	json_t	   *header;			/* protected header (object) */
	Datum		header_jsonb;	/* the same as jsonb (jose_parse_json_object) */
	char	   *header_text;	/* decoded header bytes, NUL-terminated */
	char	   *payload;		/* decoded payload bytes, NUL-terminated */
	size_t		payload_len;
	size_t		signing_input_len;	/* length of "header.payload" */
} JwsParts;

extern void jose_init_allocators(void);

extern bool jose_split(const char *compact, size_t len, JwsParts *parts,
					   SetFailure *f);
extern json_t *jose_parse_json_object(const char *text, size_t len,
									  const char *what, Datum *jsonb,
									  SetFailure *f);

extern bool jose_alg_fits(const char *alg, const char *kty, const char *crv,
						  int keybits);
extern char *jose_thumbprint(json_t *jwk);
extern bool jose_check_public_jwk(json_t *jwk, char **kty, char **alg,
								  bool *secret, char *err, size_t errlen);

extern JoseKey *jose_key_get(const char *jwk_text);
extern JoseKey *jose_key_get_cached(const char *jwk_text, JoseKey **cached,
									 uint64 *generation);
extern int	jose_key_bits(const JoseKey *key);
extern bool jose_verify(JoseKey *key, const char *alg, const char *compact,
						size_t len, const JwsParts *parts);
extern char *jose_sign(JoseKey *key, const char *alg, const char *kid,
					   const char *payload, size_t payload_len);
extern char *jose_sign_typ(JoseKey *key, const char *alg, const char *kid,
						   const char *typ, const char *payload,
						   size_t payload_len);
extern bool jose_generate(const char *alg, char **public_json,
						  char **private_json, char *err, size_t errlen);

extern char *jose_b64url_encode(const unsigned char *data, size_t len);

#endif
