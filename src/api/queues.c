/*
 * queues.c — /v1/queues….
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "util/jsonw.h"

static GString *queue_text(const jobq_queue *q)
{
    json_t *j = jobq_queue_to_json(q);
    char *s = json_dumps(j, JSON_COMPACT);
    GString *o = g_string_new(s);

    free(s);
    json_decref(j);
    return o;
}

/* Parses a create/patch body into o; answers 400 and returns -1 on error. */
static int parse_opts(jobq_req *rq, const json_t *body, jobq_queue_opts *o, int create)
{
    static const char *const skip_create[] = {"name", NULL};
    const char *field = NULL, *why = NULL;

    if (!json_is_object(body)) {
        jobq_api_bad_field(rq, "body", "must be an object");
        return -1;
    }
    if (jobq_queue_opts_parse(body, o, create ? skip_create : NULL, &field, &why)) {
        jobq_api_bad_field(rq, field ? field : "body", why ? why : "invalid");
        return -1;
    }
    return 0;
}

typedef struct qlist {
    const char *type;
    int status;
    int64_t offset, limit, total, seen;
    json_t *out;
} qlist;

static int list_one(void *ud, jobq_queue *q)
{
    qlist *l = ud;
    const jobq_queue_opts *o = jobq_queue_options(q);

    if (l->type && (!o->type || g_ascii_strcasecmp(o->type, l->type)))
        return 0;
    if (l->status >= 0 && jobq_queue_status(q) != l->status)
        return 0;
    l->total++;
    if (l->seen++ < l->offset || (int64_t)json_array_size(l->out) >= l->limit)
        return 0;
    json_array_append_new(l->out, jobq_queue_to_json(q));
    return 0;
}

void jobq_h_queues_list(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    qlist l = {0};
    const char *st = jobq_req_query(rq, "status");

    l.type = jobq_req_query(rq, "type");
    l.status = -1;
    if (st) {
        gchar *lower = g_ascii_strdown(st, -1);
        l.status = jobq_qstatus_parse(lower);
        g_free(lower);
        if (l.status < 0) {
            jobq_api_bad_field(rq, "status", "must be active, paused, draining or error");
            return;
        }
    }
    l.limit = jobq_api_query_int(rq, "limit", 1000, 10000);
    if (l.limit < 0)
        return;
    l.offset = jobq_api_query_int(rq, "offset", 0, INT64_MAX / 2);
    if (l.offset < 0)
        return;
    l.out = json_array();
    jobq_engine_queue_each(jobq_app_engine(a), list_one, &l);
    jobq_api_json(rq, 200, json_pack("{s:o, s:I}", "queues", l.out, "total", (json_int_t)l.total));
}

void jobq_h_queue_create(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    json_t *body, *name;
    jobq_queue_opts o;
    jobq_queue *q;
    int rc;

    if (!jobq_app_writable(a, rq))
        return;
    body = jobq_api_body(rq, 1);
    if (!body)
        return;
    jobq_queue_opts_default(&o);
    name = json_object_get(body, "name");
    if (!json_is_string(name)) {
        jobq_api_bad_field(rq, "name", "is required: 1 to 128 characters of A-Z a-z 0-9 . _ -");
        goto out;
    }
    if (parse_opts(rq, body, &o, 1))
        goto out;
    rc = jobq_engine_queue_create(jobq_app_engine(a), json_string_value(name), &o, jobq_app_now(),
                                  &q);
    if (rc == JOBQ_EINVAL) {
        jobq_api_bad_field(rq, "name", "must be 1 to 128 characters of A-Z a-z 0-9 . _ -");
        goto out;
    }
    if (rc) {
        jobq_api_fail(rq, rc, "a queue with that name exists");
        goto out;
    }
    jobq_api_reply_durable(a, rq, 201, queue_text(q));
out:
    jobq_queue_opts_clear(&o);
    json_decref(body);
}

void jobq_h_queue_get(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_queue *q = jobq_api_find_queue(a, rq);

    if (q)
        jobq_api_gstring(rq, 200, queue_text(q));
}

void jobq_h_queue_patch(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_queue *q;
    json_t *body;
    jobq_queue_opts o;

    if (!jobq_app_writable(a, rq) || !(q = jobq_api_find_queue(a, rq)))
        return;
    body = jobq_api_body(rq, 1);
    if (!body)
        return;
    /* start from the queue's own values so a partial "defaults" or "alert" keeps the rest */
    jobq_queue_opts_for_patch(&o, jobq_queue_options(q));
    if (json_object_get(body, "name")) {
        jobq_api_bad_field(rq, "name", "a queue cannot be renamed");
        goto out;
    }
    if (parse_opts(rq, body, &o, 0))
        goto out;
    jobq_engine_queue_patch(jobq_app_engine(a), q, &o, jobq_app_now());
    jobq_api_reply_durable(a, rq, 200, queue_text(q));
out:
    jobq_queue_opts_clear(&o);
    json_decref(body);
}

void jobq_h_queue_delete(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_queue *q;
    const char *force = jobq_req_query(rq, "force");
    int rc;

    if (!jobq_app_writable(a, rq) || !(q = jobq_api_find_queue(a, rq)))
        return;
    rc = jobq_engine_queue_delete(
        jobq_app_engine(a), q, force && (!*force || !strcmp(force, "true") || !strcmp(force, "1")),
        jobq_app_now());
    if (rc) {
        jobq_api_fail(rq, rc, "the queue has active jobs: wait, or delete with ?force=true");
        return;
    }
    jobq_api_reply_durable(a, rq, 204, NULL);
}

static void status_verb(jobq_req *rq, int (*fn)(jobq_engine *, jobq_queue *, int64_t))
{
    jobq_app *a = jobq_req_app(rq);
    jobq_queue *q;

    if (!jobq_app_writable(a, rq) || !(q = jobq_api_find_queue(a, rq)))
        return;
    fn(jobq_app_engine(a), q, jobq_app_now());
    jobq_api_reply_durable(a, rq, 200, queue_text(q));
}

void jobq_h_queue_pause(jobq_req *rq)
{
    status_verb(rq, jobq_engine_queue_pause);
}

void jobq_h_queue_resume(jobq_req *rq)
{
    status_verb(rq, jobq_engine_queue_resume);
}

void jobq_h_queue_drain(jobq_req *rq)
{
    status_verb(rq, jobq_engine_queue_drain);
}

static void reply_count(jobq_app *a, jobq_req *rq, const char *key, int64_t n)
{
    GString *o = g_string_new(NULL);

    g_string_printf(o, "{\"%s\":%" PRId64 "}", key, n);
    jobq_api_reply_durable(a, rq, 200, o);
}

void jobq_h_queue_clear(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_queue *q;

    if (!jobq_app_writable(a, rq) || !(q = jobq_api_find_queue(a, rq)))
        return;
    reply_count(a, rq, "removed", jobq_engine_queue_clear(jobq_app_engine(a), q, jobq_app_now()));
}

static int get_nonneg(jobq_req *rq, const json_t *body, const char *key, int64_t *out)
{
    json_t *v = json_object_get(body, key);

    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        jobq_api_bad_field(rq, key, "must be a non-negative integer");
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

void jobq_h_queue_clean(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_queue *q;
    json_t *body, *v;
    const char *key;
    int state = JOBQ_COMPLETED;
    int64_t older = 0, keep = 0;

    if (!jobq_app_writable(a, rq) || !(q = jobq_api_find_queue(a, rq)))
        return;
    body = jobq_api_object_body(rq, 0);
    if (!body)
        return;
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "state") && strcmp(key, "older_than_ms") && strcmp(key, "keep")) {
            jobq_api_bad_field(rq, key, "unknown field (state, older_than_ms, keep)");
            goto out;
        }
    }
    v = json_object_get(body, "state");
    if (v) {
        state = json_is_string(v) ? jobq_state_parse(json_string_value(v)) : -1;
        if (state < 0 || !jobq_state_final(state)) {
            jobq_api_bad_field(rq, "state", "must be completed, failed or cancelled");
            goto out;
        }
    }
    if (get_nonneg(rq, body, "older_than_ms", &older) || get_nonneg(rq, body, "keep", &keep))
        goto out;
    reply_count(a, rq, "removed",
                jobq_engine_queue_clean(jobq_app_engine(a), q, state, older, keep, jobq_app_now()));
out:
    json_decref(body);
}

void jobq_h_queue_recover(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_queue *q;
    json_t *body, *v;
    const char *key, *worker = NULL;
    int64_t stale = 10000;

    if (!jobq_app_writable(a, rq) || !(q = jobq_api_find_queue(a, rq)))
        return;
    body = jobq_api_object_body(rq, 0);
    if (!body)
        return;
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "worker") && strcmp(key, "stale_ms")) {
            jobq_api_bad_field(rq, key, "unknown field (worker, stale_ms)");
            goto out;
        }
    }
    v = json_object_get(body, "worker");
    if (v && !json_is_string(v)) {
        jobq_api_bad_field(rq, "worker", "must be a worker id");
        goto out;
    }
    worker = json_string_value(v);
    if (get_nonneg(rq, body, "stale_ms", &stale))
        goto out;
    reply_count(a, rq, "recovered",
                jobq_engine_queue_recover(jobq_app_engine(a), q, worker, stale, jobq_app_now()));
out:
    json_decref(body);
}

void jobq_h_queue_stats(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_queue *q = jobq_api_find_queue(a, rq);

    if (q)
        jobq_api_json(rq, 200, jobq_engine_queue_stats(jobq_app_engine(a), q, jobq_app_now()));
}
