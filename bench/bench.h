/*
 * bench.h — shared state of jobq-bench, the load generator for jobqd.
 *
 * One process, one libuv loop, one thread. A run is one workload against one queue; it
 * records one latency sample per measured unit (request, batch or job, per workload) and
 * reports throughput and percentiles as a single JSON line. Connections are raw keep-alive
 * TCP with a minimal HTTP/1.1 reader (conn.c); the workloads live in workloads.c and read
 * fetch answers with jscan.c.
 *
 * Nothing here retries a failed request: the first non-2xx answer, transport error or
 * unexpected answer shape ends the run with a non-zero exit status.
 */
#ifndef JOBQ_BENCH_H
#define JOBQ_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct bench_conn bench_conn;

/* A growable byte buffer; `data` is always NUL-terminated when non-NULL. */
struct bench_buf {
    char *data;
    size_t len;
    size_t cap;
};

struct bench {
    uv_loop_t *loop;
    struct sockaddr_storage addr; /* the server, resolved once */
    char host[300];               /* Host header: "host:port" */

    const char *workload;
    char queue[160];
    long jobs;   /* jobs to move in the measured phase */
    int payload; /* approximate serialized size of each job's `data`, bytes */
    int conns;   /* connections / loops in flight; 0 = the workload's default */
    int batch;   /* jobs per bulk request or per fetch; 0 = the workload's default */
    int stall_s; /* give up when no answer arrives for this long, s */
    int park_ms; /* w3: how long the fetch is left parked before the enqueue, ms */
    int preload; /* w2, w2-single: 1 = enqueue the backlog first, 0 = it is there */
    int sse;     /* event-stream subscribers attached during the run (--sse) */

    char *data_json; /* the job `data`, e.g. {"p":"xxxx"}; new, freed at exit */
    size_t data_len;

    uint64_t t_start; /* uv_hrtime() when the measured phase began, ns */
    uint64_t t_end;   /* uv_hrtime() when it ended, ns */
    long done_jobs;   /* jobs moved in the measured phase */

    uint64_t *samples; /* latency samples, ns; new */
    size_t nsamples;
    size_t samples_cap;

    uint64_t answers;    /* answers received, for the stall watchdog */
    uint64_t reconnects; /* connections the server closed that had to be reopened */
    uv_timer_t watchdog;
    uint64_t last_answers;
    int idle_s; /* seconds without an answer so far */
    int tick_s; /* seconds since start, for progress lines */

    bench_conn *all_conns; /* every connection, for diagnostics and cleanup */

    int failed;   /* set by bench_fail(); the run stops */
    int finished; /* set by bench_finish(); the run stops */
};

/* One parsed response. `body` is borrowed from the connection's read buffer and valid only
 * inside the callback; it is NUL-terminated at body[len]. */
struct bench_resp {
    int status;
    const char *body;
    size_t len;
    uint64_t sent_ns; /* uv_hrtime() when the request was handed to the socket */
    uint64_t recv_ns; /* uv_hrtime() when the whole answer had been read */
};

/* Called with every 2xx answer; non-2xx answers end the run in conn.c instead. */
typedef void (*bench_conn_cb)(bench_conn *c, const struct bench_resp *r, void *arg);

/*
 * bench_conn_new: open a keep-alive connection to b->addr (asynchronously; requests made
 * before it is up wait for it). Returns a new connection owned by `b` (freed by
 * bench_conn_free_all), or NULL when out of memory or libuv refuses the socket.
 */
bench_conn *bench_conn_new(struct bench *b);

/*
 * bench_conn_request: send one request; `cb(c, resp, arg)` runs when its 2xx answer has been
 * read. `path` and `body` (len bytes, may be NULL/0) are copied. A connection carries one
 * request at a time: calling this again before the answer is a programming error and fails
 * the run.
 */
void bench_conn_request(bench_conn *c, const char *method, const char *path, const char *body,
                        size_t len, bench_conn_cb cb, void *arg);

/* bench_conn_describe: "METHOD PATH" of the request in flight, or "" (borrowed). */
const char *bench_conn_describe(const bench_conn *c);

/* bench_next_conn: the connection after `c` in b->all_conns, or NULL (borrowed). */
bench_conn *bench_next_conn(const bench_conn *c);

/* bench_conn_busy: 1 while a request waits for its answer. */
int bench_conn_busy(const bench_conn *c);

/* bench_conn_free_all: close every connection of `b`; run the loop afterwards so the close
 * callbacks free them. */
void bench_conn_free_all(struct bench *b);

/* bench_fail: report the first failure (printf-style) on stderr and stop the run. */
void bench_fail(struct bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* bench_finish: the measured phase is over; stop the loop. */
void bench_finish(struct bench *b);

/* bench_sample: record one latency sample, ns. Fails the run when out of memory. */
void bench_sample(struct bench *b, uint64_t ns);

/* bench_buf helpers: 0 on success, -1 when out of memory. */
int bench_buf_reserve(struct bench_buf *buf, size_t extra);
int bench_buf_add(struct bench_buf *buf, const char *s, size_t n);
int bench_buf_adds(struct bench_buf *buf, const char *s);
int bench_buf_printf(struct bench_buf *buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* bench_buf_add_jstr: append `s` as a JSON string literal, quotes included. */
int bench_buf_add_jstr(struct bench_buf *buf, const char *s);
void bench_buf_fini(struct bench_buf *buf);

/* bench_run_workload: set up b->workload on b->loop (connections, first requests).
 * Returns 0, or -1 after printing why (unknown workload, out of memory). */
int bench_run_workload(struct bench *b);

/* bench_sse_start: attach n event-stream subscribers (sse.c); then(b) runs once each has
 * received the stream's first bytes. 0, or -1 when libuv refuses a socket. Bytes and events
 * they read are counted in bench_sse_bytes / bench_sse_events. bench_sse_fini frees them
 * after the loop closed every handle. */
int bench_sse_start(struct bench *b, int n, void (*then)(struct bench *b));
void bench_sse_fini(void);
extern uint64_t bench_sse_bytes, bench_sse_events;

/* bench_workload_fini: free what bench_run_workload allocated; after the loop has stopped
 * and every connection is closed. */
void bench_workload_fini(void);

/* bench_wait_ready: poll GET /healthz, then GET /readyz, until each answers 2xx; prints
 * {"healthz_ms","readyz_ms"} measured from `t0_ns` (CLOCK_REALTIME, ns; 0 = now).
 * Returns 0, or -1 when `timeout_s` passes first. Blocking; no event loop. */
int bench_wait_ready(const struct bench *b, uint64_t t0_ns, int timeout_s);

#endif
