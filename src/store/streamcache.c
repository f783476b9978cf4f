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
 *	  time; such names are bounded on their own (MAX_ABSENT_STREAMS), and a
 *	  full cache evicts single entries, least recently used first, never
 *	  one in use (see use_epoch).  A backend also drops it when
 *	  its own transaction changes those tables (the trigger runs here) and
 *	  when a transaction aborts; without shared memory (setstream not in
 *	  shared_preload_libraries) it lives for one transaction only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "lib/ilist.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "store/store.h"
#include "store/streamcache.h"
#include "shmem/wakeup.h"

#define STREAM_KEY_LEN 132
#define MAX_CACHED_STREAMS 4096	/* streams that exist */
#define MAX_ABSENT_STREAMS 1024	/* names that do not */

typedef struct CachedStream
{
	char		name[STREAM_KEY_LEN];	/* hash key */
	StreamInfo *stream;			/* NULL: no such stream */
	MemoryContext cxt;			/* the copy's memory (NULL when absent) */
	uint64		used;			/* use_epoch of its last lookup */
	dlist_node	lru;			/* in present or absent, most recent first */
} CachedStream;

static HTAB *cache = NULL;
static MemoryContext cache_cxt = NULL;
static uint64 cache_generation = 0;
static dlist_head present = DLIST_STATIC_INIT(present);
static dlist_head absent = DLIST_STATIC_INIT(absent);
static int	npresent = 0;
static int	nabsent = 0;

/*
 * Entries looked up in the current epoch are in use: a caller may hold
 * their pointer, so eviction passes them over.  An epoch ends with the
 * transaction, or, in the listener, with its loop turn
 * (streamcache_end_turn).
 */
static uint64 use_epoch = 1;
static bool turn_held = false;

/*
 * Dropped caches and evicted entries are kept until no caller can hold a
 * pointer into them: the end of the transaction (a trigger may drop the
 * cache in the middle of an emit() that holds its stream), or, in the
 * listener, the end of the loop turn.
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

static void
retire(MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	MemoryContextSetParent(cxt, TopMemoryContext);
	retired = lappend(retired, cxt);
	MemoryContextSwitchTo(old);
}

void
streamcache_reset(void)
{
	HASHCTL		ctl;

	if (cache_cxt != NULL)
		retire(cache_cxt);
	if (!IsTransactionState() && !turn_held)
		free_retired();
	cache_cxt = AllocSetContextCreate(TopMemoryContext,
									  "setstream stream cache",
									  ALLOCSET_DEFAULT_SIZES);
	ctl.keysize = STREAM_KEY_LEN;
	ctl.entrysize = sizeof(CachedStream);
	ctl.hcxt = cache_cxt;
	cache = hash_create("setstream streams", 64, &ctl,
						HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	dlist_init(&present);
	dlist_init(&absent);
	npresent = nabsent = 0;
}

/*
 * The listener holds what it looked up for a whole loop turn, across the
 * short transactions that load streams: nothing retired is freed, and no
 * entry used in the turn evicted, until streamcache_end_turn.
 */
void
streamcache_begin_turn(void)
{
	turn_held = true;
	use_epoch++;
}

void
streamcache_end_turn(void)
{
	turn_held = false;
	use_epoch++;
	if (!IsTransactionState())
		free_retired();
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
 * does not exist).  The copy lives at least until the end of the
 * transaction or, in the listener, of the loop turn.
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
	entry->used = use_epoch;
	dlist_move_head(entry->stream ? &present : &absent, &entry->lru);
	*stream = entry->stream;
	return true;
}

static void
forget(CachedStream *entry)
{
	dlist_delete(&entry->lru);
	if (entry->stream != NULL)
	{
		npresent--;
		retire(entry->cxt);
	}
	else
		nabsent--;
	hash_search(cache, entry->name, HASH_REMOVE, NULL);
}

/*
 * Make room for one more entry of the kind.  Names that do not exist are
 * bounded on their own (a flood of them evicts only its own kind) and hold
 * no pointer anyone keeps.  Of the streams, the least recently used one
 * goes, unless it is in use in this epoch: then every one is, and the
 * cache grows past its bound until the epoch ends.
 */
static void
make_room(bool exists)
{
	if (!exists)
	{
		if (nabsent >= MAX_ABSENT_STREAMS && !dlist_is_empty(&absent))
			forget(dlist_tail_element(CachedStream, lru, &absent));
		return;
	}
	if (npresent >= MAX_CACHED_STREAMS && !dlist_is_empty(&present))
	{
		CachedStream *oldest = dlist_tail_element(CachedStream, lru, &present);

		if (oldest->used != use_epoch)
			forget(oldest);
	}
}

/*
 * Read a stream with its keys (and, for the listener, its token hashes);
 * inside a transaction.  Each stream has a memory context of its own, so
 * that one can be evicted without the others.
 */
void
streamcache_load(const char *name, bool with_tokens)
{
	char		key[STREAM_KEY_LEN];
	CachedStream *entry;
	MemoryContext old;
	MemoryContext cxt;
	StreamInfo *stream;
	bool		found;

	cxt = AllocSetContextCreate(cache_cxt, "setstream cached stream",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	stream = store_find_stream(name);
	if (stream != NULL)
	{
		stream->keys = store_verify_keys(name, NULL);
		if (with_tokens)
		{
			stream->token_hashes = store_token_hashes(name);
			stream->cert_hashes = store_cert_hashes(name);
			stream->receiver_hashes = store_receiver_read_hashes(name);
		}
		stream->keys_loaded = true;
	}
	MemoryContextSwitchTo(old);
	if (stream == NULL)
	{
		MemoryContextDelete(cxt);
		cxt = NULL;
	}

	name_key(name, key);
	entry = hash_search(cache, key, HASH_FIND, NULL);
	if (entry != NULL)
		forget(entry);
	make_room(stream != NULL);
	entry = hash_search(cache, key, HASH_ENTER, &found);
	entry->stream = stream;
	entry->cxt = cxt;
	entry->used = use_epoch;
	if (stream != NULL)
	{
		dlist_push_head(&present, &entry->lru);
		npresent++;
	}
	else
	{
		dlist_push_head(&absent, &entry->lru);
		nabsent++;
	}
}

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
	if (!turn_held)
	{
		free_retired();
		use_epoch++;
	}
}

/* Once per backend, from _PG_init */
void
streamcache_register_callbacks(void)
{
	RegisterXactCallback(streamcache_xact_callback, NULL);
}

/*
 * A stream's cached copy, loaded (with its token hashes and certificate
 * fingerprints when with_tokens) if it is not cached yet; inside a
 * transaction.  NULL when it does not exist and missing_ok.
 */
StreamInfo *
streamcache_get(const char *name, bool with_tokens, bool missing_ok)
{
	StreamInfo *stream;

	if (!streamcache_lookup(name, &stream))
	{
		streamcache_load(name, with_tokens);
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
		MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(stream));

		stream->sign_key = store_sign_key(stream->name);
		stream->sign_key_loaded = true;
		MemoryContextSwitchTo(old);
	}
	return stream->sign_key;
}
