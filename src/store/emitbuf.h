/*-------------------------------------------------------------------------
 *
 * emitbuf.h
 *	  Batching of the SETs emit_trigger queues (see emitbuf.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_EMITBUF_H
#define SETSTREAM_EMITBUF_H

extern void emitbuf_init(void);
extern void emitbuf_add(const char *stream, const char *jti,
						const char *event_type, const char *claims,
						const char *token);

#endif
