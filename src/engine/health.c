/*
 * health.c — the health rules of a queue, /v1/health, and health.changed.
 *
 * A queue is unhealthy when its status is `error`; degraded when any rule below holds; else
 * healthy. Each rule has a per-queue threshold in the queue's `alert` option (engine.h,
 * docs/metrics.md):
 *   backlog          waiting jobs > alert.backlog (default 100)
 *   error_rate       failed / (completed + failed) over the last 15 minutes, in percent,
 *                    > alert.error_rate (default 10)
 *   paused           paused for longer than alert.paused_ms (default 1 hour)
 *   idle             jobs waiting, the queue not paused, and none completed for
 *                    alert.idle_ms (default 30 minutes) while they waited
 *   utilization      active / concurrency, in percent, > alert.utilization (off by default)
 *   processing_p95   p95 processing time over 15 minutes > alert.processing_p95_ms (off)
 * The store failing makes every queue unhealthy; only the API layer knows that, and says so
 * through jobq_engine_health's store_ok.
 *
 * The rules are evaluated whenever someone asks (GET /v1/health, /metrics), and every
 * health_interval_ms by jobq_engine_stats_tick, which announces a queue whose level changed
 * (announce() below: the one place a health change is noticed).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

static const char *const level_names[] = {"healthy", "degraded", "unhealthy"};

const char *jobq_health_name(int level)
{
    return level >= 0 && level <= JOBQ_UNHEALTHY ? level_names[level] : NULL;
}

static void reason(json_t *reasons, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void reason(json_t *reasons, const char *fmt, ...)
{
    va_list ap;
    char *s;

    if (!reasons)
        return;
    va_start(ap, fmt);
    s = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    json_array_append_new(reasons, json_string(s));
    g_free(s);
}

int jobq_health_eval(const jobq_engine *e, const jobq_queue *q, int64_t now, json_t *reasons)
{
    const jobq_queue_opts *o = &q->o;
    int64_t waiting = q->counts[JOBQ_WAITING];
    int level = JOBQ_HEALTHY;
    jobq_recent r;

    (void)e;
    if (jobq_queue_status(q) == JOBQ_Q_ERROR) {
        reason(reasons, "status: the queue is in status error (its circuit breaker is open)");
        level = JOBQ_UNHEALTHY;
    }
    if (waiting > o->alert_backlog) {
        reason(reasons, "backlog: %" PRId64 " waiting jobs > alert.backlog %" PRId64, waiting,
               o->alert_backlog);
        level = MAX(level, JOBQ_DEGRADED);
    }
    jobq_stats_recent(q, now, o->alert_processing_p95_ms >= 0, &r);
    if (r.completed + r.failed > 0) {
        double rate = 100.0 * (double)r.failed / (double)(r.completed + r.failed);
        if (rate > o->alert_error_rate) {
            reason(reasons,
                   "error_rate: %.1f%% of the jobs that ended in the last 15 minutes failed "
                   "(%" PRId64 " of %" PRId64 ") > alert.error_rate %g%%",
                   rate, r.failed, r.completed + r.failed, o->alert_error_rate);
            level = MAX(level, JOBQ_DEGRADED);
        }
    }
    if (q->status == JOBQ_Q_PAUSED && q->paused_at && now - q->paused_at > o->alert_paused_ms) {
        reason(reasons, "paused: paused for %" PRId64 " s > alert.paused_ms %" PRId64,
               (now - q->paused_at) / 1000, o->alert_paused_ms);
        level = MAX(level, JOBQ_DEGRADED);
    }
    if (waiting > 0 && q->status != JOBQ_Q_PAUSED && q->st && q->st->waiting_since) {
        /* idle since the later of the last completion and the moment jobs began to wait */
        int64_t since = MAX(q->last_processed_at, q->st->waiting_since);
        if (now - since > o->alert_idle_ms) {
            reason(reasons,
                   "idle: %" PRId64 " jobs waiting and none completed for %" PRId64
                   " s > alert.idle_ms %" PRId64,
                   waiting, (now - since) / 1000, o->alert_idle_ms);
            level = MAX(level, JOBQ_DEGRADED);
        }
    }
    if (o->alert_utilization >= 0 && o->concurrency > 0) {
        double u = 100.0 * (double)q->counts[JOBQ_ACTIVE] / (double)o->concurrency;
        if (u > o->alert_utilization) {
            reason(reasons, "utilization: %.1f%% of concurrency %" PRId64 " > alert.utilization %g%%",
                   u, o->concurrency, o->alert_utilization);
            level = MAX(level, JOBQ_DEGRADED);
        }
    }
    if (o->alert_processing_p95_ms >= 0 && r.proc_p[1] > o->alert_processing_p95_ms) {
        reason(reasons,
               "processing_p95: p95 processing time %" PRId64
               " ms over the last 15 minutes > alert.processing_p95_ms %" PRId64,
               r.proc_p[1], o->alert_processing_p95_ms);
        level = MAX(level, JOBQ_DEGRADED);
    }
    return level;
}

int jobq_engine_queue_health(const jobq_engine *e, const jobq_queue *q, int64_t now,
                             json_t *reasons)
{
    return jobq_health_eval(e, q, now, reasons);
}

json_t *jobq_engine_health(const jobq_engine *e, int64_t now, int store_ok)
{
    json_t *qs = json_object();
    int64_t healthy = 0, overloaded = 0, errors = 0, total = 0;
    int worst = store_ok ? JOBQ_HEALTHY : JOBQ_UNHEALTHY;
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, e->queues);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        const jobq_queue *q = v;
        json_t *reasons = json_array();
        int level = jobq_health_eval(e, q, now, reasons);
        if (!store_ok) {
            json_array_append_new(reasons, json_string("store: the store fails to save changes"));
            level = JOBQ_UNHEALTHY;
        }
        total++;
        healthy += level == JOBQ_HEALTHY;
        overloaded += q->counts[JOBQ_WAITING] > q->o.alert_backlog;
        errors += level == JOBQ_UNHEALTHY;
        worst = MAX(worst, level);
        json_object_set_new(qs, q->name,
                            json_pack("{s:s, s:o}", "status", jobq_health_name(level), "reasons",
                                      reasons));
    }
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:o}", "status", jobq_health_name(worst),
                     "healthy", (json_int_t)healthy, "total", (json_int_t)total, "overloaded",
                     (json_int_t)overloaded, "errors", (json_int_t)errors, "store",
                     store_ok ? "ok" : "failing", "queues", qs);
}

/* The one place a change of a queue's health level is noticed: it becomes a health.changed
 * event {"queue", "status", "previous", "reasons"}. */
static void announce(jobq_engine *e, jobq_queue *q, int from, int to, json_t *reasons,
                     int64_t now)
{
    char *r, *fields;

    if (!jobq_engine_events_on(e))
        return;
    r = json_dumps(reasons, JSON_COMPACT);
    fields = g_strdup_printf("\"status\":\"%s\",\"previous\":\"%s\",\"reasons\":%s",
                             jobq_health_name(to), jobq_health_name(from), r ? r : "[]");
    jobq_engine_emit(e, "health.changed", now, q->name, NULL, NULL, NULL, fields);
    g_free(fields);
    free(r);
}

void jobq_health_sweep(jobq_engine *e, int64_t now, int quiet)
{
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, e->queues);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        jobq_queue *q = v;
        jobq_qstats *st = jobq_qstats_of(q);
        int level;

        /* when the waiting began, for the idle rule (as exact as the sweep is frequent) */
        if (!q->counts[JOBQ_WAITING])
            st->waiting_since = 0;
        else if (!st->waiting_since)
            st->waiting_since = now;
        /* the reasons are written out only for a change: most sweeps change nothing */
        level = jobq_health_eval(e, q, now, NULL);
        if (level != st->level && !quiet) {
            json_t *reasons = json_array();
            jobq_health_eval(e, q, now, reasons);
            announce(e, q, st->level, level, reasons, now);
            json_decref(reasons);
        }
        st->level = level;
    }
}
