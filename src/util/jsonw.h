/*
 * jsonw.h — writing JSON text into a GString without building a tree.
 *
 * The hot paths (job answers, fetch) embed stored JSON text (payloads, results) as it is,
 * and write the few fields around it by hand; a jansson tree would re-serialise the payload
 * on every answer. Strings are escaped as RFC 8259 requires.
 */
#ifndef JOBQ_JSONW_H
#define JOBQ_JSONW_H

#include <stdint.h>
#include <string.h>
#include <glib.h>

/* Appends n bytes of s. GLib's g_string_append_len takes the general insert path (about 85
 * instructions a call); answers append millions of short pieces, so the common case of
 * enough room is a plain copy here. */
static inline void jobq_jw_put(GString *o, const char *s, size_t n)
{
    if (o->allocated_len - o->len > n) {
        memcpy(o->str + o->len, s, n);
        o->len += n;
        o->str[o->len] = '\0';
    } else {
        g_string_append_len(o, s, (gssize)n);
    }
}

/* Appends v in decimal. */
void jobq_jw_int(GString *o, int64_t v);
/* Appends s as a quoted JSON string (NULL → null). */
void jobq_jw_str(GString *o, const char *s);
/* Appends ,"key": (no comma when *first, which is then cleared). */
void jobq_jw_key(GString *o, int *first, const char *key);
void jobq_jw_kstr(GString *o, int *first, const char *key, const char *s);
void jobq_jw_kint(GString *o, int *first, const char *key, int64_t v);
/* v == 0 → null */
void jobq_jw_kts(GString *o, int *first, const char *key, int64_t v);
/* Raw JSON text (NULL → null). */
void jobq_jw_kraw(GString *o, int *first, const char *key, const char *raw);
void jobq_jw_kbool(GString *o, int *first, const char *key, int v);

#endif
