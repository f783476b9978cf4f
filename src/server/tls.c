/*-------------------------------------------------------------------------
 *
 * tls.c
 *	  TLS for the listener with OpenSSL: the server context (TLS 1.2 and
 *	  newer; certificate and key from setstream.tls_cert_file and
 *	  setstream.tls_key_file, reloaded on SIGHUP) and non-blocking reads
 *	  and writes that also carry the handshake.
 *
 *	  With setstream.tls_ca_file set (reloaded likewise), the server asks
 *	  for a client certificate but does not require one: peers with a
 *	  bearer token only still connect, and a certificate that fails
 *	  verification (chain, validity) does not end the handshake either.
 *	  When the handshake is done, the connection notes once whether it has
 *	  a verified client certificate, and its SHA-256 fingerprint; routes.c
 *	  compares that with the certificates bound to the stream.
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
#include "server/listener.h"
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
 * without one it serves nothing (see tls_conn_start).
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
	Conn	   *conn = ssl ? SSL_get_app_data(ssl) : NULL;

	if (!preverify_ok && conn != NULL)
		conn->tls_cert_rejected = true;
	return 1;
}

/* Ask for client certificates, verified against setstream.tls_ca_file */
static bool
configure_client_ca(SSL_CTX *ctx)
{
	STACK_OF(X509_NAME) *names;

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
tls_conn_start(Conn *conn)
{
	/* configured but not loaded: serve nothing (logged at configuration) */
	if (tls_ctx == NULL)
		return false;
	conn->ssl = SSL_new(tls_ctx);
	if (conn->ssl == NULL || SSL_set_fd(conn->ssl, conn->fd) != 1)
	{
		log_tls_error("could not start TLS on a connection");
		return false;
	}
	SSL_set_app_data(conn->ssl, conn);
	SSL_set_accept_state(conn->ssl);
	return true;
}

/*
 * Once the handshake is done: does the connection have a client
 * certificate that the CAs verified, and what is its fingerprint?
 */
static void
note_peer(Conn *conn)
{
	X509	   *peer;

	if (conn->tls_peer_known || !SSL_is_init_finished(conn->ssl))
		return;
	conn->tls_peer_known = true;
	peer = SSL_get1_peer_certificate(conn->ssl);
	if (peer == NULL)
		return;
	conn->client_cert_verified = !conn->tls_cert_rejected &&
		SSL_get_verify_result(conn->ssl) == X509_V_OK &&
		digest_cert(peer, conn->client_cert_sha256);
	X509_free(peer);
}

static ssize_t
tls_result(Conn *conn, int n)
{
	int			err = SSL_get_error(conn->ssl, n);

	conn->tls_want_write = false;
	switch (err)
	{
		case SSL_ERROR_WANT_READ:
			errno = EAGAIN;
			return -1;
		case SSL_ERROR_WANT_WRITE:
			conn->tls_want_write = true;
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
conn_recv(Conn *conn, char *buf, size_t len)
{
	int			n;

	if (conn->ssl == NULL)
		return recv(conn->fd, buf, len, 0);
	ERR_clear_error();
	n = SSL_read(conn->ssl, buf, (int) Min(len, INT_MAX));
	note_peer(conn);
	if (n > 0)
		return n;
	return tls_result(conn, n);
}

ssize_t
conn_send(Conn *conn, const char *buf, size_t len)
{
	int			n;

	if (conn->ssl == NULL)
		return send(conn->fd, buf, len, MSG_NOSIGNAL);
	ERR_clear_error();
	n = SSL_write(conn->ssl, buf, (int) Min(len, INT_MAX));
	if (n > 0)
		return n;
	return tls_result(conn, n);
}

void
tls_conn_close(Conn *conn)
{
	if (conn->ssl == NULL)
		return;
	SSL_shutdown(conn->ssl);
	SSL_free(conn->ssl);
	conn->ssl = NULL;
	ERR_clear_error();
}
