/*
 * server.h — HTTP/1.1 on libmicrohttpd, run on the libuv loop (no MHD threads).
 *
 * The server reads a request's headers and body (bounded), finds its route in the table it
 * was given, and calls the route's handler once the body is complete. A handler either
 * answers at once (jobq_req_reply*) or parks the request (jobq_req_park) and answers later
 * from any loop callback, e.g. once the store has synced its changes or a job arrived for a
 * long-polling worker. A parked client that disconnects is noticed and reported.
 *
 * What it never does: parse JSON bodies, or know about jobs, queues or the store. It does
 * answer transport-level errors itself, in the API's error shape (docs/api.md): 404 unknown path,
 * 405 wrong method, 413 body over the limit, 400 malformed framing.
 *
 * Everything here runs on the loop thread.
 */
#ifndef JOBQ_HTTP_SERVER_H
#define JOBQ_HTTP_SERVER_H

#include <stddef.h>
#include <uv.h>

typedef struct jobq_http jobq_http;
typedef struct jobq_req jobq_req;

typedef void (*jobq_handler)(jobq_req *rq);

/* One route. `pattern` is a path whose segments are literals or "{}" (matches one
 * non-empty segment, available as jobq_req_param(rq, i) in order). A path that matches a
 * pattern but not its method answers 405. */
typedef struct jobq_route {
    const char *method;
    const char *pattern;
    jobq_handler fn;
} jobq_route;

typedef struct jobq_http_config {
    size_t max_body;          /* bytes; larger bodies answer 413 (default 1 MiB) */
    unsigned max_connections; /* default 10000 */
    unsigned idle_timeout_s;  /* idle keep-alive connections are closed after this (default 60) */
} jobq_http_config;

/* Creates a server on `loop` with a copy of the routes table (patterns borrowed: keep them
 * static). `app` is handed to handlers via jobq_req_app(). NULL on failure. */
jobq_http *jobq_http_new(uv_loop_t *loop, const jobq_http_config *cfg, const jobq_route *routes,
                         size_t nroutes, void *app);

/* Binds and listens on host:port (port 0 = any free port); *bound_port gets the port.
 * 0 or a negative jobq error code. */
int jobq_http_listen(jobq_http *h, const char *host, int port, int *bound_port);

/* Sets a gate that sees every routed request before its handler: when it returns non-zero
 * it has answered the request and the handler does not run (NULL: no gate). */
void jobq_http_set_gate(jobq_http *h, int (*gate)(jobq_req *rq));

/* Stops accepting new connections; requests in flight go on. */
void jobq_http_quiesce(jobq_http *h);

/* Number of requests received whose answer has not been sent yet (parked ones included). */
size_t jobq_http_pending(const jobq_http *h);

/* Stops the server; every parked request must have been answered first. Takes NULL. */
void jobq_http_free(jobq_http *h);

/* ---- reading the request (all pointers borrowed, valid until the answer is sent) ---- */
void *jobq_req_app(const jobq_req *rq);
const char *jobq_req_method(const jobq_req *rq);
const char *jobq_req_path(const jobq_req *rq);
const char *jobq_req_param(const jobq_req *rq, int i);            /* NULL past the last */
const char *jobq_req_query(const jobq_req *rq, const char *name); /* "" for a bare ?x */
const char *jobq_req_header(const jobq_req *rq, const char *name);
/* Iterates query arguments: calls fn for each; stops early when fn returns non-zero. */
void jobq_req_query_each(const jobq_req *rq, int (*fn)(void *ud, const char *k, const char *v),
                         void *ud);
const char *jobq_req_body(const jobq_req *rq, size_t *len); /* NUL-terminated, may be "" */

/* Per-request data for handlers; `free_fn` (may be NULL) runs when the request ends. */
void jobq_req_set_data(jobq_req *rq, void *data, void (*free_fn)(void *));
void *jobq_req_data(const jobq_req *rq);

/* ---- answering (exactly once per request) ---- */
/* Adds a header to the answer (copied). Call before the reply. */
void jobq_req_add_header(jobq_req *rq, const char *name, const char *value);
/* Answers with a JSON body (copied). */
void jobq_req_reply(jobq_req *rq, unsigned status, const char *body, size_t len);
/* Answers with a JSON body allocated with malloc or g_malloc (stolen). */
void jobq_req_reply_take(jobq_req *rq, unsigned status, char *body, size_t len);
/* Answers 204-style with no body. */
void jobq_req_reply_empty(jobq_req *rq, unsigned status);
/* Answers the API's error shape: {"error":{"code","message","details"?}}. details_json is
 * a JSON object text or NULL. */
void jobq_req_error(jobq_req *rq, unsigned status, const char *code, const char *message,
                    const char *details_json);

/* Streaming answer (Server-Sent Events): a body of unknown length, sent chunked, made by
 * `read` as the client takes it. read(ud, buf, max) copies up to max bytes into buf and
 * returns how many; 0 when it has nothing now (the connection then waits, polled by nobody,
 * until jobq_req_stream_wake); -1 to end the body. on_end(ud) runs exactly once, when the
 * request is over (body ended, client gone, server stopping); the request must not be
 * touched after it. A stream counts as pending (jobq_http_pending) until then. */
void jobq_req_reply_stream(jobq_req *rq, unsigned status, const char *content_type,
                           long (*read)(void *ud, char *buf, size_t max),
                           void (*on_end)(void *ud), void *ud);
/* There is something to read (or the body should end): resumes a waiting stream. */
void jobq_req_stream_wake(jobq_req *rq);

/* Upgrade (WebSocket): answers 101 Switching Protocols with the headers added so far and
 * "Upgrade: <proto>". Once it is sent, on_upgrade gets the socket and any bytes the client
 * sent after its request (feed them first); the caller then owns the conversation and ends
 * it with jobq_http_upgraded_close(u), never close(fd). If the 101 cannot be sent,
 * on_upgrade is never called and on_end(ud) runs instead (may be NULL). Upgraded sockets
 * count as pending until closed: close them all when stopping. on_upgrade may get fd -1
 * and u NULL when the socket could not be kept (out of memory): the conversation is over. */
typedef struct jobq_upgraded jobq_upgraded;
void jobq_req_reply_upgrade(jobq_req *rq, const char *proto,
                            void (*on_upgrade)(void *ud, int fd, const char *extra,
                                               size_t extra_len, jobq_upgraded *u),
                            void (*on_end)(void *ud), void *ud);
void jobq_http_upgraded_close(jobq_upgraded *u);

/* An answer hook, for a layer that keeps answers (Idempotency-Key): the next answer given
 * for rq (jobq_req_reply*, jobq_req_error) goes to fn instead of the client, its body
 * borrowed for the call, and fn answers later with jobq_req_reply* (the hook is gone by
 * then, so that answer is sent; headers added before stay for it). A parked request stays
 * parked until then, without its owner's on_gone: to the owner it has been answered. If
 * the request ends with no answer given (its client left while it was parked), fn runs
 * once with status 0 and no body, and must not answer. */
typedef void (*jobq_answer_hook)(jobq_req *rq, unsigned status, const char *body, size_t len,
                                 void *ud);
void jobq_req_hook_answer(jobq_req *rq, jobq_answer_hook fn, void *ud);

/* Parks the request: nothing is sent until a jobq_req_reply* call, which wakes it. If the
 * client disconnects first, on_gone(rq, ud) runs once; after it returns the request is dead
 * and must not be touched again (do not reply). on_gone may be NULL when the wait is short
 * and bounded (a store commit). */
void jobq_req_park(jobq_req *rq, void (*on_gone)(jobq_req *rq, void *ud), void *ud);
int jobq_req_parked(const jobq_req *rq);

#endif
