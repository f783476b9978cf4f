/*-------------------------------------------------------------------------
 *
 * auth.h
 *	  Who may use a stream route, and how often an address may fail to say
 *	  so: bearer tokens and client certificates (server/auth/auth.c), the
 *	  per-address limit of failed authentications (server/auth/limit.c).
 *	  The listener's one question is auth_peer_key, when it accepts.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_AUTH_H
#define SETSTREAM_AUTH_H

#include <sys/socket.h>

#include "utils/timestamp.h"

#include "store/streamcache.h"

struct Conn;

/*
 * Who a failure is charged to: an IPv4 address (as ::ffff:a.b.c.d), or the
 * /64 prefix of an IPv6 address, 16 bytes either way.
 */
typedef struct AuthLimitKey
{
	uint8		bytes[16];
} AuthLimitKey;

#define AUTHLIMIT_MAX_ENTRIES 8192	/* addresses remembered, all listeners */

/* auth.c: the peer of a stream route */
extern const char *const auth_bearer_challenge_invalid;
extern const char *auth_bearer_token(struct Conn *conn, size_t *len);

extern bool auth_too_many_failures(struct Conn *conn);
extern void auth_record_failure(struct Conn *conn);
extern bool auth_authorized(struct Conn *conn, StreamInfo *stream);
extern bool auth_authorized_poll(struct Conn *conn, StreamInfo *stream);
extern int	auth_session_denied(struct Conn *conn, StreamInfo *stream,
								const char **why);

/* mgmt.c: the receiver of an SSF management request */
extern const char *auth_receiver(struct Conn *conn, bool need_manage);

/* limit.c: the failures per address, in shared memory */
extern void authlimit_request_shmem(void);
extern void auth_peer_key(const struct sockaddr *addr, AuthLimitKey *key);
extern bool authlimit_blocked(const AuthLimitKey *key, TimestampTz now,
							  int *retry_after_s);
extern void authlimit_record_failure(const AuthLimitKey *key, TimestampTz now);

#endif
