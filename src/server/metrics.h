/*-------------------------------------------------------------------------
 *
 * metrics.h
 *	  Prometheus metrics: counters in shared memory, GET /metrics on the
 *	  listener and setstream.metrics() in SQL (metrics.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_METRICS_H
#define SETSTREAM_METRICS_H

#include "utils/timestamp.h"

/* What happens to an emitted SET, counted per stream at commit */
typedef enum MetricOutbox
{
	METRIC_EMITTED,
	METRIC_DELIVERED,
	METRIC_ACKED,
	METRIC_FAILED,
	METRIC_NOUTBOX
} MetricOutbox;

struct Conn;

/* setstream.c: GUCs, callbacks, shared memory (under the preload) */
extern void metrics_init(void);

/* store.c: outbox transitions and the emit-to-delivery latency */
extern void metrics_count_outbox(const char *stream, MetricOutbox what, uint64 n);
extern void metrics_observe_delivery(TimestampTz created_at);
extern void metrics_note_push(const char *stream, const char *state,
							  TimestampTz created_at);

/* the listener: connections, responses, WebSocket sessions */
extern void metrics_listener_start(int index);
extern void metrics_count_connection(void);
extern void metrics_count_response(struct Conn *conn, int status);
extern void metrics_ws_session(struct Conn *conn, int delta);

/* routes.c: GET /metrics */
extern int	metrics_check_request(struct Conn *conn);	/* a PrepResult */
extern void metrics_respond(struct Conn *conn);

#endif
