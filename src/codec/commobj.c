/*-------------------------------------------------------------------------
 *
 * commobj.c
 *	  Decoding of RFC 8936 poll requests and of pushpull Communication
 *	  Objects (draft-tulshibagwale-saag-pushpull-delivery).
 *
 *	  Both are JSON objects sharing "ack" (array of jti strings) and
 *	  "setErrs" (object: jti -> {"err": string, "description": string}).
 *	  A poll request adds "maxEvents" (non-negative integer) and
 *	  "returnImmediately" (boolean); a Communication Object adds "sets"
 *	  (object: jti -> compact SET string) and "maxResponseEvents".
 *	  Members are camelCase only; unknown members are ignored; a member of
 *	  the wrong type makes the whole object invalid.
 *
 *	  The text is read in one pass by PostgreSQL's JSON parser, under
 *	  jansson's rules (jsonread.c), with semantic actions that unpack the
 *	  members as they go, without building a tree: a Communication Object
 *	  is mostly long SET strings, and jansson's json_loadb spent about 150
 *	  instructions per byte on them (a fifth of the listener's work per SET
 *	  in pushpull).  The fuzz target fuzz_commobj checks this file against
 *	  the jansson decoder it replaced (test/fuzz/commobj_ref.c), value for
 *	  value.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "codec/commobj.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#include "codec/jsonread.h"

/* The top-level members we read, in the order their errors are reported */
typedef enum Member
{
	M_OTHER,
	M_IMMEDIATE,				/* poll: returnImmediately */
	M_COUNT,					/* maxEvents / maxResponseEvents */
	M_SETS,						/* Communication Object only */
	M_ACK,
	M_ERRS,
	M_NUM
} Member;

/* Member names of one open JSON object, for the duplicate check */
typedef struct KeyList
{
	char	  **keys;
	int			n;
	int			cap;
} KeyList;

typedef struct Decoder
{
	CommObj    *out;
	bool		poll;
	const char *count_name;

	int			depth;			/* containers open */
	Member		member;			/* the top-level member being read */
	bool		member_is_container;	/* its value is the right kind of
										 * container */
	char	   *key;			/* member name at depth 2 */
	SetErrEntry *entry;			/* the "setErrs" entry being read */
	bool		entry_err_bad;	/* ... its "err" is not a non-empty string */
	bool		entry_desc_bad; /* ... its "description" is not a string */
	int			entry_field;	/* 0 other, 1 "err", 2 "description" */

	bool		not_object;		/* the document is not an object */
	const char *json_error;		/* first JSON-level error */
	const char *member_error[M_NUM];	/* first error of each member */

	KeyList    *levels;			/* one per open object, by depth */
	int			nlevels;
} Decoder;

static void
set_json_error(Decoder *d, const char *msg)
{
	if (d->json_error == NULL)
		d->json_error = msg;
}

static void
set_member_error(Decoder *d, Member m, const char *msg)
{
	if (d->member_error[m] == NULL)
		d->member_error[m] = msg;
}

/* The message of a member's value of the wrong kind */
static const char *
wrong_type_message(Decoder *d, Member m)
{
	switch (m)
	{
		case M_IMMEDIATE:
			return "\"returnImmediately\" must be a boolean";
		case M_COUNT:
			return psprintf("\"%s\" must be a non-negative integer",
							d->count_name);
		case M_SETS:
			return "\"sets\" must be an object of jti to SET strings";
		case M_ACK:
			return "\"ack\" must be an array of jti strings";
		case M_ERRS:
			return "\"setErrs\" must be an object of jti to {\"err\", \"description\"}";
		default:
			return NULL;
	}
}

#define MSG_SET_VALUE "every value in \"sets\" must be a SET as a string"
#define MSG_ERR_ENTRY "each \"setErrs\" entry must be an object with a string \"err\""
#define MSG_ERR_DESC "a \"setErrs\" \"description\" must be a string"

static Member
member_of(Decoder *d, const char *name)
{
	if (strcmp(name, "ack") == 0)
		return M_ACK;
	if (strcmp(name, "setErrs") == 0)
		return M_ERRS;
	if (strcmp(name, d->count_name) == 0)
		return M_COUNT;
	if (d->poll && strcmp(name, "returnImmediately") == 0)
		return M_IMMEDIATE;
	if (!d->poll && strcmp(name, "sets") == 0)
		return M_SETS;
	return M_OTHER;
}

static int
cmp_keys(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Refuse an object whose member names repeat */
static void
check_duplicates(Decoder *d, KeyList *kl)
{
	char	   *dup = NULL;

	if (kl->n < 2)
		return;
	if (kl->n <= 8)
	{
		for (int i = 0; i < kl->n && dup == NULL; i++)
			for (int j = i + 1; j < kl->n; j++)
				if (strcmp(kl->keys[i], kl->keys[j]) == 0)
				{
					dup = kl->keys[i];
					break;
				}
	}
	else
	{
		qsort(kl->keys, kl->n, sizeof(char *), cmp_keys);
		for (int i = 1; i < kl->n; i++)
			if (strcmp(kl->keys[i - 1], kl->keys[i]) == 0)
			{
				dup = kl->keys[i];
				break;
			}
	}
	if (dup != NULL)
		set_json_error(d, jsonread_duplicate_message(dup));
}

/* A container or scalar value starts at the current depth */
static void
value_starts(Decoder *d, bool is_object, bool is_array)
{
	bool		container = is_object || is_array;

	if (d->depth == 0)
	{
		if (!is_object)
			d->not_object = true;
		return;
	}
	if (d->depth == 1)
	{
		bool		right = (d->member == M_SETS || d->member == M_ERRS) ? is_object :
			d->member == M_ACK ? is_array : false;

		d->member_is_container = right;
		if (d->member != M_OTHER && container && !right)
			set_member_error(d, d->member, wrong_type_message(d, d->member));
		return;
	}
	if (!d->member_is_container)
		return;
	if (d->depth == 2 && container)
	{
		if (d->member == M_SETS)
			set_member_error(d, M_SETS, MSG_SET_VALUE);
		else if (d->member == M_ACK)
			set_member_error(d, M_ACK, wrong_type_message(d, M_ACK));
		else if (d->member == M_ERRS && is_array)
			set_member_error(d, M_ERRS, MSG_ERR_ENTRY);
		else if (d->member == M_ERRS)
		{
			d->entry = palloc0(sizeof(SetErrEntry));
			d->entry->jti = d->key;
			d->entry_err_bad = true;	/* until a good "err" is seen */
			d->entry_desc_bad = false;
		}
	}
	else if (d->depth == 3 && container && d->entry != NULL)
	{
		if (d->entry_field == 1)
			d->entry_err_bad = true;
		else if (d->entry_field == 2)
			d->entry_desc_bad = true;
	}
}

static void
container_start(Decoder *d, bool is_object)
{
	value_starts(d, is_object, !is_object);
	jsonread_check_depth(d->depth);
	if (is_object)
	{
		if (d->depth >= d->nlevels)
		{
			int			n = Max(8, d->nlevels);

			while (n <= d->depth)
				n *= 2;

			d->levels = d->levels ?
				repalloc(d->levels, n * sizeof(KeyList)) :
				palloc(n * sizeof(KeyList));
			memset(d->levels + d->nlevels, 0,
				   (n - d->nlevels) * sizeof(KeyList));
			d->nlevels = n;
		}
		d->levels[d->depth].n = 0;
	}
	d->depth++;
}

static JSON_ACTION_RESULT
on_object_start(void *state)
{
	container_start(state, true);
	return JSON_ACTION_DONE;
}

static JSON_ACTION_RESULT
on_array_start(void *state)
{
	container_start(state, false);
	return JSON_ACTION_DONE;
}

static JSON_ACTION_RESULT
on_array_end(void *state)
{
	((Decoder *) state)->depth--;
	return JSON_ACTION_DONE;
}

static JSON_ACTION_RESULT
on_object_end(void *state)
{
	Decoder    *d = state;

	d->depth--;
	check_duplicates(d, &d->levels[d->depth]);
	/* the end of a "setErrs" entry */
	if (d->depth == 2 && d->entry != NULL)
	{
		if (d->entry_err_bad)
			set_member_error(d, M_ERRS, MSG_ERR_ENTRY);
		else if (d->entry_desc_bad)
			set_member_error(d, M_ERRS, MSG_ERR_DESC);
		else
			d->out->errs = lappend(d->out->errs, d->entry);
		d->entry = NULL;
	}
	return JSON_ACTION_DONE;
}

static JSON_ACTION_RESULT
on_field_start(void *state, char *fname, bool isnull)
{
	Decoder    *d = state;
	KeyList    *kl = &d->levels[d->depth - 1];

	if (kl->n == kl->cap)
	{
		kl->cap = Max(8, kl->cap * 2);
		kl->keys = kl->keys ? repalloc(kl->keys, kl->cap * sizeof(char *)) :
			palloc(kl->cap * sizeof(char *));
	}
	kl->keys[kl->n++] = fname;
	if (d->depth == 1)
	{
		d->member = member_of(d, fname);
		d->member_is_container = false;
	}
	else if (d->depth == 2)
		d->key = fname;
	else if (d->depth == 3 && d->entry != NULL)
		d->entry_field = strcmp(fname, "err") == 0 ? 1 :
			strcmp(fname, "description") == 0 ? 2 : 0;
	return JSON_ACTION_DONE;
}

static void
read_count(Decoder *d, double v)
{
	if (!isfinite(v) || v < 0 || v != floor(v))
		set_member_error(d, M_COUNT, wrong_type_message(d, M_COUNT));
	else
		d->out->max_events = v > INT_MAX ? INT_MAX : (int) v;
}

static void
read_scalar(void *state, char *token, JsonTokenType type)
{
	Decoder    *d = state;
	double		number = 0;
	bool		is_string = type == JSON_TOKEN_STRING;
	bool		is_integer;
	json_int_t	integer;
	const char *error;

	if (type == JSON_TOKEN_NUMBER &&
		!jsonread_number(token, &is_integer, &integer, &number, &error))
	{
		set_json_error(d, error);
		return;
	}
	value_starts(d, false, false);
	if (d->depth == 1)
	{
		if (d->member == M_COUNT && type == JSON_TOKEN_NUMBER)
			read_count(d, number);
		else if (d->member == M_IMMEDIATE &&
				 (type == JSON_TOKEN_TRUE || type == JSON_TOKEN_FALSE))
			d->out->return_immediately = type == JSON_TOKEN_TRUE;
		else if (d->member != M_OTHER)
			set_member_error(d, d->member, wrong_type_message(d, d->member));
		return;
	}
	if (!d->member_is_container)
		return;
	if (d->depth == 2 && d->member == M_SETS)
	{
		SetEntry   *e;

		if (!is_string)
		{
			set_member_error(d, M_SETS, MSG_SET_VALUE);
			return;
		}
		e = palloc(sizeof(SetEntry));
		e->key = d->key;
		e->token = token;
		d->out->sets = lappend(d->out->sets, e);
	}
	else if (d->depth == 2 && d->member == M_ACK)
	{
		if (!is_string || token[0] == '\0')
			set_member_error(d, M_ACK, wrong_type_message(d, M_ACK));
		else
			d->out->ack = lappend(d->out->ack, token);
	}
	else if (d->depth == 2 && d->member == M_ERRS)
		set_member_error(d, M_ERRS, MSG_ERR_ENTRY);
	else if (d->depth == 3 && d->entry != NULL && d->entry_field == 1)
	{
		d->entry_err_bad = !is_string || token[0] == '\0';
		if (!d->entry_err_bad)
			d->entry->err = token;
	}
	else if (d->depth == 3 && d->entry != NULL && d->entry_field == 2)
	{
		d->entry_desc_bad = !is_string;
		if (is_string)
			d->entry->description = token;
	}
}

static JSON_ACTION_RESULT
on_scalar(void *state, char *token, JsonTokenType type)
{
	read_scalar(state, token, type);
	return JSON_ACTION_DONE;
}

/* Copy msg into err, cut at a character boundary */
static void
put_error(char *err, size_t errlen, const char *what, const char *msg,
		  bool json)
{
	size_t		n;

	if (json)
		snprintf(err, errlen, "the %s is not valid JSON: %s", what, msg);
	else
		snprintf(err, errlen, "%s", msg);
	n = strlen(err);
	if (n < errlen - 1)
		return;
	/* cut: drop the last character, which may be incomplete */
	while (n > 0 && (((unsigned char) err[n - 1]) & 0xC0) == 0x80)
		n--;
	if (n > 0 && ((unsigned char) err[n - 1]) >= 0xC0)
		n--;
	err[n] = '\0';
}

static bool
decode(const char *text, size_t len, CommObj *out, bool poll,
	   char *err, size_t errlen)
{
	const char *what = poll ? "poll request" : "Communication Object";
	static const Member order_poll[] = {M_IMMEDIATE, M_COUNT, M_ACK, M_ERRS};
	static const Member order_comm[] = {M_COUNT, M_SETS, M_ACK, M_ERRS};
	const Member *order = poll ? order_poll : order_comm;
	Decoder		d;
	JsonSemAction sem;
	const char *error;

	memset(out, 0, sizeof(*out));
	out->max_events = -1;
	memset(&d, 0, sizeof(d));
	d.out = out;
	d.poll = poll;
	d.count_name = poll ? "maxEvents" : "maxResponseEvents";

	memset(&sem, 0, sizeof(sem));
	sem.semstate = &d;
	sem.object_start = on_object_start;
	sem.object_end = on_object_end;
	sem.array_start = on_array_start;
	sem.array_end = on_array_end;
	sem.object_field_start = on_field_start;
	sem.scalar = on_scalar;
	if (!jsonread_run(text, len, &sem, &error))
	{
		put_error(err, errlen, what, error, true);
		return false;
	}
	if (d.json_error != NULL)
	{
		put_error(err, errlen, what, d.json_error, true);
		return false;
	}
	if (d.not_object)
	{
		snprintf(err, errlen, "the %s is not a JSON object", what);
		return false;
	}
	for (int i = 0; i < 4; i++)
		if (d.member_error[order[i]] != NULL)
		{
			put_error(err, errlen, what, d.member_error[order[i]], false);
			return false;
		}
	return true;
}

/* Decode an RFC 8936 poll request; on failure *err says what is wrong */
bool
commobj_parse_poll(const char *text, size_t len, CommObj *out,
				   char *err, size_t errlen)
{
	return decode(text, len, out, true, err, errlen);
}

/* Decode a pushpull Communication Object */
bool
commobj_parse(const char *text, size_t len, CommObj *out, char *err,
			  size_t errlen)
{
	return decode(text, len, out, false, err, errlen);
}
