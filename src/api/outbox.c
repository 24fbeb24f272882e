/*
 * outbox.c — webhooks: hooks, the durable outbox, matching, throttling, sending (outbox.h).
 *
 * A delivery's life:
 *   staged   made by stage() in the loop turn of the change, its document in the same
 *            batch; it waits for publish() (the batch is durable), since announcing a
 *            change a crash could undo would be a lie (a held progress released before
 *            its batch is durable waits here too)
 *   ready    in its target's FIFO, waiting for a slot (max_inflight in all, max_per_hook
 *            per target); targets with ready deliveries take turns (round robin), so one
 *            slow endpoint never holds another's deliveries
 *   sending  a POST in flight (send.c)
 *   waiting  a failed attempt's retry time, in w->timed (a sorted sequence; one uv_timer)
 *   held     a coalesced job.progress waiting for its throttle window, in w->timed
 *   done     delivered (2xx) or failed for good (JOBQ_WEBHOOK_ATTEMPTS failures): kept in
 *            its target's history (bounded), its document rewritten without the event
 * Its document is rewritten when it is made, after each failed attempt and when it is done,
 * so after a restart a delivery resumes with the attempts it had; one that was being sent
 * when the process died is sent again (at least once: receivers dedupe by the
 * X-Jobq-Delivery header or the event's seq).
 *
 * A target is where deliveries go: a registered hook (id = its id), or a job's own webhook
 * (id = "job:<job id>"; made on the job's first matching event, freed when it has nothing
 * pending and no history left).
 *
 * Progress throttle: per target and job, one job.progress per progress_ms window. A
 * progress inside the window is held; a later one replaces it; when the window ends the
 * latest one is sent (coalescing). A final event of the job (completed, failed,
 * cancelled) drops a held progress: it would only arrive after the end. A held progress
 * is not in the store; if the process dies meanwhile it is lost, and the job's next
 * progress or end is what the receiver sees.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "api/outbox.h"
#include "api/send.h"
#include "util/jsonw.h"
#include "util/sign.h"

#define MAX_HOOKS 1000
#define DONE_PER_HOOK 50     /* history kept per registered hook */
#define DONE_PER_JOB 10      /* history kept per job's own webhook */
#define DONE_JOBS_TOTAL 1000 /* history kept over every job's own webhook */
#define BACKOFF_FACTOR 4
#define DROP_LOG_MS 60000 /* one stderr line per minute at most about drops */

enum { D_STAGED, D_HELD, D_READY, D_WAITING, D_SENDING, D_DONE };

typedef struct target target;

typedef struct attempt {
    int64_t at; /* ms since epoch */
    long code;  /* HTTP status, 0 = none */
    int64_t ms; /* duration */
    char *error;
} attempt;

typedef struct delivery {
    char *id;
    jobq_webhooks *w;
    target *t; /* NULL once its hook was deleted while it was being sent */
    char *tid; /* loading only: the target's id until start() resolves it */
    char *job; /* may be NULL */
    char *type;
    int64_t seq;
    char *body; /* the event as sent; NULL once done */
    size_t body_len;
    int state;
    int ok; /* done: delivered */
    int attempts;
    int64_t created_at, next_at, finished_at;
    attempt log[JOBQ_WEBHOOK_ATTEMPTS];
    GList link;           /* in w->staged, t->ready or t->done */
    GList tlink;          /* in t->live while not done */
    GList glink;          /* done, of a job's webhook: in w->job_done */
    GSequenceIter *timed; /* waiting or held: in w->timed */
} delivery;

typedef struct throttle {
    int64_t last_at; /* when the last progress went out (event time) */
    delivery *held;  /* the latest progress inside the window, or NULL */
} throttle;

struct target {
    char *id;
    int per_job;
    char *url, *secret, *token; /* copies of the spec's; secret, token may be NULL */
    json_t *spec;               /* the stored description (hooks and job webhooks) */
    char **events;              /* NULL: every job event (a job's webhook without events) */
    char **queues;              /* NULL: any */
    const char *project;        /* NULL: any */
    int64_t created_at;
    GQueue ready; /* deliveries waiting for a slot */
    GQueue live;  /* every delivery not done */
    GQueue done;  /* finished, oldest first */
    int inflight;
    int in_rr;
    GList rr;             /* in w->rr */
    GList hlink;          /* registered hooks: in w->hooks, creation order */
    GHashTable *throttle; /* job id → throttle, made on first progress */
};

struct jobq_webhooks {
    uv_loop_t *loop;
    jobq_engine *e;
    jobq_webhooks_config cfg;
    jobq_sender *sender;
    GHashTable *targets;            /* id → target */
    GQueue hooks;                   /* registered targets */
    GQueue staged;                  /* deliveries waiting for their batch, in seq order */
    GQueue rr;                      /* targets with ready deliveries and a free slot */
    GSequence *timed;               /* waiting and held deliveries by next_at */
    GQueue job_done;                /* finished deliveries of job webhooks, oldest first */
    GQueue orphans;                 /* being sent when their hook was deleted */
    size_t outbox;                  /* deliveries not done */
    size_t nthrottle;               /* throttle entries over every target */
    int64_t dropped, last_drop_log; /* new deliveries refused by a full outbox */
    int64_t delivered, failed;      /* since start */
    uint64_t id_counter;
    int64_t published; /* the last event seq whose batch is durable */
    uv_timer_t timer;
    int64_t timer_due; /* INT64_MAX: stopped */
    int64_t sweep_at;
    GPtrArray *loaded; /* deliveries read by load_doc, placed by start() */
    int started, stopping, closed, pumping;
};

static void arm(jobq_webhooks *w);
static void pump(jobq_webhooks *w);

/* ---------------------------------------------------------------- small things */

static int64_t backoff(const jobq_webhooks *w, int attempts)
{
    int64_t d = w->cfg.backoff_ms;

    for (int i = 1; i < attempts; i++)
        d *= BACKOFF_FACTOR;
    return d;
}

static char **strv_of(const json_t *arr)
{
    char **v;
    size_t i;
    json_t *x;

    if (!json_is_array(arr))
        return NULL;
    v = g_new0(char *, json_array_size(arr) + 1);
    json_array_foreach(arr, i, x) v[i] = g_strdup(json_string_value(x));
    return v;
}

static const char *sget(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static int64_t iget(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

static int is_final_type(const char *type)
{
    return !strcmp(type, "job.completed") || !strcmp(type, "job.failed") ||
           !strcmp(type, "job.cancelled");
}

static const char *state_name(const delivery *d)
{
    switch (d->state) {
    case D_HELD:
        return "throttled";
    case D_WAITING:
        return d->attempts ? "retrying" : "pending";
    case D_SENDING:
        return "sending";
    case D_DONE:
        return d->ok ? "delivered" : "failed";
    default:
        return "pending";
    }
}

/* ---------------------------------------------------------------- targets */

static target *target_new(const char *id, int per_job, json_t *spec)
{
    target *t = g_new0(target, 1);

    t->id = g_strdup(id);
    t->per_job = per_job;
    t->spec = spec; /* stolen */
    t->url = g_strdup(sget(spec, "url"));
    t->secret = g_strdup(sget(spec, "secret"));
    t->token = g_strdup(sget(spec, "token"));
    t->events = strv_of(json_object_get(spec, "events"));
    t->queues = strv_of(json_object_get(spec, "queues"));
    t->project = sget(spec, "project");
    t->created_at = iget(spec, "created_at");
    g_queue_init(&t->ready);
    g_queue_init(&t->live);
    g_queue_init(&t->done);
    t->rr.data = t->hlink.data = t;
    return t;
}

static void target_free(jobq_webhooks *w, target *t)
{
    if (t->throttle) {
        w->nthrottle -= g_hash_table_size(t->throttle);
        g_hash_table_destroy(t->throttle);
    }
    g_free(t->id);
    g_free(t->url);
    g_free(t->secret);
    g_free(t->token);
    g_strfreev(t->events);
    g_strfreev(t->queues);
    json_decref(t->spec);
    g_free(t);
}

static int matches(const target *t, const jobq_event *ev)
{
    int any = 0;

    if (t->events) {
        for (char **p = t->events; *p && !any; p++)
            any = jobq_webhook_type_match(*p, ev->type);
    } else {
        any = jobq_webhook_type_match("job.*", ev->type);
    }
    if (!any)
        return 0;
    if (t->queues) {
        if (!ev->queue)
            return 0;
        any = 0;
        for (char **p = t->queues; *p && !any; p++)
            any = !strcmp(*p, ev->queue);
        if (!any)
            return 0;
    }
    return !t->project || (ev->project && !strcmp(t->project, ev->project));
}

/* Turn-taking: a target with ready deliveries and a free slot is in w->rr once. */
static void rr_add(jobq_webhooks *w, target *t)
{
    if (!t->in_rr && t->ready.length && (size_t)t->inflight < w->cfg.max_per_hook) {
        t->in_rr = 1;
        g_queue_push_tail_link(&w->rr, &t->rr);
    }
}

static void rr_remove(jobq_webhooks *w, target *t)
{
    if (t->in_rr) {
        t->in_rr = 0;
        g_queue_unlink(&w->rr, &t->rr);
    }
}

/* ---------------------------------------------------------------- deliveries */

static void delivery_free(delivery *d)
{
    for (int i = 0; i < JOBQ_WEBHOOK_ATTEMPTS; i++)
        g_free(d->log[i].error);
    g_free(d->id);
    g_free(d->tid);
    g_free(d->job);
    g_free(d->type);
    g_free(d->body);
    g_free(d);
}

/* "log": every attempt made, as the document stores it and the API shows it. */
static void put_log(const delivery *d, GString *o, int *first)
{
    jobq_jw_key(o, first, "log");
    g_string_append_c(o, '[');
    for (int i = 0; i < d->attempts && i < JOBQ_WEBHOOK_ATTEMPTS; i++) {
        int f2 = 1;
        if (i)
            g_string_append_c(o, ',');
        g_string_append_c(o, '{');
        jobq_jw_kint(o, &f2, "at", d->log[i].at);
        jobq_jw_kint(o, &f2, "code", d->log[i].code);
        jobq_jw_kint(o, &f2, "ms", d->log[i].ms);
        jobq_jw_kstr(o, &f2, "error", d->log[i].error);
        g_string_append_c(o, '}');
    }
    g_string_append_c(o, ']');
}

/* Its document: the event while it is pending, its outcome always. A job webhook's
 * delivery carries the target itself (the job may be gone when it is resumed). */
static void persist(jobq_webhooks *w, const delivery *d)
{
    GString *o = g_string_sized_new(256 + d->body_len);
    int first = 1;

    g_string_append_c(o, '{');
    jobq_jw_kstr(o, &first, "target", d->t->id);
    if (d->t->per_job) {
        char *spec = json_dumps(d->t->spec, JSON_COMPACT);
        jobq_jw_kraw(o, &first, "spec", spec);
        free(spec);
    }
    if (d->job)
        jobq_jw_kstr(o, &first, "job", d->job);
    jobq_jw_kstr(o, &first, "type", d->type);
    jobq_jw_kint(o, &first, "seq", d->seq);
    if (d->body)
        jobq_jw_kstr(o, &first, "event", d->body);
    jobq_jw_kstr(o, &first, "status",
                 d->state == D_DONE ? (d->ok ? "delivered" : "failed") : "pending");
    jobq_jw_kint(o, &first, "attempts", d->attempts);
    jobq_jw_kint(o, &first, "created_at", d->created_at);
    jobq_jw_kint(o, &first, "next_at", d->next_at);
    jobq_jw_kint(o, &first, "finished_at", d->finished_at);
    put_log(d, o, &first);
    g_string_append_c(o, '}');
    jobq_engine_doc_put(w->e, "delivery", d->id, o->str);
    g_string_free(o, TRUE);
}

static gint timed_cmp(gconstpointer a, gconstpointer b, gpointer ud)
{
    const delivery *x = a, *y = b;

    (void)ud;
    if (x->next_at != y->next_at)
        return x->next_at < y->next_at ? -1 : 1;
    return strcmp(x->id, y->id);
}

static void timed_add(jobq_webhooks *w, delivery *d)
{
    d->timed = g_sequence_insert_sorted(w->timed, d, timed_cmp, NULL);
    arm(w);
}

static void timed_remove(delivery *d)
{
    if (d->timed) {
        g_sequence_remove(d->timed);
        d->timed = NULL;
    }
}

/* A new delivery of ev to t, counted in the outbox; NULL (and counted as dropped) when the
 * outbox is full. */
static delivery *delivery_new(jobq_webhooks *w, target *t, const jobq_event *ev, int state)
{
    delivery *d;
    int64_t now = jobq_app_now();

    if (w->outbox >= w->cfg.max_outbox) {
        w->dropped++;
        if (now - w->last_drop_log >= DROP_LOG_MS) {
            fprintf(stderr,
                    "jobqd: webhook outbox full (%zu deliveries pending); %" PRId64
                    " deliveries dropped so far\n",
                    w->outbox, w->dropped);
            w->last_drop_log = now;
        }
        return NULL;
    }
    d = g_new0(delivery, 1);
    /* ids in time order: the store's docs table is keyed by them, and new keys that land
     * at the end of its B-tree cost a page or two per batch where random ones would dirty
     * a page per delivery */
    d->id = g_strdup_printf("%012" PRIx64 "-%04x-%08x", (uint64_t)now,
                            (unsigned)(w->id_counter++ & 0xffff), (unsigned)g_random_int());
    d->w = w;
    d->t = t;
    d->job = g_strdup(ev->job);
    d->type = g_strdup(ev->type);
    d->seq = (int64_t)ev->seq;
    d->body = g_strndup(ev->json, ev->json_len);
    d->body_len = ev->json_len;
    d->state = state;
    d->created_at = now;
    d->link.data = d->tlink.data = d->glink.data = d;
    g_queue_push_tail_link(&t->live, &d->tlink);
    w->outbox++;
    return d;
}

static void make_ready(jobq_webhooks *w, delivery *d)
{
    d->state = D_READY;
    g_queue_push_tail_link(&d->t->ready, &d->link);
    rr_add(w, d->t);
}

static void maybe_free_job_target(jobq_webhooks *w, target *t)
{
    if (t->per_job && !t->live.length && !t->done.length && !t->inflight &&
        (!t->throttle || !g_hash_table_size(t->throttle))) {
        rr_remove(w, t);
        g_hash_table_remove(w->targets, t->id);
        target_free(w, t);
    }
}

/* Drops the oldest finished deliveries of t past its limit, and those of job webhooks past
 * the limit over all of them. */
static void trim(jobq_webhooks *w, target *t)
{
    size_t keep = t->per_job ? DONE_PER_JOB : DONE_PER_HOOK;
    GList *l;

    while (t->done.length > keep) {
        delivery *d = (l = g_queue_pop_head_link(&t->done))->data;
        if (t->per_job)
            g_queue_unlink(&w->job_done, &d->glink);
        jobq_engine_doc_delete(w->e, "delivery", d->id);
        delivery_free(d);
    }
    while (w->job_done.length > DONE_JOBS_TOTAL) {
        delivery *d = (l = g_queue_pop_head_link(&w->job_done))->data;
        target *o = d->t;
        g_queue_unlink(&o->done, &d->link);
        jobq_engine_doc_delete(w->e, "delivery", d->id);
        delivery_free(d);
        if (o != t)
            maybe_free_job_target(w, o);
    }
}

static void finish(jobq_webhooks *w, delivery *d, int ok, int64_t now)
{
    target *t = d->t;

    d->state = D_DONE;
    d->ok = ok;
    d->finished_at = now;
    g_free(d->body);
    d->body = NULL;
    d->body_len = 0;
    g_queue_unlink(&t->live, &d->tlink);
    w->outbox--;
    if (ok)
        w->delivered++;
    else
        w->failed++;
    g_queue_push_tail_link(&t->done, &d->link);
    if (t->per_job)
        g_queue_push_tail_link(&w->job_done, &d->glink);
    persist(w, d);
    trim(w, t);
}

/* ---------------------------------------------------------------- sending */

static void on_sent(void *ud, long code, const char *error, int64_t ms);

static void send_one(jobq_webhooks *w, delivery *d)
{
    target *t = d->t;
    const char *hdrs[8];
    size_t n = 0;
    char *auth = NULL, *sig = NULL, *ts = NULL, *ev, *id, *att;
    int rc;

    d->state = D_SENDING;
    t->inflight++;
    hdrs[n++] = "Content-Type: application/json";
    hdrs[n++] = ev = g_strdup_printf("X-Jobq-Event: %s", d->type);
    hdrs[n++] = id = g_strdup_printf("X-Jobq-Delivery: %s", d->id);
    hdrs[n++] = att = g_strdup_printf("X-Jobq-Attempt: %d", d->attempts + 1);
    if (t->token)
        hdrs[n++] = auth = g_strdup_printf("Authorization: Bearer %s", t->token);
    if (t->secret) {
        char hex[JOBQ_SIGN_HEX];
        int64_t now_s = (int64_t)time(NULL);
        if (jobq_sign_webhook(t->secret, now_s, d->body, d->body_len, hex) == 0) {
            hdrs[n++] = ts = g_strdup_printf("X-Jobq-Timestamp: %" PRId64, now_s);
            hdrs[n++] = sig = g_strdup_printf("X-Jobq-Signature: sha256=%s", hex);
        }
    }
    rc = jobq_sender_post(w->sender, t->url, d->body, d->body_len, hdrs, n, on_sent, d);
    g_free(ev);
    g_free(id);
    g_free(att);
    g_free(auth);
    g_free(ts);
    g_free(sig);
    if (rc) /* reported like any failed attempt */
        on_sent(d, 0, "could not start the request (out of memory)", 0);
}

/* Fills free slots, targets taking turns. */
static void pump(jobq_webhooks *w)
{
    GList *l;

    if (!w->started || w->stopping || w->closed || w->pumping)
        return;
    w->pumping = 1; /* a POST that cannot start is reported at once, from inside this loop */
    while (jobq_sender_active(w->sender) < w->cfg.max_inflight &&
           (l = g_queue_pop_head_link(&w->rr))) {
        target *t = l->data;
        delivery *d = g_queue_pop_head_link(&t->ready)->data;
        t->in_rr = 0;
        send_one(w, d);
        rr_add(w, t);
    }
    w->pumping = 0;
}

static void on_sent(void *ud, long code, const char *error, int64_t ms)
{
    delivery *d = ud;
    jobq_webhooks *w = d->w;
    target *t = d->t;
    int64_t now = jobq_app_now();
    attempt *a;

    if (!t) { /* its hook was deleted meanwhile */
        g_queue_unlink(&w->orphans, &d->link);
        delivery_free(d);
        pump(w);
        return;
    }
    t->inflight--;
    a = &d->log[d->attempts < JOBQ_WEBHOOK_ATTEMPTS ? d->attempts : JOBQ_WEBHOOK_ATTEMPTS - 1];
    g_free(a->error);
    a->at = now;
    a->code = code;
    a->ms = ms;
    a->error = g_strdup(error);
    d->attempts++;
    if (!error) {
        finish(w, d, 1, now);
    } else if (d->attempts >= JOBQ_WEBHOOK_ATTEMPTS) {
        finish(w, d, 0, now);
    } else {
        d->state = D_WAITING;
        d->next_at = now + backoff(w, d->attempts);
        persist(w, d);
        timed_add(w, d);
    }
    rr_add(w, t);
    pump(w);
}

/* ---------------------------------------------------------------- timers */

static void on_timer(uv_timer_t *h);

static void arm(jobq_webhooks *w)
{
    int64_t due = INT64_MAX, now;
    GSequenceIter *first;

    if (w->closed)
        return;
    first = g_sequence_get_begin_iter(w->timed);
    if (!g_sequence_iter_is_end(first))
        due = ((delivery *)g_sequence_get(first))->next_at;
    if (w->nthrottle && w->sweep_at < due)
        due = w->sweep_at;
    if (due == w->timer_due)
        return;
    w->timer_due = due;
    if (due == INT64_MAX) {
        uv_timer_stop(&w->timer);
        return;
    }
    now = jobq_app_now();
    uv_timer_start(&w->timer, on_timer, (uint64_t)(due > now ? due - now : 0), 0);
}

/* Joins w->staged in seq order (a held progress is older than what was staged since). */
static void stage_sorted(jobq_webhooks *w, delivery *d)
{
    GList *l = w->staged.tail;

    while (l && ((delivery *)l->data)->seq > d->seq)
        l = l->prev;
    d->state = D_STAGED;
    if (l)
        g_queue_insert_after_link(&w->staged, l, &d->link);
    else
        g_queue_push_head_link(&w->staged, &d->link);
}

/* A held progress whose window ended goes out now, as a delivery of its own. It was never
 * staged: it is written down here (a lost one is superseded by the job's next event
 * anyway). Its event may be the last one of a batch not yet durable: then it waits for
 * that batch like any staged delivery, since the change it announces could still be
 * undone. */
static void release_held(jobq_webhooks *w, delivery *d, int64_t now)
{
    throttle *th = g_hash_table_lookup(d->t->throttle, d->job);

    if (th) {
        th->held = NULL;
        th->last_at = now;
    }
    persist(w, d);
    if (d->seq > w->published)
        stage_sorted(w, d);
    else
        make_ready(w, d);
}

/* Forgets throttle entries whose window is over and job targets with nothing left. */
static void sweep(jobq_webhooks *w, int64_t now)
{
    GHashTableIter it;
    gpointer k, v;
    GPtrArray *idle = g_ptr_array_new();

    g_hash_table_iter_init(&it, w->targets);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        target *t = v;
        GHashTableIter i2;
        gpointer k2, v2;
        if (!t->throttle)
            continue;
        g_hash_table_iter_init(&i2, t->throttle);
        while (g_hash_table_iter_next(&i2, &k2, &v2)) {
            throttle *th = v2;
            if (!th->held && now - th->last_at >= w->cfg.progress_ms) {
                g_hash_table_iter_remove(&i2);
                w->nthrottle--;
            }
        }
        if (t->per_job)
            g_ptr_array_add(idle, t);
    }
    for (guint i = 0; i < idle->len; i++)
        maybe_free_job_target(w, idle->pdata[i]);
    g_ptr_array_free(idle, TRUE);
    w->sweep_at = now + w->cfg.progress_ms;
}

static void on_timer(uv_timer_t *h)
{
    jobq_webhooks *w = h->data;
    int64_t now = jobq_app_now();
    GSequenceIter *it;

    w->timer_due = INT64_MAX;
    while (!g_sequence_iter_is_end(it = g_sequence_get_begin_iter(w->timed))) {
        delivery *d = g_sequence_get(it);
        if (d->next_at > now)
            break;
        timed_remove(d);
        if (d->state == D_HELD)
            release_held(w, d, now);
        else
            make_ready(w, d);
    }
    if (w->nthrottle && now >= w->sweep_at)
        sweep(w, now);
    pump(w);
    arm(w);
}

/* ---------------------------------------------------------------- the bus sink */

static throttle *throttle_get(jobq_webhooks *w, target *t, const char *job, int make)
{
    throttle *th;

    if (!t->throttle) {
        if (!make)
            return NULL;
        t->throttle = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    }
    th = g_hash_table_lookup(t->throttle, job);
    if (!th && make) {
        th = g_new0(throttle, 1);
        th->last_at = INT64_MIN / 2;
        g_hash_table_insert(t->throttle, g_strdup(job), th);
        if (!w->nthrottle++)
            w->sweep_at = jobq_app_now() + w->cfg.progress_ms;
        arm(w);
    }
    return th;
}

/* Drops a delivery that was never sent nor written (a held progress). */
static void discard(jobq_webhooks *w, delivery *d)
{
    timed_remove(d);
    g_queue_unlink(&d->t->live, &d->tlink);
    w->outbox--;
    delivery_free(d);
}

static void offer(jobq_webhooks *w, target *t, const jobq_event *ev)
{
    delivery *d;

    if (ev->job && !strcmp(ev->type, "job.progress")) {
        throttle *th = throttle_get(w, t, ev->job, 1);
        if (ev->at - th->last_at < w->cfg.progress_ms) {
            if (th->held) { /* the newer progress replaces the held one */
                d = th->held;
                g_free(d->body);
                d->body = g_strndup(ev->json, ev->json_len);
                d->body_len = ev->json_len;
                d->seq = (int64_t)ev->seq;
            } else if ((d = delivery_new(w, t, ev, D_HELD))) {
                d->next_at = th->last_at + w->cfg.progress_ms;
                th->held = d;
                timed_add(w, d);
            }
            return;
        }
        if (th->held) { /* the window is over: this newer progress supersedes it */
            discard(w, th->held);
            th->held = NULL;
        }
        th->last_at = ev->at;
    }
    d = delivery_new(w, t, ev, D_STAGED);
    if (!d)
        return;
    persist(w, d);
    g_queue_push_tail_link(&w->staged, &d->link);
}

/* The job's own webhook as a target, made from its stored description on first use. */
static target *job_target(jobq_webhooks *w, const char *job, const char *spec_text)
{
    char *id = g_strconcat("job:", job, NULL);
    target *t = g_hash_table_lookup(w->targets, id);
    json_t *spec;

    if (!t && (spec = json_loads(spec_text, 0, NULL))) {
        t = target_new(id, 1, spec);
        g_hash_table_insert(w->targets, t->id, t);
    }
    g_free(id);
    return t;
}

/* The job ended: a progress of it still held for t would only arrive after the end. */
static void drop_held(jobq_webhooks *w, target *t, const char *job)
{
    throttle *th = throttle_get(w, t, job, 0);

    if (th && th->held) {
        discard(w, th->held);
        th->held = NULL;
    }
}

static void stage(void *ud, const jobq_event *ev)
{
    jobq_webhooks *w = ud;
    int final = ev->job && is_final_type(ev->type);

    if (w->closed || !ev->type)
        return;
    for (GList *l = w->hooks.head; l; l = l->next) {
        if (final && w->nthrottle)
            drop_held(w, l->data, ev->job);
        if (matches(l->data, ev))
            offer(w, l->data, ev);
    }
    if (ev->job) {
        jobq_job *j = jobq_engine_job(w->e, ev->job);
        const char *spec = j ? jobq_job_webhook_text(j) : NULL;
        target *t = spec ? job_target(w, ev->job, spec) : NULL;
        if (t && final && w->nthrottle)
            drop_held(w, t, ev->job);
        if (t && matches(t, ev))
            offer(w, t, ev);
        if (t)
            maybe_free_job_target(w, t); /* nothing for it (yet): made again when needed */
    }
}

/* The batch that holds events up to ev->seq is durable: their deliveries may go. */
static void publish(void *ud, const jobq_event *ev)
{
    jobq_webhooks *w = ud;
    GList *l;

    if (w->closed)
        return;
    w->published = (int64_t)ev->seq;
    while ((l = g_queue_peek_head_link(&w->staged)) &&
           ((delivery *)l->data)->seq <= (int64_t)ev->seq) {
        g_queue_unlink(&w->staged, l);
        make_ready(w, l->data);
    }
    pump(w);
}

jobq_event_sink jobq_webhooks_sink(jobq_webhooks *w)
{
    jobq_event_sink s = {stage, publish, w};

    return s;
}

/* ---------------------------------------------------------------- rendering */

static void render_hook(const jobq_webhooks *w, const target *t, GString *o)
{
    json_t *v = json_deep_copy(t->spec);
    char *s;

    (void)w;
    json_object_del(v, "secret");
    json_object_del(v, "token");
    json_object_set_new(v, "has_secret", json_boolean(t->secret != NULL));
    json_object_set_new(v, "has_token", json_boolean(t->token != NULL));
    json_object_set_new(v, "pending", json_integer((json_int_t)t->live.length));
    s = json_dumps(v, JSON_COMPACT);
    g_string_append(o, s);
    free(s);
    json_decref(v);
}

static void render_delivery(const delivery *d, GString *o)
{
    int first = 1, last = d->attempts - 1;

    if (last >= JOBQ_WEBHOOK_ATTEMPTS)
        last = JOBQ_WEBHOOK_ATTEMPTS - 1;
    g_string_append_c(o, '{');
    jobq_jw_kstr(o, &first, "id", d->id);
    jobq_jw_kstr(o, &first, "event", d->type);
    jobq_jw_kint(o, &first, "seq", d->seq);
    jobq_jw_kstr(o, &first, "job", d->job);
    jobq_jw_kstr(o, &first, "status", state_name(d));
    jobq_jw_kint(o, &first, "attempts", d->attempts);
    if (last >= 0) {
        jobq_jw_kint(o, &first, "code", d->log[last].code);
        jobq_jw_kstr(o, &first, "error", d->log[last].error);
        jobq_jw_kts(o, &first, "last_attempt_at", d->log[last].at);
    } else {
        jobq_jw_kraw(o, &first, "code", NULL);
        jobq_jw_kraw(o, &first, "error", NULL);
        jobq_jw_kraw(o, &first, "last_attempt_at", NULL);
    }
    jobq_jw_kint(o, &first, "created_at", d->created_at);
    jobq_jw_kts(o, &first, "next_attempt_at",
                d->state == D_WAITING || d->state == D_HELD ? d->next_at : 0);
    jobq_jw_kts(o, &first, "finished_at", d->finished_at);
    put_log(d, o, &first);
    g_string_append_c(o, '}');
}

int jobq_webhooks_render(const jobq_webhooks *w, const char *id, GString *o)
{
    const target *t = g_hash_table_lookup(w->targets, id);

    if (!t || t->per_job)
        return JOBQ_ENOTFOUND;
    render_hook(w, t, o);
    return 0;
}

void jobq_webhooks_render_all(const jobq_webhooks *w, GString *o)
{
    int first = 1;

    g_string_append(o, "{\"webhooks\":[");
    for (GList *l = w->hooks.head; l; l = l->next) {
        if (l != w->hooks.head)
            g_string_append_c(o, ',');
        render_hook(w, l->data, o);
    }
    g_string_append(o, "],\"outbox\":{");
    jobq_jw_kint(o, &first, "pending", (int64_t)w->outbox);
    jobq_jw_kint(o, &first, "sending", (int64_t)jobq_sender_active(w->sender));
    jobq_jw_kint(o, &first, "delivered", w->delivered);
    jobq_jw_kint(o, &first, "failed", w->failed);
    jobq_jw_kint(o, &first, "dropped", w->dropped);
    jobq_jw_kint(o, &first, "max", (int64_t)w->cfg.max_outbox);
    g_string_append(o, "}}");
}

int jobq_webhooks_render_deliveries(const jobq_webhooks *w, const char *id, size_t limit,
                                    GString *o)
{
    const target *t = g_hash_table_lookup(w->targets, id);
    size_t n = 0;

    if (!t)
        return JOBQ_ENOTFOUND;
    g_string_append(o, "{\"deliveries\":[");
    for (GList *l = t->live.tail; l && n < limit; l = l->prev, n++) {
        if (n)
            g_string_append_c(o, ',');
        render_delivery(l->data, o);
    }
    for (GList *l = t->done.tail; l && n < limit; l = l->prev, n++) {
        if (n)
            g_string_append_c(o, ',');
        render_delivery(l->data, o);
    }
    g_string_append(o, "]}");
    return 0;
}

/* ---------------------------------------------------------------- hooks */

static void hook_put(jobq_webhooks *w, const target *t)
{
    char *s = json_dumps(t->spec, JSON_COMPACT);

    jobq_engine_doc_put(w->e, "webhook", t->id, s);
    free(s);
}

int jobq_webhooks_add(jobq_webhooks *w, const char *spec, int64_t now, GString *o)
{
    json_t *v, *given;
    target *t;
    char *id;

    if (w->hooks.length >= MAX_HOOKS)
        return JOBQ_EFULL;
    given = json_loads(spec, 0, NULL);
    if (!json_is_object(given)) {
        json_decref(given);
        return JOBQ_EINVAL;
    }
    id = g_uuid_string_random();
    v = json_pack("{s:s}", "id", id); /* the id first, as every object of the API */
    json_object_update(v, given);
    json_decref(given);
    json_object_set_new(v, "created_at", json_integer(now));
    t = target_new(id, 0, v);
    g_free(id);
    g_hash_table_insert(w->targets, t->id, t);
    g_queue_push_tail_link(&w->hooks, &t->hlink);
    hook_put(w, t);
    render_hook(w, t, o);
    return 0;
}

int jobq_webhooks_remove(jobq_webhooks *w, const char *id)
{
    target *t = g_hash_table_lookup(w->targets, id);
    GList *l;

    if (!t || t->per_job)
        return JOBQ_ENOTFOUND;
    /* held progress first: the throttle table points at them */
    if (t->throttle) {
        w->nthrottle -= g_hash_table_size(t->throttle);
        g_hash_table_destroy(t->throttle);
        t->throttle = NULL;
    }
    while ((l = g_queue_pop_head_link(&t->live))) {
        delivery *d = l->data;
        w->outbox--;
        switch (d->state) {
        case D_STAGED:
            g_queue_unlink(&w->staged, &d->link);
            break;
        case D_READY:
            g_queue_unlink(&t->ready, &d->link);
            break;
        case D_WAITING:
        case D_HELD:
            timed_remove(d);
            break;
        case D_SENDING:
            d->t = NULL; /* freed when its POST ends */
            g_queue_push_tail_link(&w->orphans, &d->link);
            break;
        }
        if (d->state != D_HELD)
            jobq_engine_doc_delete(w->e, "delivery", d->id);
        if (d->state != D_SENDING)
            delivery_free(d);
    }
    while ((l = g_queue_pop_head_link(&t->done))) {
        delivery *d = l->data;
        jobq_engine_doc_delete(w->e, "delivery", d->id);
        delivery_free(d);
    }
    rr_remove(w, t);
    g_queue_unlink(&w->hooks, &t->hlink);
    g_hash_table_remove(w->targets, t->id);
    jobq_engine_doc_delete(w->e, "webhook", t->id);
    target_free(w, t);
    arm(w);
    return 0;
}

/* ---------------------------------------------------------------- life cycle */

jobq_webhooks *jobq_webhooks_new(uv_loop_t *loop, jobq_engine *e, const jobq_webhooks_config *cfg)
{
    jobq_webhooks *w = g_new0(jobq_webhooks, 1);

    w->loop = loop;
    w->e = e;
    w->cfg = *cfg;
    if (w->cfg.backoff_ms <= 0)
        w->cfg.backoff_ms = 30000;
    if (w->cfg.progress_ms <= 0)
        w->cfg.progress_ms = 30000;
    if (w->cfg.timeout_ms <= 0)
        w->cfg.timeout_ms = 10000;
    if (!w->cfg.max_inflight)
        w->cfg.max_inflight = 32;
    if (!w->cfg.max_per_hook)
        w->cfg.max_per_hook = 4;
    if (!w->cfg.max_outbox)
        w->cfg.max_outbox = 10000;
    w->sender = jobq_sender_new(loop, w->cfg.timeout_ms);
    if (!w->sender) {
        g_free(w);
        return NULL;
    }
    w->targets = g_hash_table_new(g_str_hash, g_str_equal);
    g_queue_init(&w->hooks);
    g_queue_init(&w->staged);
    g_queue_init(&w->rr);
    g_queue_init(&w->job_done);
    g_queue_init(&w->orphans);
    w->timed = g_sequence_new(NULL);
    w->loaded = g_ptr_array_new();
    w->timer_due = INT64_MAX;
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    return w;
}

static int load_hook(jobq_webhooks *w, const char *id, json_t *v)
{
    target *t;

    if (!json_is_object(v) || !sget(v, "url")) {
        fprintf(stderr, "jobqd: webhook %s: unreadable document, ignored\n", id);
        json_decref(v);
        return 0;
    }
    t = target_new(id, 0, v);
    g_hash_table_insert(w->targets, t->id, t);
    g_queue_push_tail_link(&w->hooks, &t->hlink);
    return 0;
}

static int load_delivery(jobq_webhooks *w, const char *id, json_t *v)
{
    delivery *d;
    json_t *log;
    const char *status = sget(v, "status"), *tid = sget(v, "target"), *type = sget(v, "type");
    size_t i;

    if (!json_is_object(v) || !status || !tid || !type) {
        fprintf(stderr, "jobqd: webhook delivery %s: unreadable document, ignored\n", id);
        json_decref(v);
        return 0;
    }
    d = g_new0(delivery, 1);
    d->id = g_strdup(id);
    d->w = w;
    d->tid = g_strdup(tid);
    d->job = g_strdup(sget(v, "job"));
    d->type = g_strdup(type);
    d->seq = iget(v, "seq");
    if (sget(v, "event")) {
        d->body = g_strdup(sget(v, "event"));
        d->body_len = strlen(d->body);
    }
    d->state = !strcmp(status, "pending") ? D_READY : D_DONE;
    d->ok = !strcmp(status, "delivered");
    d->attempts = (int)iget(v, "attempts");
    d->created_at = iget(v, "created_at");
    d->next_at = iget(v, "next_at");
    d->finished_at = iget(v, "finished_at");
    log = json_object_get(v, "log");
    for (i = 0; i < json_array_size(log) && i < JOBQ_WEBHOOK_ATTEMPTS; i++) {
        json_t *a = json_array_get(log, i);
        d->log[i].at = iget(a, "at");
        d->log[i].code = (long)iget(a, "code");
        d->log[i].ms = iget(a, "ms");
        d->log[i].error = g_strdup(sget(a, "error"));
    }
    if (d->attempts > JOBQ_WEBHOOK_ATTEMPTS)
        d->attempts = JOBQ_WEBHOOK_ATTEMPTS;
    d->link.data = d->tlink.data = d->glink.data = d;
    /* a job webhook's delivery brings its target along */
    if (json_is_object(json_object_get(v, "spec")) && !g_hash_table_lookup(w->targets, tid)) {
        target *t = target_new(tid, 1, json_incref(json_object_get(v, "spec")));
        g_hash_table_insert(w->targets, t->id, t);
    }
    if (d->state == D_READY && !d->body)
        d->state = D_DONE; /* nothing to send: keep it as history */
    g_ptr_array_add(w->loaded, d);
    json_decref(v);
    return 0;
}

int jobq_webhooks_load_doc(jobq_webhooks *w, const char *kind, const char *id, const char *body)
{
    int hook = !strcmp(kind, "webhook");

    if (!hook && strcmp(kind, "delivery"))
        return 0;
    if (hook)
        return load_hook(w, id, json_loads(body, 0, NULL));
    return load_delivery(w, id, json_loads(body, 0, NULL));
}

static int64_t loaded_at(const delivery *d)
{
    return d->state == D_DONE ? d->finished_at : d->created_at;
}

static gint loaded_cmp(gconstpointer a, gconstpointer b)
{
    const delivery *d = *(delivery *const *)a, *e = *(delivery *const *)b;
    int64_t x = loaded_at(d), y = loaded_at(e);

    if (x != y)
        return x < y ? -1 : 1;
    return d->seq < e->seq ? -1 : d->seq > e->seq;
}

void jobq_webhooks_start(jobq_webhooks *w, int64_t now)
{
    g_ptr_array_sort(w->loaded, loaded_cmp);
    for (guint i = 0; i < w->loaded->len; i++) {
        delivery *d = w->loaded->pdata[i];
        target *t = g_hash_table_lookup(w->targets, d->tid);
        if (!t) { /* its hook is gone */
            jobq_engine_doc_delete(w->e, "delivery", d->id);
            delivery_free(d);
            continue;
        }
        d->t = t;
        if (d->state == D_DONE) {
            g_queue_push_tail_link(&t->done, &d->link);
            if (t->per_job)
                g_queue_push_tail_link(&w->job_done, &d->glink);
            trim(w, t);
            continue;
        }
        g_queue_push_tail_link(&t->live, &d->tlink);
        w->outbox++;
        if (d->next_at > now) {
            d->state = D_WAITING;
            timed_add(w, d);
        } else {
            make_ready(w, d);
        }
    }
    g_ptr_array_set_size(w->loaded, 0);
    w->started = 1;
    if (w->outbox)
        fprintf(stderr, "jobqd: resuming %zu webhook deliveries\n", w->outbox);
    pump(w);
    arm(w);
}

void jobq_webhooks_stop(jobq_webhooks *w)
{
    if (w)
        w->stopping = 1;
}

void jobq_webhooks_close(jobq_webhooks *w)
{
    if (!w || w->closed)
        return;
    w->closed = 1;
    jobq_sender_close(w->sender);
    w->sender = NULL;
    uv_close((uv_handle_t *)&w->timer, NULL);
}

static void free_target(gpointer p, gpointer ud)
{
    target *t = p;
    jobq_webhooks *w = ud;
    GList *l;

    if (t->throttle) {
        g_hash_table_destroy(t->throttle);
        t->throttle = NULL;
    }
    while ((l = g_queue_pop_head_link(&t->live)))
        delivery_free(l->data); /* those being sent were abandoned with the sender */
    while ((l = g_queue_pop_head_link(&t->done)))
        delivery_free(l->data);
    target_free(w, t);
}

void jobq_webhooks_free(jobq_webhooks *w)
{
    GList *vals, *l;

    if (!w)
        return;
    while ((l = g_queue_pop_head_link(&w->orphans)))
        delivery_free(l->data);
    vals = g_hash_table_get_values(w->targets);
    g_list_foreach(vals, free_target, w);
    g_list_free(vals);
    g_hash_table_destroy(w->targets);
    g_sequence_free(w->timed);
    for (guint i = 0; i < w->loaded->len; i++)
        delivery_free(w->loaded->pdata[i]);
    g_ptr_array_free(w->loaded, TRUE);
    g_free(w);
}
