/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Per-stream counters kept in shared memory: SETs received (accepted,
 *	  duplicates included), SETs rejected by RFC 8935 error code, and long
 *	  polls waiting now.  What the tables already know (stored events,
 *	  outbox states) is counted from the tables by the setstream.stats view.
 *
 *	  A shared hash of at most MAX_STAT_STREAMS entries, keyed by stream
 *	  name; a lock is taken only to add an entry, counters are atomics.
 *	  Counters start at zero when the server starts.  Without
 *	  shared_preload_libraries nothing is counted.  stats_snapshot copies
 *	  them for the SQL functions (sql/statsapi.c), which decide what the
 *	  caller may see.
 *
 *	  A SET counts as received when the transaction that stored it commits:
 *	  inside a transaction the counts wait in a list, which a subtransaction
 *	  abort trims and the commit applies.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"

#include "shmem/shmem.h"
#include "shmem/stats.h"
#include "shmem/wakeup.h"

#define MAX_STAT_STREAMS 4096

typedef struct StreamStats
{
	char		name[STATS_KEY_LEN];	/* hash key */
	pg_atomic_uint64 received;
	pg_atomic_uint64 rejected[STATS_NCODES];
	pg_atomic_uint32 long_polls;
} StreamStats;

static HTAB *stats_hash = NULL;
static LWLock *stats_lock = NULL;

/* Received SETs of the current transaction, by stream and subtransaction */
typedef struct PendingReceived
{
	PendingKey	key;			/* stream, subxid */
	uint64		n;
} PendingReceived;

StaticAssertDecl(STATS_KEY_LEN == PENDING_KEY_LEN,
				 "a pending count's stream key is the shared one's");

static void commit_received(List *items);

static PendingCounts pending = {NIL, offsetof(PendingReceived, key.subxid),
commit_received};


static Size
stats_shmem_size(void)
{
	return hash_estimate_size(MAX_STAT_STREAMS, sizeof(StreamStats));
}

/* Under AddinShmemInitLock (shmem.c), after wakeup.c's area */
static void
stats_shmem_init(void)
{
	HASHCTL		ctl;

	ctl.keysize = STATS_KEY_LEN;
	ctl.entrysize = sizeof(StreamStats);
	stats_hash = ShmemInitHash("setstream stream stats", 64, MAX_STAT_STREAMS,
							   &ctl, HASH_ELEM | HASH_STRINGS);
	stats_lock = &(GetNamedLWLockTranche("setstream"))->lock;
}

/* The lock is wakeup.c's tranche "setstream" */
static const ShmemArea stats_area = {NULL, stats_shmem_size, stats_shmem_init};

/* From _PG_init, under shared_preload_libraries, after wakeup_request_shmem */
void
stats_request_shmem(void)
{
	shmem_add_area(&stats_area);
}

static StreamStats *
stats_entry(const char *stream)
{
	char		key[STATS_KEY_LEN];
	StreamStats *entry;
	bool		found;

	if (stats_hash == NULL)
		return NULL;
	memset(key, 0, sizeof(key));
	strlcpy(key, stream, sizeof(key));

	LWLockAcquire(stats_lock, LW_SHARED);
	entry = hash_search(stats_hash, key, HASH_FIND, NULL);
	LWLockRelease(stats_lock);
	if (entry != NULL)
		return entry;

	LWLockAcquire(stats_lock, LW_EXCLUSIVE);
	entry = hash_search(stats_hash, key, HASH_ENTER_NULL, &found);
	if (entry != NULL && !found)
	{
		pg_atomic_init_u64(&entry->received, 0);
		for (int i = 0; i < STATS_NCODES; i++)
			pg_atomic_init_u64(&entry->rejected[i], 0);
		pg_atomic_init_u32(&entry->long_polls, 0);
	}
	LWLockRelease(stats_lock);
	return entry;				/* NULL when the table is full */
}

static void
add_received(const char *stream, uint64 n)
{
	StreamStats *e = stats_entry(stream);

	if (e)
		pg_atomic_fetch_add_u64(&e->received, n);
}

void
stats_count_received(const char *stream)
{
	PendingReceived *p;

	if (stats_hash == NULL)
		return;
	if (!IsTransactionState())
	{
		add_received(stream, 1);
		return;
	}
	p = pending_stream_entry(&pending, stream, sizeof(PendingReceived));
	p->n++;
}

static void
commit_received(List *items)
{
	ListCell   *lc;

	foreach(lc, items)
	{
		PendingReceived *p = lfirst(lc);

		add_received(p->key.stream, p->n);
	}
}

/* Once per backend, from _PG_init */
void
stats_register_callbacks(void)
{
	pending_counts_register(&pending);
}

void
stats_count_rejected(const char *stream, SetErr code)
{
	StreamStats *e = stats_entry(stream);

	if (e && code > SETERR_NONE && code < STATS_NCODES)
		pg_atomic_fetch_add_u64(&e->rejected[code], 1);
}

void
stats_count_long_poll(const char *stream, int delta)
{
	StreamStats *e = stats_entry(stream);

	if (e)
		pg_atomic_fetch_add_u32(&e->long_polls, delta);
}

/*
 * A copy of every stream's counters (StreamCounts *, in the current memory
 * context), taken under the lock; NIL without shared memory.  Who may see
 * which stream is the caller's question (sql/statsapi.c).
 */
List *
stats_snapshot(void)
{
	HASH_SEQ_STATUS status;
	StreamStats *e;
	List	   *out = NIL;

	if (stats_hash == NULL)
		return NIL;
	LWLockAcquire(stats_lock, LW_SHARED);
	hash_seq_init(&status, stats_hash);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		StreamCounts *c = palloc0(sizeof(StreamCounts));

		strlcpy(c->name, e->name, sizeof(c->name));
		c->received = pg_atomic_read_u64(&e->received);
		for (int code = SETERR_INVALID_REQUEST; code < STATS_NCODES; code++)
			c->rejected[code] = pg_atomic_read_u64(&e->rejected[code]);
		c->long_polls = pg_atomic_read_u32(&e->long_polls);
		out = lappend(out, c);
	}
	LWLockRelease(stats_lock);
	return out;
}
