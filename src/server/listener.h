/*-------------------------------------------------------------------------
 *
 * listener.h
 *	  The listener process: its loop (listener.c) and its listen sockets
 *	  (listensock.c).  A connection and its parts: server/conn.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_LISTENER_H
#define SETSTREAM_LISTENER_H

/* listener.c */
extern void listener_run(int index);

/* listensock.c */
extern void listensock_hold_ports(void);
extern int	listensock_open(int *fds, int max);

#endif
