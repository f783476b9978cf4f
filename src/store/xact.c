/*-------------------------------------------------------------------------
 *
 * xact.c
 *	  Transactions and subtransactions for the workers and the SQL API,
 *	  with one error policy:
 *
 *	  - xact_run: work in a transaction of its own (a background worker's
 *	    turn).  An error, or a failed commit, is reported to the log and
 *	    the transaction aborted; the caller learns it from the result.
 *	  - xact_try: work in a subtransaction, so that one unit (a request, a
 *	    SET, a batch of pushes) fails alone.  An error is rolled back and
 *	    handed to the caller, which decides what it means for that unit;
 *	    only a query cancel escapes, as it would anywhere.  The caller's
 *	    memory context and resource owner are current again on return.
 *	  - xact_begin_turn: inside a transaction, whether setstream is
 *	    installed, and whether it is the extension the stream cache was
 *	    filled from (a DROP and CREATE EXTENSION leaves nothing of it
 *	    valid: the cache is reset).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "storage/proc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "base/pg_compat.h"
#include "store/streamcache.h"
#include "store/xact.h"

/* The extension the stream cache of this process was filled from */
static Oid	cache_extension = InvalidOid;

/*
 * setstream's OID in this database, or InvalidOid; inside a transaction.
 *
 * pg_extension has no syscache: each lookup is an index scan, and
 * emit_trigger made one for every row.  So the answer is kept for the
 * rest of the command that asked: CREATE and DROP EXTENSION end their
 * command, and a command of another transaction does not change what this
 * one sees of the catalog in the middle of a statement that uses the
 * extension (its objects are locked).
 */
Oid
xact_extension(void)
{
	static LocalTransactionId seen_lxid = InvalidLocalTransactionId;
	static CommandId seen_cid = InvalidCommandId;
	static Oid	seen = InvalidOid;

	if (MyProc == NULL || seen_lxid != MyProcLocalTransactionId() ||
		seen_cid != GetCurrentCommandId(false))
	{
		seen = get_extension_oid("setstream", true);
		seen_lxid = MyProc != NULL ? MyProcLocalTransactionId() :
			InvalidLocalTransactionId;
		seen_cid = GetCurrentCommandId(false);
	}
	return seen;
}

/*
 * Begin a turn of database work, inside its transaction: is setstream
 * there, and the same one the cache was filled from?
 */
XactTurn
xact_begin_turn(void)
{
	Oid			ext = xact_extension();
	bool		recreated = false;

	if (ext != cache_extension)
	{
		streamcache_reset();
		recreated = OidIsValid(cache_extension) && OidIsValid(ext);
		cache_extension = ext;
	}
	if (!OidIsValid(ext))
		return XACT_NO_EXTENSION;
	return recreated ? XACT_RECREATED : XACT_SAME;
}

/*
 * Run work(arg) in a transaction of its own, with a snapshot.  Returns
 * false, the error logged and the transaction aborted, when it (or its
 * commit) failed.  The caller's memory context is current again on return.
 */
bool
xact_run(XactWork work, void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	PG_TRY();
	{
		work(arg);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	return ok;
}

/*
 * Run work(arg) in a subtransaction (in the caller's memory context).
 * Returns false when it raised: the subtransaction is rolled back, and the
 * error, copied into the caller's context, goes to *error (or is freed
 * when error is NULL).  A query cancel is raised again.
 */
bool
xact_try(XactWork work, void *arg, ErrorData **error)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		work(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
		if (error != NULL)
			*error = edata;
		else
			FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return ok;
}
