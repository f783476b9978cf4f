/*-------------------------------------------------------------------------
 *
 * httpclient.h
 *	  Outbound HTTP requests on libcurl's multi interface, driven by the
 *	  caller's wait loop.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_HTTPCLIENT_H
#define SETSTREAM_HTTPCLIENT_H

#include "datatype/timestamp.h"

typedef struct HttpRequest HttpRequest;

/* What came of one request, handed to the completion callback */
typedef struct HttpResult
{
	int			status;			/* HTTP status; 0: no answer */
	const char *body;			/* up to HTTP_MAX_RESPONSE bytes */
	size_t		body_len;
	long		retry_after_s;	/* -1: none */
	const char *error;			/* why there was no answer (status 0) */
	long		max_age_s;		/* Cache-Control max-age (0: no-store or
								 * no-cache); -1: none */
} HttpResult;

typedef void (*HttpDoneCallback) (void *arg, const HttpResult *result);

#define HTTP_MAX_RESPONSE (64 * 1024)

extern void httpclient_init(void);
extern int	httpclient_epoll_fd(void);
extern void httpclient_configure(void);

/*
 * POST body (not copied: it must live until the callback) to url with
 * the given Content-Type, Accept and, when not NULL, Authorization value.
 */
extern bool httpclient_post(const char *url, const char *body, size_t len,
							const char *content_type, const char *accept,
							const char *authorization,
							HttpDoneCallback done, void *arg);

/* GET url with the given Accept */
extern bool httpclient_get(const char *url, const char *accept,
						   HttpDoneCallback done, void *arg);

extern bool httpclient_post_limits(const char *url, const char *body,
								   size_t len, const char *content_type,
								   const char *accept,
								   const char *content_language,
								   const char *authorization, long timeout_ms,
								   size_t max_response, HttpDoneCallback done,
								   void *arg);

/*
 * May a connection go to this address (setstream.outbound_allowed_networks;
 * plain_http: without TLS)?  False with why (no ereport: libcurl calls it).
 * Also for the connections setstream opens itself (pushpullws.c).
 */
struct sockaddr;
extern bool httpclient_address_allowed(const struct sockaddr *sa,
									   bool plain_http, char *why,
									   size_t whylen);

/* Milliseconds until libcurl wants to be called again; -1: no timer */
extern long httpclient_timeout_ms(void);

/* Let libcurl work on ready sockets and expired timers; calls callbacks */
extern void httpclient_drive(bool sockets_ready);

/* What came of httpclient_request_sync (palloc'd in the caller's context) */
typedef struct HttpSyncResult
{
	int			status;			/* HTTP status; 0: no answer */
	char	   *body;			/* NUL-terminated; NULL without an answer */
	char	   *error;			/* why there was no answer (status 0) */
} HttpSyncResult;

extern void httpclient_request_sync(const char *method, const char *url,
									const char *body,
									const char *content_type,
									const char *authorization,
									HttpSyncResult *out);

#endif
