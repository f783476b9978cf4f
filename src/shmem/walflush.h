/*-------------------------------------------------------------------------
 *
 * walflush.h
 *	  Answers after the WAL flush without waiting idle for it: the
 *	  listeners' requests to the WAL flusher (shmem/walflush.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_WALFLUSH_H
#define SETSTREAM_WALFLUSH_H

#include "access/xlogdefs.h"
#include "storage/latch.h"

extern bool setstream_pipelined_flush;

extern void walflush_request_shmem(void);

/* listeners */
extern bool walflush_available(int index);
extern void walflush_set_listener_latch(int index, Latch *latch);
extern XLogRecPtr walflush_turn_end(void);
extern bool walflush_done(XLogRecPtr lsn);
extern void walflush_ask(int index, XLogRecPtr lsn);
extern void walflush_now(XLogRecPtr lsn);

/* the flusher: the listener's supervisor (worker/worker.c) */
extern void walflush_attach_flusher(int index, Latch *latch);
extern void walflush_serve(int index);

#endif
