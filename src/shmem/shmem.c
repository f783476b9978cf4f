/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  setstream's shared memory: the one owner of PostgreSQL's shmem
 *	  request and startup hooks.  Each module with state in shared memory
 *	  (wakeup.c's generations and latches, stats.c's per-stream counters,
 *	  counters.c's metrics, server/auth/limit.c's failed authentications,
 *	  jwksreq.c's JWK Set refetch requests)
 *	  adds an area from _PG_init; at the request hook every area's bytes
 *	  and lock tranche are requested, at the startup hook every area
 *	  attaches, in the order they were added, under AddinShmemInitLock.
 *	  The modules never call one another to size or attach their memory.
 *
 *	  Counters in shared memory count at commit: PendingCounts and its
 *	  transaction callbacks are the one rule for what a commit, an abort
 *	  and a subtransaction's end do to the counts kept until then
 *	  (stats.c, counters.c).
 *
 *	  Without shared_preload_libraries no area is added: the modules then
 *	  find no shared memory and do without (see each of them).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/memutils.h"

#include "shmem/shmem.h"

#define MAX_AREAS 8

static const ShmemArea *areas[MAX_AREAS];
static int	nareas = 0;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	for (int i = 0; i < nareas; i++)
	{
		RequestAddinShmemSpace(areas[i]->size());
		if (areas[i]->tranche != NULL)
			RequestNamedLWLockTranche(areas[i]->tranche, 1);
	}
}

static void
shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	for (int i = 0; i < nareas; i++)
		areas[i]->init();
	LWLockRelease(AddinShmemInitLock);
}

/* From _PG_init, while shared_preload_libraries loads */
void
shmem_add_area(const ShmemArea *area)
{
	if (nareas == MAX_AREAS)
		elog(ERROR, "setstream: too many shared memory areas");
	if (nareas == 0)
	{
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = shmem_request;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = shmem_startup;
	}
	areas[nareas++] = area;
}

/*
 * The entries of a list of counts kept for the commit, at the end of a
 * subtransaction: those of an aborted one (and of its children) go, those
 * of a committed one move to its parent.  Each entry is a struct holding
 * its SubTransactionId at SUBXID_OFFSET.  (The counts of stats.c and of
 * counters.c both follow this rule.)
 */
static List *
pending_at_subxact_end(List *items, size_t subxid_offset, SubXactEvent event,
					   SubTransactionId mySubid, SubTransactionId parentSubid)
{
	ListCell   *lc;

	foreach(lc, items)
	{
		SubTransactionId *subxid =
			(SubTransactionId *) ((char *) lfirst(lc) + subxid_offset);

		if (event == SUBXACT_EVENT_ABORT_SUB && *subxid >= mySubid)
			items = foreach_delete_current(items, lc);
		else if (event == SUBXACT_EVENT_COMMIT_SUB && *subxid == mySubid)
			*subxid = parentSubid;
	}
	return items;
}

static void
pending_xact_callback(XactEvent event, void *arg)
{
	PendingCounts *pc = arg;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			pc->commit(pc->items);
			pc->items = NIL;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			pc->items = NIL;
			break;
		default:
			break;
	}
}

static void
pending_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	PendingCounts *pc = arg;

	pc->items = pending_at_subxact_end(pc->items, pc->subxid_offset, event,
									   mySubid, parentSubid);
}

/* Once per backend, from _PG_init: "pc" counts at commit from now on */
void
pending_counts_register(PendingCounts *pc)
{
	RegisterXactCallback(pending_xact_callback, pc);
	RegisterSubXactCallback(pending_subxact_callback, pc);
}

/*
 * The entry of "pc" that counts for "stream" in the current
 * subtransaction: found, or added zeroed ("size" bytes, a struct that
 * begins with PendingKey) in TopTransactionContext
 */
void *
pending_stream_entry(PendingCounts *pc, const char *stream, Size size)
{
	SubTransactionId subxid = GetCurrentSubTransactionId();
	PendingKey *k;
	MemoryContext old;
	ListCell   *lc;

	Assert(pc->subxid_offset == offsetof(PendingKey, subxid));
	foreach(lc, pc->items)
	{
		k = lfirst(lc);
		if (k->subxid == subxid &&
			strncmp(k->stream, stream, PENDING_KEY_LEN - 1) == 0)
			return k;
	}
	old = MemoryContextSwitchTo(TopTransactionContext);
	k = palloc0(size);
	strlcpy(k->stream, stream, sizeof(k->stream));
	k->subxid = subxid;
	pc->items = lappend(pc->items, k);
	MemoryContextSwitchTo(old);
	return k;
}
