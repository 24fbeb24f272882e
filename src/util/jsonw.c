/* jsonw.c — JSON text writing helpers (see jsonw.h). */
#include <inttypes.h>
#include <string.h>

#include "util/jsonw.h"

void jobq_jw_str(GString *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p, *run;

    if (!s) {
        jobq_jw_put(o, "null", 4);
        return;
    }
    g_string_append_c(o, '"');
    run = (const unsigned char *)s;
    for (p = run; *p; p++) {
        if (*p >= 0x20 && *p != '"' && *p != '\\')
            continue;
        jobq_jw_put(o, (const char *)run, (size_t)(p - run));
        run = p + 1;
        switch (*p) {
        case '"':
            jobq_jw_put(o, "\\\"", 2);
            break;
        case '\\':
            jobq_jw_put(o, "\\\\", 2);
            break;
        case '\n':
            g_string_append_len(o, "\\n", 2);
            break;
        case '\r':
            g_string_append_len(o, "\\r", 2);
            break;
        case '\t':
            g_string_append_len(o, "\\t", 2);
            break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
            jobq_jw_put(o, u, 6);
        }
        }
    }
    jobq_jw_put(o, (const char *)run, (size_t)(p - run));
    g_string_append_c(o, '"');
}

void jobq_jw_key(GString *o, int *first, const char *key)
{
    size_t n = strlen(key);

    if (!*first)
        g_string_append_c(o, ',');
    *first = 0;
    g_string_append_c(o, '"');
    jobq_jw_put(o, key, n);
    jobq_jw_put(o, "\":", 2);
}

void jobq_jw_kstr(GString *o, int *first, const char *key, const char *s)
{
    jobq_jw_key(o, first, key);
    jobq_jw_str(o, s);
}

void jobq_jw_int(GString *o, int64_t v)
{
    char buf[24], *p = buf + sizeof buf;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    /* printf costs ~20x this per number, and a job answer has a dozen numbers */
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    jobq_jw_put(o, p, (size_t)(buf + sizeof buf - p));
}

void jobq_jw_kint(GString *o, int *first, const char *key, int64_t v)
{
    jobq_jw_key(o, first, key);
    jobq_jw_int(o, v);
}

void jobq_jw_kts(GString *o, int *first, const char *key, int64_t v)
{
    if (v)
        jobq_jw_kint(o, first, key, v);
    else
        jobq_jw_kraw(o, first, key, NULL);
}

void jobq_jw_kraw(GString *o, int *first, const char *key, const char *raw)
{
    jobq_jw_key(o, first, key);
    if (raw)
        jobq_jw_put(o, raw, strlen(raw));
    else
        jobq_jw_put(o, "null", 4);
}

void jobq_jw_kbool(GString *o, int *first, const char *key, int v)
{
    jobq_jw_key(o, first, key);
    if (v)
        jobq_jw_put(o, "true", 4);
    else
        jobq_jw_put(o, "false", 5);
}
