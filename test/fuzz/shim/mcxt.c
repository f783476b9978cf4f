/*-------------------------------------------------------------------------
 *
 * mcxt.c
 *	  Memory contexts for the fuzz targets.  Every chunk is its own malloc
 *	  block, linked into its context; resetting or deleting a context frees
 *	  them, so AddressSanitizer sees use after reset and LeakSanitizer sees
 *	  memory nobody frees.  The word before each chunk is its context, as
 *	  in the backend (GetMemoryChunkContext).
 *
 *-------------------------------------------------------------------------
 */
#include "shim.h"

#include <stdlib.h>
#include <string.h>

#include "nodes/memnodes.h"
#include "utils/memutils.h"

#include "base/pg_compat.h"

typedef struct ShimChunk
{
	struct ShimChunk *prev;
	struct ShimChunk *next;
	Size		size;
	MemoryContext context;		/* must be last: GetMemoryChunkContext */
} ShimChunk;

typedef struct ShimContext
{
	MemoryContextData base;		/* parent, children, name */
	ShimChunk  *chunks;
} ShimContext;

MemoryContext CurrentMemoryContext = NULL;
MemoryContext TopMemoryContext = NULL;
MemoryContext ErrorContext = NULL;

static MemoryContext
context_create(MemoryContext parent, const char *name)
{
	ShimContext *c = calloc(1, sizeof(ShimContext));

	if (c == NULL)
		abort();
	c->base.type = T_AllocSetContext;
	c->base.name = name;
	c->base.parent = parent;
	if (parent != NULL)
	{
		c->base.nextchild = parent->firstchild;
		if (parent->firstchild != NULL)
			parent->firstchild->prevchild = &c->base;
		parent->firstchild = &c->base;
	}
	return &c->base;
}

void
shim_memory_init(void)
{
	if (TopMemoryContext != NULL)
		return;
	TopMemoryContext = context_create(NULL, "TopMemoryContext");
	ErrorContext = context_create(TopMemoryContext, "ErrorContext");
	CurrentMemoryContext = TopMemoryContext;
}

MemoryContext
AllocSetContextCreateInternal(MemoryContext parent, const char *name,
							  Size minContextSize, Size initBlockSize,
							  Size maxBlockSize)
{
	return context_create(parent, name);
}

static void
context_free_chunks(ShimContext *c)
{
	ShimChunk  *ch = c->chunks;

	while (ch != NULL)
	{
		ShimChunk  *next = ch->next;

		free(ch);
		ch = next;
	}
	c->chunks = NULL;
	c->base.mem_allocated = 0;
}

void
MemoryContextDelete(MemoryContext context)
{
	MemoryContext parent = context->parent;

	Assert(context != TopMemoryContext);
	while (context->firstchild != NULL)
		MemoryContextDelete(context->firstchild);
	context_free_chunks((ShimContext *) context);
	if (context->prevchild != NULL)
		context->prevchild->nextchild = context->nextchild;
	else if (parent != NULL)
		parent->firstchild = context->nextchild;
	if (context->nextchild != NULL)
		context->nextchild->prevchild = context->prevchild;
	if (CurrentMemoryContext == context)
		CurrentMemoryContext = parent;
	free(context);
}

/* As in the backend: a reset deletes the children and frees the chunks */
void
MemoryContextReset(MemoryContext context)
{
	while (context->firstchild != NULL)
		MemoryContextDelete(context->firstchild);
	context_free_chunks((ShimContext *) context);
}

void
MemoryContextDeleteChildren(MemoryContext context)
{
	while (context->firstchild != NULL)
		MemoryContextDelete(context->firstchild);
}

Size
shim_context_bytes(MemoryContext context, bool recurse)
{
	Size		total = context->mem_allocated;

	if (recurse)
		for (MemoryContext c = context->firstchild; c != NULL; c = c->nextchild)
			total += shim_context_bytes(c, true);
	return total;
}

static ShimChunk *
chunk_of(void *pointer)
{
	return (ShimChunk *) ((char *) pointer - sizeof(ShimChunk));
}

#if MEMORY_CHUNK_CONTEXT_IS_EXTERN
/* the backend's is in mcxt.c from 16 on (an inline function before) */
MemoryContext
GetMemoryChunkContext(void *pointer)
{
	return chunk_of(pointer)->context;
}
#endif

static void
chunk_link(ShimContext *c, ShimChunk *ch)
{
	ch->prev = NULL;
	ch->next = c->chunks;
	if (c->chunks != NULL)
		c->chunks->prev = ch;
	c->chunks = ch;
	c->base.mem_allocated += ch->size;
}

static void
chunk_unlink(ShimChunk *ch)
{
	ShimContext *c = (ShimContext *) ch->context;

	if (ch->prev != NULL)
		ch->prev->next = ch->next;
	else
		c->chunks = ch->next;
	if (ch->next != NULL)
		ch->next->prev = ch->prev;
	c->base.mem_allocated -= ch->size;
}

static void *
context_alloc(MemoryContext context, Size size, bool zero)
{
	ShimChunk  *ch;

	if (!AllocSizeIsValid(size))
		elog(ERROR, "invalid memory alloc request size %zu", size);
	ch = malloc(sizeof(ShimChunk) + size);
	if (ch == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	ch->size = size;
	ch->context = context;
	chunk_link((ShimContext *) context, ch);
	if (zero)
		memset(ch + 1, 0, size);
	return ch + 1;
}

void *
MemoryContextAlloc(MemoryContext context, Size size)
{
	return context_alloc(context, size, false);
}

void *
MemoryContextAllocZero(MemoryContext context, Size size)
{
	return context_alloc(context, size, true);
}

void *
palloc(Size size)
{
	return context_alloc(CurrentMemoryContext, size, false);
}

void *
palloc0(Size size)
{
	return context_alloc(CurrentMemoryContext, size, true);
}

void
pfree(void *pointer)
{
	ShimChunk  *ch = chunk_of(pointer);

	chunk_unlink(ch);
	free(ch);
}

void *
repalloc(void *pointer, Size size)
{
	ShimChunk  *ch = chunk_of(pointer);
	ShimContext *c = (ShimContext *) ch->context;
	ShimChunk  *moved;

	if (!AllocSizeIsValid(size))
		elog(ERROR, "invalid memory alloc request size %zu", size);
	chunk_unlink(ch);
	moved = realloc(ch, sizeof(ShimChunk) + size);
	if (moved == NULL)
	{
		chunk_link(c, ch);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	}
	moved->size = size;
	chunk_link(c, moved);
	return moved + 1;
}

char *
MemoryContextStrdup(MemoryContext context, const char *string)
{
	Size		len = strlen(string) + 1;
	char	   *copy = MemoryContextAlloc(context, len);

	memcpy(copy, string, len);
	return copy;
}

char *
pstrdup(const char *in)
{
	return MemoryContextStrdup(CurrentMemoryContext, in);
}

char *
pnstrdup(const char *in, Size len)
{
	char	   *out;

	len = strnlen(in, len);
	out = palloc(len + 1);
	memcpy(out, in, len);
	out[len] = '\0';
	return out;
}
