/*
 * app.c — the application: engine + store + HTTP on one libuv loop.
 *
 * Group commit. Handlers change the engine at once (in memory) and park their request
 * with jobq_app_after_commit(). At the end of every loop turn (uv_check) the engine's
 * changes since the last batch are taken as one batch and handed to the store's writer
 * thread, unless a batch is already in flight; the writer applies it in one transaction with
 * one sync and wakes the loop (uv_async); then the engine is told (new jobs become
 * fetchable), the parked requests of that batch are answered, and the next batch goes out.
 * Under load a batch therefore holds everything that arrived while the previous one synced.
 *
 * Store failure. A batch that fails is kept and retried every 500 ms; its requests are
 * answered 503, and while it fails every request that would change state is answered 503
 * before it touches the engine, so memory runs ahead of the disk by that one batch at most.
 * When the retry succeeds the server serves normally again.
 *
 * Parked requests: long-poll fetches (answered when the engine says a queue has work, or at
 * their deadline) and result waits (answered when the job is final). One uv_timer serves
 * every deadline; one serves the engine's timers.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <unistd.h>

#include "api/api.h"
#include "api/stream.h"
#include "api/wsworker.h"
#include "api/idem.h"
#include "api/outbox.h"
#include "util/jsonw.h"

typedef struct waiter {
    jobq_req *rq;
    jobq_finish_fn finish;
    void (*cb)(jobq_app *a, void *ud, int ok); /* instead of rq: jobq_app_when_durable */
    void *ud;
} waiter;

typedef struct fetcher {
    jobq_req *rq;
    char **queues;
    size_t nq;
    size_t count;
    char *worker;
    jobq_resources *capacity; /* or NULL */
    int64_t deadline;
    GList link; /* in a->fetchers; data = this */
} fetcher;

typedef struct result_wait {
    jobq_req *rq;
    char *id;
    int64_t deadline;
    int flow;    /* id is a flow's: answered when the flow ends */
    GList link;  /* in a->results; data = this */
    GList ilink; /* in its id's queue in a->job_waits or a->flow_waits; data = this */
} result_wait;

struct jobq_app {
    uv_loop_t *loop;
    jobq_engine *e;
    jobq_store *store;
    jobq_http *http;
    int port;
    uv_check_t check;
    uv_prepare_t prepare;
    uv_timer_t engine_timer;
    uv_timer_t park_timer;
    uv_timer_t retry_timer;
    uv_async_t async;
    int64_t engine_due; /* when engine_timer fires, INT64_MAX when stopped */
    int64_t park_due;
    /* group commit */
    jobq_batch *inflight;  /* submitted (or failed and awaiting retry) */
    GArray *wait_next;     /* waiters for the batch being gathered */
    GArray *wait_inflight; /* waiters for the batch in flight */
    int store_failed;
    /* parked */
    GQueue fetchers;
    GQueue results;
    /* the same waiters by id (id → GQueue*): a job's end finds its own waiters, not all */
    GHashTable *job_waits, *flow_waits;
    int any_ready;
    int stopping;
    int abandoned;        /* stopped with changes the failing store never took */
    int exit_code;        /* for main: 0, or 2 when the store failed us */
    int recovering;       /* the store is being loaded on the thread pool */
    int load_rc;          /* the load's result (written by the pool thread) */
    int64_t load_started; /* ms since epoch */
    uv_work_t load;
    char *host, *data_dir;
    uv_timer_t stop_timer; /* bounds a stop while the store fails */
    jobq_idem *idem;       /* Idempotency-Key records (idem.c) */
    int closed;
    jobq_webhooks *webhooks; /* hooks and their outbox (outbox.c) */
    jobq_pipelines *pipelines; /* pipeline templates (pipelines.c) */
    jobq_settings *settings;
    jobq_bus *bus; /* events: emitted by the engine, published once durable */
    jobq_streams *streams;     /* /v1/events subscribers */
    jobq_wsworkers *wsworkers; /* /v1/worker sockets */
};

int64_t jobq_app_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

jobq_engine *jobq_app_engine(jobq_app *a)
{
    return a->e;
}

jobq_store *jobq_app_store(jobq_app *a)
{
    return a->store;
}

jobq_idem *jobq_app_idem(jobq_app *a)
{
    return a->idem;
}

jobq_webhooks *jobq_app_webhooks(jobq_app *a)
{
    return a->webhooks;
}

jobq_pipelines *jobq_app_pipelines(jobq_app *a)
{
    return a->pipelines;
}

jobq_settings *jobq_app_settings(jobq_app *a)
{
    return a->settings;
}

jobq_bus *jobq_app_bus(jobq_app *a)
{
    return a->bus;
}

jobq_streams *jobq_app_streams(jobq_app *a)
{
    return a->streams;
}

jobq_wsworkers *jobq_app_wsworkers(jobq_app *a)
{
    return a->wsworkers;
}

uv_loop_t *jobq_app_loop(jobq_app *a)
{
    return a->loop;
}

int jobq_app_port(const jobq_app *a)
{
    return a->port;
}

/* ---------------------------------------------------------------- group commit */

static void on_committed(void *ud, jobq_batch *b, int status);
static void serve_fetchers(jobq_app *a);

static void answer_waiters(jobq_app *a, GArray *ws, int ok)
{
    for (guint i = 0; i < ws->len; i++) {
        waiter *w = &g_array_index(ws, waiter, i);
        if (w->cb)
            w->cb(a, w->ud, ok);
        else if (ok)
            w->finish(a, w->rq);
        else
            jobq_req_error(w->rq, 503, "unavailable",
                           "the store failed to save this change (disk full or I/O error); "
                           "retry later",
                           NULL);
    }
    g_array_set_size(ws, 0);
}

static void submit(jobq_app *a, jobq_batch *b)
{
    a->inflight = b;
    if (jobq_store_submit(a->store, b, on_committed, a) != 0) {
        /* the writer refused it (out of memory): treat as a failed commit */
        on_committed(a, b, JOBQ_ESTORE);
    }
}

static void flush(jobq_app *a)
{
    jobq_batch *b;
    GArray *t;

    if (a->inflight || a->store_failed || !jobq_engine_has_changes(a->e))
        return;
    b = jobq_engine_take_changes(a->e);
    if (!b)
        return;
    jobq_bus_batch_taken(a->bus);
    t = a->wait_inflight;
    a->wait_inflight = a->wait_next;
    a->wait_next = t;
    submit(a, b);
}

static void on_retry(uv_timer_t *t)
{
    jobq_app *a = t->data;

    if (a->inflight)
        submit(a, a->inflight);
}

static void on_committed(void *ud, jobq_batch *b, int status)
{
    jobq_app *a = ud;

    if (status != 0) { /* the store has said why on stderr, once per failing spell */
        a->store_failed = 1;
        answer_waiters(a, a->wait_inflight, 0);
        uv_timer_start(&a->retry_timer, on_retry, 500, 0);
        return;
    }
    a->store_failed = 0;
    a->inflight = NULL;
    jobq_batch_free(b);
    jobq_engine_committed(a->e, jobq_app_now());
    answer_waiters(a, a->wait_inflight, 1);
    jobq_bus_batch_durable(a->bus); /* events announce only what is durable */
    serve_fetchers(a);
    /* the next batch goes out at the end of this loop turn (on_check) */
}

static void on_async(uv_async_t *h)
{
    jobq_app *a = h->data;

    jobq_store_poll(a->store);
}

static void store_notify(void *ud)
{
    jobq_app *a = ud;

    uv_async_send(&a->async);
}

int jobq_app_store_ok(const jobq_app *a)
{
    return !a->store_failed;
}

int jobq_app_writable(jobq_app *a, jobq_req *rq)
{
    if (a->stopping) {
        jobq_req_error(rq, 503, "unavailable", "the server is shutting down", NULL);
        return 0;
    }
    if (a->store_failed) {
        jobq_req_add_header(rq, "Retry-After", "1");
        jobq_req_error(rq, 503, "unavailable",
                       "the store cannot save changes right now (disk full or I/O error); "
                       "retry later",
                       NULL);
        return 0;
    }
    return 1;
}

void jobq_app_when_durable(jobq_app *a, void (*fn)(jobq_app *a, void *ud, int ok), void *ud)
{
    waiter w = {NULL, NULL, fn, ud};

    if (jobq_engine_has_changes(a->e))
        g_array_append_val(a->wait_next, w);
    else if (a->inflight)
        g_array_append_val(a->wait_inflight, w);
    else
        fn(a, ud, 1);
}

int jobq_app_accepts_changes(const jobq_app *a)
{
    return !a->stopping && !a->store_failed;
}

void jobq_app_after_commit(jobq_app *a, jobq_req *rq, jobq_finish_fn finish)
{
    waiter w = {rq, finish, NULL, NULL};

    if (jobq_engine_has_changes(a->e)) {
        g_array_append_val(a->wait_next, w);
    } else if (a->inflight) {
        /* no change of its own, but it may report one still in flight: wait for that */
        g_array_append_val(a->wait_inflight, w);
    } else {
        finish(a, rq);
        return;
    }
    if (!jobq_req_parked(rq)) /* an answer caught while parked (idem.c) waits parked */
        jobq_req_park(rq, NULL, NULL);
}

/* ---------------------------------------------------------------- parked requests */

static void arm_park_timer(jobq_app *a);

static void fetcher_free(fetcher *f)
{
    for (size_t i = 0; i < f->nq; i++)
        g_free(f->queues[i]);
    g_free(f->queues);
    g_free(f->worker);
    jobq_resources_free(f->capacity);
    g_free(f);
}

static void fetch_reply(jobq_app *a, fetcher *f, jobq_job **jobs, size_t n)
{
    GString *o = g_string_sized_new(256 + n * 512);
    int64_t now = jobq_app_now();

    g_string_append(o, "{\"jobs\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            g_string_append_c(o, ',');
        jobq_job_render(a->e, jobs[i], 1, now, o);
    }
    g_string_append(o, "]}");
    g_queue_unlink(&a->fetchers, &f->link);
    jobq_api_gstring(f->rq, 200, o);
    fetcher_free(f);
}

static void on_fetch_gone(jobq_req *rq, void *ud)
{
    jobq_app *a = jobq_req_app(rq);
    fetcher *f = ud;

    g_queue_unlink(&a->fetchers, &f->link);
    fetcher_free(f);
}

void jobq_app_park_fetch(jobq_app *a, jobq_req *rq, const char *const *queues, size_t nq,
                         size_t count, const char *worker, jobq_resources *capacity,
                         int64_t deadline)
{
    fetcher *f = g_new0(fetcher, 1);

    f->capacity = capacity;
    f->rq = rq;
    f->queues = g_new(char *, nq);
    for (size_t i = 0; i < nq; i++)
        f->queues[i] = g_strdup(queues[i]);
    f->nq = nq;
    f->count = count;
    f->worker = g_strdup(worker);
    f->deadline = deadline;
    f->link.data = f;
    g_queue_push_tail_link(&a->fetchers, &f->link);
    jobq_req_park(rq, on_fetch_gone, f);
    if (deadline < a->park_due)
        arm_park_timer(a);
}

/* Hands newly ready jobs to parked fetchers, oldest first. */
static void serve_fetchers(jobq_app *a)
{
    GList *l, *next;
    jobq_job **jobs = NULL;
    size_t cap = 0;
    int64_t now;

    if (!a->any_ready)
        return;
    a->any_ready = 0;
    if (a->store_failed)
        return;
    now = jobq_app_now();
    for (l = a->fetchers.head; l; l = next) {
        fetcher *f = l->data;
        size_t n;
        next = l->next;
        if (f->count > cap) {
            cap = f->count;
            jobs = g_renew(jobq_job *, jobs, cap);
        }
        n = jobq_engine_fetch_fit(a->e, (const char *const *)f->queues, f->nq, f->count, f->worker,
                                  f->capacity, now, jobs);
        if (n)
            fetch_reply(a, f, jobs, n);
    }
    g_free(jobs);
    jobq_wsworkers_serve(a->wsworkers); /* then the sockets with credit */
}

static void engine_event(void *ud, const jobq_event *ev)
{
    jobq_app *a = ud;

    jobq_bus_emit(a->bus, ev);
}

static void engine_ready(void *ud, jobq_queue *q)
{
    jobq_app *a = ud;

    (void)q;
    a->any_ready = 1;
}

static void result_reply(jobq_app *a, jobq_req *rq, const char *id, int flow)
{
    jobq_job *j;

    if (flow) {
        jobq_flow *f = jobq_engine_flow(a->e, id);
        GString *o;
        if (!f) {
            jobq_req_error(rq, 404, "not_found", "flow not found", NULL);
            return;
        }
        o = g_string_sized_new(512);
        jobq_flow_render(a->e, f, o);
        jobq_api_gstring(rq, 200, o);
        return;
    }
    j = jobq_engine_job(a->e, id);

    if (!j) {
        jobq_req_error(rq, 404, "not_found", "job not found (deleted)", NULL);
        return;
    }
    jobq_api_result(rq, j);
}

static GHashTable *wait_index(jobq_app *a, int flow)
{
    return flow ? a->flow_waits : a->job_waits;
}

static void result_wait_free(jobq_app *a, result_wait *w)
{
    GHashTable *idx = wait_index(a, w->flow);
    GQueue *ws = g_hash_table_lookup(idx, w->id);

    g_queue_unlink(&a->results, &w->link);
    g_queue_unlink(ws, &w->ilink);
    if (!ws->length)
        g_hash_table_remove(idx, w->id);
    g_free(w->id);
    g_free(w);
}

static void on_result_gone(jobq_req *rq, void *ud)
{
    jobq_app *a = jobq_req_app(rq);

    result_wait_free(a, ud);
}

void jobq_app_park_result(jobq_app *a, jobq_req *rq, const char *id, int64_t deadline)
{
    jobq_app_park_wait(a, rq, id, 0, deadline);
}

void jobq_app_park_wait(jobq_app *a, jobq_req *rq, const char *id, int flow, int64_t deadline)
{
    result_wait *w = g_new0(result_wait, 1);
    GHashTable *idx = wait_index(a, flow);
    GQueue *ws = g_hash_table_lookup(idx, id);

    w->flow = flow;
    w->rq = rq;
    w->id = g_strdup(id);
    w->deadline = deadline;
    w->link.data = w;
    g_queue_push_tail_link(&a->results, &w->link);
    if (!ws) {
        ws = g_queue_new();
        g_hash_table_insert(idx, g_strdup(id), ws);
    }
    w->ilink.data = w;
    g_queue_push_tail_link(ws, &w->ilink);
    jobq_req_park(rq, on_result_gone, w);
    if (deadline < a->park_due)
        arm_park_timer(a);
}

static void finish_result(jobq_app *a, jobq_req *rq)
{
    result_reply(a, rq, jobq_req_data(rq), 0);
}

static void finish_flow_result(jobq_app *a, jobq_req *rq)
{
    result_reply(a, rq, jobq_req_data(rq), 1);
}

/* Answers every waiter of id (a job's or a flow's) once the changes so far are durable;
 * a deleted job's at once. */
static void wake_waiters(jobq_app *a, const char *id, int flow, int deleted)
{
    GQueue *ws;

    while ((ws = g_hash_table_lookup(wait_index(a, flow), id))) {
        result_wait *w = ws->head->data;
        jobq_req *rq = w->rq;
        jobq_req_set_data(rq, g_strdup(w->id), g_free);
        result_wait_free(a, w); /* may free ws: looked up again */
        if (deleted) {
            jobq_req_error(rq, 404, "not_found", "job deleted", NULL);
        } else {
            waiter wt = {rq, flow ? finish_flow_result : finish_result, NULL, NULL};
            g_array_append_val(a->wait_next, wt); /* already parked */
        }
    }
}

/* Answers the waiters of every flow that has ended (or is gone). Rare: only when a live job
 * is removed (DELETE, a queue's delete or clean), which no longer names its flow. */
static void wake_ended_flows(jobq_app *a)
{
    GPtrArray *ended = g_ptr_array_new_with_free_func(g_free);
    GHashTableIter it;
    gpointer k;

    g_hash_table_iter_init(&it, a->flow_waits);
    while (g_hash_table_iter_next(&it, &k, NULL)) {
        jobq_flow *f = jobq_engine_flow(a->e, k);
        if (!f || jobq_flow_final(f))
            g_ptr_array_add(ended, g_strdup(k));
    }
    for (guint i = 0; i < ended->len; i++)
        wake_waiters(a, g_ptr_array_index(ended, i), 1, 0);
    g_ptr_array_free(ended, TRUE);
}

/* A job became final: its result waiters are answered once that change is durable, and so
 * are its flow's if the job's end ended the flow. */
static void engine_final(void *ud, jobq_job *j, int deleted)
{
    jobq_app *a = ud;
    const char *fid;
    jobq_flow *f;

    if (!a->results.length)
        return;
    fid = jobq_job_flow_id(j);
    if (fid && g_hash_table_contains(a->flow_waits, fid) && (f = jobq_engine_flow(a->e, fid)) &&
        jobq_flow_final(f))
        wake_waiters(a, jobq_flow_id(f), 1, 0);
    if (deleted && !jobq_state_final(jobq_job_state(j)) && g_hash_table_size(a->flow_waits))
        wake_ended_flows(a); /* a removed live job is out of its flow already: may have ended it */
    wake_waiters(a, jobq_job_id(j), 0, deleted);
}

static void on_park_timer(uv_timer_t *t)
{
    jobq_app *a = t->data;
    int64_t now = jobq_app_now();
    GList *l, *next;

    a->park_due = INT64_MAX;
    for (l = a->fetchers.head; l; l = next) {
        fetcher *f = l->data;
        next = l->next;
        if (f->deadline <= now || a->stopping)
            fetch_reply(a, f, NULL, 0);
    }
    for (l = a->results.head; l; l = next) {
        result_wait *w = l->data;
        jobq_req *rq = w->rq;
        char *id;
        int flow;
        next = l->next;
        if (w->deadline > now && !a->stopping)
            continue;
        id = g_strdup(w->id);
        flow = w->flow;
        result_wait_free(a, w);
        result_reply(a, rq, id, flow);
        g_free(id);
    }
    arm_park_timer(a);
}

static void arm_park_timer(jobq_app *a)
{
    int64_t due = INT64_MAX, now = jobq_app_now();

    for (GList *l = a->fetchers.head; l; l = l->next)
        due = MIN(due, ((fetcher *)l->data)->deadline);
    for (GList *l = a->results.head; l; l = l->next)
        due = MIN(due, ((result_wait *)l->data)->deadline);
    a->park_due = due;
    if (due == INT64_MAX)
        uv_timer_stop(&a->park_timer);
    else
        uv_timer_start(&a->park_timer, on_park_timer, (uint64_t)MAX(0, due - now), 0);
}

/* ---------------------------------------------------------------- the loop turn */

static void on_engine_timer(uv_timer_t *t)
{
    jobq_app *a = t->data;
    int64_t now = jobq_app_now();

    a->engine_due = INT64_MAX;
    jobq_engine_tick(a->e, now);
    if (now >= jobq_engine_stats_due(a->e))
        jobq_engine_stats_tick(a->e, now);
}

static void close_all(jobq_app *a);
static void turn_end(jobq_app *a);

/* The end of a loop turn: hand ready jobs to parked fetches, send the turn's changes to the
 * store, re-arm the engine's timer. Runs both before the loop polls (uv_prepare: requests
 * handled in the timers phase must not wait for the next wake-up) and after it (uv_check:
 * requests handled during the poll). */
static void turn_end(jobq_app *a)
{
    int64_t due;

    if (a->closed || a->recovering) /* the pool thread owns the engine until loaded */
        return;
    serve_fetchers(a);
    jobq_idem_sweep(a->idem, jobq_app_now());
    flush(a);
    /* one timer for the jobs' times and for stats housekeeping (minutes, days, health) */
    due = MIN(jobq_engine_next_timer(a->e), jobq_engine_stats_due(a->e));
    if (due != a->engine_due) {
        a->engine_due = due;
        if (due == INT64_MAX)
            uv_timer_stop(&a->engine_timer);
        else
            uv_timer_start(&a->engine_timer, on_engine_timer,
                           (uint64_t)MAX(0, due - jobq_app_now()), 0);
    }
    if (a->stopping && (a->abandoned || (!a->inflight && !jobq_engine_has_changes(a->e))) &&
        !a->fetchers.length && !a->results.length && jobq_http_pending(a->http) == 0)
        close_all(a);
}

static void on_check(uv_check_t *c)
{
    turn_end(c->data);
}

static void on_prepare(uv_prepare_t *p)
{
    turn_end(p->data);
}

/* ---------------------------------------------------------------- life cycle */

/* ---------------------------------------------------------------- recovery
 * The server listens before it loads: while the store is read back (seconds for millions of
 * jobs) /healthz answers 200 and every other path 503, so probes can tell "alive, not ready"
 * from "gone". The load runs on libuv's thread pool; nothing else touches the engine until
 * it is done (the gate answers every request that would, and turn_end waits). */

static int recovery_gate(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);

    if (!a->recovering || strcmp(jobq_req_path(rq), "/healthz") == 0)
        return 0;
    jobq_req_add_header(rq, "Retry-After", "1");
    jobq_req_error(rq, 503, "unavailable", "recovering: the store is being loaded; retry shortly",
                   NULL);
    return 1;
}

/* Every routed request passes here before its handler: recovery, then Idempotency-Key. */
static int app_gate(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);

    return recovery_gate(rq) || jobq_idem_gate(a->idem, rq);
}

/* Loading: stored documents of kinds the engine does not own, handed to the module of the
 * API layer that keeps them (by kind). A kind nobody claims is left alone. */
static int engine_doc(void *ud, const char *kind, const char *id, const char *body)
{
    jobq_app *a = ud;

    if (strcmp(kind, "idem") == 0)
        return jobq_idem_load(a->idem, id, body);
    if (strcmp(kind, "pipeline") == 0)
        return jobq_pipelines_load(a->pipelines, id, body);
    if (strcmp(kind, "config") == 0 && strcmp(id, "runtime") == 0)
        return jobq_settings_load_runtime(a->settings, body);
    return jobq_webhooks_load_doc(a->webhooks, kind, id, body);
}

static void load_work(uv_work_t *w)
{
    jobq_app *a = w->data;
    jobq_load_cb cb = jobq_engine_loader(a->e);

    a->load_rc = jobq_store_load(a->store, &cb);
}

static void load_done(uv_work_t *w, int status)
{
    jobq_app *a = w->data;
    int rc = status ? JOBQ_EIO : a->load_rc;

    if (rc == 0)
        rc = jobq_engine_load_done(a->e, jobq_app_now());
    if (rc == 0) {
        /* settings: the file and flags as given, the runtime layer as stored */
        char *err = NULL;
        jobq_settings_apply(a->settings, a->e, jobq_app_now());
        if (jobq_settings_apply_queues(a->settings, a->e, jobq_app_now(), &err)) {
            fprintf(stderr, "jobqd: config: %s\n", err);
            g_free(err);
            rc = JOBQ_EINVAL;
        }
    }
    if (rc == 0)
        jobq_idem_load_done(a->idem);
    if (rc == 0 && jobq_store_start(a->store, store_notify, a) != 0)
        rc = JOBQ_ESTORE;
    if (rc) {
        fprintf(stderr, "jobqd: cannot load the store in %s: %s\n", a->data_dir, jobq_strerror(rc));
        a->exit_code = 2;
        a->abandoned = 1; /* nothing to save: the engine holds only what was read */
        a->recovering = 0;
        jobq_app_stop(a);
        return;
    }
    a->recovering = 0;
    jobq_streams_start(a->streams, jobq_engine_event_seq(a->e));
    jobq_webhooks_start(a->webhooks, jobq_app_now());
    fprintf(stderr, "jobqd: loaded %zu jobs in %zu queues in %" PRId64 " ms\n",
            jobq_engine_job_total(a->e), jobq_engine_queue_total(a->e),
            jobq_app_now() - a->load_started);
    if (!a->stopping)
        fprintf(stderr, "jobqd: listening on %s:%d\n", a->host, a->port);
    uv_async_send(&a->async); /* one more turn: arm the engine's timer */
}

jobq_app *jobq_app_new(uv_loop_t *loop, const jobq_app_config *cfg, int *exit_code)
{
    jobq_app *a = g_new0(jobq_app, 1);
    jobq_engine_config ecfg = {0};
    jobq_engine_hooks hooks = {0};
    jobq_http_config hcfg = {0};
    const char *msg = NULL;
    int err = 0;

    a->loop = loop;
    a->engine_due = a->park_due = INT64_MAX;
    a->wait_next = g_array_new(FALSE, FALSE, sizeof(waiter));
    a->wait_inflight = g_array_new(FALSE, FALSE, sizeof(waiter));
    g_queue_init(&a->fetchers);
    g_queue_init(&a->results);
    a->job_waits =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_queue_free);
    a->flow_waits =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_queue_free);
    a->host = g_strdup(cfg->listen_host);
    a->settings = cfg->settings ? cfg->settings : jobq_settings_new();
    a->data_dir = g_strdup(cfg->data_dir);
    a->load_started = jobq_app_now();
    a->idem = jobq_idem_new(a, cfg->idempotency_ttl_ms, cfg->idempotency_max_bytes);
    a->pipelines = jobq_pipelines_new();

    ecfg.strict_queues = cfg->strict_queues;
    ecfg.stats_flush_ms = cfg->stats_flush_ms;
    ecfg.health_interval_ms = cfg->health_interval_ms;
    {
        uint64_t seed = 0;
        FILE *f = fopen("/dev/urandom", "rb");
        if (!f || fread(&seed, sizeof seed, 1, f) != 1)
            seed = (uint64_t)a->load_started ^ ((uint64_t)getpid() << 32);
        if (f)
            fclose(f);
        ecfg.seed = seed;
    }
    hooks.ready = engine_ready;
    hooks.final = engine_final;
    hooks.doc = engine_doc;
    hooks.event = engine_event;
    hooks.ud = a;
    a->bus = jobq_bus_new(cfg->event_ring);
    a->e = jobq_engine_new(&ecfg, &hooks);

    a->store = jobq_store_open_sqlite(cfg->data_dir, &err, &msg);
    if (!a->store) {
        fprintf(stderr, "jobqd: cannot open store in %s: %s\n", cfg->data_dir,
                msg ? msg : jobq_strerror(err));
        *exit_code = err == JOBQ_ELOCKED ? 1 : 2;
        jobq_app_free(a);
        return NULL;
    }

    {
        jobq_webhooks_config wcfg = {0};
        wcfg.backoff_ms = cfg->webhook_backoff_ms;
        wcfg.progress_ms = cfg->webhook_progress_ms;
        wcfg.max_outbox = cfg->webhook_outbox_max;
        jobq_event_sink sink;
        a->webhooks = jobq_webhooks_new(loop, a->e, &wcfg);
        if (!a->webhooks) {
            fprintf(stderr, "jobqd: cannot start the webhook sender (libcurl)\n");
            *exit_code = 2;
            jobq_app_free(a);
            return NULL;
        }
        sink = jobq_webhooks_sink(a->webhooks);
        jobq_bus_add_sink(a->bus, &sink);
    }
    a->streams = jobq_streams_new(a, loop, cfg->event_buffer);
    a->wsworkers = jobq_wsworkers_new(a);
    uv_async_init(loop, &a->async, on_async);
    a->async.data = a;
    uv_check_init(loop, &a->check);
    a->check.data = a;
    uv_check_start(&a->check, on_check);
    /* started before the HTTP server's own prepare handle, so it runs after it (libuv runs
     * the most recently started first): the last thing before the loop blocks */
    uv_prepare_init(loop, &a->prepare);
    a->prepare.data = a;
    uv_prepare_start(&a->prepare, on_prepare);
    uv_timer_init(loop, &a->engine_timer);
    a->engine_timer.data = a;
    uv_timer_init(loop, &a->park_timer);
    a->park_timer.data = a;
    uv_timer_init(loop, &a->retry_timer);
    a->retry_timer.data = a;
    uv_timer_init(loop, &a->stop_timer);
    a->stop_timer.data = a;

    a->recovering = 1;
    hcfg.max_body = cfg->max_body ? cfg->max_body : 1 << 20;
    hcfg.max_connections = 10000;
    hcfg.idle_timeout_s = 60;
    a->http = jobq_http_new(loop, &hcfg, jobq_routes, jobq_nroutes, a);
    if (a->http)
        jobq_http_set_gate(a->http, app_gate);
    if (!a->http || jobq_http_listen(a->http, cfg->listen_host, cfg->listen_port, &a->port) != 0) {
        fprintf(stderr, "jobqd: cannot listen on %s:%d\n", cfg->listen_host, cfg->listen_port);
        *exit_code = 1;
        jobq_http_free(a->http);
        a->http = NULL;
        a->stopping = 1;
        a->recovering = 0;
        close_all(a);
        uv_run(loop, UV_RUN_DEFAULT);
        jobq_app_free(a);
        return NULL;
    }
    fprintf(stderr, "jobqd: loading %s; serving /healthz on %s:%d meanwhile\n", cfg->data_dir,
            cfg->listen_host, a->port);
    a->load.data = a;
    uv_queue_work(loop, &a->load, load_work, load_done);
    return a;
}

/* A stop that is still waiting for a failing store after STOP_WAIT_MS gives up: what the
 * store never took is lost (its requests were answered 503), and the exit status says so. */
#define STOP_WAIT_MS 10000

static void on_stop_timer(uv_timer_t *t)
{
    jobq_app *a = t->data;

    if (a->closed || !a->store_failed)
        return;
    fprintf(stderr,
            "jobqd: the store still fails after %d s; stopping without the changes it did not "
            "take (their requests were answered 503)\n",
            STOP_WAIT_MS / 1000);
    a->abandoned = 1;
    answer_waiters(a, a->wait_inflight, 0);
    answer_waiters(a, a->wait_next, 0);
    uv_timer_stop(&a->retry_timer);
    turn_end(a);
}

int jobq_app_exit_code(const jobq_app *a)
{
    return a->exit_code ? a->exit_code : a->abandoned ? 2 : 0;
}

void jobq_app_stop(jobq_app *a)
{
    if (a->stopping)
        return;
    a->stopping = 1;
    uv_timer_start(&a->stop_timer, on_stop_timer, STOP_WAIT_MS, 0);
    if (a->http)
        jobq_http_quiesce(a->http);
    /* today's stats go out with the last batch, so a clean restart keeps all of them */
    if (!a->recovering && !a->abandoned)
        jobq_engine_stats_flush(a->e, jobq_app_now());
    /* parked fetches and result waits are answered now, event streams end */
    on_park_timer(&a->park_timer);
    jobq_streams_stop(a->streams);
    jobq_wsworkers_stop(a->wsworkers);
    jobq_webhooks_stop(a->webhooks); /* pending deliveries wait for the next start */
    uv_async_send(&a->async); /* make sure the loop turns and on_check runs */
}

static void close_all(jobq_app *a)
{
    a->closed = 1;
    jobq_http_free(a->http);
    a->http = NULL;
    uv_close((uv_handle_t *)&a->check, NULL);
    uv_close((uv_handle_t *)&a->prepare, NULL);
    uv_close((uv_handle_t *)&a->engine_timer, NULL);
    uv_close((uv_handle_t *)&a->park_timer, NULL);
    uv_close((uv_handle_t *)&a->retry_timer, NULL);
    uv_close((uv_handle_t *)&a->stop_timer, NULL);
    jobq_streams_free(a->streams);
    a->streams = NULL;
    jobq_webhooks_close(a->webhooks);
    if (a->store)
        uv_close((uv_handle_t *)&a->async, NULL);
}

void jobq_app_free(jobq_app *a)
{
    if (!a)
        return;
    jobq_store_free(a->store);
    jobq_webhooks_free(a->webhooks);
    if (a->inflight)
        jobq_batch_free(a->inflight);
    jobq_engine_free(a->e);
    jobq_pipelines_free(a->pipelines);
    jobq_bus_free(a->bus);
    jobq_wsworkers_free(a->wsworkers);
    g_array_free(a->wait_next, TRUE);
    g_array_free(a->wait_inflight, TRUE);
    g_hash_table_destroy(a->job_waits);
    g_hash_table_destroy(a->flow_waits);
    jobq_idem_free(a->idem);
    g_free(a->host);
    g_free(a->data_dir);
    jobq_settings_free(a->settings);
    g_free(a);
}
