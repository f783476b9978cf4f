/*-------------------------------------------------------------------------
 *
 * counters.c
 *	  The metrics' counters in shared memory (server/metrics.c shows them):
 *	  per stream, SETs emitted, delivered, acked and failed, counted by
 *	  store.c's outbox statements when the transaction that made the
 *	  change commits (a subtransaction abort drops its counts), in
 *	  whichever process made it; the emit-to-delivery latency; per
 *	  listener, connections accepted, requests by route and status and
 *	  their durations, WebSocket sessions.
 *
 *	  Without shared_preload_libraries no counter exists: counting is a
 *	  no-op and every counter reads zero.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "shmem/counters.h"
#include "shmem/shmem.h"

#define MAX_METRIC_STREAMS 4096

/* ------------------------------------------------------------------ labels */

const char *const route_names[NROUTES] = {
	"other", "jwks", "events", "poll", "pushpull", "metrics"
};

/* every status the listener answers; index 0 counts any other */
const int	statuses[NSTATUS] = {
	0, 101, 200, 202, 204, 400, 401, 403, 404, 405, 408, 411, 413, 414, 415,
	426, 429, 431, 500, 501, 503, 505
};

const double duration_bounds[NDURATION_BOUNDS] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
	30, 60
};
const double latency_bounds[NLATENCY_BOUNDS] = {
	0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
	300, 3600
};

static MetricsShared *shared = NULL;
static HTAB *stream_hash = NULL;
static LWLock *metrics_lock = NULL;
static int	my_listener = -1;

static Size
counters_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(MetricsShared)),
					hash_estimate_size(MAX_METRIC_STREAMS, sizeof(StreamMetrics)));
}

static void
hist_init(ShmHist *h)
{
	for (int i = 0; i <= MAX_BOUNDS; i++)
		pg_atomic_init_u64(&h->bucket[i], 0);
	pg_atomic_init_u64(&h->sum_us, 0);
	pg_atomic_init_u64(&h->count, 0);
}

/* Under AddinShmemInitLock (shmem.c) */
static void
counters_shmem_init(void)
{
	bool		found;
	HASHCTL		ctl;

	shared = ShmemInitStruct("setstream metrics", sizeof(MetricsShared), &found);
	if (!found)
	{
		pg_atomic_init_u64(&shared->connections, 0);
		pg_atomic_init_u64(&shared->ws_sessions, 0);
		for (int i = 0; i < MAX_LISTENERS; i++)
			pg_atomic_init_u32(&shared->ws_open[i], 0);
		for (int r = 0; r < NROUTES; r++)
		{
			for (int s = 0; s < NSTATUS; s++)
				pg_atomic_init_u64(&shared->requests[r][s], 0);
			hist_init(&shared->duration[r]);
		}
		hist_init(&shared->latency);
	}
	ctl.keysize = STREAM_KEY_LEN;
	ctl.entrysize = sizeof(StreamMetrics);
	stream_hash = ShmemInitHash("setstream stream metrics", 64,
								MAX_METRIC_STREAMS, &ctl,
								HASH_ELEM | HASH_STRINGS);
	metrics_lock = &(GetNamedLWLockTranche("setstream metrics"))->lock;
}

static const ShmemArea counters_area = {
	"setstream metrics", counters_shmem_size, counters_shmem_init
};

void
hist_observe(ShmHist *h, const double *bounds, int nbounds, int64 us)
{
	double		s = (double) us / 1e6;
	int			i = 0;

	if (us < 0)
		us = 0;
	while (i < nbounds && s > bounds[i])
		i++;
	pg_atomic_fetch_add_u64(&h->bucket[i], 1);
	pg_atomic_fetch_add_u64(&h->sum_us, (uint64) us);
	pg_atomic_fetch_add_u64(&h->count, 1);
}

/* The stream's counters, made on first use; NULL when the table is full */
StreamMetrics *
metrics_stream_entry(const char *stream, bool create)
{
	char		key[STREAM_KEY_LEN];
	StreamMetrics *entry;
	bool		found;

	memset(key, 0, sizeof(key));
	strlcpy(key, stream, sizeof(key));
	LWLockAcquire(metrics_lock, LW_SHARED);
	entry = hash_search(stream_hash, key, HASH_FIND, NULL);
	LWLockRelease(metrics_lock);
	if (entry != NULL || !create)
		return entry;

	LWLockAcquire(metrics_lock, LW_EXCLUSIVE);
	entry = hash_search(stream_hash, key, HASH_ENTER_NULL, &found);
	if (entry != NULL && !found)
		for (int i = 0; i < METRIC_NOUTBOX; i++)
			pg_atomic_init_u64(&entry->n[i], 0);
	LWLockRelease(metrics_lock);
	return entry;
}

static void
add_outbox(const char *stream, const uint64 *n)
{
	StreamMetrics *e = metrics_stream_entry(stream, true);

	if (e == NULL)
		return;
	for (int i = 0; i < METRIC_NOUTBOX; i++)
		if (n[i] != 0)
			pg_atomic_fetch_add_u64(&e->n[i], n[i]);
}

/* ----------------------------------------------- counted at commit */

typedef struct PendingOutbox
{
	PendingKey	key;			/* stream, subxid */
	uint64		n[METRIC_NOUTBOX];
} PendingOutbox;

StaticAssertDecl(STREAM_KEY_LEN == PENDING_KEY_LEN,
				 "a pending count's stream key is the shared one's");

typedef struct PendingLatency
{
	SubTransactionId subxid;
	TimestampTz created_at;
} PendingLatency;

static void commit_outbox(List *items);
static void commit_latency(List *items);

static PendingCounts pending_outbox = {NIL, offsetof(PendingOutbox, key.subxid),
commit_outbox};
static PendingCounts pending_latency = {NIL, offsetof(PendingLatency, subxid),
commit_latency};

void
metrics_count_outbox(const char *stream, MetricOutbox what, uint64 n)
{
	PendingOutbox *p;

	if (shared == NULL || n == 0)
		return;
	if (!IsTransactionState())
	{
		uint64		counts[METRIC_NOUTBOX] = {0};

		counts[what] = n;
		add_outbox(stream, counts);
		return;
	}
	p = pending_stream_entry(&pending_outbox, stream, sizeof(PendingOutbox));
	p->n[what] += n;
}

/* A SET was delivered for the first time: its latency counts at commit */
void
metrics_observe_delivery(TimestampTz created_at)
{
	PendingLatency *p;
	MemoryContext old;

	if (shared == NULL)
		return;
	if (!IsTransactionState())
	{
		hist_observe(&shared->latency, latency_bounds, lengthof(latency_bounds),
					 GetCurrentTimestamp() - created_at);
		return;
	}
	old = MemoryContextSwitchTo(TopTransactionContext);
	p = palloc(sizeof(PendingLatency));
	p->subxid = GetCurrentSubTransactionId();
	p->created_at = created_at;
	pending_latency.items = lappend(pending_latency.items, p);
	MemoryContextSwitchTo(old);
}

/* The sender recorded a push's outcome (store_push_outcome) */
void
metrics_note_push(const char *stream, const char *state, TimestampTz created_at)
{
	if (strcmp(state, "acked") == 0)
	{
		metrics_count_outbox(stream, METRIC_DELIVERED, 1);
		metrics_count_outbox(stream, METRIC_ACKED, 1);
		metrics_observe_delivery(created_at);
	}
	else if (strcmp(state, "failed") == 0)
		metrics_count_outbox(stream, METRIC_FAILED, 1);
}

static void
commit_outbox(List *items)
{
	ListCell   *lc;

	foreach(lc, items)
	{
		PendingOutbox *p = lfirst(lc);

		add_outbox(p->key.stream, p->n);
	}
}

static void
commit_latency(List *items)
{
	TimestampTz now = items != NIL ? GetCurrentTimestamp() : 0;
	ListCell   *lc;

	foreach(lc, items)
	{
		PendingLatency *p = lfirst(lc);

		hist_observe(&shared->latency, latency_bounds,
					 lengthof(latency_bounds), now - p->created_at);
	}
}

/* From _PG_init: the callbacks, and shared memory under the preload */
void
counters_init(void)
{
	pending_counts_register(&pending_outbox);
	pending_counts_register(&pending_latency);
	if (process_shared_preload_libraries_in_progress)
		shmem_add_area(&counters_area);
}

/* The counters, or NULL without shared memory */
MetricsShared *
metrics_counters(void)
{
	return shared;
}

/* ---------------------------------------------------------- the listener */

void
metrics_listener_start(int index)
{
	my_listener = index;
	if (shared != NULL && index >= 0 && index < MAX_LISTENERS)
		pg_atomic_write_u32(&shared->ws_open[index], 0);
}

void
metrics_count_connection(void)
{
	if (shared != NULL)
		pg_atomic_fetch_add_u64(&shared->connections, 1);
}


/* A response was queued, or a WebSocket session began (status 101) */
void
metrics_count_request(int route, int status, TimestampTz started)
{
	int			s = 0;

	if (shared == NULL)
		return;
	for (int i = 1; i < NSTATUS; i++)
		if (statuses[i] == status)
			s = i;
	pg_atomic_fetch_add_u64(&shared->requests[route][s], 1);
	if (started != 0)
		hist_observe(&shared->duration[route], duration_bounds,
					 lengthof(duration_bounds),
					 GetCurrentTimestamp() - started);
}

/* A WebSocket session opened (delta 1) or closed (-1) in this listener */
void
metrics_count_ws_session(int delta)
{
	if (shared == NULL)
		return;
	if (delta > 0)
		pg_atomic_fetch_add_u64(&shared->ws_sessions, 1);
	if (my_listener >= 0 && my_listener < MAX_LISTENERS)
		pg_atomic_fetch_add_u32(&shared->ws_open[my_listener], delta);
}
