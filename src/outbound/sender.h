/*-------------------------------------------------------------------------
 *
 * sender.h
 *	  The sender background worker: RFC 8935 push of emitted SETs.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_SENDER_H
#define SETSTREAM_SENDER_H

#include "base/pg_compat.h"
#include "shmem/wakeup.h"

#define MAX_SENDERS MAX_SENDER_LATCHES

extern void sender_run(int index) pg_attribute_noreturn();

#endif
