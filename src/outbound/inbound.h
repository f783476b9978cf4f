/*-------------------------------------------------------------------------
 *
 * inbound.h
 *	  A peer the sender exchanges SETs with over HTTP, receiving them in
 *	  its answers: the RFC 8936 poll client (pollclient.c) and the pushpull
 *	  initiator (pushpullclient.c).  What both do alike lives here: the
 *	  acks and setErrs pending and in flight, the captured answer, its
 *	  classification as a push's, verifying its SETs outside any
 *	  transaction, storing them, and their acks pending once that committed.
 *	  Each client keeps its own protocol: what its request carries and how
 *	  it reads its answer.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_INBOUND_H
#define SETSTREAM_INBOUND_H

#include "codec/commobj.h"
#include "codec/json.h"
#include "exchange/exchange.h"
#include "outbound/httpclient.h"
#include "outbound/outbound.h"
#include "store/store.h"
#include "store/streamcache.h"

typedef struct InboundPeer
{
	MemoryContext cxt;			/* what outlives a step */
	int		   *nanswered;		/* counts the answers not yet handled */
	PushStream	conf;			/* as last read (strings in cxt) */
	bool		removed;		/* no longer one of ours */

	/* the request in flight */
	bool		in_flight;
	char	   *url;			/* where it went */
	char	   *request;		/* in cxt */
	json_t	   *sent_ack;
	json_t	   *sent_errs;

	/* its answer, until handled */
	bool		answered;
	int			status;
	char	   *body;
	size_t		body_len;
	long		retry_after_s;
	char	   *error;

	/* committed, to be sent with the next request */
	json_t	   *pending_ack;
	json_t	   *pending_errs;
} InboundPeer;

/* The SETs of an answer: verified outside, stored inside a transaction */
typedef struct InboundBatch
{
	StreamInfo *stream;			/* NULL: no SETs to store */
	IngestItem *items;
	json_t	   *ack;			/* the acks and setErrs of the SETs stored */
	json_t	   *errs;
} InboundBatch;

/* Is the stream served by the sender of this index (its name's hash)? */
extern bool inbound_mine(const char *stream, int sender_index);

/* A new peer, its strings and acks in cxt; an answer adds 1 to *nanswered */
extern void inbound_init(InboundPeer *p, MemoryContext cxt, int *nanswered);

/* Free what the peer holds (not the peer itself) */
extern void inbound_free(InboundPeer *p);

/* Take the stream's configuration as read (the authorization wiped) */
extern void inbound_copy_conf(InboundPeer *p, const PushStream *src);

/* Not in flight, not suspended, not backing off: may send now */
extern bool inbound_may_send(InboundPeer *p, TimestampTz now);

/*
 * Free the removed peers (InboundPeer the first member of each) that have
 * no request in flight or answered, with free_peer; returns those kept (a
 * new list in cxt, that of peers)
 */
extern List *inbound_free_idle(List *peers, MemoryContext cxt,
							   void (*free_peer) (void *));

/*
 * Send req (to which the pending acks and setErrs were added) to the
 * peer's endpoint_url: they are in flight until its answer is captured
 * (at once when it could not be started).  A request that carries setErrs
 * has "Content-Language: en" (RFC 8936 2.4.2, the pushpull draft 2.6).
 */
extern void inbound_post(InboundPeer *p, json_t *req, int timeout_ms);

/*
 * Handle the answers captured (InboundPeer the first member of each
 * peer): handle(peer, now) each, unless the peer was removed or its
 * endpoint changed meanwhile: then nothing is stored or acknowledged, and
 * stale(peer) (when not NULL) forgets the rest of its request.  step_cxt
 * is reset after each.
 */
extern void inbound_handle_answers(List *peers, MemoryContext step_cxt,
								   void (*handle) (void *peer, TimestampTz now),
								   void (*stale) (void *peer));

/*
 * When may the peer send, due at "at" otherwise (later when backing off)?
 * False when it may not (in flight, answered, suspended, removed).
 */
extern bool inbound_due_at(InboundPeer *p, TimestampTz at, TimestampTz *due);

/*
 * Classify the answer as a push's (ok: a 2xx read by the client; a 2xx
 * that is not, err says why) and apply it to conf, as a push with an
 * outbox row in row_state changes a stream's state.  Returns whether conf
 * changed.
 */
extern bool inbound_classify(InboundPeer *p, bool ok, const char *err,
							 const char *row_state, PushStream *conf,
							 TimestampTz now, PushClass *cls);

/*
 * After the answer is classified: when ok, the peer has the acks sent, and
 * the SETs of obj are verified (outside any transaction) into b; otherwise
 * the acks sent are pending again.  False (b emptied) when the stream is
 * gone: nothing to store nor acknowledge.
 */
extern bool inbound_receive(InboundPeer *p, bool ok, CommObj *obj,
							InboundBatch *b);

/* In the transaction: store the SETs of b (exchange_collect) */
extern void inbound_store(InboundBatch *b, CommObj *obj);

/* Not stored: forget b */
extern void inbound_discard(InboundBatch *b);

/*
 * Stored and committed: the acks of b are pending, conf is the peer's
 * (logged when it became suspended: what is the delivery named)
 */
extern void inbound_committed(InboundPeer *p, InboundBatch *b,
							  const PushStream *conf, bool was_suspended,
							  const char *what);

#endif
