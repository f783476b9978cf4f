/*-------------------------------------------------------------------------
 *
 * exchange.h
 *	  The protocol operations on a stream, shared by the SQL API and the
 *	  listener: receive one SET, ingest a Communication Object, poll.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_EXCHANGE_H
#define SETSTREAM_EXCHANGE_H

#include "commobj.h"
#include "set.h"

/* The outcome of one SET of a Communication Object */
typedef enum IngestOutcome
{
	INGEST_ACK,					/* stored (or stored before): acknowledge */
	INGEST_SETERR,				/* invalid: report in setErrs */
	INGEST_UNACKED				/* failed for another reason: peer resends */
} IngestOutcome;

extern IngestOutcome exchange_ingest_set(StreamInfo *stream, SetEntry *entry,
										 SetFailure *f);
extern json_t *exchange_ingest(StreamInfo *stream, CommObj *obj);
extern json_t *exchange_poll(StreamInfo *stream, CommObj *req, bool *more);
extern json_t *exchange_take(StreamInfo *stream, int max_events, bool *more);
extern const char *seterr_description(SetErr code, const char *message);

#endif
