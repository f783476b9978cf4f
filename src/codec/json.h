/*-------------------------------------------------------------------------
 *
 * json.h
 *	  jansson, as setstream uses it.
 *
 *	  The postgres executable exports a function named json_object (the SQL
 *	  function), and symbols of the executable win over those of shared
 *	  libraries: a call of jansson's json_object() by name from setstream.so
 *	  would land in PostgreSQL's.  json_object() is therefore redefined
 *	  here as json_pack("{}"), which jansson resolves internally.  (The
 *	  Makefile checks that setstream.so imports no json_object.)  For the
 *	  same reason cjose_jwk_to_json() and cjose_header_new() are not used.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_JSON_H
#define SETSTREAM_JSON_H

#include <jansson.h>

#define json_object() json_pack("{}")

/* jsonwrite.c: json_dumps(JSON_COMPACT) into a StringInfo, faster */
struct StringInfoData;
extern void json_write(struct StringInfoData *out, json_t *v);

#endif
