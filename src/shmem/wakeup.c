/*-------------------------------------------------------------------------
 *
 * wakeup.c
 *	  Wake-ups from the emitting commit to the listeners.
 *
 *	  Shared memory holds WAKEUP_SLOTS generation counters; a stream maps
 *	  to the slot of its name's hash (two streams in one slot only cost a
 *	  spurious wake-up).  emit() notes the stream's slot in a backend-local
 *	  list; the transaction callback, registered once per backend, bumps the
 *	  noted generations at commit and sets every listener's latch.  At
 *	  commit it does nothing that can fail: atomics and SetLatch only.  A
 *	  listener parks a long poll with the generation it saw before its
 *	  transaction, and looks again when the generation moves.
 *
 *	  Two-phase commit: PREPARE TRANSACTION ends the preparing backend's
 *	  transaction (its notes are dropped there), and COMMIT PREPARED may
 *	  run in any backend, after a restart even.  What the prepared
 *	  transaction changed or emitted is not known there, so a COMMIT
 *	  PREPARED in a database that has setstream, once it has made the
 *	  prepared transaction visible, bumps every generation: the
 *	  configuration's (every cache drops) and every stream slot's (every
 *	  parked long poll and WebSocket session looks again).  That costs a
 *	  spurious wake-up for each unrelated prepared transaction, never a
 *	  missed one.
 *
 *	  What no commit of this node notes (a Citus node's commit on this
 *	  node's placements, a write of setstream.generations) the listeners
 *	  find every setstream.generation_check_interval (server/turn.c): the sum
 *	  of setstream.generations moved (wakeup_table_generation_seen, once
 *	  for the node), or SETs of a waited-on stream became due
 *	  (wakeup_bump_stream).
 *
 *	  Without shared_preload_libraries there is no shared memory and no
 *	  listener; everything here is then a no-op.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "tcop/utility.h"

#include "shmem/shmem.h"
#include "shmem/wakeup.h"

typedef struct ListenerSlot
{
	Latch	   *latch;			/* NULL when no listener runs here */
	pg_atomic_uint32 connections;
	pg_atomic_uint32 long_polls;
} ListenerSlot;

typedef struct WakeupShared
{
	pg_atomic_uint64 config_generation; /* streams, keys, tokens changed */
	pg_atomic_uint64 table_generation;	/* setstream.generations' sum seen */
	pg_atomic_uint64 generation[WAKEUP_SLOTS];
	ListenerSlot listeners[MAX_LISTENERS];
	Latch	   *senders[MAX_SENDER_LATCHES];	/* NULL: no sender there */
} WakeupShared;

static WakeupShared *shared = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* Slots noted by this transaction's emits (a few; duplicates skipped) */
#define MAX_NOTED 64
static int	noted[MAX_NOTED];
static int	nnoted = 0;
static bool noted_overflow = false;
static bool noted_config = false;

static Size
wakeup_shmem_size(void)
{
	return MAXALIGN(sizeof(WakeupShared));
}

/* Under AddinShmemInitLock (shmem.c) */
static void
wakeup_shmem_init(void)
{
	bool		found;

	shared = ShmemInitStruct("setstream", sizeof(WakeupShared), &found);
	if (!found)
	{
		pg_atomic_init_u64(&shared->config_generation, 0);
		pg_atomic_init_u64(&shared->table_generation, 0);
		for (int i = 0; i < WAKEUP_SLOTS; i++)
			pg_atomic_init_u64(&shared->generation[i], 0);
		for (int i = 0; i < MAX_LISTENERS; i++)
		{
			shared->listeners[i].latch = NULL;
			pg_atomic_init_u32(&shared->listeners[i].connections, 0);
			pg_atomic_init_u32(&shared->listeners[i].long_polls, 0);
		}
		for (int i = 0; i < MAX_SENDER_LATCHES; i++)
			shared->senders[i] = NULL;
	}
}

/* "setstream", the tranche of one lock that stats.c's table uses too */
static const ShmemArea wakeup_area = {
	"setstream", wakeup_shmem_size, wakeup_shmem_init
};

/* From _PG_init, when loaded by shared_preload_libraries */
void
wakeup_request_shmem(void)
{
	shmem_add_area(&wakeup_area);
}

bool
wakeup_enabled(void)
{
	return shared != NULL;
}

int
wakeup_slot(const char *stream)
{
	return (int) (hash_bytes((const unsigned char *) stream, strlen(stream))
				  % WAKEUP_SLOTS);
}

uint64
wakeup_generation(int slot)
{
	return shared ? pg_atomic_read_u64(&shared->generation[slot]) : 0;
}

/* Streams, keys or tokens changed: listeners drop their caches at commit */
void
wakeup_note_config(void)
{
	if (shared != NULL)
		noted_config = true;
}

uint64
wakeup_config_generation(void)
{
	return shared ? pg_atomic_read_u64(&shared->config_generation) : 0;
}

/* emit() queued a SET on this stream: wake the listeners at commit */
void
wakeup_note_emit(const char *stream)
{
	int			slot;

	if (shared == NULL)
		return;
	slot = wakeup_slot(stream);
	for (int i = 0; i < nnoted; i++)
		if (noted[i] == slot)
			return;
	if (nnoted < MAX_NOTED)
		noted[nnoted++] = slot;
	else
		noted_overflow = true;
}

/* The senders (sender.c) look whether the wake-up concerns a push stream */
static void
wake_senders(void)
{
	for (int i = 0; i < MAX_SENDER_LATCHES; i++)
	{
		Latch	   *latch = shared->senders[i];

		if (latch != NULL)
			SetLatch(latch);
	}
}

/* Wake every sender now (jwksreq.c: a refetch request) */
void
wakeup_senders(void)
{
	if (shared != NULL)
		wake_senders();
}

static void
wake_listeners(void)
{
	for (int i = 0; i < MAX_LISTENERS; i++)
	{
		Latch	   *latch = shared->listeners[i].latch;

		if (latch != NULL)
			SetLatch(latch);
	}
	wake_senders();
}

/* Every generation moves: caches drop, every waiting session looks again */
static void
bump_everything(void)
{
	pg_atomic_fetch_add_u64(&shared->config_generation, 1);
	for (int i = 0; i < WAKEUP_SLOTS; i++)
		pg_atomic_fetch_add_u64(&shared->generation[i], 1);
	wake_listeners();
}

/*
 * A listener read setstream.generations' sum (issue 18): if no process of
 * this node has seen that sum yet, the configuration changed by a path
 * that did not move the shared generations (another node's commit on this
 * node's placements, a COMMIT PREPARED, a write of the table itself):
 * everything moves, once for the whole node (the compare-and-swap).
 * Returns whether it did.
 */
bool
wakeup_table_generation_seen(uint64 sum)
{
	uint64		seen;

	if (shared == NULL)
		return false;
	seen = pg_atomic_read_u64(&shared->table_generation);
	if (seen == sum ||
		!pg_atomic_compare_exchange_u64(&shared->table_generation, &seen, sum))
		return false;
	bump_everything();
	return true;
}

/* SETs of the stream became due by a path no local commit noted */
void
wakeup_bump_stream(const char *stream)
{
	if (shared == NULL)
		return;
	pg_atomic_fetch_add_u64(&shared->generation[wakeup_slot(stream)], 1);
	wake_listeners();
}

static void
wakeup_xact_callback(XactEvent event, void *arg)
{
	if (nnoted == 0 && !noted_overflow && !noted_config)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		/* listeners re-check: a re-enabled stream may have SETs to hand out */
		if (noted_config)
			pg_atomic_fetch_add_u64(&shared->config_generation, 1);
		if (noted_overflow)
		{
			for (int i = 0; i < WAKEUP_SLOTS; i++)
				pg_atomic_fetch_add_u64(&shared->generation[i], 1);
		}
		else
		{
			for (int i = 0; i < nnoted; i++)
				pg_atomic_fetch_add_u64(&shared->generation[noted[i]], 1);
		}
		wake_listeners();
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		nnoted = 0;
		noted_overflow = false;
		noted_config = false;
	}
}

/*
 * COMMIT PREPARED: once the prepared transaction is committed (it is
 * visible when FinishPreparedTransaction returns), wake as its own commit
 * would have, had it not been prepared.
 */
static void
wakeup_process_utility(PlannedStmt *pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	bool		commit_prepared;

	commit_prepared = IsA(parsetree, TransactionStmt) &&
		((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED;

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);

	/* a prepared transaction belongs to the database that commits it */
	if (commit_prepared && shared != NULL &&
		OidIsValid(get_extension_oid("setstream", true)))
		bump_everything();
}

/* Once per backend, from _PG_init */
void
wakeup_register_callbacks(void)
{
	RegisterXactCallback(wakeup_xact_callback, NULL);
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = wakeup_process_utility;
}

void
wakeup_set_listener_latch(int index, Latch *latch)
{
	if (shared == NULL || index < 0 || index >= MAX_LISTENERS)
		return;
	shared->listeners[index].latch = latch;
	if (latch == NULL)
	{
		pg_atomic_write_u32(&shared->listeners[index].connections, 0);
		pg_atomic_write_u32(&shared->listeners[index].long_polls, 0);
	}
}

void
wakeup_report_listener(int index, int connections, int long_polls)
{
	if (shared == NULL || index < 0 || index >= MAX_LISTENERS)
		return;
	pg_atomic_write_u32(&shared->listeners[index].connections, connections);
	pg_atomic_write_u32(&shared->listeners[index].long_polls, long_polls);
}

void
wakeup_listener_totals(int *connections, int *long_polls, int *listeners)
{
	*connections = *long_polls = *listeners = 0;
	if (shared == NULL)
		return;
	for (int i = 0; i < MAX_LISTENERS; i++)
	{
		if (shared->listeners[i].latch == NULL)
			continue;
		(*listeners)++;
		*connections += pg_atomic_read_u32(&shared->listeners[i].connections);
		*long_polls += pg_atomic_read_u32(&shared->listeners[i].long_polls);
	}
}

void
wakeup_set_sender_latch(int index, Latch *latch)
{
	if (shared == NULL || index < 0 || index >= MAX_SENDER_LATCHES)
		return;
	shared->senders[index] = latch;
}
