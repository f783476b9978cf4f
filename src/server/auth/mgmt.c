/*-------------------------------------------------------------------------
 *
 * mgmt.c
 *	  Who may use the SSF management API (server/ssf.c): a receiver's
 *	  bearer token ("Authorization: Bearer <token>"; never a query
 *	  parameter), from setstream.issue_receiver_token.  Reading (GET) needs
 *	  the scope ssf.read, every other method ssf.manage.
 *
 *	    no token              401, WWW-Authenticate: Bearer
 *	    a token not known     401, WWW-Authenticate: Bearer
 *	                               error="invalid_token"
 *	    a token without the   403, WWW-Authenticate: Bearer
 *	    scope                      error="insufficient_scope", scope=...
 *
 *	  Tokens are matched by their SHA-256, against every receiver token, in
 *	  constant time (no early exit, CRYPTO_memcmp); a failure counts against
 *	  the peer's address (limit.c).  Runs in the turn's transaction: the
 *	  tokens are read as the extension owner (store_receiver_tokens).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <string.h>

#include <openssl/crypto.h>

#include "base/digest.h"
#include "server/auth/auth.h"
#include "server/conn.h"
#include "setstream.h"
#include "store/store.h"

#define NO_STORE "Cache-Control: no-store\r\n"

/*
 * The receiver whose token the request carries, with the scope the method
 * needs; NULL with the refusal queued.
 */
const char *
auth_receiver(Conn *conn, bool need_manage)
{
	size_t		len = 0;
	bool		given = conn->http.req.authorization != NULL;
	const char *token = auth_bearer_token(conn, &len);
	uint8		digest[32];
	ReceiverToken *found = NULL;
	ListCell   *lc;
	const char *scope = need_manage ? "ssf.manage" : "ssf.read";

	if (token == NULL)
	{
		auth_record_failure(conn);
		http_respond_error(conn, 401, seterr_name(SETERR_AUTHENTICATION_FAILED),
						   "this endpoint needs Authorization: Bearer <receiver token>",
						   given ? NO_STORE "WWW-Authenticate: Bearer realm=\"setstream\", error=\"invalid_token\"\r\n"
						   : NO_STORE "WWW-Authenticate: Bearer realm=\"setstream\"\r\n");
		return NULL;
	}
	digest_token(token, len, digest);
	foreach(lc, store_receiver_tokens())
	{
		ReceiverToken *t = lfirst(lc);

		/* every token compared: the time says nothing of where it matched */
		if (CRYPTO_memcmp(digest, t->hash, sizeof(digest)) == 0 && found == NULL)
			found = t;
	}
	if (found == NULL)
	{
		auth_record_failure(conn);
		http_respond_error(conn, 401, seterr_name(SETERR_AUTHENTICATION_FAILED),
						   "the bearer token is not a valid receiver token",
						   NO_STORE "WWW-Authenticate: Bearer realm=\"setstream\", error=\"invalid_token\"\r\n");
		return NULL;
	}
	if (!(need_manage ? found->manage : found->read))
	{
		http_respond_error(conn, 403, "insufficient_scope",
						   psprintf("this request needs a receiver token with the scope %s",
									scope),
						   psprintf(NO_STORE "WWW-Authenticate: Bearer realm=\"setstream\", error=\"insufficient_scope\", scope=\"%s\"\r\n",
									scope));
		return NULL;
	}
	return found->receiver;
}
