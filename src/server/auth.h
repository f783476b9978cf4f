/*-------------------------------------------------------------------------
 *
 * auth.h
 *	  Authentication of a stream route's peer (server/auth.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_AUTH_H
#define SETSTREAM_AUTH_H

#include "server/listener.h"
#include "store/streamcache.h"

extern const char *const auth_bearer_challenge_invalid;

extern bool auth_too_many_failures(Conn *conn);
extern bool auth_authorized(Conn *conn, StreamInfo *stream);
extern int	auth_session_denied(Conn *conn, StreamInfo *stream, const char **why);

#endif
