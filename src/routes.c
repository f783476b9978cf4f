/*-------------------------------------------------------------------------
 *
 * routes.c
 *	  Maps a complete HTTP request to its handler and answers it:
 *
 *	    GET  /jwks.json                   public keys of every signing key
 *	    POST /streams/{name}/events       RFC 8935 push (one SET)
 *	    POST /streams/{name}/poll         RFC 8936 poll, with long poll
 *	    POST /streams/{name}/pushpull     pushpull, HTTP binding
 *
 *	  Every stream route needs "Authorization: Bearer <token>" with a token
 *	  of that stream; a missing or wrong token, and a token of another
 *	  stream, get 401 with WWW-Authenticate and say nothing about the
 *	  stream.  Handlers run inside the listener's transaction (each in a
 *	  subtransaction of its own); the listener sends what they queue only
 *	  after the commit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <string.h>

#include "utils/memutils.h"

#include "exchange.h"
#include "listener.h"
#include "setstream.h"
#include "stats.h"
#include "store.h"
#include "wakeup.h"

#define MAX_TOKEN_BYTES 512

typedef enum Endpoint
{
	EP_NONE,
	EP_JWKS,
	EP_EVENTS,
	EP_POLL,
	EP_PUSHPULL
} Endpoint;

static const char *const bearer_challenge =
"WWW-Authenticate: Bearer realm=\"setstream\"\r\n";
static const char *const bearer_challenge_invalid =
"WWW-Authenticate: Bearer realm=\"setstream\", error=\"invalid_token\"\r\n";

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

/* The bearer token of the request, or NULL */
static const char *
bearer_token(Conn *conn, size_t *len)
{
	const char *h = conn->req.authorization;

	if (h == NULL || pg_strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	*len = strlen(h);
	while (*len > 0 && (h[*len - 1] == ' ' || h[*len - 1] == '\t'))
		(*len)--;
	if (*len == 0 || *len > MAX_TOKEN_BYTES)
		return NULL;
	return h;
}

static bool
authorized(Conn *conn, const char *stream)
{
	size_t		len = 0;
	const char *token = bearer_token(conn, &len);

	if (token != NULL && setstream_token_valid(stream, token, len))
		return true;
	http_respond_error(conn, 401, "authentication_failed",
					   token ? "the bearer token is not valid for this stream"
					   : "this endpoint needs Authorization: Bearer <token>",
					   token ? bearer_challenge_invalid : bearer_challenge);
	return false;
}

static void
respond_seterr(Conn *conn, SetErr code, const char *description)
{
	http_respond_error(conn, 400, seterr_name(code), description, NULL);
}

static StreamInfo *
inbound_stream(Conn *conn, const char *name)
{
	StreamInfo *stream = store_get_stream(name);

	if (stream->status == 'd')
	{
		respond_seterr(conn, SETERR_ACCESS_DENIED, "the stream is disabled");
		return NULL;
	}
	return stream;
}

static bool
require_json_body(Conn *conn)
{
	char	   *mt = media_type(conn);

	if (mt != NULL && strcmp(mt, "application/json") != 0)
	{
		http_respond_error(conn, 415, "invalid_request",
						   "Content-Type must be application/json", NULL);
		return false;
	}
	return true;
}

/* RFC 8935: one SET in, 202 once it is stored (after the commit) */
static void
handle_push(Conn *conn, const char *name)
{
	char	   *mt = media_type(conn);
	StreamInfo *stream;
	ParsedSet	ps;
	SetFailure	f;

	if (mt == NULL || strcmp(mt, "application/secevent+jwt") != 0)
	{
		http_respond_error(conn, 415, "invalid_request",
						   "Content-Type must be application/secevent+jwt", NULL);
		return;
	}
	if ((stream = inbound_stream(conn, name)) == NULL)
		return;
	if (!set_verify(stream, conn->req.body.data, conn->req.body.len, &ps, &f))
	{
		stats_count_rejected(name, f.code);
		respond_seterr(conn, f.code, f.description);
		return;
	}
	store_insert_event(stream, &ps);
	stats_count_received(name);
	http_respond(conn, 202, NULL, NULL, 0, NULL);
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
handle_poll(Conn *conn, const char *name, const uint64 *generations)
{
	StreamInfo *stream;
	CommObj		req;
	char		err[256];
	json_t	   *response;
	bool		more;

	if (!require_json_body(conn))
		return ROUTE_ANSWERED;
	if (!commobj_parse_poll(conn->req.body.data, conn->req.body.len, &req,
							err, sizeof(err)))
	{
		respond_seterr(conn, SETERR_INVALID_REQUEST, err);
		return ROUTE_ANSWERED;
	}
	if ((stream = inbound_stream(conn, name)) == NULL)
		return ROUTE_ANSWERED;
	response = exchange_poll(stream, &req, &more);
	if (json_object_size(json_object_get(response, "sets")) == 0 &&
		!req.return_immediately && req.max_events != 0 &&
		setstream_poll_timeout_ms > 0 && wakeup_enabled())
	{
		park(conn, name, req.max_events, generations);
		return ROUTE_PARKED;
	}
	http_respond_json(conn, 200, response, NULL);
	return ROUTE_ANSWERED;
}

/* pushpull, HTTP binding: a Communication Object in, one out */
static void
handle_pushpull(Conn *conn, const char *name)
{
	StreamInfo *stream;
	CommObj		obj;
	char		err[256];

	if (!require_json_body(conn))
		return;
	if (!commobj_parse(conn->req.body.data, conn->req.body.len, &obj,
					   err, sizeof(err)))
	{
		respond_seterr(conn, SETERR_INVALID_REQUEST, err);
		return;
	}
	if ((stream = inbound_stream(conn, name)) == NULL)
		return;
	http_respond_json(conn, 200, exchange_ingest(stream, &obj), NULL);
}

static void
handle_jwks(Conn *conn)
{
	char	   *jwks = store_jwks();

	http_respond(conn, 200, "application/json", jwks, strlen(jwks),
				 "Cache-Control: max-age=60\r\n");
}

/* Answer (or park) one complete request */
RouteResult
route_request(Conn *conn, const uint64 *generations)
{
	char	   *path = request_path(conn);
	char	   *stream = NULL;
	Endpoint	ep = path ? parse_path(path, &stream) : EP_NONE;
	bool		is_get = conn->req.method == HTTP_GET;
	bool		is_post = conn->req.method == HTTP_POST;

	if (ep == EP_NONE)
	{
		http_respond_error(conn, 404, NULL, "no such endpoint", NULL);
		return ROUTE_ANSWERED;
	}
	if (ep == EP_JWKS)
	{
		if (!is_get)
			http_respond_error(conn, 405, NULL, "use GET", "Allow: GET\r\n");
		else
			handle_jwks(conn);
		return ROUTE_ANSWERED;
	}
	if (!is_post && !(ep == EP_PUSHPULL && is_get))
	{
		http_respond_error(conn, 405, NULL, "use POST",
						   ep == EP_PUSHPULL ? "Allow: GET, POST\r\n" : "Allow: POST\r\n");
		return ROUTE_ANSWERED;
	}
	if (!authorized(conn, stream))
		return ROUTE_ANSWERED;

	switch (ep)
	{
		case EP_EVENTS:
			handle_push(conn, stream);
			break;
		case EP_POLL:
			return handle_poll(conn, stream, generations);
		case EP_PUSHPULL:
			if (is_get)
			{
				if (inbound_stream(conn, stream) != NULL &&
					ws_handshake(conn, stream))
					return ROUTE_UPGRADED;
			}
			else
				handle_pushpull(conn, stream);
			break;
		default:
			elog(ERROR, "unexpected endpoint %d", (int) ep);
	}
	return ROUTE_ANSWERED;
}

/* A parked long poll: the stream's generation moved, or its time is up */
RouteResult
route_parked_poll(Conn *conn, bool timed_out, const uint64 *generations)
{
	json_t	   *response = json_object();
	json_t	   *sets;
	bool		more = false;

	if (timed_out)
		sets = json_object();
	else
	{
		StreamInfo *stream = store_get_stream(conn->poll_stream);

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

/* Forget in-flight SETs the peer acknowledged or rejected */
static void
ws_settle(Conn *conn, List *jtis)
{
	ListCell   *lc;

	foreach(lc, jtis)
	{
		const char *jti = lfirst(lc);
		ListCell   *f;

		foreach(f, conn->ws_in_flight)
		{
			InFlight   *inf = lfirst(f);

			if (strcmp(inf->jti, jti) == 0)
			{
				conn->ws_in_flight = foreach_delete_current(conn->ws_in_flight, f);
				pfree(inf->jti);
				pfree(inf);
				break;
			}
		}
	}
}

/* In-flight SETs past setstream.redelivery_interval are due again anywhere */
static void
ws_expire_in_flight(Conn *conn, TimestampTz now)
{
	ListCell   *f;

	foreach(f, conn->ws_in_flight)
	{
		InFlight   *inf = lfirst(f);

		if (TimestampDifferenceExceeds(inf->sent_at, now,
									   setstream_redelivery_interval_ms))
		{
			conn->ws_in_flight = foreach_delete_current(conn->ws_in_flight, f);
			pfree(inf->jti);
			pfree(inf);
		}
	}
}

/* Apply one received Communication Object; false when it is malformed */
static bool
ws_apply_message(Conn *conn, StreamInfo *stream, const char *text,
				 json_t *ack, json_t *set_errs)
{
	CommObj		obj;
	char		err[256];
	ListCell   *lc;

	if (!commobj_parse(text, strlen(text), &obj, err, sizeof(err)))
	{
		conn->ws_close_code = 1007;
		conn->ws_close_reason = MemoryContextStrdup(conn->cxt, err);
		return false;
	}
	store_apply_acks(stream->name, obj.ack);
	store_apply_errs(stream->name, obj.errs);
	ws_settle(conn, obj.ack);
	foreach(lc, obj.errs)
		ws_settle(conn, list_make1(((SetErrEntry *) lfirst(lc))->jti));

	foreach(lc, obj.sets)
	{
		SetEntry   *entry = lfirst(lc);
		SetFailure	f;
		json_t	   *e;

		switch (exchange_ingest_set(stream, entry, &f))
		{
			case INGEST_ACK:
				stats_count_received(stream->name);
				json_array_append_new(ack, json_string(entry->key));
				break;
			case INGEST_SETERR:
				stats_count_rejected(stream->name, f.code);
				e = json_object();
				json_object_set_new(e, "err", json_string(seterr_name(f.code)));
				json_object_set_new(e, "description", json_string(f.description));
				json_object_set_new(set_errs, entry->key, e);
				break;
			case INGEST_UNACKED:
				break;
		}
	}
	return true;
}

/* Hand out due SETs, within the connection's in-flight window */
static json_t *
ws_take(Conn *conn, StreamInfo *stream, TimestampTz now, bool *more)
{
	int			window = WS_MAX_IN_FLIGHT - list_length(conn->ws_in_flight);
	json_t	   *sets;
	const char *jti;
	json_t	   *v;

	*more = false;
	if (window <= 0)
		return json_object();
	sets = exchange_take(stream, window, more);
	json_object_foreach(sets, jti, v)
	{
		MemoryContext old = MemoryContextSwitchTo(conn->cxt);
		InFlight   *inf = palloc(sizeof(InFlight));

		inf->jti = pstrdup(jti);
		inf->sent_at = now;
		conn->ws_in_flight = lappend(conn->ws_in_flight, inf);
		MemoryContextSwitchTo(old);
	}
	return sets;
}

/*
 * One database turn of a WebSocket session: apply what the peer sent, then
 * hand out due SETs.  What to send waits in conn->ws_outbox for the commit.
 */
void
route_ws_turn(Conn *conn, const uint64 *generations, TimestampTz now)
{
	StreamInfo *stream = store_get_stream(conn->ws_stream);
	json_t	   *ack = json_array();
	json_t	   *set_errs = json_object();
	json_t	   *response = json_object();
	json_t	   *sets;
	ListCell   *lc;
	bool		more;

	foreach(lc, conn->ws_inbox)
	{
		if (!ws_apply_message(conn, stream, lfirst(lc), ack, set_errs))
			break;
	}
	list_free_deep(conn->ws_inbox);
	conn->ws_inbox = NIL;

	conn->ws_generation = generations[conn->ws_slot];
	ws_expire_in_flight(conn, now);
	sets = ws_take(conn, stream, now, &more);
	conn->ws_next_take = more && list_length(conn->ws_in_flight) < WS_MAX_IN_FLIGHT ?
		now : TimestampTzPlusMilliseconds(now, Max(setstream_redelivery_interval_ms, 1000));

	if (json_array_size(ack) > 0)
		json_object_set_new(response, "ack", ack);
	if (json_object_size(set_errs) > 0)
		json_object_set_new(response, "setErrs", set_errs);
	if (json_object_size(sets) > 0)
		json_object_set_new(response, "sets", sets);
	if (json_object_size(response) > 0)
		conn->ws_outbox = lappend(conn->ws_outbox,
								  MemoryContextStrdup(conn->cxt,
													  json_dumps(response, JSON_COMPACT)));
}
