/*
 * jscan.c — a one-pass reader for the few members jobq-bench needs (see jscan.h).
 *
 * Every function takes [p, e) and returns the position after what it read, or NULL when the
 * text is malformed or ends early. Strings with escapes are decoded by jansson, which is
 * rare (server-made ids and leases have none).
 */
#include "jscan.h"

#include <jansson.h>
#include <string.h>

#define MAX_KEYS 8

static const char *ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
    }
    return p;
}

/* p at the opening quote. */
static const char *skip_string(const char *p, const char *e)
{
    for (p++; p < e; p++) {
        if (*p == '\\') {
            p++;
        } else if (*p == '"') {
            return p + 1;
        }
    }
    return NULL;
}

static const char *skip_value(const char *p, const char *e)
{
    int depth = 0;

    if (p >= e) {
        return NULL;
    }
    if (*p == '"') {
        return skip_string(p, e);
    }
    if (*p != '{' && *p != '[') {
        const char *start = p;

        while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
               *p != '\r' && *p != '\n') {
            p++;
        }
        return p > start ? p : NULL;
    }
    while (p < e) {
        switch (*p) {
        case '"':
            p = skip_string(p, e);
            if (!p) {
                return NULL;
            }
            continue;
        case '{':
        case '[':
            depth++;
            break;
        case '}':
        case ']':
            if (--depth == 0) {
                return p + 1;
            }
            break;
        default:
            break;
        }
        p++;
    }
    return NULL;
}

/* Scan the object at p; for each member whose key is keys[i], set vals[i] (first wins). */
static const char *scan_object(const char *p, const char *e, const char *const *keys, size_t nkeys,
                               struct jscan_val *vals)
{
    size_t i;

    for (i = 0; i < nkeys; i++) {
        vals[i].p = NULL;
        vals[i].n = 0;
    }
    if (p >= e || *p != '{') {
        return NULL;
    }
    p = ws(p + 1, e);
    if (p < e && *p == '}') {
        return p + 1;
    }
    for (;;) {
        const char *k = p, *v;
        size_t klen;

        if (p >= e || *p != '"' || !(p = skip_string(p, e))) {
            return NULL;
        }
        klen = (size_t)(p - k) - 2;
        p = ws(p, e);
        if (p >= e || *p != ':') {
            return NULL;
        }
        v = ws(p + 1, e);
        p = skip_value(v, e);
        if (!p) {
            return NULL;
        }
        for (i = 0; i < nkeys; i++) {
            if (!vals[i].p && strlen(keys[i]) == klen && memcmp(k + 1, keys[i], klen) == 0) {
                vals[i].p = v;
                vals[i].n = (size_t)(p - v);
                break;
            }
        }
        p = ws(p, e);
        if (p < e && *p == ',') {
            p = ws(p + 1, e);
            continue;
        }
        return p < e && *p == '}' ? p + 1 : NULL;
    }
}

long jscan_items(const char *json, size_t len, const char *array_key, const char *const *keys,
                 size_t nkeys, jscan_item_fn fn, void *arg)
{
    const char *e = json + len, *p;
    const char *const key[1] = {array_key};
    struct jscan_val arr, vals[MAX_KEYS];
    long n = 0;

    if (nkeys > MAX_KEYS) {
        return -1;
    }
    p = scan_object(ws(json, e), e, key, 1, &arr);
    if (!p || !arr.p || *arr.p != '[') {
        return -1;
    }
    e = arr.p + arr.n;
    p = ws(arr.p + 1, e);
    if (p < e && *p == ']') {
        return 0;
    }
    for (;;) {
        p = scan_object(p, e, keys, nkeys, vals);
        if (!p) {
            return -1;
        }
        if (fn(arg, (size_t)n, vals) != 0) {
            return -2;
        }
        n++;
        p = ws(p, e);
        if (p < e && *p == ',') {
            p = ws(p + 1, e);
            continue;
        }
        return p < e && *p == ']' ? n : -1;
    }
}

long jscan_string(const struct jscan_val *v, char *out, size_t cap)
{
    json_t *s;
    size_t n;

    if (!v->p || v->n < 2 || v->p[0] != '"' || v->p[v->n - 1] != '"') {
        return -1;
    }
    if (!memchr(v->p, '\\', v->n)) {
        n = v->n - 2;
        if (n >= cap) {
            return -1;
        }
        memcpy(out, v->p + 1, n);
        out[n] = '\0';
        return (long)n;
    }
    s = json_loadb(v->p, v->n, JSON_DECODE_ANY, NULL);
    n = json_string_length(s);
    if (!json_is_string(s) || n >= cap || memchr(json_string_value(s), '\0', n)) {
        json_decref(s);
        return -1;
    }
    memcpy(out, json_string_value(s), n + 1);
    json_decref(s);
    return (long)n;
}
