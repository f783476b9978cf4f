/*-------------------------------------------------------------------------
 *
 * commobj_ref.c
 *	  The reference for fuzz_commobj: src/commobj.c as it was with
 *	  jansson (json_loadb, JSON_REJECT_DUPLICATES), before it moved to
 *	  PostgreSQL's JSON parser for speed.  The fuzz target checks that the
 *	  two accept the same texts and unpack the same values.
 *
 *	  Decoding of RFC 8936 poll requests and of pushpull Communication
 *	  Objects (draft-tulshibagwale-saag-pushpull-delivery), with jansson.
 *
 *	  Both are JSON objects sharing "ack" (array of jti strings) and
 *	  "setErrs" (object: jti -> {"err": string, "description": string}).
 *	  A poll request adds "maxEvents" (non-negative integer) and
 *	  "returnImmediately" (boolean); a Communication Object adds "sets"
 *	  (object: jti -> compact SET string) and "maxResponseEvents".
 *	  Members are camelCase only; unknown members are ignored; a member of
 *	  the wrong type makes the whole object invalid.
 *
 *-------------------------------------------------------------------------
 */
#include "codec/commobj.h"

#include <limits.h>
#include <math.h>
#include <string.h>

static bool
fail(char *err, size_t errlen, const char *msg)
{
	strlcpy(err, msg, errlen);
	return false;
}

static json_t *
load_object(const char *text, size_t len, const char *what, char *err,
			size_t errlen)
{
	json_error_t jerr;
	json_t	   *j = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);

	if (j == NULL)
	{
		snprintf(err, errlen, "the %s is not valid JSON: %s", what, jerr.text);
		return NULL;
	}
	if (!json_is_object(j))
	{
		snprintf(err, errlen, "the %s is not a JSON object", what);
		return NULL;
	}
	return j;
}

/* A non-negative integer; integral reals such as 10.0 are taken too */
static bool
get_count(json_t *obj, const char *name, int *out, char *err, size_t errlen)
{
	json_t	   *v = json_object_get(obj, name);
	double		d;

	*out = -1;
	if (v == NULL)
		return true;
	if (json_is_integer(v))
		d = (double) json_integer_value(v);
	else if (json_is_real(v))
		d = json_real_value(v);
	else
	{
		snprintf(err, errlen, "\"%s\" must be a non-negative integer", name);
		return false;
	}
	if (!isfinite(d) || d < 0 || d != floor(d))
	{
		snprintf(err, errlen, "\"%s\" must be a non-negative integer", name);
		return false;
	}
	*out = d > INT_MAX ? INT_MAX : (int) d;
	return true;
}

static bool
get_ack(json_t *obj, CommObj *out, char *err, size_t errlen)
{
	json_t	   *ack = json_object_get(obj, "ack");
	size_t		i;
	json_t	   *v;

	if (ack == NULL)
		return true;
	if (!json_is_array(ack))
		return fail(err, errlen, "\"ack\" must be an array of jti strings");
	json_array_foreach(ack, i, v)
	{
		if (!json_is_string(v) || json_string_length(v) == 0)
			return fail(err, errlen, "\"ack\" must be an array of jti strings");
		out->ack = lappend(out->ack, pstrdup(json_string_value(v)));
	}
	return true;
}

static bool
get_set_errs(json_t *obj, CommObj *out, char *err, size_t errlen)
{
	json_t	   *errs = json_object_get(obj, "setErrs");
	const char *jti;
	json_t	   *v;

	if (errs == NULL)
		return true;
	if (!json_is_object(errs))
		return fail(err, errlen, "\"setErrs\" must be an object of jti to {\"err\", \"description\"}");
	json_object_foreach(errs, jti, v)
	{
		json_t	   *code = json_object_get(v, "err");
		json_t	   *desc = json_object_get(v, "description");
		SetErrEntry *e;

		if (!json_is_object(v) || !json_is_string(code) ||
			json_string_length(code) == 0)
			return fail(err, errlen, "each \"setErrs\" entry must be an object with a string \"err\"");
		if (desc != NULL && !json_is_string(desc))
			return fail(err, errlen, "a \"setErrs\" \"description\" must be a string");
		e = palloc(sizeof(SetErrEntry));
		e->jti = pstrdup(jti);
		e->err = pstrdup(json_string_value(code));
		e->description = desc ? pstrdup(json_string_value(desc)) : NULL;
		out->errs = lappend(out->errs, e);
	}
	return true;
}

static bool
get_sets(json_t *obj, CommObj *out, char *err, size_t errlen)
{
	json_t	   *sets = json_object_get(obj, "sets");
	const char *key;
	json_t	   *v;

	if (sets == NULL)
		return true;
	if (!json_is_object(sets))
		return fail(err, errlen, "\"sets\" must be an object of jti to SET strings");
	json_object_foreach(sets, key, v)
	{
		SetEntry   *e;

		if (!json_is_string(v))
			return fail(err, errlen, "every value in \"sets\" must be a SET as a string");
		e = palloc(sizeof(SetEntry));
		e->key = pstrdup(key);
		e->token = pstrdup(json_string_value(v));
		out->sets = lappend(out->sets, e);
	}
	return true;
}

/* Decode an RFC 8936 poll request; on failure *err says what is wrong */
extern bool ref_commobj_parse_poll(const char *text, size_t len, CommObj *out,
								   char *err, size_t errlen);
extern bool ref_commobj_parse(const char *text, size_t len, CommObj *out,
							  char *err, size_t errlen);

bool
ref_commobj_parse_poll(const char *text, size_t len, CommObj *out,
				   char *err, size_t errlen)
{
	json_t	   *obj;
	json_t	   *ri;

	memset(out, 0, sizeof(*out));
	out->max_events = -1;
	if ((obj = load_object(text, len, "poll request", err, errlen)) == NULL)
		return false;
	ri = json_object_get(obj, "returnImmediately");
	if (ri != NULL && !json_is_boolean(ri))
		return fail(err, errlen, "\"returnImmediately\" must be a boolean");
	out->return_immediately = ri != NULL && json_is_true(ri);
	return get_count(obj, "maxEvents", &out->max_events, err, errlen) &&
		get_ack(obj, out, err, errlen) &&
		get_set_errs(obj, out, err, errlen);
}

/* Decode a pushpull Communication Object */
bool
ref_commobj_parse(const char *text, size_t len, CommObj *out, char *err,
			  size_t errlen)
{
	json_t	   *obj;

	memset(out, 0, sizeof(*out));
	out->max_events = -1;
	if ((obj = load_object(text, len, "Communication Object", err, errlen)) == NULL)
		return false;
	return get_count(obj, "maxResponseEvents", &out->max_events, err, errlen) &&
		get_sets(obj, out, err, errlen) &&
		get_ack(obj, out, err, errlen) &&
		get_set_errs(obj, out, err, errlen);
}
