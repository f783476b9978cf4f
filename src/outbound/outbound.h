/*-------------------------------------------------------------------------
 *
 * outbound.h
 *	  RFC 8935 push answers: their classification and what each changes.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_OUTBOUND_H
#define SETSTREAM_OUTBOUND_H

#include "datatype/timestamp.h"
#include "store/store.h"

/* GUCs (src/setstream.c) */
extern int	setstream_senders;
extern char *setstream_outbound_ca_file;
extern char *setstream_outbound_client_cert_file;
extern char *setstream_outbound_client_key_file;
extern char *setstream_outbound_allowed_networks;
extern int	setstream_max_delivery_age_s;
extern int	setstream_outbound_connect_timeout_ms;
extern int	setstream_outbound_timeout_ms;
extern int	setstream_max_backoff_ms;
extern int	setstream_invalid_key_retry_s;
extern int	setstream_auth_retries;

typedef enum PushVerdict
{
	PUSH_ACKED,					/* 202 */
	PUSH_ACKED_NONCONFORMANT,	/* another 2xx */
	PUSH_FAILED,				/* not retried: the row fails */
	PUSH_RETRY_KEY,				/* invalid_key: retried for a bounded time */
	PUSH_AUTH_FAILED,			/* 401: a few retries, then suspend */
	PUSH_SUSPEND,				/* 403, 404, 410, access_denied, 3xx */
	PUSH_WAIT,					/* 429 / 503 with Retry-After */
	PUSH_BACKOFF				/* 5xx, transport error, timeout */
} PushVerdict;

/* What came back from one push */
typedef struct PushAnswer
{
	int			status;			/* HTTP status; 0 when there was no answer */
	const char *body;
	size_t		body_len;
	long		retry_after_s;	/* -1: no Retry-After */
	const char *transport_error;	/* why there was no answer */
} PushAnswer;

typedef struct PushClass
{
	PushVerdict verdict;
	char		err[64];		/* the RFC 8935 err (or http_NNN) */
	char		description[256];
	long		wait_s;			/* PUSH_WAIT */
} PushClass;

extern void outbound_classify(const PushAnswer *a, PushClass *c);

/*
 * Apply a classified answer: fill *row for the outbox row, change the
 * stream's delivery state in *p (returns true when it changed) and add to
 * *nonconformant.
 */
extern bool outbound_apply(PushStream *p, const PushRow *r, const PushClass *c,
						   int status, TimestampTz now, PushOutcomeRow *row,
						   int64 *nonconformant);

/* SETs created before this are past setstream.max_delivery_age at "now" */
extern TimestampTz outbound_expire_before(TimestampTz now);

/* A SET older than setstream.max_delivery_age: failed, undeliverable */
extern void outbound_expire(const PushRow *r, TimestampTz now,
							PushOutcomeRow *row);

/* Exponential backoff with jitter after "failures" consecutive failures */
extern long outbound_backoff_ms(int failures);

#endif
