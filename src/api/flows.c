/*
 * flows.c — /v1/flows… (DAGs of jobs submitted at once) and the review verbs
 * /v1/jobs/{id}/approve and /reject.
 *
 * A flow body is checked field by field (each job through the enqueue parser, after its
 * `ref` and `queue` are taken out); the engine checks the graph (duplicate and unknown refs,
 * cycles) and makes every job or none. Answers go out once the flow is durable.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "util/jsonw.h"

#define MAX_FLOW_JOBS 1000

/* A ref is spelled like a job id: it names the job in depends_on and in `parents`. */
static int valid_ref(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++)
        if (!(g_ascii_isalnum(s[n]) || s[n] == '.' || s[n] == '_' || s[n] == ':' || s[n] == '-'))
            return 0;
    return n >= 1 && n <= 128;
}

static GString *render_flow(jobq_app *a, const jobq_flow *f)
{
    GString *o = g_string_sized_new(512);

    jobq_flow_render(jobq_app_engine(a), f, o);
    return o;
}

/* After the commit: the flow as it is now. */
static void finish_flow(jobq_app *a, jobq_req *rq)
{
    jobq_flow *f = jobq_engine_flow(jobq_app_engine(a), jobq_req_data(rq));

    if (!f) {
        jobq_req_error(rq, 404, "not_found", "flow not found", NULL);
        return;
    }
    jobq_api_gstring(rq, 201, render_flow(a, f));
}

/* 400 for jobs[i] (ref may be NULL) with field and why. */
static void bad_item(jobq_req *rq, size_t i, const char *ref, const char *field, const char *why)
{
    GString *det = g_string_new("{"), *msg = g_string_new(NULL), *fld = g_string_new(NULL);
    int first = 1;

    g_string_printf(fld, "jobs[%zu].%s", i, field);
    jobq_jw_kstr(det, &first, "field", fld->str);
    jobq_jw_kint(det, &first, "index", (int64_t)i);
    if (ref)
        jobq_jw_kstr(det, &first, "ref", ref);
    g_string_append_c(det, '}');
    if (ref)
        g_string_printf(msg, "%s (ref %s): %s", fld->str, ref, why);
    else
        g_string_printf(msg, "%s: %s", fld->str, why);
    jobq_req_error(rq, 400, "invalid_argument", msg->str, det->str);
    g_string_free(det, TRUE);
    g_string_free(msg, TRUE);
    g_string_free(fld, TRUE);
}

/* 400 naming a ref of the graph (duplicate, unknown, on a cycle). */
static void bad_ref(jobq_req *rq, const char *ref, const char *why)
{
    GString *det = g_string_new("{"), *msg = g_string_new(NULL);
    int first = 1;

    jobq_jw_kstr(det, &first, "field", "jobs");
    jobq_jw_kstr(det, &first, "ref", ref);
    g_string_append_c(det, '}');
    g_string_printf(msg, "ref %s: %s", ref ? ref : "?", why);
    jobq_req_error(rq, 400, "invalid_argument", msg->str, det->str);
    g_string_free(det, TRUE);
    g_string_free(msg, TRUE);
}

void jobq_api_flow_submit(jobq_req *rq, json_t *body, const char *const *skipped, size_t nskipped)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_engine *e = jobq_app_engine(a);
    int64_t now = jobq_app_now();
    jobq_flow_spec fs = {0};
    json_t *jobs, *v;
    const char *key;
    char **refs = NULL, **queues = NULL;
    size_t parsed = 0, n;
    jobq_flow *f = NULL;
    const char *ref = NULL, *why = NULL;
    int rc;

    if (!json_is_object(body)) {
        jobq_api_bad_field(rq, "body", "must be an object");
        return;
    }
    json_object_foreach(body, key, v)
    {
        if (!strcmp(key, "name") || !strcmp(key, "project")) {
            if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > 1024) {
                jobq_api_bad_field(rq, key, "must be a string of 1 to 1024 bytes");
                return;
            }
        } else if (!strcmp(key, "on_parent_failure")) {
            int p = json_is_string(v) ? jobq_opf_parse(json_string_value(v)) : -1;
            if (p < 0) {
                jobq_api_bad_field(rq, key, "must be cancel or continue");
                return;
            }
            fs.on_parent_failure = p;
        } else if (strcmp(key, "jobs")) {
            jobq_api_bad_field(rq, key, "unknown field");
            return;
        }
    }
    jobs = json_object_get(body, "jobs");
    n = json_array_size(jobs);
    if (!json_is_array(jobs) || n < 1 || n > MAX_FLOW_JOBS) {
        jobq_api_bad_field(rq, "jobs", "must be a list of 1 to 1000 jobs");
        return;
    }
    fs.name = json_string_value(json_object_get(body, "name"));
    fs.project = json_string_value(json_object_get(body, "project"));
    fs.items = g_new0(jobq_flow_item, n);
    fs.n = n;
    fs.skipped = skipped;
    fs.nskipped = nskipped;
    refs = g_new0(char *, n);
    queues = g_new0(char *, n);
    for (parsed = 0; parsed < n; parsed++) {
        json_t *item = json_array_get(jobs, parsed);
        const char *field = NULL;
        json_t *r = json_object_get(item, "ref"), *q = json_object_get(item, "queue");
        if (!json_is_object(item)) {
            bad_item(rq, parsed, NULL, "job", "must be an object");
            goto out;
        }
        if (!json_is_string(r) || !valid_ref(json_string_value(r))) {
            bad_item(rq, parsed, NULL, "ref",
                     "is required: 1 to 128 characters of A-Z a-z 0-9 . _ : -");
            goto out;
        }
        refs[parsed] = g_strdup(json_string_value(r));
        if (!json_is_string(q)) {
            bad_item(rq, parsed, refs[parsed], "queue", "is required: a queue name");
            goto out;
        }
        queues[parsed] = g_strdup(json_string_value(q));
        if (json_object_get(item, "on_parent_failure")) {
            bad_item(rq, parsed, refs[parsed], "on_parent_failure",
                     "is the flow's: set it once for the whole flow");
            goto out;
        }
        /* what is left are the enqueue options (depends_on names refs here) */
        json_object_del(item, "ref");
        json_object_del(item, "queue");
        rc = jobq_job_spec_parse(item, now, &fs.items[parsed].spec, &field, &why);
        if (rc) {
            if (rc == JOBQ_EINVAL)
                bad_item(rq, parsed, refs[parsed], field, why);
            else
                jobq_api_fail(rq, rc, NULL);
            goto out;
        }
        fs.items[parsed].queue = queues[parsed];
        fs.items[parsed].spec.ref = refs[parsed];
        if (!fs.items[parsed].spec.project)
            fs.items[parsed].spec.project = fs.project;
    }
    rc = jobq_engine_flow_create(e, &fs, now, &f, &ref, &why);
    if (rc) {
        /* the engine names the offending ref; say what about it */
        switch (rc) {
        case JOBQ_EINVAL:
            bad_ref(rq, ref, why ? why : "invalid");
            break;
        case JOBQ_ENOTFOUND:
            jobq_api_fail(rq, rc,
                          "a queue of this flow does not exist (the server runs with "
                          "--strict-queues: create it first)");
            break;
        case JOBQ_EDRAINING:
            jobq_api_fail(rq, rc, "a queue of this flow is draining and takes no new jobs");
            break;
        case JOBQ_EFULL:
            jobq_api_fail(rq, rc, "a queue of this flow is at its max_size");
            break;
        case JOBQ_EEXIST:
            jobq_api_fail(rq, rc, "a job id given in this flow exists or repeats");
            break;
        default:
            jobq_api_fail(rq, rc, NULL);
        }
        goto out;
    }
    jobq_req_set_data(rq, g_strdup(jobq_flow_id(f)), g_free);
    jobq_app_after_commit(a, rq, finish_flow);
out:
    for (size_t i = 0; i < parsed && fs.items; i++)
        jobq_job_spec_clear(&fs.items[i].spec);
    for (size_t i = 0; i < n && refs; i++) {
        g_free(refs[i]);
        g_free(queues[i]);
    }
    g_free(refs);
    g_free(queues);
    g_free(fs.items);
}

void jobq_h_flow_create(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    json_t *body;

    if (!jobq_app_writable(a, rq))
        return;
    body = jobq_api_body(rq, 1);
    if (!body)
        return;
    jobq_api_flow_submit(rq, body, NULL, 0);
    json_decref(body);
}

static jobq_flow *find_flow(jobq_app *a, jobq_req *rq)
{
    const char *id = jobq_req_param(rq, 0);
    jobq_flow *f = jobq_engine_flow(jobq_app_engine(a), id);

    if (!f) {
        char msg[200];
        snprintf(msg, sizeof msg, "flow %.150s not found", id);
        jobq_req_error(rq, 404, "not_found", msg, NULL);
    }
    return f;
}

void jobq_h_flow_get(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_flow *f = find_flow(a, rq);
    int64_t wait;

    if (!f)
        return;
    wait = jobq_api_query_int(rq, "wait_ms", 0, 600000);
    if (wait < 0)
        return;
    if (wait > 0 && !jobq_flow_final(f)) { /* parked until it ends */
        jobq_app_park_wait(a, rq, jobq_flow_id(f), 1, jobq_app_now() + wait);
        return;
    }
    jobq_api_gstring(rq, 200, render_flow(a, f));
}

void jobq_h_flows_list(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    int64_t limit = jobq_api_query_int(rq, "limit", 100, 1000);
    jobq_flow **out;
    size_t n;
    GString *o;

    if (limit < 0)
        return;
    if (limit == 0)
        limit = 1;
    out = g_new(jobq_flow *, (size_t)limit);
    n = jobq_engine_flow_list(jobq_app_engine(a), jobq_req_query(rq, "project"), (size_t)limit,
                              out);
    o = g_string_sized_new(64 + n * 512);
    g_string_append(o, "{\"flows\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            g_string_append_c(o, ',');
        jobq_flow_render(jobq_app_engine(a), out[i], o);
    }
    g_string_append(o, "]}");
    g_free(out);
    jobq_api_gstring(rq, 200, o);
}

void jobq_h_flow_cancel(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_flow *f;

    if (!jobq_app_writable(a, rq) || !(f = find_flow(a, rq)))
        return;
    if (jobq_engine_flow_cancel(jobq_app_engine(a), f, jobq_app_now())) {
        jobq_api_fail(rq, JOBQ_ESTATE, "the flow has already ended");
        return;
    }
    jobq_api_reply_durable(a, rq, 200, render_flow(a, f));
}

/* ---------------------------------------------------------------- review verbs */

void jobq_h_job_approve(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_job *j;
    json_t *body, *v;
    const char *key;
    char *result = NULL;

    if (!jobq_app_writable(a, rq) || !(j = jobq_api_find_job(a, rq)))
        return;
    body = jobq_api_object_body(rq, 0);
    if (!body)
        return;
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "result")) {
            jobq_api_bad_field(rq, key, "unknown field (result is accepted)");
            goto out;
        }
        result = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    }
    if (jobq_engine_job_approve(jobq_app_engine(a), j, result, jobq_app_now())) {
        jobq_api_fail(rq, JOBQ_ESTATE, "only a job in review can be approved");
        goto out;
    }
    jobq_api_reply_durable(a, rq, 200, jobq_api_job_text(a, j));
out:
    free(result);
    json_decref(body);
}

void jobq_h_job_reject(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_job *j;
    json_t *body, *v;
    const char *key, *reason = NULL;
    char *notes = NULL;
    int rerun = 0;

    if (!jobq_app_writable(a, rq) || !(j = jobq_api_find_job(a, rq)))
        return;
    body = jobq_api_object_body(rq, 1);
    if (!body)
        return;
    json_object_foreach(body, key, v)
    {
        if (!strcmp(key, "reason")) {
            if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > 4096) {
                jobq_api_bad_field(rq, key, "must be a string of 1 to 4096 bytes");
                goto out;
            }
            reason = json_string_value(v);
        } else if (!strcmp(key, "notes")) {
            free(notes);
            notes = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        } else if (!strcmp(key, "rerun")) {
            if (!json_is_boolean(v)) {
                jobq_api_bad_field(rq, key, "must be true or false");
                goto out;
            }
            rerun = json_is_true(v);
        } else {
            jobq_api_bad_field(rq, key, "unknown field (reason, notes and rerun are accepted)");
            goto out;
        }
    }
    if (!reason) {
        jobq_api_bad_field(rq, "reason", "is required");
        goto out;
    }
    if (jobq_engine_job_reject(jobq_app_engine(a), j, reason, notes, rerun, jobq_app_now())) {
        jobq_api_fail(rq, JOBQ_ESTATE, "only a job in review can be rejected");
        goto out;
    }
    jobq_api_reply_durable(a, rq, 200, jobq_api_job_text(a, j));
out:
    free(notes);
    json_decref(body);
}
