/*-------------------------------------------------------------------------
 *
 * routes.c
 *	  Maps a complete HTTP request to its handler and answers it:
 *
 *	    GET  /jwks.json                   public keys of every signing key
 *	    POST /streams/{name}/events       RFC 8935 push (one SET)
 *	    POST /streams/{name}/poll         RFC 8936 poll, with long poll
 *	    POST /streams/{name}/pushpull     pushpull, HTTP binding
 *	    GET  /streams/{name}/pushpull     pushpull, WebSocket binding
 *	                                      (Upgrade; the session: wssession.c)
 *	    /.well-known/ssf-configuration,   the SSF transmitter: discovery and
 *	    /ssf/...                          management API (ssf.c)
 *
 *	  Every stream route authenticates the peer first (auth/auth.c).
 *	  Tables are reached through exchange.c only; a poll that finds nothing
 *	  due is parked (poll.c).
 *
 *	  Each request goes through two steps.  route_prepare runs outside any
 *	  transaction, on the listener's cached copy of the stream
 *	  (store/streamcache.c): routing, authentication, parsing, JWS verification;
 *	  most bad requests are answered right there.  route_execute runs inside
 *	  the loop turn's transaction, in a subtransaction of its own, and only
 *	  stores and reads; the listener sends what it queues after the commit.
 *	  The turn (turn.c) calls both through route_handler (conn.h); a
 *	  prepared push switches to push_handler, whose pushes the turn stores
 *	  together.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <string.h>

#include "utils/memutils.h"

#include "base/streamname.h"
#include "exchange/exchange.h"
#include "store/streamcache.h"
#include "server/auth/auth.h"
#include "server/conn.h"
#include "server/metrics.h"
#include "server/ssf.h"
#include "setstream.h"
#include "shmem/jwksreq.h"
#include "shmem/stats.h"
#include "shmem/wakeup.h"

typedef enum Endpoint
{
	EP_NONE,
	EP_JWKS,
	EP_EVENTS,
	EP_POLL,
	EP_PUSHPULL,
	EP_METRICS,
	EP_SSF						/* ssf.c */
} Endpoint;

/* The path of the request URL (no query string, which is never read) */
static char *
request_path(Conn *conn)
{
	struct http_parser_url u;
	const char *url = conn->http.req.url.data;

	http_parser_url_init(&u);
	if (http_parser_parse_url(url, conn->http.req.url.len, 0, &u) != 0 ||
		!(u.field_set & (1 << UF_PATH)))
		return NULL;
	return pnstrdup(url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
}

/* Which endpoint the path names; *stream gets the stream name */
static Endpoint
parse_path(const char *path, char **stream, SsfRoute *ssf)
{
	const char *rest;
	const char *slash;

	*stream = NULL;
	*ssf = ssf_route(path);
	if (*ssf != SSF_NONE)
		return EP_SSF;
	if (strcmp(path, "/jwks.json") == 0)
		return EP_JWKS;
	if (strcmp(path, "/metrics") == 0)
		return EP_METRICS;
	if (strncmp(path, "/streams/", 9) != 0)
		return EP_NONE;
	rest = path + 9;
	slash = strchr(rest, '/');
	if (slash == NULL || !stream_name_valid(rest, slash - rest))
		return EP_NONE;
	*stream = pnstrdup(rest, slash - rest);
	if (strcmp(slash, "/events") == 0)
		return EP_EVENTS;
	if (strcmp(slash, "/poll") == 0)
		return EP_POLL;
	if (strcmp(slash, "/pushpull") == 0)
		return EP_PUSHPULL;
	return EP_NONE;
}

/* The media type of Content-Type, lower-cased, without parameters */
static char *
media_type(Conn *conn)
{
	const char *ct = conn->http.req.content_type;
	size_t		len;
	char	   *mt;

	if (ct == NULL)
		return NULL;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	len = strcspn(ct, "; \t");
	mt = pnstrdup(ct, len);
	for (char *p = mt; *p; p++)
		*p = pg_tolower((unsigned char) *p);
	return mt;
}




static void
respond_seterr(Conn *conn, SetErr code, const char *description)
{
	http_respond_error(conn, 400, seterr_name(code), description, NULL);
}

static bool
require_json_body(Conn *conn)
{
	char	   *mt = media_type(conn);

	if (mt != NULL && strcmp(mt, "application/json") != 0)
	{
		http_respond_error(conn, 415, seterr_name(SETERR_INVALID_REQUEST),
						   "Content-Type must be application/json", NULL);
		return false;
	}
	return true;
}

static void route_store_push(Conn *conn);
static const ConnHandler push_handler;
static void route_answer_push(Conn *conn);

/* What route_prepare found out, kept for route_execute (request memory) */
typedef struct Prepared
{
	Endpoint	ep;
	char	   *stream_name;
	StreamInfo *stream;			/* the cached copy */
	ParsedSet	ps;				/* EP_EVENTS: the verified SET */
	CommObj		obj;			/* EP_POLL, EP_PUSHPULL */
	IngestItem *items;			/* EP_PUSHPULL: its SETs, verified */
	SsfRoute	ssf;			/* EP_SSF: which one */
	void	   *ssf_state;		/* EP_SSF: what ssf_prepare parsed */
} Prepared;

static Prepared *
prepared(Conn *conn)
{
	return (Prepared *) conn->route_state;
}

static PrepResult
prepare_push(Conn *conn, Prepared *p)
{
	char	   *mt = media_type(conn);
	SetRules	rules;
	SetFailure	f;

	if (mt == NULL || strcmp(mt, "application/secevent+jwt") != 0)
	{
		http_respond_error(conn, 415, seterr_name(SETERR_INVALID_REQUEST),
						   "Content-Type must be application/secevent+jwt", NULL);
		return PREP_ANSWERED;
	}
	rules = streamcache_rules(p->stream);
	if (!set_verify(&rules, conn->http.req.body.data, conn->http.req.body.len,
					&p->ps, &f))
	{
		if (exchange_key_pending(p->stream, &f))
		{
			/* not 400: some transmitters disable a stream on any 400 */
			http_respond_error(conn, 503, NULL,
							   "the key of this SET is being fetched from the stream's peer_jwks_uri; try again shortly",
							   psprintf("Retry-After: %d\r\n", JWKS_RETRY_AFTER_S));
			return PREP_ANSWERED;
		}
		stats_count_rejected(p->stream->name, f.code);
		respond_seterr(conn, f.code, f.description);
		return PREP_ANSWERED;
	}
	return PREP_EXECUTE;
}

static PrepResult
prepare_poll(Conn *conn, Prepared *p)
{
	char		err[256];

	if (!require_json_body(conn))
		return PREP_ANSWERED;
	if (!commobj_parse_poll(conn->http.req.body.data, conn->http.req.body.len, &p->obj,
							err, sizeof(err)))
	{
		respond_seterr(conn, SETERR_INVALID_REQUEST, err);
		return PREP_ANSWERED;
	}
	return PREP_EXECUTE;
}

static PrepResult
prepare_pushpull(Conn *conn, Prepared *p, bool is_get)
{
	char		err[256];

	if (is_get)
	{
		ws_handshake(conn, p->stream_name);
		return PREP_ANSWERED;	/* a 101, or why not */
	}
	if (!require_json_body(conn))
		return PREP_ANSWERED;
	if (!commobj_parse(conn->http.req.body.data, conn->http.req.body.len, &p->obj,
					   err, sizeof(err)))
	{
		respond_seterr(conn, SETERR_INVALID_REQUEST, err);
		return PREP_ANSWERED;
	}
	p->items = exchange_verify(p->stream, &p->obj);
	return PREP_EXECUTE;
}

/*
 * Route and authenticate on the request's headers alone: PREP_EXECUTE
 * when the request may go on (p->stream is then its stream's cached copy,
 * valid until the end of the listener's turn), PREP_ANSWERED with the
 * refusal queued, PREP_LOAD to load *load_stream into the cache first.
 */
static PrepResult
route_check(Conn *conn, char **load_stream)
{
	Prepared   *p = prepared(conn);
	bool		is_get = conn->http.req.method == HTTP_GET;
	bool		is_post = conn->http.req.method == HTTP_POST;

	if (p == NULL)
	{
		char	   *path = request_path(conn);

		p = palloc0(sizeof(Prepared));
		p->ep = path ? parse_path(path, &p->stream_name, &p->ssf) : EP_NONE;
		conn->route_state = p;
	}

	if (p->ep == EP_NONE)
	{
		http_respond_error(conn, 404, NULL, "no such endpoint", NULL);
		return PREP_ANSWERED;
	}
	if (p->ep == EP_METRICS)
		return (PrepResult) metrics_check_request(conn);
	if (p->ep == EP_SSF)
	{
		/* a management request is authenticated in the turn (auth/mgmt.c) */
		if (!ssf_method_allowed(conn, p->ssf) ||
			(p->ssf != SSF_CONFIGURATION && auth_too_many_failures(conn)))
			return PREP_ANSWERED;
		return PREP_EXECUTE;
	}
	if (p->ep == EP_JWKS)
	{
		if (is_get)
			return PREP_EXECUTE;
		http_respond_error(conn, 405, NULL, "use GET", "Allow: GET\r\n");
		return PREP_ANSWERED;
	}
	if (!is_post && !(p->ep == EP_PUSHPULL && is_get))
	{
		http_respond_error(conn, 405, NULL, "use POST",
						   p->ep == EP_PUSHPULL ? "Allow: GET, POST\r\n" : "Allow: POST\r\n");
		return PREP_ANSWERED;
	}
	if (auth_too_many_failures(conn))
		return PREP_ANSWERED;
	if (!streamcache_lookup(p->stream_name, &p->stream))
	{
		*load_stream = p->stream_name;
		return PREP_LOAD;
	}
	if (!(p->ep == EP_POLL ? auth_authorized_poll(conn, p->stream)
		  : auth_authorized(conn, p->stream)))
		return PREP_ANSWERED;
	if (p->ep == EP_EVENTS && p->stream->refuse_inbound)
	{
		respond_seterr(conn, SETERR_ACCESS_DENIED, STREAM_REFUSES_INBOUND);
		return PREP_ANSWERED;
	}
	return PREP_EXECUTE;
}

/*
 * A request with a body, when its headers are complete: refuse it (404,
 * 405, 429, 401, 403) before its body is read or 100 Continue sent.  The
 * whole request is checked again by route_prepare.
 */
PrepResult
route_authorize_headers(Conn *conn, char **load_stream)
{
	return route_check(conn, load_stream);
}

/*
 * Step one, outside any transaction.  PREP_LOAD asks the listener to load
 * *load_stream into the cache (in a transaction) and call again.
 */
PrepResult
route_prepare(Conn *conn, char **load_stream)
{
	Prepared   *p;
	bool		is_get = conn->http.req.method == HTTP_GET;
	PrepResult	checked = route_check(conn, load_stream);

	if (checked != PREP_EXECUTE)
		return checked;
	p = prepared(conn);
	if (p->ep == EP_JWKS || p->ep == EP_METRICS)
		return PREP_EXECUTE;

	switch (p->ep)
	{
		case EP_SSF:
			return ssf_prepare(conn, p->ssf, &p->ssf_state);
		case EP_EVENTS:
			return prepare_push(conn, p);
		case EP_POLL:
			return prepare_poll(conn, p);
		case EP_PUSHPULL:
			return prepare_pushpull(conn, p, is_get);
		default:
			elog(ERROR, "unexpected endpoint %d", (int) p->ep);
	}
	return PREP_ANSWERED;		/* keep compiler quiet */
}

/* RFC 8936: acks first, then SETs; with none due, a long poll parks */
static TurnResult
execute_poll(Conn *conn, Prepared *p, const uint64 *generations)
{
	bool		more;
	json_t	   *response;

	/* issue 13: a poll is the receiver's activity (inactivity timeout) */
	if (setstream_ssf_inactivity_timeout_s > 0 && store_schema_is_0_4())
		store_receiver_active(NULL, p->stream_name);
	response = exchange_poll(p->stream, &p->obj, &more);

	if (json_object_size(json_object_get(response, "sets")) == 0 &&
		!p->obj.return_immediately && p->obj.max_events != 0 &&
		p->stream->status != 'd' &&
		setstream_poll_timeout_ms > 0 && wakeup_enabled())
	{
		poll_park(conn, p->stream_name, p->obj.max_events, generations);
		return TURN_PARKED;
	}
	http_respond_json(conn, 200, response, NULL);
	return TURN_ANSWERED;
}

/* Step two, inside the loop turn's transaction: store, read, answer */
static TurnResult
route_execute(Conn *conn, const uint64 *generations, TimestampTz now)
{
	Prepared   *p = prepared(conn);
	char	   *jwks;
	char		cache_control[48];

	switch (p->ep)
	{
		case EP_JWKS:
			jwks = exchange_jwks();
			snprintf(cache_control, sizeof(cache_control),
					 "Cache-Control: max-age=%d\r\n", setstream_jwks_max_age_s);
			http_respond(conn, 200, "application/json", jwks, strlen(jwks),
						 cache_control);
			break;
		case EP_METRICS:
			metrics_respond(conn);
			break;
		case EP_EVENTS:
			route_store_push(conn);
			route_answer_push(conn);
			break;
		case EP_POLL:
			return execute_poll(conn, p, generations);
		case EP_SSF:
			return ssf_execute(conn, p->ssf, p->ssf_state);
		case EP_PUSHPULL:
			http_respond_json(conn, 200,
							  exchange_ingest(p->stream, &p->obj, p->items), NULL);
			break;
		default:
			elog(ERROR, "unexpected endpoint %d", (int) p->ep);
	}
	return TURN_ANSWERED;
}

/* Store a prepared push without answering it */
static void
route_store_push(Conn *conn)
{
	Prepared   *p = prepared(conn);

	exchange_store_push(p->stream, &p->ps);
}

/* Store many prepared pushes with one statement, answering none */
static void
route_store_pushes(List *conns)
{
	int			n = list_length(conns);
	StreamInfo **streams = palloc(sizeof(StreamInfo *) * (n + 1));
	ParsedSet **sets = palloc(sizeof(ParsedSet *) * (n + 1));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, conns)
	{
		Prepared   *p = prepared((Conn *) lfirst(lc));

		streams[i] = p->stream;
		sets[i++] = &p->ps;
	}
	exchange_store_pushes(streams, sets, n);
}

/* Answer a push that route_store_push stored */
static void
route_answer_push(Conn *conn)
{
	stats_count_received(prepared(conn)->stream_name);
	http_respond(conn, 202, NULL, NULL, 0, NULL);
}


/*
 * The handler of a request (conn.h): prepare it on its headers (a body
 * still to read) or whole, in the request's memory.
 */
static PrepResult
route_handler_prepare(Conn *conn, char **load_stream)
{
	PrepResult	result;

	MemoryContextSwitchTo(conn->http.reqcxt);
	if (conn->http.auth_pending)
		return route_authorize_headers(conn, load_stream);
	result = route_prepare(conn, load_stream);
	if (result == PREP_EXECUTE && prepared(conn)->ep == EP_EVENTS)
		conn->handler = &push_handler;	/* stored with the turn's others */
	return result;
}

/* Answer a request that failed, or that the turn could not commit */
static TurnResult
route_fail(Conn *conn, const SetAnswer *answer)
{
	sock_discard_output(&conn->sock);
	if (prepared(conn) != NULL && prepared(conn)->ep == EP_SSF)
	{
		/* every SSF management answer: Cache-Control: no-store */
		SetAnswer	a = *answer;

		a.headers = psprintf("Cache-Control: no-store\r\n%s",
							 answer->headers ? answer->headers : "");
		http_respond_answer(conn, &a);
		return TURN_ANSWERED;
	}
	http_respond_answer(conn, answer);
	return TURN_ANSWERED;
}

/*
 * A new request on the connection, or one prepared against a dropped
 * extension's stream (prepare it again): nothing is prepared
 */
static void
route_unprepare(Conn *conn)
{
	conn->route_state = NULL;
	conn->handler = &route_handler;
}

const ConnHandler route_handler = {
	.name = "request",
	.prepare = route_handler_prepare,
	.execute = route_execute,
	.fail = route_fail,
	.unprepare = route_unprepare,
};

/*
 * A prepared RFC 8935 push: the turn stores all of them in one
 * subtransaction, with one statement (a subtransaction per request would
 * cost an XID each), and answers each after; each alone, as a request, if
 * that fails.
 */
static const ConnHandler push_handler = {
	.name = "push",
	.prepare = route_handler_prepare,
	.execute = route_execute,
	.fail = route_fail,
	.unprepare = route_unprepare,
	.execute_batch = route_store_pushes,
	.answer_batched = route_answer_push,
};
