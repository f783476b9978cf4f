/*-------------------------------------------------------------------------
 *
 * streamcache.h
 *	  The per-process copy of streams, keys, token hashes and client
 *	  certificate fingerprints, and the stream record itself (StreamInfo:
 *	  what a row of setstream.streams says, with what the cache adds).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_STREAMCACHE_H
#define SETSTREAM_STREAMCACHE_H

#include "nodes/pg_list.h"

#include "set/set.h"

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
	bool		refuse_inbound; /* inbound 'refuse': every inbound SET is
								 * access_denied (set_inbound) */
	bool		auth_bearer;	/* client_auth: a bearer token is required */
	bool		auth_cert;		/* client_auth: a bound client cert is required */
	bool		peer_jwks;		/* keys from a peer_jwks_uri */
	/* the cache loads these with the stream */
	bool		keys_loaded;
	List	   *keys;			/* active verification keys (SetKey *) */
	List	   *token_hashes;	/* SHA-256 of active tokens (uint8[32]) */
	List	   *cert_hashes;	/* SHA-256 of bound client certs (uint8[32]) */
	List	   *receiver_hashes;	/* SHA-256 of its SSF receiver's ssf.read
									 * tokens: they open its poll endpoint */
	bool		sign_key_loaded;
	struct SignKey *sign_key;	/* the active signing key, or NULL */
	bool		filter_loaded;
	struct EmitFilter *filter;	/* what emit delivers (emitfilter.c); NULL:
								 * everything */
} StreamInfo;

/* The answer to each inbound SET of a stream whose inbound is 'refuse' */
#define STREAM_REFUSES_INBOUND "the stream refuses inbound SETs"

/* What set_verify needs of a cached stream (its keys are loaded with it) */
static inline SetRules
streamcache_rules(const StreamInfo *stream)
{
	SetRules	rules;

	rules.stream = stream->name;
	rules.issuer = stream->issuer;
	rules.peer_issuer = stream->peer_issuer;
	rules.ssf = stream->ssf;
	rules.allow_unsigned = stream->allow_unsigned;
	rules.keys = stream->keys;
	return rules;
}

extern bool streamcache_check_generation(void);
extern void streamcache_reset(void);
extern void streamcache_begin_turn(void);
extern void streamcache_end_turn(void);
extern bool streamcache_lookup(const char *name, StreamInfo **stream);
extern void streamcache_load(const char *name, bool with_tokens);
extern void streamcache_register_callbacks(void);
extern void streamcache_invalidate(void);
extern StreamInfo *streamcache_get(const char *name, bool with_tokens,
								   bool missing_ok);
extern struct SignKey *streamcache_sign_key(StreamInfo *stream);

#endif
