/*-------------------------------------------------------------------------
 *
 * privileges.h
 *	  Rights per stream (emit, receive, read, deliver, manage).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_PRIVILEGES_H
#define SETSTREAM_PRIVILEGES_H

#include "nodes/pg_list.h"

extern void privileges_require(const char *stream, const char *privilege);
extern bool privileges_held(const char *stream, const char *privilege);
extern List *privileges_visible_streams(bool *all);
extern bool privileges_caller_bypasses(void);

#endif
