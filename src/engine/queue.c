/*
 * queue.c — queues: create, patch, pause/resume/drain, clear/clean/recover, delete,
 * retention, and loading everything back from the store (stats are in stats.c).
 *
 * A queue's config (options, status, counters worth keeping) is stored as one JSON text;
 * it changes rarely, so nothing here is on a hot path except retention, which trims from
 * the front of a final list and never walks it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "engine/schedule.h"
#include "util/jsonw.h"

int jobq_valid_name(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++)
        if (!(g_ascii_isalnum(s[n]) || s[n] == '.' || s[n] == '_' || s[n] == '-'))
            return 0;
    return n >= 1 && n <= 128;
}

jobq_queue *jobq_queue_alloc(jobq_engine *e, const char *name, const char *id, int64_t now)
{
    jobq_queue *q = g_new0(jobq_queue, 1);

    if (id)
        g_strlcpy(q->id, id, sizeof q->id);
    else
        jobq_make_uuid7(e, now, q->id);
    q->name = g_strdup(name);
    jobq_queue_opts_default(&q->o);
    q->created_at = q->updated_at = now;
    q->ready = g_sequence_new(NULL);
    jobq_list_init(&q->pending);
    jobq_list_init(&q->delayed);
    jobq_list_init(&q->active);
    jobq_list_init(&q->completed);
    jobq_list_init(&q->failed_l);
    jobq_list_init(&q->cancelled);
    return q;
}

void jobq_queue_free(jobq_queue *q)
{
    if (!q)
        return;
    jobq_queue_limits_free(q);
    g_sequence_free(q->ready);
    jobq_qstats_free(q->st);
    jobq_queue_opts_clear(&q->o);
    g_free(q->name);
    g_free(q->last_error);
    g_free(q);
}

const char *jobq_queue_name(const jobq_queue *q)
{
    return q->name;
}

const char *jobq_queue_id(const jobq_queue *q)
{
    return q->id;
}

const jobq_queue_opts *jobq_queue_options(const jobq_queue *q)
{
    return &q->o;
}

int64_t jobq_queue_count(const jobq_queue *q, int state)
{
    return state >= 0 && state < JOBQ_NSTATES ? q->counts[state] : 0;
}

void jobq_queue_get_totals(const jobq_queue *q, jobq_queue_totals *t)
{
    t->enqueued = q->enqueued;
    t->processed = q->processed;
    t->failed = q->failed;
    t->retried = q->retried;
    t->stalled = q->stalled;
    t->last_processed_at = q->last_processed_at;
    t->last_error_at = q->last_error_at;
    t->last_error = q->last_error;
    t->created_at = q->created_at;
    t->updated_at = q->updated_at;
    t->paused_at = q->paused_at;
}

jobq_queue *jobq_engine_queue(const jobq_engine *e, const char *name_or_id)
{
    jobq_queue *q = g_hash_table_lookup(e->queues, name_or_id);

    return q ? q : g_hash_table_lookup(e->queue_ids, name_or_id);
}

size_t jobq_engine_queue_total(const jobq_engine *e)
{
    return g_hash_table_size(e->queues);
}

static gint name_cmp(gconstpointer a, gconstpointer b)
{
    return strcmp((*(jobq_queue *const *)a)->name, (*(jobq_queue *const *)b)->name);
}

void jobq_engine_queue_each(const jobq_engine *e, int (*fn)(void *ud, jobq_queue *q), void *ud)
{
    GPtrArray *all = g_ptr_array_sized_new(g_hash_table_size(e->queues));
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, e->queues);
    while (g_hash_table_iter_next(&it, &k, &v))
        g_ptr_array_add(all, v);
    g_ptr_array_sort(all, name_cmp);
    for (guint i = 0; i < all->len; i++)
        if (fn(ud, g_ptr_array_index(all, i)))
            break;
    g_ptr_array_free(all, TRUE);
}

/* Moves the fields named in src->set into dst (owned fields are taken from src). */
static void opts_apply(jobq_queue_opts *dst, jobq_queue_opts *src)
{
    unsigned s = src->set;

    if (s & JOBQ_QO_TYPE) {
        g_free(dst->type);
        dst->type = src->type;
        src->type = NULL;
    }
    if (s & JOBQ_QO_DESCRIPTION) {
        g_free(dst->description);
        dst->description = src->description;
        src->description = NULL;
    }
    if (s & JOBQ_QO_CONCURRENCY)
        dst->concurrency = src->concurrency;
    if (s & JOBQ_QO_GROUP_CONCURRENCY)
        dst->group_concurrency = src->group_concurrency;
    if (s & JOBQ_QO_RATE_LIMIT) {
        dst->rate_max = src->rate_max;
        dst->rate_per_ms = src->rate_per_ms;
    }
    if (s & JOBQ_QO_MAX_SIZE)
        dst->max_size = src->max_size;
    if (s & JOBQ_QO_MAX_STALLS)
        dst->max_stalls = src->max_stalls;
    if (s & JOBQ_QO_DEFAULTS) {
        jobq_backoff_unref(dst->defaults.backoff);
        dst->defaults = src->defaults;
        src->defaults.backoff = NULL;
    }
    if (s & JOBQ_QO_KEEP_COMPLETED)
        dst->keep_completed = src->keep_completed;
    if (s & JOBQ_QO_KEEP_FAILED)
        dst->keep_failed = src->keep_failed;
    if (s & JOBQ_QO_CIRCUIT_BREAKER) {
        dst->cb_failures = src->cb_failures;
        dst->cb_cooldown_ms = src->cb_cooldown_ms;
    }
    if (s & JOBQ_QO_ALERT) {
        dst->alert_backlog = src->alert_backlog;
        dst->alert_error_rate = src->alert_error_rate;
        dst->alert_paused_ms = src->alert_paused_ms;
        dst->alert_idle_ms = src->alert_idle_ms;
        dst->alert_utilization = src->alert_utilization;
        dst->alert_processing_p95_ms = src->alert_processing_p95_ms;
    }
    if (s & JOBQ_QO_FAIRNESS)
        dst->fairness = src->fairness;
}

static void set_status(jobq_engine *e, jobq_queue *q, int st, int64_t now)
{
    static const char *const announce[] = {"queue.resumed", "queue.paused", "queue.draining",
                                           "queue.error"};

    if (q->status == st)
        return;
    q->status = st;
    jobq_event_queue(e, q, announce[st], now);
    q->paused_at = st == JOBQ_Q_PAUSED ? now : 0;
    jobq_queue_touch(e, q, now);
    if (st == JOBQ_Q_DRAINING)
        jobq_check_drained(e, q, now);
    if (jobq_queue_can_dispatch(q) && g_sequence_get_length(q->ready))
        jobq_notify_ready(e, q);
}

int jobq_engine_queue_create(jobq_engine *e, const char *name, jobq_queue_opts *o, int64_t now,
                             jobq_queue **out)
{
    jobq_queue *q;

    if (!jobq_valid_name(name))
        return JOBQ_EINVAL;
    if (g_hash_table_lookup(e->queues, name))
        return JOBQ_EEXIST;
    q = jobq_queue_alloc(e, name, NULL, now);
    jobq_queue_opts_clear(&q->o);
    q->o = *o;
    memset(o, 0, sizeof *o);
    if (q->o.set & JOBQ_QO_STATUS)
        q->status = q->o.status;
    if (q->status == JOBQ_Q_PAUSED)
        q->paused_at = now;
    q->o.set = 0;
    g_hash_table_insert(e->queues, q->name, q);
    g_hash_table_insert(e->queue_ids, q->id, q);
    jobq_limits_patched(e, q, JOBQ_QO_RATE_LIMIT);
    jobq_queue_touch(e, q, now);
    jobq_check_drained(e, q, now); /* created draining and empty: paused at once */
    if (out)
        *out = q;
    return 0;
}

int jobq_engine_queue_patch(jobq_engine *e, jobq_queue *q, jobq_queue_opts *o, int64_t now)
{
    int64_t old_conc = q->o.concurrency;

    opts_apply(&q->o, o);
    jobq_limits_patched(e, q, o->set);
    jobq_queue_touch(e, q, now);
    if (o->set & JOBQ_QO_STATUS)
        set_status(e, q, o->status, now);
    if (q->o.concurrency != old_conc && jobq_queue_can_dispatch(q) &&
        g_sequence_get_length(q->ready))
        jobq_notify_ready(e, q);
    if (o->set & (JOBQ_QO_KEEP_COMPLETED | JOBQ_QO_KEEP_FAILED))
        jobq_retention(e, q, now, 1);
    return 0;
}

int jobq_engine_queue_pause(jobq_engine *e, jobq_queue *q, int64_t now)
{
    set_status(e, q, JOBQ_Q_PAUSED, now);
    return 0;
}

int jobq_engine_queue_resume(jobq_engine *e, jobq_queue *q, int64_t now)
{
    set_status(e, q, JOBQ_Q_ACTIVE, now);
    return 0;
}

int jobq_engine_queue_drain(jobq_engine *e, jobq_queue *q, int64_t now)
{
    set_status(e, q, JOBQ_Q_DRAINING, now);
    return 0;
}

/* Destroys every job of list l (or of q->ready when l is NULL) accepted by keep_fn. */
static int64_t destroy_all(jobq_engine *e, jobq_queue *q, jobq_list *l, int64_t now)
{
    int64_t n = 0;

    if (!l) {
        GSequenceIter *it;
        while (!g_sequence_iter_is_end(it = g_sequence_get_begin_iter(q->ready))) {
            jobq_job_destroy(e, g_sequence_get(it), now);
            n++;
        }
        return n;
    }
    while (l->n) {
        jobq_job_destroy(e, JOB_OF_QLINK(jobq_list_first(l)), now);
        n++;
    }
    return n;
}

int64_t jobq_engine_queue_clear(jobq_engine *e, jobq_queue *q, int64_t now)
{
    int64_t n = destroy_all(e, q, NULL, now) + destroy_all(e, q, &q->pending, now);

    /* delayed holds scheduled, retrying (and later blocked/review): clear the first two */
    for (jobq_link *l = q->delayed.head.next, *next; l != &q->delayed.head; l = next) {
        jobq_job *j = JOB_OF_QLINK(l);
        next = l->next;
        if (j->state == JOBQ_SCHEDULED || j->state == JOBQ_RETRYING) {
            jobq_job_destroy(e, j, now);
            n++;
        }
    }
    jobq_queue_touch(e, q, now);
    jobq_check_drained(e, q, now);
    return n;
}

static jobq_list *final_list(jobq_queue *q, int state)
{
    return state == JOBQ_COMPLETED ? &q->completed
           : state == JOBQ_FAILED  ? &q->failed_l
                                   : &q->cancelled;
}

int64_t jobq_engine_queue_clean(jobq_engine *e, jobq_queue *q, int state, int64_t older_than_ms,
                                int64_t keep, int64_t now)
{
    jobq_list *l;
    int64_t n = 0;

    if (!jobq_state_final(state))
        return 0;
    l = final_list(q, state);

    /* the list is in finish order: trim from the front while the oldest qualifies */
    while (l->n > keep) {
        jobq_job *j = JOB_OF_QLINK(jobq_list_first(l));
        if (older_than_ms > 0 && j->x && j->x->finished_at > now - older_than_ms)
            break;
        jobq_job_destroy(e, j, now);
        n++;
    }
    if (n)
        jobq_queue_touch(e, q, now);
    return n;
}

#define RETENTION_SKIPS 64

void jobq_retention(jobq_engine *e, jobq_queue *q, int64_t now, int by_age)
{
    const jobq_keep *kc = &q->o.keep_completed, *kf = &q->o.keep_failed;
    struct {
        jobq_list *l;
        const jobq_keep *k;
    } sets[] = {{&q->completed, kc}, {&q->failed_l, kf}, {&q->cancelled, kc}};

    for (size_t i = 0; i < 3; i++) {
        jobq_list *l = sets[i].l;
        const jobq_keep *k = sets[i].k;
        /* a job whose dependants may still need its result (orch.c) is passed over: it goes
         * to the back, at most once per sweep, and at most RETENTION_SKIPS of them per sweep:
         * with thousands of flows waiting in review, a completion must not walk all of their
         * parents (the next sweeps go on from where this one stopped) */
        int64_t budget = l->n, skips = 0;
        while (k->count >= 0 && l->n > k->count && budget-- > 0 && skips < RETENTION_SKIPS) {
            jobq_job *j = JOB_OF_QLINK(jobq_list_first(l));
            if (jobq_orch_pinned(j)) {
                jobq_list_move(j, j->list);
                skips++;
            } else {
                jobq_job_destroy(e, j, now);
            }
        }
        budget = l->n;
        while (by_age && k->age_ms > 0 && l->n && budget-- > 0) {
            jobq_job *j = JOB_OF_QLINK(jobq_list_first(l));
            if (!j->x || j->x->finished_at > now - k->age_ms)
                break;
            if (jobq_orch_pinned(j))
                jobq_list_move(j, j->list);
            else
                jobq_job_destroy(e, j, now);
        }
    }
}

int64_t jobq_engine_queue_recover(jobq_engine *e, jobq_queue *q, const char *worker,
                                  int64_t stale_ms, int64_t now)
{
    int64_t n = 0;

    for (jobq_link *l = q->active.head.next, *next; l != &q->active.head; l = next) {
        jobq_job *j = JOB_OF_QLINK(l);
        jobq_worker *w =
            j->x && j->x->worker ? g_hash_table_lookup(e->workers, j->x->worker) : NULL;
        int gone;
        next = l->next;
        if (worker)
            gone = j->x && j->x->worker && strcmp(j->x->worker, worker) == 0;
        else
            gone = !w || w->last_seen_at < now - stale_ms;
        if (!gone)
            continue;
        j->x->lease = 0;
        if (j->flags & JF_CANCEL_REQUESTED) {
            jobq_finalize(e, j, JOBQ_CANCELLED, now);
        } else {
            if (j->x->worker)
                jobq_worker_active(e, j->x->worker, -1);
            jobq_make_ready(e, j, now);
        }
        n++;
    }
    return n;
}

int jobq_engine_queue_delete(jobq_engine *e, jobq_queue *q, int force, int64_t now)
{
    jobq_rec *r;

    if (q->counts[JOBQ_ACTIVE] && !force)
        return JOBQ_ESTATE;
    destroy_all(e, q, NULL, now);
    destroy_all(e, q, &q->pending, now);
    destroy_all(e, q, &q->delayed, now);
    destroy_all(e, q, &q->active, now);
    destroy_all(e, q, &q->completed, now);
    destroy_all(e, q, &q->failed_l, now);
    destroy_all(e, q, &q->cancelled, now);
    jobq_stats_queue_deleted(e, q, now);
    g_hash_table_remove(e->queues, q->name);
    g_hash_table_remove(e->queue_ids, q->id);
    jobq_limits_queue_deleted(e, q);
    q->deleted = 1;
    r = jobq_batch_add(e->batch, JOBQ_REC_QUEUE_DELETE);
    r->u.queue.id = g_strdup(q->id);
    g_ptr_array_add(e->dead_queues, q);
    return 0;
}

/* ---------------------------------------------------------------- JSON out */

static json_t *keep_json(const jobq_keep *k)
{
    return json_pack("{s:o, s:o}", "count", k->count >= 0 ? json_integer(k->count) : json_null(),
                     "age_ms", k->age_ms ? json_integer(k->age_ms) : json_null());
}

static json_t *backoff_json(const jobq_backoff *b)
{
    GString *s = g_string_new(NULL);
    json_t *j;

    jobq_backoff_render(b, s);
    j = json_loads(s->str, 0, NULL);
    g_string_free(s, TRUE);
    return j;
}

static json_t *opts_json(const jobq_queue_opts *o)
{
    const jobq_job_defaults *d = &o->defaults;
    json_t *j = json_object();

    json_object_set_new(j, "type", o->type ? json_string(o->type) : json_null());
    json_object_set_new(j, "description",
                        o->description ? json_string(o->description) : json_null());
    json_object_set_new(j, "concurrency", json_integer(o->concurrency));
    json_object_set_new(j, "group_concurrency", json_integer(o->group_concurrency));
    json_object_set_new(j, "rate_limit",
                        o->rate_per_ms ? json_pack("{s:I, s:I}", "max", (json_int_t)o->rate_max,
                                                   "per_ms", (json_int_t)o->rate_per_ms)
                                       : json_null());
    json_object_set_new(j, "max_size", json_integer(o->max_size));
    json_object_set_new(j, "max_stalls", json_integer(o->max_stalls));
    json_object_set_new(j, "defaults",
                        json_pack("{s:i, s:o, s:I, s:I, s:i}", "max_attempts", d->max_attempts,
                                  "backoff", backoff_json(d->backoff), "timeout_ms",
                                  (json_int_t)d->timeout_ms, "lease_ms", (json_int_t)d->lease_ms,
                                  "priority", d->priority));
    json_object_set_new(j, "keep_completed", keep_json(&o->keep_completed));
    json_object_set_new(j, "keep_failed", keep_json(&o->keep_failed));
    json_object_set_new(j, "circuit_breaker",
                        o->cb_failures
                            ? json_pack("{s:I, s:I}", "failures", (json_int_t)o->cb_failures,
                                        "cooldown_ms", (json_int_t)o->cb_cooldown_ms)
                            : json_null());
    json_object_set_new(
        j, "alert",
        json_pack("{s:I, s:f, s:I, s:I, s:o, s:o}", "backlog", (json_int_t)o->alert_backlog,
                  "error_rate", o->alert_error_rate, "paused_ms", (json_int_t)o->alert_paused_ms,
                  "idle_ms", (json_int_t)o->alert_idle_ms, "utilization",
                  o->alert_utilization >= 0 ? json_real(o->alert_utilization) : json_null(),
                  "processing_p95_ms",
                  o->alert_processing_p95_ms >= 0 ? json_integer(o->alert_processing_p95_ms)
                                                  : json_null()));
    json_object_set_new(j, "fairness",
                        o->fairness == JOBQ_FAIR_FIFO          ? json_string("fifo")
                        : o->fairness == JOBQ_FAIR_ROUND_ROBIN ? json_string("round_robin")
                                                               : json_null());
    return j;
}

static json_t *ts(int64_t v)
{
    return v ? json_integer(v) : json_null();
}

json_t *jobq_queue_to_json(const jobq_queue *q)
{
    json_t *j = json_pack("{s:s, s:s, s:s}", "id", q->id, "name", q->name, "status",
                          jobq_qstatus_name(jobq_queue_status(q)));
    json_t *counts = json_object();

    json_t *o = opts_json(&q->o);

    json_object_update(j, o);
    json_decref(o);
    /* the order in force: an unset fairness follows the queue's group limits */
    json_object_set_new(j, "fairness", json_string(q->rr ? "round_robin" : "fifo"));
    json_object_set_new(j, "breaker", jobq_breaker_json(q));
    for (int s = 0; s < JOBQ_NSTATES; s++)
        json_object_set_new(counts, jobq_state_name(s), json_integer(q->counts[s]));
    json_object_set_new(j, "counts", counts);
    json_object_set_new(j, "last_processed_at", ts(q->last_processed_at));
    json_object_set_new(j, "last_error_at", ts(q->last_error_at));
    json_object_set_new(j, "last_error", q->last_error ? json_string(q->last_error) : json_null());
    json_object_set_new(j, "created_at", json_integer(q->created_at));
    json_object_set_new(j, "updated_at", json_integer(q->updated_at));
    return j;
}

/* The stored config: options, status and the counters that must survive a restart. */
char *jobq_queue_config_text(const jobq_queue *q)
{
    json_t *j = opts_json(&q->o);
    char *s, *r;

    json_object_set_new(j, "status", json_string(jobq_qstatus_name(q->status)));
    json_object_set_new(
        j, "_state",
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:I, s:I}", "enqueued",
                  (json_int_t)q->enqueued, "processed", (json_int_t)q->processed, "failed",
                  (json_int_t)q->failed, "retried", (json_int_t)q->retried, "stalled",
                  (json_int_t)q->stalled, "last_processed_at", (json_int_t)q->last_processed_at,
                  "last_error_at", (json_int_t)q->last_error_at, "last_error",
                  q->last_error ? json_string(q->last_error) : json_null(), "updated_at",
                  (json_int_t)q->updated_at, "paused_at", (json_int_t)q->paused_at));
    s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    r = g_strdup(s);
    free(s);
    return r;
}

/* ---------------------------------------------------------------- loading */

static int load_meta(void *ud, const char *key, const char *value)
{
    jobq_engine *e = ud;

    if (strcmp(key, "event_seq") == 0 && value)
        jobq_event_load_mark(e, value);
    if (strcmp(key, "next_seq") == 0 && value) {
        int64_t n = strtoll(value, NULL, 10);
        if (n > e->next_seq)
            e->next_seq = n;
        e->seq_written = e->next_seq;
    }
    return 0;
}

static int64_t geti(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

static int load_queue(void *ud, const jobq_queue_row *row)
{
    jobq_engine *e = ud;
    static const char *const skip[] = {"_state", NULL};
    jobq_queue *q = jobq_queue_alloc(e, row->name, row->id, row->created_at);
    json_t *cfg = json_loads(row->config ? row->config : "{}", 0, NULL), *st;
    const char *field, *why;
    json_t *rl = json_object_get(cfg, "rate_limit");

    /* stored before rate limits were enforced, a max of 0 (then meaningless) or above the
     * enforced bound loads as no limit or as the bound */
    if (json_is_object(rl) && json_is_integer(json_object_get(rl, "max"))) {
        json_int_t max = json_integer_value(json_object_get(rl, "max"));
        if (max < 1)
            json_object_set_new(cfg, "rate_limit", json_null());
        else if (max > 1000000)
            json_object_set_new(rl, "max", json_integer(1000000));
    }
    if (!cfg || jobq_queue_opts_parse(cfg, &q->o, skip, &field, &why)) {
        json_decref(cfg);
        jobq_queue_free(q);
        return JOBQ_ECORRUPT;
    }
    if (q->o.set & JOBQ_QO_STATUS)
        q->status = q->o.status;
    q->o.set = 0;
    jobq_limits_patched(e, q, JOBQ_QO_RATE_LIMIT);
    st = json_object_get(cfg, "_state");
    q->enqueued = geti(st, "enqueued");
    q->processed = geti(st, "processed");
    q->failed = geti(st, "failed");
    q->retried = geti(st, "retried");
    q->stalled = geti(st, "stalled");
    q->last_processed_at = geti(st, "last_processed_at");
    q->last_error_at = geti(st, "last_error_at");
    q->updated_at = geti(st, "updated_at");
    q->paused_at = geti(st, "paused_at");
    if (json_is_string(json_object_get(st, "last_error")))
        q->last_error = g_strdup(json_string_value(json_object_get(st, "last_error")));
    json_decref(cfg);
    g_hash_table_insert(e->queues, q->name, q);
    g_hash_table_insert(e->queue_ids, q->id, q);
    return 0;
}

static int load_job(void *ud, const jobq_job_row *r)
{
    jobq_engine *e = ud;
    jobq_queue *q = g_hash_table_lookup(e->queue_ids, r->queue_id);
    jobq_job *j;

    if (!q || r->state < 0 || r->state >= JOBQ_NSTATES)
        return 0; /* orphan of a queue deleted mid-way: skipped */
    j = jobq_job_alloc(r->id, r->data, r->data ? strlen(r->data) : 0);
    if (!j)
        return JOBQ_ENOMEM;
    j->q = q;
    j->seq = r->seq;
    j->state = (uint8_t)r->state;
    j->priority = (int16_t)r->priority;
    j->attempt = (uint16_t)r->attempt;
    j->max_attempts = (uint16_t)r->max_attempts;
    j->stalls = (uint16_t)r->stalls;
    j->run_at = r->run_at;
    j->created_at = r->created_at;
    j->updated_at = r->updated_at;
    j->hist_n = (uint16_t)r->hist_n;
    j->flags = JF_PERSISTED;
    if (r->flags & JOBQ_ROW_CANCEL_REQUESTED)
        j->flags |= JF_CANCEL_REQUESTED;
    j->lease_ms = (int32_t)q->o.defaults.lease_ms;
    j->timeout_ms = (int32_t)q->o.defaults.timeout_ms;
    if (jobq_job_apply_opts(e, j, r->opts)) {
        jobq_job_free(j);
        return JOBQ_ECORRUPT;
    }
    if (!j->backoff)
        j->backoff = jobq_backoff_ref(q->o.defaults.backoff);
    if (r->result || r->error || r->progress || r->checkpoint || r->worker || r->started_at ||
        r->finished_at || r->log_n || r->lease) {
        jobq_job_extra *x = jobq_extra(j);
        x->result = g_strdup(r->result);
        x->error = g_strdup(r->error);
        x->progress = g_strdup(r->progress);
        x->checkpoint = g_strdup(r->checkpoint);
        x->worker = g_strdup(r->worker);
        x->started_at = r->started_at;
        x->finished_at = r->finished_at;
        x->log_n = r->log_n;
        x->log_first = MAX(0, r->log_n - (int)e->cfg.max_log_lines);
        /* only a final job keeps its lease: a repeat of the call that ended it answers 200 */
        x->lease = jobq_state_final(r->state) ? (uint64_t)r->lease : 0;
        x->log_attempt = j->attempt + (j->state == JOBQ_ACTIVE);
        if (r->error) {
            json_t *err = json_loads(r->error, 0, NULL);
            const char *t = json_string_value(json_object_get(err, "type"));
            x->error_type = g_strdup(t);
            json_decref(err);
        }
    }
    if (r->seq >= e->next_seq) {
        e->next_seq = r->seq + 1;
        e->seq_written = 0; /* the stored mark is behind: write it with the next batch */
    }
    q->counts[j->state]++;
    if (j->state == JOBQ_ACTIVE)
        e->nactive++; /* load_done puts it back to waiting, which counts it out */
    if (j->x && j->x->group && j->x->tier)
        q->tiered = 1;
    g_hash_table_add(e->jobs, j);
    jobq_list_push(&e->all, &j->alink);
    if (j->x && j->x->orch)
        jobq_orch_loaded(e, j);
    return 0;
}

static gint finish_cmp(gconstpointer a, gconstpointer b)
{
    const jobq_job *x = *(jobq_job *const *)a, *y = *(jobq_job *const *)b;
    int64_t fx = x->x ? x->x->finished_at : 0, fy = y->x ? y->x->finished_at : 0;

    if (fx != fy)
        return fx < fy ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Documents: the engine's own kinds are read here; the rest go to the doc hook. */
static int load_doc(void *ud, const char *kind, const char *id, const char *body)
{
    jobq_engine *e = ud;
    int rc = jobq_stats_load_doc(e, kind, id, body);

    if (rc != 1)
        return rc;
    if (strcmp(kind, "flow") == 0)
        return jobq_orch_load_flow(e, id, body);
    if (strcmp(kind, "schedule") == 0)
        return jobq_scheds_load(e, id, body);
    if (e->hooks.doc)
        return e->hooks.doc(e->hooks.ud, kind, id, body);
    return 0;
}

jobq_load_cb jobq_engine_loader(jobq_engine *e)
{
    jobq_load_cb cb = {load_meta, load_queue, load_job, e, load_doc};

    e->loading = 1;
    return cb;
}

int jobq_engine_load_done(jobq_engine *e, int64_t now)
{
    GPtrArray *was_active = g_ptr_array_new();

    /* place every loaded job; final lists must be in finish order for retention */
    for (jobq_link *l = e->all.head.next; l != &e->all.head; l = l->next) {
        jobq_job *j = JOB_OF_ALINK(l);
        switch (j->state) {
        case JOBQ_ACTIVE:
            g_ptr_array_add(was_active, j);
            break;
        case JOBQ_SCHEDULED:
        case JOBQ_RETRYING:
            jobq_list_move(j, JL_DELAYED);
            jobq_timer_set(e, j, j->run_at);
            break;
        case JOBQ_WAITING:
            j->ready = g_sequence_insert_sorted(j->q->ready, j, jobq_ready_cmp, NULL);
            break;
        case JOBQ_COMPLETED:
        case JOBQ_FAILED:
        case JOBQ_CANCELLED:
            break;
        default:
            jobq_list_move(j, JL_DELAYED);
        }
    }
    {
        /* final jobs: into their lists by finish time */
        GPtrArray *fin = g_ptr_array_new();
        for (jobq_link *l = e->all.head.next; l != &e->all.head; l = l->next) {
            jobq_job *j = JOB_OF_ALINK(l);
            if (jobq_state_final(j->state))
                g_ptr_array_add(fin, j);
        }
        g_ptr_array_sort(fin, finish_cmp);
        for (guint i = 0; i < fin->len; i++) {
            jobq_job *j = g_ptr_array_index(fin, i);
            jobq_list_move(j, j->state == JOBQ_COMPLETED ? JL_COMPLETED
                              : j->state == JOBQ_FAILED  ? JL_FAILED
                                                         : JL_CANCELLED);
        }
        if (fin->len)
            e->last_retention = now;
        g_ptr_array_free(fin, TRUE);
    }
    e->loading = 0;
    e->started_at = now;
    jobq_orch_load_done(e, now);
    {
        /* grouped queues index their ready jobs by group, once they are all in place */
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, e->queues);
        while (g_hash_table_iter_next(&it, &k, &v))
            jobq_fair_update(e, v);
    }
    jobq_rate_load_done(e, now);
    /* a restarted engine must never replay an old process's leases, whatever its seed */
    e->rng ^= (uint64_t)now * 0x9E3779B97F4A7C15ull;
    /* jobs that were running when the last process died: back to waiting, no attempt spent;
     * their leases died with that process (a fresh random lease is made at the next fetch) */
    for (guint i = 0; i < was_active->len; i++) {
        jobq_job *j = g_ptr_array_index(was_active, i);
        if (j->x)
            j->x->lease = 0;
        if (j->flags & JF_CANCEL_REQUESTED) { /* acknowledged cancel: ends as at lease expiry */
            if (j->x && j->x->worker)         /* finalize releases the worker's slot: count it */
                jobq_worker_active(e, j->x->worker, +1);
            jobq_finalize(e, j, JOBQ_CANCELLED, now);
        } else
            jobq_make_ready(e, j, now);
    }
    g_ptr_array_free(was_active, TRUE);
    jobq_stats_load_done(e, now);
    jobq_health_sweep(e, now, 1); /* levels as they are now, announced only when they change */
    return 0;
}
