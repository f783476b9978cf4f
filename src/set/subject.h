/*-------------------------------------------------------------------------
 *
 * subject.h
 *	  Subject identifiers (RFC 9493 and the SSF formats).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_SUBJECT_H
#define SETSTREAM_SUBJECT_H

#include "codec/json.h"

#include "setstream.h"

extern bool subject_validate(json_t *subject, const char *what, SetFailure *f);
extern const char *subject_member_for_format(const char *format);

extern bool uri_is_absolute(const char *s);

#endif
