/*-------------------------------------------------------------------------
 *
 * handoff.c
 *	  Connections spread evenly over the listeners.
 *
 *	  With setstream.workers > 1 every listener has its own SO_REUSEPORT
 *	  socket (listensock.c) and the kernel picks one by a hash of the
 *	  connection's addresses: for short requests that evens out, but a few
 *	  long-lived connections (pushpull WebSocket sessions, keep-alive
 *	  clients, parked long polls) often land unevenly, and then one
 *	  listener works for most of them while the other idles.
 *
 *	  So a listener that accepts a connection while it holds more
 *	  connections than the least loaded other listener passes it on,
 *	  before reading a byte of it (before the TLS handshake too): the
 *	  descriptor goes over a Unix socket (SCM_RIGHTS) to that listener,
 *	  which serves it as if it had accepted it.  A listener's load is its
 *	  open connections (in shared memory, written at each change) plus the
 *	  connections passed to it that it has not taken yet.  A passed
 *	  connection is never passed again.
 *
 *	  The channels are made by the postmaster (from _PG_init, under
 *	  shared_preload_libraries), one socket pair per listener, and
 *	  inherited by the listeners: listener i receives on pairs[i][0], any
 *	  listener sends to i on pairs[i][1].  Each listener closes the
 *	  receiving ends of the others.  Connections passed to a listener that
 *	  exits before taking them wait in its channel for its successor
 *	  (bgw_restart_time); a listener that is not serving (not attached) is
 *	  never chosen.  When anything fails (no channel, a full one) the
 *	  listener that accepted the connection serves it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <unistd.h>

#include "port/atomics.h"
#include "storage/shmem.h"

#include "server/handoff.h"
#include "setstream.h"
#include "shmem/shmem.h"
#include "shmem/wakeup.h"

typedef struct HandoffSlot
{
	pg_atomic_uint32 serving;	/* 1 while a listener is attached */
	pg_atomic_uint32 open;		/* its open connections */
	pg_atomic_uint32 pending;	/* passed to it, not taken yet */
} HandoffSlot;

typedef struct HandoffShared
{
	HandoffSlot slots[MAX_LISTENERS];
} HandoffShared;

static HandoffShared *shared = NULL;

/* Made in the postmaster, inherited: [i][0] receives for i, [i][1] sends */
static int	channels[MAX_LISTENERS][2];
static int	nchannels = 0;

/* This listener's index, or -1 (not a listener, or no balancing) */
static int	my_index = -1;

static Size
handoff_shmem_size(void)
{
	return MAXALIGN(sizeof(HandoffShared));
}

/* Attach (and fill, the first time); under AddinShmemInitLock (shmem.c) */
static void
handoff_shmem_init(void)
{
	bool		found;

	shared = ShmemInitStruct("setstream handoff", sizeof(HandoffShared),
							 &found);
	if (!found)
	{
		for (int i = 0; i < MAX_LISTENERS; i++)
		{
			pg_atomic_init_u32(&shared->slots[i].serving, 0);
			pg_atomic_init_u32(&shared->slots[i].open, 0);
			pg_atomic_init_u32(&shared->slots[i].pending, 0);
		}
	}
}

static const ShmemArea handoff_area = {
	NULL, handoff_shmem_size, handoff_shmem_init
};

/* From _PG_init, while shared_preload_libraries loads */
void
handoff_request_shmem(void)
{
	shmem_add_area(&handoff_area);
}

/*
 * In the postmaster, from _PG_init: one channel per listener when there
 * is more than one.  A failure is a warning: each listener then serves
 * what it accepts.
 */
void
handoff_create_channels(void)
{
	int			n = Min(setstream_workers, MAX_LISTENERS);

	if (n < 2)
		return;
	for (int i = 0; i < n; i++)
	{
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC,
					   0, channels[i]) != 0)
		{
			ereport(WARNING,
					(errcode_for_socket_access(),
					 errmsg("setstream: could not create the listeners' hand-off channels: %m"),
					 errdetail("Each listener serves the connections the kernel gives it.")));
			for (int j = 0; j < i; j++)
			{
				close(channels[j][0]);
				close(channels[j][1]);
			}
			return;
		}
	}
	nchannels = n;
}

static void
adjust(pg_atomic_uint32 *counter, int delta)
{
	uint32		old = pg_atomic_read_u32(counter);

	/* never below zero: a listener that restarted counts afresh */
	while (!pg_atomic_compare_exchange_u32(counter, &old,
										   (delta < 0 && old == 0) ? 0 : old + delta))
		;
}

/*
 * In listener "index": take part in the hand-off.  Returns the descriptor
 * on which connections passed to it arrive, or -1 when there is no
 * balancing (one listener, no shared memory, no channels).
 */
int
handoff_attach(int index)
{
	if (shared == NULL || index < 0 || index >= nchannels)
		return -1;
	for (int i = 0; i < nchannels; i++)
		if (i != index)
			close(channels[i][0]);
	my_index = index;
	pg_atomic_write_u32(&shared->slots[index].open, 0);
	pg_atomic_write_u32(&shared->slots[index].pending, 0);
	pg_memory_barrier();
	pg_atomic_write_u32(&shared->slots[index].serving, 1);
	return channels[index][0];
}

/* The listener stops serving: no more connections are passed to it */
void
handoff_detach(void)
{
	if (my_index >= 0)
		pg_atomic_write_u32(&shared->slots[my_index].serving, 0);
}

/* The listener's open connections changed */
void
handoff_note_open(int connections)
{
	if (my_index >= 0)
		pg_atomic_write_u32(&shared->slots[my_index].open, (uint32) connections);
}

static uint32
load_of(int i)
{
	return pg_atomic_read_u32(&shared->slots[i].open) +
		pg_atomic_read_u32(&shared->slots[i].pending);
}

/* The serving listener with the least load but this one, or -1 */
static int
least_loaded_other(uint32 *load)
{
	int			best = -1;

	for (int i = 0; i < nchannels; i++)
	{
		uint32		l;

		if (i == my_index || pg_atomic_read_u32(&shared->slots[i].serving) == 0)
			continue;
		l = load_of(i);
		if (best < 0 || l < *load)
		{
			best = i;
			*load = l;
		}
	}
	return best;
}

/* One message on a channel: a byte, and a descriptor beside it */
typedef struct HandoffMessage
{
	char		byte;
	struct iovec iov;
	struct msghdr msg;
	/* last: clang does not take CMSG_SPACE() for a constant */
	union
	{
		struct cmsghdr align;
		char		buf[CMSG_SPACE(sizeof(int))];
	}			control;
} HandoffMessage;

static void
message_init(HandoffMessage *m)
{
	memset(m, 0, sizeof(*m));
	m->byte = 'c';
	m->iov.iov_base = &m->byte;
	m->iov.iov_len = 1;
	m->msg.msg_iov = &m->iov;
	m->msg.msg_iovlen = 1;
	m->msg.msg_control = m->control.buf;
	m->msg.msg_controllen = sizeof(m->control.buf);
}

static bool
send_descriptor(int channel, int fd)
{
	HandoffMessage m;
	struct cmsghdr *cmsg;

	message_init(&m);
	cmsg = CMSG_FIRSTHDR(&m.msg);
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	return sendmsg(channel, &m.msg, MSG_DONTWAIT | MSG_NOSIGNAL) == 1;
}

/*
 * A connection this listener just accepted: pass it to the least loaded
 * other listener when this one already holds more (served here, it would
 * hold two more).  True when passed (the descriptor is then closed here).
 */
bool
handoff_pass(int fd)
{
	uint32		mine;
	uint32		theirs = 0;
	int			to;

	if (my_index < 0)
		return false;
	mine = load_of(my_index);
	to = least_loaded_other(&theirs);
	if (to < 0 || mine <= theirs)
		return false;
	/* counted before it can be taken, so that the count never goes below */
	adjust(&shared->slots[to].pending, 1);
	if (!send_descriptor(channels[to][1], fd))
	{
		adjust(&shared->slots[to].pending, -1);
		return false;
	}
	close(fd);
	return true;
}

/* A connection passed to this listener, or -1 when none is waiting */
int
handoff_receive(void)
{
	HandoffMessage m;
	struct cmsghdr *cmsg;
	int			fd = -1;

	if (my_index < 0)
		return -1;
	message_init(&m);
	if (recvmsg(channels[my_index][0], &m.msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) <= 0)
		return -1;
	adjust(&shared->slots[my_index].pending, -1);
	cmsg = CMSG_FIRSTHDR(&m.msg);
	if (cmsg != NULL && cmsg->cmsg_level == SOL_SOCKET &&
		cmsg->cmsg_type == SCM_RIGHTS &&
		cmsg->cmsg_len == CMSG_LEN(sizeof(int)) &&
		!(m.msg.msg_flags & MSG_CTRUNC))
		memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
	else
		elog(LOG, "setstream: a hand-off message without a descriptor");
	return fd;
}
