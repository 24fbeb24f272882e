/*
 * system.c — /healthz, /readyz, /v1/stats.
 */
#include "api/api.h"

void jobq_h_healthz(jobq_req *rq)
{
    static const char ok[] = "{\"status\":\"ok\"}";

    jobq_req_reply(rq, 200, ok, sizeof ok - 1);
}

void jobq_h_readyz(jobq_req *rq)
{
    static const char ready[] = "{\"status\":\"ready\"}";
    jobq_app *a = jobq_req_app(rq);

    /* not ready while the store refuses writes or the server is stopping */
    if (!jobq_app_writable(a, rq))
        return;
    jobq_req_reply(rq, 200, ready, sizeof ready - 1);
}

void jobq_h_stats(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);

    jobq_api_json(rq, 200, jobq_engine_stats(jobq_app_engine(a), jobq_app_now()));
}
