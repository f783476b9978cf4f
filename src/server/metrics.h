/*-------------------------------------------------------------------------
 *
 * metrics.h
 *	  Prometheus metrics: GET /metrics on the listener and
 *	  setstream.metrics() in SQL (metrics.c), from the counters in shared
 *	  memory (shmem/counters.h, which this includes).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_METRICS_H
#define SETSTREAM_METRICS_H

#include "shmem/counters.h"

struct Conn;

/* setstream.c: GUCs, callbacks, shared memory (under the preload) */
extern void metrics_init(void);

/* routes.c: GET /metrics */
extern int	metrics_check_request(struct Conn *conn);	/* a PrepResult */
extern void metrics_respond(struct Conn *conn);

#endif
