/*
 * metrics.c — GET /metrics: Prometheus text exposition format 0.0.4 (docs/metrics.md).
 *
 * Every family has HELP and TYPE lines; names carry their unit and counters end in _total,
 * as Prometheus' conventions ask (`promtool check metrics` passes). Gauges and counters come
 * from the queues' live numbers (the job counters are kept across restarts); the two
 * histograms count since the server started. Queue names need no label escaping: they are
 * [A-Za-z0-9._-] only.
 */
#include <inttypes.h>
#include <stdio.h>

#include "api/api.h"

typedef struct family {
    const char *name, *type, *help;
} family;

static void head(GString *o, const family *f)
{
    g_string_append_printf(o, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->type);
}

typedef struct walk {
    GString *o;
    int64_t now;
    const jobq_engine *e;
    int which;         /* what each queue writes (one family at a time) */
    const char *name;  /* that family's name */
    int store_ok;
} walk;

enum { W_JOBS, W_ENQ, W_DONE, W_FAIL, W_RETRY, W_STALL, W_PROC, W_WAIT, W_STATUS, W_HEALTH };

static void histogram(GString *o, const char *name, const char *queue, const jobq_hist_totals *h)
{
    for (int i = 0; i < JOBQ_HIST_NLE; i++)
        g_string_append_printf(o, "%s_bucket{queue=\"%s\",le=\"%g\"} %" PRIu64 "\n", name, queue,
                               (double)jobq_hist_le_ms[i] / 1000.0, h->le[i]);
    g_string_append_printf(o, "%s_bucket{queue=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", name, queue,
                           h->count);
    g_string_append_printf(o, "%s_sum{queue=\"%s\"} %.3f\n", name, queue,
                           (double)h->sum_ms / 1000.0);
    g_string_append_printf(o, "%s_count{queue=\"%s\"} %" PRIu64 "\n", name, queue, h->count);
}

static int one_queue(void *ud, jobq_queue *q)
{
    walk *w = ud;
    GString *o = w->o;
    const char *n = jobq_queue_name(q);
    jobq_queue_totals t;
    jobq_hist_totals h;

    jobq_queue_get_totals(q, &t);
    switch (w->which) {
    case W_JOBS:
        for (int s = 0; s < JOBQ_NSTATES; s++)
            g_string_append_printf(o, "jobq_jobs{queue=\"%s\",state=\"%s\"} %" PRId64 "\n", n,
                                   jobq_state_name(s), jobq_queue_count(q, s));
        break;
    case W_ENQ:
    case W_DONE:
    case W_FAIL:
    case W_RETRY:
    case W_STALL: {
        const int64_t counter[] = {t.enqueued, t.processed, t.failed, t.retried, t.stalled};
        g_string_append_printf(o, "%s{queue=\"%s\"} %" PRId64 "\n", w->name, n,
                               counter[w->which - W_ENQ]);
        break;
    }
    case W_PROC:
    case W_WAIT:
        jobq_queue_hist_totals(q, w->which == W_WAIT, &h);
        histogram(o, w->name, n, &h);
        break;
    case W_STATUS:
        for (int s = JOBQ_Q_ACTIVE; s <= JOBQ_Q_ERROR; s++)
            g_string_append_printf(o, "jobq_queue_status{queue=\"%s\",status=\"%s\"} %d\n", n,
                                   jobq_qstatus_name(s), jobq_queue_status(q) == s);
        break;
    case W_HEALTH:
        g_string_append_printf(
            o, "jobq_queue_health{queue=\"%s\"} %d\n", n,
            w->store_ok ? jobq_engine_queue_health(w->e, q, w->now, NULL) : JOBQ_UNHEALTHY);
        break;
    }
    return 0;
}

void jobq_h_metrics(jobq_req *rq)
{
    static const family per_queue[] = {
        {"jobq_jobs", "gauge", "Jobs of the queue in each state."},
        {"jobq_jobs_enqueued_total", "counter", "Jobs enqueued (kept across restarts)."},
        {"jobq_jobs_completed_total", "counter", "Jobs completed (kept across restarts)."},
        {"jobq_jobs_failed_total", "counter",
         "Jobs failed for good, out of attempts or not retryable (kept across restarts)."},
        {"jobq_jobs_retried_total", "counter",
         "Failed attempts sent to retry (kept across restarts)."},
        {"jobq_jobs_stalled_total", "counter",
         "Leases that expired without a heartbeat (kept across restarts)."},
        {"jobq_job_processing_seconds", "histogram",
         "Time from a job's start to its completion, for completed jobs, since the server "
         "started."},
        {"jobq_job_wait_seconds", "histogram",
         "Time from a job becoming ready to a worker starting it, since the server started."},
        {"jobq_queue_status", "gauge", "1 for the queue's status, 0 for the others."},
        {"jobq_queue_health", "gauge",
         "Health of the queue: 0 healthy, 1 degraded, 2 unhealthy (see /v1/health)."},
    };
    static const family workers = {"jobq_workers", "gauge",
                                   "Workers seen in the last minute or holding jobs."};
    static const family uptime = {"jobq_uptime_seconds", "gauge",
                                  "Seconds since the server loaded its store."};
    static const family store = {"jobq_store_up", "gauge",
                                 "1 while the store saves changes, 0 while it fails."};
    jobq_app *a = jobq_req_app(rq);
    jobq_engine *e = jobq_app_engine(a);
    walk w = {g_string_sized_new(8192), jobq_app_now(), e, 0, NULL, jobq_app_store_ok(a)};
    size_t len;

    for (size_t i = 0; i < sizeof per_queue / sizeof per_queue[0]; i++) {
        head(w.o, &per_queue[i]);
        w.which = (int)i;
        w.name = per_queue[i].name;
        jobq_engine_queue_each(e, one_queue, &w);
    }
    head(w.o, &workers);
    g_string_append_printf(w.o, "jobq_workers %" PRId64 "\n", jobq_engine_active_workers(e, w.now));
    head(w.o, &uptime);
    g_string_append_printf(w.o, "jobq_uptime_seconds %.3f\n",
                           (double)jobq_engine_uptime_ms(e, w.now) / 1000.0);
    head(w.o, &store);
    g_string_append_printf(w.o, "jobq_store_up %d\n", w.store_ok);
    jobq_req_add_header(rq, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    len = w.o->len;
    jobq_req_reply_take(rq, 200, g_string_free(w.o, FALSE), len);
}
