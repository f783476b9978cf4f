/*-------------------------------------------------------------------------
 *
 * subscribeapi.h
 *	  What the rest of setstream uses of subscribeapi.c (setstream as an
 *	  SSF receiver): renewing a subscription's OAuth access token.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_SUBSCRIBEAPI_H
#define SETSTREAM_SUBSCRIBEAPI_H

extern void subscription_renew_source_token(const char *stream);

#endif
