/*
 * jobs.c — /v1/queues/{q}/jobs (enqueue), /v1/jobs…, /v1/dead-letter….
 *
 * Changes answer after their batch is durable (jobq_app_after_commit); reads answer from
 * the engine's memory at once, except history and logs, which the store reads back.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "util/jsonw.h"
#include "util/jspan.h"
#include "util/jvalid.h"

#define MAX_BULK 10000

/* ---------------------------------------------------------------- deferred answers */

typedef struct deferred {
    unsigned status;
    GString *body; /* NULL: no body */
} deferred;

static void deferred_free(void *p)
{
    deferred *d = p;

    if (d->body)
        g_string_free(d->body, TRUE);
    g_free(d);
}

static void finish_deferred(jobq_app *a, jobq_req *rq)
{
    deferred *d = jobq_req_data(rq);
    GString *b = d->body;

    (void)a;
    d->body = NULL;
    if (b)
        jobq_api_gstring(rq, d->status, b);
    else
        jobq_req_reply_empty(rq, d->status);
}

/* Answers `body` (stolen; NULL = empty) once the changes made so far are durable. */
void jobq_api_reply_durable(jobq_app *a, jobq_req *rq, unsigned status, GString *body)
{
    deferred *d = g_new0(deferred, 1);

    d->status = status;
    d->body = body;
    jobq_req_set_data(rq, d, deferred_free);
    jobq_app_after_commit(a, rq, finish_deferred);
}

/* ---------------------------------------------------------------- enqueue */

typedef struct enqueued {
    int bulk;
    size_t n;
    char **ids;
    unsigned char *flags; /* JOBQ_ENQ_* per job */
} enqueued;

static void enqueued_free(void *p)
{
    enqueued *q = p;

    for (size_t i = 0; i < q->n; i++)
        g_free(q->ids[i]);
    g_free(q->ids);
    g_free(q->flags);
    g_free(q);
}

/* After the commit: the jobs as they are now (a fetch may already have taken them). */
static void finish_enqueue(jobq_app *a, jobq_req *rq)
{
    enqueued *q = jobq_req_data(rq);
    jobq_engine *e = jobq_app_engine(a);
    GString *o = g_string_sized_new(q->n * 700 + 16);
    int64_t now = jobq_app_now();

    if (q->bulk)
        g_string_append(o, "{\"jobs\":[");
    for (size_t i = 0; i < q->n; i++) {
        jobq_job *j = jobq_engine_job(e, q->ids[i]);
        if (i)
            g_string_append_c(o, ',');
        if (j) {
            jobq_job_render(e, j, 0, now, o);
            if (q->flags[i] & JOBQ_ENQ_DEDUP) { /* the answer only: nothing was made */
                g_string_truncate(o, o->len - 1);
                g_string_append(o, ",\"deduplicated\":true}");
            }
        } else { /* deleted between the enqueue and its commit */
            int first = 1;
            g_string_append_c(o, '{');
            jobq_jw_kstr(o, &first, "id", q->ids[i]);
            jobq_jw_kstr(o, &first, "state", "deleted");
            g_string_append_c(o, '}');
        }
    }
    if (q->bulk)
        g_string_append(o, "]}");
    /* a single enqueue answered by an existing job made nothing: 200, not 201 */
    jobq_api_gstring(rq, !q->bulk && (q->flags[0] & JOBQ_ENQ_DEDUP) ? 200 : 201, o);
}

/* The raw text of each item's "data" in the body (payloads are kept
 * as the bytes the client sent). A NULL span makes the parser serialise the tree instead. */
typedef struct spans {
    jobq_jspan *v;
    size_t n;
} spans;

static void data_span(void *ud, size_t i, jobq_jspan el)
{
    spans *sp = ud;

    if (i >= sp->n) {
        sp->n = i + 1;
        sp->v = g_renew(jobq_jspan, sp->v, sp->n);
    }
    sp->v[i] = jobq_jspan_member(el.p, el.p + el.len, "data");
}

/* The fast way to read an enqueue body: find each payload's span, check it with the
 * validator, and let jansson parse only the rest (the body with every payload replaced by
 * null). A valid value put where null stood in valid JSON is valid JSON, so the body is
 * exactly as valid as with a full parse; anything unexpected returns NULL and the caller
 * parses the whole body instead. On success sp holds one span per job. */
static json_t *skeleton_parse(const char *text, size_t len, spans *sp)
{
    const char *end = text + len;
    jobq_jspan arr = jobq_jspan_member(text, end, "jobs");
    GString *skel;
    const char *at = text;
    json_t *v = NULL, *items;
    size_t n;

    if (arr.p)
        jobq_jspan_each(arr.p, arr.p + arr.len, data_span, sp);
    else
        data_span(sp, 0, (jobq_jspan){text, len});
    skel = g_string_sized_new(len);
    for (size_t i = 0; i < sp->n; i++) {
        jobq_jspan d = sp->v[i];
        if (!d.p)
            continue;
        if (d.p < at || !jobq_json_valid(d.p, d.len, 63))
            goto out;
        g_string_append_len(skel, at, d.p - at);
        g_string_append_len(skel, "null", 4);
        at = d.p + d.len;
    }
    g_string_append_len(skel, at, end - at);
    v = json_loadb(skel->str, skel->len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    /* the tree must have a payload of null exactly where a span was taken out */
    items = json_object_get(v, "jobs");
    n = arr.p ? json_array_size(items) : 1;
    if (!v || (arr.p && (!json_is_array(items) || json_object_size(v) != 1)) || n != sp->n)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        json_t *d = json_object_get(arr.p ? json_array_get(items, i) : v, "data");
        if (sp->v[i].p && !json_is_null(d))
            goto fail;
    }
    goto out;
fail:
    json_decref(v);
    v = NULL;
out:
    g_string_free(skel, TRUE);
    return v;
}

void jobq_h_enqueue(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_engine *e = jobq_app_engine(a);
    const char *queue = jobq_req_param(rq, 0);
    json_t *body, *items;
    jobq_job_spec *specs = NULL;
    jobq_job **jobs = NULL;
    unsigned char *flags = NULL;
    const char *why_id = NULL;
    spans sp = {NULL, 0};
    size_t n = 0, parsed = 0;
    int bulk, rc;
    long bad = -1;
    int64_t now = jobq_app_now();
    jobq_queue *q;

    if (!jobq_app_writable(a, rq))
        return;
    {
        size_t len;
        const char *text = jobq_req_body(rq, &len);
        body = len && !jobq_api_too_deep(text, len) ? skeleton_parse(text, len, &sp) : NULL;
    }
    if (!body) { /* the whole body through jansson: its errors name what is wrong */
        g_free(sp.v);
        sp.v = NULL;
        sp.n = 0;
        body = jobq_api_body(rq, 0);
        if (!body)
            return;
    }
    items = json_object_get(body, "jobs");
    bulk = json_is_array(items) && json_object_size(body) == 1;
    n = bulk ? json_array_size(items) : 1;
    if (bulk && (n < 1 || n > MAX_BULK)) {
        jobq_api_bad_field(rq, "jobs", "must hold 1 to 10000 jobs");
        goto out;
    }
    q = jobq_engine_queue(e, queue);
    if (q)
        queue = jobq_queue_name(q); /* {q} may be the id */
    specs = g_new0(jobq_job_spec, n);
    for (parsed = 0; parsed < n; parsed++) {
        const char *field = NULL, *why = NULL;
        json_t *item = bulk ? json_array_get(items, parsed) : body;
        jobq_jspan raw = parsed < sp.n ? sp.v[parsed] : (jobq_jspan){NULL, 0};
        rc = jobq_job_spec_parse_raw(item, raw.p, raw.len, now, &specs[parsed], &field, &why);
        if (rc == JOBQ_EINVAL) {
            GString *det = g_string_new("{");
            GString *msg = g_string_new(NULL);
            int first = 1;
            jobq_jw_kstr(det, &first, "field", field);
            if (bulk)
                jobq_jw_kint(det, &first, "index", (int64_t)parsed);
            g_string_append_c(det, '}');
            if (bulk)
                g_string_printf(msg, "jobs[%zu].%s: %s", parsed, field, why);
            else
                g_string_printf(msg, "%s: %s", field, why);
            jobq_req_error(rq, 400, "invalid_argument", msg->str, det->str);
            g_string_free(det, TRUE);
            g_string_free(msg, TRUE);
            goto out;
        }
        if (rc) {
            jobq_api_fail(rq, rc, NULL);
            goto out;
        }
    }
    jobs = g_new(jobq_job *, n);
    flags = g_new0(unsigned char, n);
    rc = jobq_engine_enqueue_ex(e, queue, specs, n, now, jobs, flags, &bad, &why_id);
    if (rc) {
        char msg[300];
        switch (rc) {
        case JOBQ_ENOTFOUND:
            snprintf(msg, sizeof msg,
                     "queue %.200s not found (the server runs with "
                     "--strict-queues: create it first)",
                     queue);
            break;
        case JOBQ_EEXIST:
            snprintf(msg, sizeof msg, "a job with id %.200s exists", specs[bad >= 0 ? bad : 0].id);
            break;
        case JOBQ_EDRAINING:
            snprintf(msg, sizeof msg, "queue %.200s is draining and takes no new jobs", queue);
            break;
        case JOBQ_EFULL:
            snprintf(msg, sizeof msg, "queue %.200s is at its max_size", queue);
            break;
        case JOBQ_EINVAL:
            if (why_id) { /* a parent that does not exist */
                GString *det = g_string_new("{");
                int first = 1;
                jobq_jw_kstr(det, &first, "field", "depends_on");
                if (bulk)
                    jobq_jw_kint(det, &first, "index", (int64_t)bad);
                g_string_append_c(det, '}');
                snprintf(msg, sizeof msg, "depends_on: no job %.200s", why_id);
                jobq_req_error(rq, 400, "invalid_argument", msg, det->str);
                g_string_free(det, TRUE);
                goto out;
            }
            jobq_api_bad_field(rq, "queue",
                               "name must be 1 to 128 characters of A-Z a-z 0-9 . _ -");
            goto out;
        default:
            msg[0] = '\0';
        }
        jobq_api_fail(rq, rc, msg[0] ? msg : NULL);
        goto out;
    }
    {
        enqueued *eq = g_new0(enqueued, 1);
        eq->bulk = bulk;
        eq->n = n;
        eq->ids = g_new(char *, n);
        for (size_t i = 0; i < n; i++)
            eq->ids[i] = g_strdup(jobq_job_id(jobs[i]));
        eq->flags = flags;
        flags = NULL;
        jobq_req_set_data(rq, eq, enqueued_free);
        jobq_app_after_commit(a, rq, finish_enqueue);
    }
out:
    for (size_t i = 0; i < parsed && specs; i++)
        jobq_job_spec_clear(&specs[i]);
    g_free(specs);
    g_free(sp.v);
    g_free(jobs);
    g_free(flags);
    json_decref(body);
}

/* ---------------------------------------------------------------- listing */

typedef struct list_args {
    jobq_job_filter f;
    char *tag_key;
    int tags;
} list_args;

static int find_tag(void *ud, const char *k, const char *v)
{
    list_args *la = ud;

    if (strncmp(k, "tag.", 4) == 0 && k[4]) {
        if (la->tags++)
            return 1; /* a second one: refused by the caller */
        la->tag_key = g_strdup(k + 4);
        la->f.tag_key = la->tag_key;
        la->f.tag_value = v ? v : "";
    }
    return 0;
}

/* Lists jobs matching the query; force_states (bits) replaces the state filter when set. */
static void list_jobs(jobq_req *rq, unsigned force_states)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_engine *e = jobq_app_engine(a);
    list_args la = {0};
    const char *qname = jobq_req_query(rq, "queue"), *states = jobq_req_query(rq, "state");
    int64_t limit = jobq_api_query_int(rq, "limit", 100, 1000);
    char next[JOBQ_CURSOR_MAX];
    jobq_job **out;
    size_t n;
    GString *o;
    int64_t now = jobq_app_now();

    const char *cursor = jobq_req_query(rq, "cursor");

    if (limit < 0)
        return;
    if (limit == 0)
        limit = 1;
    if (cursor && *cursor) { /* "<seq>-<id>", as an earlier page gave it */
        const char *p = cursor;
        while (g_ascii_isdigit(*p))
            p++;
        if (p == cursor || *p != '-') {
            jobq_api_bad_field(rq, "cursor", "not a cursor this server gave out");
            return;
        }
    }
    if (force_states) {
        la.f.states = force_states;
    } else if (states && *states) {
        gchar **parts = g_strsplit(states, ",", -1);
        for (gchar **p = parts; *p; p++) {
            int s = jobq_state_parse(g_strstrip(*p));
            if (s < 0) {
                g_strfreev(parts);
                jobq_api_bad_field(rq, "state", "unknown state name");
                return;
            }
            la.f.states |= 1u << s;
        }
        g_strfreev(parts);
    }
    if (qname) {
        la.f.queue = jobq_engine_queue(e, qname);
        if (!la.f.queue) {
            jobq_api_json(rq, 200, json_pack("{s:[], s:n}", "jobs", "next_cursor"));
            return;
        }
    }
    la.f.group = jobq_req_query(rq, "group");
    la.f.project = jobq_req_query(rq, "project");
    jobq_req_query_each(rq, find_tag, &la);
    if (la.tags > 1) {
        g_free(la.tag_key);
        jobq_api_bad_field(rq, "tag", "one tag.KEY=VALUE filter at a time");
        return;
    }
    out = g_new(jobq_job *, (size_t)limit);
    n = jobq_engine_job_list(e, &la.f, cursor, (size_t)limit, out, next);
    o = g_string_sized_new(n * 700 + 64);
    g_string_append(o, "{\"jobs\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            g_string_append_c(o, ',');
        jobq_job_render(e, out[i], 0, now, o);
    }
    g_string_append(o, "],\"next_cursor\":");
    jobq_jw_str(o, next[0] ? next : NULL);
    g_string_append_c(o, '}');
    g_free(out);
    g_free(la.tag_key);
    jobq_api_gstring(rq, 200, o);
}

void jobq_h_jobs_list(jobq_req *rq)
{
    list_jobs(rq, 0);
}

void jobq_h_dead_list(jobq_req *rq)
{
    list_jobs(rq, 1u << JOBQ_FAILED);
}

/* ---------------------------------------------------------------- one job */

void jobq_h_job_get(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_job *j = jobq_api_find_job(a, rq);

    if (j)
        jobq_api_job(a, rq, 200, j, 0);
}

void jobq_h_job_delete(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_job *j;
    int rc;

    if (!jobq_app_writable(a, rq) || !(j = jobq_api_find_job(a, rq)))
        return;
    rc = jobq_engine_job_delete(jobq_app_engine(a), j, jobq_app_now());
    if (rc) {
        jobq_api_fail(rq, rc, "an active job cannot be deleted: cancel it first");
        return;
    }
    jobq_api_reply_durable(a, rq, 204, NULL);
}

/* An admin verb on one job that answers the job once the change is durable. */
static void job_verb(jobq_req *rq, int (*fn)(jobq_engine *, jobq_job *, int64_t),
                     const char *refusal)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_job *j;
    int rc;

    if (!jobq_app_writable(a, rq) || !(j = jobq_api_find_job(a, rq)))
        return;
    rc = fn(jobq_app_engine(a), j, jobq_app_now());
    if (rc) {
        jobq_api_fail(rq, rc, refusal);
        return;
    }
    jobq_api_reply_durable(a, rq, 200, jobq_api_job_text(a, j));
}

void jobq_h_job_cancel(jobq_req *rq)
{
    job_verb(rq, jobq_engine_job_cancel, "the job has already ended");
}

void jobq_h_job_retry(jobq_req *rq)
{
    job_verb(rq, jobq_engine_job_retry, "only failed or cancelled jobs can be retried");
}

void jobq_h_job_patch(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_job *j;
    json_t *body, *v;
    const char *key;
    int has_p = 0, p = 0, has_r = 0, rc;
    int64_t run_at = 0;

    if (!jobq_app_writable(a, rq) || !(j = jobq_api_find_job(a, rq)))
        return;
    body = jobq_api_object_body(rq, 1);
    if (!body)
        return;
    json_object_foreach(body, key, v)
    {
        if (!strcmp(key, "priority")) {
            if (json_is_string(v) ? jobq_priority_parse(json_string_value(v), &p)
                                  : (!json_is_integer(v) || json_integer_value(v) < -1000 ||
                                     json_integer_value(v) > 1000)) {
                jobq_api_bad_field(rq, "priority",
                                   "must be -1000..1000 or low, normal, high, urgent");
                goto out;
            }
            if (!json_is_string(v))
                p = (int)json_integer_value(v);
            has_p = 1;
        } else if (!strcmp(key, "run_at")) {
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                jobq_api_bad_field(rq, "run_at", "must be ms since the epoch");
                goto out;
            }
            run_at = json_integer_value(v);
            has_r = 1;
        } else {
            jobq_api_bad_field(rq, key, "unknown field (priority and run_at can change)");
            goto out;
        }
    }
    rc = jobq_engine_job_patch(jobq_app_engine(a), j, has_p, p, has_r, run_at, jobq_app_now());
    if (rc) {
        jobq_api_fail(rq, rc, "run_at can change only for scheduled or retrying jobs");
        goto out;
    }
    jobq_api_reply_durable(a, rq, 200, jobq_api_job_text(a, j));
out:
    json_decref(body);
}

void jobq_h_job_result(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_job *j = jobq_api_find_job(a, rq);
    int64_t wait;

    if (!j)
        return;
    wait = jobq_api_query_int(rq, "wait_ms", 0, 600000);
    if (wait < 0)
        return;
    if (wait > 0 && !jobq_state_final(jobq_job_state(j))) {
        jobq_app_park_result(a, rq, jobq_job_id(j), jobq_app_now() + wait);
        return;
    }
    jobq_api_result(rq, j);
}

/* ---------------------------------------------------------------- history and logs */

static void on_history(void *ud, int status, const jobq_hist_row *rows, size_t n)
{
    jobq_req *rq = ud;
    GString *o;

    if (status) {
        jobq_api_fail(rq, JOBQ_ESTORE, "the store could not read the history");
        return;
    }
    o = g_string_sized_new(64 + n * 128);
    g_string_append_c(o, '[');
    for (size_t i = 0; i < n; i++) {
        const jobq_hist_row *h = &rows[i];
        int first = 1;
        if (i)
            g_string_append_c(o, ',');
        g_string_append_c(o, '{');
        jobq_jw_kint(o, &first, "at", h->at);
        jobq_jw_kstr(o, &first, "from", h->from_state >= 0 ? jobq_state_name(h->from_state) : NULL);
        jobq_jw_kstr(o, &first, "to", jobq_state_name(h->to_state));
        jobq_jw_kint(o, &first, "attempt", h->attempt);
        jobq_jw_kstr(o, &first, "worker", h->worker);
        jobq_jw_kraw(o, &first, "error", h->error);
        g_string_append_c(o, '}');
    }
    g_string_append_c(o, ']');
    jobq_api_gstring(rq, 200, o);
}

/* Reads are queued behind the batch being gathered: flush-ordering makes a history read see
 * every change acknowledged before it. */
typedef struct read_req {
    int64_t seq;
    int attempt;
} read_req;

static void start_history(jobq_app *a, jobq_req *rq)
{
    read_req *r = jobq_req_data(rq);

    if (!jobq_req_parked(rq))
        jobq_req_park(rq, NULL, NULL); /* answered from the store's callback */
    if (jobq_store_read_history(jobq_app_store(a), r->seq, on_history, rq) != 0)
        jobq_api_fail(rq, JOBQ_ESTORE, "the store is unavailable");
}

void jobq_h_job_history(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_job *j = jobq_api_find_job(a, rq);
    read_req *r;

    if (!j)
        return;
    r = g_new0(read_req, 1);
    r->seq = jobq_job_seq(j);
    jobq_req_set_data(rq, r, g_free);
    jobq_app_after_commit(a, rq, start_history);
}

static void on_logs(void *ud, int status, char *const *lines, size_t n)
{
    jobq_req *rq = ud;
    read_req *r = jobq_req_data(rq);
    GString *o;
    int first = 1;

    if (status) {
        jobq_api_fail(rq, JOBQ_ESTORE, "the store could not read the logs");
        return;
    }
    o = g_string_sized_new(64 + n * 80);
    g_string_append_c(o, '{');
    jobq_jw_kint(o, &first, "attempt", r->attempt);
    jobq_jw_key(o, &first, "lines");
    g_string_append_c(o, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            g_string_append_c(o, ',');
        jobq_jw_str(o, lines[i]);
    }
    g_string_append(o, "]}");
    jobq_api_gstring(rq, 200, o);
}

static void start_logs(jobq_app *a, jobq_req *rq)
{
    read_req *r = jobq_req_data(rq);

    if (!jobq_req_parked(rq))
        jobq_req_park(rq, NULL, NULL); /* answered from the store's callback */
    if (jobq_store_read_logs(jobq_app_store(a), r->seq, r->attempt, on_logs, rq) != 0)
        jobq_api_fail(rq, JOBQ_ESTORE, "the store is unavailable");
}

void jobq_h_job_logs_get(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_job *j = jobq_api_find_job(a, rq);
    read_req *r;
    int64_t attempt;

    if (!j)
        return;
    attempt = jobq_api_query_int(rq, "attempt", jobq_engine_log_attempt(j), 100000);
    if (attempt < 0)
        return;
    r = g_new0(read_req, 1);
    r->seq = jobq_job_seq(j);
    r->attempt = (int)attempt;
    jobq_req_set_data(rq, r, g_free);
    jobq_app_after_commit(a, rq, start_logs);
}

/* ---------------------------------------------------------------- dead letter */

void jobq_h_dead_stats(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);

    jobq_api_json(rq, 200, jobq_engine_dead_stats(jobq_app_engine(a)));
}

void jobq_h_dead_retry(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_engine *e = jobq_app_engine(a);
    json_t *body, *v, *ids;
    const char *key;
    jobq_queue *q = NULL;
    const char **idv = NULL;
    size_t n = 0;
    int64_t count;
    GString *o;

    if (!jobq_app_writable(a, rq))
        return;
    body = jobq_api_object_body(rq, 0);
    if (!body)
        return;
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "queue") && strcmp(key, "ids")) {
            jobq_api_bad_field(rq, key, "unknown field (queue and ids are accepted)");
            goto out;
        }
    }
    v = json_object_get(body, "queue");
    if (v) {
        if (!json_is_string(v)) {
            jobq_api_bad_field(rq, "queue", "must be a queue name");
            goto out;
        }
        q = jobq_engine_queue(e, json_string_value(v));
        if (!q) {
            jobq_api_fail(rq, JOBQ_ENOTFOUND, "queue not found");
            goto out;
        }
    }
    ids = json_object_get(body, "ids");
    if (ids) {
        size_t i;
        if (!json_is_array(ids) || json_array_size(ids) > MAX_BULK) {
            jobq_api_bad_field(rq, "ids", "must be a list of at most 10000 job ids");
            goto out;
        }
        n = json_array_size(ids);
        idv = g_new(const char *, n + 1);
        json_array_foreach(ids, i, v)
        {
            if (!json_is_string(v)) {
                jobq_api_bad_field(rq, "ids", "must be a list of job ids");
                goto out;
            }
            idv[i] = json_string_value(v);
        }
    }
    count = jobq_engine_dead_retry(e, q, ids ? idv : NULL, n, jobq_app_now());
    o = g_string_new(NULL);
    g_string_printf(o, "{\"retried\":%" PRId64 "}", count);
    jobq_api_reply_durable(a, rq, 200, o);
out:
    g_free(idv);
    json_decref(body);
}
