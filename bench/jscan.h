/*
 * jscan.h — pick a few members out of a JSON array of objects without building a tree.
 *
 * A fetch answer with 100 jobs is ~100 KB of JSON of which jobq-bench needs only each job's
 * "id" and "lease"; parsing it into a jansson tree cost the client ~20 µs per job, enough to
 * make it the bottleneck of a drain. This scanner makes one pass, allocates nothing, and
 * hands back the raw tokens (a string token keeps its quotes, so it can be copied verbatim
 * into a JSON body). It checks structure (brackets, quotes, separators) but does not
 * validate numbers or literals: it is for reading a trusted server's answers.
 */
#ifndef JOBQ_BENCH_JSCAN_H
#define JOBQ_BENCH_JSCAN_H

#include <stddef.h>

/* One raw JSON value: [p, p + n). p is NULL when the member was absent. */
struct jscan_val {
    const char *p;
    size_t n;
};

/* Called per element of the array with the values of the asked-for keys, in their order.
 * Returns 0 to go on, non-zero to stop the scan (jscan_items then returns -2). */
typedef int (*jscan_item_fn)(void *arg, size_t index, const struct jscan_val *vals);

/*
 * jscan_items: `json` (len bytes) must be an object whose member `array_key` is an array of
 * objects. For every element, looks up `keys[0..nkeys)` (at most 8, first occurrence wins)
 * and calls `fn`. Returns the number of elements, -1 when the text is malformed or has no
 * such array of objects, -2 when `fn` stopped it.
 */
long jscan_items(const char *json, size_t len, const char *array_key, const char *const *keys,
                 size_t nkeys, jscan_item_fn fn, void *arg);

/*
 * jscan_string: decode the string token `v` into out (cap bytes, NUL-terminated).
 * Returns its length, or -1 when `v` is not a string or does not fit.
 */
long jscan_string(const struct jscan_val *v, char *out, size_t cap);

#endif
