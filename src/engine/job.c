/*
 * job.c — what happens to jobs: enqueue, the worker verbs (fetch is in engine.c),
 * admin verbs, backoff, and the worker registry.
 *
 * Every verb checks everything it can before it changes anything, so a refused call leaves
 * no trace. Verbs that take a lease refuse a job that is not active under that lease
 * (JOBQ_ELEASE): that is the fencing that keeps a worker whose lease expired, or whose
 * server restarted, from completing a job someone else now runs.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "util/jsonw.h"

/* ---------------------------------------------------------------- backoff */

jobq_backoff *jobq_backoff_new(jobq_backoff_type type, size_t n)
{
    jobq_backoff *b = g_malloc0(sizeof *b + n * sizeof b->delays[0]);

    b->refs = 1;
    b->type = type;
    b->factor = 2;
    b->n = n;
    return b;
}

jobq_backoff *jobq_backoff_ref(jobq_backoff *b)
{
    if (b)
        b->refs++;
    return b;
}

void jobq_backoff_unref(jobq_backoff *b)
{
    if (b && --b->refs == 0) {
        g_free(b->json);
        g_free(b);
    }
}

int64_t jobq_backoff_delay(const jobq_backoff *b, int attempt, double rnd)
{
    double d;

    if (!b)
        return 0;
    if (attempt < 1)
        attempt = 1;
    switch (b->type) {
    case JOBQ_BACKOFF_FIXED:
        d = (double)b->delay_ms;
        break;
    case JOBQ_BACKOFF_EXPONENTIAL:
        d = (double)b->delay_ms * pow(b->factor, attempt - 1);
        if (b->max_ms > 0 && d > (double)b->max_ms)
            d = (double)b->max_ms;
        if (d > 1e15)
            d = 1e15;
        break;
    case JOBQ_BACKOFF_LIST:
        if (!b->n)
            return 0;
        d = (double)b->delays[(size_t)attempt - 1 < b->n ? (size_t)attempt - 1 : b->n - 1];
        break;
    default:
        return 0;
    }
    if (b->jitter > 0)
        d -= d * b->jitter * rnd;
    return (int64_t)d;
}

/* ---------------------------------------------------------------- workers */

void jobq_worker_active(jobq_engine *e, const char *worker, int delta)
{
    if (e->loading)
        return;
    jobq_worker_get(e, worker)->active += delta;
}

void jobq_engine_worker_seen(jobq_engine *e, const char *worker, const char *const *queues,
                             size_t nq, int64_t now)
{
    jobq_worker *w;

    if (!worker || !*worker)
        return;
    w = jobq_worker_get(e, worker);
    w->last_seen_at = now;
    if (queues && nq) {
        int same = nq == w->nq;
        for (size_t i = 0; same && i < nq; i++)
            same = strcmp(queues[i], w->queues[i]) == 0;
        if (!same) {
            for (size_t i = 0; i < w->nq; i++)
                g_free(w->queues[i]);
            w->queues = g_renew(char *, w->queues, nq);
            for (size_t i = 0; i < nq; i++)
                w->queues[i] = g_strdup(queues[i]);
            w->nq = nq;
        }
    }
}

json_t *jobq_engine_workers_json(const jobq_engine *e, int64_t within_ms, int64_t now)
{
    json_t *a = json_array();
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, e->workers);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        jobq_worker *w = v;
        json_t *qs;
        if (w->last_seen_at < now - within_ms && w->active <= 0)
            continue;
        qs = json_array();
        for (size_t i = 0; i < w->nq; i++)
            json_array_append_new(qs, json_string(w->queues[i]));
        json_array_append_new(a, json_pack("{s:s, s:o, s:I, s:I}", "id", w->id, "queues", qs,
                                           "active_jobs", (json_int_t)w->active, "last_seen_at",
                                           (json_int_t)w->last_seen_at));
    }
    return a;
}

/* ---------------------------------------------------------------- options */

char *jobq_job_opts_text(const jobq_job *j)
{
    GString *o = g_string_sized_new(64);
    const jobq_job_extra *x = j->x;
    const jobq_backoff *b = j->backoff;
    int first = 1;

    g_string_append_c(o, '{');
    if (x) {
        if (x->name)
            jobq_jw_kstr(o, &first, "name", x->name);
        if (x->group)
            jobq_jw_kstr(o, &first, "group", x->group);
        if (x->tier)
            jobq_jw_kstr(o, &first, "tier", x->tier);
        if (x->project)
            jobq_jw_kstr(o, &first, "project", x->project);
        if (x->tags)
            jobq_jw_kraw(o, &first, "tags", x->tags);
        if (x->requires)
            jobq_jw_kraw(o, &first, "requires", x->requires);
        if (x->webhook)
            jobq_jw_kraw(o, &first, "webhook", x->webhook);
    }
    /* what equals the queue's defaults is left out: most jobs store "{}" and load without
     * parsing anything (such a job takes its queue's defaults as they are when it loads) */
    if (j->timeout_ms != j->q->o.defaults.timeout_ms)
        jobq_jw_kint(o, &first, "timeout_ms", j->timeout_ms);
    if (j->lease_ms != j->q->o.defaults.lease_ms)
        jobq_jw_kint(o, &first, "lease_ms", j->lease_ms);
    if (b && b != j->q->o.defaults.backoff) {
        jobq_jw_key(o, &first, "backoff");
        jobq_backoff_render(b, o);
    }
    if (x && x->orch)
        jobq_orch_opts(j, o, &first);
    g_string_append_c(o, '}');
    return g_string_free(o, FALSE);
}

int jobq_job_apply_opts(jobq_engine *e, jobq_job *j, const char *opts_json)
{
    json_t *o, *v;
    const char *key;

    if (!opts_json || strcmp(opts_json, "{}") == 0)
        return 0;
    o = json_loads(opts_json, 0, NULL);

    if (!json_is_object(o)) {
        json_decref(o);
        return JOBQ_ECORRUPT;
    }
    json_object_foreach(o, key, v)
    {
        if (json_is_string(v) && (!strcmp(key, "name") || !strcmp(key, "group") ||
                                  !strcmp(key, "tier") || !strcmp(key, "project"))) {
            jobq_job_extra *x = jobq_extra(j);
            char **dst = !strcmp(key, "name")    ? &x->name
                         : !strcmp(key, "group") ? &x->group
                         : !strcmp(key, "tier")  ? &x->tier
                                                 : &x->project;
            *dst = g_strdup(json_string_value(v));
        } else if (!strcmp(key, "tags") || !strcmp(key, "requires") ||
                   !strcmp(key, "webhook")) {
            jobq_job_extra *x = jobq_extra(j);
            char *t = json_dumps(v, JSON_COMPACT);
            if (!strcmp(key, "tags")) {
                x->tags = g_strdup(t);
            } else if (!strcmp(key, "requires")) {
                x->requires = g_strdup(t);
                x->req = jobq_resources_from_text(t);
            } else {
                x->webhook = g_strdup(t);
            }
            free(t);
        } else if (!strcmp(key, "timeout_ms") && json_is_integer(v)) {
            j->timeout_ms = (int32_t)json_integer_value(v);
        } else if (!strcmp(key, "lease_ms") && json_is_integer(v)) {
            j->lease_ms = (int32_t)json_integer_value(v);
        } else if (!strcmp(key, "backoff")) {
            const char *f, *w;
            j->backoff = jobq_backoff_parse(v, &f, &w);
        } else if (jobq_orch_apply_opt(e, j, key, v)) {
            json_decref(o);
            return JOBQ_ECORRUPT;
        }
    }
    json_decref(o);
    return 0;
}

/* ---------------------------------------------------------------- enqueue */

int64_t jobq_waiting_size(const jobq_queue *q)
{
    return q->counts[JOBQ_WAITING] + q->counts[JOBQ_SCHEDULED] + q->counts[JOBQ_RETRYING] +
           q->counts[JOBQ_BLOCKED];
}

static char *dup_or_null(const char *s)
{
    return s ? g_strdup(s) : NULL;
}

static int uses_orch(const jobq_job_spec *s, const jobq_flow *f)
{
    return f || s->ndeps || s->review || s->unique_key || s->cache_key ||
           s->on_parent_failure != JOBQ_OPF_CANCEL;
}

jobq_job *jobq_job_create(jobq_engine *e, jobq_queue *q, const jobq_job_spec *s,
                          jobq_job **parents, jobq_flow *f, int64_t now, unsigned *flags)
{
    char idbuf[37];
    jobq_job *j;
    int initial;

    if (s->group && s->tier && !q->tiered) { /* tier limits apply: grouped dispatch */
        q->tiered = 1;
        jobq_fair_update(e, q);
    }
    if (!s->id)
        jobq_make_uuid7(e, now, idbuf);
    j = jobq_job_alloc(s->id ? s->id : idbuf, s->data, s->data_len);
    j->q = q;
    j->seq = e->next_seq++;
    j->created_at = j->updated_at = now;
    {
        /* an explicit priority, else the tier's, else the queue's default */
        int p = q->o.defaults.priority;
        if (s->has_priority)
            p = s->priority;
        else
            jobq_tier_priority(e, s->tier, &p);
        j->priority = (int16_t)p;
    }
    j->max_attempts = (uint16_t)(s->max_attempts > 0 ? s->max_attempts : q->o.defaults.max_attempts);
    j->backoff = jobq_backoff_ref(s->backoff ? s->backoff : q->o.defaults.backoff);
    j->timeout_ms = (int32_t)(s->timeout_ms >= 0 ? s->timeout_ms : q->o.defaults.timeout_ms);
    j->lease_ms = (int32_t)(s->lease_ms > 0 ? s->lease_ms : q->o.defaults.lease_ms);
    if (s->name || s->group || s->tier || s->project || s->tags || s->requires || s->webhook) {
        jobq_job_extra *x = jobq_extra(j);
        x->name = dup_or_null(s->name);
        x->group = dup_or_null(s->group);
        x->tier = dup_or_null(s->tier);
        x->project = dup_or_null(s->project);
        x->tags = dup_or_null(s->tags);
        x->requires = dup_or_null(s->requires);
        x->req = jobq_resources_from_text(s->requires);
        x->webhook = dup_or_null(s->webhook);
    }
    j->flags = JF_UNCOMMITTED;
    initial = s->run_at > now ? JOBQ_SCHEDULED : JOBQ_WAITING;
    j->run_at = s->run_at > now ? s->run_at : 0;
    if (uses_orch(s, f))
        initial = jobq_orch_setup(e, j, s, parents, f, now, initial, flags);
    j->state = (uint8_t)initial;
    q->counts[initial]++;
    q->enqueued++;
    g_hash_table_add(e->jobs, j);
    jobq_list_push(&e->all, &j->alink);
    jobq_hist(e, j, -1, initial, now);
    jobq_mark_dirty(e, j);
    g_ptr_array_add(e->fresh, j);
    switch (initial) {
    case JOBQ_SCHEDULED:
        jobq_list_move(j, JL_DELAYED);
        jobq_timer_set(e, j, j->run_at);
        break;
    case JOBQ_BLOCKED: /* run_at kept: a delay counts from when it is unblocked */
        jobq_list_move(j, JL_DELAYED);
        break;
    case JOBQ_COMPLETED: /* from the result cache */
        jobq_extra(j)->finished_at = now;
        jobq_list_move(j, JL_COMPLETED);
        break;
    case JOBQ_CANCELLED: /* a parent had already failed */
        jobq_extra(j)->finished_at = now;
        jobq_list_move(j, JL_CANCELLED);
        break;
    default:
        jobq_list_move(j, JL_PENDING);
    }
    if (initial == JOBQ_WAITING || initial == JOBQ_SCHEDULED) {
        jobq_event_state(e, j, -1, now);
    } else if (jobq_engine_events_on(e)) {
        /* made blocked, or already ended (cache, failed parent): created, then how it ended */
        jobq_engine_emit_job(e, j, "job.created", now, NULL);
        if (initial != JOBQ_BLOCKED)
            jobq_event_state(e, j, -1, now);
    }
    return j;
}

int jobq_engine_enqueue(jobq_engine *e, const char *queue, const jobq_job_spec *specs, size_t n,
                        int64_t now, jobq_job **out, long *bad)
{
    const char *why_id;

    return jobq_engine_enqueue_ex(e, queue, specs, n, now, out, NULL, bad, &why_id);
}

int jobq_engine_enqueue_ex(jobq_engine *e, const char *queue, const jobq_job_spec *specs,
                           size_t n, int64_t now, jobq_job **out, unsigned char *flags, long *bad,
                           const char **why_id)
{
    jobq_queue *q = jobq_engine_queue(e, queue);
    GHashTable *seen = NULL;
    GPtrArray *parents = NULL;
    int rc = 0;

    *bad = -1;
    *why_id = NULL;
    if (!q) {
        if (e->cfg.strict_queues)
            return JOBQ_ENOTFOUND;
        if (!jobq_valid_name(queue))
            return JOBQ_EINVAL;
    } else {
        if (q->status == JOBQ_Q_DRAINING)
            return JOBQ_EDRAINING;
        if (q->o.max_size > 0 && jobq_waiting_size(q) + (int64_t)n > q->o.max_size)
            return JOBQ_EFULL;
    }
    /* ids: free, and unique within the request; parents: existing jobs */
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < specs[i].ndeps; k++) {
            if (!jobq_engine_job(e, specs[i].depends_on[k])) {
                *bad = (long)i;
                *why_id = specs[i].depends_on[k];
                rc = JOBQ_EINVAL;
                goto out;
            }
        }
        if (!specs[i].id)
            continue;
        if (!jobq_valid_job_id(specs[i].id)) {
            *bad = (long)i;
            rc = JOBQ_EINVAL;
            goto out;
        }
        if (jobq_engine_job(e, specs[i].id)) {
            *bad = (long)i;
            rc = JOBQ_EEXIST;
            goto out;
        }
        if (n > 1) {
            if (!seen)
                seen = g_hash_table_new(g_str_hash, g_str_equal);
            if (!g_hash_table_add(seen, (gpointer)specs[i].id)) {
                *bad = (long)i;
                rc = JOBQ_EEXIST;
                goto out;
            }
        }
    }
    if (!q) {
        jobq_queue_opts o;
        jobq_queue_opts_default(&o);
        rc = jobq_engine_queue_create(e, queue, &o, now, &q);
        jobq_queue_opts_clear(&o);
        if (rc)
            goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const jobq_job_spec *s = &specs[i];
        unsigned fl = 0;
        jobq_job *dup = s->unique_key ? jobq_orch_unique(e, q, s->unique_key) : NULL;

        if (dup) { /* a live job holds the key: it is the answer, nothing new is made */
            out[i] = dup;
            if (flags)
                flags[i] = JOBQ_ENQ_DEDUP;
            continue;
        }
        if (s->ndeps) {
            if (!parents)
                parents = g_ptr_array_new();
            g_ptr_array_set_size(parents, 0);
            for (size_t k = 0; k < s->ndeps; k++)
                g_ptr_array_add(parents, jobq_engine_job(e, s->depends_on[k]));
        }
        out[i] = jobq_job_create(e, q, s, s->ndeps ? (jobq_job **)parents->pdata : NULL, NULL,
                                 now, &fl);
        if (flags)
            flags[i] = (unsigned char)fl;
    }
    jobq_stats_enqueued(e, q, (int64_t)n, now);
    jobq_queue_touch(e, q, now);
    jobq_retention(e, q, now, 0); /* jobs made final at once (cache, failed parent) */
out:
    if (seen)
        g_hash_table_destroy(seen);
    if (parents)
        g_ptr_array_free(parents, TRUE);
    return rc;
}

/* ---------------------------------------------------------------- worker verbs */

static int check_lease(const jobq_job *j, const char *lease)
{
    char *end;
    uint64_t l;

    if (j->state != JOBQ_ACTIVE || !j->x || !j->x->lease || !lease)
        return JOBQ_ELEASE;
    l = strtoull(lease, &end, 16);
    if (*end || end == lease || l != j->x->lease)
        return JOBQ_ELEASE;
    return 0;
}

/* The completion of j under `lease` already happened (same lease, final state). */
static int repeated(const jobq_job *j, const char *lease, int state)
{
    char *end;
    uint64_t l;

    if (j->state != state || !j->x || !j->x->lease || !lease)
        return 0;
    l = strtoull(lease, &end, 16);
    return !*end && l == j->x->lease;
}

static void extend(jobq_engine *e, jobq_job *j, int64_t extend_ms, int64_t now)
{
    jobq_job_extra *x = j->x;

    if (x->worker)
        jobq_engine_worker_seen(e, x->worker, NULL, 0, now);

    x->lease_expires_at = now + (extend_ms > 0 ? extend_ms : j->lease_ms);
    jobq_timer_set(
        e, j, x->deadline && x->deadline < x->lease_expires_at ? x->deadline : x->lease_expires_at);
}

static void set_text(char **dst, const char *s)
{
    g_free(*dst);
    *dst = s ? g_strdup(s) : NULL;
}

int jobq_engine_heartbeat(jobq_engine *e, jobq_job *j, const char *lease, int64_t extend_ms,
                          const char *checkpoint, int64_t now, int *durable)
{
    int rc = check_lease(j, lease);

    *durable = 0;
    if (rc)
        return rc;
    extend(e, j, extend_ms, now);
    if (checkpoint) {
        set_text(&j->x->checkpoint, checkpoint);
        j->updated_at = now;
        jobq_mark_dirty(e, j);
        *durable = 1;
    }
    return 0;
}

int jobq_engine_progress(jobq_engine *e, jobq_job *j, const char *lease, const char *progress,
                         const char *checkpoint, int64_t now, int *durable)
{
    int rc = jobq_engine_heartbeat(e, j, lease, 0, checkpoint, now, durable);

    if (rc)
        return rc;
    if (progress) {
        set_text(&j->x->progress, progress);
        j->updated_at = now;
        jobq_mark_dirty(e, j); /* written with the next batch; not waited for */
        jobq_event_progress(e, j, now);
    }
    return 0;
}

int jobq_engine_complete(jobq_engine *e, jobq_job *j, const char *lease, const char *result,
                         int64_t now, int *repeat)
{
    int rc;

    if (repeat)
        *repeat = 0;
    if (repeated(j, lease, JOBQ_COMPLETED) || repeated(j, lease, JOBQ_REVIEW)) {
        if (repeat)
            *repeat = 1;
        return 0;
    }
    rc = check_lease(j, lease);
    if (rc)
        return rc;
    jobq_engine_worker_seen(e, j->x->worker, NULL, 0, now);
    if (j->q->cb_state != CB_CLOSED || j->q->cb_fails)
        jobq_breaker_success(e, j->q, now);
    set_text(&j->x->result, result);
    j->attempt++;
    if (jobq_orch_review_enter(e, j, now))
        return 0;
    jobq_finalize(e, j, (j->flags & JF_CANCEL_REQUESTED) ? JOBQ_CANCELLED : JOBQ_COMPLETED, now);
    return 0;
}

static char *error_text(const jobq_failure *f)
{
    GString *o = g_string_sized_new(96);
    int first = 1;

    g_string_append_c(o, '{');
    jobq_jw_kstr(o, &first, "message", f->message ? f->message : "");
    jobq_jw_kstr(o, &first, "type", f->type);
    jobq_jw_kbool(o, &first, "retryable", f->retryable);
    if (f->details)
        jobq_jw_kraw(o, &first, "details", f->details);
    g_string_append_c(o, '}');
    return g_string_free(o, FALSE);
}

void jobq_fail_attempt(jobq_engine *e, jobq_job *j, const jobq_failure *f, int64_t now)
{
    jobq_queue *q = j->q;
    jobq_job_extra *x = jobq_extra(j);
    int rate_limited = f->type && strcmp(f->type, "rate_limit") == 0;
    int64_t delay;

    g_free(x->error);
    x->error = error_text(f);
    j->flags |= JF_HIST_ERROR;
    set_text(&x->error_type, f->type);
    q->last_error_at = now;
    g_free(q->last_error);
    q->last_error = g_strdup(f->message ? f->message : "");
    jobq_queue_touch(e, q, now);
    if (f->type && strcmp(f->type, "provider") == 0)
        jobq_breaker_failure(e, q, j, now);
    if (j->flags & JF_CANCEL_REQUESTED) {
        jobq_finalize(e, j, JOBQ_CANCELLED, now);
        return;
    }
    if (!rate_limited)
        j->attempt++;
    if (!rate_limited && (!f->retryable || j->attempt >= j->max_attempts)) {
        jobq_finalize(e, j, JOBQ_FAILED, now);
        return;
    }
    /* retry later */
    if (f->retry_in_ms >= 0)
        delay = f->retry_in_ms;
    else
        delay = jobq_backoff_delay(j->backoff, rate_limited ? j->attempt + 1 : j->attempt,
                                   jobq_rand01(e));
    jobq_timer_clear(e, j);
    if (x->worker)
        jobq_worker_active(e, x->worker, -1);
    q->retried++;
    if (rate_limited && f->queue_backoff && delay > 0) /* the provider said 429 to everyone */
        jobq_queue_backoff(e, q, now + delay);
    if (delay <= 0) {
        e->ev_retry = 1; /* announced as a retry, not a stall */
        jobq_make_ready(e, j, now);
        e->ev_retry = 0;
        return;
    }
    j->run_at = now + delay;
    jobq_set_state(e, j, JOBQ_RETRYING, now);
    jobq_timer_set(e, j, j->run_at);
    if (q->o.concurrency > 0 && g_sequence_get_length(q->ready) && jobq_queue_can_dispatch(q))
        jobq_notify_ready(e, q);
    jobq_check_drained(e, q, now);
}

int jobq_engine_fail(jobq_engine *e, jobq_job *j, const char *lease, const jobq_failure *f,
                     int64_t now, int *repeat)
{
    int rc;

    if (repeat)
        *repeat = 0;
    if (repeated(j, lease, JOBQ_FAILED) || repeated(j, lease, JOBQ_CANCELLED)) {
        if (repeat)
            *repeat = 1;
        return 0;
    }
    rc = check_lease(j, lease);
    if (rc)
        return rc;
    jobq_engine_worker_seen(e, j->x->worker, NULL, 0, now);
    jobq_fail_attempt(e, j, f, now);
    return 0;
}

/* The worker gives the job back unrun: waiting again at once, no attempt spent, the lease
 * dead (announced as job.released). */
int jobq_engine_release(jobq_engine *e, jobq_job *j, const char *lease, int64_t now)
{
    int rc = check_lease(j, lease);

    if (rc)
        return rc;
    j->x->lease = 0;
    if (j->flags & JF_CANCEL_REQUESTED) {
        jobq_finalize(e, j, JOBQ_CANCELLED, now);
        return 0;
    }
    if (j->x->worker)
        jobq_worker_active(e, j->x->worker, -1);
    e->ev_release = 1;
    jobq_make_ready(e, j, now);
    e->ev_release = 0;
    jobq_queue_touch(e, j->q, now);
    return 0;
}

int jobq_engine_logs(jobq_engine *e, jobq_job *j, const char *lease, const char *const *lines,
                     size_t n, int64_t now)
{
    jobq_job_extra *x;
    int rc = check_lease(j, lease);

    if (rc)
        return rc;
    x = j->x;
    x->log_attempt = j->attempt + 1;
    for (size_t i = 0; i < n; i++) {
        jobq_rec *r = jobq_batch_add(e->batch, JOBQ_REC_LOG);
        r->u.log.job_seq = j->seq;
        r->u.log.n = x->log_n++;
        r->u.log.attempt = x->log_attempt;
        r->u.log.at = now;
        r->u.log.line = g_strdup(lines[i]);
    }
    if ((size_t)(x->log_n - x->log_first) > e->cfg.max_log_lines) {
        jobq_rec *r = jobq_batch_add(e->batch, JOBQ_REC_LOG_TRIM);
        x->log_first = x->log_n - (int)e->cfg.max_log_lines;
        r->u.log.job_seq = j->seq;
        r->u.log.n = x->log_first;
    }
    jobq_mark_dirty(e, j); /* log_n is part of the row */
    return 0;
}

/* ---------------------------------------------------------------- admin verbs */

int jobq_engine_job_delete(jobq_engine *e, jobq_job *j, int64_t now)
{
    jobq_queue *q = j->q;

    if (j->state == JOBQ_ACTIVE)
        return JOBQ_ESTATE;
    jobq_job_destroy(e, j, now);
    jobq_queue_touch(e, q, now);
    jobq_check_drained(e, q, now);
    return 0;
}

int jobq_engine_job_cancel(jobq_engine *e, jobq_job *j, int64_t now)
{
    if (jobq_state_final(j->state))
        return JOBQ_ESTATE;
    if (j->state == JOBQ_ACTIVE) {
        if (!(j->flags & JF_CANCEL_REQUESTED)) {
            j->flags |= JF_CANCEL_REQUESTED;
            j->updated_at = now;
            jobq_mark_dirty(e, j);
        }
        return 0;
    }
    jobq_finalize(e, j, JOBQ_CANCELLED, now);
    return 0;
}

int jobq_engine_job_retry(jobq_engine *e, jobq_job *j, int64_t now)
{
    if (j->state != JOBQ_FAILED && j->state != JOBQ_CANCELLED)
        return JOBQ_ESTATE;
    j->attempt = 0;
    j->stalls = 0;
    if (j->x) {
        set_text(&j->x->error, NULL);
        set_text(&j->x->error_type, NULL);
        set_text(&j->x->result, NULL);
        j->x->finished_at = 0;
    }
    if (!jobq_orch_retry(e, j, now))
        jobq_make_ready(e, j, now);
    jobq_queue_touch(e, j->q, now);
    return 0;
}

int jobq_engine_job_patch(jobq_engine *e, jobq_job *j, int has_priority, int priority,
                          int has_run_at, int64_t run_at, int64_t now)
{
    if (has_run_at && j->state != JOBQ_SCHEDULED && j->state != JOBQ_RETRYING)
        return JOBQ_ESTATE;
    if (has_priority && j->priority != priority) {
        int was_ready = j->ready != NULL;
        if (was_ready) /* out of the indexes while its sort key changes */
            jobq_unready(e, j);
        j->priority = (int16_t)priority;
        if (was_ready) /* re-sort: its position changes */
            jobq_make_ready(e, j, now);
    }
    if (has_run_at) {
        if (run_at <= now) {
            jobq_make_ready(e, j, now);
        } else {
            j->run_at = run_at;
            jobq_timer_set(e, j, run_at);
        }
    }
    j->updated_at = now;
    jobq_mark_dirty(e, j);
    return 0;
}

/* ---------------------------------------------------------------- dead letter */

json_t *jobq_engine_dead_stats(const jobq_engine *e)
{
    json_t *qs = json_object();
    int64_t total = 0;
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, e->queues);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        jobq_queue *q = v;
        json_t *types;
        if (!q->failed_l.n)
            continue;
        types = json_object();
        for (jobq_link *l = q->failed_l.head.next; l != &q->failed_l.head; l = l->next) {
            jobq_job *j = JOB_OF_QLINK(l);
            const char *t = j->x && j->x->error_type ? j->x->error_type : "error";
            json_t *c = json_object_get(types, t);
            json_object_set_new(types, t, json_integer(c ? json_integer_value(c) + 1 : 1));
        }
        json_object_set_new(
            qs, q->name,
            json_pack("{s:I, s:o}", "total", (json_int_t)q->failed_l.n, "types", types));
        total += q->failed_l.n;
    }
    return json_pack("{s:I, s:o}", "total", (json_int_t)total, "queues", qs);
}

int64_t jobq_engine_dead_retry(jobq_engine *e, jobq_queue *q, const char *const *ids, size_t n,
                               int64_t now)
{
    int64_t count = 0;

    if (ids) {
        for (size_t i = 0; i < n; i++) {
            jobq_job *j = jobq_engine_job(e, ids[i]);
            if (j && j->state == JOBQ_FAILED && (!q || j->q == q) &&
                jobq_engine_job_retry(e, j, now) == 0)
                count++;
        }
        return count;
    }
    if (q) {
        while (q->failed_l.n) {
            jobq_engine_job_retry(e, JOB_OF_QLINK(jobq_list_first(&q->failed_l)), now);
            count++;
        }
        return count;
    }
    {
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, e->queues);
        while (g_hash_table_iter_next(&it, &k, &v))
            count += jobq_engine_dead_retry(e, v, NULL, 0, now);
    }
    return count;
}
