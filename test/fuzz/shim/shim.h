/*-------------------------------------------------------------------------
 *
 * shim.h
 *	  The backend API that setstream's parsing code needs, outside the
 *	  server, for the libFuzzer targets in test/fuzz: memory contexts that
 *	  really free what they hold, ereport(ERROR) that longjmps to
 *	  PG_exception_stack, Lists, a small dynahash, a clock.  Plus the
 *	  fixtures the targets share: streams with keys of every algorithm
 *	  setstream verifies, bearer tokens, and the bytes a peer "sends".
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_FUZZ_SHIM_H
#define SETSTREAM_FUZZ_SHIM_H

#include "postgres.h"

#include "utils/memutils.h"

#include "set/set.h"
#include "store/streamcache.h"

/* mcxt.c */
extern void shim_memory_init(void);
extern Size shim_context_bytes(MemoryContext context, bool recurse);

/* elog.c: the message of the last ERROR caught by shim_run */
extern const char *shim_last_error(void);
typedef void (*ShimBody) (void *arg);
extern bool shim_run(ShimBody body, void *arg);

/* fixture.c */
#define FIXTURE_TOKEN		"sst_fuzz-bearer-token-0123456789abcdefghij"
#define FIXTURE_PEER_ISSUER "https://transmitter.example.com/"
#define FIXTURE_ISSUER		"https://receiver.example.com/"

typedef enum FixtureKey
{
	FKEY_ES256,
	FKEY_RS256,
	FKEY_EDDSA,
	FKEY_HS256,
	FKEY_ES384,
	FKEY_COUNT
}			FixtureKey;

extern const char *const fixture_key_alg[FKEY_COUNT];
extern const char *fixture_key_kid[FKEY_COUNT];
extern const char *const fixture_private_jwk[FKEY_COUNT];

extern void fixture_init(void);
extern StreamInfo *fixture_stream(unsigned int variant);
extern void fixture_select_stream(unsigned int variant);
extern void fixture_feed(const uint8 *data, size_t len, bool eof);
extern size_t fixture_feed_left(void);
extern size_t fixture_next_chunk(uint32 *state, size_t left);
extern struct ssl_st *fixture_tls(void);

/* Begin and end one fuzz input: a fresh context, freed afterwards */
extern MemoryContext fuzz_input_begin(void);
extern void fuzz_input_end(MemoryContext cxt);

#endif
