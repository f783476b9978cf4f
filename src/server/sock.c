/*-------------------------------------------------------------------------
 *
 * sock.c
 *	  One connection's socket and byte buffers, over plain TCP or TLS
 *	  (tls.c): made from an accepted socket (the listener) or opened to a
 *	  peer (sock_connect: non-blocking, for a connection setstream makes
 *	  itself; TLS then in client mode, tls_start_client).  Everything
 *	  above it, HTTP (http.c) and WebSocket frames (ws.c), reads and
 *	  writes through here and never sees whether TLS is on.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include "utils/memutils.h"

#include "server/sock.h"

#define SOCK_INPUT_BYTES 16384

/* An accepted socket (non-blocking already) */
void
sock_init_accepted(Sock *sock, int fd, const struct sockaddr *addr,
				   socklen_t alen)
{
	int			one = 1;

	sock->fd = fd;
	sock->outgoing = false;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	getnameinfo(addr, alen, sock->peer, sizeof(sock->peer), NULL, 0,
				NI_NUMERICHOST);
	auth_peer_key(addr, &sock->peer_key);
}

/*
 * Open a connection to addr, without waiting: the socket becomes writable
 * when it is connected (or has failed; the first write says which).
 * Returns false, with errno set, when it cannot even begin.
 */
bool
sock_connect(Sock *sock, const struct sockaddr *addr, socklen_t alen)
{
	int			one = 1;
	int			fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return false;
	if (connect(fd, addr, alen) != 0 && errno != EINPROGRESS)
	{
		int			save = errno;

		close(fd);
		errno = save;
		return false;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sock->fd = fd;
	sock->outgoing = true;
	getnameinfo(addr, alen, sock->peer, sizeof(sock->peer), NULL, 0,
				NI_NUMERICHOST);
	auth_peer_key(addr, &sock->peer_key);
	return true;
}

/* The input buffer and the output queue, in the connection's memory */
void
sock_init_buffers(Sock *sock, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);

	sock->incap = SOCK_INPUT_BYTES;
	sock->in = palloc(sock->incap);
	sock->inlen = 0;
	initStringInfo(&sock->out);
	sock->outpos = 0;
	MemoryContextSwitchTo(old);
}

ssize_t
sock_recv(Sock *sock, char *buf, size_t len)
{
	if (sock->ssl == NULL)
		return recv(sock->fd, buf, len, 0);
	return tls_recv(sock, buf, len);
}

ssize_t
sock_send(Sock *sock, const char *buf, size_t len)
{
	if (sock->ssl == NULL)
		return send(sock->fd, buf, len, MSG_NOSIGNAL);
	return tls_send(sock, buf, len);
}

/* Move up to len buffered input bytes (read but not parsed) into buf */
int
sock_take_input(Sock *sock, char *buf, size_t len)
{
	int			n = Min((size_t) sock->inlen, len);

	memcpy(buf, sock->in, n);
	memmove(sock->in, sock->in + n, sock->inlen - n);
	sock->inlen -= n;
	return n;
}

/*
 * Write queued bytes.  Returns true when everything is written; false when
 * the socket is full (wait for it to be writable) or failed (then
 * sock->failed is set).
 */
bool
sock_flush(Sock *sock)
{
	while (sock->outpos < sock->out.len)
	{
		ssize_t		n = sock_send(sock, sock->out.data + sock->outpos,
								  sock->out.len - sock->outpos);

		if (n > 0)
		{
			sock->outpos += n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return false;
		sock->failed = true;
		return false;
	}
	resetStringInfo(&sock->out);
	sock->outpos = 0;
	return true;
}

bool
sock_has_output(Sock *sock)
{
	return sock->out.len > sock->outpos;
}

/* Forget what is queued and not yet written (an answer replaced) */
void
sock_discard_output(Sock *sock)
{
	resetStringInfo(&sock->out);
	sock->outpos = 0;
}

/*
 * Plaintext that OpenSSL has decrypted already: the socket will not be
 * readable for it again.
 */
bool
sock_tls_pending(Sock *sock)
{
	return sock->ssl != NULL && SSL_pending(sock->ssl) > 0;
}

void
sock_close(Sock *sock)
{
	tls_close(sock);
	close(sock->fd);
	sock->fd = -1;
}
