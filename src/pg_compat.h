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

#endif							/* SETSTREAM_PG_COMPAT_H */
