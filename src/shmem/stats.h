/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  Per-stream counters in shared memory (setstream.stats).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_STATS_H
#define SETSTREAM_STATS_H

#include "setstream.h"

extern Size stats_shmem_size(void);
extern void stats_shmem_init(void);

extern void stats_count_received(const char *stream);
extern void stats_register_callbacks(void);
extern void stats_count_rejected(const char *stream, SetErr code);
extern void stats_count_long_poll(const char *stream, int delta);

#endif
