/*
 * workloads.c — the measured scenarios of jobq-bench.
 *
 *   w1-seq     one connection, sequential single enqueues; a sample per request
 *   w1-pipe    100 connections, one enqueue in flight each; a sample per request
 *   w1-bulk    one connection, sequential bulk enqueues of 1000 jobs; a sample per request
 *   w2         backlog loaded first (untimed), then 4 fetch(100)/ack loops drain it;
 *              a sample per batch: fetch sent -> its ack answered
 *   w2-single  backlog loaded first, then 50 workers fetch(1)/complete; a sample per job:
 *              fetch sent -> complete answered
 *   w3         a fetch parks on an idle queue, a producer enqueues one job; a sample per
 *              job: enqueue sent -> fetch answered; sequential
 *
 * Every connection first answers one GET /healthz, so connecting is never timed. Workload
 * state is static: a process runs one workload. This file never retries and never checks
 * throughput; it measures.
 */
#include "bench.h"
#include "jscan.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRELOAD_BATCH 1000 /* jobs per bulk enqueue while loading a backlog */
#define PRELOAD_CONNS 4

typedef void (*then_fn)(struct bench *b);

/* ---- connection pool: open N, wait until each answered GET /healthz ---- */

static struct pool {
    struct bench *b;
    bench_conn **c; /* new */
    int n;
    int ready;
    then_fn then;
} pool;

static void on_pool_health(bench_conn *c, const struct bench_resp *r, void *arg)
{
    (void)c;
    (void)r;
    (void)arg;
    if (++pool.ready == pool.n) {
        pool.then(pool.b);
    }
}

static int pool_open(struct bench *b, int n, then_fn then)
{
    int i;

    free(pool.c);
    pool.b = b;
    pool.n = n;
    pool.ready = 0;
    pool.then = then;
    pool.c = calloc((size_t)n, sizeof(*pool.c));
    if (!pool.c) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        pool.c[i] = bench_conn_new(b);
        if (!pool.c[i]) {
            return -1;
        }
        bench_conn_request(pool.c[i], "GET", "/healthz", NULL, 0, on_pool_health, NULL);
    }
    return 0;
}

/* ---- request bodies ---- */

static char jobs_path[256]; /* /v1/queues/{q}/jobs */

/* `{"jobs":[{"data":D},…n…]}` into out (reset first). */
static int build_bulk(struct bench *b, struct bench_buf *out, long n)
{
    long i;

    out->len = 0;
    if (bench_buf_reserve(out, (size_t)n * (b->data_len + 12) + 16) < 0 ||
        bench_buf_adds(out, "{\"jobs\":[") < 0) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (bench_buf_adds(out, i ? ",{\"data\":" : "{\"data\":") < 0 ||
            bench_buf_add(out, b->data_json, b->data_len) < 0 || bench_buf_adds(out, "}") < 0) {
            return -1;
        }
    }
    return bench_buf_adds(out, "]}");
}

/* ---- bulk sender, shared by w1-* and the backlog loader ---- */

static struct sender {
    struct bench *b;
    long total;            /* jobs to enqueue */
    long per_req;          /* jobs per request; 1 = single enqueues */
    long sent;             /* jobs in requests handed out */
    long done;             /* jobs answered 201 */
    int timed;             /* 1: samples and t_end are recorded */
    then_fn then;          /* runs when done == total */
    struct bench_buf full; /* body for per_req jobs */
    struct bench_buf rest; /* body for the last, shorter request */
    long *inflight;        /* jobs in each pool connection's request; new */
} snd;

static void send_next(bench_conn *c, long *slot);

static void on_enqueued(bench_conn *c, const struct bench_resp *r, void *arg)
{
    long *slot = arg;
    struct bench *b = snd.b;

    snd.done += *slot;
    if (snd.timed) {
        bench_sample(b, r->recv_ns - r->sent_ns);
        b->t_end = r->recv_ns;
        b->done_jobs = snd.done;
    }
    if (snd.done == snd.total) {
        snd.then(b);
        return;
    }
    send_next(c, slot);
}

static void send_next(bench_conn *c, long *slot)
{
    struct bench *b = snd.b;
    long n = snd.total - snd.sent;
    struct bench_buf *body = &snd.full;

    if (n <= 0) {
        return; /* this connection is done; others still have answers to come */
    }
    if (n < snd.per_req) {
        if (snd.per_req == 1 || (!snd.rest.len && build_bulk(b, &snd.rest, n) < 0)) {
            bench_fail(b, "out of memory building a bulk body");
            return;
        }
        body = &snd.rest;
    } else {
        n = snd.per_req;
    }
    snd.sent += n;
    *slot = n;
    bench_conn_request(c, "POST", jobs_path, body->data, body->len, on_enqueued, slot);
}

/* Start sending over the pool (already open). */
static void sender_start(struct bench *b)
{
    int i;

    if (snd.timed) {
        b->t_start = uv_hrtime();
    }
    for (i = 0; i < pool.n && !b->failed; i++) {
        send_next(pool.c[i], &snd.inflight[i]);
    }
}

/* Enqueue `total` jobs, `per_req` per request, over `conns` new connections; then `then`. */
static int sender_init(struct bench *b, long total, long per_req, int conns, int timed,
                       then_fn then)
{
    snd.b = b;
    snd.total = total;
    snd.per_req = per_req;
    snd.sent = 0;
    snd.done = 0;
    snd.timed = timed;
    snd.then = then;
    snd.rest.len = 0;
    free(snd.inflight);
    snd.inflight = calloc((size_t)conns, sizeof(*snd.inflight));
    if (!snd.inflight) {
        return -1;
    }
    if (per_req == 1) {
        snd.full.len = 0;
        if (bench_buf_adds(&snd.full, "{\"data\":") < 0 ||
            bench_buf_add(&snd.full, b->data_json, b->data_len) < 0 ||
            bench_buf_adds(&snd.full, "}") < 0) {
            return -1;
        }
    } else if (build_bulk(b, &snd.full, per_req) < 0) {
        return -1;
    }
    if (total == 0) {
        then(b);
        return 0;
    }
    return pool_open(b, conns, sender_start);
}

/* ---- w2, w2-single: drain a backlog ---- */

static struct drain {
    struct bench *b;
    int single;     /* w2-single: fetch 1, complete; else fetch batch, ack */
    int loops_live; /* loops that have not yet seen an empty fetch */
    long acked;
    struct bench_buf fetch_body;
    struct loop *loops; /* new */
    int nloops;
} drn;

struct loop {
    bench_conn *c; /* borrowed from the pool */
    struct bench_buf body;
    char path[400];
    long n;            /* jobs in the batch being acked */
    uint64_t fetch_ns; /* when the batch's fetch was sent */
};

static void fetch_next(struct loop *l);

/* Append %-encoded `s` (URL path segment) to out. */
static int add_segment(struct bench_buf *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        char esc[3] = {'%', hex[ch >> 4], hex[ch & 15]};

        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            if (bench_buf_add(out, (const char *)&ch, 1) < 0) {
                return -1;
            }
        } else if (bench_buf_add(out, esc, 3) < 0) {
            return -1;
        }
    }
    return 0;
}

/* One fetch answer, as scan_fetch() read it. */
struct fetched {
    struct bench *b;
    size_t max;             /* jobs asked for */
    struct bench_buf *acks; /* w2: an ack item per job is appended here; else NULL */
    char id[160];           /* the first job's id, decoded */
    struct jscan_val lease; /* the first job's lease token, borrowed from the answer */
};

static int on_fetched_job(void *arg, size_t i, const struct jscan_val *v)
{
    struct fetched *f = arg;

    if (!v[0].p || *v[0].p != '"' || !v[1].p || *v[1].p != '"') {
        bench_fail(f->b, "POST /v1/fetch: jobs[%zu] lacks a string \"id\" or \"lease\"", i);
        return 1;
    }
    if (i >= f->max) {
        bench_fail(f->b, "POST /v1/fetch: asked for %zu jobs, got more", f->max);
        return 1;
    }
    if (i == 0) {
        if (jscan_string(&v[0], f->id, sizeof(f->id)) < 0) {
            bench_fail(f->b, "POST /v1/fetch: jobs[0].id is too long: %.*s",
                       v[0].n > 200 ? 200 : (int)v[0].n, v[0].p);
            return 1;
        }
        f->lease = v[1];
    }
    /* the tokens are JSON string literals: copied as they are */
    if (f->acks &&
        (bench_buf_adds(f->acks, i ? ",{\"id\":" : "{\"id\":") < 0 ||
         bench_buf_add(f->acks, v[0].p, v[0].n) < 0 || bench_buf_adds(f->acks, ",\"lease\":") < 0 ||
         bench_buf_add(f->acks, v[1].p, v[1].n) < 0 ||
         bench_buf_adds(f->acks, ",\"result\":null}") < 0)) {
        bench_fail(f->b, "out of memory building an ack");
        return 1;
    }
    return 0;
}

/* Number of jobs in fetch answer `r`, or -1 after failing the run. */
static long scan_fetch(const struct bench_resp *r, struct fetched *f)
{
    static const char *const keys[] = {"id", "lease"};
    long n = jscan_items(r->body, r->len, "jobs", keys, 2, on_fetched_job, f);

    if (n == -1) {
        bench_fail(f->b, "POST /v1/fetch: answer is not {\"jobs\":[{...}]}: %.300s", r->body);
    }
    return n < 0 ? -1 : n;
}

/* POST path and body completing job `id` under `lease`. 0, or -1 after failing the run. */
static int build_complete(struct bench *b, char *path, size_t cap, struct bench_buf *body,
                          const char *id, const struct jscan_val *lease)
{
    struct bench_buf p = {0};
    int rc = -1;

    body->len = 0;
    if (bench_buf_adds(body, "{\"lease\":") < 0 || bench_buf_add(body, lease->p, lease->n) < 0 ||
        bench_buf_adds(body, "}") < 0 || bench_buf_adds(&p, "/v1/jobs/") < 0 ||
        add_segment(&p, id) < 0 || bench_buf_adds(&p, "/complete") < 0) {
        bench_fail(b, "out of memory building a complete");
        goto out;
    }
    if (p.len >= cap) {
        bench_fail(b, "job id too long for a path: %.100s", id);
        goto out;
    }
    memcpy(path, p.data, p.len + 1);
    rc = 0;
out:
    bench_buf_fini(&p);
    return rc;
}

static void loop_done(struct bench *b)
{
    if (--drn.loops_live > 0) {
        return;
    }
    if (drn.acked != b->jobs) {
        bench_fail(b, "drain stopped: fetch answered no jobs after %ld of %ld were acked",
                   drn.acked, b->jobs);
        return;
    }
    bench_finish(b);
}

static int on_ack_item(void *arg, size_t i, const struct jscan_val *v)
{
    (void)arg;
    if (v[0].n != 3 || memcmp(v[0].p, "200", 3) != 0) {
        bench_fail(drn.b, "POST /v1/ack: results[%zu] has status %.*s, error %.*s", i,
                   v[0].p ? (int)v[0].n : 6, v[0].p ? v[0].p : "absent",
                   v[1].p ? (v[1].n > 300 ? 300 : (int)v[1].n) : 6, v[1].p ? v[1].p : "absent");
        return 1;
    }
    return 0;
}

static void on_acked(bench_conn *c, const struct bench_resp *r, void *arg)
{
    static const char *const keys[] = {"status", "error"};
    struct loop *l = arg;
    struct bench *b = drn.b;

    (void)c;
    if (!drn.single) {
        long n = jscan_items(r->body, r->len, "results", keys, 2, on_ack_item, NULL);

        if (n == -2) {
            return;
        }
        if (n != l->n) {
            bench_fail(b, "POST /v1/ack: expected {\"results\":[%ld items]}, got: %.300s", l->n,
                       r->body);
            return;
        }
    }
    drn.acked += l->n;
    b->done_jobs = drn.acked;
    b->t_end = r->recv_ns;
    bench_sample(b, r->recv_ns - l->fetch_ns);
    if (drn.acked > b->jobs) {
        bench_fail(b, "drained %ld jobs, more than the %ld expected", drn.acked, b->jobs);
        return;
    }
    if (drn.acked == b->jobs) {
        bench_finish(b);
        return;
    }
    fetch_next(l);
}

static void on_fetched(bench_conn *c, const struct bench_resp *r, void *arg)
{
    struct loop *l = arg;
    struct bench *b = drn.b;
    struct fetched f = {.b = b, .max = (size_t)b->batch, .acks = drn.single ? NULL : &l->body};
    long n;

    l->body.len = 0;
    if (f.acks && bench_buf_adds(f.acks, "{\"acks\":[") < 0) {
        bench_fail(b, "out of memory building an ack");
        return;
    }
    n = scan_fetch(r, &f);
    if (n < 0) {
        return;
    }
    if (n == 0) {
        loop_done(b);
        return;
    }
    l->n = n;
    l->fetch_ns = r->sent_ns;
    if (drn.single) {
        if (build_complete(b, l->path, sizeof(l->path), &l->body, f.id, &f.lease) == 0) {
            bench_conn_request(c, "POST", l->path, l->body.data, l->body.len, on_acked, l);
        }
        return;
    }
    if (bench_buf_adds(&l->body, "]}") < 0) {
        bench_fail(b, "out of memory building an ack");
        return;
    }
    bench_conn_request(c, "POST", "/v1/ack", l->body.data, l->body.len, on_acked, l);
}

static void fetch_next(struct loop *l)
{
    bench_conn_request(l->c, "POST", "/v1/fetch", drn.fetch_body.data, drn.fetch_body.len,
                       on_fetched, l);
}

static void drain_start(struct bench *b)
{
    int i;

    drn.loops_live = drn.nloops;
    b->t_start = uv_hrtime();
    for (i = 0; i < drn.nloops && !b->failed; i++) {
        drn.loops[i].c = pool.c[i];
        fetch_next(&drn.loops[i]);
    }
}

static void drain_open(struct bench *b)
{
    if (b->preload) {
        fprintf(stderr, "jobq-bench: backlog of %ld jobs loaded in %.3f s\n", b->jobs,
                (double)(uv_hrtime() - b->t_start) / 1e9);
    }
    if (pool_open(b, drn.nloops, drain_start) < 0) {
        bench_fail(b, "out of memory opening connections");
    }
}

static int drain_init(struct bench *b, int single)
{
    drn.b = b;
    drn.single = single;
    drn.acked = 0;
    drn.nloops = b->conns;
    drn.loops = calloc((size_t)b->conns, sizeof(*drn.loops));
    if (!drn.loops) {
        return -1;
    }
    if (bench_buf_adds(&drn.fetch_body, "{\"queues\":[") < 0 ||
        bench_buf_add_jstr(&drn.fetch_body, b->queue) < 0 ||
        bench_buf_printf(&drn.fetch_body, "],\"count\":%d,\"wait_ms\":0,\"worker\":\"jobq-bench\"}",
                         b->batch) < 0) {
        return -1;
    }
    if (!b->preload) {
        drain_open(b);
        return 0;
    }
    b->t_start = uv_hrtime(); /* for the progress line only; drain_start resets it */
    return sender_init(b, b->jobs, PRELOAD_BATCH, PRELOAD_CONNS, 0, drain_open);
}

/* ---- w3: wake-up latency of a parked fetch ---- */

static struct wake {
    struct bench *b;
    bench_conn *worker;   /* borrowed from the pool */
    bench_conn *producer; /* borrowed from the pool */
    uv_timer_t park;
    long round;
    int enq_sent;       /* this round's enqueue has been handed to the socket */
    int enq_done;       /* ... and answered */
    int fetch_done;     /* the fetch answered with the job, and it was completed */
    uint64_t enq_ns;    /* when the enqueue was sent */
    uint64_t fetch_ns;  /* when the fetch answered */
    char enq_id[160];   /* id the enqueue answered */
    char fetch_id[160]; /* id the fetch handed out */
    struct bench_buf fetch_body;
    struct bench_buf enq_body;
    struct bench_buf complete_body;
    char complete_path[400];
} wk;

static void wake_round(struct bench *b);

static void wake_check(struct bench *b)
{
    if (!wk.enq_done || !wk.fetch_done) {
        return;
    }
    if (strcmp(wk.enq_id, wk.fetch_id) != 0) {
        bench_fail(b, "w3: enqueued job %s but the parked fetch got %s", wk.enq_id, wk.fetch_id);
        return;
    }
    bench_sample(b, wk.fetch_ns - wk.enq_ns);
    b->done_jobs = ++wk.round;
    b->t_end = uv_hrtime();
    if (wk.round == b->jobs) {
        bench_finish(b);
        return;
    }
    wake_round(b);
}

static void on_w3_enqueued(bench_conn *c, const struct bench_resp *r, void *arg)
{
    json_t *root = json_loadb(r->body, r->len, 0, NULL);
    const char *id = json_string_value(json_object_get(root, "id"));

    (void)c;
    (void)arg;
    if (!id || strlen(id) >= sizeof(wk.enq_id)) {
        bench_fail(wk.b, "%s: answer has no job \"id\": %.300s", jobs_path, r->body);
        json_decref(root);
        return;
    }
    strcpy(wk.enq_id, id);
    json_decref(root);
    wk.enq_ns = r->sent_ns;
    wk.enq_done = 1;
    wake_check(wk.b);
}

static void on_w3_completed(bench_conn *c, const struct bench_resp *r, void *arg)
{
    (void)c;
    (void)r;
    (void)arg;
    wk.fetch_done = 1;
    wake_check(wk.b);
}

static void on_w3_fetched(bench_conn *c, const struct bench_resp *r, void *arg)
{
    struct bench *b = wk.b;
    struct fetched f = {.b = b, .max = 1000};
    long n = scan_fetch(r, &f);

    (void)arg;
    if (n < 0) {
        return;
    }
    if (!wk.enq_sent) {
        bench_fail(b, "w3: the parked fetch answered (%ld jobs) before the enqueue was sent", n);
        return;
    }
    if (n != 1) {
        bench_fail(b, "w3: the parked fetch answered %ld jobs after %.1f ms, expected 1", n,
                   (double)(r->recv_ns - r->sent_ns) / 1e6);
        return;
    }
    wk.fetch_ns = r->recv_ns;
    memcpy(wk.fetch_id, f.id, sizeof(wk.fetch_id));
    if (build_complete(b, wk.complete_path, sizeof(wk.complete_path), &wk.complete_body, f.id,
                       &f.lease) == 0) {
        bench_conn_request(c, "POST", wk.complete_path, wk.complete_body.data, wk.complete_body.len,
                           on_w3_completed, NULL);
    }
}

static void on_park_timer(uv_timer_t *t)
{
    (void)t;
    wk.enq_sent = 1;
    bench_conn_request(wk.producer, "POST", jobs_path, wk.enq_body.data, wk.enq_body.len,
                       on_w3_enqueued, NULL);
}

static void wake_round(struct bench *b)
{
    (void)b;
    wk.enq_sent = 0;
    wk.enq_done = 0;
    wk.fetch_done = 0;
    bench_conn_request(wk.worker, "POST", "/v1/fetch", wk.fetch_body.data, wk.fetch_body.len,
                       on_w3_fetched, NULL);
    uv_timer_start(&wk.park, on_park_timer, (uint64_t)wk.b->park_ms, 0);
}

static void wake_start(struct bench *b)
{
    wk.worker = pool.c[0];
    wk.producer = pool.c[1];
    b->t_start = uv_hrtime();
    wake_round(b);
}

static int wake_init(struct bench *b)
{
    wk.b = b;
    uv_timer_init(b->loop, &wk.park);
    if (bench_buf_adds(&wk.fetch_body, "{\"queues\":[") < 0 ||
        bench_buf_add_jstr(&wk.fetch_body, b->queue) < 0 ||
        bench_buf_adds(&wk.fetch_body,
                       "],\"count\":1,\"wait_ms\":5000,\"worker\":\"jobq-bench\"}") < 0 ||
        bench_buf_adds(&wk.enq_body, "{\"data\":") < 0 ||
        bench_buf_add(&wk.enq_body, b->data_json, b->data_len) < 0 ||
        bench_buf_adds(&wk.enq_body, "}") < 0) {
        return -1;
    }
    return pool_open(b, 2, wake_start);
}

/* ---- dispatch ---- */

static void sender_done(struct bench *b)
{
    bench_finish(b);
}

int bench_run_workload(struct bench *b)
{
    const char *w = b->workload;
    int rc;

    snprintf(jobs_path, sizeof(jobs_path), "/v1/queues/%s/jobs", b->queue);
    if (strcmp(w, "w1-seq") == 0) {
        rc = sender_init(b, b->jobs, 1, 1, 1, sender_done);
    } else if (strcmp(w, "w1-pipe") == 0) {
        rc = sender_init(b, b->jobs, 1, b->conns ? b->conns : 100, 1, sender_done);
    } else if (strcmp(w, "w1-bulk") == 0) {
        rc = sender_init(b, b->jobs, b->batch ? b->batch : 1000, b->conns ? b->conns : 1, 1,
                         sender_done);
    } else if (strcmp(w, "w2") == 0 || strcmp(w, "w2-single") == 0) {
        int single = w[2] != '\0';

        b->batch = single ? 1 : (b->batch ? b->batch : 100);
        b->conns = b->conns ? b->conns : (single ? 50 : 4);
        rc = drain_init(b, single);
    } else if (strcmp(w, "w3") == 0) {
        rc = wake_init(b);
    } else {
        fprintf(stderr,
                "jobq-bench: unknown workload %s (w1-seq w1-pipe w1-bulk w2 w2-single "
                "w3)\n",
                w);
        return -1;
    }
    if (rc < 0) {
        fprintf(stderr, "jobq-bench: out of memory setting up %s\n", w);
        return -1;
    }
    return 0;
}

void bench_workload_fini(void)
{
    int i;

    free(pool.c);
    pool.c = NULL;
    bench_buf_fini(&snd.full);
    bench_buf_fini(&snd.rest);
    free(snd.inflight);
    snd.inflight = NULL;
    for (i = 0; i < drn.nloops; i++) {
        bench_buf_fini(&drn.loops[i].body);
    }
    free(drn.loops);
    drn.loops = NULL;
    bench_buf_fini(&drn.fetch_body);
    bench_buf_fini(&wk.fetch_body);
    bench_buf_fini(&wk.enq_body);
    bench_buf_fini(&wk.complete_body);
}
