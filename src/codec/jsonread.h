/*-------------------------------------------------------------------------
 *
 * jsonread.h
 *	  Reading JSON from peers with PostgreSQL's parser, under jansson's
 *	  rules (jsonread.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_JSONREAD_H
#define SETSTREAM_JSONREAD_H

#include "codec/json.h"

#include "postgres.h"
#include "common/jsonapi.h"

#include "base/pg_compat.h"

/* Containers nest at most this deep (jansson's JSON_PARSER_MAX_DEPTH) */
#define JSONREAD_MAX_DEPTH 2048

/*
 * Run the semantic actions over the text.  False with *error set when the
 * text is not UTF-8 or not JSON; the actions report their own findings.
 */
extern bool jsonread_run(const char *text, size_t len, JsonSemAction *sem,
						 const char **error);

/* Raise the nesting error (caught by jsonread_run) past the limit */
extern void jsonread_check_depth(int depth);

/*
 * A number token as jansson reads it: an integer fits in 64 bits, a real
 * does not overflow.  False with *error set when it does not.
 */
extern bool jsonread_number(const char *token, bool *is_integer,
							json_int_t *integer, double *real,
							const char **error);

/* The message for a repeated member name */
extern const char *jsonread_duplicate_message(const char *key);

/* The whole text as a jansson value; NULL with *error set when invalid */
extern json_t *jsonread_load(const char *text, size_t len,
							 const char **error);

/*
 * The same, and *jsonb: in a UTF-8 database the value jsonb_in makes of
 * the text, built from this parse; (Datum) 0 in other databases.  A number
 * jsonb cannot hold is a finding.
 */
extern json_t *jsonread_load_jsonb(const char *text, size_t len, Datum *jsonb,
								   const char **error);

#endif
