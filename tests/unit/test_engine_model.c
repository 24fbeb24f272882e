/*
 * test_engine_model.c — the engine against a reference model.
 *
 * position_churn: random enqueue / fetch / cancel / priority patch / complete on one queue;
 * after every step every waiting job's position must equal the one a naive sort gives.
 *
 * model_100k: 100,000 random operations on three queues (enqueue and bulk enqueue with ids,
 * priorities, delays, options; fetch from random queue sets; complete, fail of every kind,
 * heartbeat, cancel, retry, priority and run_at patches, delete, stale leases, pause /
 * resume / drain, recover, clear, time passing, the commit protocol, and restarts through a
 * simulated store). The model is a plain array; after every step it and the engine must
 * agree on every job (state, attempt, priority, stalls, run_at, lease, lease expiry), on each
 * waiting job's position (hence the fetch order), on the queues' counts and status, on the
 * timer heap and on the hooks; every fetch must hand out exactly the jobs the model picks.
 *
 * This file reads a few fields without a public getter (priority, stalls, run_at, the timer
 * heap) through engine/internal.h.
 */
#include "helpers.h"
#include "engine/internal.h"

/* ---------------------------------------------------------------- position under churn */

typedef struct pjob {
    jobq_job *j;
    int prio;
    int64_t seq;
} pjob;

static int pjob_cmp(const void *a, const void *b)
{
    const pjob *x = a, *y = b;

    if (x->prio != y->prio)
        return x->prio > y->prio ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

Test(engine, position_churn)
{
    jobq_engine *e = eng_new(NULL, 300);
    uint64_t r = 0x1234567;
    GPtrArray *live = g_ptr_array_new();
    pjob w[2048];
    int64_t t = T0;

#define PRNG() (r ^= r << 13, r ^= r >> 7, r ^= r << 17, r)
    for (int step = 0; step < 6000; step++) {
        unsigned op = (unsigned)(PRNG() % 100);
        size_t nw = 0;

        if (op < 40 || live->len < 5) {
            int prio = (int)(PRNG() % 7) - 3;
            if (PRNG() % 20 == 0)
                prio = (int)(PRNG() % 2001) - 1000;
            g_ptr_array_add(live, enq(e, "q", NULL, prio, t));
        } else if (op < 60) {
            jobq_job *out[3];
            size_t n = fetchq(e, "q", 1 + PRNG() % 3, "w", t, out);
            for (size_t i = 0; i < n; i++)
                complete_ok(e, out[i], t);
        } else if (op < 75) {
            jobq_job *j = g_ptr_array_index(live, PRNG() % live->len);
            if (jobq_job_state(j) == JOBQ_WAITING)
                cr_assert_eq(jobq_engine_job_cancel(e, j, t), 0);
        } else if (op < 95) {
            jobq_job *j = g_ptr_array_index(live, PRNG() % live->len);
            if (jobq_job_state(j) == JOBQ_WAITING)
                cr_assert_eq(jobq_engine_job_patch(e, j, 1, (int)(PRNG() % 9) - 4, 0, 0, t), 0);
        } else {
            /* retry a cancelled one: it goes back by its old seq */
            jobq_job *j = g_ptr_array_index(live, PRNG() % live->len);
            if (jobq_job_state(j) == JOBQ_CANCELLED)
                cr_assert_eq(jobq_engine_job_retry(e, j, t), 0);
        }
        if (PRNG() % 4)
            commit(e, t);
        /* drop final jobs from the tracking array (the engine keeps 1000 of them) */
        for (guint i = 0; i < live->len;) {
            jobq_job *j = g_ptr_array_index(live, i);
            if (jobq_job_state(j) == JOBQ_COMPLETED) {
                g_ptr_array_remove_index_fast(live, i);
                continue;
            }
            i++;
        }
        /* naive positions: sort the fetchable waiting jobs; uncommitted ones come after */
        for (guint i = 0; i < live->len; i++) {
            jobq_job *j = g_ptr_array_index(live, i);
            if (jobq_job_state(j) == JOBQ_WAITING && j->ready) {
                cr_assert_lt(nw, 2048);
                w[nw].j = j;
                w[nw].prio = j->priority;
                w[nw].seq = jobq_job_seq(j);
                nw++;
            }
        }
        qsort(w, nw, sizeof w[0], pjob_cmp);
        for (size_t i = 0; i < nw; i++)
            cr_assert_eq(jobq_engine_job_position(e, w[i].j), (int64_t)i,
                         "step %d: position of %s is %" PRId64 ", naive %zu", step,
                         jobq_job_id(w[i].j), jobq_engine_job_position(e, w[i].j), i);
        for (guint i = 0; i < live->len; i++) {
            jobq_job *j = g_ptr_array_index(live, i);
            if (jobq_job_state(j) != JOBQ_WAITING)
                cr_assert_eq(jobq_engine_job_position(e, j), -1);
            else if (!j->ready)
                cr_assert_eq(jobq_engine_job_position(e, j), (int64_t)nw);
        }
        t += 1;
    }
#undef PRNG
    g_ptr_array_free(live, TRUE);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- the reference model */

#define NQ 3
#define MAX_FINAL 48
#define STEPS 100000

static const char *const QN[NQ] = {"m0", "m1", "m2"};

typedef struct mjob {
    char id[16];
    int q;
    int64_t seq;
    int state, prio, attempt, stalls, max_attempts;
    int bst; /* enqueue: 0 not taken, 1 in the batch in flight, 2 durable */
    int cancel_req;
    int blist;    /* 1: backoff list {100, 2500, 700}; 0: queue default fixed 1000 */
    int reloaded; /* loaded by a restart since its last attempt ended */
    int64_t run_at, lease_exp, deadline, lease_ms, timeout_ms;
    char lease[17]; /* current lease while active */
    char kept[17];  /* the lease the engine keeps for idempotent repeats ("" = none) */
    char last[17];  /* lease of the last attempt that ended */
    char worker[4];
} mjob;

typedef struct mqueue {
    int status;
    int64_t conc, max_size;
    int max_stalls;
} mqueue;

typedef struct model {
    mjob *j;
    size_t n, cap;
    mqueue q[NQ];
    int64_t now, last_seq;
    int inflight;
    int64_t finals, deletes;
    uint64_t rng;
    unsigned idc;
    long step;
    int restarts;
    jobq_backoff *list_bo;
    jobq_engine *e;
    hook_log h;
    simstore *s;
} model;

/* assert with the step in the message */
#define MA(cond, ...)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            char msg_[512];                                                                        \
            snprintf(msg_, sizeof msg_, __VA_ARGS__);                                              \
            cr_assert_fail("step %ld (JOBQ_MODEL_SEED=%s): %s", m->step,                           \
                           getenv("JOBQ_MODEL_SEED") ? getenv("JOBQ_MODEL_SEED") : "", msg_);      \
        }                                                                                          \
    } while (0)

static uint64_t rnd(model *m)
{
    m->rng ^= m->rng >> 12;
    m->rng ^= m->rng << 25;
    m->rng ^= m->rng >> 27;
    return m->rng * 2685821657736338717ull;
}

static int rn(model *m, int n)
{
    return (int)(rnd(m) % (uint64_t)n);
}

static int64_t m_backoff(const mjob *x, int attempt)
{
    static const int64_t l[] = {100, 2500, 700};

    if (attempt < 1)
        attempt = 1;
    if (x->blist)
        return l[attempt - 1 < 3 ? attempt - 1 : 2];
    return 1000;
}

static jobq_job *ej(const model *m, const mjob *x)
{
    jobq_job *j = jobq_engine_job(m->e, x->id);

    MA(j != NULL, "job %s missing from the engine", x->id);
    return j;
}

static mjob *m_find(model *m, const char *id)
{
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->j[i].id, id))
            return &m->j[i];
    return NULL;
}

static void m_remove(model *m, mjob *x)
{
    *x = m->j[--m->n];
}

static int64_t m_count(const model *m, int q, int state)
{
    int64_t n = 0;

    for (size_t i = 0; i < m->n; i++)
        n += m->j[i].q == q && m->j[i].state == state;
    return n;
}

static void m_final(model *m, mjob *x, int st)
{
    x->state = st;
    x->cancel_req = 0;
    x->run_at = 0;
    m->finals++;
}

/* The running attempt of x ends (its lease is no longer current); keep_lease: the engine
 * keeps it for repeats (worker complete / fail) or drops it (stall, timeout, recover). */
static void m_end_attempt(mjob *x, int keep_lease)
{
    memcpy(x->last, x->lease, sizeof x->last);
    if (!keep_lease)
        x->kept[0] = '\0';
    x->lease[0] = '\0';
    x->reloaded = 0;
}

static void m_fail_attempt(model *m, mjob *x, const char *type, int retryable, int64_t retry_in)
{
    int rl = type && !strcmp(type, "rate_limit");
    int64_t d;

    if (x->cancel_req) {
        m_final(m, x, JOBQ_CANCELLED);
        return;
    }
    if (!rl)
        x->attempt++;
    if (!rl && (!retryable || x->attempt >= x->max_attempts)) {
        m_final(m, x, JOBQ_FAILED);
        return;
    }
    d = retry_in >= 0 ? retry_in : m_backoff(x, rl ? x->attempt + 1 : x->attempt);
    if (d <= 0) {
        x->state = JOBQ_WAITING;
        x->run_at = 0;
        return;
    }
    x->state = JOBQ_RETRYING;
    x->run_at = m->now + d;
}

static int m_can_dispatch(const model *m, int q)
{
    if (m->q[q].status != JOBQ_Q_ACTIVE && m->q[q].status != JOBQ_Q_DRAINING)
        return 0;
    return !m->q[q].conc || m_count(m, q, JOBQ_ACTIVE) < m->q[q].conc;
}

static void m_drain_rule(model *m)
{
    for (int q = 0; q < NQ; q++) {
        int live = 0;
        if (m->q[q].status != JOBQ_Q_DRAINING)
            continue;
        for (size_t i = 0; i < m->n && !live; i++)
            live = m->j[i].q == q && !jobq_state_final(m->j[i].state);
        if (!live)
            m->q[q].status = JOBQ_Q_PAUSED;
    }
}

/* ---------------------------------------------------------------- engine set-up */

static void m_engine(model *m, uint64_t seed)
{
    jobq_engine_config cfg = {.seed = seed};
    jobq_engine_hooks hooks = {.ready = hk_ready, .final = hk_final, .ud = &m->h};

    m->e = jobq_engine_new(&cfg, &hooks);
}

static void m_queues(model *m)
{
    for (int q = 0; q < NQ; q++) {
        jobq_queue_opts o;
        jobq_queue *eq = NULL;

        jobq_queue_opts_default(&o);
        jobq_backoff_unref(o.defaults.backoff);
        o.defaults.backoff = jobq_backoff_new(JOBQ_BACKOFF_FIXED, 0);
        o.defaults.backoff->delay_ms = 1000;
        o.defaults.lease_ms = 5000;
        o.defaults.max_attempts = 3;
        o.keep_completed.count = -1;
        o.keep_completed.age_ms = 0;
        o.keep_failed.count = -1;
        o.keep_failed.age_ms = 0;
        m->q[q].status = JOBQ_Q_ACTIVE;
        m->q[q].max_stalls = q == 0 ? 1 : q == 1 ? 0 : 2;
        m->q[q].conc = q == 1 ? 3 : 0;
        m->q[q].max_size = q == 2 ? 40 : 0;
        o.max_stalls = m->q[q].max_stalls;
        o.concurrency = m->q[q].conc;
        o.max_size = m->q[q].max_size;
        cr_assert_eq(jobq_engine_queue_create(m->e, QN[q], &o, m->now, &eq), 0);
        jobq_queue_opts_clear(&o);
    }
}

/* ---------------------------------------------------------------- verification */

static int mjob_cmp(const void *a, const void *b)
{
    const mjob *x = *(mjob *const *)a, *y = *(mjob *const *)b;

    if (x->prio != y->prio)
        return x->prio > y->prio ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void verify(model *m)
{
    jobq_engine *e = m->e;
    int64_t cnt[NQ][JOBQ_NSTATES];
    int64_t tmin = INT64_MAX;
    size_t ntimed = 0;
    mjob **w = malloc((m->n + 1) * sizeof *w);

    memset(cnt, 0, sizeof cnt);
    MA(jobq_engine_job_total(e) == m->n, "engine has %zu jobs, model %zu", jobq_engine_job_total(e),
       m->n);
    for (size_t i = 0; i < m->n; i++) {
        mjob *x = &m->j[i];
        jobq_job *j = ej(m, x);
        int64_t t = INT64_MAX;

        MA(jobq_job_state(j) == x->state, "%s: engine %s, model %s", x->id,
           jobq_state_name(jobq_job_state(j)), jobq_state_name(x->state));
        MA(jobq_job_attempt(j) == x->attempt, "%s: attempt %d, model %d", x->id,
           jobq_job_attempt(j), x->attempt);
        MA(j->priority == x->prio, "%s: priority %d, model %d", x->id, j->priority, x->prio);
        MA(j->stalls == x->stalls, "%s: stalls %d, model %d", x->id, j->stalls, x->stalls);
        MA(jobq_job_cancel_requested(j) == x->cancel_req, "%s: cancel_requested %d, model %d",
           x->id, jobq_job_cancel_requested(j), x->cancel_req);
        MA(jobq_job_queue(j) == jobq_engine_queue(e, QN[x->q]), "%s: wrong queue", x->id);
        MA(jobq_job_seq(j) == x->seq, "%s: seq changed", x->id);
        cnt[x->q][x->state]++;
        if (x->state == JOBQ_SCHEDULED || x->state == JOBQ_RETRYING) {
            MA(j->run_at == x->run_at, "%s: run_at %" PRId64 ", model %" PRId64, x->id, j->run_at,
               x->run_at);
            t = x->run_at;
        } else if (x->state == JOBQ_ACTIVE) {
            lease_buf l = lease_of(j);
            MA(jobq_job_lease_expires_at(j) == x->lease_exp,
               "%s: lease expires %" PRId64 ", model %" PRId64, x->id, jobq_job_lease_expires_at(j),
               x->lease_exp);
            MA(!strcmp(l.s, x->lease), "%s: lease %s, model %s", x->id, l.s, x->lease);
            t = x->deadline && x->deadline < x->lease_exp ? x->deadline : x->lease_exp;
        } else {
            MA(lease_of(j).s[0] == '\0', "%s: %s job shows a lease", x->id,
               jobq_state_name(x->state));
        }
        if (t != INT64_MAX) {
            ntimed++;
            tmin = t < tmin ? t : tmin;
        }
    }
    for (int q = 0; q < NQ; q++) {
        jobq_queue *eq = jobq_engine_queue(e, QN[q]);
        size_t nw = 0, nunc = 0;

        MA(jobq_queue_status(eq) == m->q[q].status, "%s: status %s, model %s", QN[q],
           jobq_qstatus_name(jobq_queue_status(eq)), jobq_qstatus_name(m->q[q].status));
        for (int s = 0; s < JOBQ_NSTATES; s++)
            MA(jobq_queue_count(eq, s) == cnt[q][s], "%s: %" PRId64 " %s, model %" PRId64, QN[q],
               jobq_queue_count(eq, s), jobq_state_name(s), cnt[q][s]);
        for (size_t i = 0; i < m->n; i++)
            if (m->j[i].q == q && m->j[i].state == JOBQ_WAITING && m->j[i].bst == 2)
                w[nw++] = &m->j[i];
        qsort(w, nw, sizeof w[0], mjob_cmp);
        for (size_t i = 0; i < nw; i++) {
            int64_t p = jobq_engine_job_position(e, ej(m, w[i]));
            MA(p == (int64_t)i, "%s: position %" PRId64 ", model %zu (prio %d seq %" PRId64 ")",
               w[i]->id, p, i, w[i]->prio, w[i]->seq);
        }
        for (size_t i = 0; i < m->n; i++) {
            mjob *x = &m->j[i];
            int64_t p;
            if (x->q != q)
                continue;
            p = jobq_engine_job_position(e, ej(m, x));
            if (x->state != JOBQ_WAITING) {
                MA(p == -1, "%s: position %" PRId64 " while %s", x->id, p,
                   jobq_state_name(x->state));
            } else if (x->bst != 2) {
                nunc++;
                MA(p == (int64_t)nw, "%s (not durable): position %" PRId64 ", model %zu", x->id, p,
                   nw);
            }
        }
        (void)nunc;
    }
    MA(e->ntimers == ntimed, "engine has %zu timers, model %zu", e->ntimers, ntimed);
    if (ntimed)
        MA(e->timers[0].at == tmin, "next timer %" PRId64 ", model %" PRId64, e->timers[0].at,
           tmin);
    MA(jobq_engine_next_timer(e) <= tmin, "next_timer later than the first due job");
    MA(m->h.final == m->finals, "final hook %d times, model %" PRId64, m->h.final, m->finals);
    MA(m->h.deleted == m->deletes, "deleted hook %d times, model %" PRId64, m->h.deleted,
       m->deletes);
    free(w);
}

/* ---------------------------------------------------------------- operations */

static int pick_prio(model *m)
{
    static const int p[] = {-1000, -10, -1, 0, 0, 0, 0, 1, 1, 5, 10, 20, 1000};

    if (rn(m, 10) == 0)
        return rn(m, 2001) - 1000;
    return p[rn(m, (int)(sizeof p / sizeof p[0]))];
}

static mjob *pick(model *m)
{
    return m->n ? &m->j[rn(m, (int)m->n)] : NULL;
}

static mjob *pick_state(model *m, int state)
{
    for (int tries = 0; tries < 12 && m->n; tries++) {
        mjob *x = pick(m);
        if (x->state == state)
            return x;
    }
    return NULL;
}

static void m_grow(model *m, size_t more)
{
    if (m->n + more > m->cap) {
        m->cap = (m->n + more) * 2;
        m->j = realloc(m->j, m->cap * sizeof *m->j);
    }
}

static int64_t m_waiting_size(const model *m, int q)
{
    return m_count(m, q, JOBQ_WAITING) + m_count(m, q, JOBQ_SCHEDULED) +
           m_count(m, q, JOBQ_RETRYING);
}

static void op_enqueue(model *m, int bulk)
{
    int q = rn(m, NQ);
    size_t n = bulk ? 2 + (size_t)rn(m, 3) : 1;
    jobq_job_spec sp[4];
    mjob nj[4];
    char ids[4][16];
    jobq_job *out[4];
    long bad = 99, want_bad = -1;
    int want = 0, rc;

    for (size_t i = 0; i < n; i++) {
        mjob *x = &nj[i];
        memset(x, 0, sizeof *x);
        memset(&sp[i], 0, sizeof sp[i]);
        snprintf(ids[i], sizeof ids[i], "j%06u", ++m->idc);
        sp[i].id = ids[i];
        if (rn(m, 5)) {
            sp[i].has_priority = 1;
            sp[i].priority = pick_prio(m);
        }
        x->prio = sp[i].has_priority ? sp[i].priority : 0;
        sp[i].max_attempts = rn(m, 3) ? 1 + rn(m, 4) : 0;
        x->max_attempts = sp[i].max_attempts ? sp[i].max_attempts : 3;
        x->blist = rn(m, 3) == 0;
        sp[i].backoff = x->blist ? m->list_bo : NULL;
        sp[i].timeout_ms = rn(m, 4) == 0 ? 2000 + rn(m, 6000) : -1;
        x->timeout_ms = sp[i].timeout_ms > 0 ? sp[i].timeout_ms : 0;
        sp[i].lease_ms = rn(m, 3) == 0 ? 1000 + rn(m, 5000) : 0;
        x->lease_ms = sp[i].lease_ms ? sp[i].lease_ms : 5000;
        sp[i].run_at = rn(m, 5) == 0 ? m->now + rn(m, 5000) : 0;
        sp[i].data = "{\"k\":1}";
        sp[i].data_len = strlen(sp[i].data);
        x->q = q;
        x->state = sp[i].run_at > m->now ? JOBQ_SCHEDULED : JOBQ_WAITING;
        x->run_at = x->state == JOBQ_SCHEDULED ? sp[i].run_at : 0;
        memcpy(x->id, ids[i], sizeof x->id);
    }
    /* sometimes an id that is taken, or the same id twice */
    if (m->n && rn(m, 6) == 0)
        sp[rn(m, (int)n)].id = pick(m)->id;
    else if (n > 1 && rn(m, 8) == 0)
        sp[n - 1].id = sp[0].id;

    /* the engine's order of checks */
    if (m->q[q].status == JOBQ_Q_DRAINING) {
        want = JOBQ_EDRAINING;
    } else if (m->q[q].max_size && m_waiting_size(m, q) + (int64_t)n > m->q[q].max_size) {
        want = JOBQ_EFULL;
    } else {
        for (size_t i = 0; i < n && !want; i++) {
            if (m_find(m, sp[i].id)) {
                want = JOBQ_EEXIST;
                want_bad = (long)i;
            }
            for (size_t k = 0; k < i && !want; k++)
                if (!strcmp(sp[k].id, sp[i].id)) {
                    want = JOBQ_EEXIST;
                    want_bad = (long)i;
                }
        }
    }
    rc = jobq_engine_enqueue(m->e, QN[q], sp, n, m->now, out, &bad);
    MA(rc == want, "enqueue of %zu into %s: %d, model %d", n, QN[q], rc, want);
    MA(bad == want_bad, "enqueue bad index %ld, model %ld", bad, want_bad);
    if (rc)
        return;
    m_grow(m, n);
    for (size_t i = 0; i < n; i++) {
        mjob *x = &m->j[m->n++];
        *x = nj[i];
        MA(!strcmp(jobq_job_id(out[i]), x->id), "enqueued job %zu has id %s", i,
           jobq_job_id(out[i]));
        x->seq = jobq_job_seq(out[i]);
        MA(x->seq > m->last_seq, "seq %" PRId64 " not after %" PRId64, x->seq, m->last_seq);
        m->last_seq = x->seq;
    }
}

static void op_fetch(model *m)
{
    const char *names[4];
    int qs[4], nq = 1 + rn(m, 4);
    size_t count = 1 + (size_t)rn(m, 4), n, want = 0;
    jobq_job *out[4];
    mjob *pred[4];
    static const char *const workers[] = {"wA", "wB", "wC"};
    const char *wk = workers[rn(m, 3)];

    for (int i = 0; i < nq; i++) {
        qs[i] = rn(m, NQ);
        names[i] = QN[qs[i]];
    }
    /* the model's pick, one at a time: best (priority desc, seq asc) among dispatchable */
    while (want < count) {
        mjob *best = NULL;
        for (size_t i = 0; i < m->n; i++) {
            mjob *x = &m->j[i];
            int in = 0;
            if (x->state != JOBQ_WAITING || x->bst != 2)
                continue;
            for (int k = 0; k < nq; k++)
                in |= qs[k] == x->q;
            if (!in || !m_can_dispatch(m, x->q))
                continue;
            if (!best || x->prio > best->prio || (x->prio == best->prio && x->seq < best->seq))
                best = x;
        }
        if (!best)
            break;
        best->state = JOBQ_ACTIVE; /* so the next pick and the concurrency see it */
        pred[want++] = best;
    }
    n = jobq_engine_fetch(m->e, names, (size_t)nq, count, wk, m->now, out);
    MA(n == want, "fetch of %zu gave %zu, model %zu", count, n, want);
    for (size_t i = 0; i < n; i++) {
        mjob *x = pred[i];
        lease_buf l = lease_of(out[i]);
        MA(!strcmp(jobq_job_id(out[i]), x->id), "fetch %zu: %s, model %s (prio %d)", i,
           jobq_job_id(out[i]), x->id, x->prio);
        MA(strlen(l.s) == 16 && strspn(l.s, "0123456789abcdef") == 16, "bad lease %s", l.s);
        MA(strcmp(l.s, x->last) != 0, "%s: fetch reused the previous lease", x->id);
        memcpy(x->lease, l.s, sizeof x->lease);
        memcpy(x->kept, l.s, sizeof x->kept);
        x->lease_exp = m->now + x->lease_ms;
        x->deadline = x->timeout_ms ? m->now + x->timeout_ms : 0;
        snprintf(x->worker, sizeof x->worker, "%s", wk);
        x->reloaded = 0;
    }
}

static void op_complete(model *m)
{
    mjob *x = pick_state(m, JOBQ_ACTIVE);
    int repeat = -1, rc;
    char lease[17];

    if (!x)
        return;
    memcpy(lease, x->lease, sizeof lease);
    rc = jobq_engine_complete(m->e, ej(m, x), lease, "{\"r\":1}", m->now, &repeat);
    MA(rc == 0 && repeat == 0, "complete of %s: %d (repeat %d)", x->id, rc, repeat);
    x->attempt++;
    m_end_attempt(x, 1);
    m_final(m, x, x->cancel_req ? JOBQ_CANCELLED : JOBQ_COMPLETED);
    if (rn(m, 4) == 0) { /* repeat it */
        int st = x->state;
        rc = jobq_engine_complete(m->e, ej(m, x), lease, NULL, m->now, &repeat);
        if (st == JOBQ_COMPLETED)
            MA(rc == 0 && repeat == 1, "repeated complete of %s: %d (repeat %d)", x->id, rc,
               repeat);
        else
            MA(rc == JOBQ_ELEASE, "repeated complete of cancelled %s: %d", x->id, rc);
    }
}

static void op_fail(model *m)
{
    mjob *x = pick_state(m, JOBQ_ACTIVE);
    static const char *const types[] = {"x", "provider", "rate_limit", NULL};
    const char *type;
    int retryable, repeat = -1, rc;
    int64_t retry_in;
    jobq_failure f;
    char lease[17];

    if (!x)
        return;
    type = types[rn(m, 4)];
    retryable = rn(m, 5) != 0;
    retry_in = rn(m, 2) ? -1 : rn(m, 3000);
    if (rn(m, 6) == 0)
        retry_in = 0;
    f = failure(type, retryable, retry_in);
    memcpy(lease, x->lease, sizeof lease);
    rc = jobq_engine_fail(m->e, ej(m, x), lease, &f, m->now, &repeat);
    MA(rc == 0 && repeat == 0, "fail of %s: %d (repeat %d)", x->id, rc, repeat);
    m_end_attempt(x, 1);
    m_fail_attempt(m, x, type, retryable, retry_in);
    if (rn(m, 4) == 0) { /* repeat it */
        rc = jobq_engine_fail(m->e, ej(m, x), lease, &f, m->now, &repeat);
        if (x->state == JOBQ_FAILED || x->state == JOBQ_CANCELLED)
            MA(rc == 0 && repeat == 1, "repeated fail of %s: %d (repeat %d)", x->id, rc, repeat);
        else
            MA(rc == JOBQ_ELEASE, "repeated fail of %s now %s: %d", x->id,
               jobq_state_name(x->state), rc);
    }
}

static void op_heartbeat(model *m)
{
    mjob *x = pick_state(m, JOBQ_ACTIVE);
    int64_t ext = rn(m, 2) ? 0 : 500 + rn(m, 8000);
    int durable = -1, rc;

    if (!x)
        return;
    rc = jobq_engine_heartbeat(m->e, ej(m, x), x->lease, ext, NULL, m->now, &durable);
    MA(rc == 0 && durable == 0, "heartbeat of %s: %d", x->id, rc);
    x->lease_exp = m->now + (ext > 0 ? ext : x->lease_ms);
}

static void op_stale(model *m)
{
    mjob *x = NULL;
    int rc, repeat = -1, durable;

    for (int tries = 0; tries < 12 && m->n && !x; tries++) {
        mjob *y = pick(m);
        if (y->last[0] && !y->reloaded)
            x = y;
    }
    if (!x)
        return;
    switch (rn(m, 3)) {
    case 0:
        rc = jobq_engine_complete(m->e, ej(m, x), x->last, NULL, m->now, &repeat);
        if (x->state == JOBQ_COMPLETED && !strcmp(x->kept, x->last))
            MA(rc == 0 && repeat == 1, "stale complete of %s: %d", x->id, rc);
        else
            MA(rc == JOBQ_ELEASE, "stale complete of %s (%s): %d", x->id, jobq_state_name(x->state),
               rc);
        break;
    case 1: {
        jobq_failure f = failure("x", 1, -1);
        rc = jobq_engine_fail(m->e, ej(m, x), x->last, &f, m->now, &repeat);
        if ((x->state == JOBQ_FAILED || x->state == JOBQ_CANCELLED) && !strcmp(x->kept, x->last))
            MA(rc == 0 && repeat == 1, "stale fail of %s: %d", x->id, rc);
        else
            MA(rc == JOBQ_ELEASE, "stale fail of %s (%s): %d", x->id, jobq_state_name(x->state),
               rc);
        break;
    }
    default:
        rc = jobq_engine_heartbeat(m->e, ej(m, x), x->last, 0, NULL, m->now, &durable);
        MA(rc == JOBQ_ELEASE, "stale heartbeat of %s: %d", x->id, rc);
    }
}

static void op_cancel(model *m)
{
    mjob *x = pick(m);
    int rc;

    if (!x)
        return;
    rc = jobq_engine_job_cancel(m->e, ej(m, x), m->now);
    if (jobq_state_final(x->state)) {
        MA(rc == JOBQ_ESTATE, "cancel of final %s: %d", x->id, rc);
    } else if (x->state == JOBQ_ACTIVE) {
        MA(rc == 0, "cancel of active %s: %d", x->id, rc);
        x->cancel_req = 1;
    } else {
        MA(rc == 0, "cancel of %s: %d", x->id, rc);
        m_final(m, x, JOBQ_CANCELLED);
    }
}

static void op_retry(model *m)
{
    mjob *x = pick(m);
    int rc;

    if (!x)
        return;
    rc = jobq_engine_job_retry(m->e, ej(m, x), m->now);
    if (x->state != JOBQ_FAILED && x->state != JOBQ_CANCELLED) {
        MA(rc == JOBQ_ESTATE, "retry of %s %s: %d", jobq_state_name(x->state), x->id, rc);
        return;
    }
    MA(rc == 0, "retry of %s: %d", x->id, rc);
    x->state = JOBQ_WAITING;
    x->attempt = 0;
    x->stalls = 0;
}

static void op_patch(model *m)
{
    mjob *x = pick(m);
    int rc;

    if (!x)
        return;
    if (rn(m, 3)) {
        int p = pick_prio(m);
        rc = jobq_engine_job_patch(m->e, ej(m, x), 1, p, 0, 0, m->now);
        MA(rc == 0, "priority patch of %s: %d", x->id, rc);
        x->prio = p;
        return;
    }
    {
        int64_t at = m->now - 500 + rn(m, 4000);
        rc = jobq_engine_job_patch(m->e, ej(m, x), 0, 0, 1, at, m->now);
        if (x->state != JOBQ_SCHEDULED && x->state != JOBQ_RETRYING) {
            MA(rc == JOBQ_ESTATE, "run_at patch of %s %s: %d", jobq_state_name(x->state), x->id,
               rc);
            return;
        }
        MA(rc == 0, "run_at patch of %s: %d", x->id, rc);
        if (at <= m->now) {
            x->state = JOBQ_WAITING;
            x->run_at = 0;
        } else {
            x->run_at = at;
        }
    }
}

static void op_delete(model *m)
{
    mjob *x = pick(m);
    int rc;

    if (!x)
        return;
    rc = jobq_engine_job_delete(m->e, ej(m, x), m->now);
    if (x->state == JOBQ_ACTIVE) {
        MA(rc == JOBQ_ESTATE, "delete of active %s: %d", x->id, rc);
        return;
    }
    MA(rc == 0, "delete of %s: %d", x->id, rc);
    MA(jobq_engine_job(m->e, x->id) == NULL, "deleted %s still found", x->id);
    m->deletes++;
    m_remove(m, x);
}

static void op_queue(model *m)
{
    int q = rn(m, NQ), rc = 0;
    jobq_queue *eq = jobq_engine_queue(m->e, QN[q]);

    switch (rn(m, 3)) {
    case 0:
        rc = jobq_engine_queue_pause(m->e, eq, m->now);
        m->q[q].status = JOBQ_Q_PAUSED;
        break;
    case 1:
        rc = jobq_engine_queue_resume(m->e, eq, m->now);
        m->q[q].status = JOBQ_Q_ACTIVE;
        break;
    default:
        rc = jobq_engine_queue_drain(m->e, eq, m->now);
        m->q[q].status = JOBQ_Q_DRAINING;
    }
    MA(rc == 0, "queue status change: %d", rc);
}

static void op_recover(model *m)
{
    static const char *const workers[] = {"wA", "wB", "wC"};
    int q = rn(m, NQ);
    const char *wk = workers[rn(m, 3)];
    int64_t want = 0, got;

    for (size_t i = 0; i < m->n; i++) {
        mjob *x = &m->j[i];
        if (x->q != q || x->state != JOBQ_ACTIVE || strcmp(x->worker, wk))
            continue;
        want++;
        m_end_attempt(x, 0);
        if (x->cancel_req)
            m_final(m, x, JOBQ_CANCELLED);
        else
            x->state = JOBQ_WAITING;
    }
    got = jobq_engine_queue_recover(m->e, jobq_engine_queue(m->e, QN[q]), wk, 0, m->now);
    MA(got == want, "recover of %s on %s: %" PRId64 ", model %" PRId64, wk, QN[q], got, want);
}

static void op_clear(model *m)
{
    int q = rn(m, NQ);
    int64_t want = 0, got;

    for (size_t i = 0; i < m->n;) {
        mjob *x = &m->j[i];
        if (x->q == q &&
            (x->state == JOBQ_WAITING || x->state == JOBQ_SCHEDULED || x->state == JOBQ_RETRYING)) {
            want++;
            m->deletes++;
            m_remove(m, x);
            continue;
        }
        i++;
    }
    got = jobq_engine_queue_clear(m->e, jobq_engine_queue(m->e, QN[q]), m->now);
    MA(got == want, "clear of %s: %" PRId64 ", model %" PRId64, QN[q], got, want);
}

static void m_tick(model *m, int64_t now)
{
    m->now = now;
    for (size_t i = 0; i < m->n; i++) {
        mjob *x = &m->j[i];
        int64_t t;

        if ((x->state == JOBQ_SCHEDULED || x->state == JOBQ_RETRYING) && x->run_at <= now) {
            x->state = JOBQ_WAITING;
            x->run_at = 0;
            continue;
        }
        if (x->state != JOBQ_ACTIVE)
            continue;
        t = x->deadline && x->deadline < x->lease_exp ? x->deadline : x->lease_exp;
        if (t > now)
            continue;
        m_end_attempt(x, 0);
        if (x->deadline && x->deadline <= now) {
            m_fail_attempt(m, x, "timeout", 1, -1);
        } else if (x->cancel_req) {
            m_final(m, x, JOBQ_CANCELLED);
        } else if (++x->stalls > m->q[x->q].max_stalls) {
            m_fail_attempt(m, x, "stalled", 0, -1);
        } else {
            x->state = JOBQ_WAITING;
        }
    }
    jobq_engine_tick(m->e, now);
}

static void op_tick(model *m)
{
    int64_t t = m->now;

    switch (rn(m, 6)) {
    case 0: {
        int64_t nt = jobq_engine_next_timer(m->e);
        if (nt != INT64_MAX && nt > t)
            t = nt;
        break;
    }
    case 1:
        t += rn(m, 20000);
        break;
    default:
        t += rn(m, 1500);
    }
    m_tick(m, t);
}

/* The commit protocol: take (the batch goes to the simulated store) and committed. */
static void m_take(model *m)
{
    jobq_batch *b = jobq_engine_take_changes(m->e);

    if (b)
        sim_apply(m->s, b);
    jobq_batch_free(b);
    for (size_t i = 0; i < m->n; i++)
        if (m->j[i].bst == 0)
            m->j[i].bst = 1;
    m->inflight = 1;
}

static void m_committed(model *m)
{
    jobq_engine_committed(m->e, m->now);
    for (size_t i = 0; i < m->n; i++)
        if (m->j[i].bst == 1)
            m->j[i].bst = 2;
    m->inflight = 0;
}

static void commit_protocol(model *m)
{
    int r = rn(m, 100);

    if (m->inflight) {
        if (r < 60)
            m_committed(m);
    } else if (r < 75) {
        m_take(m);
        if (rn(m, 2))
            m_committed(m);
    }
}

/* Crash and restart: everything durable is flushed first (a batch not yet durable is simply
 * lost with its unacknowledged changes, which the model cannot tell apart, so it is not
 * simulated), then a fresh engine loads the simulated store. */
static void op_restart(model *m)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->j[i].state == JOBQ_ACTIVE && m->j[i].cancel_req)
            return; /* a known defect: see load_keeps_cancel_request_of_active_job */
    if (m->inflight)
        m_committed(m);
    m_take(m);
    m_committed(m);
    MA(!jobq_engine_has_changes(m->e), "changes left after a flush");
    jobq_engine_free(m->e);
    m->restarts++;
    m_engine(m, 1000 + (uint64_t)m->restarts);
    sim_load(m->s, m->e, m->now);
    for (size_t i = 0; i < m->n; i++) {
        mjob *x = &m->j[i];
        if (x->state == JOBQ_ACTIVE) {
            m_end_attempt(x, 0);
            x->state = JOBQ_WAITING;
        } else if (x->kept[0]) {
            /* the engine does not keep the lease for repeats across a restart: see
             * load_keeps_completion_idempotent; no repeat checks on this job for now */
            x->kept[0] = '\0';
            x->reloaded = 1;
        }
    }
}

static void trim_finals(model *m)
{
    size_t nf = 0;

    for (size_t i = 0; i < m->n; i++)
        nf += jobq_state_final(m->j[i].state);
    while (nf > MAX_FINAL) {
        mjob *x = pick(m);
        int rc;
        if (!jobq_state_final(x->state))
            continue;
        rc = jobq_engine_job_delete(m->e, ej(m, x), m->now);
        MA(rc == 0, "delete of final %s: %d", x->id, rc);
        m->deletes++;
        m_remove(m, x);
        nf--;
    }
}

Test(engine, model_100k, .timeout = 120)
{
    model mm, *m = &mm;
    int ops[20] = {0};

    memset(m, 0, sizeof *m);
    m->rng = 0x9e3779b97f4a7c15ull;
    if (getenv("JOBQ_MODEL_SEED")) /* to explore other runs: JOBQ_MODEL_SEED=n */
        m->rng ^= strtoull(getenv("JOBQ_MODEL_SEED"), NULL, 0) * 0xbf58476d1ce4e5b9ull;
    m->now = T0;
    m->s = sim_new();
    m->list_bo = jobq_backoff_new(JOBQ_BACKOFF_LIST, 3);
    m->list_bo->delays[0] = 100;
    m->list_bo->delays[1] = 2500;
    m->list_bo->delays[2] = 700;
    m_engine(m, 77);
    m_queues(m);
    m_take(m);
    m_committed(m);

    for (m->step = 0; m->step < STEPS; m->step++) {
        size_t live = 0;
        int r, op;

        for (size_t i = 0; i < m->n; i++)
            live += !jobq_state_final(m->j[i].state);
        r = rn(m, 1000);
        /* enqueue more while there are few live jobs, less when there are many */
        if (r < (live < 60 ? 300 : live > 200 ? 60 : 170))
            op = 0;
        else if (r < 420)
            op = 1; /* fetch */
        else if (r < 500)
            op = 2; /* complete */
        else if (r < 580)
            op = 3; /* fail */
        else if (r < 630)
            op = 4; /* heartbeat */
        else if (r < 660)
            op = 5; /* cancel */
        else if (r < 690)
            op = 6; /* retry */
        else if (r < 740)
            op = 7; /* patch */
        else if (r < 760)
            op = 8; /* delete */
        else if (r < 790)
            op = 9; /* stale lease */
        else if (r < 800)
            op = 10; /* queue status */
        else if (r < 806)
            op = 11; /* recover */
        else if (r < 808)
            op = 12; /* clear */
        else if (r < 830)
            op = 13; /* bulk enqueue */
        else if (r == 999 && rn(m, 3) == 0)
            op = 14; /* restart */
        else
            op = 15; /* time passes */
        ops[op]++;
        switch (op) {
        case 0:
            op_enqueue(m, 0);
            break;
        case 1:
            op_fetch(m);
            break;
        case 2:
            op_complete(m);
            break;
        case 3:
            op_fail(m);
            break;
        case 4:
            op_heartbeat(m);
            break;
        case 5:
            op_cancel(m);
            break;
        case 6:
            op_retry(m);
            break;
        case 7:
            op_patch(m);
            break;
        case 8:
            op_delete(m);
            break;
        case 9:
            op_stale(m);
            break;
        case 10:
            op_queue(m);
            break;
        case 11:
            op_recover(m);
            break;
        case 12:
            op_clear(m);
            break;
        case 13:
            op_enqueue(m, 1);
            break;
        case 14:
            op_restart(m);
            break;
        default:
            op_tick(m);
        }
        m_drain_rule(m);
        commit_protocol(m);
        trim_finals(m);
        verify(m);
    }
    /* the run must have exercised what it claims to */
    cr_assert_gt(m->finals, 5000, "only %" PRId64 " jobs finished", m->finals);
    cr_assert_gt(m->restarts, 3, "only %d restarts", m->restarts);
    for (int i = 0; i < 16; i++)
        cr_assert_gt(ops[i], 0, "operation %d never ran", i);

    jobq_engine_free(m->e);
    jobq_backoff_unref(m->list_bo);
    sim_free(m->s);
    free(m->j);
}
