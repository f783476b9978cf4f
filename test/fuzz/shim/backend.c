/*-------------------------------------------------------------------------
 *
 * backend.c
 *	  The rest of the backend API the fuzzed files call: Lists (the PG 15
 *	  array representation), a dynahash for the key cache (linear, but
 *	  with dynahash's interface and entry stability), a deterministic
 *	  clock, setstream's GUC variables at their defaults, and a database
 *	  that is not UTF-8 (jsonread.c then builds no jsonb values: jsonb is
 *	  the backend's, checked against jsonb_in by the protocol tests).
 *
 *-------------------------------------------------------------------------
 */
#include "shim.h"

#include <stdlib.h>
#include <string.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

int
GetDatabaseEncoding(void)
{
	return PG_SQL_ASCII;
}

/* GUC variables, as src/setstream.c defines them, at their defaults */
int			setstream_max_request_bytes = 1024 * 1024;
int			setstream_idle_timeout_ms = 60000;
int			setstream_max_buffered_bytes = 64 * 1024 * 1024;
int			setstream_poll_timeout_ms = 30000;
int			setstream_redelivery_interval_ms = 60000;
int			setstream_max_poll_events = 1000;
int			setstream_jwks_max_age_s = 60;
int			setstream_ssf_min_verification_interval_s = 5;
int			setstream_ssf_inactivity_timeout_s = 0;
/* (not the default "": the SSF discovery document is built, and fuzzed) */
char	   *setstream_public_url = "https://fuzz.example/tenant/";
char	   *setstream_issuer = "https://fuzz.example/tenant";
int			setstream_default_subjects = 0;

/* ---------------------------------------------------------------------
 * Lists
 * ---------------------------------------------------------------------
 */
#define LIST_INITIAL_CELLS 4

List *
lappend(List *list, void *datum)
{
	if (list == NIL)
	{
		list = palloc(offsetof(List, initial_elements) +
					  LIST_INITIAL_CELLS * sizeof(ListCell));
		list->type = T_List;
		list->length = 0;
		list->max_length = LIST_INITIAL_CELLS;
		list->elements = list->initial_elements;
	}
	else if (list->length == list->max_length)
	{
		int			newmax = list->max_length * 2;
		MemoryContext cxt = GetMemoryChunkContext(list);

		if (list->elements == list->initial_elements)
		{
			list->elements = MemoryContextAlloc(cxt, newmax * sizeof(ListCell));
			memcpy(list->elements, list->initial_elements,
				   list->length * sizeof(ListCell));
		}
		else
			list->elements = repalloc(list->elements, newmax * sizeof(ListCell));
		list->max_length = newmax;
	}
	list->elements[list->length++].ptr_value = datum;
	return list;
}

void
list_free(List *list)
{
	if (list == NIL)
		return;
	if (list->elements != list->initial_elements)
		pfree(list->elements);
	pfree(list);
}

void
list_free_deep(List *list)
{
	for (int i = 0; list != NIL && i < list->length; i++)
		pfree(list->elements[i].ptr_value);
	list_free(list);
}

List *
list_delete_nth_cell(List *list, int n)
{
	Assert(n >= 0 && n < list->length);
	if (list->length == 1)
	{
		list_free(list);
		return NIL;
	}
	memmove(&list->elements[n], &list->elements[n + 1],
			(list->length - n - 1) * sizeof(ListCell));
	list->length--;
	return list;
}

List *
list_delete_cell(List *list, ListCell *cell)
{
	return list_delete_nth_cell(list, cell - list->elements);
}

/* ---------------------------------------------------------------------
 * dynahash
 * ---------------------------------------------------------------------
 */
struct HTAB
{
	MemoryContext cxt;
	Size		keysize;
	Size		entrysize;
	void	  **entries;		/* each palloc'd: pointers stay valid */
	long		n;
	long		cap;
};

HTAB *
hash_create(const char *tabname, long nelem, const HASHCTL *info, int flags)
{
	MemoryContext cxt = (flags & HASH_CONTEXT) ? info->hcxt : TopMemoryContext;
	HTAB	   *h = MemoryContextAllocZero(cxt, sizeof(HTAB));

	if (!(flags & HASH_ELEM) || !(flags & HASH_BLOBS))
		elog(ERROR, "shim: hash_create supports HASH_ELEM | HASH_BLOBS only");
	h->cxt = cxt;
	h->keysize = info->keysize;
	h->entrysize = info->entrysize;
	h->cap = Max(nelem, 8);
	h->entries = MemoryContextAllocZero(cxt, h->cap * sizeof(void *));
	return h;
}

void *
hash_search(HTAB *h, const void *key, HASHACTION action, bool *foundPtr)
{
	for (long i = 0; i < h->n; i++)
	{
		if (memcmp(h->entries[i], key, h->keysize) != 0)
			continue;
		if (foundPtr)
			*foundPtr = true;
		if (action == HASH_REMOVE)
		{
			void	   *e = h->entries[i];

			h->entries[i] = h->entries[--h->n];
			return e;			/* the caller may still read it */
		}
		return h->entries[i];
	}
	if (foundPtr)
		*foundPtr = false;
	if (action != HASH_ENTER && action != HASH_ENTER_NULL)
		return NULL;
	if (h->n == h->cap)
	{
		h->cap *= 2;
		h->entries = repalloc(h->entries, h->cap * sizeof(void *));
	}
	h->entries[h->n] = MemoryContextAllocZero(h->cxt, h->entrysize);
	memcpy(h->entries[h->n], key, h->keysize);
	return h->entries[h->n++];
}

long
hash_get_num_entries(HTAB *h)
{
	return h->n;
}

void
hash_seq_init(HASH_SEQ_STATUS *status, HTAB *h)
{
	status->hashp = h;
	status->curBucket = 0;
	status->curEntry = NULL;
}

void *
hash_seq_search(HASH_SEQ_STATUS *status)
{
	HTAB	   *h = status->hashp;

	if (status->curBucket >= h->n)
		return NULL;
	return h->entries[status->curBucket++];
}

/* ---------------------------------------------------------------------
 * check_stack_depth: the backend's limit (max_stack_depth, 2MB by default,
 * less a safety margin), measured from the first call
 * ---------------------------------------------------------------------
 */
#define SHIM_STACK_LIMIT (2048L * 1024 - 512L * 1024)

void
check_stack_depth(void)
{
	static char *base = NULL;
	char		here;

	if (base == NULL)
		base = &here;
	if (labs((long) (base - &here)) > SHIM_STACK_LIMIT)
		ereport(ERROR,
				(errcode(ERRCODE_STATEMENT_TOO_COMPLEX),
				 errmsg("stack depth limit exceeded")));
}

/* ---------------------------------------------------------------------
 * Time: a clock that advances one millisecond per reading, so that runs
 * are reproducible
 * ---------------------------------------------------------------------
 */
static TimestampTz fuzz_now = 852076800000000;	/* 2027-01-01 */

TimestampTz
GetCurrentTimestamp(void)
{
	fuzz_now += 1000;
	return fuzz_now;
}

bool
TimestampDifferenceExceeds(TimestampTz start_time, TimestampTz stop_time,
						   int msec)
{
	return stop_time - start_time >= (TimestampTz) msec * 1000;
}
