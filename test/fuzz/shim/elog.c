/*-------------------------------------------------------------------------
 *
 * elog.c
 *	  ereport/elog for the fuzz targets.  As in the backend, an ERROR
 *	  longjmps to PG_exception_stack (PG_TRY/PG_CATCH work, error paths
 *	  run); there being no outer handler is a harness bug and aborts, and
 *	  so do FATAL and PANIC.  Messages below ERROR are formatted (so that
 *	  their arguments are checked) and dropped, unless FUZZ_VERBOSE is set.
 *
 *-------------------------------------------------------------------------
 */
#include "shim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utils/memutils.h"

sigjmp_buf *PG_exception_stack = NULL;
ErrorContextCallback *error_context_stack = NULL;

typedef struct ShimError
{
	int			elevel;
	int			sqlerrcode;
	char		message[1024];
	char		detail[1024];
	const char *filename;
	int			lineno;
} ShimError;

static ShimError current;
static bool error_pending = false;

bool
errstart(int elevel, const char *domain)
{
	memset(&current, 0, sizeof(current));
	current.elevel = elevel;
	current.sqlerrcode = elevel >= ERROR ? ERRCODE_INTERNAL_ERROR :
		elevel == WARNING ? ERRCODE_WARNING : ERRCODE_SUCCESSFUL_COMPLETION;
	return true;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

int
errcode(int sqlerrcode)
{
	current.sqlerrcode = sqlerrcode;
	return 0;
}

#define FORMAT_INTO(buf, fmt) \
	do { \
		va_list		ap; \
		va_start(ap, fmt); \
		vsnprintf(buf, sizeof(buf), fmt, ap); \
		va_end(ap); \
	} while (0)

int
errmsg(const char *fmt,...)
{
	FORMAT_INTO(current.message, fmt);
	return 0;
}

int
errmsg_internal(const char *fmt,...)
{
	FORMAT_INTO(current.message, fmt);
	return 0;
}

int
errdetail(const char *fmt,...)
{
	FORMAT_INTO(current.detail, fmt);
	return 0;
}

int
errdetail_internal(const char *fmt,...)
{
	FORMAT_INTO(current.detail, fmt);
	return 0;
}

int
errhint(const char *fmt,...)
{
	char		hint[1024];

	FORMAT_INTO(hint, fmt);
	return 0;
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	current.filename = filename;
	current.lineno = lineno;
	if (current.elevel < ERROR)
	{
		if (getenv("FUZZ_VERBOSE"))
			fprintf(stderr, "shim: elevel %d at %s:%d: %s\n", current.elevel,
					filename, lineno, current.message);
		return;
	}
	if (current.elevel >= FATAL)
	{
		fprintf(stderr, "shim: FATAL at %s:%d: %s\n", filename, lineno,
				current.message);
		abort();
	}
	error_pending = true;
	pg_re_throw();
}

void
pg_re_throw(void)
{
	if (PG_exception_stack == NULL)
	{
		fprintf(stderr, "shim: ERROR with no handler at %s:%d: %s\n",
				current.filename, current.lineno, current.message);
		abort();
	}
	siglongjmp(*PG_exception_stack, 1);
}

ErrorData *
CopyErrorData(void)
{
	ErrorData  *edata = palloc0(sizeof(ErrorData));

	edata->elevel = current.elevel;
	edata->sqlerrcode = current.sqlerrcode;
	edata->message = pstrdup(current.message);
	edata->detail = current.detail[0] ? pstrdup(current.detail) : NULL;
	edata->filename = current.filename;
	edata->lineno = current.lineno;
	return edata;
}

void
FreeErrorData(ErrorData *edata)
{
	pfree(edata->message);
	if (edata->detail)
		pfree(edata->detail);
	pfree(edata);
}

void
FlushErrorState(void)
{
	error_pending = false;
	MemoryContextReset(ErrorContext);
}

void
ReThrowError(ErrorData *edata)
{
	errstart(edata->elevel, NULL);
	current.sqlerrcode = edata->sqlerrcode;
	strlcpy(current.message, edata->message, sizeof(current.message));
	errfinish(edata->filename, edata->lineno, NULL);
	pg_unreachable();
}

const char *
shim_last_error(void)
{
	return current.message;
}

/*
 * Run body under PG_TRY.  Returns false when it raised an ERROR (the
 * state is flushed; shim_last_error() has the message).
 */
bool
shim_run(ShimBody body, void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		body(arg);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		ok = false;
	}
	PG_END_TRY();
	return ok;
}
