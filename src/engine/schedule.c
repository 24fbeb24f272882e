/*
 * schedule.c — recurring jobs (schedule.h): definitions, next-fire times, firing, storage.
 *
 * A schedule's definition (name, queue, cron or every_ms, tz, job template, window, limit,
 * overlap, paused) and its state (next and last run, runs, skips) are stored together as
 * one document, rewritten at every change and every fire. Due schedules sit in a GSequence
 * ordered by (next fire, id): the first one is the next due time, and moving one after a
 * fire is O(log n). Every fire computes its next time strictly after `now`, so a tick that
 * comes late (or the first tick after a restart) fires a schedule once, not once per fire
 * it missed.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "engine/internal.h"
#include "engine/schedule.h"
#include "util/cron.h"

#define MIN_EVERY_MS 100
#define MAX_EVERY_MS (INT64_C(366) * 24 * 3600 * 1000 * 10) /* ten years */
#define MAX_TZ 64

struct jobq_sched {
    char id[37];
    char *name;
    char *queue;
    char *cron_text; /* NULL when every_ms */
    jobq_cron cron;
    char *tz_name;            /* NULL: UTC */
    GTimeZone *tz;            /* NULL: UTC */
    int64_t every_ms;         /* 0 when cron */
    json_t *job;              /* the job template (an enqueue item without id/run_at) */
    int64_t start_at, end_at; /* ms since epoch, 0 = none */
    int64_t limit;            /* runs at most, 0 = no limit */
    int overlap;              /* 0: skip a fire while the last run's job is live */
    int paused;
    /* state */
    int64_t next_at;     /* ms since epoch, 0 = none (paused, finished, never) */
    int64_t last_run_at; /* ms since epoch, 0 = never */
    int64_t runs, skipped;
    char *last_job;   /* id of the last job made */
    char *last_error; /* why the last fire made no job, or NULL */
    int64_t created_at, updated_at;
    GSequenceIter *due; /* in ss->due, or NULL */
};

struct jobq_scheds {
    GHashTable *by_id;   /* id → jobq_sched* (owned) */
    GHashTable *by_name; /* name → jobq_sched* */
    GSequence *due;      /* schedules with a next fire, by (next_at, id) */
};

/* ---------------------------------------------------------------- small things */

static void sched_free(gpointer p)
{
    jobq_sched *s = p;

    if (!s)
        return;
    g_free(s->name);
    g_free(s->queue);
    g_free(s->cron_text);
    g_free(s->tz_name);
    if (s->tz)
        g_time_zone_unref(s->tz);
    json_decref(s->job);
    g_free(s->last_job);
    g_free(s->last_error);
    g_free(s);
}

static jobq_scheds *scheds(jobq_engine *e)
{
    if (!e->scheds) {
        e->scheds = g_new0(jobq_scheds, 1);
        e->scheds->by_id = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, sched_free);
        e->scheds->by_name = g_hash_table_new(g_str_hash, g_str_equal);
        e->scheds->due = g_sequence_new(NULL);
    }
    return e->scheds;
}

void jobq_scheds_free(jobq_scheds *ss)
{
    if (!ss)
        return;
    g_sequence_free(ss->due);
    g_hash_table_destroy(ss->by_name);
    g_hash_table_destroy(ss->by_id);
    g_free(ss);
}

static gint due_cmp(gconstpointer a, gconstpointer b, gpointer ud)
{
    const jobq_sched *x = a, *y = b;

    (void)ud;
    if (x->next_at != y->next_at)
        return x->next_at < y->next_at ? -1 : 1;
    return strcmp(x->id, y->id);
}

/* Puts s in the due set at its next_at (or takes it out when it has none). */
static void due_update(jobq_engine *e, jobq_sched *s)
{
    jobq_scheds *ss = scheds(e);

    if (s->due) {
        g_sequence_remove(s->due);
        s->due = NULL;
    }
    if (s->next_at > 0 && !s->paused)
        s->due = g_sequence_insert_sorted(ss->due, s, due_cmp, NULL);
}

static void seterr(jobq_sched_err *err, const char *field, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
static void seterr(jobq_sched_err *err, const char *field, const char *fmt, ...)
{
    va_list ap;

    snprintf(err->field, sizeof err->field, "%s", field);
    va_start(ap, fmt);
    vsnprintf(err->why, sizeof err->why, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- next fire */

/* The first fire strictly after t that the window and the limit allow, or 0. */
static int64_t next_after(const jobq_sched *s, int64_t t)
{
    int64_t n;

    if (s->paused || (s->limit && s->runs >= s->limit))
        return 0;
    if (s->start_at && t < s->start_at - 1)
        t = s->start_at - 1;
    if (s->every_ms) {
        /* every_ms fires at start_at (or creation + every_ms) and every every_ms after */
        int64_t first = s->start_at ? s->start_at : s->created_at + s->every_ms;
        n = t < first ? first : first + ((t - first) / s->every_ms + 1) * s->every_ms;
    } else {
        n = jobq_cron_next(&s->cron, s->tz, t);
        if (n < 0)
            return 0;
    }
    if (s->end_at && n > s->end_at)
        return 0;
    return n;
}

/* ---------------------------------------------------------------- definitions */

static int valid_tz_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > MAX_TZ || strstr(s, "..") || s[0] == '/')
        return 0;
    for (const char *p = s; *p; p++)
        if (!g_ascii_isalnum(*p) && !strchr("_+-/:", *p))
            return 0;
    return 1;
}

static int get_time(const json_t *v, int64_t *out)
{
    if (!v || json_is_null(v)) {
        *out = 0;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > INT64_C(253402300799000))
        return -1;
    *out = json_integer_value(v);
    return 0;
}

/* Parses a definition (a create body, or a stored document when loading) into d, which is
 * zeroed first. A stored zone this system no longer knows is read as UTC (the name is kept)
 * rather than refusing to start; likewise a stored job template is not checked again (a
 * later version may read an option more strictly): a fire that cannot use it says why in
 * last_error. */
static int parse_def(const json_t *body, int64_t now, int loading, jobq_sched *d,
                     jobq_sched_err *err)
{
    static const char *const known[] = {"name",     "queue",  "cron",  "every_ms", "tz",     "job",
                                        "start_at", "end_at", "limit", "overlap",  "paused", NULL};
    const char *key;
    json_t *v;
    char why[200];

    memset(d, 0, sizeof *d);
    d->overlap = 1;
    if (!json_is_object(body)) {
        seterr(err, "body", "must be an object");
        return JOBQ_EINVAL;
    }
    json_object_foreach((json_t *)body, key, v)
    {
        size_t i;
        if (loading && (!strcmp(key, "id") || !strcmp(key, "_state")))
            continue;
        for (i = 0; known[i] && strcmp(known[i], key); i++)
            ;
        if (!known[i]) {
            seterr(err, key,
                   "unknown field (name, queue, cron, every_ms, tz, job, start_at, "
                   "end_at, limit, overlap, paused)");
            return JOBQ_EINVAL;
        }
    }
    v = json_object_get(body, "name");
    if (!json_is_string(v) || !jobq_valid_name(json_string_value(v))) {
        seterr(err, "name", "is required: 1 to 128 characters of A-Z a-z 0-9 . _ -");
        return JOBQ_EINVAL;
    }
    d->name = g_strdup(json_string_value(v));
    v = json_object_get(body, "queue");
    if (!json_is_string(v) || !jobq_valid_name(json_string_value(v))) {
        seterr(err, "queue", "is required: a queue name (1 to 128 of A-Z a-z 0-9 . _ -)");
        return JOBQ_EINVAL;
    }
    d->queue = g_strdup(json_string_value(v));
    v = json_object_get(body, "cron");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) {
            seterr(err, "cron", "must be a cron expression (a string)");
            return JOBQ_EINVAL;
        }
        if (jobq_cron_parse(json_string_value(v), &d->cron, why, sizeof why)) {
            seterr(err, "cron", "%s", why);
            return JOBQ_EINVAL;
        }
        d->cron_text = g_strdup(json_string_value(v));
    }
    v = json_object_get(body, "every_ms");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < MIN_EVERY_MS ||
            json_integer_value(v) > MAX_EVERY_MS) {
            seterr(err, "every_ms", "must be an integer from %d to %" PRId64 " (ms)", MIN_EVERY_MS,
                   MAX_EVERY_MS);
            return JOBQ_EINVAL;
        }
        d->every_ms = json_integer_value(v);
    }
    if (!d->cron_text == !d->every_ms) {
        seterr(err, d->cron_text ? "every_ms" : "cron", "give exactly one of cron and every_ms");
        return JOBQ_EINVAL;
    }
    v = json_object_get(body, "tz");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v) || !valid_tz_name(json_string_value(v))) {
            seterr(err, "tz", "must be an IANA time zone name such as Europe/Berlin");
            return JOBQ_EINVAL;
        }
        if (!d->cron_text) {
            seterr(err, "tz", "applies to cron only (every_ms counts real time)");
            return JOBQ_EINVAL;
        }
        d->tz_name = g_strdup(json_string_value(v));
        d->tz = g_time_zone_new_identifier(d->tz_name);
        if (!d->tz && !loading) {
            seterr(err, "tz", "unknown time zone '%.64s' (an IANA name such as Europe/Berlin)",
                   d->tz_name);
            return JOBQ_EINVAL;
        }
    }
    v = json_object_get(body, "job");
    if (v && !json_is_null(v)) {
        jobq_job_spec spec;
        const char *field = NULL, *fwhy = NULL;
        if (!json_is_object(v)) {
            seterr(err, "job", "must be an object: the enqueue item each fire makes");
            return JOBQ_EINVAL;
        }
        if (json_object_get(v, "id") || json_object_get(v, "run_at")) {
            seterr(err, json_object_get(v, "id") ? "job.id" : "job.run_at",
                   "a schedule makes many jobs: give no fixed id or run_at (delay_ms works)");
            return JOBQ_EINVAL;
        }
        if (!loading && jobq_job_spec_parse(v, now, &spec, &field, &fwhy)) {
            snprintf(err->field, sizeof err->field, "job.%s", field ? field : "?");
            snprintf(err->why, sizeof err->why, "%s", fwhy ? fwhy : "invalid");
            return JOBQ_EINVAL;
        }
        if (!loading)
            jobq_job_spec_clear(&spec);
        d->job = json_deep_copy(v);
    } else {
        d->job = json_object();
    }
    if (get_time(json_object_get(body, "start_at"), &d->start_at)) {
        seterr(err, "start_at", "must be ms since the epoch, or null");
        return JOBQ_EINVAL;
    }
    if (get_time(json_object_get(body, "end_at"), &d->end_at)) {
        seterr(err, "end_at", "must be ms since the epoch, or null");
        return JOBQ_EINVAL;
    }
    if (d->start_at && d->end_at && d->end_at < d->start_at) {
        seterr(err, "end_at", "is before start_at");
        return JOBQ_EINVAL;
    }
    v = json_object_get(body, "limit");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1) {
            seterr(err, "limit", "must be a positive integer (runs), or null");
            return JOBQ_EINVAL;
        }
        d->limit = json_integer_value(v);
    }
    v = json_object_get(body, "overlap");
    if (v) {
        if (!json_is_boolean(v)) {
            seterr(err, "overlap", "must be true or false");
            return JOBQ_EINVAL;
        }
        d->overlap = json_is_true(v);
    }
    v = json_object_get(body, "paused");
    if (v) {
        if (!json_is_boolean(v)) {
            seterr(err, "paused", "must be true or false");
            return JOBQ_EINVAL;
        }
        d->paused = json_is_true(v);
    }
    if (d->cron_text && !loading && jobq_cron_next(&d->cron, d->tz, now) < 0) {
        seterr(err, "cron", "never matches a date in the next %d years", JOBQ_CRON_HORIZON_YEARS);
        return JOBQ_EINVAL;
    }
    return 0;
}

/* Frees what parse_def put in d (d itself is not freed). */
static void def_clear(jobq_sched *d)
{
    g_free(d->name);
    g_free(d->queue);
    g_free(d->cron_text);
    g_free(d->tz_name);
    if (d->tz)
        g_time_zone_unref(d->tz);
    json_decref(d->job);
    memset(d, 0, sizeof *d);
}

/* Moves the definition fields of d into s (d is left empty). */
static void def_move(jobq_sched *s, jobq_sched *d)
{
    jobq_sched tmp = *s;

    s->name = d->name;
    s->queue = d->queue;
    s->cron_text = d->cron_text;
    s->cron = d->cron;
    s->tz_name = d->tz_name;
    s->tz = d->tz;
    s->every_ms = d->every_ms;
    s->job = d->job;
    s->start_at = d->start_at;
    s->end_at = d->end_at;
    s->limit = d->limit;
    s->overlap = d->overlap;
    s->paused = d->paused;
    memset(d, 0, sizeof *d);
    d->name = tmp.name;
    d->queue = tmp.queue;
    d->cron_text = tmp.cron_text;
    d->tz_name = tmp.tz_name;
    d->tz = tmp.tz;
    d->job = tmp.job;
    def_clear(d);
}

/* The definition as JSON (new reference): what create takes and patch merges into. */
static json_t *def_json(const jobq_sched *s)
{
    json_t *o = json_object();

    json_object_set_new(o, "name", json_string(s->name));
    json_object_set_new(o, "queue", json_string(s->queue));
    if (s->cron_text)
        json_object_set_new(o, "cron", json_string(s->cron_text));
    else
        json_object_set_new(o, "every_ms", json_integer(s->every_ms));
    if (s->tz_name)
        json_object_set_new(o, "tz", json_string(s->tz_name));
    json_object_set(o, "job", s->job);
    if (s->start_at)
        json_object_set_new(o, "start_at", json_integer(s->start_at));
    if (s->end_at)
        json_object_set_new(o, "end_at", json_integer(s->end_at));
    if (s->limit)
        json_object_set_new(o, "limit", json_integer(s->limit));
    json_object_set_new(o, "overlap", json_boolean(s->overlap));
    json_object_set_new(o, "paused", json_boolean(s->paused));
    return o;
}

static json_t *time_or_null(int64_t t)
{
    return t ? json_integer(t) : json_null();
}

json_t *jobq_sched_to_json(const jobq_sched *s)
{
    json_t *o = json_object(), *def = def_json(s);

    json_object_set_new(o, "id", json_string(s->id));
    json_object_update(o, def);
    json_decref(def);
    if (!s->tz_name && s->cron_text)
        json_object_set_new(o, "tz", json_string("UTC"));
    json_object_set_new(o, "start_at", time_or_null(s->start_at));
    json_object_set_new(o, "end_at", time_or_null(s->end_at));
    json_object_set_new(o, "limit", s->limit ? json_integer(s->limit) : json_null());
    json_object_set_new(o, "next_run_at", time_or_null(s->next_at));
    json_object_set_new(o, "last_run_at", time_or_null(s->last_run_at));
    json_object_set_new(o, "runs", json_integer(s->runs));
    json_object_set_new(o, "skipped", json_integer(s->skipped));
    json_object_set_new(o, "last_job", s->last_job ? json_string(s->last_job) : json_null());
    json_object_set_new(o, "last_error", s->last_error ? json_string(s->last_error) : json_null());
    json_object_set_new(o, "created_at", json_integer(s->created_at));
    json_object_set_new(o, "updated_at", json_integer(s->updated_at));
    return o;
}

/* Writes s's document into the engine's next batch. */
static void store(jobq_engine *e, const jobq_sched *s)
{
    json_t *o = def_json(s), *st = json_object();
    char *text;

    json_object_set_new(o, "id", json_string(s->id));
    json_object_set_new(st, "next_run_at", json_integer(s->next_at));
    json_object_set_new(st, "last_run_at", json_integer(s->last_run_at));
    json_object_set_new(st, "runs", json_integer(s->runs));
    json_object_set_new(st, "skipped", json_integer(s->skipped));
    if (s->last_job)
        json_object_set_new(st, "last_job", json_string(s->last_job));
    if (s->last_error)
        json_object_set_new(st, "last_error", json_string(s->last_error));
    json_object_set_new(st, "created_at", json_integer(s->created_at));
    json_object_set_new(st, "updated_at", json_integer(s->updated_at));
    json_object_set_new(o, "_state", st);
    text = json_dumps(o, JSON_COMPACT);
    jobq_engine_doc_put(e, "schedule", s->id, text);
    free(text);
    json_decref(o);
}

/* ---------------------------------------------------------------- verbs */

int jobq_sched_create(jobq_engine *e, const json_t *body, int64_t now, jobq_sched **out,
                      jobq_sched_err *err)
{
    jobq_scheds *ss = scheds(e);
    jobq_sched *s = g_new0(jobq_sched, 1);
    int rc = parse_def(body, now, 0, s, err);

    if (rc) {
        sched_free(s);
        return rc;
    }
    if (g_hash_table_lookup(ss->by_name, s->name)) {
        seterr(err, "name", "a schedule with that name exists");
        sched_free(s);
        return JOBQ_EEXIST;
    }
    jobq_make_uuid7(e, now, s->id);
    s->created_at = s->updated_at = now;
    s->next_at = next_after(s, now);
    g_hash_table_insert(ss->by_id, s->id, s);
    g_hash_table_insert(ss->by_name, s->name, s);
    due_update(e, s);
    store(e, s);
    *out = s;
    return 0;
}

int jobq_sched_patch(jobq_engine *e, jobq_sched *s, const json_t *body, int64_t now,
                     jobq_sched_err *err)
{
    jobq_scheds *ss = scheds(e);
    json_t *merged;
    const char *key;
    json_t *v;
    jobq_sched d;
    int rc;

    if (!json_is_object(body)) {
        seterr(err, "body", "must be an object");
        return JOBQ_EINVAL;
    }
    merged = def_json(s);
    json_object_foreach((json_t *)body, key, v)
    {
        if (json_is_null(v))
            json_object_del(merged, key);
        else
            json_object_set(merged, key, v);
        /* cron and every_ms replace each other */
        if (!strcmp(key, "cron") && !json_is_null(v))
            json_object_del(merged, "every_ms");
        if (!strcmp(key, "every_ms") && !json_is_null(v)) {
            json_object_del(merged, "cron");
            json_object_del(merged, "tz");
        }
    }
    rc = parse_def(merged, now, 0, &d, err);
    json_decref(merged);
    if (rc) {
        def_clear(&d);
        return rc;
    }
    if (strcmp(d.name, s->name) && g_hash_table_lookup(ss->by_name, d.name)) {
        seterr(err, "name", "a schedule with that name exists");
        def_clear(&d);
        return JOBQ_EEXIST;
    }
    g_hash_table_remove(ss->by_name, s->name);
    def_move(s, &d);
    g_hash_table_insert(ss->by_name, s->name, s);
    s->updated_at = now;
    s->next_at = next_after(s, now);
    due_update(e, s);
    store(e, s);
    return 0;
}

void jobq_sched_delete(jobq_engine *e, jobq_sched *s, int64_t now)
{
    jobq_scheds *ss = scheds(e);

    (void)now;
    if (s->due)
        g_sequence_remove(s->due);
    s->due = NULL;
    jobq_engine_doc_delete(e, "schedule", s->id);
    g_hash_table_remove(ss->by_name, s->name);
    g_hash_table_remove(ss->by_id, s->id); /* frees s */
}

void jobq_sched_pause(jobq_engine *e, jobq_sched *s, int64_t now)
{
    if (s->paused)
        return;
    s->paused = 1;
    s->next_at = 0;
    s->updated_at = now;
    due_update(e, s);
    store(e, s);
}

void jobq_sched_resume(jobq_engine *e, jobq_sched *s, int64_t now)
{
    if (!s->paused)
        return;
    s->paused = 0;
    s->next_at = next_after(s, now);
    s->updated_at = now;
    due_update(e, s);
    store(e, s);
}

/* Enqueues one job from the template. 0 and *out, or the enqueue's error with last_error. */
static int make_job(jobq_engine *e, jobq_sched *s, int64_t now, jobq_job **out)
{
    jobq_job_spec spec;
    const char *field = NULL, *why = NULL;
    long bad = -1;
    int rc = jobq_job_spec_parse(s->job, now, &spec, &field, &why);

    g_free(s->last_error);
    s->last_error = NULL;
    if (rc) { /* only a template stored by an earlier version can fail here */
        s->last_error = g_strdup_printf("job.%s: %s", field ? field : "?", why ? why : "invalid");
        return rc;
    }
    rc = jobq_engine_enqueue(e, s->queue, &spec, 1, now, out, &bad);
    jobq_job_spec_clear(&spec);
    if (rc) {
        s->last_error = g_strdup_printf("enqueue into %s: %s", s->queue, jobq_strerror(rc));
        return rc;
    }
    g_free(s->last_job);
    s->last_job = g_strdup(jobq_job_id(*out));
    s->runs++;
    s->last_run_at = now;
    return 0;
}

/* The job the last fire made is still queued or running. */
static int last_live(const jobq_engine *e, const jobq_sched *s)
{
    jobq_job *j = s->last_job ? jobq_engine_job(e, s->last_job) : NULL;

    return j && !jobq_state_final(jobq_job_state(j));
}

/* A due fire: a job (or a skip while the last run is live), then the next fire time; the
 * document rides in the same batch as the job. */
static void fire(jobq_engine *e, jobq_sched *s, int64_t now)
{
    jobq_job *j = NULL;

    if (!s->overlap && last_live(e, s)) {
        s->skipped++;
    } else if (make_job(e, s, now, &j)) {
        s->skipped++;
    }
    s->updated_at = now;
    s->next_at = next_after(s, now);
    due_update(e, s);
    store(e, s);
}

int jobq_sched_trigger(jobq_engine *e, jobq_sched *s, int64_t now, jobq_job **out)
{
    char *old_error = g_strdup(s->last_error);
    int rc = make_job(e, s, now, out);

    if (rc) { /* a refused trigger leaves no trace */
        g_free(s->last_error);
        s->last_error = old_error;
        return rc;
    }
    g_free(old_error);
    s->updated_at = now;
    if (s->limit && s->runs >= s->limit) {
        s->next_at = 0;
        due_update(e, s);
    }
    store(e, s);
    return 0;
}

void jobq_scheds_tick(jobq_engine *e, int64_t now)
{
    GSequenceIter *it;

    if (!e->scheds)
        return;
    /* each fire moves its schedule past now, so this ends */
    while (!g_sequence_iter_is_end(it = g_sequence_get_begin_iter(e->scheds->due))) {
        jobq_sched *s = g_sequence_get(it);
        if (s->next_at > now)
            break;
        fire(e, s, now);
    }
}

int64_t jobq_scheds_next(const jobq_engine *e)
{
    GSequenceIter *it;

    if (!e->scheds)
        return INT64_MAX;
    it = g_sequence_get_begin_iter(e->scheds->due);
    return g_sequence_iter_is_end(it) ? INT64_MAX : ((jobq_sched *)g_sequence_get(it))->next_at;
}

/* ---------------------------------------------------------------- loading */

static int64_t st_int(const json_t *st, const char *k)
{
    json_t *v = json_object_get(st, k);

    return json_is_integer(v) ? json_integer_value(v) : 0;
}

int jobq_scheds_load(jobq_engine *e, const char *id, const char *body)
{
    jobq_scheds *ss = scheds(e);
    json_t *o = json_loads(body, 0, NULL), *st;
    jobq_sched *s = g_new0(jobq_sched, 1);
    jobq_sched_err err;
    const char *str;

    if (!o || strlen(id) >= sizeof s->id || parse_def(o, 0, 1, s, &err)) {
        json_decref(o);
        sched_free(s);
        return JOBQ_ECORRUPT;
    }
    snprintf(s->id, sizeof s->id, "%s", id);
    st = json_object_get(o, "_state");
    s->next_at = st_int(st, "next_run_at");
    s->last_run_at = st_int(st, "last_run_at");
    s->runs = st_int(st, "runs");
    s->skipped = st_int(st, "skipped");
    s->created_at = st_int(st, "created_at");
    s->updated_at = st_int(st, "updated_at");
    if ((str = json_string_value(json_object_get(st, "last_job"))))
        s->last_job = g_strdup(str);
    if ((str = json_string_value(json_object_get(st, "last_error"))))
        s->last_error = g_strdup(str);
    json_decref(o);
    g_hash_table_replace(ss->by_id, s->id, s);
    g_hash_table_replace(ss->by_name, s->name, s);
    /* a next fire that passed while the server was down is due at the first tick: it runs
     * once, and the fire after it is computed from then */
    due_update(e, s);
    return 0;
}

/* ---------------------------------------------------------------- read-outs */

jobq_sched *jobq_engine_sched(const jobq_engine *e, const char *id_or_name)
{
    jobq_sched *s;

    if (!e->scheds || !id_or_name)
        return NULL;
    s = g_hash_table_lookup(e->scheds->by_id, id_or_name);
    return s ? s : g_hash_table_lookup(e->scheds->by_name, id_or_name);
}

static gint name_cmp(gconstpointer a, gconstpointer b)
{
    const jobq_sched *x = *(jobq_sched *const *)a, *y = *(jobq_sched *const *)b;

    return strcmp(x->name, y->name);
}

void jobq_engine_sched_each(const jobq_engine *e, int (*fn)(void *ud, jobq_sched *s), void *ud)
{
    GPtrArray *all;
    GHashTableIter it;
    gpointer k, v;

    if (!e->scheds)
        return;
    all = g_ptr_array_new();
    g_hash_table_iter_init(&it, e->scheds->by_id);
    while (g_hash_table_iter_next(&it, &k, &v))
        g_ptr_array_add(all, v);
    g_ptr_array_sort(all, name_cmp);
    for (guint i = 0; i < all->len; i++)
        if (fn(ud, g_ptr_array_index(all, i)))
            break;
    g_ptr_array_free(all, TRUE);
}

size_t jobq_engine_sched_total(const jobq_engine *e)
{
    return e->scheds ? g_hash_table_size(e->scheds->by_id) : 0;
}

const char *jobq_sched_id(const jobq_sched *s)
{
    return s->id;
}

const char *jobq_sched_name(const jobq_sched *s)
{
    return s->name;
}

const char *jobq_sched_queue(const jobq_sched *s)
{
    return s->queue;
}

int64_t jobq_sched_next_run(const jobq_sched *s)
{
    return s->next_at;
}

int64_t jobq_sched_runs(const jobq_sched *s)
{
    return s->runs;
}
