/*-------------------------------------------------------------------------
 *
 * handoff.h
 *	  Connections spread evenly over the listeners (server/handoff.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_HANDOFF_H
#define SETSTREAM_HANDOFF_H

extern void handoff_request_shmem(void);
extern void handoff_create_channels(void);
extern int	handoff_attach(int index);
extern void handoff_detach(void);
extern void handoff_note_open(int connections);
extern bool handoff_pass(int fd);
extern int	handoff_receive(void);

#endif
