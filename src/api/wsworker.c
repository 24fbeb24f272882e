/*
 * wsworker.c — /v1/worker: the worker protocol over one WebSocket (docs/events.md).
 *
 * A worker that keeps a connection open gets jobs pushed instead of long-polling. It says
 * which queues it takes and grants credit (`fetch`); the server pushes a job (`job`) for
 * each unit of credit as soon as one is ready, with the same lease an HTTP fetch gives. The
 * other verbs (heartbeat, progress, complete, fail, logs) are messages answered on the same
 * socket, each reply carrying the request's "id"; like their HTTP forms, complete, fail,
 * logs and checkpoints are answered once durable. A socket that drops leaves its jobs to
 * their lease (they stall back to waiting when it runs out), or, when the worker asked for
 * it with "release_on_close", gives them back at once without spending an attempt.
 *
 * Connections with credit are offered ready jobs at the end of each loop turn in which the
 * engine said a queue may have work, after the parked HTTP fetches, oldest connection first.
 *
 * What it never does: hand out a job whose enqueue is not durable (the engine's commit gate
 * holds for every fetch), or answer a change before it is durable.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/ws.h"
#include "api/wsworker.h"
#include "util/jsonw.h"

#define MAX_MSG (1u << 20) /* bytes per message, like an HTTP body */
#define MAX_CREDIT 1000
#define MAX_LOG_LINES 1000
#define MAX_LINE 8192

typedef struct wconn {
    jobq_wsworkers *w;
    jobq_ws *ws;  /* NULL once closed */
    int refs;     /* 1 while the socket is open + 1 per reply waiting on a commit */
    char *worker; /* "anonymous" until a fetch names it */
    char **queues;
    size_t nq;
    int64_t credit;
    int release_on_close;
    jobq_resources *capacity; /* from the last fetch that gave one, or NULL */
    GHashTable *held; /* job id → lease: pushed and not finished through this socket */
    GList link;       /* in w->conns */
} wconn;

struct jobq_wsworkers {
    jobq_app *a;
    GQueue conns;
    int stopping;
};

/* ---------------------------------------------------------------- replies */

static void conn_unref(wconn *c)
{
    if (--c->refs > 0)
        return;
    for (size_t i = 0; i < c->nq; i++)
        g_free(c->queues[i]);
    g_free(c->queues);
    g_free(c->worker);
    jobq_resources_free(c->capacity);
    g_hash_table_destroy(c->held);
    g_free(c);
}

static void send_text(wconn *c, GString *o)
{
    if (c->ws)
        jobq_ws_send(c->ws, o->str, o->len);
    g_string_free(o, TRUE);
}

/* {"op":op[,"id":id] — the reply's opening; the caller adds fields and the brace. */
static GString *reply_open(const char *op, const char *id)
{
    GString *o = g_string_sized_new(256);

    g_string_append(o, "{\"op\":\"");
    g_string_append(o, op);
    g_string_append_c(o, '"');
    if (id) {
        g_string_append(o, ",\"id\":");
        g_string_append(o, id);
    }
    return o;
}

static void send_error(wconn *c, const char *id, const char *code, const char *msg,
                       const char *field)
{
    GString *o = reply_open("error", id);

    g_string_append(o, ",\"error\":{\"code\":");
    jobq_jw_str(o, code);
    g_string_append(o, ",\"message\":");
    jobq_jw_str(o, msg);
    if (field) {
        g_string_append(o, ",\"details\":{\"field\":");
        jobq_jw_str(o, field);
        g_string_append_c(o, '}');
    }
    g_string_append(o, "}}");
    send_text(c, o);
}

static void bad_field(wconn *c, const char *id, const char *field, const char *why)
{
    char msg[512];

    snprintf(msg, sizeof msg, "%s %s", field, why);
    send_error(c, id, "invalid_argument", msg, field);
}

/* The error for a jobq code, as the HTTP API names it (docs/api.md). */
static void engine_error(wconn *c, const char *id, int rc, const jobq_job *j)
{
    char msg[512];

    if (rc == JOBQ_ELEASE) {
        snprintf(msg, sizeof msg,
                 "job %.200s is not active under this lease (state %s): the lease expired, "
                 "was superseded, or the server restarted",
                 jobq_job_id(j), jobq_state_name(jobq_job_state(j)));
        send_error(c, id, "lease_lost", msg, NULL);
    } else if (rc == JOBQ_ENOTFOUND) {
        send_error(c, id, "not_found", "job not found", NULL);
    } else {
        send_error(c, id, "unavailable", jobq_strerror(rc), NULL);
    }
}

/* A reply that waits until the change it reports is durable. */
typedef struct pending_reply {
    wconn *c;
    GString *o; /* the whole reply */
} pending_reply;

static void on_durable(jobq_app *a, void *ud, int ok)
{
    pending_reply *p = ud;

    (void)a;
    if (ok) {
        send_text(p->c, p->o);
    } else {
        g_string_free(p->o, TRUE);
        send_error(p->c, NULL, "unavailable",
                   "the store failed to save this change (disk full or I/O error); retry later",
                   NULL);
    }
    conn_unref(p->c);
    g_free(p);
}

static void reply_durable(wconn *c, GString *o)
{
    pending_reply *p = g_new(pending_reply, 1);

    c->refs++;
    p->c = c;
    p->o = o;
    jobq_app_when_durable(c->w->a, on_durable, p);
}

/* ---------------------------------------------------------------- pushing jobs */

static void push(wconn *c, size_t max)
{
    jobq_app *a = c->w->a;
    jobq_engine *e = jobq_app_engine(a);
    jobq_job **jobs;
    size_t n;
    int64_t now;

    if (!c->ws || jobq_ws_closing(c->ws) || !c->nq || c->credit <= 0 ||
        !jobq_app_accepts_changes(a))
        return;
    if ((size_t)c->credit < max)
        max = (size_t)c->credit;
    now = jobq_app_now();
    jobs = g_new(jobq_job *, max);
    n = jobq_engine_fetch_fit(e, (const char *const *)c->queues, c->nq, max, c->worker,
                              c->capacity, now, jobs);
    for (size_t i = 0; i < n; i++) {
        GString *o = g_string_sized_new(1024);
        char lease[17];

        g_string_append(o, "{\"op\":\"job\",\"job\":");
        jobq_job_render(e, jobs[i], 1, now, o);
        g_string_append_c(o, '}');
        send_text(c, o);
        jobq_job_lease(jobs[i], lease);
        g_hash_table_insert(c->held, g_strdup(jobq_job_id(jobs[i])), g_strdup(lease));
    }
    c->credit -= (int64_t)n;
    g_free(jobs);
}

void jobq_wsworkers_serve(jobq_wsworkers *w)
{
    for (GList *l = w->conns.head; l; l = l->next)
        push(l->data, MAX_CREDIT);
}

/* ---------------------------------------------------------------- the verbs */

typedef struct msg {
    json_t *body;
    char *id; /* the request's "id" as JSON text, or NULL */
} msg;

/* Only these keys (besides "op" and "id"); else an error naming the first other one. */
static int only_keys(wconn *c, const msg *m, const char *const *keys)
{
    const char *key;
    json_t *v;

    json_object_foreach(m->body, key, v)
    {
        int ok = !strcmp(key, "op") || !strcmp(key, "id");
        for (size_t i = 0; keys[i] && !ok; i++)
            ok = strcmp(key, keys[i]) == 0;
        if (!ok) {
            bad_field(c, m->id, key, "is not a field of this message");
            return -1;
        }
    }
    return 0;
}

static char *dump(const json_t *v)
{
    return v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

static void do_fetch(wconn *c, const msg *m)
{
    static const char *const keys[] = {"queues",           "credit",   "worker",
                                       "release_on_close", "capacity", NULL};
    jobq_resources *cap = NULL;
    json_t *qs = json_object_get(m->body, "queues"), *cr = json_object_get(m->body, "credit"),
           *wk = json_object_get(m->body, "worker"),
           *rel = json_object_get(m->body, "release_on_close"), *x;
    size_t i;
    GString *o;

    if (only_keys(c, m, keys))
        return;
    if (qs && (!json_is_array(qs) || json_array_size(qs) < 1 || json_array_size(qs) > 64)) {
        bad_field(c, m->id, "queues", "must be a list of 1 to 64 queue names");
        return;
    }
    json_array_foreach(qs, i, x) if (!json_is_string(x))
    {
        bad_field(c, m->id, "queues", "must be a list of queue names");
        return;
    }
    if (!qs && !c->nq) {
        bad_field(c, m->id, "queues", "is required on the first fetch");
        return;
    }
    if (cr && (!json_is_integer(cr) || json_integer_value(cr) < 0 ||
               json_integer_value(cr) > MAX_CREDIT)) {
        bad_field(c, m->id, "credit", "must be an integer from 0 to 1000");
        return;
    }
    if (wk && (!json_is_string(wk) || json_string_length(wk) < 1 ||
               json_string_length(wk) > 256)) {
        bad_field(c, m->id, "worker", "must be a string of 1 to 256 bytes");
        return;
    }
    if (rel && !json_is_boolean(rel)) {
        bad_field(c, m->id, "release_on_close", "must be true or false");
        return;
    }
    if (json_object_get(m->body, "capacity")) {
        const char *why;
        if (!(cap = jobq_resources_parse(json_object_get(m->body, "capacity"), &why))) {
            bad_field(c, m->id, "capacity", why);
            return;
        }
        jobq_resources_free(c->capacity); /* a fetch that gives one replaces the last */
        c->capacity = cap;
    }
    if (qs) {
        for (i = 0; i < c->nq; i++)
            g_free(c->queues[i]);
        c->nq = json_array_size(qs);
        c->queues = g_renew(char *, c->queues, c->nq);
        json_array_foreach(qs, i, x) c->queues[i] = g_strdup(json_string_value(x));
    }
    if (wk) {
        g_free(c->worker);
        c->worker = g_strdup(json_string_value(wk));
    }
    if (rel)
        c->release_on_close = json_is_true(rel);
    c->credit += cr ? json_integer_value(cr) : 1;
    if (c->credit > MAX_CREDIT)
        c->credit = MAX_CREDIT;
    jobq_engine_worker_seen(jobq_app_engine(c->w->a), c->worker, (const char *const *)c->queues,
                            c->nq, jobq_app_now());
    push(c, MAX_CREDIT);
    o = reply_open("fetch", m->id);
    g_string_append_printf(o, ",\"credit\":%" PRId64 "}", c->credit);
    send_text(c, o);
}

/* The job and lease a job verb names; NULL after an error reply. */
static jobq_job *job_of(wconn *c, const msg *m, const char **lease)
{
    json_t *id = json_object_get(m->body, "job"), *l = json_object_get(m->body, "lease");
    jobq_job *j;

    if (!json_is_string(id)) {
        bad_field(c, m->id, "job", "is required: the job's id");
        return NULL;
    }
    if (!json_is_string(l)) {
        bad_field(c, m->id, "lease", "is required: the lease the job was pushed with");
        return NULL;
    }
    j = jobq_engine_job(jobq_app_engine(c->w->a), json_string_value(id));
    if (!j) {
        send_error(c, m->id, "not_found", "job not found", NULL);
        return NULL;
    }
    *lease = json_string_value(l);
    return j;
}

static GString *beat_reply(const char *op, const msg *m, const jobq_job *j)
{
    GString *o = reply_open(op, m->id);

    g_string_append(o, ",\"job\":");
    jobq_jw_str(o, jobq_job_id(j));
    g_string_append_printf(o, ",\"lease_expires_at\":%" PRId64 ",\"cancel_requested\":%s}",
                           jobq_job_lease_expires_at(j),
                           jobq_job_cancel_requested(j) ? "true" : "false");
    return o;
}

static void do_heartbeat(wconn *c, const msg *m, int progress)
{
    static const char *const hkeys[] = {"job", "lease", "extend_ms", "checkpoint", NULL};
    static const char *const pkeys[] = {"job",    "lease", "percent",    "stage", "message",
                                        "eta_ms", "data",  "checkpoint", NULL};
    jobq_engine *e = jobq_app_engine(c->w->a);
    const char *lease;
    jobq_job *j;
    json_t *v;
    char *cp = NULL;
    GString *p = NULL;
    int durable = 0, rc, first = 1;
    int64_t extend = 0;

    if (only_keys(c, m, progress ? pkeys : hkeys) || !(j = job_of(c, m, &lease)))
        return;
    if (progress) {
        p = g_string_new("{");
        v = json_object_get(m->body, "percent");
        if (v) {
            double pc = json_number_value(v);
            if (!json_is_number(v) || !(pc >= 0 && pc <= 100)) {
                bad_field(c, m->id, "percent", "must be a number from 0 to 100");
                goto out;
            }
            jobq_jw_key(p, &first, "percent");
            g_string_append_printf(p, "%.17g", pc);
        }
        for (const char *const *k = (const char *const[]){"stage", "message", NULL}; *k; k++) {
            v = json_object_get(m->body, *k);
            if (!v)
                continue;
            if (!json_is_string(v) || json_string_length(v) > 4096) {
                bad_field(c, m->id, *k, "must be a string of at most 4096 bytes");
                goto out;
            }
            jobq_jw_kstr(p, &first, *k, json_string_value(v));
        }
        v = json_object_get(m->body, "eta_ms");
        if (v) {
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                bad_field(c, m->id, "eta_ms", "must be a non-negative integer (ms)");
                goto out;
            }
            jobq_jw_kint(p, &first, "eta_ms", json_integer_value(v));
        }
        v = json_object_get(m->body, "data");
        if (v) {
            char *d = dump(v);
            jobq_jw_kraw(p, &first, "data", d);
            free(d);
        }
        g_string_append_c(p, '}');
    } else if ((v = json_object_get(m->body, "extend_ms"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > INT64_C(86400000) * 7) {
            bad_field(c, m->id, "extend_ms", "must be an integer from 1 to 604800000 (ms)");
            goto out;
        }
        extend = json_integer_value(v);
    }
    cp = dump(json_object_get(m->body, "checkpoint"));
    if (progress)
        rc = jobq_engine_progress(e, j, lease, p->str, cp, jobq_app_now(), &durable);
    else
        rc = jobq_engine_heartbeat(e, j, lease, extend, cp, jobq_app_now(), &durable);
    if (rc) {
        engine_error(c, m->id, rc, j);
        goto out;
    }
    if (durable)
        reply_durable(c, beat_reply(progress ? "progress" : "heartbeat", m, j));
    else
        send_text(c, beat_reply(progress ? "progress" : "heartbeat", m, j));
out:
    free(cp);
    if (p)
        g_string_free(p, TRUE);
}

static GString *final_reply(const char *op, const msg *m, const jobq_job *j)
{
    GString *o = reply_open(op, m->id);

    g_string_append(o, ",\"job\":");
    jobq_jw_str(o, jobq_job_id(j));
    g_string_append(o, ",\"state\":\"");
    g_string_append(o, jobq_state_name(jobq_job_state(j)));
    g_string_append(o, "\"}");
    return o;
}

static void do_finish(wconn *c, const msg *m, int fail)
{
    static const char *const ckeys[] = {"job", "lease", "result", NULL};
    static const char *const fkeys[] = {"job", "lease", "error", "retry_in_ms", "queue_backoff",
                                        NULL};
    jobq_engine *e = jobq_app_engine(c->w->a);
    const char *lease;
    jobq_job *j;
    char *text = NULL;
    int rc;

    if (only_keys(c, m, fail ? fkeys : ckeys) || !(j = job_of(c, m, &lease)))
        return;
    if (fail) {
        jobq_failure f;
        const char *field,
            *why = jobq_api_parse_failure(
                json_object_get(m->body, "error"), json_object_get(m->body, "retry_in_ms"),
                json_object_get(m->body, "queue_backoff"), &f, &text, &field);
        if (why) {
            bad_field(c, m->id, field, why);
            free(text);
            return;
        }
        rc = jobq_engine_fail(e, j, lease, &f, jobq_app_now(), NULL);
    } else {
        text = dump(json_object_get(m->body, "result"));
        rc = jobq_engine_complete(e, j, lease, text, jobq_app_now(), NULL);
    }
    free(text);
    if (rc) {
        engine_error(c, m->id, rc, j);
        return;
    }
    g_hash_table_remove(c->held, jobq_job_id(j));
    reply_durable(c, final_reply(fail ? "fail" : "complete", m, j));
}

static void do_logs(wconn *c, const msg *m)
{
    static const char *const keys[] = {"job", "lease", "lines", NULL};
    json_t *lines = json_object_get(m->body, "lines"), *v;
    const char *lease, **lv;
    jobq_job *j;
    size_t i, n;
    int rc;
    GString *o;

    if (only_keys(c, m, keys) || !(j = job_of(c, m, &lease)))
        return;
    if (!json_is_array(lines) || json_array_size(lines) > MAX_LOG_LINES) {
        bad_field(c, m->id, "lines", "must be a list of at most 1000 strings");
        return;
    }
    n = json_array_size(lines);
    lv = g_new(const char *, n + 1);
    json_array_foreach(lines, i, v)
    {
        if (!json_is_string(v) || json_string_length(v) > MAX_LINE ||
            strlen(json_string_value(v)) != json_string_length(v)) {
            bad_field(c, m->id, "lines", "each line must be a string of at most 8192 bytes");
            g_free(lv);
            return;
        }
        lv[i] = json_string_value(v);
    }
    rc = jobq_engine_logs(jobq_app_engine(c->w->a), j, lease, lv, n, jobq_app_now());
    g_free(lv);
    if (rc) {
        engine_error(c, m->id, rc, j);
        return;
    }
    o = reply_open("logs", m->id);
    g_string_append(o, ",\"job\":");
    jobq_jw_str(o, jobq_job_id(j));
    g_string_append_printf(o, ",\"appended\":%zu}", n);
    reply_durable(c, o);
}

static void on_text(void *ud, jobq_ws *ws, const char *text, size_t len)
{
    wconn *c = ud;
    json_error_t err;
    msg m = {NULL, NULL};
    json_t *op, *id;
    const char *o;

    (void)ws;
    if (jobq_api_too_deep(text, len)) {
        send_error(c, NULL, "invalid_json", "JSON nested deeper than 64 levels", NULL);
        return;
    }
    m.body = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!json_is_object(m.body)) {
        char why[300];
        snprintf(why, sizeof why, "a message must be one JSON object%s%s", m.body ? "" : ": ",
                 m.body ? "" : err.text);
        send_error(c, NULL, "invalid_json", why, NULL);
        goto out;
    }
    id = json_object_get(m.body, "id");
    if (id) {
        if (json_is_object(id) || json_is_array(id)) {
            bad_field(c, NULL, "id", "must be a string or a number");
            goto out;
        }
        m.id = dump(id);
    }
    op = json_object_get(m.body, "op");
    o = json_string_value(op);
    if (!o) {
        bad_field(c, m.id, "op", "is required: fetch, heartbeat, progress, complete, fail, logs");
    } else if (!jobq_app_accepts_changes(c->w->a)) {
        send_error(c, m.id, "unavailable",
                   "the store cannot save changes right now (disk full or I/O error), or the "
                   "server is stopping; retry later",
                   NULL);
    } else if (!strcmp(o, "fetch")) {
        do_fetch(c, &m);
    } else if (!strcmp(o, "heartbeat")) {
        do_heartbeat(c, &m, 0);
    } else if (!strcmp(o, "progress")) {
        do_heartbeat(c, &m, 1);
    } else if (!strcmp(o, "complete")) {
        do_finish(c, &m, 0);
    } else if (!strcmp(o, "fail")) {
        do_finish(c, &m, 1);
    } else if (!strcmp(o, "logs")) {
        do_logs(c, &m);
    } else {
        bad_field(c, m.id, "op",
                  "must be one of fetch, heartbeat, progress, complete, fail, logs");
    }
out:
    free(m.id);
    json_decref(m.body);
}

/* The socket is gone: its jobs keep their leases (they stall when those run out), unless
 * the worker asked for them to go back at once. */
static void on_close(void *ud, jobq_ws *ws)
{
    wconn *c = ud;
    jobq_wsworkers *w = c->w;

    (void)ws;
    c->ws = NULL;
    g_queue_unlink(&w->conns, &c->link);
    if (c->release_on_close && g_hash_table_size(c->held)) {
        jobq_engine *e = jobq_app_engine(w->a);
        GHashTableIter it;
        gpointer k, v;
        int64_t now = jobq_app_now();

        g_hash_table_iter_init(&it, c->held);
        while (g_hash_table_iter_next(&it, &k, &v)) {
            jobq_job *j = jobq_engine_job(e, k);
            if (j)
                jobq_engine_release(e, j, v, now); /* refused if the lease moved on */
        }
    }
    conn_unref(c);
}

void jobq_h_worker_ws(jobq_req *rq)
{
    static const jobq_ws_handlers h = {on_text, on_close};
    jobq_app *a = jobq_req_app(rq);
    jobq_wsworkers *w = jobq_app_wsworkers(a);
    wconn *c;

    if (!jobq_ws_requested(rq)) {
        jobq_req_add_header(rq, "Upgrade", "websocket");
        jobq_req_error(rq, 426, "upgrade_required",
                       "/v1/worker is a WebSocket: connect with Upgrade: websocket (or use the "
                       "HTTP worker verbs)",
                       NULL);
        return;
    }
    if (w->stopping) {
        jobq_req_error(rq, 503, "unavailable", "the server is shutting down", NULL);
        return;
    }
    c = g_new0(wconn, 1);
    c->w = w;
    c->refs = 1;
    c->worker = g_strdup("anonymous");
    c->held = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    c->link.data = c;
    g_queue_push_tail_link(&w->conns, &c->link);
    c->ws = jobq_ws_accept(rq, jobq_app_loop(a), MAX_MSG, &h, c);
    if (!c->ws) { /* answered 400 */
        g_queue_unlink(&w->conns, &c->link);
        conn_unref(c);
    }
}

/* ---------------------------------------------------------------- life */

jobq_wsworkers *jobq_wsworkers_new(jobq_app *a)
{
    jobq_wsworkers *w = g_new0(jobq_wsworkers, 1);

    w->a = a;
    g_queue_init(&w->conns);
    return w;
}

void jobq_wsworkers_stop(jobq_wsworkers *w)
{
    w->stopping = 1;
    for (GList *l = w->conns.head; l; l = l->next) {
        wconn *c = l->data;
        if (c->ws)
            jobq_ws_close(c->ws, 1001, "server stopping");
    }
}

void jobq_wsworkers_free(jobq_wsworkers *w)
{
    g_free(w);
}
