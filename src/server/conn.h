/*-------------------------------------------------------------------------
 *
 * conn.h
 *	  A listener connection, made of parts that one file each owns:
 *
 *	    sock        socket, TLS and byte buffers       sock.c, tls.c
 *	    http        the HTTP request being answered    http.c
 *	    poll        a parked long poll                 poll.c
 *	    ws          the pushpull WebSocket session     ws.c, wssession.c
 *	    route_state what routes.c prepared             routes.c
 *
 *	  and, for the listener, the phase it is in and the handler that
 *	  serves it in the next database turn (conn.c; the turn: turn.c; the
 *	  loop and its timeouts: listener.c).  The handler interface is how
 *	  the turn sees every kind of work (a request, a parked poll, a
 *	  WebSocket session's messages) without knowing routes: prepare
 *	  outside any transaction, execute in the turn's transaction, fail
 *	  when either cannot be done.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_CONN_H
#define SETSTREAM_CONN_H

#include "access/xlogdefs.h"
#include "lib/ilist.h"
#include "nodes/pg_list.h"
#include "utils/timestamp.h"

#include "server/http.h"
#include "server/sock.h"
#include "setstream.h"

typedef enum ConnPhase
{
	PHASE_READ,					/* reading a request */
	PHASE_AUTH,					/* headers read; its stream must be loaded */
	PHASE_READY,				/* a whole request waits for the next turn */
	PHASE_PARKED,				/* a long poll waits for SETs */
	PHASE_WRITE,				/* writing a response */
	PHASE_DRAIN,				/* answered an error early; discarding input */
	PHASE_WEBSOCKET,			/* a pushpull WebSocket session */
	PHASE_CLOSED				/* to be freed */
} ConnPhase;

typedef enum PrepResult
{
	PREP_ANSWERED,				/* answered without the database */
	PREP_EXECUTE,				/* execute must run in the transaction */
	PREP_LOAD					/* load the stream into the cache, then again */
} PrepResult;

typedef enum TurnResult
{
	TURN_ANSWERED,				/* a response is queued */
	TURN_PARKED,				/* a long poll waits (poll.c) */
	TURN_SESSION				/* a session goes on (its phase stays) */
} TurnResult;

typedef struct Conn Conn;

typedef struct ConnHandler
{
	const char *name;
	bool		log_failures;	/* log every failure, not only unexpected ones */

	/* outside any transaction; *load_stream with PREP_LOAD */
	PrepResult	(*prepare) (Conn *conn, char **load_stream);
	/* in the turn's transaction, in a subtransaction of its own */
	TurnResult	(*execute) (Conn *conn, const uint64 *generations,
							TimestampTz now);
	/* prepare or execute failed, or the turn could not commit */
	TurnResult	(*fail) (Conn *conn, const SetAnswer *answer);

	/* optional: */
	/* many prepared at once, in one subtransaction, answering none */
	void		(*execute_batch) (List *conns);
	/* then answer each of them */
	void		(*answer_batched) (Conn *conn);
	/* forget what prepare made (the extension was recreated) */
	void		(*unprepare) (Conn *conn);
	/* waiting: should the next turn look at it, and by when at the latest */
	bool		(*due) (Conn *conn, const uint64 *generations, TimestampTz now);
	bool		(*wake_at) (Conn *conn, TimestampTz *at);	/* false: none now */
	const char *(*waits_on) (Conn *conn);	/* the stream, or NULL */
} ConnHandler;

struct ParkedPoll;
struct WsSession;

struct Conn
{
	MemoryContext cxt;			/* the connection's memory */
	Sock		sock;
	HttpConn	http;
	struct ParkedPoll *poll;
	struct WsSession *ws;		/* upgraded, or upgrading after this response */
	void	   *route_state;

	/* turn.c: the turn's answer leaves once the WAL is flushed this far */
	XLogRecPtr	flush_lsn;		/* 0: at once */

	/* conn.c */
	const ConnHandler *handler;
	ConnPhase	phase;
	uint32		epoll_events;	/* what the private epoll watches */
	TimestampTz last_activity;
	dlist_node	node;			/* in the listener's list of connections */
	bool		held;			/* in held_conns, waiting for flush_lsn */
	dlist_node	held_node;
};

/* conn.c: the connections of this listener */
extern dlist_head listener_conns;
extern int	listener_nconns;
extern void conns_init(int epoll_fd);
extern void conns_accept(int lfd);
extern void conns_take_handed(void);
extern void conns_poll(void);
extern void conns_read_tls_pending(void);
extern bool conn_tls_pending_read(Conn *conn);
extern void conn_close(Conn *conn);
extern void conn_after_turn(Conn *conn);
extern void conns_release_flushed(TimestampTz now);
extern void conn_resume_body(Conn *conn);
extern void conns_expire_idle(TimestampTz now);
extern long conns_next_timeout_ms(TimestampTz now, long timeout);
extern bool conns_trim_due(void);

/* turn.c: one database turn */
typedef struct TurnDone
{
	List	   *touched;		/* to write, wait or send (conn_after_turn) */
	List	   *resumed;		/* authorized on headers (conn_resume_body) */
} TurnDone;

extern void turn_init(int listener_index);
extern void turn_run(TurnDone *done);
extern void turn_end(void);
extern PrepResult turn_prepare_headers(Conn *conn, char **load);

/* routes.c */
extern const ConnHandler route_handler;
extern PrepResult route_prepare(Conn *conn, char **load_stream);
extern PrepResult route_authorize_headers(Conn *conn, char **load_stream);

/* poll.c */
extern void poll_park(Conn *conn, const char *stream, int max_events,
					  const uint64 *generations);
extern void poll_unpark(Conn *conn);
extern int	poll_parked_count(void);

/* ws.c: RFC 6455 frames with wslay, server or client side */
#define WS_MAX_IN_FLIGHT 1000	/* SETs sent, not yet acknowledged */
#define WS_MAX_INBOX 16			/* messages waiting for the next turn */
#define WS_MAX_QUEUED_MSGS 64	/* messages (pongs too) queued to send */
#define WS_MAX_QUEUED_BYTES (1024 * 1024)	/* their bytes */

typedef enum WsEvent
{
	WS_GOING,					/* the session goes on */
	WS_LAST_TURN,				/* the peer left: one last turn for its acks */
	WS_OVER,					/* close the connection */
	WS_WAITING					/* waiting for its last turn: nothing to do */
} WsEvent;

extern bool ws_handshake(Conn *conn, const char *stream);
extern bool ws_start(Conn *conn);
extern bool ws_start_client(Conn *conn);
extern bool ws_on_event(Conn *conn, uint32 events);
extern WsEvent ws_event(Conn *conn, uint32 events, bool hangup);
extern bool ws_after_turn(Conn *conn);
extern void ws_keep_outbox(Conn *conn);
extern bool ws_housekeeping(Conn *conn, TimestampTz now);
extern bool ws_wants_write(Conn *conn);
extern bool ws_reading(Conn *conn);
extern bool ws_wants_read(Conn *conn);
extern bool ws_has_input(Conn *conn);
extern void ws_free(Conn *conn);

/* wssession.c: the pushpull session */
extern const ConnHandler ws_session_handler;

#endif
