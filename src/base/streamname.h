/*-------------------------------------------------------------------------
 *
 * streamname.h
 *		What a stream's name may be: 1 to 128 letters, digits, '.', '_',
 *		'~' or '-', beginning with a letter or digit (the CHECK on
 *		setstream.streams.name).  The listener's paths (/streams/<name>/...),
 *		the SSF stream_id and receiver names follow the same rule; a name
 *		outside it cannot name a stream, so no lookup is made for it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SETSTREAM_STREAMNAME_H
#define SETSTREAM_STREAMNAME_H

/* ASCII only, whatever the database's LC_CTYPE says isalnum() is */
static inline bool
stream_name_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9');
}

static inline bool
stream_name_valid(const char *s, size_t len)
{
	if (len == 0 || len > 128 || !stream_name_alnum(s[0]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!stream_name_alnum(s[i]) && s[i] != '.' && s[i] != '_' &&
			s[i] != '~' && s[i] != '-')
			return false;
	return true;
}

#endif
