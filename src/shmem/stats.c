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
 *	  shared_preload_libraries nothing is counted.
 *
 *	  A SET counts as received when the transaction that stored it commits:
 *	  inside a transaction the counts wait in a list, which a subtransaction
 *	  abort trims and the commit applies.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "sql/privileges.h"
#include "shmem/shmem.h"
#include "shmem/stats.h"
#include "shmem/wakeup.h"

#define MAX_STAT_STREAMS 4096
#define STREAM_KEY_LEN 132
#define NCODES 8

typedef struct StreamStats
{
	char		name[STREAM_KEY_LEN];	/* hash key */
	pg_atomic_uint64 received;
	pg_atomic_uint64 rejected[NCODES];
	pg_atomic_uint32 long_polls;
} StreamStats;

static HTAB *stats_hash = NULL;
static LWLock *stats_lock = NULL;

/* Received SETs of the current transaction, by stream and subtransaction */
typedef struct PendingReceived
{
	char		stream[STREAM_KEY_LEN];
	SubTransactionId subxid;
	uint64		n;
} PendingReceived;

static List *pending = NIL;		/* in TopTransactionContext */

PG_FUNCTION_INFO_V1(setstream_stream_counters);
PG_FUNCTION_INFO_V1(setstream_listener_stats);

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

	ctl.keysize = STREAM_KEY_LEN;
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
	char		key[STREAM_KEY_LEN];
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
		for (int i = 0; i < NCODES; i++)
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
	SubTransactionId subxid;
	PendingReceived *p;
	MemoryContext old;
	ListCell   *lc;

	if (stats_hash == NULL)
		return;
	if (!IsTransactionState())
	{
		add_received(stream, 1);
		return;
	}
	subxid = GetCurrentSubTransactionId();
	foreach(lc, pending)
	{
		p = lfirst(lc);
		if (p->subxid == subxid && strncmp(p->stream, stream, STREAM_KEY_LEN - 1) == 0)
		{
			p->n++;
			return;
		}
	}
	old = MemoryContextSwitchTo(TopTransactionContext);
	p = palloc0(sizeof(PendingReceived));
	strlcpy(p->stream, stream, sizeof(p->stream));
	p->subxid = subxid;
	p->n = 1;
	pending = lappend(pending, p);
	MemoryContextSwitchTo(old);
}

static void
stats_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			foreach(lc, pending)
			{
				PendingReceived *p = lfirst(lc);

				add_received(p->stream, p->n);
			}
			pending = NIL;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			pending = NIL;
			break;
		default:
			break;
	}
}

static void
stats_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	pending = pending_at_subxact_end(pending, offsetof(PendingReceived, subxid),
									 event, mySubid, parentSubid);
}

/* Once per backend, from _PG_init */
void
stats_register_callbacks(void)
{
	RegisterXactCallback(stats_xact_callback, NULL);
	RegisterSubXactCallback(stats_subxact_callback, NULL);
}

void
stats_count_rejected(const char *stream, SetErr code)
{
	StreamStats *e = stats_entry(stream);

	if (e && code > SETERR_NONE && code < NCODES)
		pg_atomic_fetch_add_u64(&e->rejected[code], 1);
}

void
stats_count_long_poll(const char *stream, int delta)
{
	StreamStats *e = stats_entry(stream);

	if (e)
		pg_atomic_fetch_add_u32(&e->long_polls, delta);
}

static bool
name_listed(List *names, const char *name)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp(lfirst(lc), name) == 0)
			return true;
	return false;
}

/*
 * setstream.stream_counters(): stream, received, rejected (jsonb: code ->
 * count), long_polls; one row per stream that has counted anything.
 */
Datum
setstream_stream_counters(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS status;
	StreamStats *e;
	bool		all;
	List	   *visible;

	InitMaterializedSRF(fcinfo, 0);
	if (stats_hash == NULL)
		return (Datum) 0;

	/* only the streams the caller may see (privileges.c) */
	visible = privileges_visible_streams(&all);
	LWLockAcquire(stats_lock, LW_SHARED);
	hash_seq_init(&status, stats_hash);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};
		StringInfoData rej;
		bool		first = true;

		if (!all && !name_listed(visible, e->name))
			continue;
		initStringInfo(&rej);
		appendStringInfoChar(&rej, '{');
		for (int c = SETERR_INVALID_REQUEST; c < NCODES; c++)
		{
			uint64		n = pg_atomic_read_u64(&e->rejected[c]);

			if (n == 0)
				continue;
			appendStringInfo(&rej, "%s\"%s\": " UINT64_FORMAT,
							 first ? "" : ", ", seterr_name((SetErr) c), n);
			first = false;
		}
		appendStringInfoChar(&rej, '}');

		values[0] = CStringGetTextDatum(e->name);
		values[1] = Int64GetDatum((int64) pg_atomic_read_u64(&e->received));
		values[2] = DirectFunctionCall1(jsonb_in, CStringGetDatum(rej.data));
		values[3] = Int32GetDatum((int32) pg_atomic_read_u32(&e->long_polls));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(stats_lock);
	return (Datum) 0;
}

/* setstream.listener_stats(): listeners running, open connections, long polls */
Datum
setstream_listener_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	int			connections,
				long_polls,
				listeners;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	wakeup_listener_totals(&connections, &long_polls, &listeners);
	values[0] = Int32GetDatum(listeners);
	values[1] = Int32GetDatum(connections);
	values[2] = Int32GetDatum(long_polls);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
