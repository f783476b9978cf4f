/*-------------------------------------------------------------------------
 *
 * ssf.h
 *	  The SSF transmitter's endpoints on the listener (server/ssf.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_SSF_H
#define SETSTREAM_SSF_H

#include "server/conn.h"
#include "store/store.h"

typedef enum SsfRoute
{
	SSF_NONE,
	SSF_CONFIGURATION,			/* GET /.well-known/ssf-configuration */
	SSF_STATUS,					/* GET, POST /ssf/status */
	SSF_STREAMS,				/* POST, GET, PATCH, PUT, DELETE /ssf/streams */
	SSF_SUBJECT_ADD,			/* POST /ssf/subjects:add */
	SSF_SUBJECT_REMOVE,			/* POST /ssf/subjects:remove */
	SSF_VERIFY					/* POST /ssf/verify (issue 13) */
} SsfRoute;

extern SsfRoute ssf_route(const char *path);
extern bool ssf_method_allowed(Conn *conn, SsfRoute route);
extern PrepResult ssf_prepare(Conn *conn, SsfRoute route, void **state);
extern TurnResult ssf_execute(Conn *conn, SsfRoute route, void *state);

#endif
