/*-------------------------------------------------------------------------
 *
 * counters.h
 *	  The metrics' counters in shared memory (shmem/counters.c): counted
 *	  by store.c and the listener, shown by server/metrics.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_COUNTERS_H
#define SETSTREAM_COUNTERS_H

#include "port/atomics.h"
#include "utils/timestamp.h"

#include "shmem/wakeup.h"

#define STREAM_KEY_LEN 132
#define MAX_BOUNDS 16

/* What happens to an emitted SET, counted per stream at commit */
typedef enum MetricOutbox
{
	METRIC_EMITTED,
	METRIC_DELIVERED,
	METRIC_ACKED,
	METRIC_FAILED,
	METRIC_NOUTBOX
} MetricOutbox;

/* The listener's routes, as its requests are counted */
enum
{
	ROUTE_OTHER, ROUTE_JWKS, ROUTE_EVENTS, ROUTE_POLL, ROUTE_PUSHPULL,
	ROUTE_METRICS, NROUTES
};

#define NSTATUS 22
#define NDURATION_BOUNDS 15
#define NLATENCY_BOUNDS 16

extern const char *const route_names[NROUTES];
extern const int statuses[NSTATUS];
extern const double duration_bounds[NDURATION_BOUNDS];
extern const double latency_bounds[NLATENCY_BOUNDS];

typedef struct ShmHist
{
	pg_atomic_uint64 bucket[MAX_BOUNDS + 1];	/* not cumulative; last: +Inf */
	pg_atomic_uint64 sum_us;
	pg_atomic_uint64 count;
} ShmHist;

typedef struct MetricsShared
{
	pg_atomic_uint64 connections;
	pg_atomic_uint64 ws_sessions;
	pg_atomic_uint32 ws_open[MAX_LISTENERS];
	pg_atomic_uint64 requests[NROUTES][NSTATUS];
	ShmHist		duration[NROUTES];
	ShmHist		latency;
} MetricsShared;

typedef struct StreamMetrics
{
	char		name[STREAM_KEY_LEN];	/* hash key */
	pg_atomic_uint64 n[METRIC_NOUTBOX];
} StreamMetrics;

/* setstream.c (through metrics_init): callbacks, shared memory */
extern void counters_init(void);

/* store.c: outbox transitions and the emit-to-delivery latency */
extern void metrics_count_outbox(const char *stream, MetricOutbox what, uint64 n);
extern void metrics_observe_delivery(TimestampTz created_at);
extern void metrics_note_push(const char *stream, const char *state,
							  TimestampTz created_at);

/* the listener */
extern void metrics_listener_start(int index);
extern void metrics_count_connection(void);
extern void metrics_count_request(int route, int status, TimestampTz started);
extern void metrics_count_ws_session(int delta);

/* reading them (server/metrics.c) */
extern MetricsShared *metrics_counters(void);
extern StreamMetrics *metrics_stream_entry(const char *stream, bool create);
extern void hist_observe(ShmHist *h, const double *bounds, int nbounds, int64 us);

#endif
