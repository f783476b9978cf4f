/*-------------------------------------------------------------------------
 *
 * jwksreq.h
 *	  Refetch requests for the peer JWK Sets of streams with a
 *	  peer_jwks_uri: from the listener (a SET with an unknown kid) to the
 *	  sender, in shared memory.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_JWKSREQ_H
#define SETSTREAM_JWKSREQ_H

#include "datatype/timestamp.h"

/* GUCs (src/setstream.c) */
extern int	setstream_jwks_refetch_interval_s;
extern int	setstream_jwks_min_cache_s;

/* Retry-After of the 503 that answers a SET while its refetch is pending */
#define JWKS_RETRY_AFTER_S 2

extern void jwksreq_request_shmem(void);
extern bool jwksreq_unknown_kid(const char *stream);
extern uint64 jwksreq_requests(void);
extern TimestampTz jwksreq_asked_at(const char *stream);
extern void jwksreq_done(const char *stream, TimestampTz asked_at);

#endif
