/*-------------------------------------------------------------------------
 *
 * listener.c
 *	  The listener's event loop and its timeouts: wait for the latch,
 *	  postmaster death, the listen sockets and the connections' private
 *	  epoll (conn.c); then one database turn (turn.c); then, every
 *	  HOUSEKEEPING_MS, close what timed out and give freed memory back.
 *
 *	  PostgreSQL's WaitEventSet cannot remove a socket, so it watches only
 *	  what lives as long as the process: the latch, postmaster death, the
 *	  listen sockets and one private epoll descriptor; client sockets come
 *	  and go in the private epoll (level-triggered).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/epoll.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sys/resource.h>
#include <unistd.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"

#include "server/conn.h"
#include "server/handoff.h"
#include "server/listener.h"
#include "setstream.h"
#include "shmem/counters.h"
#include "shmem/wakeup.h"
#include "shmem/walflush.h"

#define MAX_LISTEN_SOCKETS 16
#define HOUSEKEEPING_MS 250
#define TRIM_MS 10000			/* trim_heap() at most this often */

static int	listener_index;
static int	listen_fds[MAX_LISTEN_SOCKETS];
static int	nlisten = 0;
static int	epfd = -1;
static int	handoff_fd = -1;	/* connections other listeners pass */
static WaitEventSet *wait_set;
static TimestampTz last_housekeeping = 0;
static TimestampTz last_trim = 0;

/* ---------------------------------------------------------------------
 * Timeouts and the loop
 * ---------------------------------------------------------------------
 */
static long
next_timeout_ms(TimestampTz now)
{
	long		timeout = HOUSEKEEPING_MS;

	if (setstream_generation_check_ms > 0 && setstream_generation_check_ms < timeout)
		timeout = setstream_generation_check_ms;
	return conns_next_timeout_ms(now, timeout);
}

/*
 * Each connection is a descriptor: lift the soft limit (the postmaster's,
 * often 1024) to the hard one, so that setstream.max_connections is what
 * bounds them.
 */
static void
raise_descriptor_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur != RLIM_INFINITY &&
		rl.rlim_cur < (rlim_t) setstream_max_connections + 64)
		ereport(LOG,
				(errmsg("setstream listener may open %lu files, fewer than setstream.max_connections (%d) needs",
						(unsigned long) rl.rlim_cur, setstream_max_connections)));
}

static void
listener_shutdown(int code, Datum arg)
{
	handoff_detach();
	wakeup_set_listener_latch(listener_index, NULL);
}

static void
handle_reload(void)
{
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	tls_configure();
}

/*
 * No address to serve (the postmaster found the port taken and logged it
 * at server start, or listen() failed): say so once and wait for the end,
 * rather than fail and be restarted every few seconds.
 */
static void
idle_without_sockets(int index)
{
	ereport(LOG,
			(errmsg("setstream listener %d has no listen socket on port %d; it stays idle until the server restarts",
					index, setstream_port),
			 errhint("See the warnings logged at server start.")));
	for (;;)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Give the C heap's free pages back to the kernel, at most every
 * TRIM_MS and only after connections were freed.  A connection that
 * carried big requests or WebSocket messages leaves the heap large once it
 * is gone (glibc keeps freed memory for reuse), and a listener lives as
 * long as the server.
 */
static void
trim_heap(TimestampTz now)
{
#ifdef __GLIBC__
	if (TimestampDifferenceExceeds(last_trim, now, TRIM_MS) && conns_trim_due())
	{
		malloc_trim(0);
		last_trim = now;
	}
#endif
}

void
listener_run(int index)
{
	WaitEvent	events[MAX_LISTEN_SOCKETS + 4];
	TurnDone	done;
	ListCell   *lc;

	listener_index = index;
	raise_descriptor_limit();
	turn_init(index);
	nlisten = listensock_open(listen_fds, MAX_LISTEN_SOCKETS);
	if (nlisten == 0)
		idle_without_sockets(index);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		ereport(ERROR, (errmsg("setstream: epoll_create1 failed: %m")));
	conns_init(epfd);
	tls_configure();

	handoff_fd = handoff_attach(index);
	wait_set = CreateWaitEventSetTop(nlisten + 4);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_POSTMASTER_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (int i = 0; i < nlisten; i++)
		AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, listen_fds[i], NULL,
						  &listen_fds[i]);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, epfd, NULL, &epfd);
	if (handoff_fd >= 0)
		AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, handoff_fd, NULL,
						  &handoff_fd);

	before_shmem_exit(listener_shutdown, (Datum) 0);
	wakeup_set_listener_latch(index, MyLatch);
	walflush_set_listener_latch(index, MyLatch);
	metrics_listener_start(index);
	ereport(LOG,
			(errmsg("setstream listener %d serving %s on port %d%s", index,
					setstream_listen_addresses, setstream_port,
					tls_enabled() ? " (TLS)" :
					tls_configured() ? " (TLS settings not loaded: no connection is served)" : "")));

	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		int			n = WaitEventSetWait(wait_set, next_timeout_ms(now), events,
										 lengthof(events), PG_WAIT_EXTENSION);

		for (int i = 0; i < n; i++)
		{
			WaitEvent  *ev = &events[i];

			if (ev->events & WL_POSTMASTER_DEATH)
				proc_exit(1);
			if (ev->events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				CHECK_FOR_INTERRUPTS();
				if (ConfigReloadPending)
					handle_reload();
			}
			else if (ev->user_data == &epfd)
				conns_poll();
			else if (ev->user_data == &handoff_fd)
				conns_take_handed();
			else if (ev->events & WL_SOCKET_READABLE)
				conns_accept(*(int *) ev->user_data);
		}
		CHECK_FOR_INTERRUPTS();
		conns_release_flushed(GetCurrentTimestamp());
		conns_read_tls_pending();
		turn_run(&done);
		foreach(lc, done.touched)
			conn_after_turn((Conn *) lfirst(lc));
		conns_release_flushed(GetCurrentTimestamp());
		/* authorized on their headers now that their streams are loaded */
		foreach(lc, done.resumed)
			conn_resume_body((Conn *) lfirst(lc));
		turn_end();

		now = GetCurrentTimestamp();
		if (TimestampDifferenceExceeds(last_housekeeping, now, HOUSEKEEPING_MS))
		{
			conns_expire_idle(now);
			trim_heap(now);
			last_housekeeping = now;
		}
		wakeup_report_listener(index, listener_nconns, poll_parked_count());
	}
}
