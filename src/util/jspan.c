/* jspan.c — value spans in validated JSON text (see jspan.h). */
#include <string.h>

#include "util/jspan.h"

static const char *ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p at a '"': returns just past the closing quote. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return end;
}

/* p at the start of a value: returns just past it. */
static const char *skip_value(const char *p, const char *end)
{
    int depth = 0;

    do {
        if (p >= end)
            return end;
        switch (*p) {
        case '"':
            p = skip_string(p, end);
            continue;
        case '{':
        case '[':
            depth++;
            break;
        case '}':
        case ']':
            depth--;
            break;
        default:
            if (!depth) { /* a scalar at top level: up to the next delimiter */
                while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' &&
                       *p != '\r' && *p != '\t')
                    p++;
                return p;
            }
        }
        p++;
    } while (depth > 0);
    return p;
}

jobq_jspan jobq_jspan_member(const char *obj, const char *end, const char *key)
{
    jobq_jspan none = {NULL, 0};
    size_t klen = strlen(key);
    const char *p = ws(obj, end);

    if (p >= end || *p != '{')
        return none;
    p = ws(p + 1, end);
    while (p < end && *p == '"') {
        const char *k = p + 1, *kend = skip_string(p, end) - 1, *v, *vend;
        int match = (size_t)(kend - k) == klen && memcmp(k, key, klen) == 0;
        p = ws(kend + 1, end);
        if (p >= end || *p != ':')
            return none;
        v = ws(p + 1, end);
        vend = skip_value(v, end);
        if (match) {
            jobq_jspan s = {v, (size_t)(vend - v)};
            return s;
        }
        p = ws(vend, end);
        if (p < end && *p == ',')
            p = ws(p + 1, end);
    }
    return none;
}

void jobq_jspan_each(const char *arr, const char *end,
                     void (*fn)(void *ud, size_t i, jobq_jspan el), void *ud)
{
    const char *p = ws(arr, end);
    size_t i = 0;

    if (p >= end || *p != '[')
        return;
    p = ws(p + 1, end);
    while (p < end && *p != ']') {
        const char *vend = skip_value(p, end);
        jobq_jspan el = {p, (size_t)(vend - p)};
        fn(ud, i++, el);
        p = ws(vend, end);
        if (p < end && *p == ',')
            p = ws(p + 1, end);
    }
}

int jobq_jspan_members(const char *obj, const char *end,
                       int (*fn)(void *ud, jobq_jspan key, jobq_jspan val), void *ud)
{
    const char *p = ws(obj, end);

    if (p >= end || *p != '{')
        return -1;
    p = ws(p + 1, end);
    while (p < end && *p == '"') {
        const char *kend = skip_string(p, end);
        jobq_jspan key = {p + 1, (size_t)(kend - p - 2)}, val;
        p = ws(kend, end);
        if (p >= end || *p != ':')
            return -1;
        val.p = ws(p + 1, end);
        p = skip_value(val.p, end);
        val.len = (size_t)(p - val.p);
        if (fn(ud, key, val))
            return 1;
        p = ws(p, end);
        if (p < end && *p == ',')
            p = ws(p + 1, end);
    }
    return p < end && *p == '}' ? 0 : -1;
}
