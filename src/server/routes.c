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
 *
 *	  Every stream route authenticates the peer first (auth.c).  Tables
 *	  are reached through exchange.c only.
 *
 *	  Each request goes through two steps.  route_prepare runs outside any
 *	  transaction, on the listener's cached copy of the stream
 *	  (store/streamcache.c): routing, authentication, parsing, JWS verification;
 *	  most bad requests are answered right there.  route_execute runs inside
 *	  the loop turn's transaction, in a subtransaction of its own, and only
 *	  stores and reads; the listener sends what it queues after the commit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <string.h>

#include "utils/memutils.h"

#include "exchange/exchange.h"
#include "store/streamcache.h"
#include "server/auth/auth.h"
#include "server/listener.h"
#include "server/metrics.h"
#include "setstream.h"
#include "shmem/stats.h"
#include "shmem/wakeup.h"

typedef enum Endpoint
{
	EP_NONE,
	EP_JWKS,
	EP_EVENTS,
	EP_POLL,
	EP_PUSHPULL,
	EP_METRICS
} Endpoint;

/* The path of the request URL (no query string, which is never read) */
static char *
request_path(Conn *conn)
{
	struct http_parser_url u;
	const char *url = conn->req.url.data;

	http_parser_url_init(&u);
	if (http_parser_parse_url(url, conn->req.url.len, 0, &u) != 0 ||
		!(u.field_set & (1 << UF_PATH)))
		return NULL;
	return pnstrdup(url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
}

static bool
valid_stream_name(const char *s, size_t len)
{
	if (len == 0 || len > 128 || !isalnum((unsigned char) s[0]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char) s[i]) && s[i] != '.' && s[i] != '_' &&
			s[i] != '~' && s[i] != '-')
			return false;
	return true;
}

/* Which endpoint the path names; *stream gets the stream name */
static Endpoint
parse_path(const char *path, char **stream)
{
	const char *rest;
	const char *slash;

	*stream = NULL;
	if (strcmp(path, "/jwks.json") == 0)
		return EP_JWKS;
	if (strcmp(path, "/metrics") == 0)
		return EP_METRICS;
	if (strncmp(path, "/streams/", 9) != 0)
		return EP_NONE;
	rest = path + 9;
	slash = strchr(rest, '/');
	if (slash == NULL || !valid_stream_name(rest, slash - rest))
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
	const char *ct = conn->req.content_type;
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

/* What route_prepare found out, kept for route_execute (request memory) */
typedef struct Prepared
{
	Endpoint	ep;
	char	   *stream_name;
	StreamInfo *stream;			/* the cached copy */
	ParsedSet	ps;				/* EP_EVENTS: the verified SET */
	CommObj		obj;			/* EP_POLL, EP_PUSHPULL */
	IngestItem *items;			/* EP_PUSHPULL: its SETs, verified */
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
	if (!set_verify(&rules, conn->req.body.data, conn->req.body.len,
					&p->ps, &f))
	{
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
	if (!commobj_parse_poll(conn->req.body.data, conn->req.body.len, &p->obj,
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
	if (!commobj_parse(conn->req.body.data, conn->req.body.len, &p->obj,
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
	bool		is_get = conn->req.method == HTTP_GET;
	bool		is_post = conn->req.method == HTTP_POST;

	if (p == NULL)
	{
		char	   *path = request_path(conn);

		p = palloc0(sizeof(Prepared));
		p->ep = path ? parse_path(path, &p->stream_name) : EP_NONE;
		conn->route_state = p;
	}

	if (p->ep == EP_NONE)
	{
		http_respond_error(conn, 404, NULL, "no such endpoint", NULL);
		return PREP_ANSWERED;
	}
	if (p->ep == EP_METRICS)
		return (PrepResult) metrics_check_request(conn);
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
	if (!auth_authorized(conn, p->stream))
		return PREP_ANSWERED;
	if (p->stream->status == 'd')
	{
		respond_seterr(conn, SETERR_ACCESS_DENIED, "the stream is disabled");
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
	bool		is_get = conn->req.method == HTTP_GET;
	PrepResult	checked = route_check(conn, load_stream);

	if (checked != PREP_EXECUTE)
		return checked;
	p = prepared(conn);
	if (p->ep == EP_JWKS || p->ep == EP_METRICS)
		return PREP_EXECUTE;

	switch (p->ep)
	{
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

static void
park(Conn *conn, const char *name, int max_events, const uint64 *generations)
{
	MemoryContext old = MemoryContextSwitchTo(conn->reqcxt);

	conn->poll_stream = pstrdup(name);
	MemoryContextSwitchTo(old);
	conn->poll_slot = wakeup_slot(name);
	conn->poll_generation = generations[conn->poll_slot];
	conn->poll_max_events = max_events;
	conn->poll_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													  setstream_poll_timeout_ms);
}

/* RFC 8936: acks first, then SETs; with none due, a long poll parks */
static RouteResult
execute_poll(Conn *conn, Prepared *p, const uint64 *generations)
{
	bool		more;
	json_t	   *response = exchange_poll(p->stream, &p->obj, &more);

	if (json_object_size(json_object_get(response, "sets")) == 0 &&
		!p->obj.return_immediately && p->obj.max_events != 0 &&
		setstream_poll_timeout_ms > 0 && wakeup_enabled())
	{
		park(conn, p->stream_name, p->obj.max_events, generations);
		return ROUTE_PARKED;
	}
	http_respond_json(conn, 200, response, NULL);
	return ROUTE_ANSWERED;
}

/* Step two, inside the loop turn's transaction: store, read, answer */
RouteResult
route_execute(Conn *conn, const uint64 *generations)
{
	Prepared   *p = prepared(conn);
	char	   *jwks;

	switch (p->ep)
	{
		case EP_JWKS:
			jwks = exchange_jwks();
			http_respond(conn, 200, "application/json", jwks, strlen(jwks),
						 "Cache-Control: max-age=60\r\n");
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
		case EP_PUSHPULL:
			http_respond_json(conn, 200,
							  exchange_ingest(p->stream, &p->obj, p->items), NULL);
			break;
		default:
			elog(ERROR, "unexpected endpoint %d", (int) p->ep);
	}
	return ROUTE_ANSWERED;
}

/* Is this a prepared RFC 8935 push, ready to be stored? */
bool
route_is_push(Conn *conn)
{
	Prepared   *p = prepared(conn);

	return conn->phase == PHASE_READY && p != NULL && p->ep == EP_EVENTS;
}

/* Store a prepared push without answering it */
static void
route_store_push(Conn *conn)
{
	Prepared   *p = prepared(conn);

	exchange_store_push(p->stream, &p->ps);
}

/* Store many prepared pushes with one statement, answering none */
void
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
void
route_answer_push(Conn *conn)
{
	stats_count_received(prepared(conn)->stream_name);
	http_respond(conn, 202, NULL, NULL, 0, NULL);
}

/*
 * A parked long poll: the stream's generation moved, the configuration
 * did, or its time is up.  It is authorized again first: a revoked token,
 * an unbound certificate or a disabled stream ends it with 401 or 403.
 */
RouteResult
route_parked_poll(Conn *conn, bool timed_out, const uint64 *generations)
{
	json_t	   *response = json_object();
	json_t	   *sets;
	bool		more = false;
	StreamInfo *stream = streamcache_get(conn->poll_stream, true, true);
	const char *why;
	int			denied = auth_session_denied(conn, stream, &why);

	if (denied == 401)
	{
		http_respond_error(conn, 401, seterr_name(SETERR_AUTHENTICATION_FAILED), why,
						   auth_bearer_challenge_invalid);
		return ROUTE_ANSWERED;
	}
	if (denied != 0)
	{
		http_respond_error(conn, denied, seterr_name(SETERR_ACCESS_DENIED), why, NULL);
		return ROUTE_ANSWERED;
	}
	if (timed_out)
		sets = json_object();
	else
	{
		sets = exchange_take(stream, conn->poll_max_events, &more);
		if (json_object_size(sets) == 0)
		{
			conn->poll_generation = generations[conn->poll_slot];
			return ROUTE_PARKED;
		}
	}
	json_object_set_new(response, "sets", sets);
	json_object_set_new(response, "moreAvailable", json_boolean(more));
	http_respond_json(conn, 200, response, NULL);
	return ROUTE_ANSWERED;
}
