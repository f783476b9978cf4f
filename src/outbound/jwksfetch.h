/*-------------------------------------------------------------------------
 *
 * jwksfetch.h
 *	  Peer keys from a jwks_uri: the sender's fetches of peer JWK Sets.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_JWKSFETCH_H
#define SETSTREAM_JWKSFETCH_H

#include "datatype/timestamp.h"

extern void jwksfetch_turn(TimestampTz now, bool (*mine) (const char *stream));
extern void jwksfetch_after_turn(bool committed);
extern bool jwksfetch_wanted(void);

#endif
