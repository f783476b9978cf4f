/*-------------------------------------------------------------------------
 *
 * authlimit.h
 *	  Per-address limit of failed authentications in the listener.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_AUTHLIMIT_H
#define SETSTREAM_AUTHLIMIT_H

#include <sys/socket.h>

#include "utils/timestamp.h"

/*
 * Who a failure is charged to: an IPv4 address (as ::ffff:a.b.c.d), or the
 * /64 prefix of an IPv6 address, 16 bytes either way.
 */
typedef struct AuthLimitKey
{
	uint8		bytes[16];
} AuthLimitKey;

#define AUTHLIMIT_MAX_ENTRIES 8192	/* addresses remembered, all listeners */

extern void authlimit_request_shmem(void);
extern void authlimit_key_from_sockaddr(const struct sockaddr *addr,
										AuthLimitKey *key);
extern bool authlimit_blocked(const AuthLimitKey *key, TimestampTz now,
							  int *retry_after_s);
extern void authlimit_record_failure(const AuthLimitKey *key, TimestampTz now);

#endif
