/*-------------------------------------------------------------------------
 *
 * tls.c
 *	  TLS with OpenSSL on a connection's socket (sock.c): the listener's
 *	  server context (TLS 1.2 and newer; certificate and key from
 *	  setstream.tls_cert_file and setstream.tls_key_file, reloaded on
 *	  SIGHUP), client contexts that verify the peer's certificate (for a
 *	  connection setstream opens itself: tls_client_context,
 *	  tls_start_client), and non-blocking reads and writes that also carry
 *	  the handshake.
 *
 *	  With setstream.tls_ca_file set (reloaded likewise), the server asks
 *	  for a client certificate but does not require one: peers with a
 *	  bearer token only still connect, and a certificate that fails
 *	  verification (chain, validity) does not end the handshake either.
 *	  When the handshake is done, the connection notes once whether it has
 *	  a verified client certificate, and its SHA-256 fingerprint;
 *	  auth/auth.c compares that with the certificates bound to the stream.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "lib/stringinfo.h"

#include "base/digest.h"
#include "server/sock.h"
#include "setstream.h"

static SSL_CTX *tls_ctx = NULL;

/*
 * TLS 1.2: ECDHE key exchange with AEAD ciphers only (Mozilla's
 * "intermediate" list without DHE): no static RSA, no CBC, no SHA-1 MAC.
 * TLS 1.3 (all of its suites are AEAD) is preferred whenever the client
 * speaks it.
 */
#define TLS12_CIPHERS \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/*
 * OpenSSL's reasons for the last failure, oldest first ("error:80000002:
 * system library::No such file or directory; ..."), in a palloc'd string;
 * the error queue is left empty.
 */
static char *
tls_error_reasons(void)
{
	StringInfoData buf;
	unsigned long e;
	char		one[256];

	initStringInfo(&buf);
	while ((e = ERR_get_error()) != 0)
	{
		ERR_error_string_n(e, one, sizeof(one));
		appendStringInfo(&buf, "%s%s", buf.len > 0 ? "; " : "", one);
	}
	if (buf.len == 0)
		appendStringInfoString(&buf, "unknown TLS error");
	return buf.data;
}

static void
log_tls_error(const char *what)
{
	ereport(LOG,
			(errmsg("setstream: %s: %s", what, tls_error_reasons())));
}

/*
 * TLS is configured but no context could be built: log it at level ERROR
 * (without leaving the listener's loop) with OpenSSL's reasons.  With a
 * previous working context the listener keeps serving TLS with it;
 * without one it serves nothing (see tls_start_server).
 */
static void
report_tls_setup_failure(const char *what)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *reasons = tls_error_reasons();

	PG_TRY();
	{
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("setstream: %s: %s", what, reasons),
				 errdetail("setstream.tls_cert_file = \"%s\", setstream.tls_key_file = \"%s\"",
						   setstream_tls_cert_file ? setstream_tls_cert_file : "",
						   setstream_tls_key_file ? setstream_tls_key_file : ""),
				 tls_ctx != NULL ?
				 errhint("The listener keeps the previous TLS configuration until a reload loads the new one.") :
				 errhint("The listener serves no connection (never plain HTTP) until a reload or restart loads them.")));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
	}
	PG_END_TRY();
}

/* Are TLS settings given (then the listener never speaks plain HTTP)? */
bool
tls_configured(void)
{
	return (setstream_tls_cert_file != NULL && setstream_tls_cert_file[0] != '\0') ||
		(setstream_tls_key_file != NULL && setstream_tls_key_file[0] != '\0');
}

/*
 * Keep the handshake going whatever the client certificate: note a
 * verification failure on the connection, which then has no verified
 * certificate (a stream that requires one answers 401).
 */
static int
note_client_cert_verdict(int preverify_ok, X509_STORE_CTX *store)
{
	SSL		   *ssl = X509_STORE_CTX_get_ex_data(store,
												 SSL_get_ex_data_X509_STORE_CTX_idx());
	Sock	   *sock = ssl ? SSL_get_app_data(ssl) : NULL;

	if (!preverify_ok && sock != NULL)
		sock->tls_cert_rejected = true;
	return 1;
}

/* Ask for client certificates, verified against setstream.tls_ca_file */
static bool
configure_client_ca(SSL_CTX *ctx)
{
	STACK_OF(X509_NAME) * names;

	if (setstream_tls_ca_file == NULL || setstream_tls_ca_file[0] == '\0')
		return true;
	if (SSL_CTX_load_verify_locations(ctx, setstream_tls_ca_file, NULL) != 1 ||
		(names = SSL_load_client_CA_file(setstream_tls_ca_file)) == NULL)
		return false;			/* the caller reports OpenSSL's reasons */
	SSL_CTX_set_client_CA_list(ctx, names);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE,
					   note_client_cert_verdict);
	return true;
}

/*
 * (Re)build the server context from the GUCs.  On failure the old context
 * stays in use, or, without one, the listener serves nothing: TLS that is
 * configured never falls back to plain HTTP.  The failure is logged as an
 * ERROR with OpenSSL's reasons.
 */
void
tls_configure(void)
{
	SSL_CTX    *ctx;

	if (!tls_configured())
	{
		if (tls_ctx != NULL)
			SSL_CTX_free(tls_ctx);
		tls_ctx = NULL;
		return;
	}
	ERR_clear_error();
	if (setstream_tls_cert_file == NULL || setstream_tls_cert_file[0] == '\0' ||
		setstream_tls_key_file == NULL || setstream_tls_key_file[0] == '\0')
	{
		report_tls_setup_failure("TLS needs both setstream.tls_cert_file and setstream.tls_key_file");
		return;
	}
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL)
	{
		report_tls_setup_failure("could not create a TLS context");
		return;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1)
	{
		log_tls_error("could not set the TLS 1.2 cipher list");
		SSL_CTX_free(ctx);
		return;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
					 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (SSL_CTX_use_certificate_chain_file(ctx, setstream_tls_cert_file) != 1 ||
		SSL_CTX_use_PrivateKey_file(ctx, setstream_tls_key_file, SSL_FILETYPE_PEM) != 1 ||
		SSL_CTX_check_private_key(ctx) != 1)
	{
		report_tls_setup_failure("could not load setstream.tls_cert_file / setstream.tls_key_file");
		SSL_CTX_free(ctx);
		return;
	}
	/* resumed sessions keep their verified peer; a new context, new keys */
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *) "setstream", 9);
	if (!configure_client_ca(ctx))
	{
		report_tls_setup_failure("could not load setstream.tls_ca_file");
		SSL_CTX_free(ctx);
		return;
	}
	if (tls_ctx != NULL)
		SSL_CTX_free(tls_ctx);
	tls_ctx = ctx;
}

bool
tls_enabled(void)
{
	return tls_ctx != NULL;
}

/* Begin TLS on an accepted socket; the handshake runs in the first reads */
bool
tls_start_server(Sock *sock)
{
	/* configured but not loaded: serve nothing (logged at configuration) */
	if (tls_ctx == NULL)
		return false;
	sock->ssl = SSL_new(tls_ctx);
	if (sock->ssl == NULL || SSL_set_fd(sock->ssl, sock->fd) != 1)
	{
		log_tls_error("could not start TLS on a connection");
		return false;
	}
	SSL_set_app_data(sock->ssl, sock);
	SSL_set_accept_state(sock->ssl);
	return true;
}

/*
 * A client context, for a connection setstream opens itself: TLS 1.2 and
 * newer, the same ciphers as the server; with verify_peer, the peer's
 * chain must verify against ca_file (or the system's default CAs when it
 * is NULL or empty) and its name must match the host tls_start_client is
 * given, or the handshake fails.  NULL (logged) on failure; the caller
 * owns the context (SSL_CTX_free).
 */
SSL_CTX *
tls_client_context(const char *ca_file, bool verify_peer)
{
	SSL_CTX    *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
	{
		log_tls_error("could not create a TLS client context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
					 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
		(verify_peer &&
		 ((ca_file != NULL && ca_file[0] != '\0') ?
		  SSL_CTX_load_verify_locations(ctx, ca_file, NULL) :
		  SSL_CTX_set_default_verify_paths(ctx)) != 1))
	{
		log_tls_error("could not set up a TLS client context");
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, verify_peer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	return ctx;
}

/*
 * Begin TLS on a socket setstream opened (sock_connect): the handshake
 * runs in the first writes and reads.  host is sent as SNI and, when the
 * context verifies peers, must match the peer's certificate.
 */
bool
tls_start_client(Sock *sock, SSL_CTX *ctx, const char *host)
{
	sock->ssl = SSL_new(ctx);
	if (sock->ssl == NULL || SSL_set_fd(sock->ssl, sock->fd) != 1 ||
		SSL_set_tlsext_host_name(sock->ssl, host) != 1 ||
		(SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER &&
		 SSL_set1_host(sock->ssl, host) != 1))
	{
		log_tls_error("could not start TLS on a connection");
		return false;
	}
	SSL_set_app_data(sock->ssl, sock);
	SSL_set_connect_state(sock->ssl);
	return true;
}

/*
 * Once the handshake is done: does the peer have a certificate that the
 * CAs verified, and what is its fingerprint?
 */
static void
note_peer(Sock *sock)
{
	X509	   *peer;

	if (sock->tls_peer_known || !SSL_is_init_finished(sock->ssl))
		return;
	sock->tls_peer_known = true;
	peer = SSL_get1_peer_certificate(sock->ssl);
	if (peer == NULL)
		return;
	sock->peer_cert_verified = !sock->tls_cert_rejected &&
		SSL_get_verify_result(sock->ssl) == X509_V_OK &&
		digest_cert(peer, sock->peer_cert_sha256);
	X509_free(peer);
}

static ssize_t
tls_result(Sock *sock, int n)
{
	int			err = SSL_get_error(sock->ssl, n);

	sock->tls_want_write = false;
	switch (err)
	{
		case SSL_ERROR_WANT_READ:
			errno = EAGAIN;
			return -1;
		case SSL_ERROR_WANT_WRITE:
			sock->tls_want_write = true;
			errno = EAGAIN;
			return -1;
		case SSL_ERROR_ZERO_RETURN:
			return 0;
		default:
			ERR_clear_error();
			errno = ECONNRESET;
			return -1;
	}
}

ssize_t
tls_recv(Sock *sock, char *buf, size_t len)
{
	int			n;

	ERR_clear_error();
	n = SSL_read(sock->ssl, buf, (int) Min(len, INT_MAX));
	note_peer(sock);
	if (n > 0)
		return n;
	return tls_result(sock, n);
}

ssize_t
tls_send(Sock *sock, const char *buf, size_t len)
{
	int			n;

	ERR_clear_error();
	n = SSL_write(sock->ssl, buf, (int) Min(len, INT_MAX));
	if (n > 0)
		return n;
	return tls_result(sock, n);
}

void
tls_close(Sock *sock)
{
	if (sock->ssl == NULL)
		return;
	SSL_shutdown(sock->ssl);
	SSL_free(sock->ssl);
	sock->ssl = NULL;
	ERR_clear_error();
}
