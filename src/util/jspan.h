/*
 * jspan.h — byte spans of values inside JSON text that a parser has already validated.
 *
 * jansson gives a tree but not where a value sat in the text. To keep a job's payload as
 * the bytes the client sent instead of re-serialising the tree,
 * the enqueue handler asks for the span of each "data" value here. Only call it on text
 * jansson accepted (with duplicate keys rejected): it skips values without checking them.
 */
#ifndef JOBQ_JSPAN_H
#define JOBQ_JSPAN_H

#include <stddef.h>

typedef struct jobq_jspan {
    const char *p; /* NULL when absent */
    size_t len;
} jobq_jspan;

/* The value of member `key` of the object at `obj` (which points at its '{', whitespace
 * allowed before). */
jobq_jspan jobq_jspan_member(const char *obj, const char *end, const char *key);
/* Calls fn(ud, i, element) for each element of the array at `arr`. */
void jobq_jspan_each(const char *arr, const char *end,
                     void (*fn)(void *ud, size_t i, jobq_jspan el), void *ud);

/* Calls fn(ud, key, value) for each member of the object at `obj`; the key span is the
 * string's raw text between its quotes (escapes not decoded). Returns 0 after the last, 1
 * when fn stopped it (non-zero), -1 when obj is not an object. */
int jobq_jspan_members(const char *obj, const char *end,
                       int (*fn)(void *ud, jobq_jspan key, jobq_jspan val), void *ud);

#endif
