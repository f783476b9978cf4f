/*-------------------------------------------------------------------------
 *
 * sock.h
 *	  One TCP connection's socket, TLS session and byte buffers
 *	  (server/sock.c; TLS in server/tls.c), accepted or opened: what the
 *	  listener's connections and a connection setstream opens itself have
 *	  in common, below HTTP and WebSocket.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_SOCK_H
#define SETSTREAM_SOCK_H

#include <sys/socket.h>
#include <openssl/ssl.h>

#include "lib/stringinfo.h"

#include "server/auth/auth.h"

typedef struct Sock
{
	int			fd;
	bool		outgoing;		/* opened by us (sock_connect), not accepted */
	bool		failed;			/* a write failed: the connection is over */
	char		peer[64];		/* address, for log lines */
	AuthLimitKey peer_key;		/* whom failed authentications count against */

	/* TLS (tls.c) */
	SSL		   *ssl;			/* NULL for plain TCP */
	bool		tls_want_write; /* OpenSSL needs the socket writable */
	bool		tls_peer_known; /* the handshake is done, peer cert looked at */
	bool		tls_cert_rejected;	/* the peer's chain failed verification */
	bool		peer_cert_verified; /* a peer cert verified by the CAs */
	uint8		peer_cert_sha256[32];	/* its fingerprint (DER, SHA-256) */

	/* buffers */
	char	   *in;				/* received bytes not yet consumed */
	int			inlen;
	int			incap;
	StringInfoData out;			/* bytes to send */
	int			outpos;
} Sock;

/* sock.c */
extern void sock_init_accepted(Sock *sock, int fd, const struct sockaddr *addr,
							   socklen_t alen);
extern bool sock_connect(Sock *sock, const struct sockaddr *addr, socklen_t alen);
extern void sock_init_buffers(Sock *sock, MemoryContext cxt);
extern ssize_t sock_recv(Sock *sock, char *buf, size_t len);
extern ssize_t sock_send(Sock *sock, const char *buf, size_t len);
extern int	sock_take_input(Sock *sock, char *buf, size_t len);
extern bool sock_flush(Sock *sock);
extern bool sock_has_output(Sock *sock);
extern void sock_discard_output(Sock *sock);
extern bool sock_tls_pending(Sock *sock);
extern void sock_close(Sock *sock);

/* tls.c */
extern void tls_configure(void);
extern bool tls_enabled(void);
extern bool tls_configured(void);
extern bool tls_start_server(Sock *sock);
extern SSL_CTX *tls_client_context(const char *ca_file, bool verify_peer);
extern bool tls_start_client(Sock *sock, SSL_CTX *ctx, const char *host);
extern ssize_t tls_recv(Sock *sock, char *buf, size_t len);
extern ssize_t tls_send(Sock *sock, const char *buf, size_t len);
extern void tls_close(Sock *sock);

#endif
