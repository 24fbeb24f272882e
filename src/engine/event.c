/*
 * event.c — the engine's changes as events (docs/events.md).
 *
 * The engine announces each state change the moment it makes it: it numbers the event
 * (e->event_seq, server-wide, never reused), renders its JSON object once into a scratch
 * buffer, and hands it to the `event` hook in the same call. What happens to it then (held
 * until its batch is durable, published to subscribers, staged into a webhook outbox) is the
 * caller's business: the engine only makes sure the event rides in a batch (has_changes says
 * so while one is untaken) and that the numbering survives a restart: seqs are reserved in
 * blocks, and the end of the current block is written to the store's meta ("event_seq") in
 * the batch of the event that opened it, so a restarted engine starts past every seq a
 * durable batch can hold, at one meta write per EVENT_SEQ_BLOCK events.
 *
 * Rendering is on the hot path (two or three events per job): a handful of appends into a
 * buffer that is reused, no allocation once it has grown.
 *
 * What it never does: keep events, or decide who receives them.
 */
#include <inttypes.h>
#include <string.h>

#include "engine/internal.h"
#include "util/jsonw.h"

#define EVENT_SEQ_BLOCK 65536
#define EVENT_RESULT_MAX 4096 /* a larger result is left out of job.completed */

/* Appends "key":"s", s escaped as JSON needs. */
static void put_kstr(GString *o, const char *key, size_t klen, const char *s)
{
    jobq_jw_put(o, key, klen);
    jobq_jw_str(o, s);
}

/* Appends "key":"s" for s that needs no escaping: queue names, job ids and event types
 * (names are checked against [A-Za-z0-9._:-] when made; types are the code's own). */
static void put_kplain(GString *o, const char *key, size_t klen, const char *s)
{
    jobq_jw_put(o, key, klen);
    jobq_jw_put(o, "\"", 1);
    jobq_jw_put(o, s, strlen(s));
    jobq_jw_put(o, "\"", 1);
}

/* Appends `at` in decimal; the events of one call share it, so its text is kept. */
static void put_at(jobq_engine *e, GString *o, int64_t at)
{
    if (at != e->ev_at || !e->ev_at_len) {
        char *p = e->ev_at_text + sizeof e->ev_at_text;
        uint64_t u = at < 0 ? 0 : (uint64_t)at;

        do {
            *--p = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        e->ev_at_len = (size_t)(e->ev_at_text + sizeof e->ev_at_text - p);
        memmove(e->ev_at_text, p, e->ev_at_len);
        e->ev_at = at;
    }
    jobq_jw_put(o, e->ev_at_text, e->ev_at_len);
}

/* Opens the event object: {"seq":…,"type":…,"at":…[,"queue"][,"job"][,"project"][,"group"]. */
static uint64_t begin(jobq_engine *e, GString *o, const char *type, int64_t at, const char *queue,
                      const char *job, const char *project, const char *group, int plain)
{
    uint64_t seq = e->event_seq++;

    if (seq >= e->event_seq_reserved) {
        e->event_seq_reserved = seq + EVENT_SEQ_BLOCK;
        e->event_mark_due = 1;
    }
    e->events_untaken++;
    g_string_truncate(o, 0);
    jobq_jw_put(o, "{\"seq\":", 7);
    jobq_jw_int(o, (int64_t)seq);
    (plain ? put_kplain : put_kstr)(o, ",\"type\":", 8, type);
    jobq_jw_put(o, ",\"at\":", 6);
    put_at(e, o, at);
    if (queue)
        (plain ? put_kplain : put_kstr)(o, ",\"queue\":", 9, queue);
    if (job)
        (plain ? put_kplain : put_kstr)(o, ",\"job\":", 7, job);
    if (project)
        put_kstr(o, ",\"project\":", 11, project);
    if (group)
        put_kstr(o, ",\"group\":", 9, group);
    return seq;
}

static void deliver(jobq_engine *e, GString *o, uint64_t seq, const char *type, int64_t at,
                    const char *queue, const char *job, const char *project, const char *group)
{
    jobq_event ev = {.seq = seq,
                     .type = type,
                     .at = at,
                     .queue = queue,
                     .job = job,
                     .project = project,
                     .group = group,
                     .json = o->str,
                     .json_len = o->len};

    e->hooks.event(e->hooks.ud, &ev);
}

int jobq_engine_events_on(const jobq_engine *e)
{
    return e->hooks.event && !e->loading;
}

void jobq_engine_emit(jobq_engine *e, const char *type, int64_t now, const char *queue,
                      const char *job, const char *project, const char *group, const char *fields)
{
    GString *o;
    uint64_t seq;

    if (!jobq_engine_events_on(e))
        return;
    o = e->ev_buf;
    seq = begin(e, o, type, now, queue, job, project, group, 0);
    if (fields && *fields) {
        g_string_append_c(o, ',');
        g_string_append(o, fields);
    }
    g_string_append_c(o, '}');
    deliver(e, o, seq, type, now, queue, job, project, group);
}

void jobq_engine_emit_job(jobq_engine *e, jobq_job *j, const char *type, int64_t now,
                          const char *fields)
{
    const jobq_job_extra *x = j->x;
    const char *project = x ? x->project : NULL, *group = x ? x->group : NULL;
    GString *o;
    uint64_t seq;
    const char *st;

    if (!jobq_engine_events_on(e))
        return;
    o = e->ev_buf;
    /* a job's queue name and id were checked when made; its event types are literals */
    seq = begin(e, o, type, now, j->q->name, JOB_ID(j), project, group, 1);
    st = jobq_state_name(j->state);
    jobq_jw_put(o, ",\"state\":\"", 10);
    jobq_jw_put(o, st, strlen(st));
    jobq_jw_put(o, "\",\"attempt\":", 12);
    jobq_jw_int(o, j->state == JOBQ_ACTIVE ? j->attempt + 1 : j->attempt);
    if (fields && *fields) {
        g_string_append_c(o, ',');
        g_string_append(o, fields);
    }
    g_string_append_c(o, '}');
    deliver(e, o, seq, type, now, j->q->name, JOB_ID(j), project, group);
}

/* The event a job's move from `from` to its current state announces, with the fields that
 * go with it. Called by jobq_set_state and by enqueue (from = -1). */
void jobq_event_state(jobq_engine *e, jobq_job *j, int from, int64_t now)
{
    const jobq_job_extra *x = j->x;
    GString *f;
    const char *type;

    if (!jobq_engine_events_on(e))
        return;
    f = e->ev_fields;
    g_string_truncate(f, 0);
    switch (j->state) {
    case JOBQ_WAITING:
    case JOBQ_SCHEDULED:
        if (from < 0) {
            type = "job.created";
            if (j->state == JOBQ_SCHEDULED) {
                jobq_jw_put(f, "\"run_at\":", 9);
                jobq_jw_int(f, j->run_at);
            }
        } else if (from == JOBQ_ACTIVE && e->ev_retry) {
            type = "job.retrying"; /* failed, retried at once */
            jobq_jw_put(f, "\"run_at\":", 9);
            jobq_jw_int(f, now);
            if (x && x->error) {
                jobq_jw_put(f, ",\"error\":", 9);
                g_string_append(f, x->error);
            }
        } else if (from == JOBQ_ACTIVE && e->ev_release) {
            type = "job.released";
        } else if (from == JOBQ_ACTIVE) {
            type = "job.stalled";
            jobq_jw_put(f, "\"stalls\":", 9);
            jobq_jw_int(f, j->stalls);
        } else if (jobq_state_final(from)) {
            type = "job.retrying"; /* retried by hand */
        } else {
            return; /* a delay ran out, or a run_at was moved: nothing to announce */
        }
        break;
    case JOBQ_ACTIVE:
        type = "job.started";
        if (x && x->worker)
            put_kstr(f, "\"worker\":", 9, x->worker);
        break;
    case JOBQ_RETRYING:
        type = "job.retrying";
        jobq_jw_put(f, "\"run_at\":", 9);
        jobq_jw_int(f, j->run_at);
        if (x && x->error) {
            jobq_jw_put(f, ",\"error\":", 9);
            g_string_append(f, x->error);
        }
        break;
    case JOBQ_COMPLETED:
        type = "job.completed";
        if (x && x->result) {
            size_t n = strlen(x->result);
            if (n <= EVENT_RESULT_MAX) {
                jobq_jw_put(f, "\"result\":", 9);
                jobq_jw_put(f, x->result, n);
            } else {
                jobq_jw_put(f, "\"result_truncated\":true", 23);
            }
        }
        break;
    case JOBQ_FAILED:
        type = "job.failed";
        if (x && x->error) {
            jobq_jw_put(f, "\"error\":", 8);
            g_string_append(f, x->error);
        }
        break;
    case JOBQ_CANCELLED:
        type = "job.cancelled";
        break;
    default:
        return; /* blocked, review: announced by the features that own them */
    }
    jobq_engine_emit_job(e, j, type, now, f->str);
}

void jobq_event_progress(jobq_engine *e, jobq_job *j, int64_t now)
{
    GString *f;

    if (!jobq_engine_events_on(e) || !j->x || !j->x->progress)
        return;
    f = e->ev_fields;
    g_string_truncate(f, 0);
    jobq_jw_put(f, "\"progress\":", 11);
    g_string_append(f, j->x->progress);
    jobq_engine_emit_job(e, j, "job.progress", now, f->str);
}

void jobq_event_queue(jobq_engine *e, jobq_queue *q, const char *type, int64_t now)
{
    char f[48];

    snprintf(f, sizeof f, "\"status\":\"%s\"", jobq_qstatus_name(q->status));
    jobq_engine_emit(e, type, now, q->name, NULL, NULL, NULL, f);
}

/* The reservation mark, when the current block was opened since the last batch. */
void jobq_event_take(jobq_engine *e, jobq_batch *b)
{
    e->events_untaken = 0;
    if (e->event_mark_due) {
        jobq_rec *r = jobq_batch_add(b, JOBQ_REC_META_PUT);
        r->u.meta.key = g_strdup("event_seq");
        r->u.meta.value = g_strdup_printf("%" PRIu64, e->event_seq_reserved);
        e->event_mark_due = 0;
    }
}

void jobq_event_load_mark(jobq_engine *e, const char *value)
{
    uint64_t n = g_ascii_strtoull(value, NULL, 10);

    if (n > e->event_seq) {
        e->event_seq = n;
        e->event_seq_reserved = n; /* the first event opens a new block */
    }
}

uint64_t jobq_engine_event_seq(const jobq_engine *e)
{
    return e->event_seq;
}
