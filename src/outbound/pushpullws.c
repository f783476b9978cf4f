/*-------------------------------------------------------------------------
 *
 * pushpullws.c
 *	  pushpull as initiator over a WebSocket (set_delivery(stream,
 *	  'pushpull-ws', endpoint_url, authorization_header)): the sender
 *	  serving the stream (its name hashes to the sender's index) opens a
 *	  connection to the peer's pushpull endpoint itself, upgrades it, and
 *	  exchanges Communication Objects both ways at any time, as the
 *	  listener's side of the binding (wssession.c) does.
 *
 *	  The connection: TCP (non-blocking, on this file's epoll set, which
 *	  the sender's wait set watches), checked against
 *	  setstream.outbound_allowed_networks on the address actually connected
 *	  to (httpclient.c's rules: plain http:// only to listed networks),
 *	  then TLS for https:// (verified with setstream.outbound_ca_file or the
 *	  system bundle, host name checked, the client certificate of
 *	  setstream.outbound_client_cert_file / _key_file when both are set),
 *	  then GET with Upgrade: websocket, Sec-WebSocket-Key,
 *	  Sec-WebSocket-Version: 13, Sec-WebSocket-Protocol: pushpull and the
 *	  stored Authorization header byte for byte.  Only a 101 with the right
 *	  Sec-WebSocket-Accept that echoes "pushpull" opens the session;
 *	  anything else (another status, a redirect: none is followed, a 101
 *	  without the subprotocol) is a refused upgrade: the stream uses the
 *	  HTTP binding (pushpullclient.c) for PUSHPULLWS_FALLBACK_MS, then the
 *	  upgrade is tried again.  (Not libcurl's WebSocket API: it is
 *	  experimental, and Debian bookworm's libcurl 7.88.1 is built without
 *	  it (curl-config --protocols lists no WS or WSS; checked).  The frames
 *	  are ws.c's, with wslay, masked.)
 *
 *	  The session, as the listener's: a window of WS_MAX_IN_FLIGHT SETs
 *	  sent and not yet acknowledged, up to setstream.pushpull_batch per
 *	  message; due SETs are taken (store_take_due) when an emit wakes the
 *	  stream, when the window opens again and every
 *	  setstream.redelivery_interval.  Received messages are parsed and
 *	  their SETs verified outside any transaction (inbound.c), then one
 *	  transaction applies their acks and setErrs and stores their SETs;
 *	  the acks and setErrs of what was stored are sent only after it
 *	  committed.  No transaction is open during network I/O.  Idle peers
 *	  are pinged and dropped after setstream.idle_timeout (ws.c).
 *
 *	  A connection that fails or closes is opened again after a backoff
 *	  (outbound_backoff_ms, as pushes back off; the stream's delivery state
 *	  is backoff until then, active again once a session opens; a
 *	  suspension, by the HTTP binding, stops it); the SETs it had in flight
 *	  are due again at once (store_untake).  A peer resends what we did not
 *	  acknowledge: it is found stored and acknowledged, never stored twice.
 *
 *	  A host name in endpoint_url is resolved with getaddrinfo_a in the
 *	  background (looked at every RESOLVE_POLL_MS), so that the sender's
 *	  loop never blocks; an IP address is not resolved at all.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "outbound/inbound.h"
#include "outbound/pushpullclient.h"
#include "outbound/pushpullws.h"
#include "server/ws_int.h"
#include "setstream.h"
#include "shmem/wakeup.h"
#include "store/store.h"
#include "store/streamcache.h"
#include "store/xact.h"

#define REFRESH_INTERVAL_MS 5000	/* reread the streams at least this often */
#define PUSHPULLWS_FALLBACK_MS 30000	/* HTTP binding after a refusal */
#define HOUSEKEEPING_MS 1000	/* pings and idle checks */
#define RESOLVE_POLL_MS 20		/* how often a resolution is looked at */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

typedef enum WsPhase
{
	PH_IDLE,					/* not connected: next_try, or fallback */
	PH_RESOLVING,				/* the host name being resolved */
	PH_CONNECTING,				/* TCP connect under way */
	PH_UPGRADING,				/* TLS, the GET written, its answer read */
	PH_OPEN						/* the WebSocket session */
} WsPhase;

/* One pushpull-ws stream of this sender */
typedef struct WsPeer
{
	InboundPeer in;				/* first: the configuration (and verifier) */
	int			slot;			/* its wake-up slot */
	uint64		seen_gen;		/* the slot's generation at the last take */
	WsPhase		phase;
	Conn	   *conn;			/* in conn_cxt while connected */
	MemoryContext conn_cxt;
	char		key[32];		/* Sec-WebSocket-Key sent */
	bool		tls;
	char	   *host;			/* of endpoint_url, in ws_cxt, while
								 * connecting */
	int			port;
	char	   *target;
	struct gaicb *gai;			/* the resolution under way (malloc'd) */
	TimestampTz deadline;		/* connect and upgrade by then */
	TimestampTz next_try;		/* connect again then (PH_IDLE) */
	TimestampTz fallback_until; /* the HTTP binding until then */
	int			failures;		/* in a row, for the backoff */
	TimestampTz next_take;		/* take due SETs then at the latest */
	bool		backlog;		/* the last take left due SETs behind */
	List	   *untake;			/* char *: in flight when it closed */
	TimestampTz retry_at;		/* no turn before (after a failed one) */
} WsPeer;

static int	my_index;
static int	epfd = -1;
static MemoryContext ws_cxt;
static MemoryContext step_cxt;
static List *peers = NIL;		/* WsPeer *, in ws_cxt */
static int	nanswered_unused = 0;
static uint64 seen_config = 0;
static bool loaded = false;
static TimestampTz next_refresh_at = 0;

static void peer_disconnect(WsPeer *p, const char *why, bool backoff);

/* ---------------------------------------------------------------------
 * The delivery state (setstream.deliveries), as pushes record theirs
 * ---------------------------------------------------------------------
 */
typedef struct StateWork
{
	PushStream *conf;
	TimestampTz now;
	bool		skipped;
} StateWork;

static void
state_work(void *arg)
{
	StateWork  *w = arg;

	if (xact_begin_turn() != XACT_SAME)
	{
		w->skipped = true;
		return;
	}
	store_delivery_state(w->conf, 0, w->now);
}

/*
 * Record the stream's state when it changed: backoff (until the next
 * connection attempt) after a failure, active once a session opened
 */
static void
record_state(WsPeer *p, const char *state, TimestampTz until)
{
	PushStream	c = p->in.conf;
	StateWork	w;

	if (c.stream == NULL || c.state == NULL ||
		strcmp(c.state, "suspended") == 0 ||
		(strcmp(c.state, state) == 0 && c.backoff_until == until &&
		 (strcmp(state, "active") == 0 || c.failures == p->failures)))
		return;
	c.state = (char *) state;
	c.backoff_until = until;
	c.failures = strcmp(state, "active") == 0 ? 0 : p->failures;
	c.auth_failures = 0;
	c.suspended_reason = NULL;
	w.conf = &c;
	w.now = GetCurrentTimestamp();
	w.skipped = false;
	if (xact_run(state_work, &w) && !w.skipped)
		inbound_copy_conf(&p->in, &c);
}

/* ---------------------------------------------------------------------
 * Connections
 * ---------------------------------------------------------------------
 */
static void
watch(WsPeer *p)
{
	struct epoll_event ev;
	Conn	   *conn = p->conn;

	memset(&ev, 0, sizeof(ev));
	ev.data.ptr = p;
	ev.events = 0;
	if (p->phase == PH_CONNECTING)
		ev.events = EPOLLOUT;
	else
	{
		if (p->phase == PH_UPGRADING || ws_wants_read(conn))
			ev.events |= EPOLLIN;
		if (sock_has_output(&conn->sock) || conn->sock.tls_want_write ||
			(p->phase == PH_OPEN && ws_wants_write(conn)))
			ev.events |= EPOLLOUT;
	}
	(void) epoll_ctl(epfd, EPOLL_CTL_MOD, conn->sock.fd, &ev);
}

/* The fields of the URL, in the current memory context; false: not usable */
static bool
split_url(const char *url, char **scheme, char **host, int *port,
		  char **target)
{
	CURLU	   *u = curl_url();
	char	   *s = NULL,
			   *h = NULL,
			   *pt = NULL,
			   *path = NULL,
			   *query = NULL;
	bool		ok = false;

	if (u != NULL &&
		curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_SCHEME, &s, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_PORT, &pt, CURLU_DEFAULT_PORT) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK)
	{
		(void) curl_url_get(u, CURLUPART_QUERY, &query, 0);
		*scheme = pstrdup(s);
		/* an IPv6 literal comes in brackets */
		if (h[0] == '[')
			*host = pnstrdup(h + 1, strlen(h) - 2);
		else
			*host = pstrdup(h);
		*port = atoi(pt);
		*target = query ? psprintf("%s?%s", path, query) : pstrdup(path);
		ok = true;
	}
	curl_free(s);
	curl_free(h);
	curl_free(pt);
	curl_free(path);
	curl_free(query);
	if (u)
		curl_url_cleanup(u);
	return ok;
}

static SSL_CTX *
client_tls_context(void)
{
	SSL_CTX    *ctx = tls_client_context(setstream_outbound_ca_file, true);

	if (ctx == NULL)
		return NULL;
	if (setstream_outbound_client_cert_file != NULL &&
		setstream_outbound_client_cert_file[0] != '\0' &&
		setstream_outbound_client_key_file != NULL &&
		setstream_outbound_client_key_file[0] != '\0' &&
		(SSL_CTX_use_certificate_chain_file(ctx, setstream_outbound_client_cert_file) != 1 ||
		 SSL_CTX_use_PrivateKey_file(ctx, setstream_outbound_client_key_file,
									 SSL_FILETYPE_PEM) != 1))
	{
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* A resolution: the request and what it points to, in one malloc'd block */
typedef struct Resolution
{
	struct gaicb cb;			/* first */
	struct addrinfo hints;
	char		service[16];
	char		name[FLEXIBLE_ARRAY_MEMBER];
} Resolution;

/*
 * Forget the resolution under way.  One that cannot be cancelled any more
 * (getaddrinfo_a's thread is in it) is left to finish: its block is lost.
 */
static void
forget_resolution(WsPeer *p)
{
	Resolution *r = (Resolution *) p->gai;

	if (r == NULL)
		return;
	p->gai = NULL;
	if (gai_error(&r->cb) == EAI_INPROGRESS &&
		gai_cancel(&r->cb) == EAI_NOTCANCELED)
		return;
	if (r->cb.ar_result != NULL)
		freeaddrinfo(r->cb.ar_result);
	free(r);
}

static void
forget_target(WsPeer *p)
{
	if (p->host)
		pfree(p->host);
	if (p->target)
		pfree(p->target);
	p->host = p->target = NULL;
}

static bool connect_addresses(WsPeer *p, struct addrinfo *res, TimestampTz now,
							  char *why, size_t whylen);

/*
 * Start connecting: resolve the host (an address at once; a name with
 * getaddrinfo_a, in the background, not to block the sender's loop).
 * False (why set) when it cannot even start.
 */
static bool
peer_connect(WsPeer *p, TimestampTz now, char *why, size_t whylen)
{
	char	   *scheme = NULL,
			   *host = NULL,
			   *target = NULL;
	int			port = 0;
	struct addrinfo hints,
			   *res = NULL;
	char		portstr[16];
	Resolution *r;
	struct gaicb *list[1];
	int			rc;
	bool		ok;

	if (!split_url(p->in.conf.endpoint_url, &scheme, &host, &port, &target))
	{
		snprintf(why, whylen, "endpoint_url is not a usable URL");
		return false;
	}
	p->tls = pg_strcasecmp(scheme, "https") == 0;
	if (!p->tls && pg_strcasecmp(scheme, "http") != 0)
	{
		snprintf(why, whylen, "endpoint_url is neither http:// nor https://");
		return false;
	}
	forget_target(p);
	p->host = MemoryContextStrdup(ws_cxt, host);
	p->target = MemoryContextStrdup(ws_cxt, target);
	p->port = port;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_family = AF_UNSPEC;
	snprintf(portstr, sizeof(portstr), "%d", port);

	/* an IP address: no resolution */
	hints.ai_flags = AI_NUMERICHOST;
	if (getaddrinfo(host, portstr, &hints, &res) == 0)
	{
		ok = connect_addresses(p, res, now, why, whylen);
		freeaddrinfo(res);
		return ok;
	}

	r = malloc(offsetof(Resolution, name) + strlen(host) + 1);
	if (r == NULL)
	{
		snprintf(why, whylen, "out of memory");
		return false;
	}
	memset(r, 0, sizeof(Resolution));
	strcpy(r->name, host);
	strlcpy(r->service, portstr, sizeof(r->service));
	r->hints.ai_socktype = SOCK_STREAM;
	r->hints.ai_family = AF_UNSPEC;
	r->cb.ar_name = r->name;
	r->cb.ar_service = r->service;
	r->cb.ar_request = &r->hints;
	list[0] = &r->cb;
	rc = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL);
	if (rc != 0)
	{
		free(r);
		snprintf(why, whylen, "could not resolve \"%s\": %s", host,
				 gai_strerror(rc));
		return false;
	}
	p->gai = &r->cb;
	p->phase = PH_RESOLVING;
	p->deadline = now + (TimestampTz) setstream_outbound_timeout_ms * 1000;
	return true;
}

/* The resolution under way: connect once it is done */
static void
drive_resolution(WsPeer *p, TimestampTz now)
{
	int			rc = gai_error(p->gai);
	char		why[300];

	if (rc == EAI_INPROGRESS && now < p->deadline)
		return;
	p->phase = PH_IDLE;
	if (rc == 0)
	{
		bool		ok = connect_addresses(p, p->gai->ar_result, now, why,
										   sizeof(why));

		forget_resolution(p);
		if (ok)
			return;
	}
	else
	{
		snprintf(why, sizeof(why), "could not resolve \"%s\": %s", p->host,
				 rc == EAI_INPROGRESS ? "timed out" : gai_strerror(rc));
		forget_resolution(p);
	}
	p->failures++;
	p->next_try = now + (TimestampTz) outbound_backoff_ms(p->failures) * 1000;
	ereport(LOG,
			(errmsg("setstream sender: pushpull-ws of stream \"%s\": %s",
					p->in.conf.stream, why)));
	record_state(p, "backoff", p->next_try);
}

/* Connect to the first allowed address of res; false (why set) if none */
static bool
connect_addresses(WsPeer *p, struct addrinfo *res, TimestampTz now,
				  char *why, size_t whylen)
{
	const char *host = p->host;
	const char *target = p->target;
	int			port = p->port;
	struct addrinfo *ai;
	Conn	   *conn;
	unsigned char nonce[16];
	struct epoll_event ev;
	bool		started = false;

	p->conn_cxt = AllocSetContextCreate(ws_cxt, "setstream pushpull-ws connection",
										ALLOCSET_SMALL_SIZES);
	conn = MemoryContextAllocZero(p->conn_cxt, sizeof(Conn));
	conn->cxt = p->conn_cxt;
	conn->sock.fd = -1;
	p->conn = conn;
	snprintf(why, whylen, "no address of \"%s\"", host);
	for (ai = res; ai != NULL && !started; ai = ai->ai_next)
	{
		/* the address actually connected to is the one checked */
		if (!httpclient_address_allowed(ai->ai_addr, !p->tls, why, whylen))
			continue;
		if (!sock_connect(&conn->sock, ai->ai_addr, ai->ai_addrlen))
		{
			snprintf(why, whylen, "could not connect: %s", strerror(errno));
			continue;
		}
		started = true;
	}
	if (!started)
	{
		MemoryContextDelete(p->conn_cxt);
		p->conn = NULL;
		p->conn_cxt = NULL;
		return false;
	}
	sock_init_buffers(&conn->sock, conn->cxt);
	if (p->tls)
	{
		SSL_CTX    *ctx = client_tls_context();
		bool		ok = ctx != NULL && tls_start_client(&conn->sock, ctx, host);

		if (ctx)
			SSL_CTX_free(ctx);	/* the SSL holds its own reference */
		if (!ok)
		{
			snprintf(why, whylen, "could not set up TLS (setstream.outbound_ca_file, client certificate)");
			peer_disconnect(p, NULL, false);
			return false;
		}
	}

	/* the request, written once connected */
	if (RAND_bytes(nonce, sizeof(nonce)) != 1)
	{
		snprintf(why, whylen, "no random bytes for Sec-WebSocket-Key");
		peer_disconnect(p, NULL, false);
		return false;
	}
	EVP_EncodeBlock((unsigned char *) p->key, nonce, sizeof(nonce));
	{
		MemoryContext old = MemoryContextSwitchTo(conn->cxt);
		bool		v6 = strchr(host, ':') != NULL;
		bool		default_port = port == (p->tls ? 443 : 80);

		appendStringInfo(&conn->sock.out,
						 "GET %s HTTP/1.1\r\n"
						 "Host: %s%s%s",
						 target, v6 ? "[" : "", host, v6 ? "]" : "");
		if (!default_port)
			appendStringInfo(&conn->sock.out, ":%d", port);
		appendStringInfo(&conn->sock.out,
						 "\r\n"
						 "User-Agent: setstream\r\n"
						 "Upgrade: websocket\r\n"
						 "Connection: Upgrade\r\n"
						 "Sec-WebSocket-Key: %s\r\n"
						 "Sec-WebSocket-Version: 13\r\n"
						 "Sec-WebSocket-Protocol: pushpull\r\n",
						 p->key);
		if (p->in.conf.authorization != NULL)
			appendStringInfo(&conn->sock.out, "Authorization: %s\r\n",
							 p->in.conf.authorization);
		appendStringInfoString(&conn->sock.out, "\r\n");
		MemoryContextSwitchTo(old);
	}

	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLOUT;
	ev.data.ptr = p;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, conn->sock.fd, &ev) != 0)
	{
		snprintf(why, whylen, "epoll_ctl: %s", strerror(errno));
		peer_disconnect(p, NULL, false);
		return false;
	}
	p->phase = PH_CONNECTING;
	p->deadline = now + (TimestampTz) setstream_outbound_timeout_ms * 1000;
	return true;
}

/*
 * Close the connection (if any).  The SETs it had in flight are due again
 * (at the next turn); with backoff, the next attempt waits.
 */
static void
peer_disconnect(WsPeer *p, const char *why, bool backoff)
{
	TimestampTz now = GetCurrentTimestamp();

	forget_resolution(p);
	if (p->conn != NULL)
	{
		Conn	   *conn = p->conn;

		if (conn->ws != NULL)
		{
			ListCell   *lc;
			MemoryContext old = MemoryContextSwitchTo(ws_cxt);

			foreach(lc, conn->ws->in_flight)
				p->untake = lappend(p->untake,
									pstrdup(((InFlight *) lfirst(lc))->jti));
			MemoryContextSwitchTo(old);
			ws_free(conn);
		}
		if (conn->sock.fd >= 0)
		{
			(void) epoll_ctl(epfd, EPOLL_CTL_DEL, conn->sock.fd, NULL);
			sock_close(&conn->sock);
		}
		MemoryContextDelete(p->conn_cxt);
		p->conn = NULL;
		p->conn_cxt = NULL;
	}
	if (why != NULL)
		ereport(LOG,
				(errmsg("setstream sender: pushpull-ws of stream \"%s\": %s",
						p->in.conf.stream, why)));
	p->phase = PH_IDLE;
	if (backoff)
	{
		p->failures++;
		p->next_try = now + (TimestampTz) outbound_backoff_ms(p->failures) * 1000;
		record_state(p, "backoff", p->next_try);
	}
	else
		p->next_try = now;
}

/* Does the comma-separated value hold token (case-insensitive)? */
static bool
has_token(const char *value, const char *token)
{
	size_t		tlen = strlen(token);
	const char *s = value;

	while (s && *s)
	{
		size_t		len;

		while (*s == ' ' || *s == '\t' || *s == ',')
			s++;
		len = strcspn(s, ", \t");
		if (len == tlen && pg_strncasecmp(s, token, tlen) == 0)
			return true;
		s += len;
	}
	return false;
}

/*
 * Read the answer's head (head, NUL-terminated).  Returns whether it is a
 * valid 101 for the pushpull subprotocol; *status is the status.
 */
static bool
upgrade_accepted(WsPeer *p, char *head, int *status)
{
	char	   *line,
			   *save = NULL;
	char		keyed[80];
	unsigned char digest[SHA_DIGEST_LENGTH];
	char		expect[64];
	bool		upgrade = false,
				connection = false,
				accept = false,
				protocol = false;

	*status = 0;
	line = strtok_r(head, "\r\n", &save);
	if (line == NULL || sscanf(line, "HTTP/1.%*d %d", status) != 1)
		return false;
	snprintf(keyed, sizeof(keyed), "%s" WS_GUID, p->key);
	SHA1((unsigned char *) keyed, strlen(keyed), digest);
	EVP_EncodeBlock((unsigned char *) expect, digest, sizeof(digest));
	while ((line = strtok_r(NULL, "\r\n", &save)) != NULL)
	{
		char	   *colon = strchr(line, ':');
		char	   *value;
		char	   *end;

		if (colon == NULL)
			continue;
		*colon = '\0';
		value = colon + 1;
		while (*value == ' ' || *value == '\t')
			value++;
		end = value + strlen(value);
		while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (pg_strcasecmp(line, "Upgrade") == 0)
			upgrade = has_token(value, "websocket");
		else if (pg_strcasecmp(line, "Connection") == 0)
			connection = has_token(value, "upgrade");
		else if (pg_strcasecmp(line, "Sec-WebSocket-Accept") == 0)
			accept = strcmp(value, expect) == 0;
		else if (pg_strcasecmp(line, "Sec-WebSocket-Protocol") == 0)
			protocol = strcmp(value, "pushpull") == 0;
	}
	return *status == 101 && upgrade && connection && accept && protocol;
}

/* The peer refused the upgrade: the HTTP binding for a while */
static void
refused(WsPeer *p, int status)
{
	TimestampTz now = GetCurrentTimestamp();
	char		why[200];

	snprintf(why, sizeof(why),
			 "the peer refused the WebSocket upgrade (status %d%s); using the HTTP binding for %d s",
			 status, status == 101 ? ", without the pushpull subprotocol" : "",
			 PUSHPULLWS_FALLBACK_MS / 1000);
	peer_disconnect(p, why, false);
	p->fallback_until = now + (TimestampTz) PUSHPULLWS_FALLBACK_MS * 1000;
	p->next_try = p->fallback_until;
	pushpullclient_refresh();
}

/* Why the connection failed before the upgrade answer (no secrets) */
static const char *
upgrade_failure(Sock *sock)
{
	long		v;

	if (sock->ssl != NULL && (v = SSL_get_verify_result(sock->ssl)) != X509_V_OK)
		return psprintf("the peer's TLS certificate failed verification: %s",
						X509_verify_cert_error_string(v));
	return "the connection failed during the upgrade (TLS handshake or reset)";
}

/* Connected, or upgrading: move the handshake on */
static void
drive_upgrade(WsPeer *p, uint32 events)
{
	Conn	   *conn = p->conn;
	Sock	   *sock = &conn->sock;
	char	   *end;
	const char *gone = NULL;

	if (p->phase == PH_CONNECTING)
	{
		int			err = 0;
		socklen_t	len = sizeof(err);

		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		if (getsockopt(sock->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			err = errno;
		if (err != 0)
		{
			char		why[200];

			snprintf(why, sizeof(why), "could not connect: %s", strerror(err));
			peer_disconnect(p, why, true);
			return;
		}
		p->phase = PH_UPGRADING;
	}

	/* write the request (TLS: the handshake goes on in these writes) */
	if (sock_has_output(sock) && !sock_flush(sock) && sock->failed)
	{
		peer_disconnect(p, upgrade_failure(sock), true);
		return;
	}
	while (sock->inlen < sock->incap - 1)
	{
		ssize_t		n = sock_recv(sock, sock->in + sock->inlen,
								  sock->incap - 1 - sock->inlen);

		if (n > 0)
		{
			sock->inlen += n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			break;
		/* closed or failed: what came before still counts (a refusal) */
		gone = n == 0 ? "the peer closed the connection during the upgrade" :
			upgrade_failure(sock);
		break;
	}
	sock->in[sock->inlen] = '\0';
	end = strstr(sock->in, "\r\n\r\n");
	if (end == NULL)
	{
		if (gone == NULL && sock->inlen >= sock->incap - 1)
			gone = "the upgrade answer's head is too long";
		if (gone != NULL)
			peer_disconnect(p, gone, true);
		return;					/* more to come */
	}
	{
		size_t		headlen = end + 4 - sock->in;
		char	   *head = pnstrdup(sock->in, headlen);
		int			status;

		memmove(sock->in, sock->in + headlen, sock->inlen - headlen);
		sock->inlen -= headlen;
		if (!upgrade_accepted(p, head, &status))
		{
			pfree(head);
			refused(p, status);
			return;
		}
		pfree(head);
	}
	conn->ws = ws_new(conn, true);
	conn->ws->stream = MemoryContextStrdup(conn->cxt, p->in.conf.stream);
	conn->ws->slot = p->slot;
	if (!ws_start_client(conn))
	{
		peer_disconnect(p, "the WebSocket session failed at its start", true);
		return;
	}
	p->phase = PH_OPEN;
	p->fallback_until = 0;
	p->next_take = 0;
	p->backlog = false;
	p->seen_gen = wakeup_generation(p->slot) - 1;
	ereport(LOG,
			(errmsg("setstream sender: pushpull-ws of stream \"%s\" connected",
					p->in.conf.stream)));
	record_state(p, "active", 0);
	pushpullclient_refresh();
}

/* ---------------------------------------------------------------------
 * Turns of an open session
 * ---------------------------------------------------------------------
 */
typedef struct WsMsg
{
	CommObj		obj;
	InboundBatch b;
} WsMsg;

typedef struct SessionWork
{
	WsPeer	   *p;
	List	   *msgs;			/* WsMsg * */
	int			want;			/* SETs to take (0: none) */
	List	   *taken;			/* OutSet * */
	bool		more;
	bool		skipped;
} SessionWork;

static void
session_work(void *arg)
{
	SessionWork *w = arg;
	const char *name = w->p->in.conf.stream;
	ListCell   *lc;

	if (xact_begin_turn() != XACT_SAME)
	{
		w->skipped = true;
		return;
	}
	MemoryContextSwitchTo(step_cxt);
	foreach(lc, w->msgs)
	{
		WsMsg	   *m = lfirst(lc);

		store_apply_acks(name, m->obj.ack);
		store_apply_errs(name, m->obj.errs);
		inbound_store(&m->b, &m->obj);
	}
	if (w->p->untake != NIL)
		store_untake(name, w->p->untake);
	if (w->want > 0)
		w->taken = store_take_due(name, w->want,
								  outbound_expire_before(GetCurrentTimestamp()),
								  &w->more);
}

/*
 * How many of the in-flight SETs do the messages received acknowledge or
 * reject?  Their acks are applied in the same transaction as the next
 * take, so the window that take may fill is that much larger.
 */
static int
settling(Conn *conn, List *msgs)
{
	ListCell   *lc;
	ListCell   *f;
	int			n = 0;

	if (conn->ws->in_flight == NIL)
		return 0;
	foreach(f, conn->ws->in_flight)
	{
		const char *jti = ((InFlight *) lfirst(f))->jti;
		bool		found = false;

		foreach(lc, msgs)
		{
			WsMsg	   *m = lfirst(lc);
			ListCell   *c;

			foreach(c, m->obj.ack)
			{
				if (strcmp(jti, lfirst(c)) == 0)
				{
					found = true;
					break;
				}
			}
			if (!found)
			{
				foreach(c, m->obj.errs)
				{
					if (strcmp(jti, ((SetErrEntry *) lfirst(c))->jti) == 0)
					{
						found = true;
						break;
					}
				}
			}
			if (found)
				break;
		}
		if (found)
			n++;
	}
	return n;
}

/*
 * Apply what the peer sent and take due SETs, in one transaction; send
 * the acks, setErrs and SETs after its commit.  The window is counted
 * after the acks received: a full window that the peer's acks open again
 * is filled in the same turn when SETs were left due (p->backlog), not a
 * redelivery interval later.
 */
static void
session_turn(WsPeer *p, TimestampTz now)
{
	Conn	   *conn = p->conn;
	SessionWork w;
	ListCell   *lc;
	json_t	   *ack = json_array();
	json_t	   *errs = json_object();
	json_t	   *sets = json_object();
	json_t	   *msg = json_object();
	int			window;
	uint64		gen = wakeup_generation(p->slot);

	memset(&w, 0, sizeof(w));
	w.p = p;

	/* parse and verify outside any transaction */
	foreach(lc, conn->ws->inbox)
	{
		const char *text = lfirst(lc);
		WsMsg	   *m = palloc0(sizeof(WsMsg));
		char		err[256];

		if (!commobj_parse(text, strlen(text), &m->obj, err, sizeof(err)))
		{
			conn->ws->close_code = 1007;
			conn->ws->close_reason = MemoryContextStrdup(conn->cxt, err);
			break;
		}
		if (!inbound_receive(&p->in, true, &m->obj, &m->b))
			break;				/* the stream is gone */
		w.msgs = lappend(w.msgs, m);
	}
	ws_inbox_clear(conn);

	ws_expire_in_flight(conn, now);
	window = WS_MAX_IN_FLIGHT - list_length(conn->ws->in_flight) +
		settling(conn, w.msgs);
	if (window > 0 && ws_may_take(conn) &&
		(gen != p->seen_gen || now >= p->next_take || p->untake != NIL ||
		 p->backlog))
		w.want = Min(window, setstream_pushpull_batch);

	if (!xact_run(session_work, &w) || w.skipped)
	{
		/*
		 * Nothing stored, nothing taken: ours are due again; the peer's are
		 * not acknowledged, and it sends them again on a new session (close
		 * with 1011, as the listener's side does when its turn fails)
		 */
		foreach(lc, w.msgs)
			inbound_discard(&((WsMsg *) lfirst(lc))->b);
		p->next_take = now + 1000 * 1000;
		p->retry_at = now + 1000 * 1000;
		if (w.msgs != NIL)
		{
			ws_abandon_turn(conn);
			if (!ws_send_outbox(conn))
				peer_disconnect(p, "the WebSocket session ended", true);
		}
		json_decref(ack);
		json_decref(errs);
		json_decref(sets);
		json_decref(msg);
		return;
	}
	list_free_deep(p->untake);
	p->untake = NIL;
	if (w.want > 0)
		p->seen_gen = gen;

	/* committed: settle, and answer with the acks and setErrs */
	foreach(lc, w.msgs)
	{
		WsMsg	   *m = lfirst(lc);
		ListCell   *c;
		size_t		i;
		json_t	   *v;
		const char *k;

		foreach(c, m->obj.ack)
			ws_settle(conn, lfirst(c));
		foreach(c, m->obj.errs)
			ws_settle(conn, ((SetErrEntry *) lfirst(c))->jti);
		json_array_foreach(m->b.ack, i, v)
			json_array_append(ack, v);
		json_object_foreach(m->b.errs, k, v)
			json_object_set(errs, k, v);
		inbound_discard(&m->b);
	}
	foreach(lc, w.taken)
	{
		OutSet	   *o = lfirst(lc);
		MemoryContext old = MemoryContextSwitchTo(conn->cxt);
		InFlight   *inf = palloc(sizeof(InFlight));

		inf->jti = pstrdup(o->jti);
		inf->sent_at = now;
		conn->ws->in_flight = lappend(conn->ws->in_flight, inf);
		MemoryContextSwitchTo(old);
		json_object_set_new(sets, o->jti, json_string(o->token));
	}
	if (w.want > 0)
	{
		p->backlog = w.more;
		p->next_take = w.more && list_length(conn->ws->in_flight) < WS_MAX_IN_FLIGHT ?
			now : now + (TimestampTz) Max(setstream_redelivery_interval_ms, 1000) * 1000;
	}

	if (json_array_size(ack) > 0)
		json_object_set(msg, "ack", ack);
	if (json_object_size(errs) > 0)
		json_object_set(msg, "setErrs", errs);
	if (json_object_size(sets) > 0)
		json_object_set(msg, "sets", sets);
	if (json_object_size(msg) > 0)
	{
		StringInfoData text;

		initStringInfo(&text);
		json_write(&text, msg);
		conn->ws->outbox = lappend(conn->ws->outbox,
								   MemoryContextStrdup(conn->cxt, text.data));
		pfree(text.data);
	}
	json_decref(ack);
	json_decref(errs);
	json_decref(sets);
	json_decref(msg);
	if (!ws_send_outbox(conn))
		peer_disconnect(p, "the WebSocket session ended", true);
}

static bool
session_due(WsPeer *p, TimestampTz now)
{
	Conn	   *conn = p->conn;

	if (now < p->retry_at)
		return false;
	if (conn->ws->inbox != NIL || p->untake != NIL)
		return true;
	if (!ws_may_take(conn) ||
		list_length(conn->ws->in_flight) >= WS_MAX_IN_FLIGHT)
		return false;
	return p->backlog || wakeup_generation(p->slot) != p->seen_gen ||
		now >= p->next_take;
}

/* ---------------------------------------------------------------------
 * The streams
 * ---------------------------------------------------------------------
 */
static WsPeer *
find_peer(const char *stream, const char *url)
{
	ListCell   *lc;

	foreach(lc, peers)
	{
		WsPeer	   *p = lfirst(lc);

		if (strcmp(p->in.conf.stream, stream) == 0 &&
			strcmp(p->in.conf.endpoint_url, url) == 0)
			return p;
	}
	return NULL;
}

typedef struct RefreshWork
{
	bool		installed;
	List	   *rows;
} RefreshWork;

static void
refresh_work(void *arg)
{
	RefreshWork *w = arg;

	w->installed = xact_begin_turn() != XACT_NO_EXTENSION;
	MemoryContextSwitchTo(step_cxt);
	if (w->installed)
		w->rows = store_pushpull_ws_streams();
}

static void
free_peer(WsPeer *p)
{
	if (p->conn != NULL && p->conn->ws != NULL && p->phase == PH_OPEN)
	{
		/* a normal close, said once; the socket goes at once */
		p->conn->ws->close_code = 1000;
		p->conn->ws->close_reason = "the delivery changed";
		(void) ws_send_outbox(p->conn);
	}
	peer_disconnect(p, NULL, false);
	inbound_free(&p->in);
	forget_target(p);
	list_free_deep(p->untake);
	pfree(p);
}

static void
refresh(TimestampTz now)
{
	RefreshWork w;
	ListCell   *lc;
	List	   *keep = NIL;

	memset(&w, 0, sizeof(w));
	seen_config = wakeup_config_generation();
	next_refresh_at = now + (TimestampTz) REFRESH_INTERVAL_MS * 1000;
	if (!xact_run(refresh_work, &w))
		return;
	loaded = true;

	foreach(lc, peers)
		((WsPeer *) lfirst(lc))->in.removed = true;
	foreach(lc, w.rows)
	{
		PushStream *row = lfirst(lc);
		WsPeer	   *p;

		if (!inbound_mine(row->stream, my_index))
			continue;
		p = find_peer(row->stream, row->endpoint_url);
		if (p == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(ws_cxt);

			p = palloc0(sizeof(WsPeer));
			inbound_init(&p->in, ws_cxt, &nanswered_unused);
			p->slot = wakeup_slot(row->stream);
			peers = lappend(peers, p);
			MemoryContextSwitchTo(old);
		}
		p->in.removed = false;
		inbound_copy_conf(&p->in, row);
		if (row->authorization)
			explicit_bzero(row->authorization, strlen(row->authorization));
	}
	foreach(lc, peers)
	{
		WsPeer	   *p = lfirst(lc);

		if (p->in.removed ||
			(strcmp(p->in.conf.state, "suspended") == 0 && p->phase != PH_IDLE))
		{
			if (p->in.removed)
			{
				free_peer(p);
				continue;
			}
			peer_disconnect(p, "the delivery is suspended", false);
		}
		keep = lappend(keep, p);
	}
	list_free(peers);
	{
		MemoryContext old = MemoryContextSwitchTo(ws_cxt);

		peers = list_copy(keep);
		MemoryContextSwitchTo(old);
	}
	list_free(keep);
}

/* May the peer connect now? */
static bool
may_connect(WsPeer *p, TimestampTz now)
{
	if (p->phase != PH_IDLE || p->in.removed)
		return false;
	if (strcmp(p->in.conf.state, "suspended") == 0)
		return false;
	if (strcmp(p->in.conf.state, "backoff") == 0 && p->in.conf.backoff_until > now)
		return false;
	return now >= p->next_try && now >= p->fallback_until;
}

/* ---------------------------------------------------------------------
 * API
 * ---------------------------------------------------------------------
 */
void
pushpullws_init(int sender_index)
{
	my_index = sender_index;
	ws_cxt = AllocSetContextCreate(TopMemoryContext, "setstream pushpull-ws",
								   ALLOCSET_DEFAULT_SIZES);
	step_cxt = AllocSetContextCreate(TopMemoryContext, "setstream pushpull-ws step",
									 ALLOCSET_DEFAULT_SIZES);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("could not create an epoll set: %m")));
}

int
pushpullws_epoll_fd(void)
{
	return epfd;
}

bool
pushpullws_http_fallback(const char *stream, const char *url)
{
	WsPeer	   *p = find_peer(stream, url);

	return p != NULL && p->phase == PH_IDLE &&
		p->fallback_until > GetCurrentTimestamp();
}

bool
pushpullws_any_fallback(void)
{
	TimestampTz now = GetCurrentTimestamp();
	ListCell   *lc;

	foreach(lc, peers)
	{
		WsPeer	   *p = lfirst(lc);

		if (p->phase == PH_IDLE && p->fallback_until > now)
			return true;
	}
	return false;
}

void
pushpullws_step(void)
{
	MemoryContext old = MemoryContextSwitchTo(step_cxt);
	struct epoll_event evs[16];
	int			n;
	TimestampTz now;
	ListCell   *lc;

	(void) streamcache_check_generation();

	/* bytes first */
	n = epoll_wait(epfd, evs, lengthof(evs), 0);
	for (int i = 0; i < n; i++)
	{
		WsPeer	   *p = evs[i].data.ptr;

		if (p->conn == NULL)
			continue;
		if (p->phase == PH_OPEN)
		{
			if (!ws_on_event(p->conn, evs[i].events) &&
				p->conn->ws->inbox == NIL)
				peer_disconnect(p, "the peer closed the WebSocket session", true);
		}
		else
			drive_upgrade(p, evs[i].events);
	}

	now = GetCurrentTimestamp();
	if (!loaded || wakeup_config_generation() != seen_config ||
		now >= next_refresh_at)
		refresh(now);

	foreach(lc, peers)
	{
		WsPeer	   *p = lfirst(lc);
		char		why[300];

		now = GetCurrentTimestamp();
		if (p->phase == PH_IDLE)
		{
			if (p->untake != NIL && p->conn == NULL && now >= p->retry_at)
			{
				/* make what was in flight due again for the HTTP binding too */
				SessionWork w;

				memset(&w, 0, sizeof(w));
				w.p = p;
				if (xact_run(session_work, &w) && !w.skipped)
				{
					list_free_deep(p->untake);
					p->untake = NIL;
				}
				else
					p->retry_at = now + 1000 * 1000;
			}
			if (may_connect(p, now) && !peer_connect(p, now, why, sizeof(why)))
			{
				p->failures++;
				p->next_try = now + (TimestampTz) outbound_backoff_ms(p->failures) * 1000;
				ereport(LOG,
						(errmsg("setstream sender: pushpull-ws of stream \"%s\": %s",
								p->in.conf.stream, why)));
				record_state(p, "backoff", p->next_try);
			}
			continue;
		}
		if (p->phase == PH_RESOLVING)
		{
			drive_resolution(p, now);
			continue;
		}
		if (p->phase != PH_OPEN)
		{
			if (now >= p->deadline)
				peer_disconnect(p, "the connection or the upgrade timed out", true);
			else
				watch(p);
			continue;
		}
		/* open: a session that worked resets the backoff */
		if (p->failures > 0 && p->conn->ws->in_flight == NIL)
			p->failures = 0;
		if (session_due(p, now))
			session_turn(p, now);
		if (p->phase == PH_OPEN && !ws_housekeeping(p->conn, now))
			peer_disconnect(p, "the peer stayed silent past setstream.idle_timeout", true);
		if (p->phase == PH_OPEN)
			watch(p);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(step_cxt);
}

long
pushpullws_timeout_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = loaded ? next_refresh_at : now;
	ListCell   *lc;

	foreach(lc, peers)
	{
		WsPeer	   *p = lfirst(lc);
		TimestampTz at;

		switch (p->phase)
		{
			case PH_IDLE:
				if (strcmp(p->in.conf.state, "suspended") == 0)
					continue;
				at = Max(p->next_try, p->fallback_until);
				if (strcmp(p->in.conf.state, "backoff") == 0)
					at = Max(at, p->in.conf.backoff_until);
				if (p->untake != NIL)
					at = Max(now, p->retry_at);
				break;
			case PH_RESOLVING:
				/* getaddrinfo_a tells nobody: look again soon */
				at = Min(p->deadline, now + RESOLVE_POLL_MS * 1000);
				break;
			case PH_CONNECTING:
			case PH_UPGRADING:
				at = p->deadline;
				break;
			default:
				at = now + HOUSEKEEPING_MS * 1000;
				if (session_due(p, now))
					at = now;
				else if (p->retry_at > now && p->retry_at < at)
					at = p->retry_at;
				else if (ws_may_take(p->conn) && p->next_take < at)
					at = p->next_take;
				break;
		}
		if (at < next)
			next = at;
	}
	if (next <= now)
		return 0;
	return (long) ((next - now) / 1000);
}
