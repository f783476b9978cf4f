/*-------------------------------------------------------------------------
 *
 * fuzz_set.c
 *	  libFuzzer target: a received SET through set_verify, as the listener
 *	  checks a push or a SET of a Communication Object (JWS split, JOSE
 *	  header, claims, issuer, signature against keys of every supported
 *	  algorithm, audience, profile, subject identifier).
 *
 *	  Input: one mode byte, then the mode's bytes.  The low four bits of
 *	  the mode byte pick the stream's settings (fixture.c); bits 4-5 pick
 *	  what the rest is:
 *	    0  a compact serialization, as is;
 *	    1  "header JSON\nclaims JSON[\nsignature bytes]", base64url-encoded
 *	       here, so that the fuzzer works on JSON rather than base64;
 *	    2  a key byte, then claims JSON, signed here with that fixture key
 *	       (jose_sign), so that inputs get past the signature check;
 *	    3  a subject identifier (JSON), straight into subject_validate.
 *
 *-------------------------------------------------------------------------
 */
#include "shim.h"

#include <stdio.h>
#include <string.h>

#include "lib/stringinfo.h"

#include "set/subject.h"

typedef struct SetInput
{
	const uint8 *data;
	size_t		len;
	unsigned int mode;
	unsigned int variant;
} SetInput;

static void
append_b64(StringInfo buf, const uint8 *data, size_t len)
{
	if (len > 0)
		appendStringInfoString(buf, jose_b64url_encode(data, len));
}

/* mode 1: up to three newline-separated parts, each base64url-encoded */
static char *
encode_parts(const uint8 *data, size_t len)
{
	StringInfoData buf;
	const uint8 *p = data;
	const uint8 *end = data + len;

	initStringInfo(&buf);
	for (int part = 0; part < 3; part++)
	{
		const uint8 *nl = part < 2 ? memchr(p, '\n', end - p) : NULL;
		const uint8 *stop = nl ? nl : end;

		if (part > 0)
			appendStringInfoChar(&buf, '.');
		append_b64(&buf, p, stop - p);
		p = nl ? nl + 1 : end;
	}
	return buf.data;
}

/* mode 2: sign the claims with a fixture key, as a transmitter would */
static char *
sign_claims(const uint8 *data, size_t len)
{
	FixtureKey	k;

	if (len == 0)
		return pstrdup("");
	k = data[0] % FKEY_COUNT;
	return jose_sign(jose_key_get(fixture_private_jwk[k]), fixture_key_alg[k],
					 fixture_key_kid[k], (const char *) data + 1, len - 1);
}

static void
check_failure(const SetFailure *f)
{
	if (f->code == SETERR_NONE || f->description[0] == '\0')
	{
		fprintf(stderr, "set_verify failed without an RFC 8935 code or description\n");
		abort();
	}
	(void) seterr_name(f->code);	/* raises for a code with no wire name */
}

static void
check_success(const StreamInfo *stream, const ParsedSet *ps)
{
	if (ps->jti == NULL || ps->iss == NULL || ps->alg == NULL ||
		ps->events == NULL || ps->claims == NULL ||
		stream->peer_issuer == NULL || strcmp(ps->iss, stream->peer_issuer) != 0 ||
		(strcmp(ps->alg, "none") == 0 && !stream->allow_unsigned) ||
		(stream->ssf && ps->sub_id == NULL))
	{
		fprintf(stderr, "set_verify accepted a SET it must refuse\n");
		abort();
	}
}

static void
run_set(void *arg)
{
	SetInput   *in = arg;
	StreamInfo *stream = fixture_stream(in->variant);
	SetRules	rules = streamcache_rules(stream);
	char	   *token;
	size_t		len;
	ParsedSet	ps;
	SetFailure	f;

	memset(&f, 0, sizeof(f));
	switch (in->mode)
	{
		case 0:
			/* NULs stay: the listener passes body.data and body.len */
			len = in->len;
			token = palloc(in->len + 1);
			memcpy(token, in->data, in->len);
			token[in->len] = '\0';
			break;
		case 1:
			token = encode_parts(in->data, in->len);
			len = strlen(token);
			break;
		case 2:
			token = sign_claims(in->data, in->len);
			len = strlen(token);
			break;
		default:
			{
				json_t	   *subject = jose_parse_json_object((const char *) in->data,
															 in->len, "sub_id",
															 NULL, &f);

				if (subject != NULL && !subject_validate(subject, "sub_id", &f))
					check_failure(&f);
				return;
			}
	}
	if (set_verify(&rules, token, len, &ps, &f))
		check_success(stream, &ps);
	else
		check_failure(&f);
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	MemoryContext cxt;
	SetInput	in;

	if (size < 1)
		return 0;
	fixture_init();
	in.variant = data[0] & 0x0f;
	in.mode = (data[0] >> 4) & 0x03;
	in.data = data + 1;
	in.len = size - 1;
	cxt = fuzz_input_begin();
	if (!shim_run(run_set, &in))
	{
		fprintf(stderr, "peer input raised an ERROR: %s\n", shim_last_error());
		abort();
	}
	fuzz_input_end(cxt);
	return 0;
}
