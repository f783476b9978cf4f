/*-------------------------------------------------------------------------
 *
 * jose_int.h
 *	  What jwk.c and jws.c share and nobody else sees: the imported key,
 *	  and the base64url and JWK member helpers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_JOSE_INT_H
#define SETSTREAM_JOSE_INT_H

#include <cjose/cjose.h>
#include <openssl/evp.h>

#include "codec/json.h"

struct JoseKey
{
	char		kty[4];			/* RSA, EC, OKP, oct */
	char		crv[8];			/* EC and OKP */
	int			bits;			/* oct: secret length; RSA: modulus size */
	cjose_jwk_t *cjose;			/* RSA, EC, oct */
	EVP_PKEY   *okp;			/* Ed25519 */
	EVP_PKEY   *pkey;			/* public RSA and EC keys: verified with EVP */
	EVP_MD_CTX *verify_tmpl;	/* pkey initialised for verify_alg, copied */
	char		verify_alg[8];
};

extern char *jose_b64url_decode(const char *s, size_t len, size_t *outlen);

#endif
