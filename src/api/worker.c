/*
 * worker.c — the worker protocol: fetch (long-poll), heartbeat, progress, complete, fail,
 * logs, batch ack, and the worker registry.
 *
 * A fetch hands jobs out at once and does not wait for the store: losing a lease in a crash
 * is harmless (the restarted server re-queues the job and refuses the old lease). Complete,
 * fail and checkpoints do wait: their answer means the outcome is durable.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "util/jsonw.h"
#include "util/jspan.h"
#include "util/jvalid.h"

#define MAX_FETCH 1000
#define MAX_WAIT_MS 600000
#define MAX_ACKS 10000
#define MAX_LOG_LINES 1000
#define MAX_LINE 8192

/* Checks the body has only these keys; answers 400 naming the first other one. */
static int only_keys(jobq_req *rq, const json_t *body, const char *const *keys)
{
    const char *key;
    json_t *v;

    if (!json_is_object(body)) {
        jobq_api_bad_field(rq, "body", "must be an object");
        return -1;
    }
    json_object_foreach((json_t *)body, key, v)
    {
        int ok = 0;
        for (size_t i = 0; keys[i] && !ok; i++)
            ok = strcmp(key, keys[i]) == 0;
        if (!ok) {
            jobq_api_bad_field(rq, key, "unknown field");
            return -1;
        }
    }
    return 0;
}

/* JSON text of v (any value), new (free with free()), or NULL for absent. */
static char *dump(const json_t *v)
{
    return v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

static const char *lease_of(jobq_req *rq, const json_t *body)
{
    json_t *l = json_object_get(body, "lease");

    if (!json_is_string(l)) {
        jobq_api_bad_field(rq, "lease", "is required: the lease string fetch returned");
        return NULL;
    }
    return json_string_value(l);
}

static void lease_error(jobq_req *rq, int rc, const jobq_job *j)
{
    char msg[512];

    if (rc == JOBQ_ELEASE)
        snprintf(msg, sizeof msg,
                 "job %.200s is not active under this lease (state %s): the lease expired, "
                 "was superseded, or the server restarted",
                 jobq_job_id(j), jobq_state_name(jobq_job_state(j)));
    else
        snprintf(msg, sizeof msg, "%s", jobq_strerror(rc));
    jobq_api_fail(rq, rc, msg);
}

/* ---------------------------------------------------------------- fetch */

void jobq_h_fetch(jobq_req *rq)
{
    static const char *const keys[] = {"queues", "queue",  "count",   "wait_ms",
                                       "worker", "capacity", NULL};
    jobq_app *a = jobq_req_app(rq);
    jobq_engine *e = jobq_app_engine(a);
    json_t *body, *v;
    const char **names = NULL;
    size_t nq = 0, count = 1, n;
    int64_t wait = 0, now = jobq_app_now();
    const char *worker = "anonymous";
    jobq_job **jobs = NULL;
    jobq_resources *cap = NULL;

    if (!jobq_app_writable(a, rq))
        return;
    body = jobq_api_body(rq, 1);
    if (!body || only_keys(rq, body, keys))
        goto out;
    v = json_object_get(body, "queues");
    if (v) {
        size_t i;
        json_t *x;
        if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > 64) {
            jobq_api_bad_field(rq, "queues", "must be a list of 1 to 64 queue names");
            goto out;
        }
        names = g_new(const char *, json_array_size(v));
        json_array_foreach(v, i, x)
        {
            if (!json_is_string(x)) {
                jobq_api_bad_field(rq, "queues", "must be a list of queue names");
                goto out;
            }
            names[nq++] = json_string_value(x);
        }
    } else if ((v = json_object_get(body, "queue"))) {
        if (!json_is_string(v)) {
            jobq_api_bad_field(rq, "queue", "must be a queue name");
            goto out;
        }
        names = g_new(const char *, 1);
        names[nq++] = json_string_value(v);
    } else {
        jobq_api_bad_field(rq, "queues", "is required: the queues to take jobs from");
        goto out;
    }
    v = json_object_get(body, "count");
    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > MAX_FETCH) {
            jobq_api_bad_field(rq, "count", "must be an integer from 1 to 1000");
            goto out;
        }
        count = (size_t)json_integer_value(v);
    }
    v = json_object_get(body, "wait_ms");
    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > MAX_WAIT_MS) {
            jobq_api_bad_field(rq, "wait_ms", "must be an integer from 0 to 600000");
            goto out;
        }
        wait = json_integer_value(v);
    }
    v = json_object_get(body, "worker");
    if (v) {
        if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > 256) {
            jobq_api_bad_field(rq, "worker", "must be a string of 1 to 256 bytes");
            goto out;
        }
        worker = json_string_value(v);
    }
    v = json_object_get(body, "capacity");
    if (v) {
        const char *why;
        if (!(cap = jobq_resources_parse(v, &why))) {
            jobq_api_bad_field(rq, "capacity", why);
            goto out;
        }
    }
    jobq_engine_worker_seen(e, worker, names, nq, now);
    jobs = g_new(jobq_job *, count);
    n = jobq_engine_fetch_fit(e, names, nq, count, worker, cap, now, jobs);
    if (n || !wait) {
        GString *o = g_string_sized_new(64 + n * 768);
        g_string_append(o, "{\"jobs\":[");
        for (size_t i = 0; i < n; i++) {
            if (i)
                g_string_append_c(o, ',');
            jobq_job_render(e, jobs[i], 1, now, o);
        }
        g_string_append(o, "]}");
        jobq_api_gstring(rq, 200, o);
    } else {
        jobq_app_park_fetch(a, rq, names, nq, count, worker, cap, now + wait);
        cap = NULL;
    }
out:
    jobq_resources_free(cap);
    g_free(jobs);
    g_free(names);
    json_decref(body);
}

/* ---------------------------------------------------------------- heartbeat and progress */

static GString *beat_text(const jobq_job *j)
{
    GString *o = g_string_new("{");
    int first = 1;

    jobq_jw_kint(o, &first, "lease_expires_at", jobq_job_lease_expires_at(j));
    jobq_jw_kbool(o, &first, "cancel_requested", jobq_job_cancel_requested(j));
    g_string_append_c(o, '}');
    return o;
}

static void answer_beat(jobq_app *a, jobq_req *rq, const jobq_job *j, int durable)
{
    if (durable)
        jobq_api_reply_durable(a, rq, 200, beat_text(j));
    else
        jobq_api_gstring(rq, 200, beat_text(j));
}

void jobq_h_heartbeat(jobq_req *rq)
{
    static const char *const keys[] = {"lease", "extend_ms", "checkpoint", NULL};
    jobq_app *a = jobq_req_app(rq);
    jobq_job *j;
    json_t *body = NULL, *v;
    const char *lease;
    int64_t extend = 0;
    char *cp = NULL;
    int durable = 0, rc;

    if (!jobq_app_writable(a, rq) || !(j = jobq_api_find_job(a, rq)))
        return;
    body = jobq_api_body(rq, 1);
    if (!body || only_keys(rq, body, keys) || !(lease = lease_of(rq, body)))
        goto out;
    v = json_object_get(body, "extend_ms");
    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > INT64_C(86400000) * 7) {
            jobq_api_bad_field(rq, "extend_ms", "must be an integer from 1 to 604800000 (ms)");
            goto out;
        }
        extend = json_integer_value(v);
    }
    cp = dump(json_object_get(body, "checkpoint"));
    rc = jobq_engine_heartbeat(jobq_app_engine(a), j, lease, extend, cp, jobq_app_now(), &durable);
    if (rc) {
        lease_error(rq, rc, j);
        goto out;
    }
    answer_beat(a, rq, j, durable);
out:
    free(cp);
    json_decref(body);
}

void jobq_h_progress(jobq_req *rq)
{
    static const char *const keys[] = {"lease",  "percent", "stage",      "message",
                                       "eta_ms", "data",    "checkpoint", NULL};
    jobq_app *a = jobq_req_app(rq);
    jobq_job *j;
    json_t *body = NULL, *v;
    const char *lease;
    char *cp = NULL;
    GString *p = NULL;
    int durable = 0, rc, first = 1;

    if (!jobq_app_writable(a, rq) || !(j = jobq_api_find_job(a, rq)))
        return;
    body = jobq_api_body(rq, 1);
    if (!body || only_keys(rq, body, keys) || !(lease = lease_of(rq, body)))
        goto out;
    p = g_string_new("{");
    v = json_object_get(body, "percent");
    if (v) {
        double pc = json_number_value(v);
        if (!json_is_number(v) || !(pc >= 0 && pc <= 100)) {
            jobq_api_bad_field(rq, "percent", "must be a number from 0 to 100");
            goto out;
        }
        jobq_jw_key(p, &first, "percent");
        g_string_append_printf(p, "%.17g", pc);
    }
    for (const char *const *k = (const char *const[]){"stage", "message", NULL}; *k; k++) {
        v = json_object_get(body, *k);
        if (!v)
            continue;
        if (!json_is_string(v) || json_string_length(v) > 4096) {
            jobq_api_bad_field(rq, *k, "must be a string of at most 4096 bytes");
            goto out;
        }
        jobq_jw_kstr(p, &first, *k, json_string_value(v));
    }
    v = json_object_get(body, "eta_ms");
    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            jobq_api_bad_field(rq, "eta_ms", "must be a non-negative integer (ms)");
            goto out;
        }
        jobq_jw_kint(p, &first, "eta_ms", json_integer_value(v));
    }
    v = json_object_get(body, "data");
    if (v) {
        char *d = dump(v);
        jobq_jw_kraw(p, &first, "data", d);
        free(d);
    }
    g_string_append_c(p, '}');
    cp = dump(json_object_get(body, "checkpoint"));
    rc = jobq_engine_progress(jobq_app_engine(a), j, lease, p->str, cp, jobq_app_now(), &durable);
    if (rc) {
        lease_error(rq, rc, j);
        goto out;
    }
    answer_beat(a, rq, j, durable);
out:
    if (p)
        g_string_free(p, TRUE);
    free(cp);
    json_decref(body);
}

/* ---------------------------------------------------------------- complete and fail */

/* Parses a failure (the "error" object and "retry_in_ms") into f; strings are borrowed from
 * the JSON, *details is new (free()). NULL on success, else the reason, with *field naming
 * the offending field. */
const char *jobq_api_parse_failure(const json_t *err, const json_t *retry_in,
                                   const json_t *queue_backoff, jobq_failure *f, char **details,
                                   const char **field)
{
    json_t *v;
    const char *key;

    memset(f, 0, sizeof *f);
    f->retryable = 1;
    f->retry_in_ms = -1;
    *details = NULL;
    *field = "error";
    if (!json_is_object(err))
        return "is required: {\"message\", \"type\"?, \"retryable\"?, \"details\"?}";
    json_object_foreach((json_t *)err, key, v)
    {
        if (!strcmp(key, "message") || !strcmp(key, "type")) {
            if (!json_is_string(v) || json_string_length(v) > 65536) {
                *field = !strcmp(key, "type") ? "error.type" : "error.message";
                return "must be a string of at most 65536 bytes";
            }
            if (!strcmp(key, "message"))
                f->message = json_string_value(v);
            else
                f->type = json_string_value(v);
        } else if (!strcmp(key, "retryable")) {
            if (!json_is_boolean(v)) {
                *field = "error.retryable";
                return "must be true or false";
            }
            f->retryable = json_is_true(v);
        } else if (!strcmp(key, "details")) {
            free(*details);
            *details = dump(v);
            f->details = *details;
        } else {
            return "unknown field (message, type, retryable, details)";
        }
    }
    if (retry_in) {
        if (!json_is_integer(retry_in) || json_integer_value(retry_in) < 0 ||
            json_integer_value(retry_in) > INT64_C(86400000) * 365) {
            *field = "retry_in_ms";
            return "must be a non-negative integer (ms)";
        }
        f->retry_in_ms = json_integer_value(retry_in);
    }
    if (queue_backoff) {
        if (!json_is_boolean(queue_backoff)) {
            *field = "queue_backoff";
            return "must be true or false";
        }
        f->queue_backoff = json_is_true(queue_backoff);
    }
    return NULL;
}

/* The answer shows the job as this request left it (rendered now, sent once durable): a
 * retry timer or retention that runs before the commit returns does not change it. */
static void after_commit_job(jobq_app *a, jobq_req *rq, const jobq_job *j)
{
    jobq_api_reply_durable(a, rq, 200, jobq_api_job_text(a, j));
}

void jobq_h_complete(jobq_req *rq)
{
    static const char *const keys[] = {"lease", "result", NULL};
    jobq_app *a = jobq_req_app(rq);
    jobq_job *j;
    json_t *body = NULL;
    const char *lease;
    char *result = NULL;
    int rc;

    if (!jobq_app_writable(a, rq) || !(j = jobq_api_find_job(a, rq)))
        return;
    body = jobq_api_body(rq, 1);
    if (!body || only_keys(rq, body, keys) || !(lease = lease_of(rq, body)))
        goto out;
    result = dump(json_object_get(body, "result"));
    rc = jobq_engine_complete(jobq_app_engine(a), j, lease, result, jobq_app_now(), NULL);
    if (rc) {
        lease_error(rq, rc, j);
        goto out;
    }
    after_commit_job(a, rq, j);
out:
    free(result);
    json_decref(body);
}

void jobq_h_fail(jobq_req *rq)
{
    static const char *const keys[] = {"lease", "error", "retry_in_ms", "queue_backoff", NULL};
    jobq_app *a = jobq_req_app(rq);
    jobq_job *j;
    json_t *body = NULL;
    const char *lease;
    char *details = NULL;
    jobq_failure f;
    int rc;

    if (!jobq_app_writable(a, rq) || !(j = jobq_api_find_job(a, rq)))
        return;
    body = jobq_api_body(rq, 1);
    if (!body || only_keys(rq, body, keys) || !(lease = lease_of(rq, body)))
        goto out;
    {
        const char *field,
            *why = jobq_api_parse_failure(
                json_object_get(body, "error"), json_object_get(body, "retry_in_ms"),
                json_object_get(body, "queue_backoff"), &f, &details, &field);
        if (why) {
            jobq_api_bad_field(rq, field, why);
            goto out;
        }
    }
    rc = jobq_engine_fail(jobq_app_engine(a), j, lease, &f, jobq_app_now(), NULL);
    if (rc) {
        lease_error(rq, rc, j);
        goto out;
    }
    after_commit_job(a, rq, j);
out:
    free(details);
    json_decref(body);
}

void jobq_h_logs_post(jobq_req *rq)
{
    static const char *const keys[] = {"lease", "lines", NULL};
    jobq_app *a = jobq_req_app(rq);
    jobq_job *j;
    json_t *body = NULL, *lines, *v;
    const char *lease, **lv = NULL;
    size_t i, n;
    int rc;
    GString *o;

    if (!jobq_app_writable(a, rq) || !(j = jobq_api_find_job(a, rq)))
        return;
    body = jobq_api_body(rq, 1);
    if (!body || only_keys(rq, body, keys) || !(lease = lease_of(rq, body)))
        goto out;
    lines = json_object_get(body, "lines");
    if (!json_is_array(lines) || json_array_size(lines) > MAX_LOG_LINES) {
        jobq_api_bad_field(rq, "lines", "must be a list of at most 1000 strings");
        goto out;
    }
    n = json_array_size(lines);
    lv = g_new(const char *, n + 1);
    json_array_foreach(lines, i, v)
    {
        if (!json_is_string(v) || json_string_length(v) > MAX_LINE ||
            strlen(json_string_value(v)) != json_string_length(v)) {
            jobq_api_bad_field(rq, "lines", "each line must be a string of at most 8192 bytes");
            goto out;
        }
        lv[i] = json_string_value(v);
    }
    rc = jobq_engine_logs(jobq_app_engine(a), j, lease, lv, n, jobq_app_now());
    if (rc) {
        lease_error(rq, rc, j);
        goto out;
    }
    o = g_string_new(NULL);
    g_string_printf(o, "{\"appended\":%zu}", n);
    jobq_api_reply_durable(a, rq, 200, o);
out:
    g_free(lv);
    json_decref(body);
}

/* ---------------------------------------------------------------- batch ack */

/* One ack: complete (result: JSON text or NULL) or, with err, fail. Appends its result
 * object to o. id/lease NULL: the item lacked them. */
static void ack_one(jobq_app *a, const char *id, const char *lease, const char *result,
                    const json_t *err, const json_t *retry_in, const json_t *qb, GString *o,
                    int64_t now)
{
    jobq_engine *e = jobq_app_engine(a);
    jobq_job *j;
    int first = 1;
    unsigned status = 200;
    const char *code = NULL, *msg = NULL;

    g_string_append_c(o, '{');
    jobq_jw_kstr(o, &first, "id", id);
    if (!id || !lease) {
        status = 400;
        code = "invalid_argument";
        msg = "each ack needs \"id\" and \"lease\"";
    } else if (!(j = jobq_engine_job(e, id))) {
        status = 404;
        code = "not_found";
        msg = "job not found";
    } else if (err) {
        jobq_failure f;
        char *details = NULL;
        const char *field;
        msg = jobq_api_parse_failure(err, retry_in, qb, &f, &details, &field);
        if (msg) {
            status = 400;
            code = "invalid_argument";
        } else if (jobq_engine_fail(e, j, lease, &f, now, NULL)) {
            status = 409;
            code = "lease_lost";
            msg = "job is not active under this lease";
        }
        free(details);
    } else if (jobq_engine_complete(e, j, lease, result, now, NULL)) {
        status = 409;
        code = "lease_lost";
        msg = "job is not active under this lease";
    }
    jobq_jw_kint(o, &first, "status", status);
    if (code) {
        int f2 = 1;
        jobq_jw_key(o, &first, "error");
        g_string_append_c(o, '{');
        jobq_jw_kstr(o, &f2, "code", code);
        jobq_jw_kstr(o, &f2, "message", msg);
        g_string_append_c(o, '}');
    }
    g_string_append_c(o, '}');
}

/* ---- acks read straight from the text (the common shape), see fast_acks */

typedef struct fast_ack {
    jobq_jspan id, lease, result, error, retry, qb;
    int dup;
} fast_ack;

typedef struct fast_acks {
    GArray *items; /* of fast_ack */
    int bad;
} fast_acks;

static int set_once(jobq_jspan *slot, jobq_jspan v, int *dup)
{
    if (slot->p)
        *dup = 1;
    *slot = v;
    return 0;
}

static int ack_member(void *ud, jobq_jspan k, jobq_jspan v)
{
    fast_ack *f = ud;

#define KEY(s) (k.len == sizeof(s) - 1 && memcmp(k.p, s, sizeof(s) - 1) == 0)
    if (KEY("id"))
        return set_once(&f->id, v, &f->dup);
    if (KEY("lease"))
        return set_once(&f->lease, v, &f->dup);
    if (KEY("result"))
        return set_once(&f->result, v, &f->dup);
    if (KEY("error"))
        return set_once(&f->error, v, &f->dup);
    if (KEY("retry_in_ms"))
        return set_once(&f->retry, v, &f->dup);
    if (KEY("queue_backoff"))
        return set_once(&f->qb, v, &f->dup);
#undef KEY
    if (memchr(k.p, '\\', k.len))
        f->dup = 1; /* an escaped key could be one of the above: leave it to jansson */
    return 0;
}

static void ack_element(void *ud, size_t i, jobq_jspan el)
{
    fast_acks *fa = ud;
    fast_ack f = {0};

    (void)i;
    if (fa->bad)
        return;
    if (jobq_jspan_members(el.p, el.p + el.len, ack_member, &f) != 0 || f.dup)
        fa->bad = 1;
    g_array_append_val(fa->items, f);
}

/* A plain JSON string (no escapes) copied into buf; NULL when it is anything else. */
static const char *plain(jobq_jspan v, char *buf, size_t cap)
{
    if (!v.p || v.len < 2 || v.len - 2 >= cap || v.p[0] != '"' || v.p[v.len - 1] != '"' ||
        memchr(v.p + 1, '\\', v.len - 2))
        return NULL;
    memcpy(buf, v.p + 1, v.len - 2);
    buf[v.len - 2] = '\0';
    return buf;
}

static int top_member(void *ud, jobq_jspan k, jobq_jspan v)
{
    jobq_jspan *acks = ud;

    if (k.len != 4 || memcmp(k.p, "acks", 4) || acks->p)
        return 1; /* anything but one "acks": the full path answers it */
    *acks = v;
    return 0;
}

/* The batch ack without building a tree: the body is checked by the validator, ids and
 * leases are read from the text, results kept as the bytes sent. Returns the answer, or
 * NULL when the body is not of the plain shape (the caller takes the jansson path, whose
 * answers name what is wrong). */
static GString *fast_acks_answer(jobq_app *a, const char *text, size_t len, int64_t now)
{
    const char *end = text + len;
    jobq_jspan acks = {NULL, 0};
    fast_acks fa = {g_array_new(FALSE, TRUE, sizeof(fast_ack)), 0};
    GString *o = NULL;

    if (!len || jobq_api_too_deep(text, len) || !jobq_json_valid(text, len, 64) ||
        jobq_jspan_members(text, end, top_member, &acks) != 0 || !acks.p || acks.p[0] != '[')
        goto out;
    jobq_jspan_each(acks.p, acks.p + acks.len, ack_element, &fa);
    if (fa.bad || fa.items->len > MAX_ACKS)
        goto out;
    for (guint i = 0; i < fa.items->len; i++) { /* every item plain, or none is applied here */
        fast_ack *f = &g_array_index(fa.items, fast_ack, i);
        char b1[256], b2[256];
        if (!plain(f->id, b1, sizeof b1) || !plain(f->lease, b2, sizeof b2))
            goto out;
    }
    o = g_string_sized_new(64 + fa.items->len * 64);
    g_string_append(o, "{\"results\":[");
    for (guint i = 0; i < fa.items->len; i++) {
        fast_ack *f = &g_array_index(fa.items, fast_ack, i);
        char idb[256], leaseb[256];
        char *result = f->result.p ? g_strndup(f->result.p, f->result.len) : NULL;
        json_t *err =
            f->error.p ? json_loadb(f->error.p, f->error.len, JSON_DECODE_ANY, NULL) : NULL;
        json_t *retry =
            f->retry.p ? json_loadb(f->retry.p, f->retry.len, JSON_DECODE_ANY, NULL) : NULL;
        json_t *qb = f->qb.p ? json_loadb(f->qb.p, f->qb.len, JSON_DECODE_ANY, NULL) : NULL;
        if (i)
            g_string_append_c(o, ',');
        ack_one(a, plain(f->id, idb, sizeof idb), plain(f->lease, leaseb, sizeof leaseb), result,
                err, retry, qb, o, now);
        g_free(result);
        json_decref(err);
        json_decref(retry);
        json_decref(qb);
    }
    g_string_append(o, "]}");
out:
    g_array_free(fa.items, TRUE);
    return o;
}

void jobq_h_ack(jobq_req *rq)
{
    static const char *const keys[] = {"acks", NULL};
    jobq_app *a = jobq_req_app(rq);
    json_t *body, *acks, *item;
    size_t i, len;
    const char *text;
    GString *o;
    int64_t now = jobq_app_now();

    if (!jobq_app_writable(a, rq))
        return;
    text = jobq_req_body(rq, &len);
    o = fast_acks_answer(a, text, len, now);
    if (o) {
        jobq_api_reply_durable(a, rq, 200, o);
        return;
    }
    body = jobq_api_body(rq, 1);
    if (!body || only_keys(rq, body, keys))
        goto out;
    acks = json_object_get(body, "acks");
    if (!json_is_array(acks) || json_array_size(acks) > MAX_ACKS) {
        jobq_api_bad_field(rq, "acks", "must be a list of at most 10000 acks");
        goto out;
    }
    o = g_string_sized_new(64 + json_array_size(acks) * 64);
    g_string_append(o, "{\"results\":[");
    json_array_foreach(acks, i, item)
    {
        json_t *id = json_object_get(item, "id"), *lease = json_object_get(item, "lease");
        char *result = dump(json_object_get(item, "result"));
        if (i)
            g_string_append_c(o, ',');
        ack_one(a, json_is_object(item) ? json_string_value(id) : NULL,
                json_is_object(item) ? json_string_value(lease) : NULL, result,
                json_object_get(item, "error"), json_object_get(item, "retry_in_ms"),
                json_object_get(item, "queue_backoff"), o, now);
        free(result);
    }
    g_string_append(o, "]}");
    jobq_api_reply_durable(a, rq, 200, o);
out:
    json_decref(body);
}

void jobq_h_workers(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);

    jobq_api_json(rq, 200,
                  json_pack("{s:o}", "workers",
                            jobq_engine_workers_json(jobq_app_engine(a), 60000, jobq_app_now())));
}
