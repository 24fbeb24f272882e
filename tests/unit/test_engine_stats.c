/*
 * test_engine_stats.c — stats.c and health.c on a simulated clock.
 *
 * percentiles_*: processing and wait times from a second to four hours, and below 32 ms;
 * the reported avg is exact and every percentile within the documented 1/32 of the
 * nearest-rank value of the samples. window_*: samples leave the 15-minute window.
 * series_*: per-minute counts, waiting and p95, 24 hours kept, queue NULL sums.
 * daily_*: a day is finished and written after midnight, today is written by a flush,
 * both come back through a restart, and days older than 90 are pruned (documents deleted).
 * health_*: every rule with short thresholds, the store failing, and level changes.
 *
 * Reads the status and the remembered health level through engine/internal.h.
 */
#include <math.h>

#include "helpers.h"
#include "engine/internal.h"

#define MIN_MS INT64_C(60000)
#define DAY_MS INT64_C(86400000)

/* Nearest-rank percentile of n sorted values. */
static int64_t exact_pct(const int64_t *sorted, size_t n, double p)
{
    size_t rank = (size_t)ceil(p / 100.0 * (double)n);

    return sorted[(rank ? rank : 1) - 1];
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

static json_t *qstats(jobq_engine *e, const char *q, int64_t now)
{
    return jobq_engine_queue_stats(e, jobq_engine_queue(e, q), now);
}

static int64_t geti(const json_t *o, const char *path)
{
    gchar **parts = g_strsplit(path, ".", -1);
    const json_t *v = o;
    int64_t r;

    for (int i = 0; parts[i]; i++)
        v = json_object_get(v, parts[i]);
    cr_assert(v && (json_is_integer(v) || json_is_null(v)), "%s is not an integer", path);
    r = json_is_null(v) ? -1 : (int64_t)json_integer_value(v);
    g_strfreev(parts);
    return r;
}

static double getd(const json_t *o, const char *path)
{
    gchar **parts = g_strsplit(path, ".", -1);
    const json_t *v = o;

    for (int i = 0; parts[i]; i++)
        v = json_object_get(v, parts[i]);
    g_strfreev(parts);
    cr_assert(json_is_number(v), "%s is not a number", path);
    return json_number_value(v);
}

/* Checks the {count, avg, p50, p95, p99} object `key` of st against the samples. */
static void check_timing(const json_t *st, const char *key, int64_t *v, size_t n)
{
    static const double ps[] = {50, 95, 99};
    static const char *names[] = {"p50", "p95", "p99"};
    const json_t *t = json_object_get(st, key);
    double sum = 0;

    qsort(v, n, sizeof *v, cmp64);
    for (size_t i = 0; i < n; i++)
        sum += (double)v[i];
    cr_assert_eq(geti(t, "count"), (int64_t)n, "%s.count", key);
    cr_assert_float_eq(getd(t, "avg"), sum / (double)n, 0.051, "%s.avg %f, want %f", key,
                       getd(t, "avg"), sum / (double)n);
    for (int i = 0; i < 3; i++) {
        int64_t want = exact_pct(v, n, ps[i]), got = geti(t, names[i]);
        cr_assert(llabs(got - want) <= want / 32, "%s.%s = %" PRId64 ", exact %" PRId64
                  " (allowed error %" PRId64 ")", key, names[i], got, want, want / 32);
    }
}

/* ---------------------------------------------------------------- percentiles */

Test(stats, percentiles_processing_seconds_to_hours)
{
    jobq_engine *e = eng_new(NULL, 1);
    int64_t v[481], tc = T0 + 5 * 3600 * 1000, te = T0;
    jobq_job *jobs[481];
    json_t *st;
    size_t n = 481;

    /* 1 s … 3.7 h, each 2% longer than the last */
    for (size_t i = 0; i < n; i++)
        v[i] = (int64_t)(1000.0 * pow(1.02, (double)i));
    for (size_t i = 0; i < n; i++)
        jobs[i] = enq(e, "q", NULL, 0, te);
    commit(e, te);
    /* the longest starts first; all end at tc */
    for (size_t i = 0; i < n; i++) {
        jobq_job *j = fetch1(e, "q", tc - v[n - 1 - i]);
        cr_assert_eq(j, jobs[i]);
    }
    for (size_t i = 0; i < n; i++)
        complete_ok(e, jobs[i], tc);
    st = qstats(e, "q", tc + 1000);
    cr_assert_eq(geti(st, "last_15m.completed"), (int64_t)n);
    check_timing(st, "processing_ms", v, n);
    json_decref(st);
    /* the total merges the queues' histograms */
    st = jobq_engine_stats(e, tc + 1000);
    check_timing(json_object_get(st, "total"), "processing_ms", v, n);
    json_decref(st);
    jobq_engine_free(e);
}

Test(stats, percentiles_wait_and_small_values_exact)
{
    jobq_engine *e = eng_new(NULL, 2);
    int64_t w[300], small[32], tc = T0 + 4 * 3600 * 1000;
    size_t n = 300;
    json_t *st;

    /* waits from 2 s to about 2.8 h: job i is enqueued w[i] before its fetch at tc */
    for (size_t i = 0; i < n; i++)
        w[i] = (int64_t)(2000.0 * pow(1.025, (double)(n - 1 - i)));
    for (size_t i = 0; i < n; i++) {
        enq(e, "q", NULL, 0, tc - w[i]);
        commit(e, tc - w[i]);
    }
    for (size_t i = 0; i < n; i++) {
        jobq_job *j = fetch1(e, "q", tc);
        cr_assert_not_null(j);
        complete_ok(e, j, tc + 5);
    }
    st = qstats(e, "q", tc + 10);
    check_timing(st, "wait_ms", w, n);
    cr_assert_eq(geti(st, "processing_ms.p99"), 5);
    json_decref(st);

    /* below 32 ms every value has its own bucket: percentiles are exact */
    for (int i = 0; i < 32; i++) {
        jobq_job *j = enq(e, "small", NULL, 0, tc + 100);
        commit(e, tc + 100);
        cr_assert_eq(fetch1(e, "small", tc + 100), j);
        complete_ok(e, j, tc + 100 + i);
        small[i] = i;
    }
    st = qstats(e, "small", tc + 200);
    cr_assert_eq(geti(st, "processing_ms.p50"), exact_pct(small, 32, 50));
    cr_assert_eq(geti(st, "processing_ms.p95"), exact_pct(small, 32, 95));
    cr_assert_eq(geti(st, "processing_ms.p99"), 31);
    cr_assert_eq(geti(st, "wait_ms.p99"), 0);
    json_decref(st);
    jobq_engine_free(e);
}

Test(stats, window_forgets_after_15_minutes)
{
    jobq_engine *e = eng_new(NULL, 3);
    int64_t m0 = (T0 / MIN_MS + 1) * MIN_MS;
    json_t *st;

    for (int i = 0; i < 10; i++) {
        jobq_job *j = enq(e, "q", NULL, 0, m0);
        commit(e, m0);
        fetch1(e, "q", m0 + 100);
        if (i < 8)
            complete_ok(e, j, m0 + 1100);
        else
            fail_ok(e, j, "x", 0, -1, m0 + 1100);
    }
    st = qstats(e, "q", m0 + 14 * MIN_MS + 59000);
    cr_assert_eq(geti(st, "processing_ms.count"), 8);
    cr_assert_eq(geti(st, "processing_ms.p50"), 1000);
    cr_assert_eq(geti(st, "last_15m.enqueued"), 10);
    cr_assert_eq(geti(st, "last_15m.failed"), 2);
    cr_assert_float_eq(getd(st, "last_15m.error_rate"), 20.0, 1e-9);
    json_decref(st);
    /* the minute m0 is 15 minutes old: out of the window */
    st = qstats(e, "q", m0 + 15 * MIN_MS);
    cr_assert_eq(geti(st, "processing_ms.count"), 0);
    cr_assert_eq(geti(st, "processing_ms.p95"), -1, "null without samples");
    cr_assert(json_is_null(json_object_get(json_object_get(st, "processing_ms"), "avg")));
    cr_assert_eq(geti(st, "last_15m.completed"), 0);
    cr_assert_eq(geti(st, "processed"), 8, "lifetime totals stay");
    json_decref(st);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- series */

static json_t *series(jobq_engine *e, const char *q, const char *metric, int minutes,
                      int64_t now)
{
    json_t *out = NULL;
    int rc = jobq_engine_stats_series(e, q ? jobq_engine_queue(e, q) : NULL, metric, minutes, now,
                                      &out);

    cr_assert_eq(rc, 0, "series %s %s = %d", q ? q : "(all)", metric, rc);
    cr_assert_eq(json_array_size(json_object_get(out, "points")), (size_t)minutes);
    return out;
}

/* Value of point i (null → -1). */
static int64_t pt(const json_t *s, size_t i)
{
    const json_t *v = json_object_get(json_array_get(json_object_get(s, "points"), i), "value");

    return json_is_null(v) ? -1 : (int64_t)json_integer_value(v);
}

static int64_t pt_at(const json_t *s, size_t i)
{
    return json_integer_value(
        json_object_get(json_array_get(json_object_get(s, "points"), i), "at"));
}

Test(stats, series_counts_waiting_p95)
{
    jobq_engine *e = eng_new(NULL, 4);
    int64_t m0 = (T0 / MIN_MS + 10) * MIN_MS;
    jobq_job *j[5];
    json_t *s;
    jobq_failure f = failure("x", 0, -1);

    jobq_engine_stats_tick(e, m0 - 5 * MIN_MS);
    for (int i = 0; i < 5; i++)
        j[i] = enq(e, "q", NULL, 0, m0 + 1000);
    enq(e, "other", NULL, 0, m0 + 1000);
    commit(e, m0 + 1000);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(fetch1(e, "q", m0 + 2000), j[i]);
    for (int i = 0; i < 3; i++)
        complete_ok(e, j[i], m0 + 2000 + 1000 * (i + 1)); /* 1, 2, 3 s */
    {
        lease_buf l = lease_of(j[3]);
        cr_assert_eq(jobq_engine_fail(e, j[3], l.s, &f, m0 + 9000, NULL), 0);
    }
    jobq_engine_stats_tick(e, m0 + MIN_MS); /* closes minute m0 with 1 waiting */
    enq(e, "q", NULL, 0, m0 + MIN_MS + 5000);
    enq(e, "q", NULL, 0, m0 + MIN_MS + 6000);
    commit(e, m0 + MIN_MS + 6000);
    jobq_engine_stats_tick(e, m0 + 2 * MIN_MS);

    s = series(e, "q", "completed", 5, m0 + 2 * MIN_MS + 30000);
    cr_assert_eq(pt_at(s, 4), m0 + 2 * MIN_MS, "the last point is the current minute");
    cr_assert_eq(pt_at(s, 0), m0 - 2 * MIN_MS);
    cr_assert_eq(pt(s, 0), 0);
    cr_assert_eq(pt(s, 2), 3);
    cr_assert_eq(pt(s, 3), 0);
    json_decref(s);
    s = series(e, "q", "failed", 5, m0 + 2 * MIN_MS + 30000);
    cr_assert_eq(pt(s, 2), 1);
    json_decref(s);
    s = series(e, "q", "enqueued", 5, m0 + 2 * MIN_MS + 30000);
    cr_assert_eq(pt(s, 2), 5);
    cr_assert_eq(pt(s, 3), 2);
    json_decref(s);
    s = series(e, "q", "waiting", 5, m0 + 2 * MIN_MS + 30000);
    cr_assert_eq(pt(s, 0), -1, "before the queue existed: unknown");
    cr_assert_eq(pt(s, 2), 1, "at the end of minute m0");
    cr_assert_eq(pt(s, 3), 3);
    cr_assert_eq(pt(s, 4), 3, "the current minute: now");
    json_decref(s);
    s = series(e, "q", "processing_p95", 5, m0 + 2 * MIN_MS + 30000);
    cr_assert(llabs(pt(s, 2) - 3000) <= 3000 / 32, "p95 %" PRId64, pt(s, 2));
    cr_assert_eq(pt(s, 3), -1, "no completions: null");
    json_decref(s);
    /* every queue: counts summed */
    s = series(e, NULL, "enqueued", 5, m0 + 2 * MIN_MS + 30000);
    cr_assert_eq(pt(s, 2), 6);
    json_decref(s);
    s = series(e, NULL, "waiting", 5, m0 + 2 * MIN_MS + 30000);
    cr_assert_eq(pt(s, 4), 4);
    json_decref(s);
    {
        json_t *out = NULL;
        cr_assert_eq(jobq_engine_stats_series(e, NULL, "processing_p95", 5, m0, &out),
                     JOBQ_EINVAL);
        cr_assert_eq(jobq_engine_stats_series(e, jobq_engine_queue(e, "q"), "bogus", 5, m0, &out),
                     JOBQ_EINVAL);
        cr_assert_eq(jobq_engine_stats_series(e, NULL, "completed", 1441, m0, &out), JOBQ_EINVAL);
        cr_assert_null(out);
    }
    jobq_engine_free(e);
}

Test(stats, series_keeps_24_hours)
{
    jobq_engine *e = eng_new(NULL, 5);
    int64_t m0 = (T0 / MIN_MS + 10) * MIN_MS, t;
    json_t *s;

    for (int i = 0; i < 3; i++) {
        jobq_job *j = enq(e, "q", NULL, 0, m0 + 1000);
        commit(e, m0 + 1000);
        fetch1(e, "q", m0 + 1000);
        complete_ok(e, j, m0 + 2000);
    }
    enq(e, "q", NULL, 0, m0 + 3000); /* one left waiting all day */
    commit(e, m0 + 3000);
    for (t = m0 + MIN_MS; t < m0 + 1440 * MIN_MS; t += MIN_MS)
        jobq_engine_stats_tick(e, t);
    /* 1439 minutes later minute m0 is the oldest of the 1440 */
    s = series(e, "q", "completed", 1440, m0 + 1439 * MIN_MS + 1000);
    cr_assert_eq(pt_at(s, 0), m0);
    cr_assert_eq(pt(s, 0), 3);
    cr_assert_eq(pt(s, 1), 0);
    json_decref(s);
    s = series(e, "q", "waiting", 1440, m0 + 1439 * MIN_MS + 1000);
    for (size_t i = 0; i < 1440; i++)
        cr_assert_eq(pt(s, i), 1, "minute %zu: waiting %" PRId64, i, pt(s, i));
    json_decref(s);
    /* a minute on, its slot holds minute m0 + 1440: m0 is gone, never misread */
    jobq_engine_stats_tick(e, m0 + 1440 * MIN_MS);
    s = series(e, "q", "completed", 1440, m0 + 1440 * MIN_MS + 1000);
    cr_assert_eq(pt_at(s, 0), m0 + MIN_MS);
    for (size_t i = 0; i < 1440; i++)
        cr_assert_eq(pt(s, i), 0);
    json_decref(s);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- daily */

static size_t doc_count(simstore *s, const char *kind)
{
    size_t n = 0, kl = strlen(kind);
    GTreeNode *node;

    for (node = g_tree_node_first(s->docs); node; node = g_tree_node_next(node)) {
        const char *k = g_tree_node_key(node);
        n += strncmp(k, kind, kl) == 0 && k[kl] == '\n';
    }
    return n;
}

static const char *doc_body(simstore *s, const char *kind, const char *id)
{
    char *k = g_strdup_printf("%s\n%s", kind, id);
    const char *b = g_tree_lookup(s->docs, k);

    g_free(k);
    return b;
}

/* The entry of `daily` for (day, queue), or NULL. */
static const json_t *day_entry(const json_t *daily, const char *day, const char *queue)
{
    const json_t *a = json_object_get(daily, "days"), *d;
    size_t i;

    json_array_foreach(a, i, d)
    {
        if (!strcmp(json_string_value(json_object_get(d, "day")), day) &&
            !strcmp(json_string_value(json_object_get(d, "queue")), queue))
            return d;
    }
    return NULL;
}

/* n jobs of queue q run at t, each for proc ms; then `failed` more fail for good. Commits
 * go to s (NULL: nowhere). */
static void workload(jobq_engine *e, simstore *s, const char *q, int n, int failed, int64_t proc,
                     int64_t t)
{
    for (int i = 0; i < n + failed; i++) {
        jobq_job *j = enq(e, q, NULL, 0, t);
        if (s)
            commit_to(e, s, t);
        else
            commit(e, t);
        cr_assert_eq(fetch1(e, q, t), j);
        if (i < n)
            complete_ok(e, j, t + proc);
        else
            fail_ok(e, j, "x", 0, -1, t + proc);
    }
}

Test(stats, daily_rollover_flush_restart_prune)
{
    jobq_engine *e = eng_new(NULL, 6), *e2;
    simstore *s = sim_new();
    /* 2023-11-15 00:00 UTC (T0 is 2023-11-14 22:13 UTC) */
    int64_t d0 = (T0 / DAY_MS + 1) * DAY_MS, t;
    char id[64], qid[37];
    json_t *d;
    const json_t *x;

    workload(e, s, "render", 3, 1, 2000, d0 + 10 * 3600 * 1000);
    commit_to(e, s, d0 + 10 * 3600 * 1000);
    g_strlcpy(qid, jobq_queue_id(jobq_engine_queue(e, "render")), sizeof qid);
    jobq_engine_stats_tick(e, d0 + 10 * 3600 * 1000 + 5000);
    commit_to(e, s, d0 + 10 * 3600 * 1000 + 5000);
    cr_assert_eq(doc_count(s, "daily"), 0, "nothing written before the day ends or a flush");

    /* just past midnight the day is finished and written */
    jobq_engine_stats_tick(e, d0 + DAY_MS + 1000);
    commit_to(e, s, d0 + DAY_MS + 1000);
    snprintf(id, sizeof id, "2023-11-15/%s", qid);
    cr_assert_not_null(doc_body(s, "daily", id), "no daily document %s", id);
    cr_assert_null(strstr(doc_body(s, "daily", id), "\"hist\""), "a finished day has no hist");

    /* the next day: 2 completions, written by a flush (with its histogram) */
    workload(e, s, "render", 2, 0, 500, d0 + DAY_MS + 3600 * 1000);
    jobq_engine_stats_flush(e, d0 + DAY_MS + 3600 * 1000 + 600);
    commit_to(e, s, d0 + DAY_MS + 3600 * 1000 + 600);
    snprintf(id, sizeof id, "2023-11-16/%s", qid);
    cr_assert_not_null(doc_body(s, "daily", id));
    cr_assert_not_null(strstr(doc_body(s, "daily", id), "\"hist\""));

    d = jobq_engine_stats_daily(e, NULL, 30, d0 + DAY_MS + 3600 * 1000 + 700);
    cr_assert_eq(json_array_size(json_object_get(d, "days")), 2);
    x = day_entry(d, "2023-11-15", "render");
    cr_assert_not_null(x);
    cr_assert_eq(geti(x, "enqueued"), 4);
    cr_assert_eq(geti(x, "completed"), 3);
    cr_assert_eq(geti(x, "failed"), 1);
    cr_assert_float_eq(getd(x, "processing_ms.avg"), 2000.0, 1e-9);
    cr_assert(llabs(geti(x, "processing_ms.p95") - 2000) <= 2000 / 32);
    x = day_entry(d, "2023-11-16", "render");
    cr_assert_eq(geti(x, "completed"), 2);
    json_decref(d);
    d = jobq_engine_stats_daily(e, NULL, 1, d0 + DAY_MS + 3600 * 1000 + 700);
    cr_assert_eq(json_array_size(json_object_get(d, "days")), 1, "days=1: today only");
    json_decref(d);

    /* a restart keeps both days; today goes on adding up where the flush left it */
    jobq_engine_free(e);
    e2 = eng_new(NULL, 7);
    t = d0 + DAY_MS + 2 * 3600 * 1000;
    sim_load(s, e2, t);
    workload(e2, s, "render", 1, 0, 500, t);
    d = jobq_engine_stats_daily(e2, jobq_engine_queue(e2, "render"), 30, t + 1000);
    cr_assert_eq(json_array_size(json_object_get(d, "days")), 2);
    cr_assert_eq(geti(day_entry(d, "2023-11-15", "render"), "completed"), 3);
    x = day_entry(d, "2023-11-16", "render");
    cr_assert_eq(geti(x, "completed"), 3);
    cr_assert_eq(geti(x, "enqueued"), 3);
    cr_assert(llabs(geti(x, "processing_ms.p95") - 500) <= 500 / 32, "p95 from the stored hist");
    json_decref(d);

    /* 90 days later the first day is still kept; at 91 it is pruned, document and all */
    for (int day = 2; day <= 91; day++) {
        jobq_engine_stats_tick(e2, d0 + day * DAY_MS + 1000);
        commit_to(e2, s, d0 + day * DAY_MS + 1000);
        snprintf(id, sizeof id, "2023-11-15/%s", qid);
        if (day <= 90)
            cr_assert_not_null(doc_body(s, "daily", id), "pruned too early (day %d)", day);
    }
    cr_assert_null(doc_body(s, "daily", id), "day 1 kept past 90 days");
    snprintf(id, sizeof id, "2023-11-16/%s", qid);
    cr_assert_not_null(doc_body(s, "daily", id));
    d = jobq_engine_stats_daily(e2, NULL, 366, d0 + 91 * DAY_MS + 2000);
    cr_assert_eq(json_array_size(json_object_get(d, "days")), 1);
    cr_assert_not_null(day_entry(d, "2023-11-16", "render"));
    json_decref(d);
    jobq_engine_free(e2);
    sim_free(s);
}

Test(stats, daily_of_a_deleted_queue_stays)
{
    jobq_engine *e = eng_new(NULL, 8);
    int64_t d0 = (T0 / DAY_MS + 1) * DAY_MS;
    json_t *d;

    workload(e, NULL, "gone", 2, 0, 100, d0 + 1000);
    cr_assert_eq(jobq_engine_queue_delete(e, jobq_engine_queue(e, "gone"), 1, d0 + 5000), 0);
    commit(e, d0 + 5000);
    d = jobq_engine_stats_daily(e, NULL, 7, d0 + 6000);
    cr_assert_eq(geti(day_entry(d, "2023-11-15", "gone"), "completed"), 2);
    json_decref(d);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- health */

static jobq_queue *mkq_json(jobq_engine *e, const char *name, const char *json, int64_t now)
{
    json_t *o = json_loads(json, 0, NULL);
    jobq_queue_opts opts;
    const char *field = NULL, *why = NULL;
    jobq_queue *q = NULL;

    jobq_queue_opts_default(&opts);
    cr_assert_eq(jobq_queue_opts_parse(o, &opts, NULL, &field, &why), 0, "%s: %s", field, why);
    cr_assert_eq(jobq_engine_queue_create(e, name, &opts, now, &q), 0);
    jobq_queue_opts_clear(&opts);
    json_decref(o);
    return q;
}

/* Level of q at now; the reasons' rule names (before ':') joined with ',' into buf. */
static int health(jobq_engine *e, jobq_queue *q, int64_t now, char *buf, size_t n)
{
    json_t *r = json_array(), *v;
    size_t i;
    int level = jobq_engine_queue_health(e, q, now, r);

    buf[0] = '\0';
    json_array_foreach(r, i, v)
    {
        const char *s = json_string_value(v);
        size_t len = strcspn(s, ":");
        if (i)
            g_strlcat(buf, ",", n);
        strncat(buf, s, MIN(len, n - strlen(buf) - 1));
    }
    json_decref(r);
    return level;
}

Test(health, rules_with_short_thresholds)
{
    jobq_engine *e = eng_new(NULL, 9);
    jobq_queue *q = mkq_json(e, "q",
                             "{\"concurrency\":2,\"alert\":{\"backlog\":2,\"error_rate\":20,"
                             "\"paused_ms\":1000,\"idle_ms\":5000,\"utilization\":50,"
                             "\"processing_p95_ms\":1000}}",
                             T0);
    jobq_job *j[3];
    char why[256];
    json_t *h;

    cr_assert_eq(health(e, q, T0, why, sizeof why), JOBQ_HEALTHY);
    cr_assert_str_eq(why, "");
    for (int i = 0; i < 3; i++)
        j[i] = enq(e, "q", NULL, 0, T0);
    commit(e, T0);
    cr_assert_eq(health(e, q, T0, why, sizeof why), JOBQ_DEGRADED);
    cr_assert_str_eq(why, "backlog");
    h = jobq_engine_health(e, T0, 1);
    cr_assert_eq(geti(h, "overloaded"), 1);
    cr_assert_str_eq(json_string_value(json_object_get(h, "status")), "degraded");
    json_decref(h);

    cr_assert_eq(fetch1(e, "q", T0 + 10), j[0]);
    cr_assert_eq(fetch1(e, "q", T0 + 10), j[1]);
    cr_assert_eq(health(e, q, T0 + 10, why, sizeof why), JOBQ_DEGRADED);
    cr_assert_str_eq(why, "utilization", "2 of 2 active > 50%%: %s", why);

    complete_ok(e, j[0], T0 + 3010);
    fail_ok(e, j[1], "x", 0, -1, T0 + 3010);
    cr_assert_eq(health(e, q, T0 + 3010, why, sizeof why), JOBQ_DEGRADED);
    cr_assert_str_eq(why, "error_rate,processing_p95", "%s", why);

    /* 16 minutes on, the failure and the slow job are out of the window */
    cr_assert_eq(health(e, q, T0 + 16 * MIN_MS, why, sizeof why), JOBQ_HEALTHY, "%s", why);

    /* paused longer than paused_ms */
    jobq_engine_queue_pause(e, q, T0 + 16 * MIN_MS);
    cr_assert_eq(health(e, q, T0 + 16 * MIN_MS + 1000, why, sizeof why), JOBQ_HEALTHY);
    cr_assert_eq(health(e, q, T0 + 16 * MIN_MS + 1001, why, sizeof why), JOBQ_DEGRADED);
    cr_assert_str_eq(why, "paused");

    /* resumed: a job waits and nothing completes for idle_ms (the sweep notes the wait) */
    jobq_engine_queue_resume(e, q, T0 + 17 * MIN_MS);
    jobq_health_sweep(e, T0 + 17 * MIN_MS, 1);
    cr_assert_eq(health(e, q, T0 + 17 * MIN_MS + 5000, why, sizeof why), JOBQ_HEALTHY);
    cr_assert_eq(health(e, q, T0 + 17 * MIN_MS + 5001, why, sizeof why), JOBQ_DEGRADED);
    cr_assert_str_eq(why, "idle");

    /* status error: unhealthy; the store failing: every queue unhealthy */
    q->status = JOBQ_Q_ERROR;
    cr_assert_eq(health(e, q, T0 + 17 * MIN_MS, why, sizeof why), JOBQ_UNHEALTHY);
    cr_assert_str_eq(why, "status");
    q->status = JOBQ_Q_ACTIVE;
    mkq(e, "fine", T0, NULL);
    h = jobq_engine_health(e, T0 + 17 * MIN_MS, 0);
    cr_assert_str_eq(json_string_value(json_object_get(h, "status")), "unhealthy");
    cr_assert_str_eq(json_string_value(json_object_get(h, "store")), "failing");
    cr_assert_eq(geti(h, "errors"), 2);
    cr_assert_eq(geti(h, "healthy"), 0);
    cr_assert_eq(geti(h, "total"), 2);
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(h, "queues"), "fine"), "status")),
                     "unhealthy");
    json_decref(h);
    jobq_engine_free(e);
}

Test(health, defaults_follow_the_contract)
{
    jobq_engine *e = eng_new(NULL, 10);
    jobq_queue *q = mkq(e, "q", T0, NULL);
    char why[256];

    /* 100 waiting is fine, 101 is a backlog */
    for (int i = 0; i < 101; i++)
        enq(e, "q", NULL, 0, T0);
    commit(e, T0);
    jobq_health_sweep(e, T0, 1);
    cr_assert_eq(health(e, q, T0, why, sizeof why), JOBQ_DEGRADED);
    cr_assert_str_eq(why, "backlog");
    {
        jobq_job *j = fetch1(e, "q", T0);
        complete_ok(e, j, T0 + 1);
    }
    cr_assert_eq(health(e, q, T0 + 1, why, sizeof why), JOBQ_HEALTHY, "%s", why);
    /* 30 minutes with jobs waiting and no completion: idle */
    cr_assert_eq(health(e, q, T0 + 1 + 30 * MIN_MS, why, sizeof why), JOBQ_HEALTHY);
    cr_assert_eq(health(e, q, T0 + 2 + 30 * MIN_MS, why, sizeof why), JOBQ_DEGRADED);
    cr_assert_str_eq(why, "idle");
    /* paused an hour */
    jobq_engine_queue_pause(e, q, T0 + 2 + 30 * MIN_MS);
    cr_assert_eq(health(e, q, T0 + 2 + 90 * MIN_MS, why, sizeof why), JOBQ_HEALTHY);
    cr_assert_eq(health(e, q, T0 + 3 + 90 * MIN_MS, why, sizeof why), JOBQ_DEGRADED);
    cr_assert_str_eq(why, "paused");
    jobq_engine_free(e);
}

Test(health, sweep_remembers_levels)
{
    jobq_engine *e = eng_new(NULL, 11);
    jobq_queue *q = mkq_json(e, "q", "{\"alert\":{\"backlog\":0}}", T0);

    jobq_engine_stats_tick(e, T0);
    cr_assert_eq(q->st->level, JOBQ_HEALTHY);
    enq(e, "q", NULL, 0, T0);
    commit(e, T0);
    jobq_engine_stats_tick(e, T0 + 1000);
    cr_assert_eq(q->st->level, JOBQ_HEALTHY, "re-evaluated only every health_interval_ms");
    jobq_engine_stats_tick(e, T0 + 5000);
    cr_assert_eq(q->st->level, JOBQ_DEGRADED);
    cr_assert_leq(jobq_engine_stats_due(e), T0 + 10000);
    jobq_engine_free(e);
}

typedef struct evlog {
    GPtrArray *json; /* event texts (owned) */
} evlog;

static void ev_hook(void *ud, const jobq_event *ev)
{
    evlog *l = ud;

    if (strcmp(ev->type, "health.changed") == 0)
        g_ptr_array_add(l->json, g_strndup(ev->json, ev->json_len));
}

Test(health, changes_are_announced)
{
    evlog l = {g_ptr_array_new_with_free_func(g_free)};
    jobq_engine_config cfg = {.seed = 12, .health_interval_ms = 1000};
    jobq_engine_hooks hooks = {.event = ev_hook, .ud = &l};
    jobq_engine *e = jobq_engine_new(&cfg, &hooks);
    jobq_queue *q = mkq_json(e, "q", "{\"alert\":{\"paused_ms\":1500}}", T0);
    json_t *ev;

    jobq_engine_stats_tick(e, T0);
    jobq_engine_queue_pause(e, q, T0);
    jobq_engine_stats_tick(e, T0 + 1000);
    cr_assert_eq(l.json->len, 0, "paused 1 s of 1.5: still healthy");
    jobq_engine_stats_tick(e, T0 + 2000);
    cr_assert_eq(l.json->len, 1);
    ev = json_loads(g_ptr_array_index(l.json, 0), 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(ev, "type")), "health.changed");
    cr_assert_str_eq(json_string_value(json_object_get(ev, "queue")), "q");
    cr_assert_str_eq(json_string_value(json_object_get(ev, "status")), "degraded");
    cr_assert_str_eq(json_string_value(json_object_get(ev, "previous")), "healthy");
    cr_assert_eq(json_integer_value(json_object_get(ev, "at")), T0 + 2000);
    cr_assert(!strncmp(json_string_value(json_array_get(json_object_get(ev, "reasons"), 0)),
                       "paused:", 7));
    json_decref(ev);
    jobq_engine_stats_tick(e, T0 + 3000);
    cr_assert_eq(l.json->len, 1, "announced once per change");
    jobq_engine_queue_resume(e, q, T0 + 3500);
    jobq_engine_stats_tick(e, T0 + 4000);
    cr_assert_eq(l.json->len, 2);
    ev = json_loads(g_ptr_array_index(l.json, 1), 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(ev, "status")), "healthy");
    cr_assert_eq(json_array_size(json_object_get(ev, "reasons")), 0);
    json_decref(ev);
    jobq_engine_free(e);
    g_ptr_array_free(l.json, TRUE);
}
