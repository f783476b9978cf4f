/*-------------------------------------------------------------------------
 *
 * pushpullclient.h
 *	  pushpull as initiator over HTTP (set_delivery ... 'pushpull'), run by
 *	  the sender's loop.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_PUSHPULLCLIENT_H
#define SETSTREAM_PUSHPULLCLIENT_H

/* GUCs (src/setstream.c) */
extern int	setstream_pushpull_poll_interval_ms;
extern int	setstream_pushpull_batch;

extern void pushpullclient_init(int sender_index);

/*
 * Record answers (store the peer's SETs, apply its acks and setErrs), read
 * the pushpull streams again when they may have changed, take the due SETs
 * and start the requests that are due
 */
extern void pushpullclient_step(void);

/* Read the streams again at the next step (a pushpull-ws fallback changed) */
extern void pushpullclient_refresh(void);

/* Milliseconds until pushpullclient_step has work without an answer */
extern long pushpullclient_timeout_ms(void);

#endif
