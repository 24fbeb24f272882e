/*
 * stats.c — /v1/stats/series, /v1/stats/daily, /v1/health (docs/metrics.md).
 *
 * Reads only: everything comes from the engine's memory (src/engine/stats.c, health.c);
 * the one thing the engine cannot know, whether the store is failing, comes from the app.
 */
#include "api/api.h"

/* ?queue=: NULL when absent; answers 404 and sets *bad when it names no queue. */
static jobq_queue *queue_arg(jobq_app *a, jobq_req *rq, int *bad)
{
    const char *name = jobq_req_query(rq, "queue");
    jobq_queue *q;

    *bad = 0;
    if (!name || !*name)
        return NULL;
    q = jobq_engine_queue(jobq_app_engine(a), name);
    if (!q) {
        jobq_req_error(rq, 404, "not_found", "no such queue", NULL);
        *bad = 1;
    }
    return q;
}

void jobq_h_stats_series(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    const char *metric = jobq_req_query(rq, "metric");
    int64_t minutes = jobq_api_query_int(rq, "minutes", 60, 1440);
    jobq_queue *q;
    json_t *out = NULL;
    int bad;

    if (minutes < 0)
        return;
    if (minutes < 1) {
        jobq_api_bad_field(rq, "minutes", "must be an integer from 1 to 1440");
        return;
    }
    q = queue_arg(a, rq, &bad);
    if (bad)
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
    int64_t days = jobq_api_query_int(rq, "days", 30, 366);
    jobq_queue *q;
    int bad;

    if (days < 0)
        return;
    if (days < 1) {
        jobq_api_bad_field(rq, "days", "must be an integer from 1 to 366");
        return;
    }
    q = queue_arg(a, rq, &bad);
    if (bad)
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
