/*-------------------------------------------------------------------------
 *
 * setstream.h
 *	  Declarations shared by setstream's modules: GUC variables, the RFC 8935
 *	  error codes and their SQLSTATEs.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_H
#define SETSTREAM_H

#include "postgres.h"

#include "base/pg_compat.h"

/* GUC variables (src/setstream.c) */
extern char *setstream_database;
extern char *setstream_role;
extern char *setstream_listen_addresses;
extern int	setstream_port;
extern int	setstream_workers;
extern char *setstream_tls_cert_file;
extern char *setstream_tls_key_file;
extern char *setstream_tls_ca_file;
extern char *setstream_public_url;
extern char *setstream_issuer;
extern int	setstream_default_subjects;

/* setstream.default_subjects (SSF default_subjects) */
#define SSF_DEFAULT_SUBJECTS_ALL	0
#define SSF_DEFAULT_SUBJECTS_NONE	1
extern int	setstream_max_request_bytes;
extern int	setstream_max_connections;
extern int	setstream_poll_timeout_ms;
extern int	setstream_generation_check_ms;
extern int	setstream_idle_timeout_ms;
extern int	setstream_redelivery_interval_ms;
extern int	setstream_max_poll_events;
extern int	setstream_auth_failure_limit;
extern int	setstream_max_buffered_bytes;
extern int	setstream_jwks_max_age_s;
extern int	setstream_ssf_min_verification_interval_s;
extern int	setstream_ssf_inactivity_timeout_s;

/*
 * RFC 8935 section 2.4 error codes ("Security Event Token Error Codes").
 * Each has an SQLSTATE of its own in class SE so that SQL callers can tell
 * them apart; see errors.c and the README for the mapping.
 */
typedef enum SetErr
{
	SETERR_NONE = 0,
	SETERR_INVALID_REQUEST,
	SETERR_INVALID_KEY,
	SETERR_INVALID_ISSUER,
	SETERR_INVALID_AUDIENCE,
	SETERR_AUTHENTICATION_FAILED,
	SETERR_ACCESS_DENIED,
	SETERR_INVALID_STATE
} SetErr;

#define ERRCODE_SET_INVALID_REQUEST			MAKE_SQLSTATE('S','E','0','0','1')
#define ERRCODE_SET_INVALID_KEY				MAKE_SQLSTATE('S','E','0','0','2')
#define ERRCODE_SET_INVALID_ISSUER			MAKE_SQLSTATE('S','E','0','0','3')
#define ERRCODE_SET_INVALID_AUDIENCE		MAKE_SQLSTATE('S','E','0','0','4')
#define ERRCODE_SET_AUTHENTICATION_FAILED	MAKE_SQLSTATE('S','E','0','0','5')
#define ERRCODE_SET_ACCESS_DENIED			MAKE_SQLSTATE('S','E','0','0','6')
#define ERRCODE_SET_INVALID_STATE			MAKE_SQLSTATE('S','E','0','0','7')

/*
 * Not an RFC 8935 code: receive() on a stream with a peer_jwks_uri, for a
 * SET whose kid is unknown while the refetch of the stream's JWK Set that
 * it asked for is pending (shmem/jwksreq.c).  Transient: the SET was not
 * stored, and the same call succeeds once the key is there.
 */
#define ERRCODE_SET_KEY_PENDING				MAKE_SQLSTATE('S','E','0','0','8')

/*
 * How an error raised while serving a request is answered (errors.c,
 * seterr_answer): over HTTP a status, the RFC 8935 "err" (or NULL) and a
 * description, with extra headers; over a WebSocket a close code.
 */
#define SETERR_WS_INTERNAL_ERROR	1011

/*
 * The "err" of answers that no RFC 8935 code names (seterr_for_status):
 * the peer is asked to come back later, or the server failed.
 */
#define ERR_RATE_LIMITED			"rate_limited"
#define ERR_TEMPORARILY_UNAVAILABLE	"temporarily_unavailable"
#define ERR_SERVER_ERROR			"server_error"

typedef struct SetAnswer
{
	int			http_status;
	const char *err;
	const char *description;
	const char *headers;		/* extra header lines, or NULL */
	int			ws_close_code;
	bool		log;			/* not the peer's fault: log it */
} SetAnswer;

extern const char *seterr_name(SetErr code);
extern const char *seterr_for_status(int http_status);
extern SetErr seterr_from_name(const char *name);
extern const char *seterr_description(SetErr code, const char *message);
extern void seterr_answer(int sqlerrcode, const char *message, SetAnswer *a);
extern SetErr seterr_from_sqlstate(int sqlerrcode);
extern bool sqlstate_is_transient(int sqlerrcode);
extern char *setstream_log_escape(const char *s, int maxlen);

/*
 * Raise an RFC 8935 error from SQL: the message is "<code>: <description>"
 * and the SQLSTATE is the code's own.
 */
extern void seterr_raise(SetErr code, const char *description) pg_attribute_noreturn();

/* A failure found while checking a SET, kept until it is raised or reported */
typedef struct SetFailure
{
	SetErr		code;
	char		description[256];
	bool		unknown_key;	/* invalid_key: no key has the SET's kid */
} SetFailure;

extern bool set_fail(SetFailure *f, SetErr code, const char *fmt,...) pg_attribute_printf(3, 4);


#endif							/* SETSTREAM_H */
