/*-------------------------------------------------------------------------
 *
 * emitfilter.c
 *	  The emit filter (SSF; issue 13): emit() and emit_trigger() deliver
 *	  to a stream only SETs whose event type is in its events_delivered
 *	  (when it has events_requested) and whose subject its subjects allow
 *	  (when it has subjects, or is a receiver's stream and
 *	  setstream.default_subjects is NONE).  SSF's own event types
 *	  (verification, stream-updated) and SETs about the stream itself are
 *	  never filtered.
 *
 *	  The filter is loaded once per cached stream (one query, dropped with
 *	  the cache when the stream or its subjects change), so a stream with
 *	  nothing configured costs emit one pointer test per SET.  Subjects are
 *	  compared as canonical JSON text (compact, sorted members).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "store/emitfilter.h"
#include "store/store.h"
#include "setstream.h"

#define SSF_EVENT_PREFIX "https://schemas.openid.net/secevent/ssf/event-type/"
#define SSE_EVENT_PREFIX "https://schemas.openid.net/secevent/sse/event-type/"

/* The canonical text of each [subject, included] pair into f */
static void
load_subjects(EmitFilter *f, const char *text)
{
	json_error_t jerr;
	json_t	   *arr = json_loads(text, 0, &jerr);
	size_t		i;
	json_t	   *pair;

	if (!json_is_array(arr))
		elog(ERROR, "setstream._stream_filter gave no array of subjects");
	json_array_foreach(arr, i, pair)
	{
		/* jansson allocates with palloc (jose_init_allocators) */
		char	   *copy = json_dumps(json_array_get(pair, 0),
									  JSON_COMPACT | JSON_SORT_KEYS);

		if (json_is_true(json_array_get(pair, 1)))
			f->included = lappend(f->included, copy);
		else
			f->excluded = lappend(f->excluded, copy);
	}
	json_decref(arr);
	f->has_subjects = true;
}

/* The stream's filter, loaded into the stream's memory at first use */
static EmitFilter *
stream_filter(StreamInfo *stream)
{
	if (!stream->filter_loaded)
	{
		MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(stream));
		EmitFilter *f = palloc0(sizeof(EmitFilter));
		char	   *subjects;

		if (store_stream_filter(stream->name, &f->by_event, &f->events,
								&f->has_receiver, &subjects) &&
			(f->by_event || f->has_receiver || subjects != NULL))
		{
			if (subjects != NULL)
				load_subjects(f, subjects);
			stream->filter = f;
		}
		else
			pfree(f);
		stream->filter_loaded = true;
		MemoryContextSwitchTo(old);
	}
	return stream->filter;
}

static bool
text_member(List *list, const char *s)
{
	ListCell   *lc;

	foreach(lc, list)
	{
		if (strcmp(lfirst(lc), s) == 0)
			return true;
	}
	return false;
}

/*
 * May emit deliver a SET of this type about this subject (NULL: the
 * stream itself) to the stream?  When not, *why says why.
 */
bool
emitfilter_allows(StreamInfo *stream, const char *event_type, json_t *subject,
				  const char **why)
{
	EmitFilter *f = stream_filter(stream);
	bool		none = setstream_default_subjects == SSF_DEFAULT_SUBJECTS_NONE;
	char	   *dump;
	bool		allowed;

	if (f == NULL)
		return true;
	if (strncmp(event_type, SSF_EVENT_PREFIX, strlen(SSF_EVENT_PREFIX)) == 0 ||
		strncmp(event_type, SSE_EVENT_PREFIX, strlen(SSE_EVENT_PREFIX)) == 0)
		return true;
	if (f->by_event && !text_member(f->events, event_type))
	{
		*why = "its events_delivered does not have the event type";
		return false;
	}
	if (subject == NULL || !(f->has_subjects || (f->has_receiver && none)))
		return true;
	dump = json_dumps(subject, JSON_COMPACT | JSON_SORT_KEYS);
	if (text_member(f->included, dump))
		allowed = true;
	else if (text_member(f->excluded, dump))
	{
		allowed = false;
		*why = "the subject was removed from it";
	}
	else
	{
		allowed = !none;
		*why = "the subject was not added to it (default_subjects NONE)";
	}
	pfree(dump);
	return allowed;
}
