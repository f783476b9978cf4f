/*-------------------------------------------------------------------------
 *
 * subject.c
 *	  Validation of Subject Identifiers: the RFC 9493 formats (account,
 *	  email, iss_sub, opaque, phone_number, did, uri, aliases) and the SSF
 *	  ones (jwt_id, saml_assertion_id, ip-addresses, complex).
 *
 *	  A subject identifier names its format in "format", carries every
 *	  member its format requires (non-empty strings), and no member the
 *	  format does not describe.  Unknown formats are refused: a receiver
 *	  cannot tell what an unknown subject means.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "set/subject.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>

/* An absolute URI: an RFC 3986 scheme, ':', and no spaces or controls */
bool
uri_is_absolute(const char *s)
{
	const char *p = s;

	if (!isalpha((unsigned char) *p))
		return false;
	while (isalnum((unsigned char) *p) || *p == '+' || *p == '-' || *p == '.')
		p++;
	if (*p != ':' || p[1] == '\0')
		return false;
	for (; *p; p++)
		if ((unsigned char) *p <= ' ' || *p == 0x7f)
			return false;
	return true;
}

typedef bool (*ValueCheck) (const char *value);

typedef struct SubjectFormat
{
	const char *format;
	const char *members[3];		/* required string members, NULL-ended */
	ValueCheck	checks[3];		/* per member, NULL = any non-empty string */
} SubjectFormat;

static bool check_email(const char *v);
static bool check_phone(const char *v);
static bool check_acct(const char *v);
static bool check_did(const char *v);

static const SubjectFormat simple_formats[] = {
	{"account", {"uri"}, {check_acct}},
	{"email", {"email"}, {check_email}},
	{"iss_sub", {"iss", "sub"}},
	{"opaque", {"id"}},
	{"phone_number", {"phone_number"}, {check_phone}},
	{"did", {"url"}, {check_did}},
	{"uri", {"uri"}, {uri_is_absolute}},
	{"jwt_id", {"iss", "jti"}},
	{"saml_assertion_id", {"issuer", "assertion_id"}},
};

static bool validate_at(json_t *subject, const char *what, int depth,
						bool allow_aliases, bool allow_complex, SetFailure *f);

/* addr-spec, checked for shape: local@domain, no spaces or controls */
static bool
check_email(const char *v)
{
	const char *at = strrchr(v, '@');

	if (at == NULL || at == v || at[1] == '\0')
		return false;
	for (const char *p = v; *p; p++)
		if ((unsigned char) *p <= ' ' || *p == 0x7f)
			return false;
	if (strchr(at + 1, '.') == NULL && strcmp(at + 1, "localhost") != 0)
		return false;
	return at[1] != '.' && v[strlen(v) - 1] != '.';
}

/* E.164: '+', then 2 to 15 digits, the first not zero */
static bool
check_phone(const char *v)
{
	int			n = 0;

	if (v[0] != '+' || v[1] < '1' || v[1] > '9')
		return false;
	for (const char *p = v + 1; *p; p++, n++)
		if (!isdigit((unsigned char) *p))
			return false;
	return n >= 2 && n <= 15;
}

/* RFC 7565 acct: URI: acct:userpart@host */
static bool
check_acct(const char *v)
{
	return strncmp(v, "acct:", 5) == 0 && check_email(v + 5);
}

/* did:method:method-specific-id, possibly with path, query or fragment */
static bool
check_did(const char *v)
{
	const char *p;

	if (strncmp(v, "did:", 4) != 0)
		return false;
	p = v + 4;
	if (!islower((unsigned char) *p) && !isdigit((unsigned char) *p))
		return false;
	while (islower((unsigned char) *p) || isdigit((unsigned char) *p))
		p++;
	return *p == ':' && p[1] != '\0' && uri_is_absolute(v);
}

static bool
check_ip(const char *v)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, v, buf) == 1 || inet_pton(AF_INET6, v, buf) == 1;
}

static const SubjectFormat *
find_simple_format(const char *format)
{
	for (int i = 0; i < lengthof(simple_formats); i++)
		if (strcmp(simple_formats[i].format, format) == 0)
			return &simple_formats[i];
	return NULL;
}

/* The member that carries the value of a single-member format, or NULL */
const char *
subject_member_for_format(const char *format)
{
	const SubjectFormat *sf = find_simple_format(format);

	if (sf == NULL || sf->members[1] != NULL)
		return NULL;
	return sf->members[0];
}

static bool
validate_simple(json_t *subject, const SubjectFormat *sf, const char *what,
				SetFailure *f)
{
	int			nmembers = 0;

	for (; nmembers < 3 && sf->members[nmembers]; nmembers++)
	{
		const char *name = sf->members[nmembers];
		json_t	   *v = json_object_get(subject, name);

		if (v == NULL)
			return set_fail(f, SETERR_INVALID_REQUEST,
							"%s: format \"%s\" requires member \"%s\"",
							what, sf->format, name);
		if (!json_is_string(v) || json_string_length(v) == 0)
			return set_fail(f, SETERR_INVALID_REQUEST,
							"%s: member \"%s\" must be a non-empty string",
							what, name);
		if (strlen(json_string_value(v)) != json_string_length(v) ||
			(sf->checks[nmembers] && !sf->checks[nmembers] (json_string_value(v))))
			return set_fail(f, SETERR_INVALID_REQUEST,
							"%s: member \"%s\" is not a valid %s value",
							what, name, sf->format);
	}
	if (json_object_size(subject) != nmembers + 1)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"%s: format \"%s\" has members it does not describe",
						what, sf->format);
	return true;
}

static bool
validate_ip_addresses(json_t *subject, const char *what, SetFailure *f)
{
	json_t	   *list = json_object_get(subject, "ip-addresses");
	size_t		i;
	json_t	   *v;

	if (!json_is_array(list) || json_array_size(list) == 0)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"%s: format \"ip-addresses\" requires a non-empty array \"ip-addresses\"",
						what);
	json_array_foreach(list, i, v)
	{
		if (!json_is_string(v) || !check_ip(json_string_value(v)))
			return set_fail(f, SETERR_INVALID_REQUEST,
							"%s: \"ip-addresses\" holds something that is not an IP address",
							what);
	}
	if (json_object_size(subject) != 2)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"%s: format \"ip-addresses\" has members it does not describe",
						what);
	return true;
}

static bool
validate_aliases(json_t *subject, const char *what, int depth, SetFailure *f)
{
	json_t	   *list = json_object_get(subject, "identifiers");
	size_t		i;
	json_t	   *v;

	if (!json_is_array(list) || json_array_size(list) == 0)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"%s: format \"aliases\" requires a non-empty array \"identifiers\"",
						what);
	if (json_object_size(subject) != 2)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"%s: format \"aliases\" has members it does not describe",
						what);
	json_array_foreach(list, i, v)
	{
		if (!validate_at(v, what, depth + 1, false, true, f))
			return false;
	}
	return true;
}

static bool
validate_complex(json_t *subject, const char *what, int depth, SetFailure *f)
{
	const char *name;
	json_t	   *v;

	if (json_object_size(subject) < 2)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"%s: a complex subject needs at least one member", what);
	json_object_foreach(subject, name, v)
	{
		if (strcmp(name, "format") == 0)
			continue;
		if (!validate_at(v, what, depth + 1, false, false, f))
			return false;
	}
	return true;
}

static bool
validate_at(json_t *subject, const char *what, int depth,
			bool allow_aliases, bool allow_complex, SetFailure *f)
{
	json_t	   *fmt;
	const char *format;
	const SubjectFormat *sf;

	if (depth > 2)
		return set_fail(f, SETERR_INVALID_REQUEST, "%s: nested too deeply", what);
	if (!json_is_object(subject))
		return set_fail(f, SETERR_INVALID_REQUEST,
						"%s: a subject identifier must be a JSON object", what);
	fmt = json_object_get(subject, "format");
	if (!json_is_string(fmt) || json_string_length(fmt) == 0)
		return set_fail(f, SETERR_INVALID_REQUEST,
						"%s: a subject identifier must have a string member \"format\"",
						what);
	format = json_string_value(fmt);

	if ((sf = find_simple_format(format)) != NULL)
		return validate_simple(subject, sf, what, f);
	if (strcmp(format, "ip-addresses") == 0)
		return validate_ip_addresses(subject, what, f);
	if (strcmp(format, "aliases") == 0)
	{
		if (!allow_aliases)
			return set_fail(f, SETERR_INVALID_REQUEST,
							"%s: \"aliases\" must not be nested", what);
		return validate_aliases(subject, what, depth, f);
	}
	if (strcmp(format, "complex") == 0)
	{
		if (!allow_complex)
			return set_fail(f, SETERR_INVALID_REQUEST,
							"%s: a complex subject may only hold simple subjects",
							what);
		return validate_complex(subject, what, depth, f);
	}
	return set_fail(f, SETERR_INVALID_REQUEST,
					"%s: unknown subject identifier format \"%.64s\"",
					what, format);
}

/*
 * Check a subject identifier; on failure fill *f (invalid_request) and
 * return false.  "what" names it in the description (e.g. "sub_id").
 */
bool
subject_validate(json_t *subject, const char *what, SetFailure *f)
{
	return validate_at(subject, what, 0, true, true, f);
}
