/*-------------------------------------------------------------------------
 *
 * jwksreq.c
 *	  Refetch requests for peer JWK Sets (streams with a peer_jwks_uri),
 *	  from the listener to the sender, in shared memory.
 *
 *	  A SET whose kid none of its stream's keys has may be signed with a
 *	  key the peer has just rotated in.  The listener then asks for a
 *	  refetch of the stream's JWK Set (jwksreq_unknown_kid): it notes the
 *	  time of the request in the stream's slot (a stream maps to the slot
 *	  of its name's hash, as in wakeup.c) and wakes the senders; the sender
 *	  of the stream fetches, writes the keys, commits, and clears the
 *	  request (jwksreq_done).  While a request is pending, SETs with an
 *	  unknown kid are answered "try again later" (503 with Retry-After);
 *	  once it is done they are invalid_key again until
 *	  setstream.jwks_refetch_interval has passed since the request.
 *
 *	  A request that no sender clears (no sender runs, or it failed) stops
 *	  counting as pending after the outbound timeouts and a few seconds, so
 *	  that SETs are not put off forever.  Two streams in one slot share
 *	  their requests and their rate limit: a spurious refetch, or a refused
 *	  one, now and then.
 *
 *	  Without shared_preload_libraries there is no shared memory: no
 *	  request is ever pending, and an unknown kid is invalid_key.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "outbound/outbound.h"
#include "shmem/jwksreq.h"
#include "shmem/shmem.h"
#include "shmem/wakeup.h"

int			setstream_jwks_refetch_interval_s = 300;
int			setstream_jwks_min_cache_s = 60;

typedef struct JwksReqShared
{
	pg_atomic_uint64 requests;	/* every new request adds one */
	pg_atomic_uint64 asked_at[WAKEUP_SLOTS];	/* pending request; 0: none */
	pg_atomic_uint64 last_asked[WAKEUP_SLOTS];	/* for the rate limit */
} JwksReqShared;

static JwksReqShared *shared = NULL;

static Size
jwksreq_shmem_size(void)
{
	return MAXALIGN(sizeof(JwksReqShared));
}

/* Attach (and fill, the first time); under AddinShmemInitLock (shmem.c) */
static void
jwksreq_shmem_init(void)
{
	bool		found;

	shared = ShmemInitStruct("setstream jwks requests", sizeof(JwksReqShared),
							 &found);
	if (!found)
	{
		pg_atomic_init_u64(&shared->requests, 0);
		for (int i = 0; i < WAKEUP_SLOTS; i++)
		{
			pg_atomic_init_u64(&shared->asked_at[i], 0);
			pg_atomic_init_u64(&shared->last_asked[i], 0);
		}
	}
}

static const ShmemArea jwksreq_area = {
	NULL, jwksreq_shmem_size, jwksreq_shmem_init
};

/* From _PG_init, while shared_preload_libraries loads */
void
jwksreq_request_shmem(void)
{
	shmem_add_area(&jwksreq_area);
}

/* How long a request counts as pending when no sender clears it */
static TimestampTz
pending_limit_us(void)
{
	return ((TimestampTz) setstream_outbound_connect_timeout_ms +
			setstream_outbound_timeout_ms + 5000) * 1000;
}

/*
 * A SET of the stream (which has a peer_jwks_uri) names a kid that none
 * of its keys has.  True: a refetch is pending (asked now, or before and
 * not done yet), so the SET is to be tried again later.  False: the rate
 * limit allows no refetch now; the SET is invalid_key.
 */
bool
jwksreq_unknown_kid(const char *stream)
{
	int			slot;
	TimestampTz now;
	uint64		asked;
	uint64		last;

	if (shared == NULL)
		return false;
	slot = wakeup_slot(stream);
	now = GetCurrentTimestamp();
	asked = pg_atomic_read_u64(&shared->asked_at[slot]);
	if (asked != 0 && now - (TimestampTz) asked < pending_limit_us())
		return true;
	last = pg_atomic_read_u64(&shared->last_asked[slot]);
	if (last != 0 &&
		now - (TimestampTz) last < (TimestampTz) setstream_jwks_refetch_interval_s * USECS_PER_SEC)
		return false;
	/* one of the listeners that race here asks; the others see it pending */
	if (!pg_atomic_compare_exchange_u64(&shared->last_asked[slot], &last,
										(uint64) now))
		return pg_atomic_read_u64(&shared->asked_at[slot]) != 0;
	pg_atomic_write_u64(&shared->asked_at[slot], (uint64) now);
	pg_atomic_fetch_add_u64(&shared->requests, 1);
	wakeup_senders();
	return true;
}

/* The senders look for requests when this moved */
uint64
jwksreq_requests(void)
{
	return shared ? pg_atomic_read_u64(&shared->requests) : 0;
}

/* The time of the stream's pending request, or 0 */
TimestampTz
jwksreq_asked_at(const char *stream)
{
	if (shared == NULL)
		return 0;
	return (TimestampTz) pg_atomic_read_u64(&shared->asked_at[wakeup_slot(stream)]);
}

/*
 * The refetch asked at asked_at has committed its outcome: the request is
 * no longer pending (unless a newer one came meanwhile).
 */
void
jwksreq_done(const char *stream, TimestampTz asked_at)
{
	uint64		expected = (uint64) asked_at;

	if (shared == NULL || asked_at == 0)
		return;
	(void) pg_atomic_compare_exchange_u64(&shared->asked_at[wakeup_slot(stream)],
										  &expected, 0);
}
