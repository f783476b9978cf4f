/*-------------------------------------------------------------------------
 *
 * ssfcontrol.h
 *	  SSF stream events about a stream itself (issue 13): stream-updated
 *	  and verification SETs, queued by setstream rather than emitted.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_SSFCONTROL_H
#define SETSTREAM_SSFCONTROL_H

#include <jansson.h>

#define SSF_EVENT_VERIFICATION \
	"https://schemas.openid.net/secevent/ssf/event-type/verification"
#define SSF_EVENT_STREAM_UPDATED \
	"https://schemas.openid.net/secevent/ssf/event-type/stream-updated"

/* sqlapi.c: sign and queue it as the owner; NULL without a signing key */
extern char *sqlapi_emit_control(const char *name, const char *event_type,
								 json_t *event);

#endif							/* SETSTREAM_SSFCONTROL_H */
