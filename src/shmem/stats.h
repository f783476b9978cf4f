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

extern void stats_request_shmem(void);

extern void stats_count_received(const char *stream);
extern void stats_register_callbacks(void);
extern void stats_count_rejected(const char *stream, SetErr code);
extern void stats_count_long_poll(const char *stream, int delta);

#endif
