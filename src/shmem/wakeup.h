/*-------------------------------------------------------------------------
 *
 * wakeup.h
 *	  Shared memory of setstream: per-stream wake-up generations, the
 *	  listeners' latches and their counters.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_WAKEUP_H
#define SETSTREAM_WAKEUP_H

#include "storage/latch.h"

#define WAKEUP_SLOTS 1024
#define MAX_LISTENERS 64
#define MAX_SENDER_LATCHES 16

extern void wakeup_request_shmem(void);
extern void wakeup_register_callbacks(void);
extern bool wakeup_enabled(void);

extern int	wakeup_slot(const char *stream);
extern uint64 wakeup_generation(int slot);
extern void wakeup_note_emit(const char *stream);
extern void wakeup_note_config(void);
extern uint64 wakeup_config_generation(void);
extern bool wakeup_table_generation_seen(uint64 sum);
extern void wakeup_bump_stream(const char *stream);

extern void wakeup_set_listener_latch(int index, Latch *latch);
extern void wakeup_set_sender_latch(int index, Latch *latch);
extern void wakeup_senders(void);

/* Listener gauges, summed over workers by setstream.listener_stats() */
extern void wakeup_report_listener(int index, int connections, int long_polls);
extern void wakeup_listener_totals(int *connections, int *long_polls,
								   int *listeners);

#endif
