/*
 * stats.c — /v1/stats/series, /v1/stats/daily, /v1/health (docs/metrics.md).
 *
 * Reads only: everything comes from the engine's memory (src/engine/stats.c, health.c);
 * the one thing the engine cannot know, whether the store is failing, comes from the app.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

/* The arguments of series and daily: ?NAME= (1..max, default def) into *n and ?queue= (NULL
 * when absent) into *q. 0, or -1 when rq was answered: 400 for a bad number, 404 for a queue
 * that does not exist. */
static int args(jobq_app *a, jobq_req *rq, const char *name, int64_t def, int64_t max,
                int64_t *n, jobq_queue **q)
{
    const char *queue = jobq_req_query(rq, "queue"), *v = jobq_req_query(rq, name);
    char why[64], *end;

    *n = def;
    if (v && (*n = strtoll(v, &end, 10), !*v || *end || *n < 1 || *n > max)) {
        snprintf(why, sizeof why, "must be an integer from 1 to %" PRId64, max);
        jobq_api_bad_field(rq, name, why);
        return -1;
    }
    *q = NULL;
    if (!queue || !*queue)
        return 0;
    *q = jobq_engine_queue(jobq_app_engine(a), queue);
    if (!*q) {
        jobq_req_error(rq, 404, "not_found", "no such queue", NULL);
        return -1;
    }
    return 0;
}

void jobq_h_stats_series(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    const char *metric = jobq_req_query(rq, "metric");
    int64_t minutes;
    jobq_queue *q;
    json_t *out = NULL;

    if (args(a, rq, "minutes", 60, 1440, &minutes, &q))
        return;
    if (!metric)
        metric = "completed";
    if (jobq_engine_stats_series(jobq_app_engine(a), q, metric, (int)minutes, jobq_app_now(),
                                 &out)) {
        if (!q && strcmp(metric, "processing_p95") == 0)
            jobq_api_bad_field(rq, "queue", "processing_p95 is per queue: name one");
        else
            jobq_api_bad_field(rq, "metric",
                               "must be completed, failed, enqueued, processing_p95 or waiting");
        return;
    }
    jobq_api_json(rq, 200, out);
}

void jobq_h_stats_daily(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    int64_t days;
    jobq_queue *q;

    if (args(a, rq, "days", 30, 366, &days, &q))
        return;
    jobq_api_json(rq, 200,
                  jobq_engine_stats_daily(jobq_app_engine(a), q, (int)days, jobq_app_now()));
}

void jobq_h_health(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);

    /* 200 whatever the level: the body says it; a probe that wants a status code has
     * /readyz */
    jobq_api_json(rq, 200,
                  jobq_engine_health(jobq_app_engine(a), jobq_app_now(), jobq_app_store_ok(a)));
}
