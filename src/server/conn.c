/*-------------------------------------------------------------------------
 *
 * conn.c
 *	  The listener's connections: accepting them (refusing or evicting at
 *	  setstream.max_connections, or without descriptors), the private
 *	  epoll that watches their sockets, reading and parsing requests
 *	  (http.c), authorizing a request with a body on its headers before
 *	  the body is read, writing responses, draining after an early error,
 *	  moving WebSocket frames (ws.c), and closing them, idle ones too.
 *	  Which phase a connection is in is this file's; what a phase's work
 *	  is, is its handler's (conn.h), called by the turn (turn.c).
 *
 *	  PostgreSQL's WaitEventSet cannot remove a socket, so the loop
 *	  (listener.c) watches only what lives as long as the process; client
 *	  sockets come and go in the private epoll (level-triggered).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "utils/memutils.h"

#include "server/conn.h"
#include "server/handoff.h"
#include "setstream.h"
#include "shmem/counters.h"
#include "shmem/walflush.h"

#define MAX_EPOLL_EVENTS 256
#define DRAIN_MS 2000			/* lingering close after an early error */
#define EVICT_AFTER_MS 1000		/* stalled this long: closed for a newcomer */
#define FLUSHER_PATIENCE_MS 500 /* a held answer's flusher is given this long;
								 * then the listener flushes itself */

dlist_head	listener_conns = DLIST_STATIC_INIT(listener_conns);
int			listener_nconns = 0;

static int	epfd = -1;
static MemoryContext conns_cxt;
static TimestampTz last_fd_log = 0;
static int	spare_fd = -1;		/* given up to refuse a connection at EMFILE */
static bool freed_since_trim = false;	/* a connection's memory was freed */

/* answers waiting for their WAL flush (shmem/walflush.c), oldest first */
static dlist_head held_conns = DLIST_STATIC_INIT(held_conns);
static TimestampTz held_since = 0;	/* since then the flusher has not moved */

static void on_client_event(Conn *conn, uint32 events);
static void authorize_headers(Conn *conn);
static void hold_until_flushed(Conn *conn);

void
conns_init(int epoll_fd)
{
	epfd = epoll_fd;
	spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	conns_cxt = AllocSetContextCreate(TopMemoryContext, "setstream connections",
									  ALLOCSET_DEFAULT_SIZES);
}

static void
set_interest(Conn *conn, uint32 events)
{
	struct epoll_event ev;

	if (conn->sock.tls_want_write)
		events |= EPOLLOUT;
	if (events == conn->epoll_events)
		return;
	ev.events = events;
	ev.data.ptr = conn;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, conn->sock.fd, &ev) == 0)
		conn->epoll_events = events;
}

void
conn_close(Conn *conn)
{
	if (conn->held)
		dlist_delete(&conn->held_node);
	conn->held = false;
	poll_unpark(conn);
	conn->phase = PHASE_CLOSED;
	epoll_ctl(epfd, EPOLL_CTL_DEL, conn->sock.fd, NULL);
	ws_free(conn);
	http_conn_release(conn);
	sock_close(&conn->sock);
	dlist_delete(&conn->node);
	listener_nconns--;
	handoff_note_open(listener_nconns);
	MemoryContextDelete(conn->cxt);
	freed_since_trim = true;
}

/* Were connections freed since the last call (the heap may shrink)? */
bool
conns_trim_due(void)
{
	bool		due = freed_since_trim;

	freed_since_trim = false;
	return due;
}

static void
refuse_connection(int fd)
{
	static const char body[] =
	"{\"err\":\"" ERR_TEMPORARILY_UNAVAILABLE "\","
	"\"description\":\"too many connections; try again shortly\"}";
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
						listener_nconns),
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
	TimestampTz started = http_request_started(conn);

	return started != 0 ? started : conn->last_activity;
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

	dlist_foreach(iter, &listener_conns)
	{
		Conn	   *conn = dlist_container(Conn, node, iter.cur);

		if (conn->phase == PHASE_READ && conn->sock.inlen == 0 &&
			(victim == NULL || stalled_since(conn) < stalled_since(victim)))
			victim = conn;
	}
	if (victim == NULL ||
		!TimestampDifferenceExceeds(stalled_since(victim), now, EVICT_AFTER_MS))
		return false;
	conn_close(victim);
	return true;
}

/* Ready for the next request on the connection: a request's handler */
static void
conn_new_request(Conn *conn)
{
	route_handler.unprepare(conn);
}

/*
 * Serve a connection this listener accepted or was passed (handoff.c): a
 * new Conn reading its first request, or refused when the listener is
 * full
 */
static void
conn_adopt(int fd, const struct sockaddr *addr, socklen_t alen)
{
	MemoryContext cxt;
	Conn	   *conn;
	struct epoll_event ev;

	if (listener_nconns >= setstream_max_connections && !evict_stalest())
	{
		refuse_connection(fd);
		return;
	}
	cxt = AllocSetContextCreate(conns_cxt, "setstream connection",
								ALLOCSET_SMALL_SIZES);
	conn = MemoryContextAllocZero(cxt, sizeof(Conn));
	conn->cxt = cxt;
	sock_init_accepted(&conn->sock, fd, addr, alen);
	conn->phase = PHASE_READ;
	conn->last_activity = GetCurrentTimestamp();
	conn_new_request(conn);
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		http_conn_init(conn);
		MemoryContextSwitchTo(old);
	}
	dlist_push_tail(&listener_conns, &conn->node);
	listener_nconns++;
	handoff_note_open(listener_nconns);
	metrics_count_connection();
	if (tls_configured() && !tls_start_server(&conn->sock))
	{
		conn_close(conn);
		return;
	}
	ev.events = EPOLLIN | EPOLLRDHUP;
	ev.data.ptr = conn;
	conn->epoll_events = ev.events;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
		conn_close(conn);
}

/*
 * New connections on a listening socket: each is served here or passed to
 * a less loaded listener
 */
void
conns_accept(int lfd)
{
	for (int i = 0; i < 256; i++)
	{
		struct sockaddr_storage addr;
		socklen_t	alen = sizeof(addr);
		int			fd = accept4(lfd, (struct sockaddr *) &addr, &alen,
								 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
		{
			if (errno == EMFILE || errno == ENFILE)
				refuse_without_descriptors(lfd);
			return;
		}
		if (!handoff_pass(fd))
			conn_adopt(fd, (struct sockaddr *) &addr, alen);
	}
}

/* Connections another listener passed to this one */
void
conns_take_handed(void)
{
	for (int i = 0; i < 256; i++)
	{
		struct sockaddr_storage addr;
		socklen_t	alen = sizeof(addr);
		int			fd = handoff_receive();

		if (fd < 0)
			return;
		if (getpeername(fd, (struct sockaddr *) &addr, &alen) != 0)
		{
			close(fd);			/* the peer is gone already */
			continue;
		}
		conn_adopt(fd, (struct sockaddr *) &addr, alen);
	}
}

/* The connection has a whole request, or a response to write */
static void
after_parse(Conn *conn)
{
	if (!http_request_complete(conn))
	{
		set_interest(conn, EPOLLIN | EPOLLRDHUP);
		return;
	}
	if (sock_has_output(&conn->sock))
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
	shutdown(conn->sock.fd, SHUT_WR);
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
		ssize_t		n = recv(conn->sock.fd, scratch, sizeof(scratch), 0);

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
bool
conn_tls_pending_read(Conn *conn)
{
	if (!sock_tls_pending(&conn->sock))
		return false;
	if (conn->phase == PHASE_READ)
		return !http_request_complete(conn) && !http_auth_pending(conn);
	if (conn->phase == PHASE_WEBSOCKET)
		return ws_wants_read(conn);
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

/* The response is written: close, start a WebSocket session, or read on */
static void
after_response(Conn *conn)
{
	if (conn->ws != NULL)
	{
		if (ws_start(conn))
		{
			conn->phase = PHASE_WEBSOCKET;
			ws_update_interest(conn);
		}
		else
			conn_close(conn);
		return;
	}
	if (http_close_after_write(conn))
	{
		if (http_body_unread(conn) && conn->sock.ssl == NULL)
			start_drain(conn);	/* its body was not read */
		else
			conn_close(conn);
		return;
	}
	if (http_auth_pending(conn))
	{
		/* refused on its headers: read past its body, then the next one */
		http_refused_on_headers(conn);
		conn->phase = PHASE_READ;
		conn->last_activity = GetCurrentTimestamp();
		on_client_event(conn, EPOLLIN);
		return;
	}
	conn->phase = PHASE_READ;
	conn->last_activity = GetCurrentTimestamp();
	conn_new_request(conn);
	http_next_request(conn);
	http_conn_parse(conn);		/* pipelined bytes */
	if (http_auth_pending(conn) && !http_request_complete(conn))
		authorize_headers(conn);
	else
		after_parse(conn);
}

static void
write_response(Conn *conn)
{
	conn->phase = PHASE_WRITE;
	if (sock_flush(&conn->sock))
		after_response(conn);
	else if (conn->sock.failed)
		conn_close(conn);
	else
		set_interest(conn, EPOLLOUT | EPOLLRDHUP);
}

/* Authorized on its headers: send 100 Continue if asked, read the body */
void
conn_resume_body(Conn *conn)
{
	conn->phase = PHASE_READ;
	http_authorized(conn);
	if (conn->sock.failed)
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
	char	   *load = NULL;

	http_await_authorization(conn);
	switch (turn_prepare_headers(conn, &load))
	{
		case PREP_EXECUTE:
			conn_resume_body(conn);
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
		switch (ws_event(conn, events, (events & (EPOLLHUP | EPOLLERR)) != 0))
		{
			case WS_GOING:
				ws_update_interest(conn);
				break;
			case WS_LAST_TURN:
				set_interest(conn, 0);
				break;
			case WS_OVER:
				conn_close(conn);
				break;
			case WS_WAITING:
				break;
		}
		return;
	}
	/* PHASE_READ: until the request is whole or OpenSSL holds no more */
	for (;;)
	{
		int			before = conn->sock.inlen;

		if (!http_conn_read(conn))
		{
			conn_close(conn);
			return;
		}
		if (conn->sock.inlen > before)
			conn->last_activity = GetCurrentTimestamp();
		http_conn_parse(conn);
		if (!conn_tls_pending_read(conn))
			break;
	}
	if (http_auth_pending(conn) && !http_request_complete(conn) &&
		conn->phase == PHASE_READ)
	{
		authorize_headers(conn);
		return;
	}
	if (http_refused_request_over(conn))
	{
		after_response(conn);	/* the refused request is over */
		return;
	}
	if (sock_has_output(&conn->sock) && !http_request_complete(conn))
		sock_flush(&conn->sock);	/* 100 Continue still queued */
	if (conn->sock.failed)
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

/* What the private epoll has, without waiting */
void
conns_poll(void)
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
void
conns_read_tls_pending(void)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &listener_conns)
	{
		Conn	   *conn = dlist_container(Conn, node, iter.cur);

		if (conn_tls_pending_read(conn))
			on_client_event(conn, EPOLLIN);
	}
}

/* After the turn's commit: write, wait, or move the session's frames */
void
conn_after_turn(Conn *conn)
{
	if (conn->flush_lsn != InvalidXLogRecPtr)
	{
		if (!walflush_done(conn->flush_lsn) &&
			(conn->phase == PHASE_WRITE || conn->phase == PHASE_WEBSOCKET))
		{
			hold_until_flushed(conn);
			return;
		}
		conn->flush_lsn = InvalidXLogRecPtr;
	}
	if (conn->held)
		return;					/* an earlier answer still waits */
	if (conn->phase == PHASE_WRITE)
		write_response(conn);
	else if (conn->phase == PHASE_PARKED)
		set_interest(conn, EPOLLRDHUP);
	else if (conn->phase == PHASE_WEBSOCKET)
	{
		if (ws_after_turn(conn))
			ws_update_interest(conn);
		else
			conn_close(conn);
	}
}

/*
 * The turn's answer waits until the WAL is flushed past conn->flush_lsn
 * (shmem/walflush.c): nothing of it is written meanwhile.  A WebSocket
 * session's messages stay in its outbox, in its own memory.
 */
static void
hold_until_flushed(Conn *conn)
{
	if (conn->phase == PHASE_WEBSOCKET)
		ws_keep_outbox(conn);
	if (conn->held)
		return;
	if (dlist_is_empty(&held_conns))
		held_since = GetCurrentTimestamp();
	dlist_push_tail(&held_conns, &conn->held_node);
	conn->held = true;
}

/*
 * Write the held answers whose WAL is flushed now.  Past
 * FLUSHER_PATIENCE_MS of waiting (the flusher is stuck or gone) the
 * listener flushes itself first.
 */
void
conns_release_flushed(TimestampTz now)
{
	dlist_mutable_iter iter;

	if (dlist_is_empty(&held_conns))
		return;
	if (TimestampDifferenceExceeds(held_since, now, FLUSHER_PATIENCE_MS))
	{
		XLogRecPtr	furthest = InvalidXLogRecPtr;

		dlist_foreach_modify(iter, &held_conns)
		{
			Conn	   *conn = dlist_container(Conn, held_node, iter.cur);

			furthest = Max(furthest, conn->flush_lsn);
		}
		walflush_now(furthest);
	}
	dlist_foreach_modify(iter, &held_conns)
	{
		Conn	   *conn = dlist_container(Conn, held_node, iter.cur);

		if (!walflush_done(conn->flush_lsn))
			continue;
		dlist_delete(&conn->held_node);
		conn->held = false;
		conn->flush_lsn = InvalidXLogRecPtr;
		conn_after_turn(conn);
		held_since = now;		/* the flusher moves */
	}
}

/* Close what timed out; ping or drop silent WebSocket peers */
void
conns_expire_idle(TimestampTz now)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &listener_conns)
	{
		Conn	   *conn = dlist_container(Conn, node, iter.cur);

		if ((conn->phase == PHASE_READ || conn->phase == PHASE_WRITE) &&
			TimestampDifferenceExceeds(conn->last_activity, now,
									   setstream_idle_timeout_ms))
			conn_close(conn);
		else if (conn->phase == PHASE_READ && http_request_started(conn) != 0 &&
				 TimestampDifferenceExceeds(http_request_started(conn), now,
											setstream_idle_timeout_ms))
			conn_close(conn);	/* a slow sender: a request must arrive whole
								 * in time */
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

/* How long the loop may wait for the connections: at most timeout */
long
conns_next_timeout_ms(TimestampTz now, long timeout)
{
	dlist_iter	iter;

	dlist_foreach(iter, &listener_conns)
	{
		Conn	   *conn = dlist_container(Conn, node, iter.cur);
		TimestampTz deadline;

		if (conn->phase == PHASE_READY || conn->phase == PHASE_AUTH ||
			conn_tls_pending_read(conn))
			return 0;
		if ((conn->phase == PHASE_PARKED || conn->phase == PHASE_WEBSOCKET) &&
			conn->handler->wake_at(conn, &deadline))
		{
			long		ms = TimestampDifferenceMilliseconds(now, deadline);

			if (ms < timeout)
				timeout = ms;
		}
	}
	return timeout;
}
