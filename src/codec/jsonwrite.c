/*-------------------------------------------------------------------------
 *
 * jsonwrite.c
 *	  The compact JSON text of a jansson value, appended to a StringInfo:
 *	  what json_dumps(JSON_COMPACT) writes, for the listener's responses.
 *
 *	  jansson stays the JSON library (parsing, the value model); only its
 *	  serializer is replaced here.  It escapes a string one character at a
 *	  time through a callback, and the listener's responses are mostly SETs
 *	  of a kilobyte or more: draining an outbox spent a fifth of the
 *	  listener's instructions in json_dumps.  This writer copies the runs of
 *	  a string that need no escape with one memcpy.  Non-ASCII UTF-8 is
 *	  written as is, '/' is not escaped, as jansson does by default.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "base/pg_builtins.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"

#include "codec/json.h"

/* The bytes a JSON string cannot hold as they are: one lookup a byte */
static const bool needs_escape[256] = {
	[0x00 ... 0x1f] = true,
	['"'] = true,
	['\\'] = true,
};

static void
write_string(StringInfo out, const char *s, size_t len)
{
	const char *end = s + len;
	const char *run = s;

	appendStringInfoCharMacro(out, '"');
	for (const char *p = s; p < end; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (!needs_escape[c])
			continue;
		appendBinaryStringInfo(out, run, p - run);
		run = p + 1;
		switch (c)
		{
			case '"':
				appendStringInfoString(out, "\\\"");
				break;
			case '\\':
				appendStringInfoString(out, "\\\\");
				break;
			case '\b':
				appendStringInfoString(out, "\\b");
				break;
			case '\f':
				appendStringInfoString(out, "\\f");
				break;
			case '\n':
				appendStringInfoString(out, "\\n");
				break;
			case '\r':
				appendStringInfoString(out, "\\r");
				break;
			case '\t':
				appendStringInfoString(out, "\\t");
				break;
			default:
				appendStringInfo(out, "\\u%04X", c);
				break;
		}
	}
	appendBinaryStringInfo(out, run, end - run);
	appendStringInfoCharMacro(out, '"');
}

void
json_write(StringInfo out, json_t *v)
{
	check_stack_depth();
	switch (json_typeof(v))
	{
		case JSON_OBJECT:
			{
				const char *key;
				json_t	   *member;
				bool		first = true;

				appendStringInfoCharMacro(out, '{');
				json_object_foreach(v, key, member)
				{
					if (!first)
						appendStringInfoCharMacro(out, ',');
					first = false;
					write_string(out, key, strlen(key));
					appendStringInfoCharMacro(out, ':');
					json_write(out, member);
				}
				appendStringInfoCharMacro(out, '}');
				break;
			}
		case JSON_ARRAY:
			appendStringInfoCharMacro(out, '[');
			for (size_t i = 0; i < json_array_size(v); i++)
			{
				if (i > 0)
					appendStringInfoCharMacro(out, ',');
				json_write(out, json_array_get(v, i));
			}
			appendStringInfoCharMacro(out, ']');
			break;
		case JSON_STRING:
			write_string(out, json_string_value(v), json_string_length(v));
			break;
		case JSON_INTEGER:
			appendStringInfo(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
			break;
		case JSON_TRUE:
			appendStringInfoString(out, "true");
			break;
		case JSON_FALSE:
			appendStringInfoString(out, "false");
			break;
		case JSON_NULL:
			appendStringInfoString(out, "null");
			break;
		case JSON_REAL:
			{
				/* rare in responses: jansson's own format */
				char	   *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

				appendStringInfoString(out, text);
				break;
			}
	}
}
