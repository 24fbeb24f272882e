/*
 * idem.h — the Idempotency-Key header on POST requests (idem.c; docs/api.md).
 */
#ifndef JOBQ_API_IDEM_H
#define JOBQ_API_IDEM_H

#include <stdint.h>

#include "api/api.h"

#define JOBQ_IDEM_TTL_MS (INT64_C(24) * 3600 * 1000) /* how long an answer is kept */
#define JOBQ_IDEM_MAX_BYTES ((size_t)64 << 20)         /* memory kept answers may take */

typedef struct jobq_idem jobq_idem;

/* New, empty; ttl_ms <= 0 means JOBQ_IDEM_TTL_MS, max_bytes 0 JOBQ_IDEM_MAX_BYTES.
 * jobq_idem_free takes NULL. */
jobq_idem *jobq_idem_new(jobq_app *a, int64_t ttl_ms, size_t max_bytes);
void jobq_idem_free(jobq_idem *x);

/* The HTTP gate's part: for a POST with an Idempotency-Key, answers a replay, a conflict or
 * a bad key and returns 1; otherwise (no key, or its first use) returns 0 and the handler
 * runs, with its answer caught for recording. */
int jobq_idem_gate(jobq_idem *x, jobq_req *rq);
/* Deletes kept answers older than the TTL, and the oldest ones while all of them take more
 * than max_bytes (called every loop turn: O(1) when there is nothing to delete). */
void jobq_idem_sweep(jobq_idem *x, int64_t now);

/* Loading: one stored "idem" document; then load_done once every one was given. */
int jobq_idem_load(jobq_idem *x, const char *id, const char *body);
void jobq_idem_load_done(jobq_idem *x);

#endif
