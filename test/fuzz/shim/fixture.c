/*-------------------------------------------------------------------------
 *
 * fixture.c
 *	  What the fuzz targets run against: the stream "fuzz" in every
 *	  setting that changes how a SET is checked, with verification keys of
 *	  each algorithm family (ES256, ES384, RS256/PS256, EdDSA, HS256) and
 *	  one bearer token; the listener-side services the fuzzed code calls
 *	  (the stream cache, statistics, wake-up slots); and the socket, whose
 *	  bytes come from the fuzz input.
 *
 *-------------------------------------------------------------------------
 */
#include "shim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "server/auth/auth.h"
#include "server/conn.h"
#include "shmem/stats.h"
#include "store/streamcache.h"
#include "shmem/wakeup.h"

#include "keys.h"

/* 256 bits of HMAC secret: test material, never a real key */
#define KEY_HS256 "{\"kty\":\"oct\",\"kid\":\"hs256-fixture\",\"alg\":\"HS256\"," \
	"\"k\":\"Zml4dHVyZS1obWFjLXNlY3JldC1mb3ItZnV6emluZy0wMTIzNDU2Nzg5\"}"

const char *const fixture_key_alg[FKEY_COUNT] = {
	"ES256", "RS256", "EdDSA", "HS256", "ES384"
};

const char *const fixture_private_jwk[FKEY_COUNT] = {
	KEY_ES256, KEY_RS256, KEY_EDDSA, KEY_HS256, KEY_ES384
};

const char *fixture_key_kid[FKEY_COUNT];

#define STREAM_VARIANTS 16
static StreamInfo *streams[STREAM_VARIANTS];
static unsigned int selected_variant = 0;

/* The public half of a private JWK, as a peer would register it */
static SetKey *
stored_key(FixtureKey k)
{
	static const char *const private_members[] = {"d", "p", "q", "dp", "dq", "qi"};
	json_error_t jerr;
	json_t	   *jwk = json_loads(fixture_private_jwk[k], 0, &jerr);
	SetKey	   *key = palloc0(sizeof(SetKey));
	json_t	   *crv;

	if (jwk == NULL)
		elog(ERROR, "fixture key %d: %s", (int) k, jerr.text);
	if (k != FKEY_HS256)
		for (int i = 0; i < lengthof(private_members); i++)
			json_object_del(jwk, private_members[i]);
	/* RS256 is registered without "alg", so that PS256 is tried too */
	if (k == FKEY_RS256)
		json_object_del(jwk, "alg");
	key->kid = pstrdup(json_string_value(json_object_get(jwk, "kid")));
	key->kty = pstrdup(json_string_value(json_object_get(jwk, "kty")));
	crv = json_object_get(jwk, "crv");
	key->crv = crv ? pstrdup(json_string_value(crv)) : NULL;
	key->alg = json_object_get(jwk, "alg") ?
		pstrdup(json_string_value(json_object_get(jwk, "alg"))) : NULL;
	key->jwk = json_dumps(jwk, JSON_COMPACT);
	fixture_key_kid[k] = key->kid;
	return key;
}

/*
 * Variant bits: 1 = SSF profile (else rfc8417), 2 = alg "none" allowed,
 * 4 = no peer_issuer (no inbound SETs), 8 = stream disabled and refusing
 * inbound SETs (what the update to 0.3.0 makes of a disabled stream).
 */
static StreamInfo *
make_stream(unsigned int variant, List *keys, List *token_hashes)
{
	StreamInfo *s = palloc0(sizeof(StreamInfo));

	s->name = "fuzz";
	s->issuer = FIXTURE_ISSUER;
	s->audience = lappend(NIL, FIXTURE_PEER_ISSUER);
	s->peer_issuer = (variant & 4) ? NULL : FIXTURE_PEER_ISSUER;
	s->ssf = (variant & 1) != 0;
	s->allow_unsigned = (variant & 2) != 0;
	s->status = (variant & 8) ? 'd' : 'e';
	s->refuse_inbound = (variant & 8) != 0;
	s->auth_bearer = true;		/* the default: Authorization: Bearer */
	s->keys_loaded = true;
	s->keys = keys;
	s->token_hashes = token_hashes;
	s->sign_key_loaded = true;
	return s;
}

void
fixture_init(void)
{
	MemoryContext old;
	List	   *keys = NIL;
	uint8	   *hash;

	if (streams[0] != NULL)
		return;
	shim_memory_init();
	jose_init_allocators();
	old = MemoryContextSwitchTo(TopMemoryContext);
	for (int k = 0; k < FKEY_COUNT; k++)
		keys = lappend(keys, stored_key(k));
	hash = palloc(SHA256_DIGEST_LENGTH);
	SHA256((const unsigned char *) FIXTURE_TOKEN, strlen(FIXTURE_TOKEN), hash);
	for (unsigned int v = 0; v < STREAM_VARIANTS; v++)
		streams[v] = make_stream(v, keys, lappend(NIL, hash));
	MemoryContextSwitchTo(old);
}

StreamInfo *
fixture_stream(unsigned int variant)
{
	return streams[variant % STREAM_VARIANTS];
}

void
fixture_select_stream(unsigned int variant)
{
	selected_variant = variant % STREAM_VARIANTS;
}

/*
 * Per input: a context under TopMemoryContext, deleted afterwards.  What
 * an input leaves allocated in TopMemoryContext itself would pile up in a
 * listener that runs for months: that aborts.
 */
static Size top_bytes_before;

MemoryContext
fuzz_input_begin(void)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "fuzz input",
											  ALLOCSET_DEFAULT_SIZES);

	top_bytes_before = shim_context_bytes(TopMemoryContext, false);
	MemoryContextSwitchTo(cxt);
	return cxt;
}

void
fuzz_input_end(MemoryContext cxt)
{
	MemoryContextSwitchTo(TopMemoryContext);
	MemoryContextDelete(cxt);
	if (shim_context_bytes(TopMemoryContext, false) != top_bytes_before)
	{
		fprintf(stderr, "an input left %zd bytes in TopMemoryContext\n",
				(ssize_t) (shim_context_bytes(TopMemoryContext, false) - top_bytes_before));
		abort();
	}
}

/* ---------------------------------------------------------------------
 * The listener's services
 * ---------------------------------------------------------------------
 */

/* "fuzz" is cached; any other valid name is cached as "no such stream" */
bool
streamcache_lookup(const char *name, StreamInfo **stream)
{
	*stream = strcmp(name, "fuzz") == 0 ? streams[selected_variant] : NULL;
	return true;
}

/*
 * The per-address limit of failed authentications (server/auth/limit.c) would
 * carry state from one input to the next and make runs irreproducible:
 * no address is ever blocked here, so every request is authenticated.
 */
bool
authlimit_blocked(const AuthLimitKey *key, TimestampTz now, int *retry_after_s)
{
	return false;
}

void
authlimit_record_failure(const AuthLimitKey *key, TimestampTz now)
{
}

/* Connections are never accepted here */
void
auth_peer_key(const struct sockaddr *addr, AuthLimitKey *key)
{
	memset(key, 0, sizeof(*key));
}

void
stats_count_received(const char *stream)
{
}

void
stats_count_rejected(const char *stream, SetErr code)
{
	/* the code must have a wire name: this raises if it has none */
	(void) seterr_name(code);
}

bool
wakeup_enabled(void)
{
	return false;
}

int
wakeup_slot(const char *stream)
{
	return 0;
}

uint64
wakeup_generation(int slot)
{
	return 1;
}

/* ---------------------------------------------------------------------
 * The socket: reads return what fixture_feed offered, then EAGAIN (or
 * 0 once the peer has "closed"); writes take everything
 * ---------------------------------------------------------------------
 */
static const uint8 *feed_data;
static size_t feed_len;
static bool feed_eof;

void
fixture_feed(const uint8 *data, size_t len, bool eof)
{
	feed_data = data;
	feed_len = len;
	feed_eof = eof;
}

size_t
fixture_feed_left(void)
{
	return feed_len;
}

/*
 * The fixture plays TLS under sock.c: a connection whose sock.ssl is
 * fixture_tls() reads the fed bytes and writes into nothing.
 */
SSL *
fixture_tls(void)
{
	static char fake;

	return (SSL *) &fake;
}

ssize_t
tls_recv(Sock *sock, char *buf, size_t len)
{
	size_t		n = Min(len, feed_len);

	if (n == 0)
	{
		if (feed_eof)
			return 0;
		errno = EAGAIN;
		return -1;
	}
	memcpy(buf, feed_data, n);
	feed_data += n;
	feed_len -= n;
	return n;
}

ssize_t
tls_send(Sock *sock, const char *buf, size_t len)
{
	return len;
}

void
tls_close(Sock *sock)
{
	sock->ssl = NULL;
}

/*
 * How many bytes the next read gets: the whole rest when the plan byte's
 * top bit is clear, else sizes from 1 to 128 drawn from the plan.
 */
size_t
fixture_next_chunk(uint32 *state, size_t left)
{
	size_t		n;

	if ((*state & 0x80) == 0)
		return left;
	*state = *state * 1103515245 + 12345;
	n = ((*state >> 16) & 0x7f) + 1;
	*state |= 0x80;
	return Min(n, left);
}
