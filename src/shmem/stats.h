/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  Per-stream counters in shared memory (setstream.stats).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_STATS_H
#define SETSTREAM_STATS_H

#include "access/xact.h"
#include "nodes/pg_list.h"

#include "setstream.h"

#define STATS_KEY_LEN 132
#define STATS_NCODES 8				/* SetErr codes counted (SETERR_NONE unused) */

/* One stream's counters, as stats_snapshot copies them */
typedef struct StreamCounts
{
	char		name[STATS_KEY_LEN];
	uint64		received;
	uint64		rejected[STATS_NCODES];	/* by SetErr */
	uint32		long_polls;
} StreamCounts;

extern void stats_request_shmem(void);
extern List *stats_snapshot(void);

extern void stats_count_received(const char *stream);
extern void stats_register_callbacks(void);
extern void stats_count_rejected(const char *stream, SetErr code);
extern void stats_count_long_poll(const char *stream, int delta);

#endif
