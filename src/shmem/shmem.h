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

extern void shmem_add_area(const ShmemArea *area);
extern List *pending_at_subxact_end(List *items, size_t subxid_offset,
									SubXactEvent event, SubTransactionId mySubid,
									SubTransactionId parentSubid);

#endif
