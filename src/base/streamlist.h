/*-------------------------------------------------------------------------
 *
 * streamlist.h
 *		Finding the record of a stream in a List by the stream's name
 *
 * The per-stream records kept in Lists (the sender's push streams and
 * pushes, the JWKS fetcher's sources and fetches, the listener's due
 * fingerprints) begin with the stream's name, char *stream; one lookup
 * serves them all.  A file using it for a type says so with
 * STREAM_NAMED(type), which fails to compile when the name is not first.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_STREAMLIST_H
#define SETSTREAM_STREAMLIST_H

#include "nodes/pg_list.h"

/* What every such record begins with */
typedef struct StreamNamed
{
	char	   *stream;
} StreamNamed;

#define STREAM_NAMED(type) \
	StaticAssertDecl(offsetof(type, stream) == 0, \
					 #type " must begin with its stream's name")

/* The first element of "list" whose stream is "stream", or NULL */
static inline void *
stream_list_find(List *list, const char *stream)
{
	ListCell   *lc;

	foreach(lc, list)
	{
		StreamNamed *e = lfirst(lc);

		if (strcmp(e->stream, stream) == 0)
			return e;
	}
	return NULL;
}

#endif							/* SETSTREAM_STREAMLIST_H */
