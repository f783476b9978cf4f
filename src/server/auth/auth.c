/*-------------------------------------------------------------------------
 *
 * auth.c
 *	  Who may use a stream route: the stream's client_auth says
 *	  "Authorization: Bearer <token>" with a token of that stream
 *	  ('bearer', the default), a verified client certificate bound to the
 *	  stream ('cert'), or both ('bearer+cert').  A missing or wrong token,
 *	  and a token of another stream, get 401 with WWW-Authenticate and say
 *	  nothing about the stream; so does a stream that does not exist.  No
 *	  verified client certificate gets 401; a verified one that is not
 *	  bound to the stream gets 403.  A failure counts against the peer's
 *	  address, and an address that failed too often (limit.c) gets 429
 *	  for a while, before any stream lookup, token hashing or certificate
 *	  check.  Tokens and certificates are matched by their digests, in
 *	  constant time (base/digest.c).  The poll endpoint of a stream that
 *	  an SSF receiver reaches (streams.receiver) also opens to that
 *	  receiver's ssf.read tokens (auth_authorized_poll), when the stream
 *	  takes bearer tokens alone.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <string.h>

#include "base/digest.h"
#include "server/auth/auth.h"
#include "server/conn.h"
#include "setstream.h"

#define MAX_TOKEN_BYTES 512

static const char *const bearer_challenge =
"WWW-Authenticate: Bearer realm=\"setstream\"\r\n";
const char *const auth_bearer_challenge_invalid =
"WWW-Authenticate: Bearer realm=\"setstream\", error=\"invalid_token\"\r\n";

/*
 * The bearer token of the request (the Authorization header's, trimmed, at
 * most MAX_TOKEN_BYTES), or NULL; stream tokens and receiver tokens alike
 */
const char *
auth_bearer_token(Conn *conn, size_t *len)
{
	const char *h = conn->http.req.authorization;

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

/* The bearer token must be an active token of this very stream */
static bool
bearer_authorized(Conn *conn, StreamInfo *stream)
{
	size_t		len = 0;
	const char *token = auth_bearer_token(conn, &len);

	if (token != NULL && stream != NULL &&
		digest_token_in_list(stream->token_hashes, token, len))
		return true;
	http_respond_error(conn, 401, seterr_name(SETERR_AUTHENTICATION_FAILED),
					   token ? "the bearer token is not valid for this stream"
					   : "this endpoint needs Authorization: Bearer <token>",
					   token ? auth_bearer_challenge_invalid : bearer_challenge);
	return false;
}

/*
 * The connection's client certificate, verified at the handshake, must be
 * bound to this stream (its fingerprint was computed once, at handshake).
 */
static bool
cert_authorized(Conn *conn, StreamInfo *stream)
{
	if (!conn->sock.peer_cert_verified)
	{
		/*
		 * Without a token of the stream either, the client is not
		 * authenticated at all: answer exactly as for a stream that does not
		 * exist, so that it cannot tell a 'cert' stream from none.
		 */
		if (!stream->auth_bearer)
			return bearer_authorized(conn, NULL);
		http_respond_error(conn, 401, seterr_name(SETERR_AUTHENTICATION_FAILED),
						   "this stream needs a verified client certificate",
						   NULL);
		return false;
	}
	if (!digest_in_list(stream->cert_hashes, conn->sock.peer_cert_sha256))
	{
		http_respond_error(conn, 403, seterr_name(SETERR_ACCESS_DENIED),
						   "the client certificate is not bound to this stream",
						   NULL);
		return false;
	}
	return true;
}

/*
 * The stream's client_auth: a bearer token, a client certificate, or both.
 * A failure counts against the peer's address (limit.c).
 */
bool
auth_authorized(Conn *conn, StreamInfo *stream)
{
	bool		ok;

	if ((stream == NULL || stream->auth_bearer) && !bearer_authorized(conn, stream))
		ok = false;
	else
		ok = stream == NULL || !stream->auth_cert || cert_authorized(conn, stream);
	if (!ok)
		auth_record_failure(conn);
	return ok;
}

/* Is the bearer token one of the stream's receiver's ssf.read tokens? */
static bool
receiver_token(Conn *conn, StreamInfo *stream)
{
	size_t		len = 0;
	const char *token;

	if (stream == NULL || stream->receiver_hashes == NIL ||
		!stream->auth_bearer || stream->auth_cert)
		return false;
	token = auth_bearer_token(conn, &len);
	return token != NULL &&
		digest_token_in_list(stream->receiver_hashes, token, len);
}

/* The poll endpoint: auth_authorized, or a token of the stream's receiver */
bool
auth_authorized_poll(Conn *conn, StreamInfo *stream)
{
	return receiver_token(conn, stream) || auth_authorized(conn, stream);
}

/* Charge a failed authentication to the peer's address (limit.c) */
void
auth_record_failure(Conn *conn)
{
	authlimit_record_failure(&conn->sock.peer_key, GetCurrentTimestamp());
}

/*
 * Has the peer's address failed to authenticate too often?  Then answer 429
 * before any lookup or hashing: a blocked attempt costs next to nothing.
 */
bool
auth_too_many_failures(Conn *conn)
{
	int			retry_after;

	if (!authlimit_blocked(&conn->sock.peer_key, GetCurrentTimestamp(), &retry_after))
		return false;
	http_respond_error(conn, 429, NULL,
					   psprintf("too many failed authentications from this address; retry in %d s",
								retry_after),
					   psprintf("Retry-After: %d\r\n", retry_after));
	return true;
}

/*
 * Does a session opened earlier (a parked long poll, a WebSocket) still
 * hold against the stream as reloaded: its bearer token or client
 * certificate, the stream's client_auth?  Returns 0, or the
 * HTTP status that says why not (401, 403).  The request's headers stay
 * with the connection as long as the session does.  Not counted against
 * the peer's address: the peer did nothing wrong.
 */
int
auth_session_denied(Conn *conn, StreamInfo *stream, const char **why)
{
	size_t		len = 0;
	const char *token;

	*why = "the credentials of this session are no longer valid for the stream";
	if (stream == NULL)
		return 401;
	/* (only a poll can have opened with one: auth_authorized_poll) */
	if (receiver_token(conn, stream))
		return 0;
	if (stream->auth_bearer)
	{
		token = auth_bearer_token(conn, &len);
		if (token == NULL ||
			!digest_token_in_list(stream->token_hashes, token, len))
			return 401;
	}
	if (stream->auth_cert)
	{
		if (!conn->sock.peer_cert_verified)
			return 401;
		if (!digest_in_list(stream->cert_hashes, conn->sock.peer_cert_sha256))
		{
			*why = "the client certificate is no longer bound to this stream";
			return 403;
		}
	}
	return 0;
}
