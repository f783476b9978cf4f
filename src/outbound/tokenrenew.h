/*-------------------------------------------------------------------------
 *
 * tokenrenew.h
 *	  Renewing the OAuth access tokens of SSF subscriptions: sender 0
 *	  starts a short-lived token renewer per due token (tokenrenew.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_TOKENRENEW_H
#define SETSTREAM_TOKENRENEW_H

#include "datatype/timestamp.h"

extern void tokenrenew_when_due(TimestampTz now);
extern void tokenrenew_run(const char *stream);

#endif
