/*
 * test_schedule.c — recurring jobs in the engine (src/engine/schedule.c) on a simulated
 * clock: a week of cron fires across both DST changes in two zones, every_ms, the start/end
 * window and limit, missed fires after downtime (one run), overlap skips, pause/resume,
 * trigger, patch, the fire's job and document in one batch, and definitions refused with
 * the field named.
 */
#include "helpers.h"

#include "engine/schedule.h"

static int64_t at(const char *iso)
{
    GDateTime *d = g_date_time_new_from_iso8601(iso, NULL);
    int64_t t;

    cr_assert_not_null(d, "bad ISO time %s", iso);
    t = g_date_time_to_unix(d) * 1000;
    g_date_time_unref(d);
    return t;
}

static jobq_sched *mksched(jobq_engine *e, const char *json, int64_t now)
{
    json_error_t jerr;
    json_t *o = json_loads(json, 0, &jerr);
    jobq_sched_err err = {{0}, {0}};
    jobq_sched *s = NULL;
    int rc;

    cr_assert_not_null(o, "bad test JSON %s: %s", json, jerr.text);
    rc = jobq_sched_create(e, o, now, &s, &err);
    json_decref(o);
    cr_assert_eq(rc, 0, "create(%s) = %d: %s: %s", json, rc, err.field, err.why);
    return s;
}

/* Create must fail with JOBQ_EINVAL naming `field`. */
static void refused(jobq_engine *e, const char *json, const char *field)
{
    json_t *o = json_loads(json, 0, NULL);
    jobq_sched_err err = {{0}, {0}};
    jobq_sched *s = NULL;
    int rc;

    cr_assert_not_null(o);
    rc = jobq_sched_create(e, o, T0, &s, &err);
    json_decref(o);
    cr_assert_eq(rc, JOBQ_EINVAL, "create(%s) = %d, want EINVAL", json, rc);
    cr_assert_str_eq(err.field, field, "create(%s) named %s (%s), want %s", json, err.field,
                     err.why, field);
}

/* Runs the engine's timers until `until` (each due time one loop turn with a commit) and
 * records the times s made a run at. Returns how many runs it saw. */
static size_t run_until(jobq_engine *e, simstore *st, jobq_sched *s, int64_t until, int64_t *fires,
                        size_t max)
{
    size_t n = 0;
    int64_t t;

    while ((t = jobq_engine_next_timer(e)) <= until) {
        int64_t before = jobq_sched_runs(s);
        jobq_engine_tick(e, t);
        if (jobq_sched_runs(s) > before) {
            cr_assert_lt(n, max, "more fires than expected");
            fires[n++] = t;
        }
        if (st)
            commit_to(e, st, t);
        else
            commit(e, t);
    }
    return n;
}

static void expect_week(const char *zone, const char *cron, const char *from,
                        const char *const *want, size_t nwant)
{
    jobq_engine *e = eng_new(NULL, 1);
    char json[256];
    int64_t fires[16];
    jobq_sched *s;
    size_t n;

    snprintf(json, sizeof json, "{\"name\":\"n\",\"queue\":\"q\",\"cron\":\"%s\",\"tz\":\"%s\"}",
             cron, zone);
    s = mksched(e, json, at(from));
    n = run_until(e, NULL, s, at(from) + INT64_C(7) * 86400000 - 1, fires, 16);
    cr_assert_eq(n, nwant, "%s in %s: %zu fires in the week, want %zu", cron, zone, n, nwant);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(fires[i], at(want[i]), "%s in %s: fire %zu at %" PRId64 ", want %s", cron,
                     zone, i, fires[i], want[i]);
    cr_assert_eq(jobq_queue_count(jobq_engine_queue(e, "q"), JOBQ_WAITING), (int64_t)nwant);
    jobq_engine_free(e);
}

Test(schedule, week_across_dst_new_york)
{
    static const char *const spring[] = {
        "2026-03-05T07:30:00Z", "2026-03-06T07:30:00Z", "2026-03-07T07:30:00Z",
        "2026-03-08T07:00:00Z", /* 02:30 does not exist: 03:00 EDT */
        "2026-03-09T06:30:00Z", "2026-03-10T06:30:00Z", "2026-03-11T06:30:00Z"};
    static const char *const fall[] = {
        "2026-10-29T05:30:00Z", "2026-10-30T05:30:00Z", "2026-10-31T05:30:00Z",
        "2026-11-01T05:30:00Z", /* 01:30 EDT; the 01:30 EST an hour later does not fire */
        "2026-11-02T06:30:00Z", "2026-11-03T06:30:00Z", "2026-11-04T06:30:00Z"};

    expect_week("America/New_York", "30 2 * * *", "2026-03-05T00:00:00Z", spring, 7);
    expect_week("America/New_York", "30 1 * * *", "2026-10-29T00:00:00Z", fall, 7);
}

Test(schedule, week_across_dst_berlin)
{
    static const char *const spring[] = {
        "2026-03-26T01:30:00Z", "2026-03-27T01:30:00Z", "2026-03-28T01:30:00Z",
        "2026-03-29T01:00:00Z", /* 03:00 CEST */
        "2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z", "2026-04-01T00:30:00Z"};
    static const char *const fall[] = {
        "2026-10-22T00:30:00Z", "2026-10-23T00:30:00Z", "2026-10-24T00:30:00Z",
        "2026-10-25T00:30:00Z", /* 02:30 CEST only */
        "2026-10-26T01:30:00Z", "2026-10-27T01:30:00Z", "2026-10-28T01:30:00Z"};

    expect_week("Europe/Berlin", "30 2 * * *", "2026-03-26T00:00:00Z", spring, 7);
    expect_week("Europe/Berlin", "30 2 * * *", "2026-10-22T00:00:00Z", fall, 7);
}

Test(schedule, weekday_names_and_macro_through_a_week)
{
    static const char *const weekdays[] = {"2026-03-02T09:00:00Z", "2026-03-03T09:00:00Z",
                                           "2026-03-04T09:00:00Z", "2026-03-05T09:00:00Z",
                                           "2026-03-06T09:00:00Z"};
    static const char *const daily[] = {"2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z",
                                        "2026-03-04T00:00:00Z", "2026-03-05T00:00:00Z",
                                        "2026-03-06T00:00:00Z", "2026-03-07T00:00:00Z",
                                        "2026-03-08T00:00:00Z"};

    expect_week("UTC", "0 9 * * MON-fri", "2026-03-01T12:00:00Z", weekdays, 5);
    expect_week("UTC", "@daily", "2026-03-01T12:00:00Z", daily, 7);
}

Test(schedule, every_ms_window_and_limit)
{
    jobq_engine *e = eng_new(NULL, 2);
    int64_t fires[16];
    jobq_sched *a, *b, *c;
    size_t n;

    /* no start_at: the first fire is one interval after creation */
    a = mksched(e, "{\"name\":\"a\",\"queue\":\"q\",\"every_ms\":1000}", T0);
    cr_assert_eq(jobq_sched_next_run(a), T0 + 1000);
    n = run_until(e, NULL, a, T0 + 3500, fires, 16);
    cr_assert_eq(n, 3);
    cr_assert_eq(fires[0], T0 + 1000);
    cr_assert_eq(fires[2], T0 + 3000);
    jobq_sched_delete(e, a, T0 + 3500);

    /* start_at fires at start_at; end_at stops; limit stops */
    b = mksched(e,
                "{\"name\":\"b\",\"queue\":\"q\",\"every_ms\":1000,\"start_at\":1700000010000,"
                "\"end_at\":1700000013000}",
                T0);
    n = run_until(e, NULL, b, T0 + 60000, fires, 16);
    cr_assert_eq(n, 4);
    cr_assert_eq(fires[0], T0 + 10000);
    cr_assert_eq(fires[3], T0 + 13000);
    cr_assert_eq(jobq_sched_next_run(b), 0);
    c = mksched(e, "{\"name\":\"c\",\"queue\":\"q\",\"every_ms\":500,\"limit\":3}", T0 + 60000);
    n = run_until(e, NULL, c, T0 + 120000, fires, 16);
    cr_assert_eq(n, 3);
    cr_assert_eq(jobq_sched_runs(c), 3);
    cr_assert_eq(jobq_sched_next_run(c), 0);
    cr_assert_eq(jobq_engine_next_timer(e), INT64_MAX);
    jobq_engine_free(e);
}

Test(schedule, cron_start_at_and_seconds)
{
    jobq_engine *e = eng_new(NULL, 3);
    int64_t fires[16];
    jobq_sched *s = mksched(e,
                            "{\"name\":\"s\",\"queue\":\"q\",\"cron\":\"*/15 * * * * *\","
                            "\"start_at\":1700000100000,\"limit\":4}",
                            T0);
    size_t n = run_until(e, NULL, s, T0 + 3600000, fires, 16);

    /* T0 is 22:13:20Z; start_at 22:15:00Z is on a quarter minute */
    cr_assert_eq(n, 4);
    cr_assert_eq(fires[0], T0 + 100000);
    cr_assert_eq(fires[1], T0 + 115000);
    cr_assert_eq(fires[3], T0 + 145000);
    jobq_engine_free(e);
}

Test(schedule, missed_fires_after_downtime_run_once)
{
    simstore *st = sim_new();
    jobq_engine *e = eng_new(NULL, 4), *e2;
    int64_t fires[16], t0 = at("2026-05-01T00:30:00Z"), back = at("2026-05-01T10:20:00Z");
    jobq_sched *s = mksched(e, "{\"name\":\"hourly\",\"queue\":\"q\",\"cron\":\"@hourly\"}", t0);
    size_t n;

    commit_to(e, st, t0);
    n = run_until(e, st, s, at("2026-05-01T02:10:00Z"), fires, 16);
    cr_assert_eq(n, 2); /* 01:00, 02:00 */
    jobq_engine_free(e);

    /* down from 02:10 to 10:20: eight fires missed, one made up */
    e2 = eng_new(NULL, 5);
    sim_load(st, e2, back);
    s = jobq_engine_sched(e2, "hourly");
    cr_assert_not_null(s);
    cr_assert_eq(jobq_sched_runs(s), 2);
    cr_assert_eq(jobq_sched_next_run(s), at("2026-05-01T03:00:00Z"));
    cr_assert_leq(jobq_engine_next_timer(e2), back);
    jobq_engine_tick(e2, back);
    commit_to(e2, st, back);
    cr_assert_eq(jobq_sched_runs(s), 3);
    cr_assert_eq(jobq_sched_next_run(s), at("2026-05-01T11:00:00Z"));
    cr_assert_eq(jobq_engine_next_timer(e2), at("2026-05-01T11:00:00Z"));
    cr_assert_eq(jobq_queue_count(jobq_engine_queue(e2, "q"), JOBQ_WAITING), 3);
    jobq_engine_free(e2);
    sim_free(st);
}

Test(schedule, overlap_false_skips_while_the_last_run_is_live)
{
    jobq_engine *e = eng_new(NULL, 6);
    jobq_sched *s =
        mksched(e, "{\"name\":\"o\",\"queue\":\"q\",\"every_ms\":1000,\"overlap\":false}", T0);
    jobq_job *j;
    json_t *o;

    jobq_engine_tick(e, T0 + 1000);
    commit(e, T0 + 1000);
    cr_assert_eq(jobq_sched_runs(s), 1);
    j = fetch1(e, "q", T0 + 1500);
    cr_assert_not_null(j);
    jobq_engine_tick(e, T0 + 2000); /* active: skipped */
    jobq_engine_tick(e, T0 + 3000); /* still active: skipped */
    cr_assert_eq(jobq_sched_runs(s), 1);
    o = jobq_sched_to_json(s);
    cr_assert_eq(json_integer_value(json_object_get(o, "skipped")), 2);
    cr_assert_eq(json_integer_value(json_object_get(o, "next_run_at")), T0 + 4000);
    json_decref(o);
    complete_ok(e, j, T0 + 3500);
    jobq_engine_tick(e, T0 + 4000);
    cr_assert_eq(jobq_sched_runs(s), 2);

    /* with overlap (the default) a live job does not stop the next */
    s = mksched(e, "{\"name\":\"p\",\"queue\":\"q2\",\"every_ms\":1000}", T0 + 4000);
    jobq_engine_tick(e, T0 + 5000);
    jobq_engine_tick(e, T0 + 6000);
    cr_assert_eq(jobq_sched_runs(s), 2);
    jobq_engine_free(e);
}

Test(schedule, fire_job_and_document_share_a_batch)
{
    jobq_engine *e = eng_new(NULL, 7);
    jobq_sched *s = mksched(e,
                            "{\"name\":\"b\",\"queue\":\"q\",\"every_ms\":1000,"
                            "\"job\":{\"data\":{\"k\":1},\"priority\":\"high\"}}",
                            T0);
    jobq_batch *b;
    jobq_job *j;

    commit(e, T0);
    jobq_engine_tick(e, T0 + 1000);
    b = jobq_engine_take_changes(e);
    cr_assert_not_null(b);
    cr_assert_eq(rec_count(b, JOBQ_REC_JOB_INSERT), 1);
    cr_assert_eq(rec_count(b, JOBQ_REC_DOC_PUT), 1);
    for (size_t i = 0; i < b->n; i++)
        if (b->recs[i].kind == JOBQ_REC_DOC_PUT) {
            cr_assert_str_eq(b->recs[i].u.doc.kind, "schedule");
            cr_assert_str_eq(b->recs[i].u.doc.id, jobq_sched_id(s));
            cr_assert(strstr(b->recs[i].u.doc.body, "\"runs\":1"));
        }
    jobq_engine_committed(e, T0 + 1000);
    jobq_batch_free(b);
    j = fetch1(e, "q", T0 + 1001);
    cr_assert_not_null(j);
    cr_assert_eq(job_int(e, j, "priority", T0 + 1001), 10);
    jobq_engine_free(e);
}

Test(schedule, pause_resume_trigger_patch_delete)
{
    simstore *st = sim_new();
    jobq_engine *e = eng_new(NULL, 8), *e2;
    jobq_sched *s = mksched(e, "{\"name\":\"x\",\"queue\":\"q\",\"every_ms\":1000}", T0), *y;
    jobq_job *j = NULL;
    json_t *patch;
    jobq_sched_err err;

    jobq_sched_pause(e, s, T0 + 10);
    cr_assert_eq(jobq_sched_next_run(s), 0);
    cr_assert_eq(jobq_engine_next_timer(e), INT64_MAX);
    /* a trigger fires whatever the pause, and does not move the next fire */
    cr_assert_eq(jobq_sched_trigger(e, s, T0 + 20, &j), 0);
    cr_assert_not_null(j);
    cr_assert_eq(jobq_sched_runs(s), 1);
    cr_assert_eq(jobq_sched_next_run(s), 0);
    jobq_sched_resume(e, s, T0 + 5500);
    cr_assert_eq(jobq_sched_next_run(s), T0 + 6000); /* in phase, after now: nothing made up */
    /* patch: to a cron expression; next fire computed again */
    patch = json_pack("{s:s}", "cron", "0 0 * * *");
    cr_assert_eq(jobq_sched_patch(e, s, patch, T0 + 6000, &err), 0, "%s: %s", err.field, err.why);
    json_decref(patch);
    cr_assert_eq(jobq_sched_next_run(s), at("2023-11-15T00:00:00Z"));
    y = mksched(e, "{\"name\":\"y\",\"queue\":\"q\",\"every_ms\":1000}", T0);
    patch = json_pack("{s:s}", "name", "y");
    cr_assert_eq(jobq_sched_patch(e, s, patch, T0 + 6000, &err), JOBQ_EEXIST);
    json_decref(patch);
    patch = json_pack("{s:s}", "tz", "Nowhere/Atlantis");
    cr_assert_eq(jobq_sched_patch(e, s, patch, T0 + 6000, &err), JOBQ_EINVAL);
    cr_assert_str_eq(err.field, "tz");
    json_decref(patch);
    cr_assert_eq(jobq_sched_next_run(s), at("2023-11-15T00:00:00Z")); /* unchanged */
    jobq_sched_delete(e, y, T0 + 7000);
    cr_assert_null(jobq_engine_sched(e, "y"));
    commit_to(e, st, T0 + 7000);
    jobq_engine_free(e);

    /* what survives a restart */
    e2 = eng_new(NULL, 9);
    sim_load(st, e2, T0 + 8000);
    cr_assert_eq(jobq_engine_sched_total(e2), 1);
    s = jobq_engine_sched(e2, "x");
    cr_assert_not_null(s);
    cr_assert_eq(jobq_sched_runs(s), 1);
    cr_assert_eq(jobq_sched_next_run(s), at("2023-11-15T00:00:00Z"));
    cr_assert_eq(jobq_engine_sched(e2, jobq_sched_id(s)), s);
    jobq_engine_free(e2);
    sim_free(st);
}

Test(schedule, refused_definitions_name_the_field)
{
    jobq_engine *e = eng_new(NULL, 10);

    refused(e, "{\"queue\":\"q\",\"cron\":\"* * * * *\"}", "name");
    refused(e, "{\"name\":\"a b\",\"queue\":\"q\",\"cron\":\"* * * * *\"}", "name");
    refused(e, "{\"name\":\"n\",\"cron\":\"* * * * *\"}", "queue");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\"}", "cron");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\",\"cron\":\"* * * * *\",\"every_ms\":1000}",
            "every_ms");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\",\"cron\":\"61 * * * *\"}", "cron");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\",\"cron\":\"0 0 30 2 *\"}", "cron");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\",\"cron\":5}", "cron");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\",\"every_ms\":10}", "every_ms");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\",\"every_ms\":\"1s\"}", "every_ms");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\",\"cron\":\"* * * * *\",\"tz\":\"Mars/Base\"}",
            "tz");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\",\"cron\":\"* * * * *\",\"tz\":\"../etc/x\"}", "tz");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\",\"every_ms\":1000,\"tz\":\"UTC\"}", "tz");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\",\"every_ms\":1000,\"job\":[]}", "job");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\",\"every_ms\":1000,\"job\":{\"id\":\"x\"}}",
            "job.id");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\",\"every_ms\":1000,\"job\":{\"run_at\":1}}",
            "job.run_at");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\",\"every_ms\":1000,\"job\":{\"priority\":\"x\"}}",
            "job.priority");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\",\"every_ms\":1000,\"start_at\":-1}", "start_at");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\",\"every_ms\":1000,\"start_at\":5,\"end_at\":4}",
            "end_at");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\",\"every_ms\":1000,\"limit\":0}", "limit");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\",\"every_ms\":1000,\"overlap\":1}", "overlap");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\",\"every_ms\":1000,\"paused\":\"no\"}", "paused");
    refused(e, "{\"name\":\"n\",\"queue\":\"q\",\"every_ms\":1000,\"color\":\"red\"}", "color");
    cr_assert_eq(jobq_engine_sched_total(e), 0);
    cr_assert_eq(jobq_engine_has_changes(e), 0);
    jobq_engine_free(e);
}

Test(schedule, a_refused_fire_is_recorded_and_the_schedule_goes_on)
{
    jobq_engine_config cfg = {.seed = 11, .strict_queues = 1};
    jobq_engine *e = jobq_engine_new(&cfg, NULL);
    jobq_sched *s = mksched(e, "{\"name\":\"d\",\"queue\":\"q\",\"every_ms\":1000}", T0);
    jobq_job *j = NULL;
    json_t *o;

    /* a strict server and no queue "q": the enqueue is refused */
    jobq_engine_tick(e, T0 + 1000);
    o = jobq_sched_to_json(s);
    cr_assert_eq(json_integer_value(json_object_get(o, "runs")), 0);
    cr_assert_eq(json_integer_value(json_object_get(o, "skipped")), 1);
    cr_assert(json_is_string(json_object_get(o, "last_error")));
    cr_assert_eq(json_integer_value(json_object_get(o, "next_run_at")), T0 + 2000);
    json_decref(o);
    cr_assert_eq(jobq_sched_trigger(e, s, T0 + 1500, &j), JOBQ_ENOTFOUND);
    mkq(e, "q", T0 + 1600, NULL);
    jobq_engine_tick(e, T0 + 2000);
    cr_assert_eq(jobq_sched_runs(s), 1);
    jobq_engine_free(e);
}

/* A stored template that this version would refuse (written by an earlier one, or by hand)
 * does not stop the server from loading: the schedule stays, and each fire says why it made
 * no job. */
Test(schedule, a_stored_template_refused_later_is_loaded_and_named_at_each_fire)
{
    simstore *st = sim_new();
    jobq_engine *e = eng_new(NULL, 12), *e2;
    jobq_sched *s = mksched(e, "{\"name\":\"old\",\"queue\":\"q\",\"every_ms\":1000}", T0);
    char *id = g_strdup(jobq_sched_id(s)), *key = g_strdup_printf("schedule\n%s", id);
    const char *body;
    GString *bad;
    json_t *o;

    commit_to(e, st, T0);
    jobq_engine_free(e);
    body = g_tree_lookup(st->docs, key);
    cr_assert_not_null(body);
    bad = g_string_new(body);
    cr_assert_gt(g_string_replace(bad, "\"job\":{}", "\"job\":{\"priority\":\"huge\"}", 1), 0);
    g_tree_replace(st->docs, g_strdup(key), g_string_free(bad, FALSE));

    e2 = eng_new(NULL, 13);
    sim_load(st, e2, T0 + 500);
    s = jobq_engine_sched(e2, id);
    cr_assert_not_null(s);
    jobq_engine_tick(e2, T0 + 1000);
    o = jobq_sched_to_json(s);
    cr_assert_eq(json_integer_value(json_object_get(o, "runs")), 0);
    cr_assert_eq(json_integer_value(json_object_get(o, "skipped")), 1);
    cr_assert(strncmp(json_string_value(json_object_get(o, "last_error")), "job.priority:", 13) ==
                  0,
              "last_error %s", json_string_value(json_object_get(o, "last_error")));
    cr_assert_eq(json_integer_value(json_object_get(o, "next_run_at")), T0 + 2000);
    json_decref(o);
    jobq_engine_free(e2);
    g_free(key);
    g_free(id);
    sim_free(st);
}
