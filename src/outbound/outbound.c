/*-------------------------------------------------------------------------
 *
 * outbound.c
 *	  What an RFC 8935 push's answer means, and what it changes.
 *
 *	  outbound_classify maps an answer (status, JSON error body,
 *	  Retry-After, or a transport error) to a verdict, following the table
 *	  of the README ("Outbound delivery (push)"); outbound_apply turns the
 *	  verdict into the new state of the outbox row and of the stream's
 *	  delivery (active, backoff until a time, suspended with a reason).
 *	  No I/O and no SQL here: sender.c records the results through store.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/pg_prng.h"
#include "utils/timestamp.h"

#include "codec/json.h"
#include "outbound/outbound.h"
#include "setstream.h"

#define BACKOFF_BASE_MS 1000
#define AUTH_RETRY_BASE_MS 1000
#define INVALID_KEY_RETRY_MS 2000

/* err and description of a 400's JSON body, when it has them */
static void
read_error_body(const PushAnswer *a, PushClass *c)
{
	json_t	   *j;
	json_t	   *err;
	json_t	   *desc;

	if (a->body == NULL || a->body_len == 0)
		return;
	j = json_loadb(a->body, a->body_len, JSON_REJECT_DUPLICATES, NULL);
	if (j == NULL)
		return;
	err = json_is_object(j) ? json_object_get(j, "err") : NULL;
	desc = json_is_object(j) ? json_object_get(j, "description") : NULL;
	if (json_is_string(err) && json_string_length(err) > 0)
		strlcpy(c->err, json_string_value(err), sizeof(c->err));
	if (json_is_string(desc))
		strlcpy(c->description, json_string_value(desc), sizeof(c->description));
	json_decref(j);
}

void
outbound_classify(const PushAnswer *a, PushClass *c)
{
	int			s = a->status;

	memset(c, 0, sizeof(*c));
	c->wait_s = -1;
	if (s == 0)
	{
		c->verdict = PUSH_BACKOFF;
		strlcpy(c->err, "transport", sizeof(c->err));
		strlcpy(c->description, a->transport_error ? a->transport_error : "no answer",
				sizeof(c->description));
		return;
	}
	snprintf(c->err, sizeof(c->err), "http_%d", s);
	snprintf(c->description, sizeof(c->description), "HTTP %d", s);
	if (s == 202)
		c->verdict = PUSH_ACKED;
	else if (s >= 200 && s < 300)
		c->verdict = PUSH_ACKED_NONCONFORMANT;
	else if (s == 400)
	{
		read_error_body(a, c);
		switch (seterr_from_name(c->err))
		{
			case SETERR_INVALID_KEY:
				c->verdict = PUSH_RETRY_KEY;
				break;
			case SETERR_AUTHENTICATION_FAILED:
				c->verdict = PUSH_AUTH_FAILED;
				break;
			case SETERR_ACCESS_DENIED:
				c->verdict = PUSH_SUSPEND;
				break;
			default:
				/* invalid_request, _issuer, _audience, _state, unknown */
				c->verdict = PUSH_FAILED;
				break;
		}
	}
	else if (s == 401)
		c->verdict = PUSH_AUTH_FAILED;
	else if (s == 403 || s == 404 || s == 410)
	{
		read_error_body(a, c);
		c->verdict = PUSH_SUSPEND;
	}
	else if (s >= 300 && s < 400)
	{
		/* no redirect is followed: the endpoint must be fixed */
		c->verdict = PUSH_SUSPEND;
		snprintf(c->description, sizeof(c->description),
				 "HTTP %d: the endpoint redirects, and no redirect is followed", s);
	}
	else if (s == 413)
		c->verdict = PUSH_FAILED;
	else if ((s == 429 || s == 503) && a->retry_after_s >= 0)
	{
		c->verdict = PUSH_WAIT;
		c->wait_s = a->retry_after_s;
	}
	else
		c->verdict = PUSH_BACKOFF;	/* other 4xx and 5xx */
}

/* min(cap, base * 2^(failures-1)) times a jitter in [0.5, 1] */
long
outbound_backoff_ms(int failures)
{
	double		ms = BACKOFF_BASE_MS;
	double		cap = setstream_max_backoff_ms;

	for (int i = 1; i < failures && ms < cap; i++)
		ms *= 2;
	if (ms > cap)
		ms = cap;
	return (long) (ms * (0.5 + 0.5 * pg_prng_double(&pg_global_prng_state)));
}

static TimestampTz
after_ms(TimestampTz now, long ms)
{
	return now + (TimestampTz) ms * 1000;
}

static void
stream_backoff(PushStream *p, TimestampTz until)
{
	p->state = "backoff";
	p->backoff_until = until;
	p->suspended_reason = NULL;
}

static void
stream_suspend(PushStream *p, const char *reason)
{
	p->state = "suspended";
	p->backoff_until = 0;
	p->suspended_reason = pstrdup(reason);
}

bool
outbound_apply(PushStream *p, const PushRow *r, const PushClass *c,
			   int status, TimestampTz now, PushOutcomeRow *row,
			   int64 *nonconformant)
{
	bool		changed = false;
	PushStream	before = *p;
	int64		nonconformant_before = *nonconformant;

	memset(row, 0, sizeof(*row));
	row->jti = r->jti;
	row->state = "delivered";
	row->attempts_add = 1;
	row->delivered_at = now;
	row->last_status = status;

	switch (c->verdict)
	{
		case PUSH_ACKED:
		case PUSH_ACKED_NONCONFORMANT:
			row->state = "acked";
			row->acked_at = now;
			if (c->verdict == PUSH_ACKED_NONCONFORMANT)
			{
				(*nonconformant)++;
				row->last_error = "acknowledged with a status other than 202";
				changed = true;
			}
			if (p->failures != 0 || p->auth_failures != 0 ||
				strcmp(p->state, "backoff") == 0)
			{
				p->failures = 0;
				p->auth_failures = 0;
				if (strcmp(p->state, "backoff") == 0)
				{
					p->state = "active";
					p->backoff_until = 0;
				}
				changed = true;
			}
			break;
		case PUSH_FAILED:
			row->state = "failed";
			row->failed_at = now;
			row->err = c->err;
			row->description = c->description;
			row->last_error = c->description;
			break;
		case PUSH_RETRY_KEY:
			row->last_error = c->description[0] ? c->description : c->err;
			if (now - r->created_at >= (TimestampTz) setstream_invalid_key_retry_s * USECS_PER_SEC)
			{
				row->state = "failed";
				row->failed_at = now;
				row->err = c->err;
				row->description = c->description;
			}
			else
				row->next_attempt_at = after_ms(now, INVALID_KEY_RETRY_MS);
			break;
		case PUSH_AUTH_FAILED:
			row->last_error = c->description[0] ? c->description : c->err;
			p->auth_failures++;
			if (p->auth_failures >= setstream_auth_retries)
			{
				char		reason[300];

				snprintf(reason, sizeof(reason),
						 "authentication_failed: %d answers in a row (last: %s)",
						 p->auth_failures, c->description);
				stream_suspend(p, reason);
			}
			else
			{
				long		ms = AUTH_RETRY_BASE_MS << Min(p->auth_failures - 1, 10);

				stream_backoff(p, after_ms(now, ms));
				row->next_attempt_at = p->backoff_until;
			}
			changed = true;
			break;
		case PUSH_SUSPEND:
			{
				char		reason[340];

				row->last_error = c->description;
				snprintf(reason, sizeof(reason), "%s: %s", c->err, c->description);
				stream_suspend(p, reason);
				changed = true;
				break;
			}
		case PUSH_WAIT:
			/* not an attempt: the row keeps its state and count */
			row->state = r->state;
			row->attempts_add = 0;
			row->delivered_at = 0;
			row->last_error = c->description;
			row->next_attempt_at = after_ms(now, c->wait_s * 1000);
			stream_backoff(p, row->next_attempt_at);
			changed = true;
			break;
		case PUSH_BACKOFF:
			row->last_error = c->description;
			p->failures++;
			stream_backoff(p, after_ms(now, outbound_backoff_ms(p->failures)));
			row->next_attempt_at = p->backoff_until;
			changed = true;
			break;
	}

	/*
	 * A late answer to a push made before the stream was suspended changes
	 * its row only: only resume_delivery lifts a suspension.
	 */
	if (strcmp(before.state, "suspended") == 0)
	{
		*p = before;
		changed = *nonconformant != nonconformant_before;
	}
	return changed;
}

TimestampTz
outbound_expire_before(TimestampTz now)
{
	return now - (TimestampTz) setstream_max_delivery_age_s * USECS_PER_SEC;
}

void
outbound_expire(const PushRow *r, TimestampTz now, PushOutcomeRow *row)
{
	memset(row, 0, sizeof(*row));
	row->jti = r->jti;
	row->state = "failed";
	row->failed_at = now;
	row->err = UNDELIVERABLE_ERR;
	row->description = UNDELIVERABLE_DESCRIPTION;
	row->last_error = row->description;
	row->last_status = -1;
}
