/*-------------------------------------------------------------------------
 *
 * jsonread.c
 *	  JSON from peers, read by PostgreSQL's own parser (common/jsonapi.h)
 *	  under the rules jansson applied with JSON_REJECT_DUPLICATES: valid
 *	  UTF-8, no duplicate member names at any depth, no \u0000, integers
 *	  within 64 bits, no real that overflows, nesting at most 2048 deep.
 *
 *	  jansson's json_loadb spent about 150 instructions per byte (a stream
 *	  abstraction per character, each string copied three times); this
 *	  parser about 50.  commobj.c decodes Communication Objects with
 *	  semantic actions directly; jsonread_load builds a jansson tree for
 *	  the rest (JOSE headers, SET claims, JWKs), so that the code reading
 *	  them stays as it was.  The fuzz targets check both against
 *	  json_loadb, value for value.  jsonread_load_jsonb builds, in the
 *	  same parse, the jsonb value jsonb_in would make of the text: a SET's
 *	  claims and header are stored without being parsed a second time.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "base/pg_builtins.h"
#include "codec/jsonread.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mb/pg_wchar.h"
#include "utils/jsonb.h"

/* What PostgreSQL's parser found wrong, in our words */
static const char *
syntax_message(JsonParseErrorType rc)
{
	switch (rc)
	{
		case JSON_ESCAPING_INVALID:
			return "invalid escape sequence";
		case JSON_ESCAPING_REQUIRED:
			return "a control character in a string must be escaped";
		case JSON_EXPECTED_ARRAY_FIRST:
			return "expected an array element or ']'";
		case JSON_EXPECTED_ARRAY_NEXT:
			return "expected ',' or ']'";
		case JSON_EXPECTED_COLON:
			return "expected ':'";
		case JSON_EXPECTED_END:
			return "expected the end of the text";
		case JSON_EXPECTED_JSON:
			return "expected a JSON value";
		case JSON_EXPECTED_MORE:
			return "the text ends too early";
		case JSON_EXPECTED_OBJECT_FIRST:
			return "expected a string or '}'";
		case JSON_EXPECTED_OBJECT_NEXT:
			return "expected ',' or '}'";
		case JSON_EXPECTED_STRING:
			return "expected a string";
		case JSON_UNICODE_CODE_POINT_ZERO:
			return "\\u0000 is not allowed";
		case JSON_UNICODE_ESCAPE_FORMAT:
			return "\\u must be followed by four hexadecimal digits";
		case JSON_UNICODE_HIGH_ESCAPE:
			return "a \\u escape cannot be converted to the server encoding";
		case JSON_UNICODE_HIGH_SURROGATE:
			return "a Unicode high surrogate must not follow a high surrogate";
		case JSON_UNICODE_LOW_SURROGATE:
			return "a Unicode low surrogate must follow a high surrogate";
		default:
			return "invalid token";
	}
}

void
jsonread_check_depth(int depth)
{
	if (depth >= JSONREAD_MAX_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_STATEMENT_TOO_COMPLEX),
				 errmsg("nesting is deeper than %d", JSONREAD_MAX_DEPTH)));
}

/*
 * The nesting limit, and the conversion of a \u escape the server encoding
 * lacks, are raised as ERRORs inside the parser; they become a refusal
 * here.  Only memory is allocated inside, so nothing else needs undoing.
 */
bool
jsonread_run(const char *text, size_t len, JsonSemAction *sem,
			 const char **error)
{
	MemoryContext cxt = CurrentMemoryContext;
	JsonLexContext *lex;
	JsonParseErrorType rc = JSON_SUCCESS;

	if (len > INT_MAX / 2 ||
		pg_encoding_verifymbstr(PG_UTF8, text, (int) len) != (int) len)
	{
		*error = "not UTF-8 text";
		return false;
	}
	lex = MakeJsonLexContextCstringLen(unconstify(char *, text), (int) len,
									   PG_UTF8, true);
	PG_TRY();
	{
		rc = pg_parse_json(lex, sem);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_STATEMENT_TOO_COMPLEX &&
			edata->sqlerrcode != ERRCODE_UNTRANSLATABLE_CHARACTER &&
			edata->sqlerrcode != ERRCODE_CHARACTER_NOT_IN_REPERTOIRE)
			PG_RE_THROW();
		FlushErrorState();
		*error = pstrdup(edata->message);
		FreeErrorData(edata);
		return false;
	}
	PG_END_TRY();
	if (rc != JSON_SUCCESS)
	{
		int			at = rc == JSON_EXPECTED_MORE ? (int) len :
			lex->token_start ? (int) (lex->token_start - lex->input) : 0;

		*error = psprintf("%s (at byte %d)", syntax_message(rc), at);
		return false;
	}
	return true;
}

/* The key is peer text: named only when short and plain */
const char *
jsonread_duplicate_message(const char *key)
{
	size_t		n = strlen(key);

	for (size_t i = 0; i < n; i++)
		if (key[i] < 0x20 || key[i] > 0x7e)
			return "duplicate object key";
	if (n > 64)
		return "duplicate object key";
	return psprintf("duplicate object key \"%s\"", key);
}

bool
jsonread_number(const char *token, bool *is_integer, json_int_t *integer,
				double *real, const char **error)
{
	errno = 0;
	*is_integer = strpbrk(token, ".eE") == NULL;
	if (*is_integer)
	{
		*integer = strtoll(token, NULL, 10);
		*real = (double) *integer;
		if (errno == ERANGE)
		{
			*error = token[0] == '-' ? "too big negative integer" :
				"too big integer";
			return false;
		}
	}
	else
	{
		*real = strtod(token, NULL);
		if (errno == ERANGE && isinf(*real))
		{
			*error = "real number overflow";
			return false;
		}
	}
	return true;
}

/* ---------------------------------------------------------------------
 * jsonread_load: a jansson tree
 * ---------------------------------------------------------------------
 */
typedef struct Builder
{
	json_t	   *root;
	json_t	  **stack;			/* open containers */
	char	  **keys;			/* member name awaiting its value, by depth */
	int			depth;
	int			cap;
	const char *error;			/* first finding */
	bool		jsonb;			/* also build the jsonb value (jres) */
	JsonbParseState *jstate;
	JsonbValue *jres;
} Builder;

/* The jsonb value is built until the first finding: it is then dropped */
static inline bool
building_jsonb(Builder *b)
{
	return b->jsonb && b->error == NULL;
}

static void
jsonb_push(Builder *b, JsonbIteratorToken token, JsonbValue *v)
{
	b->jres = pushJsonbValue(&b->jstate, token, v);
}

/*
 * A number token as jsonb_in stores it: numeric_in of the token.  Tokens
 * jansson's rules accept can still be beyond numeric (1e-20000: more than
 * 16383 digits after the point); they are a finding here, as they would
 * fail the INSERT.
 */
static Numeric
jsonb_number(Builder *b, char *token)
{
	MemoryContext cxt = CurrentMemoryContext;
	Numeric		n = NULL;

	PG_TRY();
	{
		n = DatumGetNumeric(DirectFunctionCall3(numeric_in,
												CStringGetDatum(token),
												ObjectIdGetDatum(InvalidOid),
												Int32GetDatum(-1)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_INVALID_TEXT_REPRESENTATION &&
			edata->sqlerrcode != ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE)
			PG_RE_THROW();
		FlushErrorState();
		FreeErrorData(edata);
		b->error = "a number PostgreSQL's jsonb cannot hold"
			" (numeric's limits: at most 16383 digits after the point)";
	}
	PG_END_TRY();
	return n;
}

/* A scalar into the jsonb value, as jsonb_in's scalar action does */
static void
jsonb_scalar(Builder *b, char *token, JsonTokenType type)
{
	JsonbValue	v;

	switch (type)
	{
		case JSON_TOKEN_STRING:
			v.type = jbvString;
			v.val.string.len = strlen(token);
			v.val.string.val = token;
			break;
		case JSON_TOKEN_NUMBER:
			v.type = jbvNumeric;
			v.val.numeric = jsonb_number(b, token);
			if (v.val.numeric == NULL)
				return;
			break;
		case JSON_TOKEN_TRUE:
		case JSON_TOKEN_FALSE:
			v.type = jbvBool;
			v.val.boolean = type == JSON_TOKEN_TRUE;
			break;
		default:
			v.type = jbvNull;
			break;
	}
	if (b->jstate == NULL)
	{
		/* a scalar document: a one-element raw-scalar array */
		JsonbValue	va;

		va.type = jbvArray;
		va.val.array.rawScalar = true;
		va.val.array.nElems = 1;
		jsonb_push(b, WJB_BEGIN_ARRAY, &va);
		jsonb_push(b, WJB_ELEM, &v);
		jsonb_push(b, WJB_END_ARRAY, NULL);
	}
	else
		jsonb_push(b, b->jstate->contVal.type == jbvArray ? WJB_ELEM : WJB_VALUE,
				   &v);
}

static void
attach(Builder *b, json_t *v)
{
	json_t	   *top;

	if (v == NULL)
		elog(ERROR, "out of memory building a JSON value");
	if (b->depth == 0)
	{
		b->root = v;
		return;
	}
	top = b->stack[b->depth - 1];
	if (json_is_array(top))
		json_array_append_new(top, v);
	else if (json_object_get(top, b->keys[b->depth - 1]) != NULL)
	{
		/* v stays out of the tree (and may still be filled): palloc'd */
		if (b->error == NULL)
			b->error = jsonread_duplicate_message(b->keys[b->depth - 1]);
	}
	else
		json_object_set_new_nocheck(top, b->keys[b->depth - 1], v);
}

static void
push(Builder *b, json_t *container)
{
	jsonread_check_depth(b->depth);
	attach(b, container);
	if (b->depth == b->cap)
	{
		b->cap = Max(8, b->cap * 2);
		b->stack = b->stack ? repalloc(b->stack, b->cap * sizeof(json_t *)) :
			palloc(b->cap * sizeof(json_t *));
		b->keys = b->keys ? repalloc(b->keys, b->cap * sizeof(char *)) :
			palloc(b->cap * sizeof(char *));
	}
	b->stack[b->depth] = container;
	b->keys[b->depth] = NULL;
	b->depth++;
}

/* A container opens (token: WJB_BEGIN_*) */
static void
open_container(Builder *b, json_t *container, JsonbIteratorToken token)
{
	push(b, container);
	if (building_jsonb(b))
		jsonb_push(b, token, NULL);
}

/* The innermost container closes (token: WJB_END_*) */
static void
close_container(Builder *b, JsonbIteratorToken token)
{
	b->depth--;
	if (building_jsonb(b))
		jsonb_push(b, token, NULL);
}

static JSON_ACTION_RESULT
on_object_start(void *state)
{
	open_container(state, json_object(), WJB_BEGIN_OBJECT);
	return JSON_ACTION_DONE;
}

static JSON_ACTION_RESULT
on_array_start(void *state)
{
	open_container(state, json_array(), WJB_BEGIN_ARRAY);
	return JSON_ACTION_DONE;
}

static JSON_ACTION_RESULT
on_object_end(void *state)
{
	close_container(state, WJB_END_OBJECT);
	return JSON_ACTION_DONE;
}

static JSON_ACTION_RESULT
on_array_end(void *state)
{
	close_container(state, WJB_END_ARRAY);
	return JSON_ACTION_DONE;
}

static JSON_ACTION_RESULT
on_field_start(void *state, char *fname, bool isnull)
{
	Builder    *b = state;

	b->keys[b->depth - 1] = fname;
	if (building_jsonb(b))
	{
		JsonbValue	v;

		v.type = jbvString;
		v.val.string.len = strlen(fname);
		v.val.string.val = fname;
		jsonb_push(b, WJB_KEY, &v);
	}
	return JSON_ACTION_DONE;
}

static JSON_ACTION_RESULT
on_scalar(void *state, char *token, JsonTokenType type)
{
	Builder    *b = state;
	bool		is_integer;
	json_int_t	integer;
	double		real;
	const char *error;

	switch (type)
	{
		case JSON_TOKEN_STRING:
			attach(b, json_stringn_nocheck(token, strlen(token)));
			break;
		case JSON_TOKEN_NUMBER:
			if (!jsonread_number(token, &is_integer, &integer, &real, &error))
			{
				if (b->error == NULL)
					b->error = error;
				attach(b, json_null());
			}
			else
				attach(b, is_integer ? json_integer(integer) : json_real(real));
			break;
		case JSON_TOKEN_TRUE:
			attach(b, json_true());
			break;
		case JSON_TOKEN_FALSE:
			attach(b, json_false());
			break;
		default:
			attach(b, json_null());
			break;
	}
	if (building_jsonb(b))
		jsonb_scalar(b, token, type);
	return JSON_ACTION_DONE;
}

static json_t *
load(const char *text, size_t len, Datum *jsonb, const char **error)
{
	Builder		b;
	JsonSemAction sem;

	memset(&b, 0, sizeof(b));
	memset(&sem, 0, sizeof(sem));
	/* the parser's strings are UTF-8: as jsonb_in's only in such a database */
	b.jsonb = jsonb != NULL && GetDatabaseEncoding() == PG_UTF8;
	sem.semstate = &b;
	sem.object_start = on_object_start;
	sem.object_end = on_object_end;
	sem.array_start = on_array_start;
	sem.array_end = on_array_end;
	sem.object_field_start = on_field_start;
	sem.scalar = on_scalar;
	if (!jsonread_run(text, len, &sem, error))
		return NULL;
	if (b.error != NULL)
	{
		*error = b.error;
		return NULL;
	}
	if (jsonb != NULL)
		*jsonb = b.jsonb ? JsonbPGetDatum(JsonbValueToJsonb(b.jres)) : (Datum) 0;
	return b.root;
}

json_t *
jsonread_load(const char *text, size_t len, const char **error)
{
	return load(text, len, NULL, error);
}

json_t *
jsonread_load_jsonb(const char *text, size_t len, Datum *jsonb,
					const char **error)
{
	return load(text, len, jsonb, error);
}
