/*
 * webhooks.c — /v1/webhooks…: register, list, read and delete hooks, and read a hook's
 * recent deliveries. The hooks and their outbox live in outbox.c.
 */
#include <string.h>

#include "api/api.h"
#include "api/outbox.h"

void jobq_h_webhook_create(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    const char *field = NULL, *why = NULL;
    char *spec = NULL;
    json_t *body;
    GString *o;
    int rc;

    if (!jobq_app_writable(a, rq))
        return;
    body = jobq_api_body(rq, 1);
    if (!body)
        return;
    rc = jobq_webhook_parse(body, 1, &spec, &field, &why);
    if (rc == JOBQ_EINVAL)
        jobq_api_bad_field(rq, field, why); /* field may point into body */
    json_decref(body);
    if (rc == JOBQ_EINVAL)
        return;
    if (rc) {
        jobq_api_fail(rq, rc, NULL);
        return;
    }
    o = g_string_sized_new(256);
    rc = jobq_webhooks_add(jobq_app_webhooks(a), spec, jobq_app_now(), o);
    free(spec);
    if (rc == JOBQ_EFULL) {
        g_string_free(o, TRUE);
        jobq_req_error(rq, 409, "conflict", "at most 1000 webhooks; delete one first", NULL);
        return;
    }
    if (rc) {
        g_string_free(o, TRUE);
        jobq_api_fail(rq, rc, NULL);
        return;
    }
    jobq_api_reply_durable(a, rq, 201, o);
}

void jobq_h_webhooks_list(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    GString *o = g_string_sized_new(512);

    jobq_webhooks_render_all(jobq_app_webhooks(a), o);
    jobq_api_gstring(rq, 200, o);
}

static void not_found(jobq_req *rq, const char *id)
{
    GString *m = g_string_new(NULL);

    g_string_printf(m, "webhook %.200s not found", id);
    jobq_req_error(rq, 404, "not_found", m->str, NULL);
    g_string_free(m, TRUE);
}

void jobq_h_webhook_get(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    const char *id = jobq_req_param(rq, 0);
    GString *o = g_string_sized_new(256);

    if (jobq_webhooks_render(jobq_app_webhooks(a), id, o)) {
        g_string_free(o, TRUE);
        not_found(rq, id);
        return;
    }
    jobq_api_gstring(rq, 200, o);
}

void jobq_h_webhook_delete(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    const char *id = jobq_req_param(rq, 0);

    if (!jobq_app_writable(a, rq))
        return;
    if (jobq_webhooks_remove(jobq_app_webhooks(a), id)) {
        not_found(rq, id);
        return;
    }
    jobq_api_reply_durable(a, rq, 204, NULL);
}

void jobq_h_webhook_deliveries(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    const char *id = jobq_req_param(rq, 0);
    int64_t limit = jobq_api_query_int(rq, "limit", 100, 1000);
    GString *o;

    if (limit < 0)
        return;
    o = g_string_sized_new(1024);
    if (jobq_webhooks_render_deliveries(jobq_app_webhooks(a), id, (size_t)limit, o)) {
        g_string_free(o, TRUE);
        not_found(rq, id);
        return;
    }
    jobq_api_gstring(rq, 200, o);
}
