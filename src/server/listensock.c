/*-------------------------------------------------------------------------
 *
 * listensock.c
 *	  The listeners' TCP sockets.  Each listener binds its own socket per
 *	  address to setstream.port with SO_REUSEPORT, so that the kernel
 *	  spreads new connections over the workers, and a listener that exits
 *	  takes its socket with it (new connections go to the others).
 *
 *	  SO_REUSEPORT alone would let any other process of the same OS user
 *	  join, another cluster on this host with the same setstream.port say,
 *	  and silently take a share of the connections.  So the postmaster,
 *	  when it starts, binds each address once without SO_REUSEPORT, which
 *	  fails when anybody holds the port, and then holds the port with a
 *	  guard socket: bound with SO_REUSEPORT (which lets its own listeners
 *	  in) but without SO_REUSEADDR and never listening, so that no other
 *	  setstream cluster's check passes while this server runs.  Listeners
 *	  only bind the addresses the postmaster holds.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nodes/pg_list.h"
#include "utils/varlena.h"

#include "server/listener.h"
#include "setstream.h"

#define MAX_ADDRESSES 16

/* Set in the postmaster, inherited by the listeners */
typedef struct HeldAddress
{
	struct sockaddr_storage addr;
	socklen_t	addrlen;
	int			family;
	int			guard;			/* the postmaster's socket on the port */
	char		host[64];		/* as written in listen_addresses */
} HeldAddress;

static HeldAddress held[MAX_ADDRESSES];
static int	nheld = 0;

static int
bound_socket(int family, const struct sockaddr *addr, socklen_t addrlen,
			 bool reuseaddr, bool reuseport)
{
	int			fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int			one = 1;

	if (fd < 0)
		return -1;
	if (reuseaddr)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, addr, addrlen) != 0)
	{
		int			save_errno = errno;

		close(fd);
		errno = save_errno;
		return -1;
	}
	return fd;
}

static void
warn_port_taken(const char *host)
{
	ereport(WARNING,
			(errcode_for_socket_access(),
			 errmsg("setstream: could not listen on \"%s\" port %d: %m",
					host, setstream_port),
			 errhint("Another process holds the port, perhaps another cluster with the same setstream.port. The listener will not serve this address until the server restarts.")));
}

/* Check that nobody holds the port on this address, then hold it */
static void
hold_address(struct addrinfo *ai, const char *host)
{
	HeldAddress *h = &held[nheld];
	int			probe;

	probe = bound_socket(ai->ai_family, ai->ai_addr, ai->ai_addrlen, true, false);
	if (probe < 0)
	{
		warn_port_taken(host);
		return;
	}
	close(probe);
	h->guard = bound_socket(ai->ai_family, ai->ai_addr, ai->ai_addrlen, false, true);
	if (h->guard < 0)
	{
		warn_port_taken(host);
		return;
	}
	memcpy(&h->addr, ai->ai_addr, ai->ai_addrlen);
	h->addrlen = ai->ai_addrlen;
	h->family = ai->ai_family;
	strlcpy(h->host, host, sizeof(h->host));
	nheld++;
}

static void
hold_host(const char *host)
{
	struct addrinfo hints;
	struct addrinfo *res;
	char		port[16];
	int			rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(port, sizeof(port), "%d", setstream_port);
	rc = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, port, &hints, &res);
	if (rc != 0)
	{
		ereport(WARNING,
				(errmsg("setstream: could not resolve listen address \"%s\": %s",
						host, gai_strerror(rc))));
		return;
	}
	for (struct addrinfo *ai = res; ai != NULL && nheld < MAX_ADDRESSES; ai = ai->ai_next)
		hold_address(ai, host);
	freeaddrinfo(res);
}

/*
 * In the postmaster, from _PG_init: hold the port on every address.
 * Problems are warnings (an error here would stop the server); a listener
 * with no address to serve says so and idles.
 */
void
listensock_hold_ports(void)
{
	char	   *raw;
	List	   *hosts;
	ListCell   *lc;

	if (setstream_listen_addresses == NULL || setstream_listen_addresses[0] == '\0')
		return;
	raw = pstrdup(setstream_listen_addresses);
	if (!SplitGUCList(raw, ',', &hosts))
	{
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid list syntax in setstream.listen_addresses")));
		return;
	}
	foreach(lc, hosts)
		hold_host((char *) lfirst(lc));
}

/*
 * In a listener: its own listening socket on every address the postmaster
 * holds.  Returns how many are open.
 */
int
listensock_open(int *fds, int max)
{
	int			n = 0;

	for (int i = 0; i < nheld && n < max; i++)
	{
		HeldAddress *h = &held[i];
		int			fd = bound_socket(h->family, (struct sockaddr *) &h->addr,
									  h->addrlen, true, true);

		if (fd < 0 || listen(fd, 1024) != 0)
		{
			ereport(LOG,
					(errcode_for_socket_access(),
					 errmsg("setstream: could not listen on \"%s\" port %d: %m",
							h->host, setstream_port)));
			if (fd >= 0)
				close(fd);
			continue;
		}
		fds[n++] = fd;
	}
	return n;
}
