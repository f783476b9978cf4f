/*-------------------------------------------------------------------------
 *
 * listener.c
 *	  The listener's event loop: accept, read, one transaction per loop turn,
 *	  write, time out.
 *
 *	  PostgreSQL's WaitEventSet cannot remove a socket, so it watches only
 *	  what lives as long as the process: the latch, postmaster death, the
 *	  listen sockets and one private epoll descriptor; client sockets come
 *	  and go in the private epoll (level-triggered).
 *
 *	  A loop turn gathers every connection with a complete request, and
 *	  every parked long poll whose stream moved or whose time is up, and
 *	  handles them all in one transaction (store/xact.c): the pushes
 *	  together in one subtransaction (each alone again only if that
 *	  fails), every other request in a subtransaction of its own; an error
 *	  is answered as base/errors.c maps it (seterr_answer).  Responses are
 *	  written only after that transaction commits: a
 *	  202 or an acknowledgement always follows the commit that made it
 *	  durable.  If the commit fails, every request of the turn gets a 503.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

#include "exchange/exchange.h"
#include "server/listener.h"
#include "base/pg_compat.h"
#include "store/streamcache.h"
#include "store/xact.h"
#include "shmem/stats.h"
#include "server/metrics.h"
#include "setstream.h"
#include "shmem/wakeup.h"

#define MAX_LISTEN_SOCKETS 16
#define MAX_EPOLL_EVENTS 256
#define HOUSEKEEPING_MS 250
#define DRAIN_MS 2000			/* lingering close after an early error */
#define TRIM_MS 10000			/* trim_heap() at most this often */
#define EVICT_AFTER_MS 1000		/* stalled this long: closed for a newcomer */

static int	listener_index;
static int	listen_fds[MAX_LISTEN_SOCKETS];
static int	nlisten = 0;
static int	epfd = -1;
static WaitEventSet *wait_set;
static dlist_head conns = DLIST_STATIC_INIT(conns);
static int	nconns = 0;
static int	nparked = 0;
static MemoryContext conns_cxt;
static MemoryContext turn_cxt;
static uint64 generations[WAKEUP_SLOTS];
static TimestampTz last_housekeeping = 0;
static TimestampTz last_error_log = 0;
static TimestampTz last_fd_log = 0;
static int	spare_fd = -1;		/* given up to refuse a connection at EMFILE */
static bool freed_since_trim = false;	/* a connection's memory was freed */
static bool config_moved_early = false; /* seen by authorize_headers */
static TimestampTz last_trim = 0;
static TimestampTz last_generation_check = 0;

/* What the last generation checks saw of each waited-on stream */
typedef struct SeenDue
{
	char	   *stream;
	uint64		fingerprint;
} SeenDue;
static List *seen_due = NIL;	/* of SeenDue, in TopMemoryContext */

#define MAX_SEEN_DUE 4096
#define RECENT_DUE_WINDOW_S 60	/* emits committing later than this are
								 * found by the poll's timeout */

/* ---------------------------------------------------------------------
 * Connections
 * ---------------------------------------------------------------------
 */
static void
set_interest(Conn *conn, uint32 events)
{
	struct epoll_event ev;

	if (conn->tls_want_write)
		events |= EPOLLOUT;
	if (events == conn->epoll_events)
		return;
	ev.events = events;
	ev.data.ptr = conn;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, conn->fd, &ev) == 0)
		conn->epoll_events = events;
}

static void
unpark(Conn *conn)
{
	nparked--;
	stats_count_long_poll(conn->poll_stream, -1);
}

static void
conn_close(Conn *conn)
{
	if (conn->phase == PHASE_PARKED)
		unpark(conn);
	conn->phase = PHASE_CLOSED;
	epoll_ctl(epfd, EPOLL_CTL_DEL, conn->fd, NULL);
	ws_free(conn);
	http_conn_release(conn);
	tls_conn_close(conn);
	close(conn->fd);
	dlist_delete(&conn->node);
	nconns--;
	MemoryContextDelete(conn->cxt);
	freed_since_trim = true;
}

static void
refuse_connection(int fd)
{
	static const char body[] =
		"{\"description\":\"too many connections; try again shortly\"}";
	char		busy[256];
	int			len;

	len = snprintf(busy, sizeof(busy),
				   "HTTP/1.1 503 Service Unavailable\r\n"
				   "Content-Type: application/json\r\nContent-Length: %zu\r\n"
				   "Retry-After: 1\r\nConnection: close\r\n\r\n%s",
				   sizeof(body) - 1, body);
	(void) send(fd, busy, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
}

/*
 * Out of file descriptors: the pending connection would keep the listen
 * socket readable forever.  Give up the spare descriptor, accept it, answer
 * 503, and take the spare back.
 */
static void
refuse_without_descriptors(int lfd)
{
	TimestampTz now = GetCurrentTimestamp();
	int			fd;

	if (TimestampDifferenceExceeds(last_fd_log, now, 10000))
	{
		ereport(LOG,
				(errmsg("setstream listener is out of file descriptors with %d connections; refusing new ones",
						nconns),
				 errhint("Lower setstream.max_connections, or raise the open files limit (ulimit -n) of the server.")));
		last_fd_log = now;
	}
	if (spare_fd >= 0)
	{
		close(spare_fd);
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			refuse_connection(fd);
		spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
}

/*
 * Since when has the connection made no progress?  An idle keep-alive
 * connection since its last byte; one in the middle of a request since the
 * request began (a slow sender trickling bytes makes no progress either).
 */
static TimestampTz
stalled_since(Conn *conn)
{
	return conn->request_started != 0 ? conn->request_started : conn->last_activity;
}

/*
 * At setstream.max_connections: close the connection that has been reading
 * without a whole request for longest, if that is at least EVICT_AFTER_MS,
 * to make room for a new one.  Idle and slow connections (an idle flood, a
 * slowloris) then cannot lock well-behaved peers out until idle_timeout.
 * Long polls, WebSocket sessions and requests being answered are never
 * closed.  Returns false when no connection qualifies.
 */
static bool
evict_stalest(void)
{
	TimestampTz now = GetCurrentTimestamp();
	Conn	   *victim = NULL;
	dlist_iter	iter;

	dlist_foreach(iter, &conns)
	{
		Conn	   *conn = dlist_container(Conn, node, iter.cur);

		if (conn->phase == PHASE_READ && conn->inlen == 0 &&
			(victim == NULL || stalled_since(conn) < stalled_since(victim)))
			victim = conn;
	}
	if (victim == NULL ||
		!TimestampDifferenceExceeds(stalled_since(victim), now, EVICT_AFTER_MS))
		return false;
	conn_close(victim);
	return true;
}

static void
accept_connections(int lfd)
{
	for (int i = 0; i < 256; i++)
	{
		struct sockaddr_storage addr;
		socklen_t	alen = sizeof(addr);
		int			fd = accept4(lfd, (struct sockaddr *) &addr, &alen,
								 SOCK_NONBLOCK | SOCK_CLOEXEC);
		int			one = 1;
		MemoryContext cxt;
		Conn	   *conn;
		struct epoll_event ev;

		if (fd < 0)
		{
			if (errno == EMFILE || errno == ENFILE)
				refuse_without_descriptors(lfd);
			return;
		}
		if (nconns >= setstream_max_connections && !evict_stalest())
		{
			refuse_connection(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		cxt = AllocSetContextCreate(conns_cxt, "setstream connection",
									ALLOCSET_SMALL_SIZES);
		conn = MemoryContextAllocZero(cxt, sizeof(Conn));
		conn->fd = fd;
		conn->cxt = cxt;
		conn->phase = PHASE_READ;
		conn->last_activity = GetCurrentTimestamp();
		getnameinfo((struct sockaddr *) &addr, alen, conn->peer,
					sizeof(conn->peer), NULL, 0, NI_NUMERICHOST);
		auth_peer_key((struct sockaddr *) &addr, &conn->peer_key);
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			http_conn_init(conn);
			MemoryContextSwitchTo(old);
		}
		dlist_push_tail(&conns, &conn->node);
		nconns++;
		metrics_count_connection();
		if (tls_configured() && !tls_conn_start(conn))
		{
			conn_close(conn);
			continue;
		}
		ev.events = EPOLLIN | EPOLLRDHUP;
		ev.data.ptr = conn;
		conn->epoll_events = ev.events;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
			conn_close(conn);
	}
}

/* The connection has a whole request, or a response to write */
static void
after_parse(Conn *conn)
{
	if (!conn->message_complete)
	{
		set_interest(conn, EPOLLIN | EPOLLRDHUP);
		return;
	}
	if (conn->out.len > conn->outpos)
		conn->phase = PHASE_WRITE;	/* an error found while parsing */
	else
		conn->phase = PHASE_READY;
	set_interest(conn, conn->phase == PHASE_WRITE ? EPOLLOUT | EPOLLRDHUP : EPOLLRDHUP);
}

/*
 * Closing right after answering a request whose body was not read (413,
 * a parse error) would reset the connection and lose the answer: shut our
 * side, then read and discard until the peer closes or DRAIN_MS pass.
 */
static void
start_drain(Conn *conn)
{
	shutdown(conn->fd, SHUT_WR);
	conn->phase = PHASE_DRAIN;
	conn->last_activity = GetCurrentTimestamp();
	set_interest(conn, EPOLLIN | EPOLLRDHUP);
}

static void
drain(Conn *conn)
{
	char		scratch[8192];

	for (int i = 0; i < 64; i++)
	{
		ssize_t		n = recv(conn->fd, scratch, sizeof(scratch), 0);

		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		break;
	}
	conn_close(conn);
}

/*
 * Plaintext that OpenSSL has decrypted already: the socket will not be
 * readable for it again, so the loop reads it without waiting (it stops
 * when the connection cannot take more, as epoll would).
 */
static bool
tls_pending_read(Conn *conn)
{
	if (conn->ssl == NULL || SSL_pending(conn->ssl) <= 0)
		return false;
	if (conn->phase == PHASE_READ)
		return !conn->message_complete && !conn->auth_pending;
	if (conn->phase == PHASE_WEBSOCKET)
		return !conn->ws_closing && ws_reading(conn);
	return false;
}

/*
 * What a WebSocket session waits for.  While it may not read (its inbox or
 * output is full), neither EPOLLIN nor EPOLLRDHUP: level-triggered, they
 * would wake the loop for nothing until it may.
 */
static void
ws_update_interest(Conn *conn)
{
	set_interest(conn, (ws_reading(conn) ? EPOLLIN | EPOLLRDHUP : 0) |
				 (ws_wants_write(conn) ? EPOLLOUT : 0));
}

static void authorize_headers(Conn *conn);
static void on_client_event(Conn *conn, uint32 events);

/* The response is written: close, start a WebSocket session, or read on */
static void
after_response(Conn *conn)
{
	if (conn->websocket)
	{
		if (ws_start(conn))
			ws_update_interest(conn);
		else
			conn_close(conn);
		return;
	}
	if (conn->close_after_write)
	{
		if ((conn->req.reject_status != 0 || conn->auth_pending) &&
			conn->ssl == NULL)
			start_drain(conn);	/* its body was not read */
		else
			conn_close(conn);
		return;
	}
	if (conn->auth_pending)
	{
		/* refused on its headers: read past its body, then the next one */
		conn->auth_pending = false;
		conn->discarding = true;
		conn->phase = PHASE_READ;
		conn->last_activity = GetCurrentTimestamp();
		on_client_event(conn, EPOLLIN);
		return;
	}
	conn->phase = PHASE_READ;
	conn->message_complete = false;
	conn->last_activity = GetCurrentTimestamp();
	conn->request_started = 0;
	http_request_reset(conn);
	http_conn_parse(conn);		/* pipelined bytes */
	if (conn->phase == PHASE_CLOSED)
		conn_close(conn);
	else if (conn->auth_pending && !conn->message_complete)
		authorize_headers(conn);
	else
		after_parse(conn);
}

static void
write_response(Conn *conn)
{
	conn->phase = PHASE_WRITE;
	if (http_conn_flush(conn))
		after_response(conn);
	else if (conn->phase == PHASE_CLOSED)
		conn_close(conn);
	else
		set_interest(conn, EPOLLOUT | EPOLLRDHUP);
}

static PrepResult prepare_one(Conn *conn, char **load);

/* Authorized on its headers: send 100 Continue if asked, read the body */
static void
resume_body(Conn *conn)
{
	conn->auth_pending = false;
	conn->close_after_write = false;
	conn->phase = PHASE_READ;
	http_send_continue(conn);
	if (conn->phase == PHASE_CLOSED)
		conn_close(conn);
	else
		on_client_event(conn, EPOLLIN);
}

/*
 * A request with a body has sent its headers: refuse it now if it must be
 * refused, before its body is read or buffered (then its body is read past
 * and dropped, or, when the client waits for 100 Continue, the connection
 * closes), go on reading it if it may, or wait for the next turn to load
 * its stream.
 */
static void
authorize_headers(Conn *conn)
{
	MemoryContext old = CurrentMemoryContext;
	char	   *load = NULL;
	PrepResult	result;

	conn->close_after_write = conn->req.expect_continue;
	/* streams, tokens or certificates changed: not on a stale copy */
	if (streamcache_check_generation())
		config_moved_early = true;
	result = prepare_one(conn, &load);
	MemoryContextSwitchTo(old);
	switch (result)
	{
		case PREP_EXECUTE:
			resume_body(conn);
			break;
		case PREP_LOAD:
			conn->phase = PHASE_AUTH;
			set_interest(conn, EPOLLRDHUP);
			break;
		case PREP_ANSWERED:
			write_response(conn);
			break;
	}
}

static void
on_client_event(Conn *conn, uint32 events)
{
	if (conn->phase == PHASE_PARKED || conn->phase == PHASE_READY ||
		conn->phase == PHASE_AUTH)
	{
		/* the peer gave up waiting */
		if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			conn_close(conn);
		return;
	}
	if (conn->phase == PHASE_WRITE)
	{
		if (events & (EPOLLHUP | EPOLLERR))
			conn_close(conn);
		else if (events & (EPOLLOUT | EPOLLIN))
			write_response(conn);
		return;
	}
	if (conn->phase == PHASE_DRAIN)
	{
		drain(conn);
		return;
	}
	if (conn->phase == PHASE_WEBSOCKET)
	{
		if (conn->ws_closing)
			return;
		if ((events & (EPOLLHUP | EPOLLERR)) || !ws_on_event(conn, events))
		{
			/* what the peer sent before it left still counts (its acks) */
			if (conn->ws_inbox != NIL)
			{
				conn->ws_closing = true;
				set_interest(conn, 0);
			}
			else
				conn_close(conn);
		}
		else
			ws_update_interest(conn);
		return;
	}
	/* PHASE_READ: until the request is whole or OpenSSL holds no more */
	for (;;)
	{
		if (!http_conn_read(conn))
		{
			conn_close(conn);
			return;
		}
		http_conn_parse(conn);
		if (!tls_pending_read(conn))
			break;
	}
	if (conn->auth_pending && !conn->message_complete && conn->phase == PHASE_READ)
	{
		authorize_headers(conn);
		return;
	}
	if (conn->discarding && conn->message_complete && conn->req.reject_status == 0)
	{
		after_response(conn);	/* the refused request is over */
		return;
	}
	if (conn->out.len > conn->outpos && !conn->message_complete)
		http_conn_flush(conn);	/* 100 Continue still queued */
	if (conn->phase == PHASE_CLOSED)
	{
		conn_close(conn);
		return;
	}
	after_parse(conn);
	if (conn->phase == PHASE_WRITE)
		write_response(conn);
	else if ((events & (EPOLLRDHUP | EPOLLHUP)) && conn->phase == PHASE_READ)
		conn_close(conn);
}

static void
poll_clients(void)
{
	struct epoll_event evs[MAX_EPOLL_EVENTS];
	int			n = epoll_wait(epfd, evs, MAX_EPOLL_EVENTS, 0);

	for (int i = 0; i < n; i++)
		on_client_event((Conn *) evs[i].data.ptr, evs[i].events);
}

/*
 * Connections that went back to reading (a response written, a WebSocket
 * inbox drained) while OpenSSL held decrypted bytes for them.
 */
static void
read_tls_pending(void)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &conns)
	{
		Conn	   *conn = dlist_container(Conn, node, iter.cur);

		if (tls_pending_read(conn))
			on_client_event(conn, EPOLLIN);
	}
}

/* ---------------------------------------------------------------------
 * The database turn
 * ---------------------------------------------------------------------
 */
static bool
poll_is_due(Conn *conn, TimestampTz now)
{
	return conn->phase == PHASE_PARKED &&
		(generations[conn->poll_slot] != conn->poll_generation ||
		 now >= conn->poll_deadline);
}

static void
log_internal_error(ErrorData *edata)
{
	TimestampTz now = GetCurrentTimestamp();

	/* at most one line a second: a flood of failures must not flood the log */
	if (TimestampDifferenceExceeds(last_error_log, now, 1000))
	{
		ereport(LOG,
				(errmsg("setstream listener: request failed: %s",
						setstream_log_escape(edata->message, 1024))));
		last_error_log = now;
	}
}

/* What one connection's step in the turn's transaction came to */
typedef struct ConnStep
{
	Conn	   *conn;
	TimestampTz now;
	RouteResult result;
} ConnStep;

static void
conn_step(void *arg)
{
	ConnStep   *step = arg;
	Conn	   *conn = step->conn;

	if (conn->phase == PHASE_WEBSOCKET)
		route_ws_turn(conn, generations, step->now);
	else if (conn->phase == PHASE_PARKED)
		step->result = route_parked_poll(conn, step->now >= conn->poll_deadline,
										 generations);
	else
		step->result = route_execute(conn, generations);
}

/* Handle one connection in a subtransaction of its own */
static void
handle_in_subxact(Conn *conn, TimestampTz now)
{
	bool		parked = conn->phase == PHASE_PARKED;
	ConnStep	step = {conn, now, ROUTE_ANSWERED};
	ErrorData  *edata;

	MemoryContextSwitchTo(turn_cxt);
	if (!xact_try(conn_step, &step, &edata))
	{
		SetAnswer	answer;

		resetStringInfo(&conn->out);
		conn->outpos = 0;
		seterr_answer(edata->sqlerrcode, edata->message, &answer);
		if (answer.log || conn->phase == PHASE_WEBSOCKET)
			log_internal_error(edata);
		if (conn->phase == PHASE_WEBSOCKET)
			ws_abandon_turn(conn);
		else
			http_respond_answer(conn, &answer);
		step.result = ROUTE_ANSWERED;
	}

	if (conn->phase == PHASE_WEBSOCKET)
		return;
	if (step.result == ROUTE_PARKED)
	{
		if (!parked)
		{
			nparked++;
			stats_count_long_poll(conn->poll_stream, 1);
		}
		conn->phase = PHASE_PARKED;
	}
	else
	{
		if (parked)
			unpark(conn);
		conn->phase = PHASE_WRITE;
	}
}

static void
respond_unavailable(List *batch, const char *why)
{
	ListCell   *lc;

	foreach(lc, batch)
	{
		Conn	   *conn = lfirst(lc);

		if (conn->phase == PHASE_WEBSOCKET)
		{
			ws_abandon_turn(conn);
			continue;
		}
		if (conn->phase == PHASE_PARKED)
			unpark(conn);
		resetStringInfo(&conn->out);
		conn->outpos = 0;
		http_respond_error(conn, 503, NULL, why, "Retry-After: 1\r\n");
		conn->phase = PHASE_WRITE;
	}
}

static void
store_pushes(void *arg)
{
	route_store_pushes((List *) arg);
}

/*
 * Handle the batch: pushes first, all in one subtransaction when they can
 * be (a subtransaction per request would cost an XID each); everything
 * else, and every push again if that failed, in a subtransaction of its
 * own, so that one failing request does not fail its neighbours.
 */
static void
handle_batch(List *batch, TimestampTz now)
{
	List	   *pushes = NIL;
	List	   *others = NIL;
	ListCell   *lc;

	foreach(lc, batch)
	{
		Conn	   *conn = lfirst(lc);

		if (route_is_push(conn))
			pushes = lappend(pushes, conn);
		else
			others = lappend(others, conn);
	}
	/* together in one subtransaction; each alone again if that fails */
	if (list_length(pushes) > 1 && xact_try(store_pushes, pushes, NULL))
	{
		foreach(lc, pushes)
		{
			Conn	   *conn = lfirst(lc);

			route_answer_push(conn);
			conn->phase = PHASE_WRITE;
		}
	}
	else
		others = list_concat(pushes, others);
	foreach(lc, others)
		handle_in_subxact((Conn *) lfirst(lc), now);
}

typedef struct TurnWork
{
	List	   *batch;
	TimestampTz now;
} TurnWork;

static void
turn_work(void *arg)
{
	TurnWork   *w = arg;
	XactTurn	state = xact_begin_turn();
	ListCell   *lc;

	if (state == XACT_NO_EXTENSION)
		respond_unavailable(w->batch, "setstream is not installed in this database");
	else if (state == XACT_RECREATED)
	{
		/*
		 * Requests prepared against the dropped extension's streams are
		 * prepared again, next turn, on the new ones.
		 */
		List	   *rest = NIL;

		foreach(lc, w->batch)
		{
			Conn	   *conn = lfirst(lc);

			if (conn->phase == PHASE_READY)
				conn->route_state = NULL;
			else
				rest = lappend(rest, conn);
		}
		handle_batch(rest, w->now);
	}
	else
		handle_batch(w->batch, w->now);
}

/* Everything the turn's connections need from the database, committed */
static void
database_turn(List *batch, TimestampTz now)
{
	TurnWork	work = {batch, now};

	pgstat_report_activity(STATE_RUNNING, "setstream listener");
	if (!xact_run(turn_work, &work))
		respond_unavailable(batch, "the database could not commit; try again later");
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

typedef struct LoadWork
{
	List	   *names;
	bool		installed;
} LoadWork;

static void
load_work(void *arg)
{
	LoadWork   *w = arg;
	ListCell   *lc;

	w->installed = xact_begin_turn() != XACT_NO_EXTENSION;
	if (!w->installed)
		return;
	foreach(lc, w->names)
	{
		StreamInfo *unused;

		if (!streamcache_lookup(lfirst(lc), &unused))
			streamcache_load(lfirst(lc), true);
	}
}

/* Read streams the prepared requests need into the cache */
static bool
load_streams(List *names)
{
	LoadWork	work = {names, false};

	return xact_run(load_work, &work) && work.installed;
}

/* Step one for a connection, outside any transaction */
static PrepResult
prepare_one(Conn *conn, char **load)
{
	bool		ws = conn->phase == PHASE_WEBSOCKET;
	volatile PrepResult result = PREP_ANSWERED;

	MemoryContextSwitchTo(ws ? turn_cxt : conn->reqcxt);
	PG_TRY();
	{
		if (ws)
			result = route_ws_prepare(conn, load) ? PREP_EXECUTE : PREP_LOAD;
		else if (conn->auth_pending)
			result = route_authorize_headers(conn, load);
		else
			result = route_prepare(conn, load);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(turn_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		log_internal_error(edata);
		if (ws)
			ws_abandon_turn(conn);
		else
		{
			resetStringInfo(&conn->out);
			conn->outpos = 0;
			if (sqlstate_is_transient(edata->sqlerrcode))
				http_respond_error(conn, 503, NULL,
								   "the database cannot take this request now; try again later",
								   "Retry-After: 1\r\n");
			else
				http_respond_error(conn, 500, NULL,
								   "the request could not be processed; try again later",
								   NULL);
		}
		result = PREP_ANSWERED;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(turn_cxt);
	return result;
}

/*
 * Step one for every new request and WebSocket message: route,
 * authenticate, parse and verify outside any transaction, loading into the
 * cache (one short transaction) the streams not in it yet.  Returns the
 * connections that need the database.
 */
static List *
prepare_all(List *fresh, List **resumed)
{
	List	   *db = NIL;
	List	   *waiting = NIL;
	List	   *names = NIL;
	ListCell   *lc;

	for (int pass = 0; pass < 2 && fresh != NIL; pass++)
	{
		foreach(lc, fresh)
		{
			Conn	   *conn = lfirst(lc);
			char	   *load = NULL;

			switch (prepare_one(conn, &load))
			{
				case PREP_EXECUTE:
					if (conn->phase == PHASE_AUTH)
						*resumed = lappend(*resumed, conn);
					else
						db = lappend(db, conn);
					break;
				case PREP_LOAD:
					waiting = lappend(waiting, conn);
					names = lappend(names, load);
					break;
				case PREP_ANSWERED:
					/* a WebSocket session that failed only sends its close */
					if (conn->phase != PHASE_WEBSOCKET)
						conn->phase = PHASE_WRITE;
					break;
			}
		}
		fresh = NIL;
		if (waiting != NIL)
		{
			if (pass == 0 && load_streams(names))
				fresh = waiting;
			else
				respond_unavailable(waiting, "the database is not available; try again later");
			waiting = names = NIL;
		}
	}
	return db;
}

/* ---------------------------------------------------------------------
 * Generations (issue 18)
 *
 * A change committed on this node always moves the shared generations at
 * its commit (wakeup.c).  What no commit of this node notes is caught
 * here, every setstream.generation_check_interval: a configuration change
 * that reached this node's placements through another node's two-phase
 * commit, or any write of setstream.generations (its sum moves: every
 * cache drops, every waiting session looks again); and SETs that became
 * due on another node, for the streams that long polls and WebSocket
 * sessions wait on here (the set of the stream's recent due SETs moved:
 * its sessions look again).
 * ---------------------------------------------------------------------
 */
static SeenDue *
find_seen_due(const char *stream)
{
	ListCell   *lc;

	foreach(lc, seen_due)
	{
		SeenDue    *d = lfirst(lc);

		if (strcmp(d->stream, stream) == 0)
			return d;
	}
	return NULL;
}

static void
check_generations_work(void *arg)
{
	List	   *streams = (List *) arg;
	int64		sum;
	int64		since;
	ListCell   *lc;

	if (!OidIsValid(xact_extension()))
		return;
	if (exchange_generation_sum(&sum))
		(void) wakeup_table_generation_seen((uint64) sum);
	else
		return;					/* older than 0.3.0: no seq is a clock yet */
	since = (int64) (GetCurrentTimestamp() -
					 (TimestampTz) RECENT_DUE_WINDOW_S * USECS_PER_SEC) << 10;
	if (list_length(seen_due) + list_length(streams) > MAX_SEEN_DUE)
	{
		foreach(lc, seen_due)
			pfree(((SeenDue *) lfirst(lc))->stream);
		list_free_deep(seen_due);	/* a spurious look each, then settled */
		seen_due = NIL;
	}
	foreach(lc, streams)
	{
		const char *name = lfirst(lc);
		int64		count;
		uint64		fp = exchange_recent_due(name, since, &count);
		SeenDue    *d = find_seen_due(name);

		if (d == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			d = palloc(sizeof(SeenDue));
			d->stream = pstrdup(name);
			d->fingerprint = fp;
			seen_due = lappend(seen_due, d);
			MemoryContextSwitchTo(old);
			if (count > 0)
				wakeup_bump_stream(name);
		}
		else if (d->fingerprint != fp)
		{
			d->fingerprint = fp;
			wakeup_bump_stream(name);
		}
	}
}

static bool
has_name(List *names, const char *name)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp((const char *) lfirst(lc), name) == 0)
			return true;
	return false;
}

static void
check_generations(TimestampTz now)
{
	List	   *streams = NIL;
	dlist_iter	iter;
	MemoryContext old;

	if (setstream_generation_check_ms <= 0 ||
		!TimestampDifferenceExceeds(last_generation_check, now,
									setstream_generation_check_ms))
		return;
	last_generation_check = now;
	old = MemoryContextSwitchTo(turn_cxt);	/* reset at the end of the turn */
	dlist_foreach(iter, &conns)
	{
		Conn	   *conn = dlist_container(Conn, node, iter.cur);
		const char *name = NULL;

		if (conn->phase == PHASE_PARKED)
			name = conn->poll_stream;
		else if (conn->phase == PHASE_WEBSOCKET)
			name = conn->ws_stream;
		if (name != NULL && !has_name(streams, name))
			streams = lappend(streams, (void *) name);
	}
	(void) xact_run(check_generations_work, streams);
	MemoryContextSwitchTo(old);
}

static void
run_turn(void)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		config_moved;
	List	   *fresh = NIL;
	List	   *due = NIL;
	List	   *touched = NIL;
	List	   *resumed = NIL;
	dlist_mutable_iter iter;
	ListCell   *lc;
	MemoryContext old;

	check_generations(now);
	for (int i = 0; i < WAKEUP_SLOTS; i++)
		generations[i] = wakeup_generation(i);
	config_moved = streamcache_check_generation() || config_moved_early;
	config_moved_early = false;

	/*
	 * Requests prepared in this turn point into the stream cache: nothing
	 * of it is freed, and nothing they use evicted, until the turn is over.
	 */
	streamcache_begin_turn();
	old = MemoryContextSwitchTo(turn_cxt);
	dlist_foreach_modify(iter, &conns)
	{
		Conn	   *conn = dlist_container(Conn, node, iter.cur);

		if (conn->phase == PHASE_READY || conn->phase == PHASE_AUTH ||
			(conn->phase == PHASE_WEBSOCKET && conn->ws_inbox != NIL))
			fresh = lappend(fresh, conn);
		else if (poll_is_due(conn, now) || ws_turn_due(conn, generations, now) ||
				 (config_moved && (conn->phase == PHASE_PARKED ||
								   conn->phase == PHASE_WEBSOCKET)))
			due = lappend(due, conn);	/* a re-enabled stream has SETs */
	}
	if (fresh != NIL || due != NIL)
	{
		touched = list_concat(list_copy(fresh), due);
		due = list_concat(due, prepare_all(fresh, &resumed));
		if (due != NIL)
			database_turn(due, now);
		foreach(lc, touched)
		{
			Conn	   *conn = lfirst(lc);

			if (conn->phase == PHASE_WRITE)
				write_response(conn);
			else if (conn->phase == PHASE_PARKED)
				set_interest(conn, EPOLLRDHUP);
			else if (conn->phase == PHASE_WEBSOCKET)
			{
				if (!conn->ws_closing && ws_send_outbox(conn))
					ws_update_interest(conn);
				else
					conn_close(conn);
			}
		}
		/* authorized on their headers now that their streams are loaded */
		foreach(lc, resumed)
			resume_body((Conn *) lfirst(lc));
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(turn_cxt);
	streamcache_end_turn();
}

/* ---------------------------------------------------------------------
 * Timeouts and the loop
 * ---------------------------------------------------------------------
 */
static void
expire_idle(TimestampTz now)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &conns)
	{
		Conn	   *conn = dlist_container(Conn, node, iter.cur);

		if ((conn->phase == PHASE_READ || conn->phase == PHASE_WRITE) &&
			TimestampDifferenceExceeds(conn->last_activity, now,
									   setstream_idle_timeout_ms))
			conn_close(conn);
		else if (conn->phase == PHASE_READ && conn->request_started != 0 &&
				 TimestampDifferenceExceeds(conn->request_started, now,
											setstream_idle_timeout_ms))
			conn_close(conn);	/* a slow sender: a request must arrive whole in time */
		else if (conn->phase == PHASE_DRAIN &&
				 TimestampDifferenceExceeds(conn->last_activity, now, DRAIN_MS))
			conn_close(conn);
		else if (conn->phase == PHASE_WEBSOCKET)
		{
			if (ws_housekeeping(conn, now))
				ws_update_interest(conn);
			else
				conn_close(conn);
		}
	}
}

static long
next_timeout_ms(TimestampTz now)
{
	long		timeout = HOUSEKEEPING_MS;
	dlist_iter	iter;

	if (setstream_generation_check_ms > 0 && setstream_generation_check_ms < timeout)
		timeout = setstream_generation_check_ms;

	dlist_foreach(iter, &conns)
	{
		Conn	   *conn = dlist_container(Conn, node, iter.cur);

		if (conn->phase == PHASE_READY || conn->phase == PHASE_AUTH ||
			tls_pending_read(conn))
			return 0;
		if (conn->phase == PHASE_PARKED ||
			(conn->phase == PHASE_WEBSOCKET && ws_may_take(conn)))
		{
			TimestampTz deadline = conn->phase == PHASE_PARKED ?
			conn->poll_deadline : conn->ws_next_take;
			long		ms = TimestampDifferenceMilliseconds(now, deadline);

			if (ms < timeout)
				timeout = ms;
		}
	}
	return timeout;
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
	if (freed_since_trim && TimestampDifferenceExceeds(last_trim, now, TRIM_MS))
	{
		malloc_trim(0);
		freed_since_trim = false;
		last_trim = now;
	}
#endif
}

void
listener_run(int index)
{
	WaitEvent	events[MAX_LISTEN_SOCKETS + 4];

	listener_index = index;
	raise_descriptor_limit();
	spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	conns_cxt = AllocSetContextCreate(TopMemoryContext, "setstream connections",
									  ALLOCSET_DEFAULT_SIZES);
	turn_cxt = AllocSetContextCreate(TopMemoryContext, "setstream turn",
									 ALLOCSET_DEFAULT_SIZES);
	nlisten = listensock_open(listen_fds, MAX_LISTEN_SOCKETS);
	if (nlisten == 0)
		idle_without_sockets(index);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		ereport(ERROR, (errmsg("setstream: epoll_create1 failed: %m")));
	tls_configure();

	wait_set = CreateWaitEventSetTop(nlisten + 3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_POSTMASTER_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (int i = 0; i < nlisten; i++)
		AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, listen_fds[i], NULL,
						  &listen_fds[i]);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, epfd, NULL, &epfd);

	before_shmem_exit(listener_shutdown, (Datum) 0);
	wakeup_set_listener_latch(index, MyLatch);
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
				poll_clients();
			else if (ev->events & WL_SOCKET_READABLE)
				accept_connections(*(int *) ev->user_data);
		}
		CHECK_FOR_INTERRUPTS();
		read_tls_pending();
		run_turn();

		now = GetCurrentTimestamp();
		if (TimestampDifferenceExceeds(last_housekeeping, now, HOUSEKEEPING_MS))
		{
			expire_idle(now);
			trim_heap(now);
			last_housekeeping = now;
		}
		wakeup_report_listener(index, nconns, nparked);
	}
}
