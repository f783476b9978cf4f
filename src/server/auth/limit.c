/*-------------------------------------------------------------------------
 *
 * limit.c
 *	  Rate limiting of failed authentications per peer address, in shared
 *	  memory: every listener process (setstream.workers) charges and checks
 *	  the same buckets, so N workers do not allow N times the limit, and a
 *	  restarted listener does not forget them.  Without
 *	  shared_preload_libraries (no listener runs then) the table is local.
 *
 *	  Each address with recent failures has a leaky bucket: a failure adds
 *	  one, and the level drains at setstream.auth_failure_limit per minute.
 *	  While the level is at the limit, every stream request from the
 *	  address is answered 429 before the stream is looked up or the token
 *	  hashed.  Successful authentications neither fill nor drain it.
 *
 *	  IPv4 addresses count one by one; IPv6 addresses by /64 prefix (what
 *	  one host is usually given).  The table is bounded: it holds at most
 *	  AUTHLIMIT_MAX_ENTRIES addresses and forgets the least recently failed
 *	  one to make room.  Drained buckets are dropped as they are met.  One
 *	  LWLock guards the shared table; each call holds it for one hash
 *	  lookup.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <netinet/in.h>

#include "lib/ilist.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "server/auth/auth.h"
#include "shmem/shmem.h"
#include "setstream.h"

typedef struct AuthBucket
{
	AuthLimitKey key;			/* hash key: must be first */
	double		level;			/* failures not yet drained */
	TimestampTz updated;		/* when level was last drained */
	dlist_node	lru;			/* most recently failed first */
} AuthBucket;

/* The table's header: in shared memory, or local without it */
typedef struct AuthShared
{
	LWLock	   *lock;			/* NULL when local */
	dlist_head	lru;
} AuthShared;

static HTAB *buckets = NULL;
static AuthShared *state = NULL;
static AuthShared local_state;

static Size
authlimit_shmem_size(void)
{
	return MAXALIGN(sizeof(AuthShared)) +
		hash_estimate_size(AUTHLIMIT_MAX_ENTRIES, sizeof(AuthBucket));
}

/* Under AddinShmemInitLock (shmem/shmem.c) */
static void
authlimit_shmem_init(void)
{
	HASHCTL		ctl;
	bool		found;

	state = ShmemInitStruct("setstream authlimit", sizeof(AuthShared), &found);
	if (!found)
	{
		state->lock = &(GetNamedLWLockTranche("setstream authlimit"))->lock;
		dlist_init(&state->lru);
	}
	ctl.keysize = sizeof(AuthLimitKey);
	ctl.entrysize = sizeof(AuthBucket);
	buckets = ShmemInitHash("setstream auth failures", AUTHLIMIT_MAX_ENTRIES,
							AUTHLIMIT_MAX_ENTRIES, &ctl,
							HASH_ELEM | HASH_BLOBS);
}

static const ShmemArea authlimit_area = {
	"setstream authlimit", authlimit_shmem_size, authlimit_shmem_init
};

/* From _PG_init, while shared_preload_libraries loads */
void
authlimit_request_shmem(void)
{
	shmem_add_area(&authlimit_area);
}

static void
lock_table(void)
{
	if (state != NULL && state->lock != NULL)
		LWLockAcquire(state->lock, LW_EXCLUSIVE);
}

static void
unlock_table(void)
{
	if (state != NULL && state->lock != NULL)
		LWLockRelease(state->lock);
}

/* Whom a failure from this address is charged to */
void
auth_peer_key(const struct sockaddr *addr, AuthLimitKey *key)
{
	memset(key, 0, sizeof(*key));
	if (addr->sa_family == AF_INET)
	{
		const struct sockaddr_in *in4 = (const struct sockaddr_in *) addr;

		key->bytes[10] = key->bytes[11] = 0xff;
		memcpy(&key->bytes[12], &in4->sin_addr, 4);
	}
	else if (addr->sa_family == AF_INET6)
	{
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) addr;

		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			memcpy(key->bytes, &in6->sin6_addr, 16);
		else
			memcpy(key->bytes, &in6->sin6_addr, 8); /* the /64 */
	}
}

/* Without shared memory: a table of this process */
static void
create_table(void)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(AuthLimitKey);
	ctl.entrysize = sizeof(AuthBucket);
	ctl.hcxt = TopMemoryContext;
	buckets = hash_create("setstream auth failures", AUTHLIMIT_MAX_ENTRIES,
						  &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	local_state.lock = NULL;
	dlist_init(&local_state.lru);
	state = &local_state;
}

/* Failures per millisecond that drain away */
static double
drain_rate(void)
{
	return setstream_auth_failure_limit / 60000.0;
}

static void
forget(AuthBucket *b)
{
	dlist_delete(&b->lru);
	hash_search(buckets, &b->key, HASH_REMOVE, NULL);
}

/* Drain the bucket up to now; false (and it is gone) when it is empty */
static bool
drain(AuthBucket *b, TimestampTz now)
{
	if (now > b->updated)
	{
		b->level -= (now - b->updated) / 1000.0 * drain_rate();
		b->updated = now;
	}
	if (b->level <= 0)
	{
		forget(b);
		return false;
	}
	return true;
}

/* The address's bucket with its level as of now, or NULL */
static AuthBucket *
find_bucket(const AuthLimitKey *key, TimestampTz now)
{
	AuthBucket *b;

	if (buckets == NULL)
		return NULL;
	b = hash_search(buckets, key, HASH_FIND, NULL);
	if (b != NULL && !drain(b, now))
		return NULL;
	return b;
}

/*
 * Has the address used up its failures?  If so, *retry_after_s is how many
 * seconds until one more attempt is allowed.
 */
bool
authlimit_blocked(const AuthLimitKey *key, TimestampTz now, int *retry_after_s)
{
	int			limit = setstream_auth_failure_limit;
	AuthBucket *b;
	bool		blocked = false;

	if (limit <= 0)
		return false;
	lock_table();
	b = find_bucket(key, now);
	if (b != NULL && b->level > limit - 1)
	{
		/* one more failure fits once the level is down to limit - 1 */
		*retry_after_s = (int) ceil((b->level - (limit - 1)) / drain_rate() / 1000.0);
		*retry_after_s = Max(*retry_after_s, 1);
		blocked = true;
	}
	unlock_table();
	return blocked;
}

/* Make room in a full table: forget the least recently failed address */
static void
evict_oldest(void)
{
	if (!dlist_is_empty(&state->lru))
		forget(dlist_tail_element(AuthBucket, lru, &state->lru));
}

void
authlimit_record_failure(const AuthLimitKey *key, TimestampTz now)
{
	AuthBucket *b;
	bool		found;

	if (setstream_auth_failure_limit <= 0)
		return;
	if (buckets == NULL)
		create_table();
	lock_table();
	b = find_bucket(key, now);
	if (b == NULL)
	{
		if (hash_get_num_entries(buckets) >= AUTHLIMIT_MAX_ENTRIES)
			evict_oldest();
		b = hash_search(buckets, key, HASH_ENTER, &found);
		b->level = 0;
		b->updated = now;
	}
	else
		dlist_delete(&b->lru);
	dlist_push_head(&state->lru, &b->lru);
	b->level = Min(b->level + 1, (double) setstream_auth_failure_limit);
	unlock_table();
}
