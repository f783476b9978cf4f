/*-------------------------------------------------------------------------
 *
 * streamcache.c
 *	  The listener keeps a copy of each stream it serves: its settings, its
 *	  active verification keys and the hashes of its active tokens.  With
 *	  them it authenticates requests and verifies SETs outside any
 *	  transaction; the loop turn's transaction then only stores.
 *
 *	  Any committed change to streams, keys, key_secrets or tokens bumps a
 *	  generation in shared memory (a statement trigger, then wakeup.c at
 *	  commit); a listener that sees the generation move drops the whole
 *	  cache.  A stream that does not exist is cached as absent too, so that
 *	  unknown names cost no query each time.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "store.h"
#include "streamcache.h"
#include "wakeup.h"

#define STREAM_KEY_LEN 132
#define MAX_CACHED_STREAMS 4096

typedef struct CachedStream
{
	char		name[STREAM_KEY_LEN];	/* hash key */
	StreamInfo *stream;			/* NULL: no such stream */
} CachedStream;

static HTAB *cache = NULL;
static MemoryContext cache_cxt = NULL;
static uint64 cache_generation = 0;

void
streamcache_reset(void)
{
	HASHCTL		ctl;

	if (cache_cxt == NULL)
		cache_cxt = AllocSetContextCreate(TopMemoryContext,
										  "setstream stream cache",
										  ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(cache_cxt);
	ctl.keysize = STREAM_KEY_LEN;
	ctl.entrysize = sizeof(CachedStream);
	ctl.hcxt = cache_cxt;
	cache = hash_create("setstream streams", 64, &ctl,
						HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/*
 * Drop everything when streams, keys or tokens changed anywhere; returns
 * whether they did.
 */
bool
streamcache_check_generation(void)
{
	uint64		gen = wakeup_config_generation();

	if (cache == NULL || gen != cache_generation)
	{
		streamcache_reset();
		cache_generation = gen;
		return true;
	}
	return false;
}

static void
name_key(const char *name, char *key)
{
	memset(key, 0, STREAM_KEY_LEN);
	strlcpy(key, name, STREAM_KEY_LEN);
}

/*
 * Is the stream cached?  If so, *stream is its copy (NULL when the stream
 * does not exist).  The copy lives until the next reset.
 */
bool
streamcache_lookup(const char *name, StreamInfo **stream)
{
	char		key[STREAM_KEY_LEN];
	CachedStream *entry;

	if (cache == NULL)
		return false;
	name_key(name, key);
	entry = hash_search(cache, key, HASH_FIND, NULL);
	if (entry == NULL)
		return false;
	*stream = entry->stream;
	return true;
}

/* Read a stream with its keys and token hashes; inside a transaction */
void
streamcache_load(const char *name)
{
	char		key[STREAM_KEY_LEN];
	CachedStream *entry;
	MemoryContext old;
	StreamInfo *stream;

	if (hash_get_num_entries(cache) >= MAX_CACHED_STREAMS)
		streamcache_reset();
	old = MemoryContextSwitchTo(cache_cxt);
	stream = store_find_stream(name);
	if (stream != NULL)
	{
		stream->keys = store_verify_keys(name, NULL);
		stream->token_hashes = store_token_hashes(name);
		stream->keys_loaded = true;
	}
	MemoryContextSwitchTo(old);

	name_key(name, key);
	entry = hash_search(cache, key, HASH_ENTER, NULL);
	entry->stream = stream;
}
