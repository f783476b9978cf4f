/*-------------------------------------------------------------------------
 *
 * pushpullws.h
 *	  pushpull as initiator over a WebSocket (set_delivery ...
 *	  'pushpull-ws'), run by the sender's loop.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_PUSHPULLWS_H
#define SETSTREAM_PUSHPULLWS_H

extern void pushpullws_init(int sender_index);

/* The epoll fd of the WebSockets' sockets, for the sender's wait set */
extern int	pushpullws_epoll_fd(void);

/*
 * Move bytes on the sockets that are ready, open and reopen connections,
 * apply what the peers sent and send what is due
 */
extern void pushpullws_step(void);

/* Milliseconds until pushpullws_step has work without a socket event */
extern long pushpullws_timeout_ms(void);

/*
 * Does the pushpull-ws stream use the HTTP binding now (its peer refused
 * the upgrade)?  pushpullclient.c serves it then.
 */
extern bool pushpullws_http_fallback(const char *stream, const char *url);

/* Does any pushpull-ws stream use the HTTP binding now? */
extern bool pushpullws_any_fallback(void);

#endif
