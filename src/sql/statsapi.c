/*-------------------------------------------------------------------------
 *
 * statsapi.c
 *	  The SQL functions over the counters in shared memory:
 *	  setstream.stream_counters() (shmem/stats.c's per-stream counts, only
 *	  of the streams the caller may see) and setstream.listener_stats()
 *	  (shmem/wakeup.c's listener totals).  The shared memory modules count;
 *	  this file answers SQL and applies the rights (privileges.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/tuplestore.h"

#include "setstream.h"
#include "shmem/stats.h"
#include "shmem/wakeup.h"
#include "sql/privileges.h"

PG_FUNCTION_INFO_V1(setstream_stream_counters);
PG_FUNCTION_INFO_V1(setstream_listener_stats);

static bool
name_listed(List *names, const char *name)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp(lfirst(lc), name) == 0)
			return true;
	return false;
}

/* {"code": count, ...} of the rejections counted */
static Datum
rejected_jsonb(const StreamCounts *c)
{
	StringInfoData rej;
	bool		first = true;

	initStringInfo(&rej);
	appendStringInfoChar(&rej, '{');
	for (int code = SETERR_INVALID_REQUEST; code < STATS_NCODES; code++)
	{
		if (c->rejected[code] == 0)
			continue;
		appendStringInfo(&rej, "%s\"%s\": " UINT64_FORMAT,
						 first ? "" : ", ", seterr_name((SetErr) code),
						 c->rejected[code]);
		first = false;
	}
	appendStringInfoChar(&rej, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(rej.data));
}

/*
 * setstream.stream_counters(): stream, received, rejected (jsonb: code ->
 * count), long_polls; one row per stream that has counted anything.
 */
Datum
setstream_stream_counters(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *counts;
	List	   *visible;
	bool		all;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	counts = stats_snapshot();
	if (counts == NIL)
		return (Datum) 0;

	/* only the streams the caller may see */
	visible = privileges_visible_streams(&all);
	foreach(lc, counts)
	{
		StreamCounts *c = lfirst(lc);
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		if (!all && !name_listed(visible, c->name))
			continue;
		values[0] = CStringGetTextDatum(c->name);
		values[1] = Int64GetDatum((int64) c->received);
		values[2] = rejected_jsonb(c);
		values[3] = Int32GetDatum((int32) c->long_polls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* setstream.listener_stats(): listeners running, open connections, long polls */
Datum
setstream_listener_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	int			connections,
				long_polls,
				listeners;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	wakeup_listener_totals(&connections, &long_polls, &listeners);
	values[0] = Int32GetDatum(listeners);
	values[1] = Int32GetDatum(connections);
	values[2] = Int32GetDatum(long_polls);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
