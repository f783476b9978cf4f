/*-------------------------------------------------------------------------
 *
 * digest.c
 *	  SHA-256 digests of credentials, and their match against a stream's
 *	  list: bearer tokens are kept as the digest of the token, client
 *	  certificates as the digest of their DER encoding.  A match compares
 *	  every digest of the list, each in constant time, whatever matched
 *	  before, so that the time taken says nothing of which one did.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "base/digest.h"

/* SHA-256 of a bearer token */
void
digest_token(const char *token, size_t len, uint8 *out)
{
	SHA256((const unsigned char *) token, len, out);
}

/* SHA-256 of the DER encoding of a certificate */
bool
digest_cert(X509 *cert, uint8 *out)
{
	unsigned int len = 0;

	return X509_digest(cert, EVP_sha256(), out, &len) == 1 && len == DIGEST_LEN;
}

/* Is digest one of digests (uint8[DIGEST_LEN] each)?  Constant time */
bool
digest_in_list(List *digests, const uint8 *digest)
{
	ListCell   *lc;
	int			match = 0;

	foreach(lc, digests)
		match |= (CRYPTO_memcmp(digest, lfirst(lc), DIGEST_LEN) == 0);
	return match != 0;
}

/* Is token one whose digest is in digests? */
bool
digest_token_in_list(List *digests, const char *token, size_t len)
{
	uint8		digest[DIGEST_LEN];

	digest_token(token, len, digest);
	return digest_in_list(digests, digest);
}
