/*-------------------------------------------------------------------------
 *
 * pg_compat.h
 *	  The differences between the PostgreSQL majors setstream builds on (15,
 *	  17 and 18; see scripts/test-majors.sh), each behind one small macro
 *	  here, so that no "#if PG_VERSION_NUM" appears anywhere else.
 *
 *	  Include it after postgres.h and the headers that declare what a macro
 *	  names (storage/proc.h for MyProc, ...).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_PG_COMPAT_H
#define SETSTREAM_PG_COMPAT_H

#include "postgres.h"

/*
 * The local transaction id of this backend's current transaction.  17 moved
 * it into the virtual transaction id: MyProc->vxid.lxid.
 */
#if PG_VERSION_NUM >= 170000
#define MyProcLocalTransactionId() (MyProc->vxid.lxid)
#else
#define MyProcLocalTransactionId() (MyProc->lxid)
#endif

/*
 * This backend's number among the PGPROCs (0 when it has none).  17 made
 * it the global MyProcNumber; before, it is MyProc->pgprocno.
 */
#if PG_VERSION_NUM >= 170000
#define MyProcNumberOrZero() (MyProc != NULL ? (int) MyProcNumber : 0)
#else
#define MyProcNumberOrZero() (MyProc != NULL ? MyProc->pgprocno : 0)
#endif

/*
 * The semantic actions of PostgreSQL's JSON parser (common/jsonapi.h)
 * return a JsonParseErrorType since 16, nothing before.  An action is
 * declared "static JSON_ACTION_RESULT on_x(...)" and ends with
 * "return JSON_ACTION_DONE;".
 */
#if PG_VERSION_NUM >= 160000
#define JSON_ACTION_RESULT JsonParseErrorType
#define JSON_ACTION_DONE JSON_SUCCESS
#else
#define JSON_ACTION_RESULT void
#define JSON_ACTION_DONE
#endif

/*
 * A lexer over a counted string, palloc'd.  17 added a first argument, the
 * context to fill (NULL: allocate one).
 */
#if PG_VERSION_NUM >= 170000
#define MakeJsonLexContextCstringLen(json, len, encoding, need_escapes) \
	makeJsonLexContextCstringLen(NULL, (json), (len), (encoding), (need_escapes))
#else
#define MakeJsonLexContextCstringLen(json, len, encoding, need_escapes) \
	makeJsonLexContextCstringLen((json), (len), (encoding), (need_escapes))
#endif

/*
 * A WaitEventSet that lives as long as the process.  17 takes a resource
 * owner (NULL: none) where 15 took the memory context, and allocates in
 * TopMemoryContext itself.
 */
#if PG_VERSION_NUM >= 170000
#define CreateWaitEventSetTop(nevents) CreateWaitEventSet(NULL, (nevents))
#else
#define CreateWaitEventSetTop(nevents) \
	CreateWaitEventSet(TopMemoryContext, (nevents))
#endif

/*
 * GetMemoryChunkContext() is an inline function of utils/memutils.h before
 * 16 and a function of mcxt.c from 16 on, which the fuzz targets' memory
 * shim (test/fuzz/shim/mcxt.c) then supplies.
 */
#define MEMORY_CHUNK_CONTEXT_IS_EXTERN (PG_VERSION_NUM >= 160000)

/*
 * A function that does not return, marked after its declarator.  18 dropped
 * pg_attribute_noreturn() for pg_noreturn, which goes first (C11
 * _Noreturn); gcc and clang take the attribute after the declarator.
 */
#if PG_VERSION_NUM >= 180000
#define pg_attribute_noreturn() __attribute__((noreturn))
#endif

#endif							/* SETSTREAM_PG_COMPAT_H */
