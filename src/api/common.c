/*
 * common.c — what every resource handler needs: the JSON body (bounded), error answers
 * mapped from jobq codes to the API's statuses (docs/api.md), and rendering helpers.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "util/jsonw.h"

#define MAX_DEPTH 64

/* Nesting depth of JSON text, counted outside strings, without parsing; stops past max.
 * jansson's own limit is 2048 levels: this keeps a hostile body from costing even that. */
static int too_deep(const char *s, size_t len, int max)
{
    int depth = 0, in_str = 0;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > max)
                return 1;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return 0;
}

int jobq_api_too_deep(const char *s, size_t len)
{
    return too_deep(s, len, MAX_DEPTH);
}

json_t *jobq_api_body(jobq_req *rq, int required)
{
    size_t len;
    const char *body = jobq_req_body(rq, &len);
    json_error_t err;
    json_t *v;

    if (len == 0) {
        if (required) {
            jobq_req_error(rq, 400, "invalid_json", "a JSON body is required", NULL);
            return NULL;
        }
        return json_object();
    }
    if (too_deep(body, len, MAX_DEPTH)) {
        jobq_req_error(rq, 400, "invalid_json", "JSON nested deeper than 64 levels", NULL);
        return NULL;
    }
    /* \u0000 is fine inside payloads (they are stored re-escaped); fields used as C strings
     * check their length against strlen */
    v = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    if (!v) {
        char msg[256], det[96];
        snprintf(msg, sizeof msg, "malformed JSON: %s", err.text);
        snprintf(det, sizeof det, "{\"line\":%d,\"column\":%d}", err.line, err.column);
        jobq_req_error(rq, 400, "invalid_json", msg, det);
        return NULL;
    }
    return v;
}

json_t *jobq_api_object_body(jobq_req *rq, int required)
{
    json_t *body = jobq_api_body(rq, required);

    if (body && !json_is_object(body)) {
        jobq_api_bad_field(rq, "body", "must be an object");
        json_decref(body);
        return NULL;
    }
    return body;
}

void jobq_api_bad_field(jobq_req *rq, const char *field, const char *why)
{
    GString *msg = g_string_new(NULL), *det = g_string_new("{");
    int first = 1;

    g_string_printf(msg, "%s: %s", field, why);
    jobq_jw_kstr(det, &first, "field", field);
    g_string_append_c(det, '}');
    jobq_req_error(rq, 400, "invalid_argument", msg->str, det->str);
    g_string_free(msg, TRUE);
    g_string_free(det, TRUE);
}

void jobq_api_fail(jobq_req *rq, int rc, const char *msg)
{
    if (!msg)
        msg = jobq_strerror(rc);
    switch (rc) {
    case JOBQ_EINVAL:
        jobq_req_error(rq, 400, "invalid_argument", msg, NULL);
        break;
    case JOBQ_ENOTFOUND:
        jobq_req_error(rq, 404, "not_found", msg, NULL);
        break;
    case JOBQ_EEXIST:
        jobq_req_error(rq, 409, "conflict", msg, NULL);
        break;
    case JOBQ_ESTATE:
        jobq_req_error(rq, 409, "invalid_state", msg, NULL);
        break;
    case JOBQ_ELEASE:
        jobq_req_error(rq, 409, "lease_lost", msg, NULL);
        break;
    case JOBQ_EDRAINING:
        jobq_req_error(rq, 409, "queue_draining", msg, NULL);
        break;
    case JOBQ_EFULL:
        jobq_req_add_header(rq, "Retry-After", "1");
        jobq_req_error(rq, 429, "queue_full", msg, NULL);
        break;
    case JOBQ_ENOMEM:
    case JOBQ_ESTORE:
    case JOBQ_EIO:
        jobq_req_error(rq, 503, "unavailable", msg, NULL);
        break;
    default:
        jobq_req_error(rq, 500, "internal", msg, NULL);
    }
}

void jobq_api_json(jobq_req *rq, unsigned status, json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

    json_decref(v);
    if (!s) {
        jobq_req_error(rq, 503, "unavailable", "out of memory", NULL);
        return;
    }
    jobq_req_reply_take(rq, status, s, strlen(s));
}

void jobq_api_gstring(jobq_req *rq, unsigned status, GString *s)
{
    size_t len = s->len;

    jobq_req_reply_take(rq, status, g_string_free(s, FALSE), len);
}

int64_t jobq_api_query_int(jobq_req *rq, const char *name, int64_t def, int64_t max)
{
    const char *v = jobq_req_query(rq, name);
    char *end;
    long long n;

    if (!v)
        return def;
    n = strtoll(v, &end, 10);
    if (!*v || *end || n < 0 || n > max) {
        char why[64];
        snprintf(why, sizeof why, "must be an integer from 0 to %" PRId64, max);
        jobq_api_bad_field(rq, name, why);
        return -1;
    }
    return n;
}

GString *jobq_api_job_text(jobq_app *a, const jobq_job *j)
{
    GString *o = g_string_sized_new(768);

    jobq_job_render(jobq_app_engine(a), j, 0, jobq_app_now(), o);
    return o;
}

void jobq_api_job(jobq_app *a, jobq_req *rq, unsigned status, const jobq_job *j, int with_lease)
{
    GString *o = g_string_sized_new(768);

    jobq_job_render(jobq_app_engine(a), j, with_lease, jobq_app_now(), o);
    jobq_api_gstring(rq, status, o);
}

void jobq_api_result(jobq_req *rq, const jobq_job *j)
{
    GString *o = g_string_new("{");
    int first = 1;

    jobq_jw_kstr(o, &first, "id", jobq_job_id(j));
    jobq_jw_kstr(o, &first, "state", jobq_state_name(jobq_job_state(j)));
    jobq_jw_kraw(o, &first, "result", jobq_job_result_text(j));
    jobq_jw_kraw(o, &first, "error", jobq_job_error_text(j));
    g_string_append_c(o, '}');
    jobq_api_gstring(rq, 200, o);
}

void jobq_api_not_found(jobq_req *rq, const char *what, const char *id)
{
    char *m = g_strdup_printf("%s %.200s not found", what, id);

    jobq_req_error(rq, 404, "not_found", m, NULL);
    g_free(m);
}

jobq_job *jobq_api_find_job(jobq_app *a, jobq_req *rq)
{
    const char *id = jobq_req_param(rq, 0);
    jobq_job *j = jobq_engine_job(jobq_app_engine(a), id);

    if (!j)
        jobq_api_not_found(rq, "job", id);
    return j;
}

jobq_queue *jobq_api_find_queue(jobq_app *a, jobq_req *rq)
{
    const char *name = jobq_req_param(rq, 0);
    jobq_queue *q = jobq_engine_queue(jobq_app_engine(a), name);

    if (!q)
        jobq_api_not_found(rq, "queue", name);
    return q;
}
