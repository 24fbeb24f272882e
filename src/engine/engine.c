/*
 * engine.c — the engine's core: indexes, state changes, timers, dispatch, group commit.
 *
 * Job verbs (worker protocol and admin) are in job.c, queue verbs in queue.c, JSON in
 * codec.c and render.c. This file owns the invariants every one of them relies on:
 *   - a job is in exactly one place of its queue (ready index or one list), chosen by
 *     place() from its state and flags;
 *   - q->counts[] always equals the number of jobs of q in each state;
 *   - a job with JF_UNCOMMITTED is never in q->ready;
 *   - a job waits on at most one time (heap slot), whose meaning follows from its state.
 * It never does I/O and never reads a clock.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "engine/schedule.h"

/* ---------------------------------------------------------------- small things */

static const char *state_names[JOBQ_NSTATES] = {
    "waiting", "scheduled", "retrying", "blocked",   "active",
    "review",  "completed", "failed",   "cancelled",
};

const char *jobq_state_name(int s)
{
    return s >= 0 && s < JOBQ_NSTATES ? state_names[s] : NULL;
}

int jobq_state_parse(const char *s)
{
    for (int i = 0; i < JOBQ_NSTATES; i++)
        if (strcmp(s, state_names[i]) == 0)
            return i;
    return -1;
}

int jobq_state_final(int s)
{
    return s == JOBQ_COMPLETED || s == JOBQ_FAILED || s == JOBQ_CANCELLED;
}

static const char *qstatus_names[] = {"active", "paused", "draining", "error"};

const char *jobq_qstatus_name(int s)
{
    return s >= 0 && s < 4 ? qstatus_names[s] : NULL;
}

int jobq_qstatus_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, qstatus_names[i]) == 0)
            return i;
    return -1;
}

void jobq_list_init(jobq_list *l)
{
    l->head.prev = l->head.next = &l->head;
    l->n = 0;
}

void jobq_list_push(jobq_list *l, jobq_link *x)
{
    x->prev = l->head.prev;
    x->next = &l->head;
    l->head.prev->next = x;
    l->head.prev = x;
    l->n++;
}

void jobq_list_remove(jobq_list *l, jobq_link *x)
{
    x->prev->next = x->next;
    x->next->prev = x->prev;
    x->prev = x->next = NULL;
    l->n--;
}

/* splitmix64: small, fast, good enough for ids, lease tokens and jitter (not for secrets). */
uint64_t jobq_rand(jobq_engine *e)
{
    uint64_t z = (e->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double jobq_rand01(jobq_engine *e)
{
    return (double)(jobq_rand(e) >> 11) / 9007199254740992.0;
}

/* UUIDv7 (RFC 9562): 48-bit ms timestamp, then a 12-bit counter that keeps ids made within
 * one millisecond in order, then random bits. */
void jobq_make_uuid7(jobq_engine *e, int64_t now, char out[37])
{
    uint8_t b[16];
    uint64_t r = jobq_rand(e), r2 = jobq_rand(e);

    if (now > e->last_id_ms) {
        e->last_id_ms = now;
        e->id_counter = r2 & 0x3ff; /* random start, room to count up */
    } else {
        now = e->last_id_ms;
        if (++e->id_counter > 0xfff) { /* counter exhausted: borrow the next millisecond */
            e->last_id_ms = ++now;
            e->id_counter = 0;
        }
    }
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)((uint64_t)now >> (40 - 8 * i));
    b[6] = (uint8_t)(0x70 | ((e->id_counter >> 8) & 0x0f));
    b[7] = (uint8_t)(e->id_counter & 0xff);
    b[8] = (uint8_t)(0x80 | ((r >> 56) & 0x3f));
    for (int i = 9; i < 16; i++)
        b[i] = (uint8_t)(r >> (8 * (i - 9)));
    {
        /* by hand: snprintf costs thirty times this, once per enqueued job */
        static const char hex[] = "0123456789abcdef";
        char *o = out;
        for (int i = 0; i < 16; i++) {
            if (i == 4 || i == 6 || i == 8 || i == 10)
                *o++ = '-';
            *o++ = hex[b[i] >> 4];
            *o++ = hex[b[i] & 15];
        }
        *o = '\0';
    }
}

void jobq_lease_text(uint64_t lease, char buf[17])
{
    static const char hex[] = "0123456789abcdef";

    for (int i = 15; i >= 0; i--, lease >>= 4)
        buf[i] = hex[lease & 15];
    buf[16] = '\0';
}

/* ---------------------------------------------------------------- jobs in memory */

static guint job_hash(gconstpointer p)
{
    return g_str_hash(JOB_ID((const jobq_job *)p));
}

static gboolean job_equal(gconstpointer a, gconstpointer b)
{
    return strcmp(JOB_ID((const jobq_job *)a), JOB_ID((const jobq_job *)b)) == 0;
}

jobq_job *jobq_job_alloc(const char *id, const char *data, size_t data_len)
{
    size_t idlen = strlen(id);
    jobq_job *j;

    if (!data) {
        data = "null";
        data_len = 4;
    }
    j = calloc(1, sizeof *j + idlen + 1 + data_len + 1);
    if (!j)
        return NULL;
    memcpy(JOB_ID(j), id, idlen + 1);
    j->data = JOB_ID(j) + idlen + 1;
    memcpy(j->data, data, data_len);
    j->data[data_len] = '\0';
    j->data_len = (uint32_t)data_len;
    return j;
}

static void extra_free(jobq_job_extra *x)
{
    if (!x)
        return;
    g_free(x->name);
    g_free(x->group);
    g_free(x->tier);
    g_free(x->project);
    g_free(x->tags);
    g_free(x->requires);
    g_free(x->webhook);
    g_free(x->result);
    g_free(x->error);
    g_free(x->error_type);
    g_free(x->progress);
    g_free(x->checkpoint);
    g_free(x->worker);
    jobq_orch_free(x->orch);
    jobq_resources_free(x->req);
    g_free(x);
}

void jobq_job_free(jobq_job *j)
{
    if (!j)
        return;
    jobq_backoff_unref(j->backoff);
    extra_free(j->x);
    free(j);
}

jobq_job_extra *jobq_extra(jobq_job *j)
{
    if (!j->x)
        j->x = g_new0(jobq_job_extra, 1);
    return j->x;
}

jobq_job *jobq_engine_job(const jobq_engine *e, const char *id)
{
    /* the table hashes a job by the id stored right after it: a probe is laid out alike */
    union {
        jobq_job j;
        char bytes[sizeof(jobq_job) + JOBQ_MAX_ID + 1];
    } probe;
    size_t n = strlen(id);

    if (n > JOBQ_MAX_ID)
        return NULL; /* longer than any id the engine accepts */
    memcpy(JOB_ID(&probe.j), id, n + 1);
    return g_hash_table_lookup(e->jobs, &probe.j);
}
const char *jobq_job_id(const jobq_job *j)
{
    return JOB_ID(j);
}

jobq_queue *jobq_job_queue(const jobq_job *j)
{
    return j->q;
}

int jobq_job_state(const jobq_job *j)
{
    return j->state;
}

int64_t jobq_job_seq(const jobq_job *j)
{
    return j->seq;
}

int jobq_job_attempt(const jobq_job *j)
{
    return j->attempt;
}

int64_t jobq_job_lease_expires_at(const jobq_job *j)
{
    return j->x && j->state == JOBQ_ACTIVE ? j->x->lease_expires_at : 0;
}

int jobq_job_cancel_requested(const jobq_job *j)
{
    return (j->flags & JF_CANCEL_REQUESTED) != 0;
}

const char *jobq_job_result_text(const jobq_job *j)
{
    return j->x ? j->x->result : NULL;
}

const char *jobq_job_error_text(const jobq_job *j)
{
    return j->x ? j->x->error : NULL;
}

void jobq_job_lease(const jobq_job *j, char buf[17])
{
    if (j->x && j->x->lease && j->state == JOBQ_ACTIVE)
        jobq_lease_text(j->x->lease, buf);
    else
        buf[0] = '\0';
}

int jobq_engine_log_attempt(const jobq_job *j)
{
    return j->state == JOBQ_ACTIVE ? j->attempt + 1 : (j->x ? j->x->log_attempt : 0);
}

size_t jobq_engine_job_total(const jobq_engine *e)
{
    return g_hash_table_size(e->jobs);
}

/* ---------------------------------------------------------------- engine */

jobq_engine *jobq_engine_new(const jobq_engine_config *cfg, const jobq_engine_hooks *hooks)
{
    jobq_engine *e = g_new0(jobq_engine, 1);

    if (cfg)
        e->cfg = *cfg;
    if (!e->cfg.max_log_lines)
        e->cfg.max_log_lines = 1000;
    if (hooks)
        e->hooks = *hooks;
    e->rng = e->cfg.seed ? e->cfg.seed : 0x6a6f6271u;
    e->jobs = g_hash_table_new(job_hash, job_equal);
    e->queues = g_hash_table_new(g_str_hash, g_str_equal);
    e->queue_ids = g_hash_table_new(g_str_hash, g_str_equal);
    e->workers = g_hash_table_new(g_str_hash, g_str_equal);
    jobq_list_init(&e->all);
    e->next_seq = 1;
    e->batch = jobq_batch_new();
    e->dirty = g_ptr_array_new();
    e->dirty_queues = g_ptr_array_new();
    e->dead_queues = g_ptr_array_new();
    e->fresh = g_ptr_array_new();
    g_queue_init(&e->inflight);
    e->graveyard = g_ptr_array_new();
    jobq_orch_init(e);
    jobq_limits_init(e);
    e->event_seq = 1;
    e->ev_buf = g_string_sized_new(512);
    e->ev_fields = g_string_sized_new(256);
    return e;
}

void jobq_worker_free(gpointer p)
{
    jobq_worker *w = p;

    for (size_t i = 0; i < w->nq; i++)
        g_free(w->queues[i]);
    g_free(w->queues);
    g_free(w->id);
    jobq_resources_free(w->used);
    g_free(w);
}

void jobq_engine_free(jobq_engine *e)
{
    GHashTableIter it;
    gpointer k, v;

    if (!e)
        return;
    /* tombstones first (they are only in e->dirty or the graveyard), then the live jobs */
    for (guint i = 0; i < e->dirty->len; i++) {
        jobq_job *j = g_ptr_array_index(e->dirty, i);
        if (j->flags & JF_DELETED)
            jobq_job_free(j);
    }
    for (guint i = 0; i < e->graveyard->len; i++)
        jobq_job_free(g_ptr_array_index(e->graveyard, i));
    g_ptr_array_free(e->graveyard, TRUE);
    {
        GPtrArray *mine;
        while ((mine = g_queue_pop_head(&e->inflight)))
            g_ptr_array_free(mine, TRUE);
    }
    while (e->all.n) {
        jobq_job *j = JOB_OF_ALINK(jobq_list_first(&e->all));
        jobq_list_remove(&e->all, &j->alink);
        jobq_job_free(j);
    }
    g_hash_table_iter_init(&it, e->queues);
    while (g_hash_table_iter_next(&it, &k, &v))
        jobq_queue_free(v);
    for (guint i = 0; i < e->dead_queues->len; i++)
        jobq_queue_free(g_ptr_array_index(e->dead_queues, i));
    g_hash_table_iter_init(&it, e->workers);
    while (g_hash_table_iter_next(&it, &k, &v))
        jobq_worker_free(v);
    g_hash_table_destroy(e->jobs);
    g_hash_table_destroy(e->queues);
    g_hash_table_destroy(e->queue_ids);
    g_hash_table_destroy(e->workers);
    jobq_scheds_free(e->scheds);
    jobq_estats_free(e->stats);
    g_free(e->timers);
    jobq_batch_free(e->batch);
    g_ptr_array_free(e->dirty, TRUE);
    g_ptr_array_free(e->dirty_queues, TRUE);
    g_ptr_array_free(e->dead_queues, TRUE);
    g_ptr_array_free(e->fresh, TRUE);
    jobq_orch_fini(e);
    jobq_limits_fini(e);
    g_string_free(e->ev_buf, TRUE);
    g_string_free(e->ev_fields, TRUE);
    g_free(e);
}

/* ---------------------------------------------------------------- timers (binary heap)
 * A hand-written heap: glib has none with O(log n) removal of an arbitrary entry, which
 * every lease extension and cancel needs. */

static void heap_swap(jobq_engine *e, size_t a, size_t b)
{
    jobq_timer t = e->timers[a];

    e->timers[a] = e->timers[b];
    e->timers[b] = t;
    e->timers[a].j->heap_idx = (uint32_t)a + 1;
    e->timers[b].j->heap_idx = (uint32_t)b + 1;
}

static void heap_up(jobq_engine *e, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (e->timers[p].at <= e->timers[i].at)
            break;
        heap_swap(e, i, p);
        i = p;
    }
}

static void heap_down(jobq_engine *e, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < e->ntimers && e->timers[l].at < e->timers[m].at)
            m = l;
        if (r < e->ntimers && e->timers[r].at < e->timers[m].at)
            m = r;
        if (m == i)
            return;
        heap_swap(e, i, m);
        i = m;
    }
}

void jobq_timer_clear(jobq_engine *e, jobq_job *j)
{
    size_t i;

    if (!j->heap_idx)
        return;
    i = j->heap_idx - 1;
    j->heap_idx = 0;
    e->ntimers--;
    if (i == e->ntimers)
        return;
    e->timers[i] = e->timers[e->ntimers];
    e->timers[i].j->heap_idx = (uint32_t)i + 1;
    heap_up(e, i);
    heap_down(e, e->timers[i].j->heap_idx - 1);
}

void jobq_timer_set(jobq_engine *e, jobq_job *j, int64_t at)
{
    jobq_timer_clear(e, j);
    if (e->ntimers == e->timers_cap) {
        e->timers_cap = e->timers_cap ? 2 * e->timers_cap : 1024;
        e->timers = g_renew(jobq_timer, e->timers, e->timers_cap);
    }
    e->timers[e->ntimers].at = at;
    e->timers[e->ntimers].j = j;
    j->heap_idx = (uint32_t)++e->ntimers;
    heap_up(e, e->ntimers - 1);
}

int64_t jobq_engine_next_timer(const jobq_engine *e)
{
    int64_t t = e->ntimers ? e->timers[0].at : INT64_MAX;

    if (e->waking->len) { /* a rate window, a queue backoff or a breaker cooldown ends */
        int64_t w = jobq_wake_next(e);
        if (w < t)
            t = w;
    }
    t = MIN(t, jobq_scheds_next(e)); /* schedules keep their own due set */

    /* retention by age is swept once a second while a queue keeps final jobs */
    if (e->last_retention && e->last_retention + 1000 < t)
        t = e->last_retention + 1000;
    return t;
}

/* ---------------------------------------------------------------- placement */

gint jobq_ready_cmp(gconstpointer a, gconstpointer b, gpointer ud)
{
    const jobq_job *x = a, *y = b;

    (void)ud;
    if (x->priority != y->priority)
        return x->priority > y->priority ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static jobq_list *list_of(jobq_queue *q, int list)
{
    switch (list) {
    case JL_PENDING:
        return &q->pending;
    case JL_DELAYED:
        return &q->delayed;
    case JL_ACTIVE:
        return &q->active;
    case JL_COMPLETED:
        return &q->completed;
    case JL_FAILED:
        return &q->failed_l;
    case JL_CANCELLED:
        return &q->cancelled;
    }
    return NULL;
}

void jobq_unready(jobq_engine *e, jobq_job *j)
{
    if (j->ready) {
        if (j->x && j->x->slot)
            jobq_group_unready(e, j);
        g_sequence_remove(j->ready);
        j->ready = NULL;
    }
    if (j->list != JL_NONE) {
        jobq_list_remove(list_of(j->q, j->list), &j->qlink);
        j->list = JL_NONE;
    }
}

void jobq_list_move(jobq_job *j, int list)
{
    if (j->list != JL_NONE)
        jobq_list_remove(list_of(j->q, j->list), &j->qlink);
    j->list = (uint8_t)list;
    if (list != JL_NONE)
        jobq_list_push(list_of(j->q, list), &j->qlink);
}

void jobq_notify_ready(jobq_engine *e, jobq_queue *q)
{
    if (e->hooks.ready && !e->loading)
        e->hooks.ready(e->hooks.ud, q);
}

/* Puts j where its state says it belongs. */
static void place(jobq_engine *e, jobq_job *j)
{
    jobq_unready(e, j);
    switch (j->state) {
    case JOBQ_WAITING:
        if (j->flags & JF_UNCOMMITTED) {
            jobq_list_move(j, JL_PENDING);
        } else {
            j->ready = g_sequence_insert_sorted(j->q->ready, j, jobq_ready_cmp, NULL);
            if (j->q->fair)
                jobq_group_ready(e, j);
            if (jobq_queue_can_dispatch(j->q))
                jobq_notify_ready(e, j->q);
        }
        break;
    case JOBQ_SCHEDULED:
    case JOBQ_RETRYING:
    case JOBQ_BLOCKED:
    case JOBQ_REVIEW:
        jobq_list_move(j, JL_DELAYED);
        break;
    case JOBQ_ACTIVE:
        jobq_list_move(j, JL_ACTIVE);
        break;
    case JOBQ_COMPLETED:
        jobq_list_move(j, JL_COMPLETED);
        break;
    case JOBQ_FAILED:
        jobq_list_move(j, JL_FAILED);
        break;
    case JOBQ_CANCELLED:
        jobq_list_move(j, JL_CANCELLED);
        break;
    }
}

void jobq_mark_dirty(jobq_engine *e, jobq_job *j)
{
    if (e->loading || (j->flags & JF_DIRTY))
        return;
    j->flags |= JF_DIRTY;
    g_ptr_array_add(e->dirty, j);
}

void jobq_hist(jobq_engine *e, jobq_job *j, int from, int to, int64_t now)
{
    jobq_rec *r;

    if (e->loading)
        return;
    r = jobq_batch_add(e->batch, JOBQ_REC_HIST);
    r->u.hist.job_seq = j->seq;
    r->u.hist.n = j->hist_n++;
    r->u.hist.at = now;
    r->u.hist.from_state = from;
    r->u.hist.to_state = to;
    r->u.hist.attempt = j->attempt;
    if (j->x && j->x->worker && (to == JOBQ_ACTIVE || from == JOBQ_ACTIVE))
        r->u.hist.worker = g_strdup(j->x->worker);
    if (j->x && j->x->error && (j->flags & JF_HIST_ERROR)) {
        r->u.hist.error = g_strdup(j->x->error);
        j->flags &= (uint16_t)~JF_HIST_ERROR;
    }
}

void jobq_set_state(jobq_engine *e, jobq_job *j, int to, int64_t now)
{
    int from = j->state;

    j->q->counts[from]--;
    j->q->counts[to]++;
    j->state = (uint8_t)to;
    j->updated_at = now;
    jobq_hist(e, j, from, to, now);
    jobq_mark_dirty(e, j);
    /* limits count active jobs (groups, the server-wide cap, worker resources) */
    if (from == JOBQ_ACTIVE)
        jobq_left_active(e, j, now);
    else if (to == JOBQ_ACTIVE)
        jobq_entered_active(e, j);
    place(e, j);
    jobq_event_state(e, j, from, now);
    if (j->x && j->x->orch) /* after the job's own event: a flow's end follows it */
        jobq_orch_state(e, j, from, to, now);
}

void jobq_make_ready(jobq_engine *e, jobq_job *j, int64_t now)
{
    jobq_timer_clear(e, j);
    if (j->state == JOBQ_WAITING) { /* re-sorted: it has been ready since before */
        place(e, j);
        return;
    }
    j->run_at = now; /* ready since now: what its wait time counts from */
    jobq_set_state(e, j, JOBQ_WAITING, now);
}

/* Removes j for good: out of every index; freed at the next take_changes (its row delete
 * goes into that batch). */
void jobq_job_destroy(jobq_engine *e, jobq_job *j, int64_t now)
{
    jobq_queue *q = j->q;

    if (j->x && j->x->orch)
        jobq_orch_destroy(e, j, now);
    if (j->state == JOBQ_ACTIVE && j->x && j->x->worker)
        jobq_worker_active(e, j->x->worker, -1);
    if (j->state == JOBQ_ACTIVE)
        jobq_left_active(e, j, now);
    jobq_timer_clear(e, j);
    jobq_unready(e, j);
    q->counts[j->state]--;
    g_hash_table_remove(e->jobs, j);
    jobq_list_remove(&e->all, &j->alink);
    j->flags |= JF_DELETED;
    j->flags &= (uint16_t)~JF_UNCOMMITTED;
    if (e->hooks.final)
        e->hooks.final(e->hooks.ud, j, 1);
    if (!(j->flags & JF_DIRTY)) {
        j->flags |= JF_DIRTY;
        g_ptr_array_add(e->dirty, j);
    }
}

int jobq_queue_can_dispatch(const jobq_queue *q)
{
    if (q->status != JOBQ_Q_ACTIVE && q->status != JOBQ_Q_DRAINING)
        return 0;
    if (q->o.concurrency > 0 && q->counts[JOBQ_ACTIVE] >= q->o.concurrency)
        return 0;
    return 1;
}

void jobq_queue_touch(jobq_engine *e, jobq_queue *q, int64_t now)
{
    q->updated_at = now;
    if (!q->dirty && !e->loading) {
        q->dirty = 1;
        g_ptr_array_add(e->dirty_queues, q);
    }
}

void jobq_check_drained(jobq_engine *e, jobq_queue *q, int64_t now)
{
    if (q->status != JOBQ_Q_DRAINING)
        return;
    for (int s = 0; s < JOBQ_NSTATES; s++)
        if (!jobq_state_final(s) && q->counts[s])
            return;
    q->status = JOBQ_Q_PAUSED;
    q->paused_at = now;
    jobq_queue_touch(e, q, now);
    jobq_event_queue(e, q, "queue.drained", now);
}

/* Throughput estimate: completions in the current and the previous minute. */
static void rate_note(jobq_queue *q, int64_t now)
{
    int64_t minute = now / 60000;

    if (minute != q->rate_at) {
        q->rate = minute == q->rate_at + 1 ? (double)q->rate_n : 0;
        q->rate_at = minute;
        q->rate_n = 0;
    }
    q->rate_n++;
}

double jobq_queue_rate_per_ms(const jobq_queue *q, int64_t now)
{
    int64_t minute = now / 60000;
    double frac = (double)(now % 60000) / 60000.0, prev;

    if (minute == q->rate_at)
        prev = q->rate;
    else if (minute == q->rate_at + 1)
        prev = (double)q->rate_n;
    else
        return 0;
    if (minute != q->rate_at)
        return prev * (1 - frac) / 60000.0;
    return (prev * (1 - frac) + (double)q->rate_n) / 60000.0;
}

/* j leaves `active`, or any live state, for a final state. */
void jobq_finalize(jobq_engine *e, jobq_job *j, int to, int64_t now)
{
    jobq_queue *q = j->q;
    int was_active = j->state == JOBQ_ACTIVE;

    jobq_timer_clear(e, j);
    if (was_active && j->x && j->x->worker)
        jobq_worker_active(e, j->x->worker, -1);
    jobq_extra(j)->finished_at = now;
    j->flags &= (uint16_t)~JF_CANCEL_REQUESTED;
    if (to == JOBQ_COMPLETED) {
        q->processed++;
        q->last_processed_at = now;
        rate_note(q, now);
        /* a job approved after review ran until it asked for review: no sample for it */
        jobq_stats_finished(e, q, 1, was_active ? now - j->x->started_at : -1, now);
    } else if (to == JOBQ_FAILED) {
        q->failed++;
        jobq_stats_finished(e, q, 0, 0, now);
    }
    jobq_set_state(e, j, to, now);
    jobq_queue_touch(e, q, now);
    if (e->hooks.final)
        e->hooks.final(e->hooks.ud, j, 0);
    if (j->x->orch) /* keys, cache, dependants */
        jobq_orch_final(e, j, now);
    if (was_active && q->o.concurrency > 0 && q->ready && g_sequence_get_length(q->ready) &&
        jobq_queue_can_dispatch(q))
        jobq_notify_ready(e, q);
    jobq_retention(e, q, now, 0);
    if (!e->last_retention)
        e->last_retention = now;
    jobq_check_drained(e, q, now);
}

/* ---------------------------------------------------------------- group commit */

static void row_fill(const jobq_job *j, jobq_job_row *r, int full)
{
    const jobq_job_extra *x = j->x;

    r->seq = j->seq;
    r->state = j->state;
    r->priority = j->priority;
    r->attempt = j->attempt;
    r->max_attempts = j->max_attempts;
    r->stalls = j->stalls;
    r->run_at = j->run_at;
    r->created_at = j->created_at;
    r->updated_at = j->updated_at;
    r->hist_n = j->hist_n;
    if (x) {
        r->started_at = x->started_at;
        r->finished_at = x->finished_at;
        r->result = g_strdup(x->result);
        r->error = g_strdup(x->error);
        r->progress = g_strdup(x->progress);
        r->checkpoint = g_strdup(x->checkpoint);
        r->worker = g_strdup(x->worker);
        r->log_n = x->log_n;
        r->lease = (int64_t)x->lease;
    }
    r->flags = (j->flags & JF_CANCEL_REQUESTED) ? JOBQ_ROW_CANCEL_REQUESTED : 0;
    if (full) {
        r->id = g_strdup(JOB_ID(j));
        r->queue_id = g_strdup(j->q->id);
        r->data = g_strndup(j->data, j->data_len);
        r->opts = jobq_job_opts_text(j);
    }
}

void jobq_engine_doc_put(jobq_engine *e, const char *kind, const char *id, const char *body)
{
    jobq_rec *r = jobq_batch_add(e->batch, JOBQ_REC_DOC_PUT);

    r->u.doc.kind = g_strdup(kind);
    r->u.doc.id = g_strdup(id);
    r->u.doc.body = g_strdup(body);
}

void jobq_engine_doc_delete(jobq_engine *e, const char *kind, const char *id)
{
    jobq_rec *r = jobq_batch_add(e->batch, JOBQ_REC_DOC_DELETE);

    r->u.doc.kind = g_strdup(kind);
    r->u.doc.id = g_strdup(id);
}

int jobq_engine_has_changes(const jobq_engine *e)
{
    return e->dirty->len || e->dirty_queues->len || e->batch->n || e->fresh->len ||
           e->events_untaken || e->event_mark_due;
}

jobq_batch *jobq_engine_take_changes(jobq_engine *e)
{
    jobq_batch *b;
    size_t deletes = 0;

    if (!jobq_engine_has_changes(e))
        return NULL;
    b = e->batch;
    e->batch = jobq_batch_new();
    for (guint i = 0; i < e->dirty->len; i++) {
        jobq_job *j = g_ptr_array_index(e->dirty, i);
        jobq_rec *r;

        j->flags &= (uint16_t)~JF_DIRTY;
        if (j->flags & JF_DELETED) {
            deletes++;
            r = jobq_batch_add(b, JOBQ_REC_JOB_DELETE);
            r->job_seq = j->seq;
            r->logs = j->x && j->x->log_n > 0;
            continue; /* freed below, after the fresh list drops it */
        }
        if (j->flags & JF_PERSISTED) {
            r = jobq_batch_add(b, JOBQ_REC_JOB_UPDATE);
            row_fill(j, &r->u.job, 0);
        } else {
            r = jobq_batch_add(b, JOBQ_REC_JOB_INSERT);
            row_fill(j, &r->u.job, 1);
            j->flags |= JF_PERSISTED;
        }
    }
    for (guint i = 0; i < e->dirty_queues->len; i++) {
        jobq_queue *q = g_ptr_array_index(e->dirty_queues, i);
        jobq_rec *r;

        q->dirty = 0;
        if (q->deleted)
            continue;
        r = jobq_batch_add(b, JOBQ_REC_QUEUE_PUT);
        r->u.queue.id = g_strdup(q->id);
        r->u.queue.name = g_strdup(q->name);
        r->u.queue.config = jobq_queue_config_text(q);
        r->u.queue.created_at = q->created_at;
    }
    g_ptr_array_set_size(e->dirty_queues, 0);
    /* the batch now in flight: its fresh jobs become fetchable when committed() says this
     * batch is durable (batches are confirmed in the order they were taken) */
    {
        GPtrArray *mine = g_ptr_array_new();
        for (guint i = 0; i < e->fresh->len; i++) {
            jobq_job *j = g_ptr_array_index(e->fresh, i);
            if (!(j->flags & JF_DELETED))
                g_ptr_array_add(mine, j);
        }
        g_queue_push_tail(&e->inflight, mine);
        e->inflight_jobs += mine->len;
    }
    g_ptr_array_set_size(e->fresh, 0);
    jobq_event_take(e, b);
    /* the high-water mark that keeps seqs from being reused: only a deletion could let the
     * largest stored seq fall behind next_seq, so only batches that delete write it */
    if (deletes && e->seq_written < e->next_seq) {
        jobq_rec *r = jobq_batch_add(b, JOBQ_REC_META_PUT);
        r->u.meta.key = g_strdup("next_seq");
        r->u.meta.value = g_strdup_printf("%" PRId64, e->next_seq);
        e->seq_written = e->next_seq;
    }
    /* tombstones are freed once no unconfirmed batch can still list them */
    for (guint i = 0; i < e->dirty->len; i++) {
        jobq_job *j = g_ptr_array_index(e->dirty, i);
        if (j->flags & JF_DELETED)
            g_ptr_array_add(e->graveyard, j);
    }
    g_ptr_array_set_size(e->dirty, 0);
    if (e->inflight.length <= 1) {
        /* the batch just taken lists only live jobs; older ones are all confirmed */
        for (guint i = 0; i < e->graveyard->len; i++)
            jobq_job_free(g_ptr_array_index(e->graveyard, i));
        g_ptr_array_set_size(e->graveyard, 0);
    }
    for (guint i = 0; i < e->dead_queues->len; i++)
        jobq_queue_free(g_ptr_array_index(e->dead_queues, i));
    g_ptr_array_set_size(e->dead_queues, 0);
    jobq_orch_take(e);
    return b;
}

void jobq_engine_committed(jobq_engine *e, int64_t now)
{
    GPtrArray *mine = g_queue_pop_head(&e->inflight);

    (void)now;
    if (!mine)
        return;
    e->inflight_jobs -= mine->len;
    for (guint i = 0; i < mine->len; i++) {
        jobq_job *j = g_ptr_array_index(mine, i);

        if (j->flags & JF_DELETED)
            continue;
        j->flags &= (uint16_t)~JF_UNCOMMITTED;
        if (j->state == JOBQ_WAITING && j->list == JL_PENDING)
            place(e, j);
    }
    g_ptr_array_free(mine, TRUE);
}

/* ---------------------------------------------------------------- timers firing */

static void lease_expired(jobq_engine *e, jobq_job *j, int64_t now);
static void attempt_timed_out(jobq_engine *e, jobq_job *j, int64_t now);

void jobq_engine_tick(jobq_engine *e, int64_t now)
{
    while (e->ntimers && e->timers[0].at <= now) {
        jobq_job *j = e->timers[0].j;

        jobq_timer_clear(e, j);
        switch (j->state) {
        case JOBQ_SCHEDULED:
        case JOBQ_RETRYING:
            jobq_make_ready(e, j, now);
            break;
        case JOBQ_ACTIVE:
            if (j->x->deadline && j->x->deadline <= now)
                attempt_timed_out(e, j, now);
            else
                lease_expired(e, j, now);
            break;
        default:
            break;
        }
    }
    if (e->waking->len)
        jobq_wake_fire(e, now);
    jobq_scheds_tick(e, now);
    if (now >= e->last_worker_prune + 60000) {
        /* workers gone for an hour with nothing running are forgotten */
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, e->workers);
        while (g_hash_table_iter_next(&it, &k, &v)) {
            jobq_worker *w = v;
            if (w->active <= 0 && w->last_seen_at < now - 3600000) {
                g_hash_table_iter_steal(&it);
                jobq_worker_free(w);
            }
        }
        e->last_worker_prune = now;
    }
    if (e->last_retention && now >= e->last_retention + 1000) {
        GHashTableIter it;
        gpointer k, v;
        int any = 0;

        e->last_retention = now;
        g_hash_table_iter_init(&it, e->queues);
        while (g_hash_table_iter_next(&it, &k, &v)) {
            jobq_queue *q = v;
            jobq_retention(e, q, now, 1);
            any |= (q->completed.n || q->failed_l.n || q->cancelled.n);
        }
        if (!any)
            e->last_retention = 0;
    }
}

/* The lease ran out without a heartbeat: the job stalled. */
static void lease_expired(jobq_engine *e, jobq_job *j, int64_t now)
{
    jobq_queue *q = j->q;
    jobq_job_extra *x = j->x;

    x->lease = 0;
    if (j->flags & JF_CANCEL_REQUESTED) {
        jobq_finalize(e, j, JOBQ_CANCELLED, now);
        return;
    }
    q->stalled++;
    jobq_queue_touch(e, q, now);
    j->stalls++;
    if (j->stalls > q->o.max_stalls) {
        jobq_failure f = {.message = "job stalled more than max_stalls times",
                          .type = "stalled",
                          .retryable = 0,
                          .retry_in_ms = -1};
        jobq_fail_attempt(e, j, &f, now);
        return;
    }
    if (x->worker)
        jobq_worker_active(e, x->worker, -1);
    jobq_make_ready(e, j, now);
}

static void attempt_timed_out(jobq_engine *e, jobq_job *j, int64_t now)
{
    char msg[96];
    jobq_failure f = {.type = "timeout", .retryable = 1, .retry_in_ms = -1};

    snprintf(msg, sizeof msg, "attempt ran past timeout_ms (%" PRId64 " ms)",
             (int64_t)j->timeout_ms);
    f.message = msg;
    j->x->lease = 0; /* the old worker's lease is refused from now on */
    jobq_fail_attempt(e, j, &f, now);
}

/* ---------------------------------------------------------------- dispatch */

/* The job q would hand out next to a worker with capacity cap (NULL: none declared), or
 * NULL. Plain queues take the head of q->ready; grouped ones the first unsaturated slot. */
static jobq_job *ready_head(jobq_engine *e, jobq_queue *q, jobq_worker *w,
                            const jobq_resources *cap, int64_t now, jobq_job **passed)
{
    GSequenceIter *it;

    *passed = NULL;
    if (!q || q->deleted || !jobq_queue_can_dispatch(q))
        return NULL;
    if (q->gated && (!g_sequence_get_length(q->ready) || !jobq_gate_open(e, q, now)))
        return NULL;
    if (cap)
        return jobq_fit_pick(e, q, w, cap, passed);
    if (q->fair)
        return jobq_fair_head(q);
    it = g_sequence_get_begin_iter(q->ready);
    return g_sequence_iter_is_end(it) ? NULL : g_sequence_get(it);
}

static void activate(jobq_engine *e, jobq_job *j, const char *worker, int64_t now)
{
    jobq_job_extra *x = jobq_extra(j);

    g_free(x->worker);
    x->worker = g_strdup(worker ? worker : "anonymous");
    do
        x->lease = jobq_rand(e);
    while (x->lease <= 1);
    x->started_at = now;
    x->lease_expires_at = now + j->lease_ms;
    x->deadline = j->timeout_ms > 0 ? now + j->timeout_ms : 0;
    if (x->log_attempt != j->attempt + 1) {
        x->log_attempt = j->attempt + 1;
    }
    jobq_stats_started(e, j->q, now - (j->run_at ? j->run_at : j->created_at), now);
    jobq_set_state(e, j, JOBQ_ACTIVE, now);
    jobq_timer_set(
        e, j, x->deadline && x->deadline < x->lease_expires_at ? x->deadline : x->lease_expires_at);
    jobq_worker_active(e, x->worker, +1);
}

size_t jobq_engine_fetch(jobq_engine *e, const char *const *queues, size_t nq, size_t count,
                         const char *worker, int64_t now, jobq_job **out)
{
    return jobq_engine_fetch_fit(e, queues, nq, count, worker, NULL, now, out);
}

size_t jobq_engine_fetch_fit(jobq_engine *e, const char *const *queues, size_t nq, size_t count,
                             const char *worker, const jobq_resources *cap, int64_t now,
                             jobq_job **out)
{
    jobq_queue *qs[64];
    /* a fetch without a worker id runs its jobs as "anonymous" (activate): its resources
     * are that one's */
    const char *wid = worker ? worker : "anonymous";
    jobq_worker *w = cap ? g_hash_table_lookup(e->workers, wid) : NULL;
    size_t n = 0, m = 0;

    for (size_t i = 0; i < nq && m < 64; i++) {
        jobq_queue *q = g_hash_table_lookup(e->queues, queues[i]);
        if (q)
            qs[m++] = q;
    }
    while (n < count) {
        jobq_job *best = NULL, *best_passed = NULL;

        if (e->max_active > 0 && e->nactive >= e->max_active)
            break;
        for (size_t i = 0; i < m; i++) {
            jobq_job *passed, *h = ready_head(e, qs[i], w, cap, now, &passed);
            if (h && (!best || jobq_ready_cmp(h, best, NULL) < 0)) {
                best = h;
                best_passed = passed;
            }
        }
        if (!best)
            break;
        if (best_passed) /* a bigger job was passed over for this one */
            best_passed->x->skips++;
        if (best->x)
            best->x->skips = 0;
        activate(e, best, worker, now);
        if (best->q->gated)
            jobq_dispatched(e, best->q, best, now);
        if (cap && !w)
            w = g_hash_table_lookup(e->workers, wid);
        out[n++] = best;
    }
    return n;
}

int64_t jobq_engine_job_position(const jobq_engine *e, const jobq_job *j)
{
    (void)e;
    if (j->state != JOBQ_WAITING)
        return -1;
    if (!j->ready) /* not durable yet: behind everything already fetchable */
        return g_sequence_get_length(j->q->ready);
    return g_sequence_iter_get_position(j->ready);
}

int64_t jobq_engine_estimated_start(const jobq_engine *e, const jobq_job *j, int64_t now)
{
    int64_t pos = jobq_engine_job_position(e, j);
    double r;

    if (pos < 0)
        return -1;
    if (pos == 0) /* nothing ahead of it: it starts with the next fetch */
        return 0;
    r = jobq_queue_rate_per_ms(j->q, now);
    if (r <= 0) /* no completions in the last two minutes: no basis for a guess */
        return -1;
    return (int64_t)((double)pos / r);
}

/* ---------------------------------------------------------------- listing */

static int job_matches(const jobq_job *j, const jobq_job_filter *f)
{
    if (f->queue && j->q != f->queue)
        return 0;
    if (f->states && !(f->states & (1u << j->state)))
        return 0;
    if (f->group && (!j->x || !j->x->group || strcmp(j->x->group, f->group)))
        return 0;
    if (f->project && (!j->x || !j->x->project || strcmp(j->x->project, f->project)))
        return 0;
    if (f->tag_key) {
        json_t *tags, *v;
        int ok;
        if (!j->x || !j->x->tags)
            return 0;
        tags = json_loads(j->x->tags, 0, NULL);
        v = json_object_get(tags, f->tag_key);
        ok = json_is_string(v) && strcmp(json_string_value(v), f->tag_value) == 0;
        json_decref(tags);
        if (!ok)
            return 0;
    }
    return 1;
}

size_t jobq_engine_job_list(const jobq_engine *e, const jobq_job_filter *f, const char *cursor,
                            size_t limit, jobq_job **out, char next[JOBQ_CURSOR_MAX])
{
    const jobq_link *l = e->all.head.prev;
    size_t n = 0;
    int64_t below = INT64_MAX;

    next[0] = '\0';
    if (limit == 0)
        return 0;
    if (cursor && *cursor) {
        char *end;
        jobq_job *c;
        below = strtoll(cursor, &end, 10);
        c = *end == '-' ? jobq_engine_job(e, end + 1) : NULL;
        if (c && c->seq == below)
            l = c->alink.prev; /* O(1) resume */
    }
    if (f->queue) { /* nothing of that queue in the asked states: done at once */
        int64_t any = 0;
        for (int s = 0; s < JOBQ_NSTATES; s++)
            if (!f->states || (f->states & (1u << s)))
                any += f->queue->counts[s];
        if (!any)
            return 0;
    }
    for (; l != &e->all.head; l = l->prev) {
        jobq_job *j = JOB_OF_ALINK(l);
        if (j->seq >= below || !job_matches(j, f))
            continue;
        if (n == limit) {
            jobq_job *last = out[n - 1];
            snprintf(next, JOBQ_CURSOR_MAX, "%" PRId64 "-%s", last->seq, JOB_ID(last));
            break;
        }
        out[n++] = j;
    }
    return n;
}
