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

typedef struct ShmemArea
{
	const char *tranche;		/* a named LWLock tranche of one lock, or NULL */
	Size		(*size) (void);	/* bytes to reserve */
	void		(*init) (void); /* attach (and fill, the first time); runs
								 * under AddinShmemInitLock */
} ShmemArea;

extern void shmem_add_area(const ShmemArea *area);

#endif
