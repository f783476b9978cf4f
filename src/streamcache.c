/*-------------------------------------------------------------------------
 *
 * streamcache.c
 *	  A per-process copy of each stream in use: its settings, its active
 *	  verification keys, the hashes of its active tokens, the fingerprints
 *	  of its client certificates and its signing key.  The listener
 *	  authenticates requests and verifies SETs with it outside any
 *	  transaction (the loop turn's transaction then only stores); SQL
 *	  functions in any backend (emit, receive, poll) use it to spare the
 *	  same lookups on every call.
 *
 *	  Any committed change to streams, keys, key_secrets, tokens or
 *	  client_certs bumps a generation in shared memory (a statement
 *	  trigger, then wakeup.c at commit); a listener that sees the
 *	  generation move drops the whole cache.  A stream that does not exist
 *	  is cached as absent too, so that unknown names cost no query each
 *	  time.  A backend also drops it when
 *	  its own transaction changes those tables (the trigger runs here) and
 *	  when a transaction aborts; without shared memory (setstream not in
 *	  shared_preload_libraries) it lives for one transaction only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
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

/*
 * Dropped caches are kept until no caller can hold a pointer into them:
 * the end of the transaction (a trigger may drop the cache in the middle
 * of an emit() that holds its stream), or, in the listener, the next turn.
 */
static List *retired = NIL;

static void
free_retired(void)
{
	ListCell   *lc;

	foreach(lc, retired)
		MemoryContextDelete((MemoryContext) lfirst(lc));
	list_free(retired);
	retired = NIL;
}

void
streamcache_reset(void)
{
	HASHCTL		ctl;

	if (cache_cxt != NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		retired = lappend(retired, cache_cxt);
		MemoryContextSwitchTo(old);
	}
	if (!IsTransactionState())
		free_retired();
	cache_cxt = AllocSetContextCreate(TopMemoryContext,
									  "setstream stream cache",
									  ALLOCSET_DEFAULT_SIZES);
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

/*
 * Read a stream with its keys (and, for the listener, its token hashes);
 * inside a transaction.
 */
void
streamcache_load(const char *name, bool with_tokens)
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
		if (with_tokens)
		{
			stream->token_hashes = store_token_hashes(name);
			stream->cert_hashes = store_cert_hashes(name);
		}
		stream->keys_loaded = true;
	}
	MemoryContextSwitchTo(old);

	name_key(name, key);
	entry = hash_search(cache, key, HASH_ENTER, NULL);
	entry->stream = stream;
}

/* The extension the cache was filled from: a re-created one voids it */
static Oid	cache_extension = InvalidOid;

/* Drop the cache; the config trigger calls this for our own changes */
void
streamcache_invalidate(void)
{
	if (cache != NULL)
		streamcache_reset();
}

static void
streamcache_xact_callback(XactEvent event, void *arg)
{
	bool		ending = event == XACT_EVENT_COMMIT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PREPARE ||
		event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT;
	bool		aborting = event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_ABORT;

	if (!ending)
		return;
	if (aborting || !wakeup_enabled())
		streamcache_invalidate();
	free_retired();
}

/* Once per backend, from _PG_init */
void
streamcache_register_callbacks(void)
{
	RegisterXactCallback(streamcache_xact_callback, NULL);
}

/*
 * The cached copy of a stream for an SQL function (inside a transaction):
 * loaded on first use; raises undefined_object unless missing_ok.
 */
StreamInfo *
streamcache_stream(const char *name, bool missing_ok)
{
	Oid			ext = get_extension_oid("setstream", false);
	StreamInfo *stream;

	if (ext != cache_extension)
	{
		streamcache_reset();
		cache_extension = ext;
	}
	streamcache_check_generation();
	if (!streamcache_lookup(name, &stream))
	{
		streamcache_load(name, false);
		streamcache_lookup(name, &stream);
	}
	if (stream == NULL && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" does not exist", name)));
	return stream;
}

/* The stream's active signing key (cached with the stream), or NULL */
SignKey *
streamcache_sign_key(StreamInfo *stream)
{
	if (!stream->sign_key_loaded)
	{
		MemoryContext old = MemoryContextSwitchTo(cache_cxt);

		stream->sign_key = store_sign_key(stream->name);
		stream->sign_key_loaded = true;
		MemoryContextSwitchTo(old);
	}
	return stream->sign_key;
}
