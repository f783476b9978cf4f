/*-------------------------------------------------------------------------
 *
 * emitfilter.h
 *	  What emit delivers to a stream: the event types of its
 *	  events_delivered and the subjects its subjects allow (SSF; issue 13).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_EMITFILTER_H
#define SETSTREAM_EMITFILTER_H

#include "codec/json.h"
#include "store/streamcache.h"

/* A stream's filter, cached with the stream (streamcache.c frees it) */
typedef struct EmitFilter
{
	bool		by_event;		/* the stream has events_requested */
	List	   *events;			/* events_delivered (char *) */
	bool		has_receiver;	/* an SSF receiver's stream */
	bool		has_subjects;	/* rows in setstream.stream_subjects */
	List	   *included;		/* canonical JSON text of added subjects */
	List	   *excluded;		/* ... of removed ones */
} EmitFilter;

extern bool emitfilter_allows(StreamInfo *stream, const char *event_type,
							  json_t *subject, const char **why);

#endif
