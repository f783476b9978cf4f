/*-------------------------------------------------------------------------
 *
 * fuzz_commobj.c
 *	  libFuzzer target: RFC 8936 poll requests (commobj_parse_poll) and
 *	  pushpull Communication Objects (commobj_parse, then exchange_verify
 *	  over its "sets", as routes.c does before the database step); and the
 *	  JSON writer of the responses (jsonwrite.c), which must write what
 *	  json_dumps(JSON_COMPACT) writes for any value, and jsonread_load,
 *	  which must read what json_loadb reads.  The decoder is also
 *	  checked against the jansson decoder it replaced (commobj_ref.c): both
 *	  must accept the same texts and unpack the same values.
 *
 *	  Input: one byte (bit 0: Communication Object, else poll request;
 *	  bits 1-4: the stream's settings; bit 5: the writer instead), then
 *	  the JSON text.
 *
 *-------------------------------------------------------------------------
 */
#include "shim.h"

#include <stdio.h>
#include <string.h>

#include "lib/stringinfo.h"

#include "codec/commobj.h"
#include "exchange/exchange.h"
#include "codec/jsonread.h"

/* commobj_ref.c: the jansson decoder that commobj.c replaced */
extern bool ref_commobj_parse_poll(const char *text, size_t len, CommObj *out,
								   char *err, size_t errlen);
extern bool ref_commobj_parse(const char *text, size_t len, CommObj *out,
							  char *err, size_t errlen);

typedef struct CommInput
{
	const char *body;
	size_t		len;
	bool		commobj;
	bool		writer;
	unsigned int variant;
} CommInput;

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_commobj: %s\n", what);
	abort();
}

static void
check_object(const CommObj *obj, bool commobj)
{
	ListCell   *lc;

	if (obj->max_events < -1 || (!commobj && obj->sets != NIL))
		fail("a parsed object is inconsistent");
	foreach(lc, obj->ack)
		if (((char *) lfirst(lc))[0] == '\0')
			fail("an empty jti was acknowledged");
	foreach(lc, obj->errs)
	{
		SetErrEntry *e = lfirst(lc);

		if (e->jti == NULL || e->err == NULL || e->err[0] == '\0')
			fail("a setErrs entry lacks its jti or err");
	}
}

static void
check_items(const CommObj *obj, const IngestItem *items)
{
	int			i = 0;
	ListCell   *lc;

	foreach(lc, obj->sets)
	{
		const IngestItem *item = &items[i++];

		if (item->entry != lfirst(lc))
			fail("exchange_verify mixed up its items");
		if (item->valid && strcmp(item->ps.jti, item->entry->key) != 0)
			fail("a SET was accepted under a key that is not its jti");
		if (!item->valid && (item->f.code == SETERR_NONE || item->f.description[0] == '\0'))
			fail("a refused SET has no RFC 8935 code or description");
	}
}

/* jsonread_load (headers, claims, JWKs) against json_loadb, value for value */
static void
check_load(const CommInput *in)
{
	json_error_t jerr;
	const char *error = NULL;
	json_t	   *ours = jsonread_load(in->body, in->len, &error);
	json_t	   *ref;

	if (ours == NULL && (error == NULL || error[0] == '\0'))
		fail("jsonread_load refused a text without saying why");
	if (memchr(in->body, '\0', in->len) != NULL)
	{
		if (ours != NULL)
			fail("jsonread_load accepted a text with a NUL byte");
		return;
	}
	ref = json_loadb(in->body, in->len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if ((ours == NULL) != (ref == NULL))
	{
		fprintf(stderr, "jsonread_load: %s\njson_loadb: %s\n",
				ours ? "accepted" : error, ref ? "accepted" : jerr.text);
		fail("jsonread_load and json_loadb disagree on whether the text is valid");
	}
	if (ours != NULL && !json_equal(ours, ref))
		fail("jsonread_load and json_loadb read different values");
}

/* json_write against jansson's own compact serializer */
static void
run_writer(const CommInput *in)
{
	json_error_t jerr;
	json_t	   *v = json_loadb(in->body, in->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	char	   *want;
	StringInfoData got;

	if (v == NULL)
		return;
	want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (want == NULL)
		return;
	initStringInfo(&got);
	json_write(&got, v);
	if (strlen(want) != (size_t) got.len || memcmp(want, got.data, got.len) != 0)
	{
		fprintf(stderr, "json_write: %s\njson_dumps: %s\n", got.data, want);
		fail("json_write differs from json_dumps(JSON_COMPACT)");
	}
}

static bool
same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
		(a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The decoder against the jansson one it replaced, value for value */
static void
check_against_reference(const CommInput *in, bool ok, const CommObj *obj,
						const char *err)
{
	CommObj		ref;
	char		referr[256] = "";
	bool		refok;
	ListCell   *a,
			   *b;

	/*
	 * A NUL byte is never valid JSON, but jansson's json_loadb lets some
	 * through (it reads one as the end of the text): the decoder must refuse
	 * them all.
	 */
	if (memchr(in->body, '\0', in->len) != NULL)
	{
		if (ok)
			fail("the decoder accepted a text with a NUL byte");
		return;
	}
	refok = in->commobj ?
		ref_commobj_parse(in->body, in->len, &ref, referr, sizeof(referr)) :
		ref_commobj_parse_poll(in->body, in->len, &ref, referr, sizeof(referr));
	if (ok != refok)
	{
		fprintf(stderr, "decoder: %s\njansson: %s\n",
				ok ? "accepted" : err, refok ? "accepted" : referr);
		fail("the decoder and jansson disagree on whether the text is valid");
	}
	if (!ok)
		return;
	if (obj->max_events != ref.max_events ||
		obj->return_immediately != ref.return_immediately ||
		list_length(obj->sets) != list_length(ref.sets) ||
		list_length(obj->ack) != list_length(ref.ack) ||
		list_length(obj->errs) != list_length(ref.errs))
		fail("the decoder and jansson unpacked different members");
	forboth(a, obj->sets, b, ref.sets)
	{
		SetEntry   *x = lfirst(a),
				   *y = lfirst(b);

		if (!same_str(x->key, y->key) || !same_str(x->token, y->token))
			fail("the decoder and jansson unpacked different \"sets\"");
	}
	forboth(a, obj->ack, b, ref.ack)
		if (!same_str(lfirst(a), lfirst(b)))
		fail("the decoder and jansson unpacked different \"ack\"");
	forboth(a, obj->errs, b, ref.errs)
	{
		SetErrEntry *x = lfirst(a),
				   *y = lfirst(b);

		if (!same_str(x->jti, y->jti) || !same_str(x->err, y->err) ||
			!same_str(x->description, y->description))
			fail("the decoder and jansson unpacked different \"setErrs\"");
	}
}

static void
run_commobj(void *arg)
{
	CommInput  *in = arg;
	CommObj		obj;
	char		err[256] = "";
	bool		ok;

	if (in->writer)
	{
		check_load(in);
		run_writer(in);
		return;
	}
	ok = in->commobj ?
		commobj_parse(in->body, in->len, &obj, err, sizeof(err)) :
		commobj_parse_poll(in->body, in->len, &obj, err, sizeof(err));
	check_against_reference(in, ok, &obj, err);
	if (!ok)
	{
		if (err[0] == '\0')
			fail("a refused object has no error text");
		return;
	}
	check_object(&obj, in->commobj);
	if (in->commobj)
		check_items(&obj, exchange_verify(fixture_stream(in->variant), &obj));
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	MemoryContext cxt;
	CommInput	in;
	char	   *body;

	if (size < 1)
		return 0;
	fixture_init();
	cxt = fuzz_input_begin();
	/* as a request body: routes.c hands the parsers body.data, body.len */
	body = palloc(size);
	memcpy(body, data + 1, size - 1);
	body[size - 1] = '\0';
	in.body = body;
	in.len = size - 1;
	in.commobj = (data[0] & 1) != 0;
	in.variant = (data[0] >> 1) & 0x0f;
	in.writer = (data[0] & 0x20) != 0;
	if (!shim_run(run_commobj, &in))
	{
		fprintf(stderr, "peer input raised an ERROR: %s\n", shim_last_error());
		abort();
	}
	fuzz_input_end(cxt);
	return 0;
}
