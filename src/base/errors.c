/*-------------------------------------------------------------------------
 *
 * errors.c
 *	  The one mapping between RFC 8935 error codes, their names on the wire
 *	  and the SQLSTATEs that setstream raises for them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "setstream.h"

#include <stdarg.h>

#include "lib/stringinfo.h"

typedef struct SetErrInfo
{
	SetErr		code;
	const char *name;
	int			sqlstate;
} SetErrInfo;

static const SetErrInfo seterr_table[] = {
	{SETERR_INVALID_REQUEST, "invalid_request", ERRCODE_SET_INVALID_REQUEST},
	{SETERR_INVALID_KEY, "invalid_key", ERRCODE_SET_INVALID_KEY},
	{SETERR_INVALID_ISSUER, "invalid_issuer", ERRCODE_SET_INVALID_ISSUER},
	{SETERR_INVALID_AUDIENCE, "invalid_audience", ERRCODE_SET_INVALID_AUDIENCE},
	{SETERR_AUTHENTICATION_FAILED, "authentication_failed", ERRCODE_SET_AUTHENTICATION_FAILED},
	{SETERR_ACCESS_DENIED, "access_denied", ERRCODE_SET_ACCESS_DENIED},
	{SETERR_INVALID_STATE, "invalid_state", ERRCODE_SET_INVALID_STATE},
};

static const SetErrInfo *
seterr_info(SetErr code)
{
	for (int i = 0; i < lengthof(seterr_table); i++)
		if (seterr_table[i].code == code)
			return &seterr_table[i];
	elog(ERROR, "unknown setstream error code %d", (int) code);
	return NULL;				/* keep compiler quiet */
}

const char *
seterr_name(SetErr code)
{
	return seterr_info(code)->name;
}

/*
 * The "err" of an error answer that carries no RFC 8935 code: 429, 503 and
 * 500 name what happened (the names of RFC 6749's error codes where one
 * fits), so that every error body has an "err"; NULL for other statuses.
 */
const char *
seterr_for_status(int http_status)
{
	switch (http_status)
	{
		case 429:
			return ERR_RATE_LIMITED;
		case 503:
			return ERR_TEMPORARILY_UNAVAILABLE;
		case 500:
			return ERR_SERVER_ERROR;
		default:
			return NULL;
	}
}

/* The code of a name on the wire; SETERR_NONE when it is not one of ours */
SetErr
seterr_from_name(const char *name)
{
	for (int i = 0; i < lengthof(seterr_table); i++)
		if (strcmp(seterr_table[i].name, name) == 0)
			return seterr_table[i].code;
	return SETERR_NONE;
}

/* Strip the "code: " prefix that seterr_raise put before a description */
const char *
seterr_description(SetErr code, const char *message)
{
	size_t		n = strlen(seterr_name(code));

	if (strncmp(message, seterr_name(code), n) == 0 && message[n] == ':')
		return message + n + 2;
	return message;
}

/*
 * The one mapping from an error raised while serving a request to its
 * answer: an RFC 8935 code is the peer's fault (400 with "err"); a
 * condition of the database that passes (sqlstate_is_transient) is 503
 * with Retry-After; anything else is 500.  Over a WebSocket every one of
 * them closes the session with 1011, its messages unanswered (the peer
 * resends what it gets no ack for).  "log" says whether the server log
 * must name it (it is not the peer's fault).
 */
void
seterr_answer(int sqlerrcode, const char *message, SetAnswer *a)
{
	SetErr		code = seterr_from_sqlstate(sqlerrcode);

	memset(a, 0, sizeof(*a));
	a->ws_close_code = SETERR_WS_INTERNAL_ERROR;
	if (code != SETERR_NONE)
	{
		a->http_status = 400;
		a->err = seterr_name(code);
		a->description = seterr_description(code, message);
	}
	else if (sqlstate_is_transient(sqlerrcode))
	{
		/* read-only, disk full, conflicts: not the peer's fault, retry */
		a->http_status = 503;
		a->description = "the database cannot take this request now; try again later";
		a->headers = "Retry-After: 1\r\n";
		a->log = true;
	}
	else
	{
		a->http_status = 500;
		a->description = "the request could not be processed; try again later";
		a->log = true;
	}
}

/* SETERR_NONE when the SQLSTATE is not one of ours */
SetErr
seterr_from_sqlstate(int sqlerrcode)
{
	for (int i = 0; i < lengthof(seterr_table); i++)
		if (seterr_table[i].sqlstate == sqlerrcode)
			return seterr_table[i].code;
	return SETERR_NONE;
}

/*
 * Is this a condition of the database rather than of the request, one that
 * passes (a read-only or full database, a lock or serialization conflict,
 * exhausted resources)?  The listener answers those 503 with Retry-After,
 * and ingest does not turn them into an unacknowledged SET.
 *
 * On a distributed database (Citus) the statement may reach another node:
 * a lost or refused connection to it (class 08), a node shutting down or
 * not yet accepting connections (class 57: 57P01 to 57P05), an object in
 * use (55006: a shard being moved or dropped) pass as well.
 *
 * So does SE008: a key being fetched from a peer_jwks_uri (receive() raises
 * it; a user's trigger that calls receive() may bring it here).
 */
bool
sqlstate_is_transient(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_CONNECTION_EXCEPTION:	/* class 08 */
		case ERRCODE_TRANSACTION_ROLLBACK:	/* class 40 */
		case ERRCODE_INSUFFICIENT_RESOURCES:	/* class 53 */
		case ERRCODE_OPERATOR_INTERVENTION: /* class 57 */
			return true;
		default:
			break;
	}
	return sqlerrcode == ERRCODE_READ_ONLY_SQL_TRANSACTION ||
		sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
		sqlerrcode == ERRCODE_OBJECT_IN_USE ||
		sqlerrcode == ERRCODE_SET_KEY_PENDING;
}

void
seterr_raise(SetErr code, const char *description)
{
	const SetErrInfo *info = seterr_info(code);

	ereport(ERROR,
			(errcode(info->sqlstate),
			 errmsg("%s: %s", info->name, description)));
	pg_unreachable();
}

/* Record a failure; returns false so that checks can "return set_fail(...)" */
bool
set_fail(SetFailure *f, SetErr code, const char *fmt,...)
{
	va_list		ap;

	f->code = code;
	f->unknown_key = false;
	va_start(ap, fmt);
	vsnprintf(f->description, sizeof(f->description), fmt, ap);
	va_end(ap);
	return false;
}

/*
 * A peer-controlled string made safe for a log line: at most maxlen of its
 * bytes (then "..."), with backslash, double quote, control characters and
 * bytes outside printable ASCII written as \n, \r, \t, \\, \" or \xNN, so
 * that it can neither start a forged log line nor break the line's
 * quoting.  palloc'd.
 */
char *
setstream_log_escape(const char *s, int maxlen)
{
	StringInfoData out;
	int			i;

	if (s == NULL)
		return pstrdup("(null)");
	initStringInfo(&out);
	for (i = 0; s[i] != '\0' && i < maxlen; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '\n')
			appendStringInfoString(&out, "\\n");
		else if (c == '\r')
			appendStringInfoString(&out, "\\r");
		else if (c == '\t')
			appendStringInfoString(&out, "\\t");
		else if (c == '\\' || c == '"')
		{
			appendStringInfoChar(&out, '\\');
			appendStringInfoChar(&out, (char) c);
		}
		else if (c < 0x20 || c >= 0x7f)
			appendStringInfo(&out, "\\x%02x", c);
		else
			appendStringInfoChar(&out, (char) c);
	}
	if (s[i] != '\0')
		appendStringInfoString(&out, "...");
	return out.data;
}
