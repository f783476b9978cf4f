/*-------------------------------------------------------------------------
 *
 * tokenrenew.c
 *	  Renewing the OAuth access tokens of SSF subscriptions (issue 13).
 *	  The poll client of a subscription made with OAuth client credentials
 *	  (subscribe) presents an access token, and that token expires.
 *
 *	  Sender 0 looks once a second (tokenrenew_when_due) for the tokens
 *	  that are past the time they are good until (their expiry less a
 *	  margin: subscribeapi.c), or that the transmitter refused (the
 *	  source counts 401s), and starts the token renewer for one of them:
 *	  a short-lived background worker (tokenrenew_run) that asks the
 *	  token endpoint for a new token, as subscribe does, stores it as the
 *	  source's Authorization header and exits.  The token request is a
 *	  synchronous HTTP request; made in the sender it would stall every
 *	  stream's pushes and polls for as long as the token endpoint takes.
 *	  The senders read their sources again at the renewer's commit.
 *
 *	  One renewer runs at a time.  A stream is not tried again sooner
 *	  than RETRY_MS after a renewer was started for it; while its token
 *	  stays due (the token endpoint fails) the wait doubles, up to
 *	  MAX_RETRY_MS, so that a failing endpoint is not hammered.  A stream
 *	  whose token is no longer due starts over.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "postmaster/bgworker.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "outbound/tokenrenew.h"
#include "sql/subscribeapi.h"
#include "store/store.h"
#include "store/xact.h"

#define CHECK_INTERVAL_MS 1000	/* sender 0 looks for due tokens this often */
#define RETRY_MS 10000			/* least wait before a stream is tried again */
#define MAX_RETRY_MS 600000		/* the longest wait, while it keeps failing */

/* A stream a renewer was started for, and when it may be tried again */
typedef struct RenewTry
{
	char	   *stream;
	TimestampTz next_try_at;
	int			wait_ms;
} RenewTry;

/* Sender 0's state, in TopMemoryContext */
static BackgroundWorkerHandle *renewer = NULL;
static List *tries = NIL;		/* RenewTry * */
static TimestampTz next_check_at = 0;
static bool slot_warned = false;

/* Has the renewer started last ended (or none was started)? */
static bool
renewer_running(void)
{
	pid_t		pid;
	BgwHandleStatus status;

	if (renewer == NULL)
		return false;
	status = GetBackgroundWorkerPid(renewer, &pid);
	if (status == BGWH_STOPPED || status == BGWH_POSTMASTER_DIED)
	{
		pfree(renewer);
		renewer = NULL;
		return false;
	}
	return true;
}

/* The try of the stream, made when there is none */
static RenewTry *
try_of(const char *stream)
{
	ListCell   *lc;
	MemoryContext old;
	RenewTry   *t;

	foreach(lc, tries)
	{
		t = lfirst(lc);
		if (strcmp(t->stream, stream) == 0)
			return t;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	t = palloc0(sizeof(RenewTry));
	t->stream = pstrdup(stream);
	t->wait_ms = RETRY_MS;
	tries = lappend(tries, t);
	MemoryContextSwitchTo(old);
	return t;
}

/* Forget the tries of streams whose token is no longer due */
static void
forget_tries_not_in(List *due)
{
	ListCell   *lc;

	foreach(lc, tries)
	{
		RenewTry   *t = lfirst(lc);
		bool		still = false;
		ListCell   *dc;

		foreach(dc, due)
			if (strcmp(lfirst(dc), t->stream) == 0)
				still = true;
		if (!still)
		{
			tries = foreach_delete_current(tries, lc);
			pfree(t->stream);
			pfree(t);
		}
	}
}

/*
 * Start the renewer for the stream; false when no background worker slot
 * is free (said once, until one is again)
 */
static bool
start_renewer(const char *stream)
{
	BackgroundWorker w;
	MemoryContext old;
	bool		ok;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "setstream");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "setstream_token_renewer_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "setstream token renewer");
	snprintf(w.bgw_type, BGW_MAXLEN, "setstream token renewer");
	w.bgw_notify_pid = MyProcPid;
	/* a stream name is at most 128 bytes: BGW_EXTRALEN, unterminated then */
	memcpy(w.bgw_extra, stream, Min(strlen(stream), BGW_EXTRALEN));
	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&w, &renewer);
	MemoryContextSwitchTo(old);
	if (!ok)
	{
		renewer = NULL;
		if (!slot_warned)
			ereport(WARNING,
					(errmsg("setstream sender could not start a token renewer: no background worker slot is free"),
					 errdetail("The access token of stream \"%s\" is due for renewal; the sender tries again every second.",
							   stream),
					 errhint("Raise max_worker_processes.")));
		slot_warned = true;
		return false;
	}
	slot_warned = false;
	return true;
}

/*
 * Sender 0, in its turn's transaction: start a renewer for the first due
 * token whose stream may be tried now, unless one is running
 */
void
tokenrenew_when_due(TimestampTz now)
{
	List	   *due;
	ListCell   *lc;

	if (now < next_check_at)
		return;
	next_check_at = now + CHECK_INTERVAL_MS * 1000;
	if (renewer_running() || !store_schema_is_0_4())
		return;
	due = store_tokens_due(now);
	foreach(lc, due)
	{
		RenewTry   *t = try_of(lfirst(lc));

		if (t->next_try_at > now)
			continue;
		if (start_renewer(t->stream))
		{
			t->next_try_at = now + (TimestampTz) t->wait_ms * 1000;
			t->wait_ms = Min(t->wait_ms * 2, MAX_RETRY_MS);
		}
		break;
	}
	forget_tries_not_in(due);
}

/* The renewer's transaction: the stream's token, if setstream is there */
static void
renew_in_xact(void *arg)
{
	if (!OidIsValid(xact_extension()) || !store_schema_is_0_4())
		return;
	subscription_renew_source_token((const char *) arg);
}

/* The token renewer (worker.c starts it): one token, then it exits */
void
tokenrenew_run(const char *stream)
{
	if (xact_run(renew_in_xact, (void *) stream))
		ereport(DEBUG1,
				(errmsg("setstream token renewer renewed the access token of stream \"%s\"",
						stream)));
}
