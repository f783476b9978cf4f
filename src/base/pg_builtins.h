/*-------------------------------------------------------------------------
 *
 * pg_builtins.h
 *	  utils/builtins.h for files that also use jansson: PostgreSQL's
 *	  fmgrprotos.h declares the SQL function json_object(), whose C name
 *	  jansson uses for its own constructor.  PostgreSQL's is renamed here,
 *	  and the file must come before jansson.h (whose json_typeof macro
 *	  would mangle fmgrprotos.h).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_PG_BUILTINS_H
#define SETSTREAM_PG_BUILTINS_H

#ifdef JANSSON_H
#error "include pg_builtins.h before jansson.h"
#endif

#define json_object pg_builtin_json_object
#include "utils/builtins.h"
#undef json_object

#endif
