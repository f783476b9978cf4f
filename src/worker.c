/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  Background worker lifecycle of the listener: registration from
 *	  _PG_init (one worker per setstream.workers, sharing the port with
 *	  SO_REUSEPORT), signals, the database connection, and waiting until
 *	  the extension exists before touching its tables.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"

#include "listener.h"
#include "setstream.h"
#include "worker.h"

PGDLLEXPORT void setstream_worker_main(Datum arg);

#define WAIT_FOR_EXTENSION_MS 2000

/* From _PG_init under shared_preload_libraries */
void
worker_register_all(void)
{
	BackgroundWorker worker;

	if (setstream_listen_addresses == NULL || setstream_listen_addresses[0] == '\0')
		return;
	for (int i = 0; i < setstream_workers; i++)
	{
		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
			BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 5;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "setstream");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "setstream_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "setstream listener %d", i);
		snprintf(worker.bgw_type, BGW_MAXLEN, "setstream listener");
		worker.bgw_main_arg = Int32GetDatum(i);
		RegisterBackgroundWorker(&worker);
	}
}

static bool
extension_exists(void)
{
	bool		exists;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	exists = OidIsValid(get_extension_oid("setstream", true));
	CommitTransactionCommand();
	return exists;
}

/* Sleep until CREATE EXTENSION setstream has run in our database */
static void
wait_for_extension(void)
{
	bool		told = false;

	while (!extension_exists())
	{
		if (!told)
		{
			ereport(LOG,
					(errmsg("setstream listener waits for CREATE EXTENSION setstream in database \"%s\"",
							setstream_database)));
			told = true;
		}
		pgstat_report_activity(STATE_IDLE, NULL);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 WAIT_FOR_EXTENSION_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

void
setstream_worker_main(Datum arg)
{
	int			index = DatumGetInt32(arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(setstream_database, NULL, 0);
	pgstat_report_appname("setstream listener");

	wait_for_extension();
	listener_run(index);
}
