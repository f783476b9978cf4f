/*-------------------------------------------------------------------------
 *
 * httpclient.c
 *	  Outbound HTTP for the sender: libcurl's multi interface driven from
 *	  the worker's own WaitEventSet loop (the pattern of pg_net's worker).
 *
 *	  libcurl tells us, through its socket callback, which sockets it
 *	  waits on; they go into a private epoll set whose descriptor is the
 *	  one socket the worker's WaitEventSet watches (a WaitEventSet cannot
 *	  remove sockets).  Its timer callback says when it must be called
 *	  without socket activity.  Connections stay open between requests
 *	  (keep-alive, the multi handle's connection cache); over https HTTP/2
 *	  is used when the server offers it, and requests to one host then
 *	  share a connection (PIPEWAIT).
 *
 *	  Safety of every request: TLS peer and host name verified against
 *	  setstream.outbound_ca_file (default: the system bundle); no redirect
 *	  followed; no proxy; connect and total timeouts; the response body
 *	  is cut at HTTP_MAX_RESPONSE (the request then fails); and the
 *	  address actually connected to (CURLOPT_OPENSOCKETFUNCTION, after
 *	  name resolution, so DNS rebinding does not get around it) must not
 *	  be loopback, private, link-local, unique-local or otherwise special
 *	  unless setstream.outbound_allowed_networks lists it.  Plain http is
 *	  allowed only to addresses listed there.  With
 *	  setstream.outbound_client_cert_file and _key_file set, every TLS
 *	  request presents that client certificate (mutual TLS).
 *
 *	  HTTP/2 answers that libcurl 7.88 and 8 do not finish by themselves
 *	  (RFC 9113 8.1: a server may answer before it has read the whole
 *	  request): an answer is "whole" once its final status, all its
 *	  headers and exactly the body its Content-Length announced are in.
 *	  A whole answer counts when libcurl then reports the stream reset
 *	  (RST_STREAM NO_ERROR, what nginx's "return 202" sends), and when the
 *	  transfer is still open WHOLE_ANSWER_GRACE_MS after it (the server
 *	  stopped reading the request and never reset the stream: libcurl
 *	  would wait for flow-control credit until the timeout); it is then
 *	  taken out of the multi handle (libcurl resets the stream, CANCEL).
 *	  A stream the server resets before any answer, on a connection that
 *	  goes on, is made once more at once (the same handle, the same
 *	  bytes; a SET pushed twice is deduplicated by jti): one refused
 *	  stream is no reason to back a whole delivery off.  A second reset
 *	  is a failed request as any.
 *
 *	  The callbacks run inside libcurl: they never ereport, and allocate
 *	  with malloc only what libcurl frees or we free at completion.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/wait_event.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "outbound/httpclient.h"
#include "outbound/outbound.h"

struct HttpRequest
{
	CURL	   *easy;
	struct curl_slist *headers;
	bool		plain_http;
	bool		refused;
	bool		too_large;
	long		max_age_s;		/* Cache-Control max-age; -1: none */
	size_t		max_response;	/* larger response bodies fail the request */
	char		refused_why[160];
	char		errbuf[CURL_ERROR_SIZE];
	StringInfoData response;
	HttpDoneCallback done;
	void	   *arg;
	/* the answer as its headers come (read_header), for answer_is_whole */
	bool		http2;			/* its status line is HTTP/2's */
	int			status;			/* of the last status line; 0: none yet */
	bool		headers_done;	/* the blank line after a final status */
	long		content_length; /* -1: not announced */
	TimestampTz whole_at;		/* when the answer was whole; 0: not yet */
	dlist_node	whole_node;		/* in whole_answers while whole_at != 0 */
	bool		retried;		/* made again after a reset stream */
};

/* An unfinished transfer whose answer is whole is taken after this */
#define WHOLE_ANSWER_GRACE_MS 500

/* A parsed entry of setstream.outbound_allowed_networks */
typedef struct Cidr
{
	int			family;
	uint8		addr[16];
	int			bits;
} Cidr;

#define MAX_CIDRS 64

static CURLM *multi = NULL;
static struct HttpRequest *last_started = NULL;

/* Requests whose answer is whole and whose transfer is not done, oldest first */
static dlist_head whole_answers = DLIST_STATIC_INIT(whole_answers);

static bool start_method(const char *custom_method, const char *url,
						 const char *body, size_t len,
						 const char *content_type, const char *accept,
						 const char *content_language,
						 const char *authorization, long timeout_ms,
						 size_t max_response, HttpDoneCallback done,
						 void *arg);
static int	epfd = -1;
static TimestampTz timer_at = -1;	/* -1: no timer */
static int	in_flight = 0;
static MemoryContext http_cxt = NULL;

static Cidr allowed[MAX_CIDRS];
static int	nallowed = 0;
static char *allowed_source = NULL;

/* ---------------------------------------------------------------------
 * Address checks
 * ---------------------------------------------------------------------
 */
static bool
prefix_match(const uint8 *a, const uint8 *net, int bits)
{
	int			whole = bits / 8;
	int			rest = bits % 8;

	if (memcmp(a, net, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[whole] ^ net[whole]) & (0xff << (8 - rest))) == 0;
}

static bool
parse_cidr(const char *text, Cidr *c)
{
	char		buf[80];
	char	   *slash;
	int			maxbits;

	strlcpy(buf, text, sizeof(buf));
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	memset(c, 0, sizeof(*c));
	if (inet_pton(AF_INET, buf, c->addr) == 1)
	{
		c->family = AF_INET;
		maxbits = 32;
	}
	else if (inet_pton(AF_INET6, buf, c->addr) == 1)
	{
		c->family = AF_INET6;
		maxbits = 128;
	}
	else
		return false;
	c->bits = maxbits;
	if (slash)
	{
		char	   *end;
		long		b = strtol(slash + 1, &end, 10);

		if (*end != '\0' || end == slash + 1 || b < 0 || b > maxbits)
			return false;
		c->bits = (int) b;
	}
	return true;
}

/* (Re)read setstream.outbound_allowed_networks when it changed */
void
httpclient_configure(void)
{
	const char *src = setstream_outbound_allowed_networks ?
		setstream_outbound_allowed_networks : "";
	char	   *copy;
	char	   *tok;
	char	   *save = NULL;

	if (allowed_source != NULL && strcmp(allowed_source, src) == 0)
		return;
	if (allowed_source)
		pfree(allowed_source);
	allowed_source = MemoryContextStrdup(TopMemoryContext, src);
	nallowed = 0;
	copy = pstrdup(src);
	for (tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save))
	{
		if (nallowed >= MAX_CIDRS)
		{
			ereport(WARNING,
					(errmsg("setstream.outbound_allowed_networks lists more than %d networks; the rest are ignored",
							MAX_CIDRS)));
			break;
		}
		if (!parse_cidr(tok, &allowed[nallowed]))
		{
			ereport(WARNING,
					(errmsg("setstream.outbound_allowed_networks: \"%s\" is not a CIDR network; ignored",
							tok)));
			continue;
		}
		nallowed++;
	}
	pfree(copy);
}

static bool
in_allowed(int family, const uint8 *a)
{
	for (int i = 0; i < nallowed; i++)
		if (allowed[i].family == family && prefix_match(a, allowed[i].addr, allowed[i].bits))
			return true;
	return false;
}

/* Loopback, private, link-local, unique-local, CGNAT, multicast, ... */
static bool
v4_special(const uint8 *a)
{
	return a[0] == 0 || a[0] == 10 || a[0] == 127 ||
		(a[0] == 100 && (a[1] & 0xc0) == 64) ||
		(a[0] == 169 && a[1] == 254) ||
		(a[0] == 172 && (a[1] & 0xf0) == 16) ||
		(a[0] == 192 && a[1] == 168) ||
		(a[0] == 192 && a[1] == 0 && a[2] == 0) ||
		(a[0] == 198 && (a[1] & 0xfe) == 18) ||
		a[0] >= 224;
}

static bool
v6_special(const uint8 *a)
{
	static const uint8 zero[16] = {0};

	if (memcmp(a, zero, 15) == 0 && (a[15] == 0 || a[15] == 1))
		return true;			/* :: and ::1 */
	return (a[0] & 0xfe) == 0xfc || /* fc00::/7 unique-local */
		(a[0] == 0xfe && (a[1] & 0xc0) == 0x80) ||	/* fe80::/10 */
		a[0] == 0xff ||			/* multicast */
		(a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8) ||
		(a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b);
}

bool
httpclient_address_allowed(const struct sockaddr *sa, bool plain_http,
						   char *why, size_t whylen)
{
	uint8		a[16];
	int			family = sa->sa_family;
	char		text[INET6_ADDRSTRLEN] = "?";
	bool		special;

	if (family == AF_INET)
	{
		memcpy(a, &((const struct sockaddr_in *) sa)->sin_addr, 4);
		special = v4_special(a);
	}
	else if (family == AF_INET6)
	{
		static const uint8 mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

		memcpy(a, &((const struct sockaddr_in6 *) sa)->sin6_addr, 16);
		if (memcmp(a, mapped, 12) == 0)
		{
			/* an IPv4-mapped address is judged as the IPv4 address */
			memmove(a, a + 12, 4);
			family = AF_INET;
			special = v4_special(a);
		}
		else
			special = v6_special(a);
	}
	else
	{
		snprintf(why, whylen, "address family %d is not allowed", family);
		return false;
	}
	if (in_allowed(family, a))
		return true;
	inet_ntop(family, a, text, sizeof(text));
	if (special)
	{
		snprintf(why, whylen,
				 "destination %s is not allowed: loopback, private, link-local or reserved address not in setstream.outbound_allowed_networks",
				 text);
		return false;
	}
	if (plain_http)
	{
		snprintf(why, whylen,
				 "plain http to %s is not allowed: only addresses in setstream.outbound_allowed_networks may be reached without TLS",
				 text);
		return false;
	}
	return true;
}

/* ---------------------------------------------------------------------
 * libcurl callbacks (no ereport in here)
 * ---------------------------------------------------------------------
 */
static curl_socket_t
open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	HttpRequest *req = clientp;

	if (purpose != CURLSOCKTYPE_IPCXN ||
		!httpclient_address_allowed(&address->addr, req->plain_http,
									req->refused_why, sizeof(req->refused_why)))
	{
		req->refused = true;
		return CURL_SOCKET_BAD;
	}
	return socket(address->family, address->socktype | SOCK_CLOEXEC,
				  address->protocol);
}

/*
 * An HTTP/2 answer is whole once a final status, the end of its headers
 * and exactly the Content-Length it announced are in (an answer cut short
 * by a reset has less, and one without Content-Length is never whole
 * before libcurl says so).
 */
static bool
answer_is_whole(const HttpRequest *req)
{
	return req->http2 && req->headers_done && !req->too_large &&
		!req->refused && req->content_length >= 0 &&
		(size_t) req->content_length == (size_t) req->response.len;
}

static void
note_if_whole(HttpRequest *req)
{
	if (req->whole_at != 0 || !answer_is_whole(req))
		return;
	req->whole_at = GetCurrentTimestamp();
	dlist_push_tail(&whole_answers, &req->whole_node);
}

static void
forget_whole(HttpRequest *req)
{
	if (req->whole_at != 0)
		dlist_delete(&req->whole_node);
	req->whole_at = 0;
}

/* The answer's status line, Content-Length and end of headers */
static void
track_answer(HttpRequest *req, const char *ptr, size_t n)
{
	if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0)
	{
		const char *sp = memchr(ptr, ' ', n);

		req->http2 = n >= 7 && strncmp(ptr, "HTTP/2 ", 7) == 0;
		req->status = sp ? atoi(sp + 1) : 0;
		req->headers_done = false;
		req->content_length = -1;
	}
	else if (n >= 15 && pg_strncasecmp(ptr, "content-length:", 15) == 0)
	{
		char		num[32];
		size_t		len = Min(n - 15, sizeof(num) - 1);
		char	   *end;
		long		v;

		memcpy(num, ptr + 15, len);
		num[len] = '\0';
		v = strtol(num, &end, 10);
		req->content_length = end != num && v >= 0 ? v : -1;
	}
	else if ((n == 2 && ptr[0] == '\r') || (n == 1 && ptr[0] == '\n'))
	{
		if (req->status >= 200)
		{
			req->headers_done = true;
			note_if_whole(req);
		}
	}
}

static size_t
write_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	HttpRequest *req = userdata;
	size_t		n = size * nmemb;

	if (req->response.len + n > req->max_response)
	{
		req->too_large = true;
		return 0;				/* CURLE_WRITE_ERROR */
	}
	appendBinaryStringInfo(&req->response, ptr, (int) n);
	note_if_whole(req);
	return n;
}

/*
 * Response headers: only Cache-Control is read (max-age, or 0 for
 * no-store / no-cache), for the JWK Sets of jwksfetch.c.
 */
static size_t
read_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	HttpRequest *req = userdata;
	size_t		n = size * nmemb;
	char		line[256];
	char	   *v;

	track_answer(req, ptr, n);
	if (n < 14 || n >= sizeof(line) || pg_strncasecmp(ptr, "cache-control:", 14) != 0)
		return n;
	memcpy(line, ptr + 14, n - 14);
	line[n - 14] = '\0';
	for (char *c = line; *c; c++)
		*c = pg_ascii_tolower((unsigned char) *c);
	if (strstr(line, "no-store") != NULL || strstr(line, "no-cache") != NULL)
		req->max_age_s = 0;
	else if ((v = strstr(line, "max-age=")) != NULL)
	{
		long		age = strtol(v + 8, NULL, 10);

		req->max_age_s = age < 0 ? 0 : age;
	}
	return n;
}

static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.data.fd = s;
	if (what == CURL_POLL_REMOVE)
	{
		if (socketp != NULL)
			(void) epoll_ctl(epfd, EPOLL_CTL_DEL, s, NULL);
		curl_multi_assign(multi, s, NULL);
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev.events |= EPOLLOUT;
	if (socketp == NULL)
	{
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST)
			(void) epoll_ctl(epfd, EPOLL_CTL_MOD, s, &ev);
		curl_multi_assign(multi, s, (void *) 1);
	}
	else
		(void) epoll_ctl(epfd, EPOLL_CTL_MOD, s, &ev);
	return 0;
}

static int
timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	timer_at = timeout_ms < 0 ? -1 :
		GetCurrentTimestamp() + (TimestampTz) timeout_ms * 1000;
	return 0;
}

/* ---------------------------------------------------------------------
 * API
 * ---------------------------------------------------------------------
 */
void
httpclient_init(void)
{
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR, (errmsg("setstream sender: curl_global_init failed")));
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR, (errmsg("setstream sender: curl_multi_init failed")));
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		ereport(ERROR, (errmsg("setstream sender: epoll_create1 failed: %m")));
	http_cxt = AllocSetContextCreate(TopMemoryContext, "setstream http requests",
									 ALLOCSET_DEFAULT_SIZES);
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX);
	httpclient_configure();
}

int
httpclient_epoll_fd(void)
{
	return epfd;
}

/*
 * Mutual TLS: the client certificate and key of
 * setstream.outbound_client_cert_file / _key_file, when both are set.
 * libcurl reads the files when it connects; a file it cannot use fails
 * the request (a transport error naming the certificate, never its
 * contents).
 */
static void
set_client_certificate(CURL *e)
{
	if (setstream_outbound_client_cert_file == NULL ||
		setstream_outbound_client_cert_file[0] == '\0' ||
		setstream_outbound_client_key_file == NULL ||
		setstream_outbound_client_key_file[0] == '\0')
		return;
	curl_easy_setopt(e, CURLOPT_SSLCERT, setstream_outbound_client_cert_file);
	curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
	curl_easy_setopt(e, CURLOPT_SSLKEY, setstream_outbound_client_key_file);
	curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
}

/*
 * A POST of body when content_type is not NULL, else a GET; the request
 * fails after timeout_ms, or when the response body exceeds max_response
 */
static bool
start_request(const char *url, const char *body, size_t len,
			  const char *content_type, const char *accept,
			  const char *content_language,
			  const char *authorization, long timeout_ms,
			  size_t max_response, HttpDoneCallback done, void *arg)
{
	return start_method(NULL, url, body, len, content_type, accept,
						content_language, authorization, timeout_ms,
						max_response, done, arg);
}

/*
 * start_request with another method than POST or GET (custom_method not
 * NULL: "DELETE"); the request started last is in last_started
 */
static bool
start_method(const char *custom_method, const char *url, const char *body,
			 size_t len, const char *content_type, const char *accept,
			 const char *content_language, const char *authorization,
			 long timeout_ms,
			 size_t max_response, HttpDoneCallback done, void *arg)
{
	MemoryContext old = MemoryContextSwitchTo(http_cxt);
	HttpRequest *req = palloc0(sizeof(HttpRequest));
	CURL	   *e = curl_easy_init();
	char	   *line;

	if (e == NULL)
	{
		MemoryContextSwitchTo(old);
		pfree(req);
		return false;
	}
	req->easy = e;
	req->done = done;
	req->arg = arg;
	req->plain_http = pg_strncasecmp(url, "http://", 7) == 0;
	req->max_age_s = -1;
	req->max_response = max_response;
	req->content_length = -1;
	initStringInfo(&req->response);

	if (content_type != NULL)
	{
		line = psprintf("Content-Type: %s", content_type);
		req->headers = curl_slist_append(req->headers, line);
	}
	line = psprintf("Accept: %s", accept);
	req->headers = curl_slist_append(req->headers, line);
	if (content_language != NULL)
	{
		line = psprintf("Content-Language: %s", content_language);
		req->headers = curl_slist_append(req->headers, line);
	}
	req->headers = curl_slist_append(req->headers, "Expect:");
	if (authorization != NULL)
	{
		line = psprintf("Authorization: %s", authorization);
		req->headers = curl_slist_append(req->headers, line);
		explicit_bzero(line, strlen(line));
	}
	MemoryContextSwitchTo(old);

	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, req);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	if (content_type != NULL)
	{
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
	}
	else
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	if (custom_method != NULL)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, custom_method);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->headers);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	if (setstream_outbound_ca_file && setstream_outbound_ca_file[0] != '\0')
		curl_easy_setopt(e, CURLOPT_CAINFO, setstream_outbound_ca_file);
	set_client_certificate(e);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);

	/*
	 * Over TLS, wait for a connection that may multiplex (HTTP/2) rather
	 * than open another; plain http is HTTP/1.1, where waiting would only
	 * serialise the first pushes.
	 */
	if (!req->plain_http)
		curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) setstream_outbound_connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) max_response);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, read_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, req);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->errbuf);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "setstream");

	if (curl_multi_add_handle(multi, e) != CURLM_OK)
	{
		curl_slist_free_all(req->headers);
		curl_easy_cleanup(e);
		pfree(req->response.data);
		pfree(req);
		return false;
	}
	in_flight++;
	last_started = req;
	return true;
}

bool
httpclient_post(const char *url, const char *body, size_t len,
				const char *content_type, const char *accept,
				const char *authorization, HttpDoneCallback done, void *arg)
{
	return start_request(url, body, len, content_type, accept, NULL,
						 authorization, setstream_outbound_timeout_ms,
						 HTTP_MAX_RESPONSE, done, arg);
}

/*
 * httpclient_post with its own total timeout and response body limit
 * (the poll client's long polls wait longer, and bring SETs back), and a
 * Content-Language when not NULL (a Communication Object that carries
 * setErrs: their descriptions are in that language)
 */
bool
httpclient_post_limits(const char *url, const char *body, size_t len,
					   const char *content_type, const char *accept,
					   const char *content_language,
					   const char *authorization, long timeout_ms,
					   size_t max_response, HttpDoneCallback done, void *arg)
{
	return start_request(url, body, len, content_type, accept,
						 content_language, authorization, timeout_ms,
						 max_response, done, arg);
}

/* GET url with the given Accept (the JWK Sets of jwksfetch.c) */
bool
httpclient_get(const char *url, const char *accept, HttpDoneCallback done,
			   void *arg)
{
	return start_request(url, NULL, 0, NULL, accept, NULL, NULL,
						 setstream_outbound_timeout_ms, HTTP_MAX_RESPONSE,
						 done, arg);
}

long
httpclient_timeout_ms(void)
{
	TimestampTz at = timer_at;
	long		ms;

	if (!dlist_is_empty(&whole_answers))
	{
		HttpRequest *req = dlist_head_element(HttpRequest, whole_node, &whole_answers);
		TimestampTz take_at = TimestampTzPlusMilliseconds(req->whole_at,
														  WHOLE_ANSWER_GRACE_MS);

		if (at < 0 || take_at < at)
			at = take_at;
	}
	if (at < 0)
		return -1;
	ms = (long) ((at - GetCurrentTimestamp()) / 1000);
	return ms < 0 ? 0 : ms;
}

/*
 * An HTTP/2 server may answer before it has read the whole request and then
 * end the stream with RST_STREAM NO_ERROR; RFC 9113 8.1: "Clients MUST NOT
 * discard responses as a result of receiving such a RST_STREAM".  libcurl
 * 7.88 (Debian 12) reports CURLE_HTTP2_STREAM then (nginx's "return 202"
 * does it to every push that is not read to its end).  The answer is
 * taken when it is whole.
 */
static bool
whole_before_reset(CURLcode code, const HttpRequest *req)
{
	return code == CURLE_HTTP2_STREAM && answer_is_whole(req);
}

/*
 * A stream reset by the server before any answer (no status line), the
 * first time: the same request once more, at once, on the same handle.
 */
static bool
retry_reset_stream(CURL *e, CURLcode code, HttpRequest *req)
{
	if (code != CURLE_HTTP2_STREAM || req->retried || req->status != 0 ||
		req->refused || req->too_large)
		return false;
	curl_multi_remove_handle(multi, e);
	req->retried = true;
	req->errbuf[0] = '\0';
	req->http2 = false;
	req->headers_done = false;
	req->content_length = -1;
	req->max_age_s = -1;
	resetStringInfo(&req->response);
	forget_whole(req);
	return curl_multi_add_handle(multi, e) == CURLM_OK;
}

/*
 * A transfer is over: libcurl said so (code), or its answer was whole and
 * it was still open past WHOLE_ANSWER_GRACE_MS (taken_whole).
 */
static void
finish(CURL *e, CURLcode code, bool taken_whole)
{
	HttpRequest *req = NULL;
	HttpResult	result;
	long		status = 0;
	curl_off_t	retry_after = -1;
	char		error[CURL_ERROR_SIZE + 64];

	curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **) &req);
	if (!taken_whole && retry_reset_stream(e, code, req))
		return;
	forget_whole(req);
	memset(&result, 0, sizeof(result));
	result.retry_after_s = -1;
	result.max_age_s = req->max_age_s;
	if (code == CURLE_OK || taken_whole || whole_before_reset(code, req))
	{
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
		/* libcurl reports 0 both for none and for "Retry-After: 0" */
		if (curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK &&
			retry_after > 0)
			result.retry_after_s = (long) retry_after;
		result.status = (int) status;
		result.body = req->response.data;
		result.body_len = req->response.len;
	}
	else
	{
		if (req->refused)
			strlcpy(error, req->refused_why, sizeof(error));
		else if (req->too_large || code == CURLE_FILESIZE_EXCEEDED)
			snprintf(error, sizeof(error), "response body larger than %zu bytes",
					 req->max_response);
		else
			snprintf(error, sizeof(error), "%s%s%s", curl_easy_strerror(code),
					 req->errbuf[0] ? ": " : "", req->errbuf);
		result.error = error;
	}
	curl_multi_remove_handle(multi, e);
	curl_easy_cleanup(e);
	curl_slist_free_all(req->headers);
	in_flight--;
	req->done(req->arg, &result);
	pfree(req->response.data);
	pfree(req);
}

/* Transfers whose answer has been whole for WHOLE_ANSWER_GRACE_MS */
static void
take_whole_answers(void)
{
	TimestampTz now = GetCurrentTimestamp();

	while (!dlist_is_empty(&whole_answers))
	{
		HttpRequest *req = dlist_head_element(HttpRequest, whole_node, &whole_answers);

		if (!TimestampDifferenceExceeds(req->whole_at, now, WHOLE_ANSWER_GRACE_MS))
			break;
		finish(req->easy, CURLE_OK, true);
	}
}

void
httpclient_drive(bool sockets_ready)
{
	int			running;
	CURLMsg    *msg;
	int			left;

	if (sockets_ready)
	{
		struct epoll_event evs[64];
		int			n;

		while ((n = epoll_wait(epfd, evs, lengthof(evs), 0)) > 0)
		{
			for (int i = 0; i < n; i++)
			{
				int			flags = 0;

				if (evs[i].events & (EPOLLIN | EPOLLHUP))
					flags |= CURL_CSELECT_IN;
				if (evs[i].events & EPOLLOUT)
					flags |= CURL_CSELECT_OUT;
				if (evs[i].events & EPOLLERR)
					flags |= CURL_CSELECT_ERR;
				curl_multi_socket_action(multi, evs[i].data.fd, flags, &running);
			}
			if (n < (int) lengthof(evs))
				break;
		}
	}
	if (timer_at >= 0 && GetCurrentTimestamp() >= timer_at)
	{
		timer_at = -1;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		if (msg->msg == CURLMSG_DONE)
			finish(msg->easy_handle, msg->data.result, false);
	}
	take_whole_answers();
}

/* ---------------------------------------------------------------------
 * Synchronous requests from a backend (the SSF receiver's subscribe)
 * ---------------------------------------------------------------------
 */

/* What came of a synchronous request, filled in by sync_done */
typedef struct SyncOutcome
{
	bool		done;
	HttpSyncResult *out;
} SyncOutcome;

static void
sync_done(void *arg, const HttpResult *result)
{
	SyncOutcome *o = arg;

	o->done = true;
	o->out->status = result->status;
	if (result->status != 0)
	{
		o->out->body = palloc(result->body_len + 1);
		memcpy(o->out->body, result->body, result->body_len);
		o->out->body[result->body_len] = '\0';
	}
	else
		o->out->error = pstrdup(result->error ? result->error : "no answer");
}

/* Take a request out of the multi handle before it completes */
static void
abandon_request(HttpRequest *req)
{
	forget_whole(req);
	curl_multi_remove_handle(multi, req->easy);
	curl_easy_cleanup(req->easy);
	curl_slist_free_all(req->headers);
	in_flight--;
	pfree(req->response.data);
	pfree(req);
}

/*
 * One request, waited for in this backend: method "GET", "POST", "PATCH"
 * or "PUT" (body as content_type, default application/json) or
 * "DELETE"; Accept application/json;
 * authorization (not NULL) as the Authorization header.  Every rule of
 * the sender's requests holds (TLS verification, no redirect, the
 * private-destination rule, setstream.outbound_timeout_ms in all); the
 * wait is interruptible (query cancel), and an interrupted request is
 * abandoned.  Used by the SQL functions of the SSF receiver and by the
 * token renewer (tokenrenew.c), never by the sender.
 */
void
httpclient_request_sync(const char *method, const char *url,
						const char *body, const char *content_type,
						const char *authorization, HttpSyncResult *out)
{
	SyncOutcome outcome;
	HttpRequest *req;
	bool		post = strcmp(method, "POST") == 0 || strcmp(method, "PATCH") == 0 ||
		strcmp(method, "PUT") == 0;

	memset(out, 0, sizeof(*out));
	outcome.done = false;
	outcome.out = out;
	if (multi == NULL)
		httpclient_init();
	else
		httpclient_configure();
	if (!start_method(strcmp(method, "GET") == 0 || strcmp(method, "POST") == 0 ?
					  NULL : method, url,
					  post ? body : NULL, post ? strlen(body) : 0,
					  post ? (content_type ? content_type : "application/json") : NULL,
					  "application/json", NULL,
					  authorization, setstream_outbound_timeout_ms,
					  HTTP_MAX_RESPONSE, sync_done, &outcome))
	{
		out->error = pstrdup("the request could not be started");
		return;
	}
	req = last_started;
	PG_TRY();
	{
		int			running;

		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
		httpclient_drive(false);
		while (!outcome.done)
		{
			long		ms = httpclient_timeout_ms();
			int			rc;

			if (ms < 0 || ms > 1000)
				ms = 1000;
			rc = WaitLatchOrSocket(MyLatch,
								   WL_LATCH_SET | WL_SOCKET_READABLE |
								   WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								   epfd, ms, PG_WAIT_EXTENSION);
			if (rc & WL_LATCH_SET)
				ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			httpclient_drive((rc & WL_SOCKET_READABLE) != 0);
		}
	}
	PG_CATCH();
	{
		if (!outcome.done)
			abandon_request(req);
		PG_RE_THROW();
	}
	PG_END_TRY();
}
