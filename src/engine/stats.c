/*
 * stats.c — what /v1/stats, /v1/stats/series, /v1/stats/daily and /metrics report.
 *
 * Per queue, in memory:
 *   - a slot per minute for the last 15 minutes (a ring): jobs enqueued, completed and
 *     failed in that minute, and histograms of processing time (start → completion) and
 *     wait time (ready → start);
 *   - a per-minute series of the last 24 hours (a ring of 1440 points), filled when a minute
 *     closes: its counts, its processing p95 and the number of waiting jobs at its end;
 *   - today's sums and processing histogram, into which each closed minute is added;
 *   - since start, Prometheus-style histograms with fixed bounds (jobq_hist_le_ms).
 * Finished days are documents of kind "daily", id "YYYY-MM-DD/<queue id>", kept 90 days;
 * today's is also written every stats_flush_ms (and by jobq_engine_stats_flush before a
 * stop), so a restart keeps today's numbers up to that point. Minutes and the series are
 * not kept: after a restart they start empty.
 *
 * Recording is on the hot path (every enqueue, start and completion) and does only this:
 * check that the open minute is still the current one, bump a counter and a histogram
 * bucket. Everything derived (percentiles, series points, daily sums) is computed when a
 * minute closes, once a minute from jobq_engine_stats_tick, or when someone reads.
 *
 * Histograms are log-linear (as HdrHistogram): values below 32 ms have a bucket each; above
 * that, every power of two is split into 16 equal buckets, up to 2^32 ms (49 days; longer
 * values count in the last bucket). A bucket [lo, lo + w) has w <= lo/16, and a percentile
 * is reported as its bucket's midpoint (at most the largest value seen), so it is within
 * w/2 <= lo/32 of the true sample at that rank: a relative error of at most 3.2%, exact
 * below 32 ms. A histogram is 464 counters, whatever the number of jobs.
 *
 * Days are UTC days of `now`; like the rest of the engine this file reads no clock.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

#define SUB_BITS 4
#define SUB (1 << SUB_BITS)               /* buckets per power of two */
#define NB ((32 - SUB_BITS + 1) * SUB)    /* 464 buckets: values below 2^32 ms */
#define WIN 15                            /* minutes in the window */
#define SERIES 1440                       /* minutes in the series: 24 h */
#define MINUTE INT64_C(60000)             /* ms */
#define DAY INT64_C(86400000)             /* ms */
#define KEEP_DAYS 90                      /* days kept before today */
#define NONE UINT32_MAX                   /* a series point without a value */
#define JULIAN_1970 719163                /* GDate's day number of 1970-01-01 */
#define DAILY_KIND "daily"

const int64_t jobq_hist_le_ms[JOBQ_HIST_NLE] = {
    100,    250,    500,     1000,    2500,    5000,    10000,    30000,   60000,
    120000, 300000, 600000,  1200000, 1800000, 3600000, 7200000,  14400000,
};

typedef struct hist {
    uint32_t n, max; /* samples, largest (ms) */
    uint64_t sum;    /* ms */
    uint32_t b[NB];
} hist;

struct jobq_slot {
    int64_t minute; /* ms / MINUTE; 0 = never used */
    uint32_t enqueued, completed, failed;
    hist proc, wait;
};

typedef struct point {
    int32_t minute; /* 0 = never filled */
    uint32_t enqueued, completed, failed;
    uint32_t p95;     /* processing, ms; NONE without completions */
    uint32_t waiting; /* waiting jobs when the minute closed */
} point;

struct jobq_window {
    jobq_slot slots[WIN]; /* slots[m % WIN] holds minute m */
    point series[SERIES]; /* series[m % SERIES] holds minute m */
    /* today: the closed minutes of day `day` (the open minute's day) */
    int64_t day; /* ms / DAY */
    uint64_t enqueued, completed, failed, n, sum, max;
    uint64_t b[NB];
    uint64_t flushed; /* enqueued + completed + failed when today was last written */
};

/* A day of a queue that is not today's open one: finished, or loaded. */
typedef struct daily {
    int64_t day;
    char queue_id[37];
    char *queue; /* name */
    uint64_t enqueued, completed, failed, n, sum;
    int64_t max;  /* ms, the longest processing time */
    int64_t p95;  /* ms, -1 without completions */
    uint64_t *b;  /* loading only: the histogram of a day written before it ended */
} daily;

typedef struct jobq_estats {
    GTree *days;         /* daily* → itself, by (day, queue id) */
    int64_t next_minute; /* ms since epoch: the housekeeping times; 0 = at once */
    int64_t next_health;
    int64_t next_flush;
    int64_t today; /* the day pruning last ran for */
} jobq_estats;

/* ---------------------------------------------------------------- buckets */

static inline unsigned bucket(int64_t v)
{
    unsigned e;

    if (v < 2 * SUB)
        return v < 0 ? 0 : (unsigned)v;
    if (v > (int64_t)UINT32_MAX)
        v = UINT32_MAX;
    e = 63 - (unsigned)__builtin_clzll((uint64_t)v); /* 2^e <= v, e >= 5 */
    return (e - SUB_BITS + 1) * SUB + (unsigned)((v >> (e - SUB_BITS)) & (SUB - 1));
}

static int64_t bucket_lo(unsigned i)
{
    unsigned e = i / SUB + SUB_BITS - 1;

    return i < 2 * SUB ? (int64_t)i : (int64_t)(SUB + i % SUB) << (e - SUB_BITS);
}

static int64_t bucket_mid(unsigned i)
{
    unsigned e = i / SUB + SUB_BITS - 1;
    int64_t w = i < 2 * SUB ? 1 : INT64_C(1) << (e - SUB_BITS);

    return bucket_lo(i) + (w - 1) / 2;
}

/* Nearest-rank percentile p of n samples in b, at most max; -1 when n is 0. */
static int64_t pct(const uint64_t *b, uint64_t n, int64_t max, double p)
{
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)n), c = 0;

    if (!n)
        return -1;
    if (rank < 1)
        rank = 1;
    for (unsigned i = 0; i < NB; i++) {
        c += b[i];
        if (c >= rank)
            return MIN(bucket_mid(i), max);
    }
    return max;
}

/* The p95 of a minute's histogram (pct wants 64-bit counters), -1 when it is empty. */
static int64_t hist_p95(const hist *h)
{
    uint64_t b[NB];

    if (!h->n)
        return -1;
    for (unsigned i = 0; i < NB; i++)
        b[i] = h->b[i];
    return pct(b, h->n, h->max, 95);
}

static void hist_add(hist *h, int64_t v)
{
    if (v < 0)
        v = 0;
    h->b[bucket(v)]++;
    h->n++;
    h->sum += (uint64_t)v;
    if (v > h->max)
        h->max = v > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static void life_add(uint64_t *b, uint64_t *sum, int64_t v)
{
    int i = 0;

    if (v < 0)
        v = 0;
    while (i < JOBQ_HIST_NLE && v > jobq_hist_le_ms[i])
        i++;
    b[i]++;
    *sum += (uint64_t)v;
}

/* ---------------------------------------------------------------- days */

static void day_text(int64_t day, char out[16])
{
    GDate d;

    g_date_clear(&d, 1);
    g_date_set_julian(&d, (guint32)(day + JULIAN_1970));
    snprintf(out, 16, "%04d-%02d-%02d", g_date_get_year(&d), g_date_get_month(&d),
             g_date_get_day(&d));
}

/* "YYYY-MM-DD" → day number, or -1. */
static int64_t day_parse(const char *s)
{
    int y, m, d, n = 0;

    if (!s || sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || s[n] || y < 1970 ||
        !g_date_valid_dmy((GDateDay)d, (GDateMonth)m, (GDateYear)y))
        return -1;
    {
        GDate *g = g_date_new_dmy((GDateDay)d, (GDateMonth)m, (GDateYear)y);
        int64_t r = (int64_t)g_date_get_julian(g) - JULIAN_1970;
        g_date_free(g);
        return r;
    }
}

static gint daily_cmp(gconstpointer a, gconstpointer b, gpointer ud)
{
    const daily *x = a, *y = b;

    (void)ud;
    if (x->day != y->day)
        return x->day < y->day ? -1 : 1;
    return strcmp(x->queue_id, y->queue_id);
}

static void daily_free(gpointer p)
{
    daily *d = p;

    g_free(d->queue);
    g_free(d->b);
    g_free(d);
}

static jobq_estats *estats(jobq_engine *e)
{
    if (!e->stats) {
        e->stats = g_new0(jobq_estats, 1);
        e->stats->days = g_tree_new_full(daily_cmp, NULL, daily_free, NULL);
    }
    return e->stats;
}

void jobq_estats_free(jobq_estats *s)
{
    if (!s)
        return;
    g_tree_destroy(s->days);
    g_free(s);
}

/* The document of one day of one queue; b: the histogram of a day still open, kept with it
 * so a restart can go on adding to it (NULL for a finished day). */
static char *daily_doc(const daily *d, const uint64_t *b)
{
    char day[16];
    json_t *j, *pm;
    char *s, *r;

    day_text(d->day, day);
    pm = json_pack("{s:I, s:I, s:I}", "count", (json_int_t)d->n, "sum", (json_int_t)d->sum,
                   "max", (json_int_t)d->max);
    if (d->p95 >= 0)
        json_object_set_new(pm, "p95", json_integer(d->p95));
    j = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:o}", "day", day, "queue", d->queue,
                  "queue_id", d->queue_id, "enqueued", (json_int_t)d->enqueued, "completed",
                  (json_int_t)d->completed, "failed", (json_int_t)d->failed, "processing_ms",
                  pm);
    if (b) {
        /* by each bucket's lower bound, so a later bucket layout can still read it */
        json_t *h = json_array();
        for (unsigned i = 0; i < NB; i++)
            if (b[i])
                json_array_append_new(h, json_pack("[I, I]", (json_int_t)bucket_lo(i),
                                                   (json_int_t)b[i]));
        json_object_set_new(j, "hist", h);
    }
    s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    r = g_strdup(s);
    free(s);
    return r;
}

static void daily_put(jobq_engine *e, const daily *d, const uint64_t *b)
{
    char day[16], *id, *body;

    day_text(d->day, day);
    id = g_strdup_printf("%s/%s", day, d->queue_id);
    body = daily_doc(d, b);
    jobq_engine_doc_put(e, DAILY_KIND, id, body);
    g_free(body);
    g_free(id);
}

/* Today of q as a daily record (closed minutes + the open one) and its histogram in b. */
static void today_of(const jobq_queue *q, daily *d, uint64_t *b)
{
    const jobq_window *w = q->st->w;
    const jobq_slot *s = q->st->open;
    int64_t max;

    memset(d, 0, sizeof *d);
    d->day = w->day;
    g_strlcpy(d->queue_id, q->id, sizeof d->queue_id);
    d->queue = q->name; /* borrowed */
    d->enqueued = w->enqueued;
    d->completed = w->completed;
    d->failed = w->failed;
    d->n = w->n;
    d->sum = w->sum;
    max = (int64_t)w->max;
    memcpy(b, w->b, sizeof w->b);
    if (s) {
        d->enqueued += s->enqueued;
        d->completed += s->completed;
        d->failed += s->failed;
        d->n += s->proc.n;
        d->sum += s->proc.sum;
        max = MAX(max, (int64_t)s->proc.max);
        for (unsigned i = 0; i < NB; i++)
            b[i] += s->proc.b[i];
    }
    d->max = max;
    d->p95 = pct(b, d->n, max, 95);
}

/* The day held in q's window is over: keep it as a finished day and write it. */
static void day_finish(jobq_engine *e, jobq_queue *q)
{
    jobq_window *w = q->st->w;
    daily *d;

    if (w->enqueued || w->completed || w->failed) {
        uint64_t *b = g_new(uint64_t, NB);
        d = g_new(daily, 1);
        /* the open slot is already closed here: today_of sees the closed minutes only */
        today_of(q, d, b);
        d->queue = g_strdup(q->name);
        d->b = NULL;
        daily_put(e, d, NULL);
        g_tree_replace(estats(e)->days, d, d);
        g_free(b);
    }
    memset(&w->enqueued, 0,
           sizeof *w - offsetof(jobq_window, enqueued)); /* sums, histogram, flushed */
}

/* ---------------------------------------------------------------- recording */

jobq_qstats *jobq_qstats_of(jobq_queue *q)
{
    if (!q->st)
        q->st = g_new0(jobq_qstats, 1);
    return q->st;
}

void jobq_qstats_free(jobq_qstats *st)
{
    if (!st)
        return;
    g_free(st->w);
    g_free(st);
}

/* The series point of minute slot s of q, as it stands now. */
static void slot_point(const jobq_queue *q, const jobq_slot *s, point *p)
{
    p->minute = (int32_t)s->minute;
    p->enqueued = s->enqueued;
    p->completed = s->completed;
    p->failed = s->failed;
    p->waiting = (uint32_t)MIN(q->counts[JOBQ_WAITING], (int64_t)UINT32_MAX - 1);
    p->p95 = s->proc.n ? (uint32_t)hist_p95(&s->proc) : NONE;
}

/* Closes the open minute: its series point, and its sums into today's. */
static void close_minute(jobq_queue *q)
{
    jobq_qstats *st = q->st;
    jobq_window *w = st->w;
    jobq_slot *s = st->open;

    slot_point(q, s, &w->series[s->minute % SERIES]);
    w->enqueued += s->enqueued;
    w->completed += s->completed;
    w->failed += s->failed;
    w->n += s->proc.n;
    w->sum += s->proc.sum;
    w->max = MAX(w->max, (uint64_t)s->proc.max);
    if (s->proc.n)
        for (unsigned i = 0; i < NB; i++)
            w->b[i] += s->proc.b[i];
    st->open = NULL;
    st->slot_end = 0;
}

/* The slow path of open_slot: a new minute (or the queue's first sample). */
static jobq_slot *roll(jobq_engine *e, jobq_queue *q, int64_t now)
{
    jobq_qstats *st = jobq_qstats_of(q);
    int64_t m = now / MINUTE;
    jobq_slot *s;

    if (!st->w) {
        st->w = g_new0(jobq_window, 1);
        st->w->day = m * MINUTE / DAY;
    }
    if (st->open)
        close_minute(q);
    if (m * MINUTE / DAY != st->w->day) {
        day_finish(e, q);
        st->w->day = m * MINUTE / DAY;
    }
    s = &st->w->slots[m % WIN];
    memset(s, 0, sizeof *s);
    s->minute = m;
    st->open = s;
    st->slot_end = (m + 1) * MINUTE;
    return s;
}

/* The slot samples at `now` go to. A clock that went back keeps the open minute. */
static inline jobq_slot *open_slot(jobq_engine *e, jobq_queue *q, int64_t now)
{
    jobq_qstats *st = q->st;

    if (st && now < st->slot_end)
        return st->open;
    return roll(e, q, now);
}

void jobq_stats_enqueued(jobq_engine *e, jobq_queue *q, int64_t n, int64_t now)
{
    if (!e->loading)
        open_slot(e, q, now)->enqueued += (uint32_t)n;
}

void jobq_stats_started(jobq_engine *e, jobq_queue *q, int64_t wait_ms, int64_t now)
{
    jobq_qstats *st;

    if (e->loading)
        return;
    hist_add(&open_slot(e, q, now)->wait, wait_ms);
    st = q->st;
    life_add(st->life_wait, &st->life_wait_sum, wait_ms);
}

void jobq_stats_finished(jobq_engine *e, jobq_queue *q, int completed, int64_t proc_ms,
                         int64_t now)
{
    jobq_slot *s;
    jobq_qstats *st;

    if (e->loading)
        return;
    s = open_slot(e, q, now);
    if (!completed) {
        s->failed++;
        return;
    }
    s->completed++;
    if (proc_ms < 0)
        return;
    hist_add(&s->proc, proc_ms);
    st = q->st;
    life_add(st->life_proc, &st->life_proc_sum, proc_ms);
}

void jobq_stats_queue_deleted(jobq_engine *e, jobq_queue *q, int64_t now)
{
    (void)now;
    if (!q->st || !q->st->w)
        return;
    if (q->st->open)
        close_minute(q);
    day_finish(e, q); /* what it did today stays in the daily numbers */
}

/* ---------------------------------------------------------------- the last 15 minutes */

typedef struct merged {
    uint64_t proc[NB], wait[NB];
    int64_t proc_max, wait_max;
    uint64_t proc_sum, wait_sum;
} merged;

/* Sums q's slots of the minutes (now/MINUTE - 14 … now/MINUTE) into r (and m when given). */
static void recent_sum(const jobq_queue *q, int64_t now, jobq_recent *r, merged *m)
{
    const jobq_window *w = q->st ? q->st->w : NULL;
    int64_t cur = now / MINUTE;

    if (!w)
        return;
    for (int i = 0; i < WIN; i++) {
        const jobq_slot *s = &w->slots[i];
        if (!s->minute || s->minute <= cur - WIN || s->minute > cur)
            continue;
        r->enqueued += s->enqueued;
        r->completed += s->completed;
        r->failed += s->failed;
        r->proc_n += s->proc.n;
        r->wait_n += s->wait.n;
        if (!m)
            continue;
        m->proc_sum += s->proc.sum;
        m->wait_sum += s->wait.sum;
        m->proc_max = MAX(m->proc_max, (int64_t)s->proc.max);
        m->wait_max = MAX(m->wait_max, (int64_t)s->wait.max);
        if (s->proc.n)
            for (unsigned k = 0; k < NB; k++)
                m->proc[k] += s->proc.b[k];
        if (s->wait.n)
            for (unsigned k = 0; k < NB; k++)
                m->wait[k] += s->wait.b[k];
    }
}

static void recent_finish(jobq_recent *r, const merged *m)
{
    static const double ps[3] = {50, 95, 99};

    r->proc_avg = r->proc_n ? (double)m->proc_sum / (double)r->proc_n : 0;
    r->wait_avg = r->wait_n ? (double)m->wait_sum / (double)r->wait_n : 0;
    for (int i = 0; i < 3; i++) {
        r->proc_p[i] = pct(m->proc, (uint64_t)r->proc_n, m->proc_max, ps[i]);
        r->wait_p[i] = pct(m->wait, (uint64_t)r->wait_n, m->wait_max, ps[i]);
    }
}

void jobq_stats_recent(const jobq_queue *q, int64_t now, int percentiles, jobq_recent *r)
{
    memset(r, 0, sizeof *r);
    for (int i = 0; i < 3; i++)
        r->proc_p[i] = r->wait_p[i] = -1;
    if (!percentiles) {
        recent_sum(q, now, r, NULL);
        return;
    }
    {
        merged *m = g_new0(merged, 1);
        recent_sum(q, now, r, m);
        recent_finish(r, m);
        g_free(m);
    }
}

/* ---------------------------------------------------------------- /v1/stats */

static double pct_of(int64_t part, int64_t whole)
{
    return whole > 0 ? 100.0 * (double)part / (double)whole : 0.0;
}

static json_t *ts(int64_t v)
{
    return v ? json_integer(v) : json_null();
}

static json_t *ms_or_null(int64_t v)
{
    return v >= 0 ? json_integer(v) : json_null();
}

/* {"count","avg","p50","p95","p99"} (ms; null without samples) */
static json_t *timing_json(int64_t n, double avg, const int64_t p[3])
{
    return json_pack("{s:I, s:o, s:o, s:o, s:o}", "count", (json_int_t)n, "avg",
                     n ? json_real(round(avg * 10) / 10) : json_null(), "p50", ms_or_null(p[0]),
                     "p95", ms_or_null(p[1]), "p99", ms_or_null(p[2]));
}

static json_t *recent_json(const jobq_recent *r)
{
    return json_pack("{s:I, s:I, s:I, s:f}", "enqueued", (json_int_t)r->enqueued, "completed",
                     (json_int_t)r->completed, "failed", (json_int_t)r->failed, "error_rate",
                     pct_of(r->failed, r->completed + r->failed));
}

static int worker_serves(const jobq_worker *w, const char *queue)
{
    for (size_t i = 0; i < w->nq; i++)
        if (strcmp(w->queues[i], queue) == 0)
            return 1;
    return 0;
}

/* Workers seen in the last minute or holding jobs; of queue `queue` only when not NULL
 * (those whose last fetch named it). */
static int64_t workers_active(const jobq_engine *e, const char *queue, int64_t now)
{
    GHashTableIter it;
    gpointer k, v;
    int64_t n = 0;

    g_hash_table_iter_init(&it, e->workers);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        const jobq_worker *w = v;
        if ((w->last_seen_at >= now - 60000 || w->active > 0) &&
            (!queue || worker_serves(w, queue)))
            n++;
    }
    return n;
}

int64_t jobq_engine_active_workers(const jobq_engine *e, int64_t now)
{
    return workers_active(e, NULL, now);
}

int64_t jobq_engine_uptime_ms(const jobq_engine *e, int64_t now)
{
    return e->started_at ? now - e->started_at : 0;
}

static int64_t backlog(const jobq_queue *q)
{
    return q->counts[JOBQ_WAITING] + q->counts[JOBQ_SCHEDULED] + q->counts[JOBQ_RETRYING];
}

static void counts_json(json_t *j, const int64_t *c)
{
    json_t *counts = json_object();

    for (int s = 0; s < JOBQ_NSTATES; s++)
        json_object_set_new(counts, jobq_state_name(s), json_integer(c[s]));
    json_object_set_new(j, "counts", counts);
}

json_t *jobq_engine_queue_stats(const jobq_engine *e, const jobq_queue *q, int64_t now)
{
    json_t *j = json_object();
    int64_t done = q->processed + q->failed;
    jobq_recent r;

    jobq_stats_recent(q, now, 1, &r);
    json_object_set_new(j, "queue", json_string(q->name));
    json_object_set_new(j, "status", json_string(jobq_qstatus_name(jobq_queue_status(q))));
    counts_json(j, q->counts);
    json_object_set_new(j, "enqueued", json_integer(q->enqueued));
    json_object_set_new(j, "processed", json_integer(q->processed));
    json_object_set_new(j, "failed", json_integer(q->failed));
    json_object_set_new(j, "retried", json_integer(q->retried));
    json_object_set_new(j, "stalled", json_integer(q->stalled));
    json_object_set_new(j, "success_rate", json_real(pct_of(q->processed, done)));
    json_object_set_new(j, "error_rate", json_real(pct_of(q->failed, done)));
    json_object_set_new(j, "processing_ms", timing_json(r.proc_n, r.proc_avg, r.proc_p));
    json_object_set_new(j, "wait_ms", timing_json(r.wait_n, r.wait_avg, r.wait_p));
    json_object_set_new(j, "last_15m", recent_json(&r));
    json_object_set_new(j, "throughput_per_min",
                        json_real(jobq_queue_rate_per_ms(q, now) * 60000.0));
    json_object_set_new(j, "utilization_percent",
                        q->o.concurrency > 0
                            ? json_real(pct_of(q->counts[JOBQ_ACTIVE], q->o.concurrency))
                            : json_null());
    json_object_set_new(j, "queue_utilization_percent",
                        q->o.max_size > 0 ? json_real(pct_of(backlog(q), q->o.max_size))
                                          : json_null());
    json_object_set_new(j, "active_workers", json_integer(workers_active(e, q->name, now)));
    json_object_set_new(j, "last_processed_at", ts(q->last_processed_at));
    json_object_set_new(j, "last_error_at", ts(q->last_error_at));
    return j;
}

json_t *jobq_engine_stats(const jobq_engine *e, int64_t now)
{
    json_t *qs = json_object(), *total = json_object();
    int64_t c[JOBQ_NSTATES] = {0}, enq = 0, proc = 0, fail = 0, retr = 0, stall = 0;
    int64_t active_lim = 0, conc = 0, size_lim = 0, max_size = 0;
    double rate = 0;
    jobq_recent all = {0}, r;
    merged *m = g_new0(merged, 1);
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, e->queues);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        jobq_queue *q = v;
        json_object_set_new(qs, q->name, jobq_engine_queue_stats(e, q, now));
        for (int s = 0; s < JOBQ_NSTATES; s++)
            c[s] += q->counts[s];
        enq += q->enqueued;
        proc += q->processed;
        fail += q->failed;
        retr += q->retried;
        stall += q->stalled;
        rate += jobq_queue_rate_per_ms(q, now);
        if (q->o.concurrency > 0) {
            active_lim += q->counts[JOBQ_ACTIVE];
            conc += q->o.concurrency;
        }
        if (q->o.max_size > 0) {
            size_lim += backlog(q);
            max_size += q->o.max_size;
        }
        memset(&r, 0, sizeof r);
        recent_sum(q, now, &r, m); /* every queue's minutes into one histogram */
        all.enqueued += r.enqueued;
        all.completed += r.completed;
        all.failed += r.failed;
        all.proc_n += r.proc_n;
        all.wait_n += r.wait_n;
    }
    recent_finish(&all, m);
    g_free(m);
    counts_json(total, c);
    json_object_set_new(total, "enqueued", json_integer(enq));
    json_object_set_new(total, "processed", json_integer(proc));
    json_object_set_new(total, "failed", json_integer(fail));
    json_object_set_new(total, "retried", json_integer(retr));
    json_object_set_new(total, "stalled", json_integer(stall));
    json_object_set_new(total, "success_rate", json_real(pct_of(proc, proc + fail)));
    json_object_set_new(total, "error_rate", json_real(pct_of(fail, proc + fail)));
    json_object_set_new(total, "processing_ms", timing_json(all.proc_n, all.proc_avg, all.proc_p));
    json_object_set_new(total, "wait_ms", timing_json(all.wait_n, all.wait_avg, all.wait_p));
    json_object_set_new(total, "last_15m", recent_json(&all));
    json_object_set_new(total, "throughput_per_min", json_real(rate * 60000.0));
    /* over the queues that have a limit */
    json_object_set_new(total, "utilization_percent",
                        conc ? json_real(pct_of(active_lim, conc)) : json_null());
    json_object_set_new(total, "queue_utilization_percent",
                        max_size ? json_real(pct_of(size_lim, max_size)) : json_null());
    json_object_set_new(total, "active_workers",
                        json_integer(jobq_engine_active_workers(e, now)));
    return json_pack("{s:o, s:o, s:I}", "queues", qs, "total", total, "uptime_ms",
                     (json_int_t)jobq_engine_uptime_ms(e, now));
}

/* ---------------------------------------------------------------- /v1/stats/series */

enum { M_COMPLETED, M_FAILED, M_ENQUEUED, M_P95, M_WAITING };

/* Minute m of q: 1 and *v set when known; 0 when q has no data for it (a count is then 0,
 * a p95 or a waiting count unknown). */
static int minute_value(const jobq_queue *q, int metric, int64_t m, int64_t *v)
{
    const jobq_qstats *st = q->st;
    const point *p;
    point open;

    if (!st || !st->w)
        return 0;
    if (st->open && st->open->minute == m) { /* the open minute, as its point would be */
        slot_point(q, st->open, &open);
        p = &open;
    } else {
        p = &st->w->series[m % SERIES];
    }
    if (p->minute != m)
        return 0;
    switch (metric) {
    case M_COMPLETED:
        *v = p->completed;
        return 1;
    case M_FAILED:
        *v = p->failed;
        return 1;
    case M_ENQUEUED:
        *v = p->enqueued;
        return 1;
    case M_WAITING:
        *v = p->waiting;
        return 1;
    default:
        *v = p->p95;
        return p->p95 != NONE;
    }
}

int jobq_engine_stats_series(const jobq_engine *e, const jobq_queue *q, const char *metric,
                             int minutes, int64_t now, json_t **out)
{
    static const char *const names[] = {"completed", "failed", "enqueued", "processing_p95",
                                        "waiting"};
    int mt = -1;
    int64_t cur = now / MINUTE;
    json_t *points;

    for (int i = 0; i < 5; i++)
        if (metric && strcmp(metric, names[i]) == 0)
            mt = i;
    if (mt < 0 || (mt == M_P95 && !q) || minutes < 1 || minutes > SERIES)
        return JOBQ_EINVAL;
    points = json_array();
    for (int64_t m = cur - minutes + 1; m <= cur; m++) {
        int64_t v = 0, sum = 0;
        int known = 0;
        if (q) {
            known = minute_value(q, mt, m, &v);
            sum = v;
        } else {
            GHashTableIter it;
            gpointer k, qv;
            g_hash_table_iter_init(&it, e->queues);
            while (g_hash_table_iter_next(&it, &k, &qv))
                if (minute_value(qv, mt, m, &v)) {
                    known = 1;
                    sum += v;
                }
        }
        /* a count with no data is 0; a p95 or a waiting count with none is unknown */
        json_array_append_new(points,
                              json_pack("{s:I, s:o}", "at", (json_int_t)(m * MINUTE), "value",
                                        known || (mt != M_P95 && mt != M_WAITING)
                                            ? json_integer(known ? sum : 0)
                                            : json_null()));
    }
    *out = json_pack("{s:o, s:s, s:i, s:o}", "queue", q ? json_string(q->name) : json_null(),
                     "metric", names[mt], "minutes", minutes, "points", points);
    return 0;
}

/* ---------------------------------------------------------------- /v1/stats/daily */

static json_t *daily_json(const daily *d)
{
    char day[16];

    day_text(d->day, day);
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:{s:I, s:o, s:o}}", "day", day, "queue",
                     d->queue, "enqueued", (json_int_t)d->enqueued, "completed",
                     (json_int_t)d->completed, "failed", (json_int_t)d->failed,
                     "processing_ms", "count", (json_int_t)d->n, "avg",
                     d->n ? json_real(round((double)d->sum / (double)d->n * 10) / 10)
                          : json_null(),
                     "p95", ms_or_null(d->p95));
}

typedef struct daily_walk {
    int64_t from;
    const jobq_queue *q;
    GPtrArray *out; /* of daily*, borrowed */
} daily_walk;

static gboolean daily_pick(gpointer k, gpointer v, gpointer ud)
{
    daily_walk *dw = ud;
    daily *d = v;

    (void)k;
    if (d->day >= dw->from && (!dw->q || strcmp(d->queue_id, dw->q->id) == 0))
        g_ptr_array_add(dw->out, d);
    return FALSE;
}

static gint daily_order(gconstpointer a, gconstpointer b)
{
    const daily *x = *(daily *const *)a, *y = *(daily *const *)b;

    if (x->day != y->day)
        return x->day < y->day ? -1 : 1;
    return strcmp(x->queue, y->queue);
}

json_t *jobq_engine_stats_daily(const jobq_engine *e, const jobq_queue *q, int days, int64_t now)
{
    daily_walk dw = {now / DAY - days + 1, q, g_ptr_array_new()};
    GPtrArray *live = g_ptr_array_new_with_free_func(g_free);
    uint64_t *b = g_new(uint64_t, NB);
    json_t *arr = json_array();
    GHashTableIter it;
    gpointer k, v;

    if (e->stats)
        g_tree_foreach(e->stats->days, daily_pick, &dw);
    /* the days still open: each queue's today */
    g_hash_table_iter_init(&it, e->queues);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        const jobq_queue *qq = v;
        daily *d;
        if ((q && qq != q) || !qq->st || !qq->st->w)
            continue;
        d = g_new(daily, 1);
        today_of(qq, d, b);
        if (d->day < dw.from || !(d->enqueued || d->completed || d->failed)) {
            g_free(d);
            continue;
        }
        g_ptr_array_add(live, d);
        g_ptr_array_add(dw.out, d);
    }
    g_ptr_array_sort(dw.out, daily_order);
    for (guint i = 0; i < dw.out->len; i++)
        json_array_append_new(arr, daily_json(g_ptr_array_index(dw.out, i)));
    g_ptr_array_free(dw.out, TRUE);
    g_ptr_array_free(live, TRUE);
    g_free(b);
    return json_pack("{s:o}", "days", arr);
}

/* ---------------------------------------------------------------- housekeeping */

/* Writes today's aggregates of every queue whose numbers moved since the last write. */
void jobq_engine_stats_flush(jobq_engine *e, int64_t now)
{
    uint64_t *b = g_new(uint64_t, NB);
    GHashTableIter it;
    gpointer k, v;

    (void)now;
    g_hash_table_iter_init(&it, e->queues);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        jobq_queue *q = v;
        daily d;
        uint64_t sig;
        if (!q->st || !q->st->w)
            continue;
        today_of(q, &d, b);
        sig = d.enqueued + d.completed + d.failed;
        if (sig == q->st->w->flushed)
            continue;
        q->st->w->flushed = sig;
        daily_put(e, &d, b);
    }
    g_free(b);
}

typedef struct prune_walk {
    int64_t before;
    GPtrArray *old;
} prune_walk;

static gboolean prune_pick(gpointer k, gpointer v, gpointer ud)
{
    prune_walk *pw = ud;
    daily *d = v;

    (void)k;
    if (d->day >= pw->before)
        return TRUE; /* in day order: the rest is newer */
    g_ptr_array_add(pw->old, d);
    return FALSE;
}

/* Forgets (and deletes the documents of) days more than KEEP_DAYS before today. */
static void prune(jobq_engine *e, int64_t today)
{
    jobq_estats *s = estats(e);
    prune_walk pw = {today - KEEP_DAYS, g_ptr_array_new()};

    g_tree_foreach(s->days, prune_pick, &pw);
    for (guint i = 0; i < pw.old->len; i++) {
        daily *d = g_ptr_array_index(pw.old, i);
        char day[16], *id;
        day_text(d->day, day);
        id = g_strdup_printf("%s/%s", day, d->queue_id);
        jobq_engine_doc_delete(e, DAILY_KIND, id);
        g_free(id);
        g_tree_remove(s->days, d);
    }
    g_ptr_array_free(pw.old, TRUE);
    s->today = today;
}

static int64_t flush_every(const jobq_engine *e)
{
    return e->cfg.stats_flush_ms > 0 ? e->cfg.stats_flush_ms : 300000;
}

static int64_t health_every(const jobq_engine *e)
{
    return e->cfg.health_interval_ms > 0 ? e->cfg.health_interval_ms : 5000;
}

void jobq_engine_stats_tick(jobq_engine *e, int64_t now)
{
    jobq_estats *s = estats(e);
    GHashTableIter it;
    gpointer k, v;

    if (now >= s->next_minute) {
        /* close the minutes that ended, so the series gets each queue's waiting count at the
         * end of every minute and a day is finished (and written) right after midnight */
        g_hash_table_iter_init(&it, e->queues);
        while (g_hash_table_iter_next(&it, &k, &v)) {
            jobq_queue *q = v;
            if ((q->st && q->st->w) || q->counts[JOBQ_WAITING])
                if (!q->st || now >= q->st->slot_end)
                    roll(e, q, now);
        }
        if (now / DAY != s->today)
            prune(e, now / DAY);
        s->next_minute = (now / MINUTE + 1) * MINUTE;
    }
    if (now >= s->next_flush) {
        if (s->next_flush) /* not at the first tick: nothing has happened yet */
            jobq_engine_stats_flush(e, now);
        s->next_flush = now + flush_every(e);
    }
    if (now >= s->next_health) {
        jobq_health_sweep(e, now, 0);
        s->next_health = now + health_every(e);
    }
}

int64_t jobq_engine_stats_due(const jobq_engine *e)
{
    const jobq_estats *s = e->stats;

    if (!s)
        return 0;
    return MIN(s->next_minute, MIN(s->next_flush, s->next_health));
}

/* ---------------------------------------------------------------- Prometheus */

void jobq_queue_hist_totals(const jobq_queue *q, int wait, jobq_hist_totals *out)
{
    const uint64_t *b = NULL;
    uint64_t c = 0;

    memset(out, 0, sizeof *out);
    if (!q->st)
        return;
    b = wait ? q->st->life_wait : q->st->life_proc;
    for (int i = 0; i < JOBQ_HIST_NLE; i++) {
        c += b[i];
        out->le[i] = c;
    }
    out->count = c + b[JOBQ_HIST_NLE];
    out->sum_ms = wait ? q->st->life_wait_sum : q->st->life_proc_sum;
}

/* ---------------------------------------------------------------- loading */

static uint64_t getu(const json_t *o, const char *k)
{
    json_int_t v = json_integer_value(json_object_get(o, k));

    return v > 0 ? (uint64_t)v : 0;
}

int jobq_stats_load_doc(jobq_engine *e, const char *kind, const char *id, const char *body)
{
    json_t *j, *pm, *h, *p;
    const char *qid, *name;
    daily *d;
    int64_t day;

    if (strcmp(kind, DAILY_KIND) != 0)
        return 1;
    (void)id;
    j = json_loads(body, 0, NULL);
    pm = json_object_get(j, "processing_ms");
    qid = json_string_value(json_object_get(j, "queue_id"));
    name = json_string_value(json_object_get(j, "queue"));
    day = day_parse(json_string_value(json_object_get(j, "day")));
    if (!j || !qid || strlen(qid) > 36 || !name || day < 0) {
        json_decref(j);
        return 0; /* not ours to judge: a day we cannot read is skipped, not fatal */
    }
    d = g_new0(daily, 1);
    d->day = day;
    g_strlcpy(d->queue_id, qid, sizeof d->queue_id);
    d->queue = g_strdup(name);
    d->enqueued = getu(j, "enqueued");
    d->completed = getu(j, "completed");
    d->failed = getu(j, "failed");
    d->n = getu(pm, "count");
    d->sum = getu(pm, "sum");
    d->max = (int64_t)getu(pm, "max");
    p = json_object_get(pm, "p95");
    d->p95 = json_is_integer(p) ? json_integer_value(p) : -1;
    h = json_object_get(j, "hist");
    if (json_is_array(h)) {
        size_t i;
        json_t *pair;
        d->b = g_new0(uint64_t, NB);
        json_array_foreach(h, i, pair)
        {
            json_int_t lo = json_integer_value(json_array_get(pair, 0));
            json_int_t c = json_integer_value(json_array_get(pair, 1));
            if (lo >= 0 && c > 0)
                d->b[bucket(lo)] += (uint64_t)c;
        }
        for (unsigned k = NB; !json_object_get(pm, "max") && k-- > 0;)
            if (d->b[k]) { /* no largest value kept: the top bucket's midpoint bounds p95 */
                d->max = bucket_mid(k);
                break;
            }
    }
    g_tree_replace(estats(e)->days, d, d);
    json_decref(j);
    return 0;
}

typedef struct load_walk {
    jobq_engine *e;
    int64_t today;
    GPtrArray *live; /* today's days of existing queues: they move into their queues */
} load_walk;

static gboolean load_pick(gpointer k, gpointer v, gpointer ud)
{
    load_walk *lw = ud;
    daily *d = v;

    (void)k;
    if (d->day == lw->today && d->b && g_hash_table_lookup(lw->e->queue_ids, d->queue_id))
        g_ptr_array_add(lw->live, d);
    else if (d->b) { /* a day that ended while the server was down: its p95 from its hist */
        d->p95 = pct(d->b, d->n, d->max, 95);
        g_free(d->b);
        d->b = NULL;
    }
    return FALSE;
}

void jobq_stats_load_done(jobq_engine *e, int64_t now)
{
    jobq_estats *s = estats(e);
    load_walk lw = {e, now / DAY, g_ptr_array_new()};

    g_tree_foreach(s->days, load_pick, &lw);
    for (guint i = 0; i < lw.live->len; i++) {
        daily *d = g_ptr_array_index(lw.live, i);
        jobq_queue *q = g_hash_table_lookup(e->queue_ids, d->queue_id);
        jobq_qstats *st = jobq_qstats_of(q);
        jobq_window *w = st->w ? st->w : (st->w = g_new0(jobq_window, 1));
        w->day = d->day;
        w->enqueued = d->enqueued;
        w->completed = d->completed;
        w->failed = d->failed;
        w->n = d->n;
        w->sum = d->sum;
        w->max = (uint64_t)d->max;
        memcpy(w->b, d->b, sizeof w->b);
        w->flushed = d->enqueued + d->completed + d->failed;
        g_tree_remove(s->days, d); /* today is the queue's own again */
    }
    g_ptr_array_free(lw.live, TRUE);
    prune(e, now / DAY);
}
