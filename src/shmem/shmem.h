/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  The owner of setstream's shared memory hooks (shmem/shmem.c): each
 *	  module that keeps state in shared memory adds its area here, from
 *	  _PG_init under shared_preload_libraries.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_SHMEM_H
#define SETSTREAM_SHMEM_H

#include "access/xact.h"
#include "nodes/pg_list.h"

typedef struct ShmemArea
{
	const char *tranche;		/* a named LWLock tranche of one lock, or NULL */
	Size		(*size) (void); /* bytes to reserve */
	void		(*init) (void); /* attach (and fill, the first time); runs
								 * under AddinShmemInitLock */
} ShmemArea;

/*
 * Counts kept until the transaction commits: entries (in
 * TopTransactionContext) of a struct holding the SubTransactionId that
 * counted them at subxid_offset.  At commit (or prepare) "commit" adds them
 * to shared memory; an abort drops them; a subtransaction's end follows
 * pending_at_subxact_end in shmem.c.
 */
typedef struct PendingCounts
{
	List	   *items;
	size_t		subxid_offset;
	void		(*commit) (List *items);
} PendingCounts;

/*
 * What the entries of counts kept per stream begin with
 * (pending_stream_entry); the stream's name as long as the shared
 * memory keys keep it
 */
#define PENDING_KEY_LEN 132

typedef struct PendingKey
{
	char		stream[PENDING_KEY_LEN];
	SubTransactionId subxid;
} PendingKey;

extern void shmem_add_area(const ShmemArea *area);
extern void pending_counts_register(PendingCounts *pc);
extern void *pending_stream_entry(PendingCounts *pc, const char *stream,
								  Size size);

#endif
