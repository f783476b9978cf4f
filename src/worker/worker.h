/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  Registration of the listener background workers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_WORKER_H
#define SETSTREAM_WORKER_H

extern void worker_register_all(void);

#endif
