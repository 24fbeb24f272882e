/*
 * schedule.h — recurring jobs: a job template fired by a cron expression or every N ms.
 *
 * A schedule lives in the engine with its own next-fire time. The schedules' due times are
 * kept in a small ordered set of their own (the job timer heap holds jobs only);
 * jobq_engine_tick fires what is due and jobq_engine_next_timer takes the earlier of both.
 * A fire enqueues one job through jobq_engine_enqueue, and the schedule's updated state
 * (runs, last run, next run) is written as a document (kind "schedule") into the same batch
 * as that job, so a crash keeps both or neither. Schedules are loaded back with the store's
 * documents; one whose next fire passed while the server was down fires once at the first
 * tick, and its next fire is then computed from that moment, so a long downtime costs one
 * run, not one per missed fire. Semantics for users: docs/schedules.md.
 *
 * Like the rest of the engine it reads no clock: every call takes `now`. The one outside
 * read is the system's time-zone database (through GLib), when a schedule with a `tz` is
 * made or loaded.
 */
#ifndef JOBQ_ENGINE_SCHEDULE_H
#define JOBQ_ENGINE_SCHEDULE_H

#include "engine/engine.h"

typedef struct jobq_sched jobq_sched;
typedef struct jobq_scheds jobq_scheds; /* the engine's set of schedules */

/* Why a definition was refused: the offending field ("cron", "tz", "job.priority", …) and
 * what is wrong with it. */
typedef struct jobq_sched_err {
    char field[64];
    char why[256];
} jobq_sched_err;

/* Creates a schedule from a create body (docs/api.md "Schedules"). JOBQ_EINVAL with *err
 * filled, JOBQ_EEXIST when the name is taken. *out is borrowed from the engine. */
int jobq_sched_create(jobq_engine *e, const json_t *body, int64_t now, jobq_sched **out,
                      jobq_sched_err *err);
/* Changes the fields the body names (null clears start_at, end_at, limit, tz). The next fire
 * is computed again from now. Errors as for create; on error nothing changed. */
int jobq_sched_patch(jobq_engine *e, jobq_sched *s, const json_t *body, int64_t now,
                     jobq_sched_err *err);
/* Removes s (s is freed). */
void jobq_sched_delete(jobq_engine *e, jobq_sched *s, int64_t now);
/* Pause: no fires until resumed, next_run_at null. Resume: the next fire after now (fires
 * missed while paused are not made up). Both are no-ops when already so. */
void jobq_sched_pause(jobq_engine *e, jobq_sched *s, int64_t now);
void jobq_sched_resume(jobq_engine *e, jobq_sched *s, int64_t now);
/* Fires s now, whatever its pause, window, limit or overlap: enqueues one job (*out,
 * borrowed) and counts it as a run. The next scheduled fire does not move. Errors are
 * jobq_engine_enqueue's (the queue is draining, full, …); then nothing changed. */
int jobq_sched_trigger(jobq_engine *e, jobq_sched *s, int64_t now, jobq_job **out);

/* By id or name, or NULL. */
jobq_sched *jobq_engine_sched(const jobq_engine *e, const char *id_or_name);
/* Calls fn for every schedule in name order; stops when fn returns non-zero. */
void jobq_engine_sched_each(const jobq_engine *e, int (*fn)(void *ud, jobq_sched *s), void *ud);
size_t jobq_engine_sched_total(const jobq_engine *e);

const char *jobq_sched_id(const jobq_sched *s);
const char *jobq_sched_name(const jobq_sched *s);
const char *jobq_sched_queue(const jobq_sched *s);
int64_t jobq_sched_next_run(const jobq_sched *s); /* ms since epoch, 0 = none */
int64_t jobq_sched_runs(const jobq_sched *s);
/* The schedule as the API's object (new reference). */
json_t *jobq_sched_to_json(const jobq_sched *s);

/* ---- for the engine's own files (engine.c, queue.c) */
void jobq_scheds_free(jobq_scheds *ss); /* takes NULL */
/* Fires every schedule due at now. */
void jobq_scheds_tick(jobq_engine *e, int64_t now);
/* The earliest due time, INT64_MAX when none. */
int64_t jobq_scheds_next(const jobq_engine *e);
/* Loading: one stored "schedule" document. */
int jobq_scheds_load(jobq_engine *e, const char *id, const char *body);

#endif
