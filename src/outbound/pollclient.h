/*-------------------------------------------------------------------------
 *
 * pollclient.h
 *	  The RFC 8936 poll client (set_source), run by the sender's loop.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_POLLCLIENT_H
#define SETSTREAM_POLLCLIENT_H

/* GUCs (src/setstream.c) */
extern int	setstream_source_poll_timeout_ms;
extern int	setstream_source_max_events;

extern void pollclient_init(int sender_index);

/* Record answers, reread the sources when they changed, start due polls */
extern void pollclient_step(void);

/* Milliseconds until pollclient_step has work without an answer; -1: none */
extern long pollclient_timeout_ms(void);

#endif
