/*
 * test_engine_limits_model.c — grouped dispatch under random operations.
 *
 * groups_churn: random enqueues (groups, tiers, priorities) into three grouped queues,
 * fetches, completions, failures of every kind, releases, cancels, deletes, stalls, queue
 * patches (group_concurrency, fairness), job priority patches, tier changes, pause / resume / drain, clear,
 * recover, server-wide cap changes and restarts through a simulated store; one queue has a
 * rate limit, one a circuit breaker, some jobs require resources and one worker declares a
 * capacity. After every step the group index must
 * agree with the jobs: each group's active count equals its active jobs (a leaked count
 * starves the group forever), its limit and saturation follow the queue and its tier, a
 * group with neither ready nor active jobs is freed, a fetch that hands out less than asked
 * leaves no job that could have gone, no rate window holds more than its max, an open
 * breaker lets exactly one trial go, each worker's count of running jobs and the resources
 * they hold are exact, and the worker with a capacity never runs more than it has.
 *
 * It reads the group index through engine/internal.h.
 */
#include "helpers.h"
#include "engine/internal.h"

#define NQ 3
static const char *const qnames[NQ] = {"rr", "fifo", "tiered"};

typedef struct lm {
    jobq_engine *e;
    simstore *s;
    int64_t now;
    uint64_t r;
    GPtrArray *jobs; /* live (not final, not deleted) jobs we know of */
    int64_t fetched;
    GArray *starts;       /* dispatch times of "rr" (rate limited: 5 per second) */
    int64_t restarted_at; /* the window is exact between restarts (docs/limits.md) */
    jobq_resources *gpu3; /* worker w0's capacity */
} lm;

#define RATE_MAX 5
#define RATE_MS 1000

/* Dispatches of "rr" in (now - RATE_MS, now] at or after `since`. */
static int64_t in_window(const lm *m, int64_t since)
{
    int64_t n = 0;

    for (guint i = m->starts->len; i-- > 0;) {
        int64_t t = g_array_index(m->starts, int64_t, i);
        if (t <= m->now - RATE_MS)
            break;
        n += t >= since;
    }
    return n;
}

static uint64_t prng(lm *m)
{
    m->r ^= m->r << 13;
    m->r ^= m->r >> 7;
    m->r ^= m->r << 17;
    return m->r;
}

static const char *group_name(const jobq_job *j)
{
    return j->x && j->x->group ? j->x->group : "";
}

/* The limit a group should have: min of the queue's and its tier's, 0 = none. */
static int64_t want_limit(const jobq_engine *e, const jobq_queue *q, const jobq_group *g)
{
    int64_t lim = q->o.group_concurrency;
    jobq_tier t;

    if (!g->name[0])
        return 0;
    if (g->tier && jobq_engine_get_tier(e, g->tier, &t) == 0 && t.group_concurrency > 0 &&
        (lim == 0 || t.group_concurrency < lim))
        lim = t.group_concurrency;
    return lim;
}

static void check_queue(lm *m, jobq_queue *q)
{
    GHashTable *act = g_hash_table_new(g_str_hash, g_str_equal);
    GHashTable *seen = g_hash_table_new(g_str_hash, g_str_equal);
    GHashTableIter it;
    gpointer k, v;

    for (jobq_link *l = q->active.head.next; l != &q->active.head; l = l->next) {
        jobq_job *j = JOB_OF_QLINK(l);
        const char *g = group_name(j);
        g_hash_table_insert(act, (gpointer)g,
                            GINT_TO_POINTER(GPOINTER_TO_INT(g_hash_table_lookup(act, g)) + 1));
        g_hash_table_add(seen, (gpointer)g);
        if (q->fair) {
            cr_assert(j->x && j->x->gcounted, "active job %s not counted in its group",
                      jobq_job_id(j));
            cr_assert(j->x->grp == g_hash_table_lookup(q->groups, g));
        }
    }
    {
        /* a job neither ready nor active holds no group (it may be freed meanwhile) */
        jobq_list *other[] = {&q->pending, &q->delayed, &q->completed, &q->failed_l,
                              &q->cancelled};
        for (size_t i = 0; i < G_N_ELEMENTS(other); i++)
            for (jobq_link *l = other[i]->head.next; l != &other[i]->head; l = l->next) {
                jobq_job *j = JOB_OF_QLINK(l);
                cr_assert(!j->x || !j->x->grp, "job %s (%s) keeps a group", jobq_job_id(j),
                          jobq_state_name(jobq_job_state(j)));
            }
    }
    if (!q->fair) {
        g_hash_table_destroy(act);
        g_hash_table_destroy(seen);
        return;
    }
    for (GSequenceIter *si = g_sequence_get_begin_iter(q->ready); !g_sequence_iter_is_end(si);
         si = g_sequence_iter_next(si)) {
        jobq_job *j = g_sequence_get(si);
        cr_assert(j->x && j->x->slot, "ready job %s in no slot", jobq_job_id(j));
        cr_assert(j->x->grp == g_hash_table_lookup(q->groups, group_name(j)));
        cr_assert_eq(j->x->slot->g, j->x->grp);
        cr_assert_eq(j->x->slot->priority, j->priority);
        g_hash_table_add(seen, (gpointer)group_name(j));
    }
    cr_assert_eq(g_hash_table_size(q->groups), g_hash_table_size(seen),
                 "queue %s keeps %u groups for %u with jobs", q->name,
                 g_hash_table_size(q->groups), g_hash_table_size(seen));
    g_hash_table_iter_init(&it, q->groups);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        jobq_group *g = v;
        int64_t n = GPOINTER_TO_INT(g_hash_table_lookup(act, g->name));
        size_t ready = 0;

        cr_assert_eq(g->active, n, "group '%s' of %s counts %" PRId64 " active, has %" PRId64,
                     g->name, q->name, g->active, n);
        cr_assert_eq(g->limit, want_limit(m->e, q, g), "group '%s' limit %" PRId64, g->name,
                     g->limit);
        cr_assert_eq(g->saturated, g->limit > 0 && g->active >= g->limit);
        for (jobq_gslot *s = g->slots; s; s = s->next) {
            cr_assert_eq(s->in_line, !g->saturated, "slot of '%s' in line while saturated",
                         g->name);
            cr_assert_not_null(s->first);
            for (jobq_job *j = s->first; j; j = j->x->gnext) {
                cr_assert_eq(jobq_job_state(j), JOBQ_WAITING);
                cr_assert_eq(j->x->slot, s);
                if (j->x->gnext)
                    cr_assert_lt(j->seq, j->x->gnext->seq);
                ready++;
            }
        }
        (void)ready;
    }
    g_hash_table_destroy(act);
    g_hash_table_destroy(seen);
}

static void check(lm *m)
{
    GHashTableIter it;
    gpointer k, v;
    int64_t nactive = 0;

    g_hash_table_iter_init(&it, m->e->queues);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        jobq_queue *q = v;
        nactive += (int64_t)q->active.n;
        cr_assert_eq(q->counts[JOBQ_ACTIVE], (int64_t)q->active.n);
        check_queue(m, q);
    }
    cr_assert_eq(jobq_engine_active_total(m->e), nactive, "server-wide active count %" PRId64
                 " for %" PRId64 " active jobs", jobq_engine_active_total(m->e), nactive);
    /* each worker's count of running jobs (what keeps it, and what its jobs hold, from being
     * forgotten) */
    {
        GHashTable *per = g_hash_table_new(g_str_hash, g_str_equal);
        double gpu = 0, ram = 0; /* what w0's running jobs require */
        for (jobq_link *l = m->e->all.head.next; l != &m->e->all.head; l = l->next) {
            jobq_job *j = JOB_OF_ALINK(l);
            if (jobq_job_state(j) == JOBQ_ACTIVE && !strcmp(j->x->worker, "w0") && j->x->req)
                for (size_t i = 0; i < j->x->req->n; i++)
                    *(strcmp(j->x->req->names[i], "gpu") ? &ram : &gpu) += j->x->req->v[i];
            if (jobq_job_state(j) == JOBQ_ACTIVE)
                g_hash_table_insert(per, j->x->worker,
                                    GINT_TO_POINTER(GPOINTER_TO_INT(
                                                        g_hash_table_lookup(per, j->x->worker)) +
                                                    1));
        }
        g_hash_table_iter_init(&it, m->e->workers);
        while (g_hash_table_iter_next(&it, &k, &v)) {
            jobq_worker *w = v;
            cr_assert_eq(w->active, GPOINTER_TO_INT(g_hash_table_lookup(per, w->id)),
                         "worker %s counts %" PRId64 " running jobs", w->id, w->active);
            if (!strcmp(w->id, "w0")) {
                double wg = 0, wr = 0;
                for (size_t i = 0; w->used && i < w->used->n; i++)
                    *(strcmp(w->used->names[i], "gpu") ? &wr : &wg) += w->used->v[i];
                cr_assert(wg == gpu && wr == ram, "w0 holds gpu %g ram %g, its jobs %g %g", wg,
                          wr, gpu, ram);
                cr_assert(gpu <= 3 && ram <= 1, "w0 runs more than it has: gpu %g ram %g", gpu,
                          ram);
            }
        }
        g_hash_table_destroy(per);
    }
}

/* After a fetch that handed out fewer than asked from q: nothing in q could have gone. */
static void check_nothing_left(lm *m, jobq_queue *q, int with_capacity)
{
    if (m->e->max_active > 0 && m->e->nactive >= m->e->max_active)
        return;
    if (!jobq_queue_can_dispatch(q) || q->backoff_until > m->now) /* paused, full, 429 */
        return;
    if (q->cb_state != CB_CLOSED) /* the breaker holds it back */
        return;
    if (q->o.rate_per_ms > 0 && in_window(m, 0) >= RATE_MAX) /* the window is full */
        return;
    for (GSequenceIter *si = g_sequence_get_begin_iter(q->ready); !g_sequence_iter_is_end(si);
         si = g_sequence_iter_next(si)) {
        jobq_job *j = g_sequence_get(si);
        if (with_capacity && j->x && j->x->req)
            return; /* what fits is checked by the resource invariants */
    }
    for (GSequenceIter *si = g_sequence_get_begin_iter(q->ready); !g_sequence_iter_is_end(si);
         si = g_sequence_iter_next(si)) {
        jobq_job *j = g_sequence_get(si);
        cr_assert(q->fair && j->x->grp->saturated,
                  "job %s of group '%s' left waiting by a short fetch", jobq_job_id(j),
                  group_name(j));
    }
}

static void forget_final(lm *m)
{
    for (guint i = 0; i < m->jobs->len;) {
        jobq_job *j = g_ptr_array_index(m->jobs, i);
        int st = jobq_job_state(j);
        if (st == JOBQ_COMPLETED || st == JOBQ_FAILED || st == JOBQ_CANCELLED)
            g_ptr_array_remove_index_fast(m->jobs, i);
        else
            i++;
    }
}

static jobq_job *pick(lm *m, int state)
{
    for (int tries = 0; tries < 8 && m->jobs->len; tries++) {
        jobq_job *j = g_ptr_array_index(m->jobs, prng(m) % m->jobs->len);
        if (state < 0 || jobq_job_state(j) == state)
            return j;
    }
    return NULL;
}

static void op_enqueue(lm *m)
{
    static const char *const tiers[] = {NULL, "free", "pro", "gold"};
    char group[16];
    jobq_job_spec s = spec_default();

    const char *q = qnames[prng(m) % NQ];

    snprintf(group, sizeof group, "u%d", (int)(prng(m) % 40));
    s.group = prng(m) % 8 ? group : NULL;
    /* a tiered job makes a queue grouped for good: only "tiered" gets them, so the others
     * go in and out of grouped dispatch as their options are patched */
    s.tier = strcmp(q, "tiered") ? NULL : tiers[prng(m) % 4];
    if (prng(m) % 4 == 0)
        s.requires = prng(m) % 2 ? "{\"gpu\": 1}" : "{\"gpu\": 2, \"ram\": 1}";
    if (prng(m) % 3 == 0) {
        s.has_priority = 1;
        s.priority = (int)(prng(m) % 3) * 10;
    }
    {
        jobq_job *j = NULL;
        long bad = 0;
        int rc = jobq_engine_enqueue(m->e, q, &s, 1, m->now, &j, &bad);
        if (rc == 0)
            g_ptr_array_add(m->jobs, j);
        else /* a draining queue takes nothing new */
            cr_assert_eq(jobq_engine_queue(m->e, q)->status, JOBQ_Q_DRAINING, "enqueue = %d", rc);
    }
}

static void op_fetch(lm *m)
{
    jobq_queue *q = jobq_engine_queue(m->e, qnames[prng(m) % NQ]);
    size_t want = 1 + prng(m) % 4;
    jobq_job *out[4];
    char worker[8];
    size_t n;

    int cb = q->cb_state;

    snprintf(worker, sizeof worker, "w%d", (int)(prng(m) % 3));
    if (worker[1] == '0') { /* w0 declares what it has: 3 gpus */
        const char *qs[1] = {q->name};
        n = jobq_engine_fetch_fit(m->e, qs, 1, want, worker, m->gpu3, m->now, out);
    } else {
        n = fetchq(m->e, q->name, want, worker, m->now, out);
    }
    m->fetched += (int64_t)n;
    /* the breaker: nothing while a trial is out, exactly one trial after the cooldown */
    if (cb == CB_HALF_OPEN)
        cr_assert_eq(n, 0, "a second trial while one is out");
    if (cb == CB_OPEN) {
        cr_assert_leq(n, 1, "%zu trials at once", n);
        if (n)
            cr_assert_eq(q->cb_state, CB_HALF_OPEN);
    }
    if (q->o.rate_per_ms > 0) {
        for (size_t i = 0; i < n; i++)
            g_array_append_val(m->starts, m->now);
        cr_assert_leq(in_window(m, m->restarted_at), RATE_MAX,
                      "more than %d starts in a window", RATE_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        jobq_group *g = q->fair ? out[i]->x->grp : NULL;
        cr_assert_eq(jobq_job_state(out[i]), JOBQ_ACTIVE);
        if (g && g->limit > 0)
            cr_assert_leq(g->active, g->limit, "group '%s' over its limit", g->name);
    }
    if (n < want)
        check_nothing_left(m, q, worker[1] == '0');
}

static void op_end(lm *m)
{
    jobq_job *j = pick(m, JOBQ_ACTIVE);
    lease_buf l;
    jobq_failure f;
    int repeat;

    if (!j)
        return;
    l = lease_of(j);
    if (!strcmp(j->q->name, "fifo") && prng(m) % 2) { /* its provider is often down */
        f = failure("provider", 1, prng(m) % 2 ? 0 : 500);
        cr_assert_eq(jobq_engine_fail(m->e, j, l.s, &f, m->now, &repeat), 0);
        return;
    }
    switch (prng(m) % 6) {
    case 0:
    case 1:
        cr_assert_eq(complete_with(m->e, j, l.s, m->now), 0);
        break;
    case 2:
        f = failure(prng(m) % 2 ? "provider" : "other", (int)(prng(m) % 2),
                    prng(m) % 2 ? 0 : 500);
        cr_assert_eq(jobq_engine_fail(m->e, j, l.s, &f, m->now, &repeat), 0);
        break;
    case 3:
        f = failure("rate_limit", 1, (int64_t)(prng(m) % 2) * 300);
        f.queue_backoff = (int)(prng(m) % 2);
        cr_assert_eq(jobq_engine_fail(m->e, j, l.s, &f, m->now, &repeat), 0);
        break;
    case 4:
        cr_assert_eq(jobq_engine_release(m->e, j, l.s, m->now), 0);
        break;
    default:
        cr_assert_eq(jobq_engine_job_cancel(m->e, j, m->now), 0);
        break;
    }
}

static void op_remove(lm *m)
{
    jobq_job *j = pick(m, -1);

    if (!j)
        return;
    if (prng(m) % 2) {
        int st = jobq_job_state(j);
        int rc = jobq_engine_job_cancel(m->e, j, m->now);
        cr_assert(rc == 0 || st == JOBQ_ACTIVE, "cancel = %d", rc);
    } else if (jobq_job_state(j) != JOBQ_ACTIVE) { /* an active job cannot be deleted */
        cr_assert_eq(jobq_engine_job_delete(m->e, j, m->now), 0);
        g_ptr_array_remove_fast(m->jobs, j);
    }
}

static void op_patch(lm *m)
{
    jobq_queue *q = jobq_engine_queue(m->e, qnames[prng(m) % NQ]);
    jobq_queue_opts o;

    if (prng(m) % 3 == 0) { /* a job's priority instead: it moves to another slot */
        jobq_job *j = pick(m, -1);
        int st = j ? jobq_job_state(j) : -1;
        if (st == JOBQ_WAITING || st == JOBQ_RETRYING)
            cr_assert_eq(jobq_engine_job_patch(m->e, j, 1, (int)(prng(m) % 3) * 10, 0, 0, m->now),
                         0);
        return;
    }
    jobq_queue_opts_default(&o);
    if (prng(m) % 2) {
        o.set = JOBQ_QO_GROUP_CONCURRENCY;
        o.group_concurrency = (int64_t)(prng(m) % 4);
    } else {
        o.set = JOBQ_QO_FAIRNESS;
        o.fairness = (int)(prng(m) % 3); /* unset, round_robin, fifo */
    }
    cr_assert_eq(jobq_engine_queue_patch(m->e, q, &o, m->now), 0);
    jobq_queue_opts_clear(&o);
}

static void op_tier(lm *m)
{
    static const char *const names[] = {"free", "pro", "gold"};
    jobq_tier t = {.group_concurrency = (int64_t)(prng(m) % 4)};

    if (prng(m) % 4 == 0)
        jobq_engine_set_tier(m->e, names[prng(m) % 3], NULL, m->now);
    else
        jobq_engine_set_tier(m->e, names[prng(m) % 3], &t, m->now);
}

static void op_pause(lm *m)
{
    jobq_queue *q = jobq_engine_queue(m->e, qnames[prng(m) % NQ]);

    if (prng(m) % 2)
        jobq_engine_queue_pause(m->e, q, m->now);
    else
        jobq_engine_queue_resume(m->e, q, m->now);
}

static void set_rr(jobq_queue_opts *o)
{
    o->fairness = JOBQ_FAIR_ROUND_ROBIN;
    o->group_concurrency = 2;
    o->rate_max = RATE_MAX;
    o->rate_per_ms = RATE_MS;
}

static void set_fifo(jobq_queue_opts *o)
{
    o->fairness = JOBQ_FAIR_FIFO;
    o->group_concurrency = 1;
    o->cb_failures = 3;
    o->cb_cooldown_ms = 2000;
}

static void lm_engine(lm *m, uint64_t seed)
{
    jobq_tier free_t = {.group_concurrency = 1}, pro_t = {.group_concurrency = 3};

    m->e = eng_new(NULL, seed);
    jobq_engine_set_tier(m->e, "free", &free_t, m->now);
    jobq_engine_set_tier(m->e, "pro", &pro_t, m->now);
}

/* Tracks every live job of the engine again (after operations that remove jobs in bulk). */
static void retrack(lm *m)
{
    g_ptr_array_set_size(m->jobs, 0);
    for (jobq_link *l = m->e->all.head.next; l != &m->e->all.head; l = l->next) {
        jobq_job *j = JOB_OF_ALINK(l);
        int st = jobq_job_state(j);
        if (st != JOBQ_COMPLETED && st != JOBQ_FAILED && st != JOBQ_CANCELLED)
            g_ptr_array_add(m->jobs, j);
    }
}

/* Queue-wide operations: clear (waiting jobs removed), recover (a worker's active jobs
 * back to waiting), drain. */
static void op_queue(lm *m)
{
    jobq_queue *q = jobq_engine_queue(m->e, qnames[prng(m) % NQ]);
    char worker[8];

    switch (prng(m) % 4) {
    case 0:
        if (prng(m) % 4 == 0) { /* rarely: the backlog goes */
            cr_assert_geq(jobq_engine_queue_clear(m->e, q, m->now), 0);
            retrack(m);
        }
        break;
    case 1:
    case 2:
        snprintf(worker, sizeof worker, "w%d", (int)(prng(m) % 3));
        cr_assert_geq(jobq_engine_queue_recover(m->e, q, worker, 0, m->now), 0);
        break;
    default:
        jobq_engine_queue_drain(m->e, q, m->now);
        break;
    }
}

static void op_restart(lm *m)
{
    commit_to(m->e, m->s, m->now);
    jobq_engine_free(m->e);
    g_ptr_array_set_size(m->jobs, 0);
    lm_engine(m, prng(m));
    sim_load(m->s, m->e, m->now);
    retrack(m);
    m->restarted_at = m->now;
}

Test(limits_model, groups_churn)
{
    lm m = {.now = T0, .r = 0x9e3779b97f4a7c15ULL};

    m.s = sim_new();
    m.jobs = g_ptr_array_new();
    m.starts = g_array_new(FALSE, FALSE, sizeof(int64_t));
    m.gpu3 = jobq_resources_from_text("{\"gpu\": 3, \"ram\": 1}");
    lm_engine(&m, 7);
    mkq(m.e, "rr", m.now, set_rr);
    mkq(m.e, "fifo", m.now, set_fifo);
    mkq(m.e, "tiered", m.now, NULL);
    commit_to(m.e, m.s, m.now);
    for (int step = 0; step < 15000; step++) {
        unsigned op = (unsigned)(prng(&m) % 1000);

        if (op < 220)
            op_enqueue(&m);
        else if (op < 550)
            op_fetch(&m);
        else if (op < 800)
            op_end(&m);
        else if (op < 860)
            op_remove(&m);
        else if (op < 890)
            op_patch(&m);
        else if (op < 910)
            op_tier(&m);
        else if (op < 925)
            op_pause(&m);
        else if (op < 935)
            op_queue(&m);
        else if (op < 950)
            jobq_engine_set_max_active(m.e, (int64_t)(prng(&m) % 12), m.now);
        else if (op < 998) {
            m.now += (int64_t)(prng(&m) % 8000); /* leases (30 s) run out now and then */
            jobq_engine_tick(m.e, m.now);
        } else {
            op_restart(&m);
        }
        if (prng(&m) % 3)
            commit_to(m.e, m.s, m.now);
        forget_final(&m);
        check(&m);
    }
    cr_assert_gt(m.fetched, 1200, "only %" PRId64 " jobs dispatched", m.fetched);
    g_ptr_array_free(m.jobs, TRUE);
    g_array_free(m.starts, TRUE);
    jobq_resources_free(m.gpu3);
    jobq_engine_free(m.e);
    sim_free(m.s);
}
