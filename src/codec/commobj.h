/*-------------------------------------------------------------------------
 *
 * commobj.h
 *	  RFC 8936 poll requests and pushpull Communication Objects.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_COMMOBJ_H
#define SETSTREAM_COMMOBJ_H

#include "codec/json.h"

#include "setstream.h"
#include "nodes/pg_list.h"

/* One entry of "setErrs" */
typedef struct SetErrEntry
{
	char	   *jti;
	char	   *err;
	char	   *description;	/* NULL when absent */
} SetErrEntry;

/* One entry of "sets" */
typedef struct SetEntry
{
	char	   *key;			/* must equal the SET's jti */
	char	   *token;
} SetEntry;

/* A poll request or Communication Object, checked and unpacked */
typedef struct CommObj
{
	List	   *sets;			/* SetEntry * (Communication Object only) */
	List	   *ack;			/* char * jti */
	List	   *errs;			/* SetErrEntry * */
	int			max_events;		/* maxEvents / maxResponseEvents, -1 = absent */
	bool		return_immediately; /* poll only; default false */
} CommObj;

extern bool commobj_parse_poll(const char *text, size_t len, CommObj *out,
							   char *err, size_t errlen);
extern bool commobj_parse(const char *text, size_t len, CommObj *out,
						  char *err, size_t errlen);

#endif
