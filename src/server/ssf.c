/*-------------------------------------------------------------------------
 *
 * ssf.c
 *	  The SSF transmitter's endpoints on the listener (issue 13; routes.c
 *	  sends them here):
 *
 *	    GET  /.well-known/ssf-configuration[/<issuer path>]
 *	                               transmitter metadata, no authentication
 *	    GET  /ssf/status?stream_id=<id>
 *	    POST /ssf/status {"stream_id", "status", "reason"?}
 *	    POST /ssf/streams {"events_requested"?, "delivery"?, "description"?}
 *	    GET  /ssf/streams[?stream_id=<id>]
 *	    DELETE /ssf/streams?stream_id=<id>
 *	    PATCH, PUT /ssf/streams {"stream_id", receiver-supplied members}
 *	    POST /ssf/subjects:add {"stream_id", "subject", "verified"?}
 *	    POST /ssf/subjects:remove {"stream_id", "subject"}
 *	    POST /ssf/verify {"stream_id", "state"?}
 *
 *	  The discovery document is built from setstream.public_url and
 *	  setstream.issuer alone and answered in prepare, without the
 *	  database.  The management endpoints authenticate a receiver token in
 *	  the turn's transaction (auth/mgmt.c), then reach only the streams
 *	  whose "receiver" is that receiver: any other stream, existing or
 *	  not, is 404.  A body is parsed in prepare; what is wrong with it is
 *	  answered (400) only after the token was checked, so that a client
 *	  without a valid token learns nothing but 401.  Every management
 *	  answer carries Cache-Control: no-store.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <string.h>

#include "base/streamname.h"
#include "codec/jsonread.h"
#include "server/auth/auth.h"
#include "server/conn.h"
#include "server/ssf.h"
#include "set/subject.h"
#include "setstream.h"
#include "store/store.h"

#define NO_STORE "Cache-Control: no-store\r\n"
#define WELL_KNOWN "/.well-known/ssf-configuration"

/* pushpull (draft-ietf-secevent-...) has no registered URN: ours */
#define PUSHPULL_URN "urn:setstream:delivery:pushpull"

/* What prepare found in a management request */
typedef struct SsfRequest
{
	const char *bad;			/* 400 with this, after authentication */
	int			bad_status;		/* 400, or 404 for a stream_id that cannot be */
	char	   *stream_id;
	char	   *status;
	char	   *reason;
	char	   *state;			/* POST /ssf/verify */
	SsfNewStream create;		/* POST /ssf/streams */
	SsfStreamUpdate update;		/* PATCH, PUT /ssf/streams */
	json_t	   *given;			/* PATCH, PUT: the transmitter-supplied
								 * members of the body, to compare */
	char	   *subject;		/* /ssf/subjects:*: JSON text */
	bool		verified;		/* /ssf/subjects:add */
} SsfRequest;

/* The base URL of every endpoint: setstream.public_url, no trailing '/' */
static char *
public_base(void)
{
	char	   *base = pstrdup(setstream_public_url ? setstream_public_url : "");
	size_t		len = strlen(base);

	while (len > 0 && base[len - 1] == '/')
		base[--len] = '\0';
	return base;
}

/* setstream.issuer, or the public base URL when it is not set */
static char *
issuer(void)
{
	if (setstream_issuer != NULL && setstream_issuer[0] != '\0')
		return pstrdup(setstream_issuer);
	return public_base();
}

/* The path of an http(s) URL ("" when it has none or only "/") */
static const char *
url_path(const char *url)
{
	const char *p = strstr(url, "://");
	const char *slash;

	if (p == NULL)
		return "";
	slash = strchr(p + 3, '/');
	if (slash == NULL || strcmp(slash, "/") == 0)
		return "";
	return slash;
}

/* Which SSF route the path names */
SsfRoute
ssf_route(const char *path)
{
	if (strncmp(path, WELL_KNOWN, strlen(WELL_KNOWN)) == 0)
	{
		const char *suffix = path + strlen(WELL_KNOWN);

		/* the plain form, or the path-inserted form of the issuer's path */
		if (*suffix == '\0')
			return SSF_CONFIGURATION;
		if (strcmp(suffix, url_path(issuer())) == 0)
			return SSF_CONFIGURATION;
		return SSF_NONE;
	}
	if (strcmp(path, "/ssf/status") == 0)
		return SSF_STATUS;
	if (strcmp(path, "/ssf/streams") == 0)
		return SSF_STREAMS;
	if (strcmp(path, "/ssf/subjects:add") == 0)
		return SSF_SUBJECT_ADD;
	if (strcmp(path, "/ssf/subjects:remove") == 0)
		return SSF_SUBJECT_REMOVE;
	if (strcmp(path, "/ssf/verify") == 0)
		return SSF_VERIFY;
	return SSF_NONE;
}

/* 405 unless the method is one the route takes */
bool
ssf_method_allowed(Conn *conn, SsfRoute route)
{
	int			m = conn->http.req.method;

	if (route == SSF_CONFIGURATION && m != HTTP_GET)
	{
		http_respond_error(conn, 405, NULL, "use GET", "Allow: GET\r\n");
		return false;
	}
	if (route == SSF_STATUS && m != HTTP_GET && m != HTTP_POST)
	{
		http_respond_error(conn, 405, NULL, "use GET or POST",
						   NO_STORE "Allow: GET, POST\r\n");
		return false;
	}
	if (route == SSF_VERIFY && m != HTTP_POST)
	{
		http_respond_error(conn, 405, NULL, "use POST",
						   NO_STORE "Allow: POST\r\n");
		return false;
	}
	if (route == SSF_STREAMS && m != HTTP_GET && m != HTTP_POST &&
		m != HTTP_DELETE && m != HTTP_PATCH && m != HTTP_PUT)
	{
		http_respond_error(conn, 405, NULL, "use GET, POST, PATCH, PUT or DELETE",
						   NO_STORE "Allow: GET, POST, PATCH, PUT, DELETE\r\n");
		return false;
	}
	if ((route == SSF_SUBJECT_ADD || route == SSF_SUBJECT_REMOVE) && m != HTTP_POST)
	{
		http_respond_error(conn, 405, NULL, "use POST", NO_STORE "Allow: POST\r\n");
		return false;
	}
	return true;
}

static void
add_endpoint(json_t *doc, const char *member, const char *base, const char *path)
{
	json_object_set_new(doc, member, json_string(psprintf("%s%s", base, path)));
}

/* The transmitter's metadata (SSF 1.0, 7.1), answered at once */
static void
respond_configuration(Conn *conn)
{
	char	   *base = public_base();
	json_t	   *doc;
	json_t	   *methods;
	json_t	   *schemes;

	if (base[0] == '\0')
	{
		http_respond_error(conn, 404, NULL,
						   "this database is no SSF transmitter: setstream.public_url is not set",
						   NULL);
		return;
	}
	doc = json_object();
	json_object_set_new(doc, "spec_version", json_string("1_0"));
	json_object_set_new(doc, "issuer", json_string(issuer()));
	add_endpoint(doc, "jwks_uri", base, "/jwks.json");
	methods = json_array();
	json_array_append_new(methods, json_string("urn:ietf:rfc:8935"));
	json_array_append_new(methods, json_string("urn:ietf:rfc:8936"));
	json_array_append_new(methods, json_string(PUSHPULL_URN));
	json_object_set_new(doc, "delivery_methods_supported", methods);
	add_endpoint(doc, "configuration_endpoint", base, "/ssf/streams");
	add_endpoint(doc, "status_endpoint", base, "/ssf/status");
	add_endpoint(doc, "add_subject_endpoint", base, "/ssf/subjects:add");
	add_endpoint(doc, "remove_subject_endpoint", base, "/ssf/subjects:remove");
	add_endpoint(doc, "verification_endpoint", base, "/ssf/verify");
	schemes = json_array();
	json_array_append_new(schemes,
						  json_pack("{s:s}", "spec_urn", "urn:ietf:rfc:6749"));
	json_object_set_new(doc, "authorization_schemes", schemes);
	json_object_set_new(doc, "default_subjects",
						json_string(setstream_default_subjects == SSF_DEFAULT_SUBJECTS_NONE ?
									"NONE" : "ALL"));
	http_respond_json(conn, 200, doc, "Cache-Control: max-age=300\r\n");
	json_decref(doc);
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = pg_tolower((unsigned char) c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * The value of the query parameter "name", percent-decoded; NULL when
 * absent, *dup when it is given more than once or cannot be decoded.
 */
static char *
query_param(Conn *conn, const char *name, bool *bad)
{
	struct http_parser_url u;
	const char *url = conn->http.req.url.data;
	const char *q;
	const char *end;
	size_t		nlen = strlen(name);
	char	   *found = NULL;

	*bad = false;
	http_parser_url_init(&u);
	if (http_parser_parse_url(url, conn->http.req.url.len, 0, &u) != 0 ||
		!(u.field_set & (1 << UF_QUERY)))
		return NULL;
	q = url + u.field_data[UF_QUERY].off;
	end = q + u.field_data[UF_QUERY].len;
	while (q < end)
	{
		const char *amp = memchr(q, '&', end - q);
		const char *pend = amp ? amp : end;

		if ((size_t) (pend - q) > nlen && strncmp(q, name, nlen) == 0 && q[nlen] == '=')
		{
			StringInfoData v;

			if (found != NULL)
			{
				*bad = true;
				return NULL;
			}
			initStringInfo(&v);
			for (const char *p = q + nlen + 1; p < pend; p++)
			{
				if (*p == '%')
				{
					int			hi = p + 2 < pend ? hexval(p[1]) : -1;
					int			lo = hi >= 0 ? hexval(p[2]) : -1;

					if (lo < 0 || (hi == 0 && lo == 0))
					{
						*bad = true;
						return NULL;
					}
					appendStringInfoChar(&v, (char) (hi * 16 + lo));
					p += 2;
				}
				else
					appendStringInfoChar(&v, *p == '+' ? ' ' : *p);
			}
			found = v.data;
		}
		q = pend + 1;
	}
	return found;
}

/* A string member of the body: NULL when absent; *bad when not a string */
static char *
string_member(json_t *body, const char *name, SsfRequest *r)
{
	json_t	   *v = json_object_get(body, name);

	if (v == NULL)
		return NULL;
	if (!json_is_string(v))
	{
		r->bad = psprintf("\"%s\" must be a string", name);
		return NULL;
	}
	return pstrdup(json_string_value(v));
}

static void
parse_status_get(Conn *conn, SsfRequest *r)
{
	bool		bad;

	r->stream_id = query_param(conn, "stream_id", &bad);
	if (bad)
		r->bad = "the query parameter stream_id is repeated or not percent-encoded correctly";
	else if (r->stream_id == NULL)
		r->bad = "the query parameter stream_id is missing";
}

/* The members of a status change, each of the right type already */
static void
check_status_members(SsfRequest *r)
{
	if (r->stream_id == NULL)
		r->bad = "\"stream_id\" is missing";
	else if (r->status == NULL)
		r->bad = "\"status\" is missing";
	else if (strcmp(r->status, "enabled") != 0 &&
			 strcmp(r->status, "paused") != 0 &&
			 strcmp(r->status, "disabled") != 0)
		r->bad = "\"status\" must be enabled, paused or disabled";
}

/* The JSON object of the body; NULL with r->bad set */
static json_t *
body_object(Conn *conn, SsfRequest *r)
{
	const char *err = NULL;
	const char *ct = conn->http.req.content_type;
	json_t	   *body;

	if (ct != NULL && pg_strncasecmp(ct, "application/json", 16) != 0)
	{
		r->bad = "Content-Type must be application/json";
		return NULL;
	}
	body = jsonread_load(conn->http.req.body.data, conn->http.req.body.len, &err);
	if (body == NULL)
	{
		r->bad = psprintf("the body is not JSON: %s", err ? err : "invalid");
		return NULL;
	}
	if (!json_is_object(body))
	{
		json_decref(body);
		r->bad = "the body must be a JSON object";
		return NULL;
	}
	return body;
}

/* An http(s) URL with a host, no white space or control character */
static bool
valid_endpoint_url(const char *u)
{
	const char *host;

	if (pg_strncasecmp(u, "https://", 8) == 0)
		host = u + 8;
	else if (pg_strncasecmp(u, "http://", 7) == 0)
		host = u + 7;
	else
		return false;
	if (*host == '\0' || strchr("/?#", *host) != NULL)
		return false;
	for (const char *p = u; *p; p++)
		if ((unsigned char) *p <= ' ' || *p == 0x7f)
			return false;
	return true;
}

/* "delivery" of a create: poll (the default) or push */
static void
parse_delivery(json_t *delivery, SsfRequest *r)
{
	SsfNewStream *n = &r->create;
	const char *method;
	json_t	   *url;
	json_t	   *auth;

	n->method = "poll";
	if (delivery == NULL)
		return;
	if (!json_is_object(delivery))
	{
		r->bad = "\"delivery\" must be an object";
		return;
	}
	method = json_string_value(json_object_get(delivery, "method"));
	url = json_object_get(delivery, "endpoint_url");
	auth = json_object_get(delivery, "authorization_header");
	if (method == NULL)
		r->bad = "\"delivery\" needs a \"method\" string";
	else if (strcmp(method, "urn:ietf:rfc:8936") == 0)
	{
		if (url != NULL || auth != NULL)
			r->bad = "poll delivery (urn:ietf:rfc:8936) takes no endpoint_url or authorization_header: the transmitter supplies the endpoint";
	}
	else if (strcmp(method, "urn:ietf:rfc:8935") == 0)
	{
		n->method = "push";
		if (!json_is_string(url) || !valid_endpoint_url(json_string_value(url)))
			r->bad = "push delivery (urn:ietf:rfc:8935) needs an http:// or https:// \"endpoint_url\"";
		else if (auth != NULL && (!json_is_string(auth) ||
								  strpbrk(json_string_value(auth), "\r\n") != NULL ||
								  json_string_length(auth) == 0))
			r->bad = "\"authorization_header\" must be a non-empty string without line breaks";
		else
		{
			n->endpoint_url = pstrdup(json_string_value(url));
			n->authorization_header = auth ? pstrdup(json_string_value(auth)) : NULL;
		}
	}
	else
		r->bad = psprintf("unsupported delivery method; use %s or %s",
						  "urn:ietf:rfc:8935", "urn:ietf:rfc:8936");
}

static const char *const transmitter_supplied[] = {
	"stream_id", "iss", "aud", "events_supported", "events_delivered",
	"min_verification_interval", "inactivity_timeout", NULL
};

/* POST /ssf/streams: the receiver-supplied members of a new stream */
static void
parse_streams_post(Conn *conn, SsfRequest *r)
{
	json_t	   *body = body_object(conn, r);
	json_t	   *events;

	if (body == NULL)
		return;
	for (int i = 0; transmitter_supplied[i] != NULL && r->bad == NULL; i++)
		if (json_object_get(body, transmitter_supplied[i]) != NULL)
			r->bad = psprintf("\"%s\" is supplied by the transmitter, not in a create",
							  transmitter_supplied[i]);
	if (r->bad == NULL)
		r->create.description = string_member(body, "description", r);
	events = json_object_get(body, "events_requested");
	if (r->bad == NULL && events != NULL)
	{
		size_t		i;
		json_t	   *e;

		if (!json_is_array(events))
			r->bad = "\"events_requested\" must be an array of strings";
		r->create.has_events_requested = true;
		json_array_foreach(events, i, e)
		{
			if (r->bad != NULL)
				break;
			if (!json_is_string(e) || json_string_length(e) == 0 ||
				memchr(json_string_value(e), '\0', json_string_length(e)) != NULL)
				r->bad = "\"events_requested\" must be an array of non-empty strings";
			else
				r->create.events_requested = lappend(r->create.events_requested,
													 pstrdup(json_string_value(e)));
		}
	}
	if (r->bad == NULL)
		parse_delivery(json_object_get(body, "delivery"), r);
	json_decref(body);
}

static void
parse_status_post(Conn *conn, SsfRequest *r)
{
	json_t	   *body = body_object(conn, r);

	if (body != NULL)
	{
		r->stream_id = string_member(body, "stream_id", r);
		r->status = string_member(body, "status", r);
		r->reason = string_member(body, "reason", r);
		if (r->bad == NULL)
			check_status_members(r);
		json_decref(body);
	}
}

/* POST /ssf/verify: {"stream_id", "state"?} (issue 13) */
static void
parse_verify(Conn *conn, SsfRequest *r)
{
	json_t	   *body = body_object(conn, r);

	if (body == NULL)
		return;
	r->stream_id = string_member(body, "stream_id", r);
	r->state = string_member(body, "state", r);
	if (r->bad == NULL && r->stream_id == NULL)
		r->bad = "\"stream_id\" is missing";
	json_decref(body);
}

/*
 * "events_requested" of a PATCH or PUT: an array of non-empty strings
 * (null: none)
 */
static void
parse_update_events(json_t *events, SsfRequest *r)
{
	size_t		i;
	json_t	   *e;

	r->update.set_events = true;
	if (json_is_null(events))
		return;
	if (!json_is_array(events))
	{
		r->bad = "\"events_requested\" must be an array of strings";
		return;
	}
	r->update.has_events_requested = true;
	json_array_foreach(events, i, e)
	{
		if (!json_is_string(e) || json_string_length(e) == 0 ||
			memchr(json_string_value(e), '\0', json_string_length(e)) != NULL)
		{
			r->bad = "\"events_requested\" must be an array of non-empty strings";
			return;
		}
		r->update.events_requested = lappend(r->update.events_requested,
											 pstrdup(json_string_value(e)));
	}
}

/*
 * PATCH (replace false) or PUT /ssf/streams: "stream_id", the
 * receiver-supplied members to change (PUT: all of them, a missing one
 * removed, a missing delivery poll), and the transmitter-supplied ones,
 * kept to be compared with the stream's (SSF 1.0, stream update and
 * replace: they may be sent but must match)
 */
static void
parse_streams_update(Conn *conn, SsfRequest *r, bool replace)
{
	json_t	   *body = body_object(conn, r);
	json_t	   *v;

	if (body == NULL)
		return;
	r->stream_id = string_member(body, "stream_id", r);
	if (r->bad == NULL && r->stream_id == NULL)
		r->bad = "\"stream_id\" is missing";
	r->given = json_object();
	for (int i = 1; transmitter_supplied[i] != NULL; i++)
		if ((v = json_object_get(body, transmitter_supplied[i])) != NULL)
			json_object_set(r->given, transmitter_supplied[i], v);
	v = json_object_get(body, "description");
	if (r->bad == NULL && (v != NULL || replace))
	{
		r->update.set_description = true;
		if (v != NULL && !json_is_null(v))
			r->update.description = string_member(body, "description", r);
	}
	v = json_object_get(body, "events_requested");
	if (r->bad == NULL && (v != NULL || replace))
	{
		if (v == NULL)
			r->update.set_events = true;
		else
			parse_update_events(v, r);
	}
	v = json_object_get(body, "delivery");
	if (r->bad == NULL && (v != NULL || replace))
	{
		json_t	   *url = json_is_object(v) ? json_object_get(v, "endpoint_url") : NULL;
		const char *method = json_is_object(v) ?
			json_string_value(json_object_get(v, "method")) : NULL;

		/*
		 * Poll's endpoint_url is the transmitter's: a body that sends the
		 * configuration back may carry it, and it must be ours
		 */
		if (url != NULL && method != NULL && strcmp(method, "urn:ietf:rfc:8936") == 0)
		{
			json_object_set(r->given, "delivery.endpoint_url", url);
			v = json_deep_copy(v);
			json_object_del(v, "endpoint_url");
			parse_delivery(v, r);
			json_decref(v);
		}
		else
			parse_delivery(v, r);
		r->update.set_delivery = true;
		r->update.method = r->create.method;
		r->update.endpoint_url = r->create.endpoint_url;
		r->update.authorization_header = r->create.authorization_header;
	}
	json_decref(body);
	if (r->bad == NULL && !stream_name_valid(r->stream_id, strlen(r->stream_id)))
	{
		r->bad = "no such stream";
		r->bad_status = 404;
	}
}

/*
 * POST /ssf/subjects:add or :remove: "stream_id", "subject" (a subject
 * identifier, RFC 9493, checked as a SET's sub_id is) and, for add,
 * "verified" (default true)
 */
static void
parse_subject_post(Conn *conn, SsfRequest *r, bool add)
{
	json_t	   *body = body_object(conn, r);
	json_t	   *subject;
	json_t	   *verified;
	SetFailure	f;

	if (body == NULL)
		return;
	r->stream_id = string_member(body, "stream_id", r);
	subject = json_object_get(body, "subject");
	verified = json_object_get(body, "verified");
	r->verified = true;
	if (r->bad != NULL)
		;
	else if (r->stream_id == NULL)
		r->bad = "\"stream_id\" is missing";
	else if (subject == NULL)
		r->bad = "\"subject\" is missing";
	else if (!json_is_object(subject))
		r->bad = "\"subject\" must be a subject identifier (a JSON object)";
	else if (!subject_validate(subject, "subject", &f))
		r->bad = psprintf("invalid subject identifier: %s", f.description);
	else if (add && verified != NULL && !json_is_boolean(verified))
		r->bad = "\"verified\" must be true or false";
	else
	{
		r->subject = json_dumps(subject, JSON_COMPACT | JSON_SORT_KEYS);
		if (add && verified != NULL)
			r->verified = json_is_true(verified);
	}
	json_decref(body);
	if (r->bad == NULL && !stream_name_valid(r->stream_id, strlen(r->stream_id)))
	{
		r->bad = "no such stream";
		r->bad_status = 404;
	}
}

/*
 * Step one of an SSF request, outside any transaction: the discovery
 * document is answered; a management request is parsed (*state) and
 * goes on to ssf_execute.
 */
PrepResult
ssf_prepare(Conn *conn, SsfRoute route, void **state)
{
	SsfRequest *r;

	if (route == SSF_CONFIGURATION)
	{
		respond_configuration(conn);
		return PREP_ANSWERED;
	}
	r = palloc0(sizeof(SsfRequest));
	r->bad_status = 400;
	*state = r;
	if (route == SSF_SUBJECT_ADD || route == SSF_SUBJECT_REMOVE)
	{
		parse_subject_post(conn, r, route == SSF_SUBJECT_ADD);
		return PREP_EXECUTE;
	}
	if (route == SSF_STREAMS)
	{
		bool		bad;

		if (conn->http.req.method == HTTP_POST)
		{
			parse_streams_post(conn, r);
			return PREP_EXECUTE;
		}
		if (conn->http.req.method == HTTP_PATCH || conn->http.req.method == HTTP_PUT)
		{
			parse_streams_update(conn, r, conn->http.req.method == HTTP_PUT);
			return PREP_EXECUTE;
		}
		/* GET: stream_id optional; DELETE: needed */
		r->stream_id = query_param(conn, "stream_id", &bad);
		if (bad)
			r->bad = "the query parameter stream_id is repeated or not percent-encoded correctly";
		else if (r->stream_id == NULL && conn->http.req.method == HTTP_DELETE)
			r->bad = "the query parameter stream_id is missing";
		if (r->bad == NULL && r->stream_id != NULL && !stream_name_valid(r->stream_id, strlen(r->stream_id)))
		{
			r->bad = "no such stream";
			r->bad_status = 404;
		}
		return PREP_EXECUTE;
	}
	if (route == SSF_VERIFY)
		parse_verify(conn, r);
	else if (conn->http.req.method == HTTP_GET)
		parse_status_get(conn, r);
	else
		parse_status_post(conn, r);
	if (r->bad == NULL && !stream_name_valid(r->stream_id, strlen(r->stream_id)))
	{
		r->bad = "no such stream";
		r->bad_status = 404;
	}
	return PREP_EXECUTE;
}

static void
respond_json_text(Conn *conn, int status, const char *text)
{
	http_respond(conn, status, "application/json", text, strlen(text), NO_STORE);
}

/*
 * PATCH or PUT /ssf/streams, for an authenticated receiver: 404 unless
 * the stream is its; 400 when a transmitter-supplied member differs from
 * the stream's (nothing changed); else 200 with the new configuration
 */
static void
execute_streams_update(Conn *conn, SsfRequest *r, const char *receiver,
					   const char *base)
{
	char	   *current = store_ssf_stream_config(r->stream_id, receiver, base);
	json_t	   *cur;
	const char *err = NULL;
	const char *member;
	json_t	   *v;
	char	   *config;

	if (current == NULL)
	{
		http_respond_error(conn, 404, NULL, "no such stream", NO_STORE);
		return;
	}
	cur = jsonread_load(current, strlen(current), &err);
	if (cur == NULL)
		elog(ERROR, "the configuration of stream \"%s\" is not JSON", r->stream_id);
	json_object_foreach(r->given, member, v)
	{
		json_t	   *ours = json_object_get(cur, member);
		const char *name = member;

		if (strcmp(member, "delivery.endpoint_url") == 0)
		{
			json_t	   *d = json_object_get(cur, "delivery");

			ours = NULL;
			if (strcmp(json_string_value(json_object_get(d, "method")),
					   "urn:ietf:rfc:8936") == 0)
				ours = json_object_get(d, "endpoint_url");
			/* a change to poll: our URL is the stream's */
			else if (json_is_string(v) &&
					 strcmp(json_string_value(v),
							psprintf("%s/streams/%s/poll", base, r->stream_id)) == 0)
				continue;
			name = "delivery";
		}

		if (ours == NULL || !json_equal(ours, v))
		{
			json_decref(cur);
			http_respond_error(conn, 400, "invalid_request",
							   psprintf("\"%s\" is supplied by the transmitter and differs from the stream's",
										name),
							   NO_STORE);
			return;
		}
	}
	json_decref(cur);
	r->update.stream = r->stream_id;
	r->update.receiver = receiver;
	r->update.public_url = base;
	config = store_ssf_update_stream(&r->update);
	if (config == NULL)
		http_respond_error(conn, 404, NULL, "no such stream", NO_STORE);
	else
		respond_json_text(conn, 200, config);
}

/*
 * POST /ssf/subjects:add (200, empty) or :remove (204), for an
 * authenticated receiver; 404 unless the stream is its.  Under
 * default_subjects ALL a removal is kept as a row (the stream delivers
 * every subject not removed); under NONE it deletes the added one.
 */
static void
execute_subject(Conn *conn, SsfRequest *r, const char *receiver, bool add)
{
	if (store_receiver_stream_status(r->stream_id, receiver) == NULL)
	{
		http_respond_error(conn, 404, NULL, "no such stream", NO_STORE);
		return;
	}
	store_set_subject(r->stream_id, r->subject, add, r->verified,
					  setstream_default_subjects == SSF_DEFAULT_SUBJECTS_ALL);
	if (add)
		http_respond(conn, 200, NULL, NULL, 0, NO_STORE);
	else
		http_respond(conn, 204, NULL, NULL, 0, NO_STORE);
}

/*
 * POST /ssf/verify (issue 13): 204 with a verification SET queued (state
 * echoed when given), or with nothing queued when the stream is disabled
 * (SSF: a disabled stream holds nothing); 429 with Retry-After within
 * setstream.ssf_min_verification_interval of the receiver's last request.
 */
static void
execute_verify(Conn *conn, SsfRequest *r, const char *status)
{
	int			retry_after = 0;

	if (!store_schema_is_0_4())
	{
		http_respond_error(conn, 404, NULL,
						   "verification needs the extension updated to 0.4.0 (ALTER EXTENSION setstream UPDATE)",
						   NO_STORE);
		return;
	}
	if (strcmp(status, "disabled") != 0 &&
		!store_ssf_verify(r->stream_id, r->state, true,
						  setstream_ssf_min_verification_interval_s,
						  &retry_after))
	{
		http_respond_error(conn, 429, "rate_limited",
						   psprintf("a verification was requested less than %d s ago",
									setstream_ssf_min_verification_interval_s),
						   psprintf(NO_STORE "Retry-After: %d\r\n", retry_after));
		return;
	}
	http_respond(conn, 204, NULL, NULL, 0, NO_STORE);
}

/*
 * The receiver made a management call (issue 13: the inactivity timeout
 * runs from its last one).  0.4.0 schema only.
 */
static void
ssf_note_activity(const char *receiver)
{
	if (setstream_ssf_inactivity_timeout_s > 0 && store_schema_is_0_4())
		store_receiver_active(receiver, NULL);
}

/*
 * A stream was made (config: its configuration object): the transmitter's
 * own verification SET, without state (issue 13).  0.4.0 schema only.
 */
static void
ssf_created(const char *config)
{
	json_t	   *c;
	const char *id;
	int			unused;

	if (!store_schema_is_0_4())
		return;
	c = jsonread_load(config, strlen(config), NULL);
	id = json_string_value(json_object_get(c, "stream_id"));
	if (id != NULL)
		(void) store_ssf_verify(id, NULL, false, 0, &unused);
	json_decref(c);
}

/* POST, GET, DELETE /ssf/streams, for an authenticated receiver */
static void
execute_streams(Conn *conn, SsfRequest *r, const char *receiver)
{
	char	   *base = public_base();
	char	   *config;

	if (base[0] == '\0')
	{
		http_respond_error(conn, 404, NULL,
						   "this database is no SSF transmitter: setstream.public_url is not set",
						   NO_STORE);
		return;
	}
	switch (conn->http.req.method)
	{
		case HTTP_POST:
			r->create.receiver = receiver;
			r->create.issuer = issuer();
			r->create.public_url = base;
			config = store_ssf_create_stream(&r->create);
			if (config == NULL)
				http_respond_error(conn, 409, NULL,
								   "this receiver has as many streams as it may (max_streams)",
								   NO_STORE);
			else
			{
				ssf_created(config);
				respond_json_text(conn, 201, config);
			}
			return;
		case HTTP_GET:
			if (r->stream_id == NULL)
			{
				respond_json_text(conn, 200, store_ssf_receiver_streams(receiver, base));
				return;
			}
			config = store_ssf_stream_config(r->stream_id, receiver, base);
			if (config == NULL)
				http_respond_error(conn, 404, NULL, "no such stream", NO_STORE);
			else
				respond_json_text(conn, 200, config);
			return;
		case HTTP_PATCH:
		case HTTP_PUT:
			execute_streams_update(conn, r, receiver, base);
			return;
		case HTTP_DELETE:
			if (store_ssf_delete_stream(r->stream_id, receiver))
				http_respond(conn, 204, NULL, NULL, 0, NO_STORE);
			else
				http_respond_error(conn, 404, NULL, "no such stream", NO_STORE);
			return;
		default:
			elog(ERROR, "unexpected method %d", conn->http.req.method);
	}
}

/*
 * PATCH, PUT and the subject endpoints use what 0.4.0 adds: on a database
 * whose extension is not updated yet they answer as 0.3.0 did (405 and
 * 404), without touching it
 */
static bool
ssf_0_4_ready(Conn *conn, SsfRoute route)
{
	int			m = conn->http.req.method;

	if (route == SSF_STREAMS && m != HTTP_PATCH && m != HTTP_PUT)
		return true;
	if (route != SSF_STREAMS && route != SSF_SUBJECT_ADD && route != SSF_SUBJECT_REMOVE)
		return true;
	if (store_schema_is_0_4())
		return true;
	if (route == SSF_STREAMS)
		http_respond_error(conn, 405, NULL,
						   "PATCH and PUT need setstream 0.4.0: ALTER EXTENSION setstream UPDATE",
						   NO_STORE "Allow: GET, POST, DELETE\r\n");
	else
		http_respond_error(conn, 404, NULL,
						   "subjects need setstream 0.4.0: ALTER EXTENSION setstream UPDATE",
						   NO_STORE);
	return false;
}

/* Step two, in the turn's transaction: the receiver, its stream, the work */
TurnResult
ssf_execute(Conn *conn, SsfRoute route, void *state)
{
	SsfRequest *r = state;
	bool		is_get = conn->http.req.method == HTTP_GET;
	const char *receiver = auth_receiver(conn, !is_get);
	char	   *status;
	json_t	   *out;

	if (receiver == NULL)
		return TURN_ANSWERED;
	ssf_note_activity(receiver);
	if (r->bad != NULL)
	{
		http_respond_error(conn, r->bad_status,
						   r->bad_status == 400 ? "invalid_request" : NULL,
						   r->bad, NO_STORE);
		return TURN_ANSWERED;
	}
	if (!ssf_0_4_ready(conn, route))
		return TURN_ANSWERED;
	if (route == SSF_STREAMS)
	{
		execute_streams(conn, r, receiver);
		return TURN_ANSWERED;
	}
	if (route == SSF_SUBJECT_ADD || route == SSF_SUBJECT_REMOVE)
	{
		execute_subject(conn, r, receiver, route == SSF_SUBJECT_ADD);
		return TURN_ANSWERED;
	}
	status = store_receiver_stream_status(r->stream_id, receiver);
	if (status == NULL)
	{
		http_respond_error(conn, 404, NULL, "no such stream", NO_STORE);
		return TURN_ANSWERED;
	}
	if (route == SSF_VERIFY)
	{
		execute_verify(conn, r, status);
		return TURN_ANSWERED;
	}
	if (!is_get)
	{
		store_set_stream_status(r->stream_id, r->status);
		status = r->status;
	}
	out = json_object();
	json_object_set_new(out, "stream_id", json_string(r->stream_id));
	json_object_set_new(out, "status", json_string(status));
	if (!is_get && r->reason != NULL)
		json_object_set_new(out, "reason", json_string(r->reason));
	http_respond_json(conn, 200, out, NO_STORE);
	json_decref(out);
	return TURN_ANSWERED;
}
