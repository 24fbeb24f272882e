/*
 * schedules.c — /v1/schedules…: recurring jobs (src/engine/schedule.h, docs/schedules.md).
 *
 * `{id}` in a path is the schedule's id or its name. Changes answer once durable; a
 * trigger answers with the job it made, like an enqueue.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "engine/schedule.h"

static GString *sched_text(const jobq_sched *s)
{
    json_t *j = jobq_sched_to_json(s);
    char *t = json_dumps(j, JSON_COMPACT);
    GString *o = g_string_new(t);

    free(t);
    json_decref(j);
    return o;
}

static jobq_sched *find(jobq_app *a, jobq_req *rq)
{
    const char *id = jobq_req_param(rq, 0);
    jobq_sched *s = jobq_engine_sched(jobq_app_engine(a), id);

    if (!s)
        jobq_api_not_found(rq, "schedule", id);
    return s;
}

static void refuse(jobq_req *rq, int rc, const jobq_sched_err *err)
{
    if (rc == JOBQ_EINVAL)
        jobq_api_bad_field(rq, err->field, err->why);
    else
        jobq_api_fail(rq, rc, rc == JOBQ_EEXIST ? "a schedule with that name exists" : NULL);
}

void jobq_h_schedule_create(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_sched_err err;
    jobq_sched *s;
    json_t *body;
    int rc;

    if (!jobq_app_writable(a, rq))
        return;
    body = jobq_api_body(rq, 1);
    if (!body)
        return;
    rc = jobq_sched_create(jobq_app_engine(a), body, jobq_app_now(), &s, &err);
    json_decref(body);
    if (rc) {
        refuse(rq, rc, &err);
        return;
    }
    jobq_api_reply_durable(a, rq, 201, sched_text(s));
}

typedef struct slist {
    const char *queue;
    json_t *out;
} slist;

static int list_one(void *ud, jobq_sched *s)
{
    slist *l = ud;

    if (!l->queue || strcmp(l->queue, jobq_sched_queue(s)) == 0)
        json_array_append_new(l->out, jobq_sched_to_json(s));
    return 0;
}

void jobq_h_schedules_list(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    slist l = {jobq_req_query(rq, "queue"), json_array()};

    jobq_engine_sched_each(jobq_app_engine(a), list_one, &l);
    jobq_api_json(rq, 200, json_pack("{s:o}", "schedules", l.out));
}

void jobq_h_schedule_get(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_sched *s = find(a, rq);

    if (s)
        jobq_api_gstring(rq, 200, sched_text(s));
}

void jobq_h_schedule_patch(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_sched_err err;
    jobq_sched *s;
    json_t *body;
    int rc;

    if (!jobq_app_writable(a, rq) || !(s = find(a, rq)))
        return;
    body = jobq_api_body(rq, 1);
    if (!body)
        return;
    rc = jobq_sched_patch(jobq_app_engine(a), s, body, jobq_app_now(), &err);
    json_decref(body);
    if (rc) {
        refuse(rq, rc, &err);
        return;
    }
    jobq_api_reply_durable(a, rq, 200, sched_text(s));
}

void jobq_h_schedule_delete(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_sched *s;

    if (!jobq_app_writable(a, rq) || !(s = find(a, rq)))
        return;
    jobq_sched_delete(jobq_app_engine(a), s, jobq_app_now());
    jobq_api_reply_durable(a, rq, 204, NULL);
}

static void pause_verb(jobq_req *rq, void (*fn)(jobq_engine *, jobq_sched *, int64_t))
{
    jobq_app *a = jobq_req_app(rq);
    jobq_sched *s;

    if (!jobq_app_writable(a, rq) || !(s = find(a, rq)))
        return;
    fn(jobq_app_engine(a), s, jobq_app_now());
    jobq_api_reply_durable(a, rq, 200, sched_text(s));
}

void jobq_h_schedule_pause(jobq_req *rq)
{
    pause_verb(rq, jobq_sched_pause);
}

void jobq_h_schedule_resume(jobq_req *rq)
{
    pause_verb(rq, jobq_sched_resume);
}

/* After the commit: the job as it is now (a worker may already hold it). */
static void finish_trigger(jobq_app *a, jobq_req *rq)
{
    jobq_job *j = jobq_engine_job(jobq_app_engine(a), jobq_req_data(rq));

    if (j)
        jobq_api_job(a, rq, 201, j, 0);
    else
        jobq_req_error(rq, 404, "not_found", "the job was deleted before its commit", NULL);
}

void jobq_h_schedule_trigger(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_sched *s;
    jobq_job *j = NULL;
    int rc;

    if (!jobq_app_writable(a, rq) || !(s = find(a, rq)))
        return;
    rc = jobq_sched_trigger(jobq_app_engine(a), s, jobq_app_now(), &j);
    if (rc) {
        jobq_api_fail(rq, rc, NULL);
        return;
    }
    jobq_req_set_data(rq, g_strdup(jobq_job_id(j)), g_free);
    jobq_app_after_commit(a, rq, finish_trigger);
}
