/*-------------------------------------------------------------------------
 *
 * streamcache.h
 *	  The per-process copy of streams, keys, token hashes and client
 *	  certificate fingerprints.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_STREAMCACHE_H
#define SETSTREAM_STREAMCACHE_H

#include "set/set.h"

extern bool streamcache_check_generation(void);
extern void streamcache_reset(void);
extern void streamcache_begin_turn(void);
extern void streamcache_end_turn(void);
extern bool streamcache_lookup(const char *name, StreamInfo **stream);
extern void streamcache_load(const char *name, bool with_tokens);

#include "store/store.h"

extern void streamcache_register_callbacks(void);
extern void streamcache_invalidate(void);
extern StreamInfo *streamcache_stream(const char *name, bool missing_ok);
extern SignKey *streamcache_sign_key(StreamInfo *stream);

#endif
