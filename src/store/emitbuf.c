/*-------------------------------------------------------------------------
 *
 * emitbuf.c
 *	  Batching of the SETs emit_trigger queues.  The rows that one
 *	  statement's AFTER ... FOR EACH ROW triggers emit are stored with one
 *	  multi-row INSERT when the statement's triggers have fired (an
 *	  ExecutorFinish hook), and every EMITBUF_MAX_ROWS rows, instead of one
 *	  INSERT per row: one executor start, one preparation of the outbox's
 *	  CHECK, indexes and foreign key per batch.
 *
 *	  A row is buffered only while the triggers of a statement fire under
 *	  the hook; the buffer belongs to that statement's nesting depth and
 *	  subtransaction and is stored before the statement returns, so what
 *	  SQL can see is what one INSERT per row gives.  Triggers fired
 *	  elsewhere (deferred to commit, by SET CONSTRAINTS, by a top-level
 *	  COPY) store their row at once, as does emit().  A subtransaction that
 *	  aborts drops the rows buffered inside it; the transaction's end drops
 *	  the rest, and a commit with rows still buffered is refused rather than
 *	  losing them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/executor.h"
#include "utils/memutils.h"

#include "store/emitbuf.h"
#include "store/store.h"

#define EMITBUF_MAX_ROWS	1000
#define EMITBUF_MAX_BYTES	(16 * 1024 * 1024)

static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;

static int	finish_depth = 0;	/* ExecutorFinish calls under way */
static int	buffer_depth = 0;	/* the depth whose rows are buffered */
static SubTransactionId buffer_subxid = InvalidSubTransactionId;
static MemoryContext buffer_cxt = NULL;
static EmitRow *rows = NULL;
static int	nrows = 0;
static size_t nbytes = 0;

/* An empty buffer (its memory is the caller's business) */
static void
forget_rows(void)
{
	rows = NULL;
	nrows = 0;
	nbytes = 0;
	buffer_depth = 0;
	buffer_subxid = InvalidSubTransactionId;
}

static void
discard(void)
{
	forget_rows();
	if (buffer_cxt != NULL)
		MemoryContextReset(buffer_cxt);
}

/* Store the buffered rows, in the order they were emitted */
static void
flush(void)
{
	EmitRow    *batch = rows;
	int			n = nrows;

	if (n == 0)
		return;
	/* the INSERT's own triggers may emit: start from an empty buffer */
	forget_rows();
	store_insert_outbox_rows(batch, n);
	MemoryContextReset(buffer_cxt);
}

static void
emitbuf_executor_finish(QueryDesc *queryDesc)
{
	int			depth = ++finish_depth;

	PG_TRY();
	{
		if (prev_ExecutorFinish)
			prev_ExecutorFinish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
		if (nrows > 0 && buffer_depth == depth)
			flush();
	}
	PG_CATCH();
	{
		/* what this statement buffered is void with it */
		if (nrows > 0 && buffer_depth >= depth)
			discard();
		finish_depth = depth - 1;
		PG_RE_THROW();
	}
	PG_END_TRY();
	finish_depth = depth - 1;
}

static void
emitbuf_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			if (nrows > 0)
				elog(ERROR, "setstream: %d emitted SETs were not stored before commit",
					 nrows);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* buffer_cxt was a child of TopTransactionContext */
			forget_rows();
			buffer_cxt = NULL;
			finish_depth = 0;
			break;
	}
}

static void
emitbuf_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	/* rows buffered in the aborted subtransaction or one of its children */
	if (event == SUBXACT_EVENT_ABORT_SUB && nrows > 0 && buffer_subxid >= mySubid)
		discard();
}

/* Once per backend, from _PG_init */
void
emitbuf_init(void)
{
	prev_ExecutorFinish = ExecutorFinish_hook;
	ExecutorFinish_hook = emitbuf_executor_finish;
	RegisterXactCallback(emitbuf_xact_callback, NULL);
	RegisterSubXactCallback(emitbuf_subxact_callback, NULL);
}

static char *
copy(const char *s)
{
	size_t		len = strlen(s);

	nbytes += len;
	return MemoryContextStrdup(buffer_cxt, s);
}

/*
 * Queue one signed SET for the outbox: buffered when a statement's
 * triggers are firing in the subtransaction of the rows already buffered,
 * stored at once otherwise.
 */
void
emitbuf_add(const char *stream, const char *jti, const char *event_type,
			const char *claims, const char *token)
{
	SubTransactionId subxid = GetCurrentSubTransactionId();
	EmitRow    *row;

	if (finish_depth == 0 ||
		(nrows > 0 && (buffer_depth != finish_depth || buffer_subxid != subxid)))
	{
		store_insert_outbox(stream, jti, event_type, claims, token);
		return;
	}
	if (buffer_cxt == NULL)
		buffer_cxt = AllocSetContextCreate(TopTransactionContext,
										   "setstream emit buffer",
										   ALLOCSET_DEFAULT_SIZES);
	if (rows == NULL)
		rows = MemoryContextAlloc(buffer_cxt, sizeof(EmitRow) * EMITBUF_MAX_ROWS);
	buffer_depth = finish_depth;
	buffer_subxid = subxid;
	row = &rows[nrows++];
	row->stream = copy(stream);
	row->jti = copy(jti);
	row->event_type = copy(event_type);
	row->claims = copy(claims);
	row->token = copy(token);
	if (nrows >= EMITBUF_MAX_ROWS || nbytes >= EMITBUF_MAX_BYTES)
		flush();
}
