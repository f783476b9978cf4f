/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  Background worker lifecycle of the listener.
 *
 *	  _PG_init registers one supervisor per setstream.workers.  A supervisor
 *	  connects to no database (shared catalogs only); it waits, quietly,
 *	  until setstream.database exists, then starts a listener as a dynamic
 *	  background worker and waits for it to end.  When the listener ends
 *	  (it crashed, was terminated, or its database was dropped), the
 *	  supervisor starts it again, or waits for the database to come back.
 *	  A dropped database therefore costs no crash loop and no log spam.
 *	  While its listener runs, a supervisor is also the listener's WAL
 *	  flusher (shmem/walflush.c).
 *
 *	  The supervisor also waits until the role setstream.role exists, can
 *	  log in and is not a superuser (CREATE EXTENSION setstream creates
 *	  setstream_worker); it never runs user code itself.
 *
 *	  A listener connects to setstream.database as setstream.role, pins
 *	  synchronous_commit and search_path, waits until the extension
 *	  exists there before touching its tables, and runs the event loop;
 *	  listeners share the port with SO_REUSEPORT, on addresses the
 *	  postmaster holds for them (listensock.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "base/pg_builtins.h"

#include "access/xact.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"

#include "server/listener.h"
#include "outbound/outbound.h"
#include "outbound/sender.h"
#include "outbound/tokenrenew.h"
#include "setstream.h"
#include "shmem/walflush.h"
#include "store/xact.h"
#include "worker/worker.h"

PGDLLEXPORT void setstream_worker_main(Datum arg);
PGDLLEXPORT void setstream_supervisor_main(Datum arg);
PGDLLEXPORT void setstream_sender_main(Datum arg);
PGDLLEXPORT void setstream_sender_supervisor_main(Datum arg);
PGDLLEXPORT void setstream_token_renewer_main(Datum arg);

#define WAIT_FOR_EXTENSION_MS 2000
#define WAIT_FOR_DATABASE_MS 2000
#define RESTART_DELAY_MS 5000	/* a listener that ended starts again after
								 * this long, as bgw_restart_time would */
#define SLOT_RETRY_MS 1000		/* no worker slot was free: try again after */

static void
fill_worker(BackgroundWorker *worker, int index, const char *function,
			const char *type)
{
	memset(worker, 0, sizeof(*worker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	snprintf(worker->bgw_library_name, BGW_MAXLEN, "setstream");
	snprintf(worker->bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker->bgw_name, BGW_MAXLEN, "%s %d", type, index);
	snprintf(worker->bgw_type, BGW_MAXLEN, "%s", type);
	worker->bgw_main_arg = Int32GetDatum(index);
}

/*
 * From _PG_init under shared_preload_libraries: one supervisor per sender
 * (setstream.senders; 0 disables outbound delivery)
 */
static void
register_senders(void)
{
	BackgroundWorker worker;

	for (int i = 0; i < setstream_senders && i < MAX_SENDERS; i++)
	{
		fill_worker(&worker, i, "setstream_sender_supervisor_main",
					"setstream sender supervisor");
		worker.bgw_restart_time = 5;
		RegisterBackgroundWorker(&worker);
	}
}

/* From _PG_init under shared_preload_libraries */
void
worker_register_all(void)
{
	BackgroundWorker worker;

	register_senders();
	if (setstream_listen_addresses == NULL || setstream_listen_addresses[0] == '\0')
		return;
	for (int i = 0; i < setstream_workers; i++)
	{
		fill_worker(&worker, i, "setstream_supervisor_main", "setstream supervisor");
		worker.bgw_restart_time = 5;
		RegisterBackgroundWorker(&worker);
	}
}

static void
sleep_ms(long ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/*
 * Call "visit" on each row of the shared catalog "relid" until it returns
 * true.  Without a database of our own only a heap scan of a shared catalog
 * works (as in the autovacuum launcher).
 */
static void
scan_shared_catalog(Oid relid, bool (*visit) (HeapTuple tup, void *arg),
					void *arg)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(relid, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
		if (visit(tup, arg))
			break;
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
}

/* What a catalog visit looks for, and what it found */
typedef struct CatalogProbe
{
	const char *name;
	bool		found;
	int			state;			/* visit_role: a RoleState */
} CatalogProbe;

static bool
visit_database(HeapTuple tup, void *arg)
{
	CatalogProbe *p = arg;
	Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

	p->found = strcmp(NameStr(db->datname), p->name) == 0 &&
		db->datconnlimit != DATCONNLIMIT_INVALID_DB;
	return p->found;
}

/* Does the database exist (and is it not half dropped)? */
static bool
database_exists(const char *name)
{
	CatalogProbe p = {name, false};

	scan_shared_catalog(DatabaseRelationId, visit_database, &p);
	return p.found;
}

/* What the supervisor found of setstream.role */
typedef enum RoleState
{
	ROLE_OK,
	ROLE_MISSING,
	ROLE_SUPERUSER,
	ROLE_NOLOGIN,
	ROLE_NOBYPASSRLS
} RoleState;

static bool
visit_role(HeapTuple tup, void *arg)
{
	CatalogProbe *p = arg;
	Form_pg_authid role = (Form_pg_authid) GETSTRUCT(tup);

	if (strcmp(NameStr(role->rolname), p->name) != 0)
		return false;
	p->found = true;
	p->state = role->rolsuper ? ROLE_SUPERUSER :
		!role->rolcanlogin ? ROLE_NOLOGIN :
		!role->rolbypassrls ? ROLE_NOBYPASSRLS : ROLE_OK;
	return true;
}

/* Can the listener connect as "name" (pg_authid, a shared catalog)? */
static RoleState
role_state(const char *name)
{
	CatalogProbe p = {name, false};

	scan_shared_catalog(AuthIdRelationId, visit_role, &p);
	return p.found ? (RoleState) p.state : ROLE_MISSING;
}

/* Say once, for each new state, why the listener does not start */
static void
report_role_state(RoleState state, RoleState *told, const char *type)
{
	if (state == *told)
		return;
	*told = state;
	switch (state)
	{
		case ROLE_OK:
			break;
		case ROLE_MISSING:
			ereport(LOG,
					(errmsg("%s waits for role \"%s\" (setstream.role) to exist",
							type, setstream_role),
					 errhint("CREATE EXTENSION setstream creates the role setstream_worker.")));
			break;
		case ROLE_SUPERUSER:
			ereport(WARNING,
					(errmsg("%s does not start: role \"%s\" (setstream.role) is a superuser",
							type, setstream_role),
					 errdetail("The listener runs user triggers on setstream.events; it must not run them with superuser rights."),
					 errhint("Name a role that is not a superuser, such as setstream_worker.")));
			break;
		case ROLE_NOLOGIN:
			ereport(WARNING,
					(errmsg("%s does not start: role \"%s\" (setstream.role) cannot log in",
							type, setstream_role),
					 errhint("ALTER ROLE %s LOGIN.", quote_identifier(setstream_role))));
			break;
		case ROLE_NOBYPASSRLS:
			ereport(WARNING,
					(errmsg("setstream listener does not start: role \"%s\" (setstream.role) does not have BYPASSRLS",
							setstream_role),
					 errdetail("The listener serves every stream; row-level security would hide them from it."),
					 errhint("ALTER ROLE %s BYPASSRLS (CREATE EXTENSION setstream does it for setstream_worker).",
							 quote_identifier(setstream_role))));
			break;
	}
}

static BackgroundWorkerHandle *listener_handle = NULL;

/* A supervisor that exits takes its listener along: its successor starts one */
static void
stop_listener_at_exit(int code, Datum arg)
{
	if (listener_handle != NULL)
		TerminateBackgroundWorker(listener_handle);
}

/* Did the last attempt find no worker slot (and say so)? */
static bool slot_warned = false;

/*
 * Start listener "index" and wait for it to end.  When every
 * max_worker_processes slot is taken, say so once and try again every
 * second, quietly, until one is free.
 */
/* "listener" for "setstream listener" */
static const char *
child_noun(const char *type)
{
	return strncmp(type, "setstream ", 10) == 0 ? type + 10 : type;
}

static void
detach_flusher(int code, Datum arg)
{
	walflush_attach_flusher(DatumGetInt32(arg), NULL);
}

/*
 * Wait for the child to end (as WaitForBackgroundWorkerShutdown does);
 * meanwhile a listener's supervisor is its WAL flusher (shmem/walflush.c):
 * woken by its listener, it flushes the WAL the listener waits for.
 */
static void
wait_for_child(BackgroundWorkerHandle *handle, int index, bool flusher)
{
	pid_t		pid;

	if (flusher)
		walflush_attach_flusher(index, MyLatch);
	PG_ENSURE_ERROR_CLEANUP(detach_flusher, Int32GetDatum(index));
	{
		while (GetBackgroundWorkerPid(handle, &pid) != BGWH_STOPPED)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 1000, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			if (ConfigReloadPending)
			{
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
			}
			if (flusher)
				walflush_serve(index);
		}
	}
	PG_END_ENSURE_ERROR_CLEANUP(detach_flusher, Int32GetDatum(index));
	detach_flusher(0, Int32GetDatum(index));
}

static void
run_child(int index, const char *function, const char *type)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	pid_t		pid;

	fill_worker(&worker, index, function, type);
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		if (!slot_warned)
			ereport(WARNING,
					(errmsg("setstream supervisor %d could not start its %s: no background worker slot is free",
							index, child_noun(type)),
					 errdetail("All %d max_worker_processes slots are in use; it tries again every second.",
							   max_worker_processes),
					 errhint("Raise max_worker_processes: setstream needs two per setstream.workers, besides parallel query and other extensions.")));
		slot_warned = true;
		sleep_ms(SLOT_RETRY_MS);
		return;
	}
	if (slot_warned)
		ereport(LOG,
				(errmsg("setstream supervisor %d started its %s: a background worker slot is free again",
						index, child_noun(type))));
	slot_warned = false;
	listener_handle = handle;
	if (WaitForBackgroundWorkerStartup(handle, &pid) == BGWH_STARTED)
		wait_for_child(handle, index, strcmp(type, "setstream listener") == 0);
	listener_handle = NULL;
	pfree(handle);
	sleep_ms(RESTART_DELAY_MS);
}

/* A supervisor: keeps one listener running while its database exists */
static void
supervise(int index, const char *function, const char *type)
{
	bool		told = false;
	RoleState	role_told = ROLE_OK;
	RoleState	role;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname(strcmp(type, "setstream listener") == 0 ?
						  "setstream supervisor" : "setstream sender supervisor");
	before_shmem_exit(stop_listener_at_exit, (Datum) 0);

	for (;;)
	{
		if (!database_exists(setstream_database))
		{
			if (!told)
				ereport(LOG,
						(errmsg("%s waits for database \"%s\" (setstream.database) to exist",
								type, setstream_database)));
			told = true;
			sleep_ms(WAIT_FOR_DATABASE_MS);
			continue;
		}
		told = false;
		role = role_state(setstream_role);
		report_role_state(role, &role_told, type);
		if (role != ROLE_OK)
		{
			sleep_ms(WAIT_FOR_DATABASE_MS);
			continue;
		}
		run_child(index, function, type);
	}
}

void
setstream_supervisor_main(Datum arg)
{
	supervise(DatumGetInt32(arg), "setstream_worker_main", "setstream listener");
}

/* Keeps one sender running while its database exists */
void
setstream_sender_supervisor_main(Datum arg)
{
	supervise(DatumGetInt32(arg), "setstream_sender_main", "setstream sender");
}

static bool
extension_exists(void)
{
	bool		exists;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	exists = OidIsValid(xact_extension());
	CommitTransactionCommand();
	return exists;
}

/* Sleep until CREATE EXTENSION setstream has run in our database */
static void
wait_for_extension(const char *type)
{
	bool		told = false;

	while (!extension_exists())
	{
		if (!told)
		{
			ereport(LOG,
					(errmsg("%s waits for CREATE EXTENSION setstream in database \"%s\"",
							type, setstream_database)));
			told = true;
		}
		pgstat_report_activity(STATE_IDLE, NULL);
		sleep_ms(WAIT_FOR_EXTENSION_MS);
	}
}

/*
 * The listener's session: never a superuser; synchronous_commit on whatever
 * the database, the role or a user trigger says (nothing is answered
 * before the WAL flush that makes it true); search_path pg_catalog,
 * pg_temp over the database's and role's settings (every statement of
 * setstream is schema-qualified too; a trigger function may still SET its
 * own path).
 */
static void
pin_session(void)
{
	if (superuser())
		ereport(FATAL,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("setstream listener must not run as a superuser (role \"%s\")",
						setstream_role)));
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET,
					PGC_S_SESSION);
}

/*
 * What a listener and a sender do first: signals, a connection to
 * setstream.database as setstream.role, a pinned session, and the
 * extension present.  Returns the worker's index.
 */
static int
worker_start(Datum arg, const char *name)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(setstream_database, setstream_role, 0);
	pgstat_report_appname(name);
	pin_session();

	wait_for_extension(name);
	return DatumGetInt32(arg);
}

void
setstream_worker_main(Datum arg)
{
	listener_run(worker_start(arg, "setstream listener"));
}

/*
 * A token renewer (started by sender 0: tokenrenew.c): one subscription's
 * OAuth access token, named by bgw_extra (a stream name of 128 bytes
 * fills it unterminated), then it exits
 */
void
setstream_token_renewer_main(Datum arg)
{
	char	   *stream;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(setstream_database, setstream_role, 0);
	pgstat_report_appname("setstream token renewer");
	pin_session();
	stream = pnstrdup(MyBgworkerEntry->bgw_extra, BGW_EXTRALEN);
	tokenrenew_run(stream);
	proc_exit(0);
}

/* A sender: RFC 8935 push of the streams whose delivery is push (sender.c) */
void
setstream_sender_main(Datum arg)
{
	sender_run(worker_start(arg, "setstream sender"));
}
