/*
 * helpers.h — shared scaffolding for the engine's unit tests (tests/unit/test_engine*.c).
 *
 * A test drives the engine with a simulated clock (T0 + n ms), counts its hooks, simulates
 * the store's group commit (take_changes → committed), and can keep the committed records in
 * a tiny in-memory "store" (simstore) whose rows are fed back through jobq_engine_loader() to
 * check that a restarted engine sees what the old one wrote. Everything here is static: each
 * test file gets its own copy, and unused helpers are fine.
 */
#ifndef JOBQ_TEST_HELPERS_H
#define JOBQ_TEST_HELPERS_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <glib.h>
#include <jansson.h>

#include "engine/engine.h"
#include "store/store.h"

#define H_UNUSED __attribute__((unused))

/* A realistic epoch: the engine treats 0 as "never" in places (e.g. the retention sweep). */
#define T0 INT64_C(1700000000000)

/* ---------------------------------------------------------------- hooks */

typedef struct hook_log {
    int ready;   /* ready() calls */
    int final;   /* final() calls with deleted = 0 */
    int deleted; /* final() calls with deleted = 1 */
    jobq_queue *last_ready;
    int last_final_state; /* state of the job at the last final(deleted = 0) */
} hook_log;

static H_UNUSED void hk_ready(void *ud, jobq_queue *q)
{
    hook_log *h = ud;

    h->ready++;
    h->last_ready = q;
}

static H_UNUSED void hk_final(void *ud, jobq_job *j, int deleted)
{
    hook_log *h = ud;

    if (deleted) {
        h->deleted++;
    } else {
        h->final++;
        h->last_final_state = jobq_job_state(j);
    }
}

/* New engine with hooks writing into h (may be NULL) and the given seed. */
static H_UNUSED jobq_engine *eng_new(hook_log *h, uint64_t seed)
{
    jobq_engine_config cfg = {.seed = seed};
    jobq_engine_hooks hooks = {.ready = hk_ready, .final = hk_final, .ud = h};

    if (h)
        memset(h, 0, sizeof *h);
    return jobq_engine_new(&cfg, h ? &hooks : NULL);
}

/* ---------------------------------------------------------------- group commit */

/* One loop turn's durable commit: take the batch, say it is durable, drop it. Returns the
 * number of records the batch had (0 when there was nothing to take). */
static H_UNUSED size_t commit(jobq_engine *e, int64_t now)
{
    jobq_batch *b = jobq_engine_take_changes(e);
    size_t n = b ? b->n : 0;

    jobq_engine_committed(e, now);
    jobq_batch_free(b);
    return n;
}

/* ---------------------------------------------------------------- queues and jobs */

/* Creates queue `name`; `set` runs on the options first (may be NULL). */
static H_UNUSED jobq_queue *mkq(jobq_engine *e, const char *name, int64_t now,
                                void (*set)(jobq_queue_opts *o))
{
    jobq_queue_opts o;
    jobq_queue *q = NULL;
    int rc;

    jobq_queue_opts_default(&o);
    if (set)
        set(&o);
    rc = jobq_engine_queue_create(e, name, &o, now, &q);
    jobq_queue_opts_clear(&o);
    cr_assert_eq(rc, 0, "queue_create(%s) = %d", name, rc);
    cr_assert_not_null(q);
    return q;
}

/* A spec with engine defaults: no id, priority as given, queue defaults for the rest. */
static H_UNUSED jobq_job_spec spec_prio(int prio)
{
    jobq_job_spec s;

    memset(&s, 0, sizeof s);
    s.has_priority = 1;
    s.priority = prio;
    s.timeout_ms = -1;
    return s;
}

static H_UNUSED jobq_job_spec spec_default(void)
{
    jobq_job_spec s;

    memset(&s, 0, sizeof s);
    s.timeout_ms = -1;
    return s;
}

/* Enqueues one job; asserts success. */
static H_UNUSED jobq_job *enq_spec(jobq_engine *e, const char *queue, const jobq_job_spec *s,
                                   int64_t now)
{
    jobq_job *j = NULL;
    long bad = 0;
    int rc = jobq_engine_enqueue(e, queue, s, 1, now, &j, &bad);

    cr_assert_eq(rc, 0, "enqueue into %s = %d (%s)", queue, rc, jobq_strerror(rc));
    cr_assert_eq(bad, -1);
    cr_assert_not_null(j);
    return j;
}

static H_UNUSED jobq_job *enq(jobq_engine *e, const char *queue, const char *id, int prio,
                              int64_t now)
{
    jobq_job_spec s = spec_prio(prio);

    s.id = id;
    return enq_spec(e, queue, &s, now);
}

/* Enqueues from JSON text through jobq_job_spec_parse (asserts both succeed). */
static H_UNUSED jobq_job *enq_json(jobq_engine *e, const char *queue, const char *json, int64_t now)
{
    json_error_t err;
    json_t *o = json_loads(json, 0, &err);
    jobq_job_spec s;
    const char *field = NULL, *why = NULL;
    jobq_job *j;
    int rc;

    cr_assert_not_null(o, "bad test JSON %s: %s", json, err.text);
    rc = jobq_job_spec_parse(o, now, &s, &field, &why);
    cr_assert_eq(rc, 0, "spec_parse(%s) = %d (%s: %s)", json, rc, field ? field : "?",
                 why ? why : "?");
    j = enq_spec(e, queue, &s, now);
    jobq_job_spec_clear(&s);
    json_decref(o);
    return j;
}

/* Fetches from one queue; returns how many. */
static H_UNUSED size_t fetchq(jobq_engine *e, const char *queue, size_t count, const char *worker,
                              int64_t now, jobq_job **out)
{
    const char *qs[1] = {queue};

    return jobq_engine_fetch(e, qs, 1, count, worker, now, out);
}

/* Fetches one job from `queue`, NULL when none. */
static H_UNUSED jobq_job *fetch1(jobq_engine *e, const char *queue, int64_t now)
{
    jobq_job *j = NULL;

    return fetchq(e, queue, 1, "w1", now, &j) ? j : NULL;
}

typedef struct lease_buf {
    char s[17];
} lease_buf;

static H_UNUSED lease_buf lease_of(const jobq_job *j)
{
    lease_buf l;

    jobq_job_lease(j, l.s);
    return l;
}

static H_UNUSED int complete_with(jobq_engine *e, jobq_job *j, const char *lease, int64_t now)
{
    int repeat = -1;

    return jobq_engine_complete(e, j, lease, "{\"ok\":true}", now, &repeat);
}

/* Completes j under its current lease; asserts success. */
static H_UNUSED void complete_ok(jobq_engine *e, jobq_job *j, int64_t now)
{
    lease_buf l = lease_of(j);
    int rc;

    cr_assert_neq(l.s[0], '\0', "job %s has no lease", jobq_job_id(j));
    rc = complete_with(e, j, l.s, now);
    cr_assert_eq(rc, 0, "complete = %d", rc);
}

static H_UNUSED jobq_failure failure(const char *type, int retryable, int64_t retry_in_ms)
{
    jobq_failure f = {.message = "boom",
                      .type = type,
                      .retryable = retryable,
                      .details = NULL,
                      .retry_in_ms = retry_in_ms};
    return f;
}

/* Fails j's running attempt under its current lease; asserts success. */
static H_UNUSED void fail_ok(jobq_engine *e, jobq_job *j, const char *type, int retryable,
                             int64_t retry_in_ms, int64_t now)
{
    lease_buf l = lease_of(j);
    jobq_failure f = failure(type, retryable, retry_in_ms);
    int repeat = -1;
    int rc;

    cr_assert_neq(l.s[0], '\0', "job %s has no lease", jobq_job_id(j));
    rc = jobq_engine_fail(e, j, l.s, &f, now, &repeat);
    cr_assert_eq(rc, 0, "fail = %d", rc);
    cr_assert_eq(repeat, 0);
}

/* ---------------------------------------------------------------- JSON read-outs */

/* The job as the API's object (docs/api.md) (new reference). */
static H_UNUSED json_t *job_json(const jobq_engine *e, const jobq_job *j, int64_t now)
{
    GString *s = g_string_new(NULL);
    json_error_t err;
    json_t *o;

    jobq_job_render(e, j, 1, now, s);
    o = json_loads(s->str, 0, &err);
    cr_assert_not_null(o, "render gave invalid JSON: %s (%s)", s->str, err.text);
    g_string_free(s, TRUE);
    return o;
}

/* Integer field of the rendered job; `null` reads as -1. */
static H_UNUSED int64_t job_int(const jobq_engine *e, const jobq_job *j, const char *key,
                                int64_t now)
{
    json_t *o = job_json(e, j, now);
    json_t *v = json_object_get(o, key);
    int64_t r;

    cr_assert(v != NULL, "job has no field %s", key);
    cr_assert(json_is_integer(v) || json_is_null(v), "field %s is not an integer", key);
    r = json_is_null(v) ? -1 : (int64_t)json_integer_value(v);
    json_decref(o);
    return r;
}

static H_UNUSED int64_t job_run_at(const jobq_engine *e, const jobq_job *j, int64_t now)
{
    return job_int(e, j, "run_at", now);
}

/* error.type of the rendered job into buf ("" when there is no error / no type). */
static H_UNUSED void job_error_type(const jobq_engine *e, const jobq_job *j, int64_t now, char *buf,
                                    size_t n)
{
    json_t *o = job_json(e, j, now);
    const char *t = json_string_value(json_object_get(json_object_get(o, "error"), "type"));

    snprintf(buf, n, "%s", t ? t : "");
    json_decref(o);
}

/* ---------------------------------------------------------------- simulated store */

/* Rows kept the way a store keeps them: the latest version of every job and queue row. */
typedef struct simstore {
    GHashTable *jobs;   /* seq (int64 key) → jobq_job_row* */
    GHashTable *queues; /* id → jobq_queue_row* */
    GHashTable *hist;   /* seq → GArray of jobq_hist_row (worker/error not kept) */
    GHashTable *meta;   /* key → value (both owned) */
    GTree *docs;        /* "kind\nid" → body (both owned), loaded in (kind, id) order */
    size_t batches;
} simstore;

static H_UNUSED void sim_row_free(gpointer p)
{
    jobq_job_row *r = p;

    jobq_job_row_clear(r);
    free(r);
}

static H_UNUSED void sim_qrow_free(gpointer p)
{
    jobq_queue_row *r = p;

    free(r->id);
    free(r->name);
    free(r->config);
    free(r);
}

static H_UNUSED void sim_hist_free(gpointer p)
{
    g_array_free(p, TRUE);
}

static H_UNUSED gint sim_str_cmp(gconstpointer a, gconstpointer b, gpointer ud)
{
    (void)ud;
    return strcmp(a, b);
}

static H_UNUSED simstore *sim_new(void)
{
    simstore *s = calloc(1, sizeof *s);

    s->jobs = g_hash_table_new_full(g_int64_hash, g_int64_equal, free, sim_row_free);
    s->queues = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, sim_qrow_free);
    s->hist = g_hash_table_new_full(g_int64_hash, g_int64_equal, free, sim_hist_free);
    s->meta = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    s->docs = g_tree_new_full(sim_str_cmp, NULL, g_free, g_free);
    return s;
}

static H_UNUSED void sim_free(simstore *s)
{
    if (!s)
        return;
    g_hash_table_destroy(s->jobs);
    g_hash_table_destroy(s->queues);
    g_hash_table_destroy(s->hist);
    g_hash_table_destroy(s->meta);
    g_tree_destroy(s->docs);
    free(s);
}

static H_UNUSED char *sdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static H_UNUSED int64_t *seq_key(int64_t seq)
{
    int64_t *k = malloc(sizeof *k);

    *k = seq;
    return k;
}

/* Applies one batch the way the store contract (store.h) describes each record kind. */
static H_UNUSED void sim_apply(simstore *s, const jobq_batch *b)
{
    s->batches++;
    for (size_t i = 0; i < b->n; i++) {
        const jobq_rec *r = &b->recs[i];
        switch (r->kind) {
        case JOBQ_REC_JOB_INSERT: {
            const jobq_job_row *src = &r->u.job;
            jobq_job_row *d = calloc(1, sizeof *d);
            cr_assert_null(g_hash_table_lookup(s->jobs, &src->seq),
                           "INSERT of job seq %" PRId64 " that is already stored", src->seq);
            *d = *src;
            d->id = sdup(src->id);
            d->queue_id = sdup(src->queue_id);
            d->data = sdup(src->data);
            d->opts = sdup(src->opts);
            d->result = sdup(src->result);
            d->error = sdup(src->error);
            d->progress = sdup(src->progress);
            d->checkpoint = sdup(src->checkpoint);
            d->worker = sdup(src->worker);
            g_hash_table_insert(s->jobs, seq_key(src->seq), d);
            break;
        }
        case JOBQ_REC_JOB_UPDATE: {
            const jobq_job_row *src = &r->u.job;
            jobq_job_row *d = g_hash_table_lookup(s->jobs, &src->seq);
            cr_assert_not_null(d, "UPDATE of job seq %" PRId64 " never inserted", src->seq);
            d->state = src->state;
            d->priority = src->priority;
            d->attempt = src->attempt;
            d->max_attempts = src->max_attempts;
            d->stalls = src->stalls;
            d->run_at = src->run_at;
            d->updated_at = src->updated_at;
            d->started_at = src->started_at;
            d->finished_at = src->finished_at;
            d->hist_n = src->hist_n;
            d->log_n = src->log_n;
            d->flags = src->flags;
            d->lease = src->lease;
            free(d->result);
            d->result = sdup(src->result);
            free(d->error);
            d->error = sdup(src->error);
            free(d->progress);
            d->progress = sdup(src->progress);
            free(d->checkpoint);
            d->checkpoint = sdup(src->checkpoint);
            free(d->worker);
            d->worker = sdup(src->worker);
            break;
        }
        case JOBQ_REC_JOB_DELETE:
            g_hash_table_remove(s->jobs, &r->job_seq);
            g_hash_table_remove(s->hist, &r->job_seq);
            break;
        case JOBQ_REC_HIST: {
            GArray *a = g_hash_table_lookup(s->hist, &r->u.hist.job_seq);
            jobq_hist_row h = r->u.hist;
            if (!a) {
                a = g_array_new(FALSE, TRUE, sizeof(jobq_hist_row));
                g_hash_table_insert(s->hist, seq_key(r->u.hist.job_seq), a);
            }
            h.worker = NULL;
            h.error = NULL;
            g_array_append_val(a, h);
            break;
        }
        case JOBQ_REC_QUEUE_PUT: {
            jobq_queue_row *d = calloc(1, sizeof *d);
            d->id = sdup(r->u.queue.id);
            d->name = sdup(r->u.queue.name);
            d->config = sdup(r->u.queue.config);
            d->created_at = r->u.queue.created_at;
            g_hash_table_replace(s->queues, d->id, d);
            break;
        }
        case JOBQ_REC_QUEUE_DELETE:
            g_hash_table_remove(s->queues, r->u.queue.id);
            break;
        case JOBQ_REC_META_PUT:
            g_hash_table_replace(s->meta, g_strdup(r->u.meta.key), g_strdup(r->u.meta.value));
            break;
        case JOBQ_REC_DOC_PUT:
            g_tree_replace(s->docs, g_strdup_printf("%s\n%s", r->u.doc.kind, r->u.doc.id),
                           g_strdup(r->u.doc.body));
            break;
        case JOBQ_REC_DOC_DELETE: {
            char *k = g_strdup_printf("%s\n%s", r->u.doc.kind, r->u.doc.id);
            g_tree_remove(s->docs, k);
            g_free(k);
            break;
        }
        default:
            break;
        }
    }
}

/* A loop turn with a durable store: take, apply to s, committed. Returns the record count. */
static H_UNUSED size_t commit_to(jobq_engine *e, simstore *s, int64_t now)
{
    jobq_batch *b = jobq_engine_take_changes(e);
    size_t n = b ? b->n : 0;

    if (b)
        sim_apply(s, b);
    jobq_engine_committed(e, now);
    jobq_batch_free(b);
    return n;
}

static H_UNUSED gint sim_seq_cmp(gconstpointer a, gconstpointer b)
{
    const jobq_job_row *x = *(jobq_job_row *const *)a, *y = *(jobq_job_row *const *)b;

    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static H_UNUSED gboolean sim_load_doc(gpointer k, gpointer v, gpointer ud)
{
    const jobq_load_cb *cb = ud;
    char *kind = g_strdup(k), *id = strchr(kind, '\n');
    int rc;

    *id++ = '\0';
    rc = cb->doc(cb->ud, kind, id, v);
    g_free(kind);
    cr_assert_eq(rc, 0, "load doc = %d", rc);
    return FALSE;
}

/* Feeds everything in s to e through jobq_engine_loader (meta, documents, queues, then jobs
 * in seq order), then jobq_engine_load_done(now). Asserts every callback and load_done
 * return 0. */
static H_UNUSED void sim_load(simstore *s, jobq_engine *e, int64_t now)
{
    jobq_load_cb cb = jobq_engine_loader(e);
    GHashTableIter it;
    gpointer k, v;
    GPtrArray *rows = g_ptr_array_new();
    int rc;

    g_hash_table_iter_init(&it, s->meta);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        rc = cb.meta(cb.ud, k, v);
        cr_assert_eq(rc, 0, "load meta = %d", rc);
    }
    g_tree_foreach(s->docs, sim_load_doc, &cb);
    g_hash_table_iter_init(&it, s->queues);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        rc = cb.queue(cb.ud, v);
        cr_assert_eq(rc, 0, "load queue = %d", rc);
    }
    g_hash_table_iter_init(&it, s->jobs);
    while (g_hash_table_iter_next(&it, &k, &v))
        g_ptr_array_add(rows, v);
    g_ptr_array_sort(rows, sim_seq_cmp);
    for (guint i = 0; i < rows->len; i++) {
        rc = cb.job(cb.ud, g_ptr_array_index(rows, i));
        cr_assert_eq(rc, 0, "load job = %d", rc);
    }
    g_ptr_array_free(rows, TRUE);
    rc = jobq_engine_load_done(e, now);
    cr_assert_eq(rc, 0, "load_done = %d", rc);
}

static H_UNUSED const jobq_job_row *sim_job(const simstore *s, int64_t seq)
{
    return g_hash_table_lookup(s->jobs, &seq);
}

/* ---------------------------------------------------------------- batch inspection */

/* Index of the first record of `kind` for job seq (by row seq / hist job_seq / job_seq) at
 * or after `from`, or -1. */
static H_UNUSED long rec_find(const jobq_batch *b, jobq_rec_kind kind, int64_t seq, size_t from)
{
    for (size_t i = from; b && i < b->n; i++) {
        const jobq_rec *r = &b->recs[i];
        if (r->kind != kind)
            continue;
        switch (kind) {
        case JOBQ_REC_JOB_INSERT:
        case JOBQ_REC_JOB_UPDATE:
            if (r->u.job.seq == seq)
                return (long)i;
            break;
        case JOBQ_REC_JOB_DELETE:
            if (r->job_seq == seq)
                return (long)i;
            break;
        case JOBQ_REC_HIST:
            if (r->u.hist.job_seq == seq)
                return (long)i;
            break;
        case JOBQ_REC_LOG:
        case JOBQ_REC_LOG_TRIM:
            if (r->u.log.job_seq == seq)
                return (long)i;
            break;
        default:
            return (long)i;
        }
    }
    return -1;
}

static H_UNUSED size_t rec_count(const jobq_batch *b, jobq_rec_kind kind)
{
    size_t n = 0;

    for (size_t i = 0; b && i < b->n; i++)
        n += b->recs[i].kind == kind;
    return n;
}

#endif
