/*-------------------------------------------------------------------------
 *
 * digest.h
 *	  SHA-256 digests of credentials, and the one constant-time match of a
 *	  digest against a stream's list (base/digest.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_DIGEST_H
#define SETSTREAM_DIGEST_H

#include "nodes/pg_list.h"

#define DIGEST_LEN 32			/* SHA-256 */

struct x509_st;

extern void digest_token(const char *token, size_t len, uint8 *out);
extern bool digest_cert(struct x509_st *cert, uint8 *out);
extern bool digest_in_list(List *digests, const uint8 *digest);
extern bool digest_token_in_list(List *digests, const char *token, size_t len);

#endif
