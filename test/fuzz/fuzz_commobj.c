/*-------------------------------------------------------------------------
 *
 * fuzz_commobj.c
 *	  libFuzzer target: RFC 8936 poll requests (commobj_parse_poll) and
 *	  pushpull Communication Objects (commobj_parse, then exchange_verify
 *	  over its "sets", as routes.c does before the database step).
 *
 *	  Input: one byte (bit 0: Communication Object, else poll request;
 *	  bits 1-4: the stream's settings), then the JSON body.
 *
 *-------------------------------------------------------------------------
 */
#include "shim.h"

#include <stdio.h>
#include <string.h>

#include "commobj.h"
#include "exchange.h"

typedef struct CommInput
{
	const char *body;
	size_t		len;
	bool		commobj;
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

static void
run_commobj(void *arg)
{
	CommInput  *in = arg;
	CommObj		obj;
	char		err[256] = "";
	bool		ok;

	ok = in->commobj ?
		commobj_parse(in->body, in->len, &obj, err, sizeof(err)) :
		commobj_parse_poll(in->body, in->len, &obj, err, sizeof(err));
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
	if (!shim_run(run_commobj, &in))
	{
		fprintf(stderr, "peer input raised an ERROR: %s\n", shim_last_error());
		abort();
	}
	fuzz_input_end(cxt);
	return 0;
}
