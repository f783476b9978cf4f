/*-------------------------------------------------------------------------
 *
 * exchange.h
 *	  The protocol operations on a stream, shared by the SQL API and the
 *	  listener: verify and store SETs of a Communication Object, poll.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_EXCHANGE_H
#define SETSTREAM_EXCHANGE_H

#include "codec/commobj.h"
#include "set/set.h"
#include "store/streamcache.h"

/* One SET of a Communication Object, verified (no database needed) */
typedef struct IngestItem
{
	SetEntry   *entry;
	bool		valid;
	ParsedSet	ps;				/* when valid */
	SetFailure	f;				/* when not */
	bool		key_pending;	/* not valid, its kid's refetch pending */
} IngestItem;

/* The outcome of storing one SET */
typedef enum IngestOutcome
{
	INGEST_ACK,					/* stored (or stored before): acknowledge */
	INGEST_SETERR,				/* invalid: report in setErrs */
	INGEST_UNACKED				/* failed for another reason: peer resends */
} IngestOutcome;

extern char *exchange_jwks(void);
extern bool exchange_generation_sum(int64 *sum);
extern uint64 exchange_recent_due(const char *stream, int64 since, int64 *count);
extern void exchange_store_push(StreamInfo *stream, ParsedSet *ps);
extern void exchange_store_pushes(StreamInfo **streams, ParsedSet **sets,
								  int n);
extern void exchange_settle(StreamInfo *stream, CommObj *obj);
extern IngestItem *exchange_verify(StreamInfo *stream, CommObj *obj);
extern bool exchange_key_pending(StreamInfo *stream, const SetFailure *f);
extern void exchange_collect(StreamInfo *stream, CommObj *obj,
							 IngestItem *items, json_t *ack, json_t *set_errs);
extern json_t *exchange_ingest(StreamInfo *stream, CommObj *obj,
							   IngestItem *items);
extern json_t *exchange_poll(StreamInfo *stream, CommObj *req, bool *more);
extern json_t *exchange_take(StreamInfo *stream, int max_events, bool *more);

#endif
