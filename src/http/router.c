/*
 * router.c — the route table: patterns split once, request paths matched without allocating.
 *
 * jobq has about forty routes, so a linear scan over pre-split patterns, skipping those with
 * another segment count, costs less than building a trie and is easier to read. Routes are
 * sorted once by specificity so the first match is the right one.
 *
 * What it never does: allocate or log while matching.
 */
#include "http/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct seg {
    const char *s; /* into the request path or the (static) pattern */
    size_t len;    /* bytes */
} seg;

typedef struct croute {
    jobq_route r; /* copy of the caller's route */
    size_t mlen;  /* strlen(r.method) */
    int is_get;   /* method is GET (HEAD matches it too) */
    int nseg;
    int param_mask; /* bit i set: segment i is a parameter */
    size_t index;   /* position in the caller's table: tie-break of the sort */
    seg segs[JOBQ_ROUTER_MAX_SEGS];
} croute;

struct jobq_router {
    size_t n;
    int max_segs;   /* longest pattern: longer request paths need no scan */
    croute *routes; /* n, most specific first */
};

/* Splits `path` (len bytes, must start with '/') on '/'. "/" is one empty segment.
 * Returns the segment count, or -1 when the path does not start with '/' or has more than
 * `max` segments. */
static int split(const char *path, size_t len, seg *out, int max)
{
    size_t start = 1;
    int n = 0;

    if (len == 0 || path[0] != '/')
        return -1;
    for (;;) {
        const char *slash = memchr(path + start, '/', len - start);
        size_t end = slash ? (size_t)(slash - path) : len;

        if (n == max)
            return -1;
        out[n].s = path + start;
        out[n].len = end - start;
        n++;
        if (!slash)
            return n;
        start = end + 1;
    }
}

static int is_param(const seg *s)
{
    return s->len >= 2 && s->s[0] == '{' && s->s[s->len - 1] == '}';
}

/* Orders routes so that, among patterns a path can match, the more specific comes first:
 * at the first segment where one is a literal and the other a parameter, the literal wins.
 * Table order breaks ties, so the caller's order still decides between equal patterns. */
static int cmp_specific(const void *a, const void *b)
{
    const croute *x = a;
    const croute *y = b;

    if (x->nseg != y->nseg)
        return x->nseg < y->nseg ? -1 : 1;
    for (int i = 0; i < x->nseg; i++) {
        int px = (x->param_mask >> i) & 1;
        int py = (y->param_mask >> i) & 1;

        if (px != py)
            return px - py;
    }
    return x->index < y->index ? -1 : (x->index > y->index);
}

static int compile(croute *c, const jobq_route *r, size_t index)
{
    int nparams = 0;

    memset(c, 0, sizeof(*c));
    if (!r->method || !r->method[0] || !r->pattern || !r->fn) {
        fprintf(stderr, "jobqd: http: route %zu: method, pattern and fn are required\n", index);
        return -1;
    }
    c->r = *r;
    c->mlen = strlen(r->method);
    c->is_get = strcmp(r->method, "GET") == 0;
    c->index = index;
    c->nseg = split(r->pattern, strlen(r->pattern), c->segs, JOBQ_ROUTER_MAX_SEGS);
    if (c->nseg < 0) {
        fprintf(stderr,
                "jobqd: http: route %s %s: must start with / and have at most %d segments\n",
                r->method, r->pattern, JOBQ_ROUTER_MAX_SEGS);
        return -1;
    }
    for (int i = 0; i < c->nseg; i++) {
        if (is_param(&c->segs[i])) {
            c->param_mask |= 1 << i;
            nparams++;
        }
    }
    if (nparams > JOBQ_ROUTER_MAX_PARAMS) {
        fprintf(stderr, "jobqd: http: route %s %s: more than %d parameters\n", r->method,
                r->pattern, JOBQ_ROUTER_MAX_PARAMS);
        return -1;
    }
    return 0;
}

jobq_router *jobq_router_new(const jobq_route *routes, size_t nroutes)
{
    jobq_router *r = calloc(1, sizeof(*r));

    if (!r)
        goto out_fail;
    if (nroutes > 0) {
        r->routes = calloc(nroutes, sizeof(*r->routes));
        if (!r->routes)
            goto out_free;
    }
    for (size_t i = 0; i < nroutes; i++) {
        if (compile(&r->routes[i], &routes[i], i) != 0)
            goto out_free;
        if (r->routes[i].nseg > r->max_segs)
            r->max_segs = r->routes[i].nseg;
    }
    r->n = nroutes;
    if (nroutes > 1)
        qsort(r->routes, nroutes, sizeof(*r->routes), cmp_specific);
    return r;

out_free:
    jobq_router_free(r);
out_fail:
    return NULL;
}

void jobq_router_free(jobq_router *r)
{
    if (!r)
        return;
    free(r->routes);
    free(r);
}

/* Does the path (split into segs) fit the pattern, ignoring the method? */
static int path_fits(const croute *c, const seg *segs, int n)
{
    if (c->nseg != n)
        return 0;
    for (int i = 0; i < n; i++) {
        if ((c->param_mask >> i) & 1) {
            if (segs[i].len == 0)
                return 0;
        } else if (segs[i].len != c->segs[i].len ||
                   memcmp(segs[i].s, c->segs[i].s, segs[i].len) != 0) {
            return 0;
        }
    }
    return 1;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes in[0..len) into out and NUL-terminates it (out needs len + 1 bytes).
 * '+' stays '+' (that rule is for query strings). A malformed escape or one that decodes
 * to NUL fails: both are more likely an attack than a name. 0 or -1. */
static int decode(const char *in, size_t len, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        if (in[i] != '%') {
            out[o++] = in[i];
            continue;
        }
        if (len - i < 3)
            return -1;
        int hi = hexval(in[i + 1]);
        int lo = hexval(in[i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return -1;
        out[o++] = (char)(hi << 4 | lo);
        i += 2;
    }
    out[o] = '\0';
    return 0;
}

int jobq_router_match(const jobq_router *r, const char *method, const char *path, size_t len,
                      char *scratch, const jobq_route **route, const char **params, int *nparams)
{
    seg segs[JOBQ_ROUTER_MAX_SEGS];
    size_t mlen = strlen(method);
    int is_head = mlen == 4 && memcmp(method, "HEAD", 4) == 0;
    int path_known = 0;
    int n = split(path, len, segs, r->max_segs);

    *route = NULL;
    *nparams = 0;
    if (n < 0)
        return JOBQ_ROUTE_NOT_FOUND;
    for (size_t i = 0; i < r->n; i++) {
        const croute *c = &r->routes[i];

        if (!path_fits(c, segs, n))
            continue;
        path_known = 1;
        if (!((c->mlen == mlen && memcmp(c->r.method, method, mlen) == 0) ||
              (is_head && c->is_get)))
            continue;
        for (int k = 0; k < n; k++) {
            if (!((c->param_mask >> k) & 1))
                continue;
            /* Same offset as in the path: a segment's decoded text and its NUL fit in the
             * bytes of the raw segment and the '/' (or end) after it. */
            char *out = scratch + (segs[k].s - path);

            if (decode(segs[k].s, segs[k].len, out) != 0) {
                *nparams = 0;
                return JOBQ_ROUTE_BAD_PATH;
            }
            params[(*nparams)++] = out;
        }
        *route = &c->r;
        return JOBQ_ROUTE_FOUND;
    }
    return path_known ? JOBQ_ROUTE_BAD_METHOD : JOBQ_ROUTE_NOT_FOUND;
}

/* Appends ", method" to buf unless the list already names it. */
static size_t allow_add(char *buf, size_t cap, size_t at, const char *m, size_t mlen)
{
    const char *p = buf;

    while (p < buf + at) {
        const char *end = strchr(p, ',');
        size_t l = end ? (size_t)(end - p) : strlen(p);

        if (l == mlen && memcmp(p, m, mlen) == 0)
            return at;
        p += l + (end ? 2 : 0);
        if (!end)
            break;
    }
    if (at + (at ? 2 : 0) + mlen + 1 > cap)
        return at;
    if (at) {
        memcpy(buf + at, ", ", 2);
        at += 2;
    }
    memcpy(buf + at, m, mlen);
    at += mlen;
    buf[at] = '\0';
    return at;
}

size_t jobq_router_allow(const jobq_router *r, const char *path, size_t len, char *buf, size_t cap)
{
    seg segs[JOBQ_ROUTER_MAX_SEGS];
    int n = split(path, len, segs, r->max_segs);
    size_t at = 0;
    int get = 0;

    if (cap == 0)
        return 0;
    buf[0] = '\0';
    if (n < 0)
        return 0;
    for (size_t i = 0; i < r->n; i++) {
        const croute *c = &r->routes[i];

        if (!path_fits(c, segs, n))
            continue;
        at = allow_add(buf, cap, at, c->r.method, c->mlen);
        get |= c->is_get;
    }
    if (get)
        at = allow_add(buf, cap, at, "HEAD", 4);
    return at;
}
