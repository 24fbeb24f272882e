/* jsonw.c — JSON text writing helpers (see jsonw.h). */
#include <inttypes.h>
#include <string.h>

#include "util/jsonw.h"

void jobq_jw_str(GString *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p, *run;

    if (!s) {
        g_string_append_len(o, "null", 4);
        return;
    }
    g_string_append_c(o, '"');
    run = (const unsigned char *)s;
    for (p = run; *p; p++) {
        if (*p >= 0x20 && *p != '"' && *p != '\\')
            continue;
        g_string_append_len(o, (const char *)run, (gssize)(p - run));
        run = p + 1;
        switch (*p) {
        case '"':
            g_string_append_len(o, "\\\"", 2);
            break;
        case '\\':
            g_string_append_len(o, "\\\\", 2);
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
            g_string_append_len(o, u, 6);
        }
        }
    }
    g_string_append_len(o, (const char *)run, (gssize)(p - run));
    g_string_append_c(o, '"');
}

void jobq_jw_key(GString *o, int *first, const char *key)
{
    size_t n = strlen(key);

    if (!*first)
        g_string_append_c(o, ',');
    *first = 0;
    g_string_append_c(o, '"');
    g_string_append_len(o, key, (gssize)n);
    g_string_append_len(o, "\":", 2);
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
    g_string_append_len(o, p, (gssize)(buf + sizeof buf - p));
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
        g_string_append(o, raw);
    else
        g_string_append_len(o, "null", 4);
}

void jobq_jw_kbool(GString *o, int *first, const char *key, int v)
{
    jobq_jw_key(o, first, key);
    if (v)
        g_string_append_len(o, "true", 4);
    else
        g_string_append_len(o, "false", 5);
}
