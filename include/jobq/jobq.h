/*
 * jobq.h — libjobq, the C client of the jobq HTTP API v1.
 *
 * A jobq_client is one connection context to one server: a libcurl easy handle (HTTP/1.1,
 * keep-alive) plus the last error it saw. Every call is synchronous and returns when the
 * server has answered, the transfer failed, or jobq_client_abort() stopped it.
 *
 * Bodies and answers are jansson values; strings are UTF-8 (a helper given other text fails
 * with JOBQ_CLIENT_EINVAL). Ownership is stated per function: "borrowed" means
 * the caller keeps its reference, "new" means the caller receives a reference it must
 * json_decref().
 *
 * Threads: one client must not be used by two threads at once; separate clients may run in
 * separate threads. jobq_client_abort() is the one call that may come from another thread.
 *
 * What it never does: retry, sleep, or interpret a job. Retrying and backoff are the
 * caller's policy; the library only speaks the protocol.
 */
#ifndef JOBQ_JOBQ_H
#define JOBQ_JOBQ_H

#include <stddef.h>
#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Result codes: 0 is success, every failure negative. jobq_client_strerror() names them. */
enum {
    JOBQ_CLIENT_OK = 0,
    JOBQ_CLIENT_ENOMEM = -1,     /* out of memory */
    JOBQ_CLIENT_EINVAL = -2,     /* invalid argument */
    JOBQ_CLIENT_ETRANSPORT = -3, /* no answer: connect failure, timeout, broken connection */
    JOBQ_CLIENT_EPROTO = -4,     /* an answer that is not what the API promises */
    JOBQ_CLIENT_ESERVER = -5,    /* the server answered with an error status (not 2xx) */
    JOBQ_CLIENT_EABORTED = -6,   /* stopped by jobq_client_abort() */
};

typedef struct jobq_client jobq_client;

/* Returns a static name for result code `err` (never NULL). */
const char *jobq_client_strerror(int err);

/*
 * Creates a client for the server at `url` (borrowed), e.g. "http://127.0.0.1:7117"; a
 * trailing slash is ignored. Calls curl_global_init() (reference-counted by libcurl).
 * Returns a new client, or NULL on a bad URL or out of memory.
 */
jobq_client *jobq_client_new(const char *url);

/* Frees `c` and closes its connection. Takes NULL. */
void jobq_client_free(jobq_client *c);

/* Sends `Authorization: Bearer <token>` from now on; NULL stops sending it. The token is
 * copied. Returns 0 or JOBQ_CLIENT_ENOMEM. */
int jobq_client_set_token(jobq_client *c, const char *token);

/* Sets the time one request may take (connect + answer), in ms; 0 = no limit. Default
 * 60000. jobq_client_fetch() adds its own wait_ms on top. */
void jobq_client_set_timeout(jobq_client *c, long timeout_ms);

/*
 * Makes the request in flight on `c` (if any) and every later one fail with
 * JOBQ_CLIENT_EABORTED. Callable from any thread (not from a signal handler): it shuts the
 * connection down, so even a request parked in a long-poll returns at once. There is no
 * undo: make a new client.
 */
void jobq_client_abort(jobq_client *c);

/*
 * Sends `method` (e.g. "GET", "POST", "DELETE") to `path` (borrowed; begins with '/', may
 * carry a query string, already percent-encoded) with `body` (borrowed; NULL = no body) as
 * JSON.
 *
 * On any answer, *status (if non-NULL) is the HTTP status and *response (if non-NULL) is the
 * parsed answer body (new reference), or NULL when the body was empty (204).
 * Returns 0 on a 2xx answer; JOBQ_CLIENT_ESERVER on any other answer, with *response the
 * error body when it was JSON; JOBQ_CLIENT_EPROTO when a 2xx body is not JSON;
 * JOBQ_CLIENT_ETRANSPORT, JOBQ_CLIENT_EABORTED, JOBQ_CLIENT_ENOMEM or JOBQ_CLIENT_EINVAL
 * without an answer (*status 0, *response NULL). Every failure is also described by
 * jobq_client_error_code() / jobq_client_error_message().
 */
int jobq_client_request(jobq_client *c, const char *method, const char *path, json_t *body,
                        long *status, json_t **response);

/* HTTP status of the last answer, 0 if the last request got none. */
long jobq_client_status(const jobq_client *c);

/*
 * Code of the last failure (borrowed, valid until the next request): the server's
 * `error.code` ("not_found", "lease_lost", …), `http_<status>` for an error answer without a
 * JSON error body, or one of "transport", "protocol", "aborted", "out_of_memory",
 * "invalid_argument" for failures on this side. "" after a success.
 */
const char *jobq_client_error_code(const jobq_client *c);

/* Human-readable message of the last failure (borrowed, as above); "" after a success. */
const char *jobq_client_error_message(const jobq_client *c);

/*
 * Percent-encodes `s` (borrowed) for use as one path segment or query value: everything but
 * [A-Za-z0-9._~-] becomes %XX. Returns a new string (free() it), or NULL when out of memory.
 */
char *jobq_client_escape(const char *s);

/*
 * Thin helpers for the job and worker verbs. Each returns what jobq_client_request()
 * returns; on success the answer is handed out as described, on failure nothing is (read
 * jobq_client_error_code()). `id`, `lease`, `queue` are borrowed strings.
 */

/* POST /v1/queues/{queue}/jobs with `job` (borrowed: {"data": …, options…}); *out (if
 * non-NULL) is the new job (new reference). */
int jobq_client_enqueue(jobq_client *c, const char *queue, json_t *job, json_t **out);

/* POST /v1/fetch for up to `count` jobs from `queues` (`nqueues` borrowed names), parking up
 * to `wait_ms` on the server; `worker` (borrowed, may be NULL) names this worker. *jobs is
 * the array of leased jobs (new reference; may be empty). */
int jobq_client_fetch(jobq_client *c, const char *const *queues, size_t nqueues, int count,
                      long wait_ms, const char *worker, json_t **jobs);
/* As jobq_client_fetch, declaring the worker's `capacity` (borrowed JSON object of name →
 * number, may be NULL): only jobs whose `requires` fit in what it has free are handed out. */
int jobq_client_fetch_fit(jobq_client *c, const char *const *queues, size_t nqueues, int count,
                          long wait_ms, const char *worker, json_t *capacity, json_t **jobs);

/* POST /v1/jobs/{id}/heartbeat. `extend_ms` > 0 asks for that lease length, else the job's
 * own; `checkpoint` (borrowed, may be NULL) is stored with it. *cancel_requested (if
 * non-NULL) is 1 when the job has been asked to cancel, else 0. */
int jobq_client_heartbeat(jobq_client *c, const char *id, const char *lease, long extend_ms,
                          json_t *checkpoint, int *cancel_requested);

/* POST /v1/jobs/{id}/progress with `percent` and `stage` (borrowed, may be NULL); `extra`
 * (borrowed, may be NULL) is an object of further fields ("message", "eta_ms", "data",
 * "checkpoint"). *cancel_requested as for heartbeat. */
int jobq_client_progress(jobq_client *c, const char *id, const char *lease, double percent,
                         const char *stage, json_t *extra, int *cancel_requested);

/* POST /v1/jobs/{id}/complete with `result` (borrowed, may be NULL = no result). */
int jobq_client_complete(jobq_client *c, const char *id, const char *lease, json_t *result);

/* POST /v1/jobs/{id}/fail with error `message` (borrowed), `type` (borrowed, may be NULL),
 * `retryable` (0 or 1) and `details` (borrowed, may be NULL). */
int jobq_client_fail(jobq_client *c, const char *id, const char *lease, const char *message,
                     const char *type, int retryable, json_t *details);

/* POST /v1/jobs/{id}/logs with `lines` (borrowed array of strings). */
int jobq_client_logs(jobq_client *c, const char *id, const char *lease, json_t *lines);

#ifdef __cplusplus
}
#endif

#endif
