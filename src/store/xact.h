/*-------------------------------------------------------------------------
 *
 * xact.h
 *	  Transactions and subtransactions, with one error policy, and the one
 *	  way to begin a turn of database work (store/xact.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_XACT_H
#define SETSTREAM_XACT_H

/* What xact_begin_turn found */
typedef enum XactTurn
{
	XACT_NO_EXTENSION,			/* setstream is not installed here */
	XACT_SAME,					/* the extension the cache was filled from */
	XACT_RECREATED				/* dropped and created again since */
} XactTurn;

typedef void (*XactWork) (void *arg);

extern Oid	xact_extension(void);
extern XactTurn xact_begin_turn(void);
extern bool xact_run(XactWork work, void *arg);
extern bool xact_try(XactWork work, void *arg, ErrorData **error);

#endif
