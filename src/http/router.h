/*
 * router.h — method + path → route, for the HTTP server (internal to src/http/).
 *
 * A router is compiled once from a jobq_route table: every pattern is split into segments
 * (literals, or "{...}" parameters). Matching splits the request path on '/', compares it
 * with each pattern of the same segment count, most specific pattern first (at the first
 * segment where two patterns differ, a literal beats a parameter; otherwise table order),
 * and percent-decodes the parameters of the route it picks. It allocates nothing per match.
 *
 * What it never does: look at query strings, headers or bodies, or answer anything; the
 * server turns the results into 404, 405 and 400 answers.
 */
#ifndef JOBQ_HTTP_ROUTER_H
#define JOBQ_HTTP_ROUTER_H

#include <stddef.h>

#include "http/server.h"

#define JOBQ_ROUTER_MAX_SEGS 16  /* segments per pattern; longer request paths are 404 */
#define JOBQ_ROUTER_MAX_PARAMS 8 /* "{}" segments per pattern */

typedef struct jobq_router jobq_router;

enum {
    JOBQ_ROUTE_FOUND = 0,
    JOBQ_ROUTE_NOT_FOUND = 1,  /* no pattern matches the path */
    JOBQ_ROUTE_BAD_METHOD = 2, /* a pattern matches, with other methods only */
    JOBQ_ROUTE_BAD_PATH = 3,   /* the route's parameters hold a bad or NUL percent-escape */
};

/* Compiles `routes` (copied; the method and pattern strings are borrowed and must outlive
 * the router). A pattern segment written "{}" or "{name}" is a parameter; the name is only
 * documentation. Returns a new router, or NULL when out of memory or when a route is invalid
 * (NULL or empty method, NULL fn, a pattern that does not start with '/', more than
 * JOBQ_ROUTER_MAX_SEGS segments or JOBQ_ROUTER_MAX_PARAMS parameters); an invalid route is
 * reported on stderr. */
jobq_router *jobq_router_new(const jobq_route *routes, size_t nroutes);

/* Frees the router. Takes NULL. */
void jobq_router_free(jobq_router *r);

/* Finds the route for `method` and the raw (still percent-encoded, query-less) `path` of
 * `len` bytes. HEAD also matches GET routes. On JOBQ_ROUTE_FOUND, *route points at the
 * router's copy of the route and params[0..*nparams) point at the decoded, NUL-terminated
 * parameters, written into `scratch` (caller-owned, at least len + 1 bytes; `params` holds
 * JOBQ_ROUTER_MAX_PARAMS entries). Returns one of the JOBQ_ROUTE_* values. */
int jobq_router_match(const jobq_router *r, const char *method, const char *path, size_t len,
                      char *scratch, const jobq_route **route, const char **params, int *nparams);

/* Writes the methods allowed on `path` ("GET, HEAD, POST") into buf (cap bytes, always
 * NUL-terminated when cap > 0), for a 405's Allow header. Returns the length written. */
size_t jobq_router_allow(const jobq_router *r, const char *path, size_t len, char *buf, size_t cap);

#endif
