/*-------------------------------------------------------------------------
 *
 * walflush.c
 *	  Answers after the WAL flush, without waiting idle for it.
 *
 *	  With synchronous_commit on, a listener's commit waits for its WAL
 *	  flush (an fdatasync, milliseconds on many disks) with nothing else to
 *	  do, while requests queue on its sockets.  With
 *	  setstream.pipelined_flush (on by default) a listener's turn commits
 *	  without waiting (synchronous_commit off for the listener's own
 *	  commits) and holds the turn's answers until the WAL is flushed past
 *	  the turn's end (walflush_turn_end: everything the turn wrote, and
 *	  everything committed before it that it may have read).  It asks its
 *	  flusher, the listener's supervisor (worker/worker.c: a process that
 *	  otherwise only waits for its listener to end, connected to no
 *	  database), to flush that far, and serves the next requests
 *	  meanwhile: parsing, verification and the next turn's store run while
 *	  the disk syncs.  The flusher flushes (XLogFlush, the same call a
 *	  synchronous commit makes) and sets the listener's latch.
 *
 *	  Nothing is answered earlier than with synchronous_commit on: a 202,
 *	  an ack or a delivered SET leaves only once GetFlushRecPtr() is past
 *	  the turn's end.  What differs is visibility: another session may see
 *	  a stored SET for the moment between its commit and its flush (as with
 *	  any asynchronous commit); if the server crashes in that moment the
 *	  SET is gone, was never acknowledged, and its transmitter sends it
 *	  again.
 *
 *	  Pipelining is off, and listeners commit synchronously as before, when
 *	  the setting is off, when no flusher runs (no shared memory without
 *	  shared_preload_libraries, or a supervisor that ended), or when
 *	  synchronous_standby_names is set (a synchronous commit would also
 *	  wait for the standbys; the flusher only flushes locally).  A listener
 *	  whose flusher has not answered in FLUSHER_PATIENCE_MS flushes itself.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "port/atomics.h"
#include "replication/syncrep.h"
#include "storage/latch.h"
#include "storage/shmem.h"

#include "shmem/shmem.h"
#include "shmem/wakeup.h"
#include "shmem/walflush.h"

bool		setstream_pipelined_flush = true;

typedef struct WalFlushShared
{
	/* per listener: the LSN it waits for (0: none), its and its flusher's latch */
	pg_atomic_uint64 waiting[MAX_LISTENERS];
	Latch	   *volatile listener_latch[MAX_LISTENERS];
	Latch	   *volatile flusher_latch[MAX_LISTENERS];
} WalFlushShared;

static WalFlushShared *shared = NULL;

static Size
walflush_shmem_size(void)
{
	return MAXALIGN(sizeof(WalFlushShared));
}

/* Attach (and fill, the first time); under AddinShmemInitLock (shmem.c) */
static void
walflush_shmem_init(void)
{
	bool		found;

	shared = ShmemInitStruct("setstream wal flush", sizeof(WalFlushShared),
							 &found);
	if (!found)
	{
		for (int i = 0; i < MAX_LISTENERS; i++)
		{
			pg_atomic_init_u64(&shared->waiting[i], 0);
			shared->listener_latch[i] = NULL;
			shared->flusher_latch[i] = NULL;
		}
	}
}

static const ShmemArea walflush_area = {
	NULL, walflush_shmem_size, walflush_shmem_init
};

/* From _PG_init, while shared_preload_libraries loads */
void
walflush_request_shmem(void)
{
	shmem_add_area(&walflush_area);
}

static bool
valid_index(int index)
{
	return shared != NULL && index >= 0 && index < MAX_LISTENERS;
}

/* ---------------------------------------------------------------------
 * Listeners
 * ---------------------------------------------------------------------
 */

/* May listener "index" commit its next turn without waiting for the flush? */
bool
walflush_available(int index)
{
	return setstream_pipelined_flush && valid_index(index) &&
		shared->flusher_latch[index] != NULL &&
		(SyncRepStandbyNames == NULL || SyncRepStandbyNames[0] == '\0');
}

void
walflush_set_listener_latch(int index, Latch *latch)
{
	if (valid_index(index))
	{
		pg_atomic_write_u64(&shared->waiting[index], 0);
		shared->listener_latch[index] = latch;
		pg_memory_barrier();
	}
}

/*
 * How far the WAL must be flushed before the answers of the turn that
 * just ended may go: everything inserted until now.  That is past the
 * turn's own commit and past every commit it could have seen, a pipelined
 * commit of another listener among them.
 */
XLogRecPtr
walflush_turn_end(void)
{
	XLogRecPtr	lsn = GetXLogInsertRecPtr();

	/*
	 * At the start of a page that position is past the page's header,
	 * which nothing has written yet: the WAL ends at the page's start (as
	 * xlog.c's XLogBytePosToEndRecPtr says).
	 */
	if (XLogSegmentOffset(lsn, wal_segment_size) == SizeOfXLogLongPHD)
		lsn -= SizeOfXLogLongPHD;
	else if (lsn % XLOG_BLCKSZ == SizeOfXLogShortPHD)
		lsn -= SizeOfXLogShortPHD;
	return lsn;
}

bool
walflush_done(XLogRecPtr lsn)
{
	return lsn <= GetFlushRecPtr(NULL);
}

/*
 * Ask listener "index"'s flusher to flush to lsn and then set the
 * listener's latch; without a flusher, flush here and now
 */
void
walflush_ask(int index, XLogRecPtr lsn)
{
	Latch	   *flusher = NULL;

	if (valid_index(index))
	{
		pg_atomic_write_u64(&shared->waiting[index], lsn);
		pg_memory_barrier();
		flusher = shared->flusher_latch[index];
	}
	if (flusher != NULL)
		SetLatch(flusher);
	else
		walflush_now(lsn);
}

/* Flush to lsn here and now, as a synchronous commit would */
void
walflush_now(XLogRecPtr lsn)
{
	if (!walflush_done(lsn))
		XLogFlush(lsn);
}

/* ---------------------------------------------------------------------
 * The flusher: listener "index"'s supervisor, while its listener runs
 * ---------------------------------------------------------------------
 */
void
walflush_attach_flusher(int index, Latch *latch)
{
	if (valid_index(index))
	{
		shared->flusher_latch[index] = latch;
		pg_memory_barrier();
	}
}

/* Flush what the listener waits for; then set its latch */
void
walflush_serve(int index)
{
	uint64		lsn;
	Latch	   *latch;

	if (!valid_index(index))
		return;
	lsn = pg_atomic_read_u64(&shared->waiting[index]);
	if (lsn == 0 || RecoveryInProgress())
		return;
	walflush_now(lsn);
	/* it asked again meanwhile: the latch is set again, and next round */
	if (!pg_atomic_compare_exchange_u64(&shared->waiting[index], &lsn, 0))
		return;
	latch = shared->listener_latch[index];
	if (latch != NULL)
		SetLatch(latch);
}
