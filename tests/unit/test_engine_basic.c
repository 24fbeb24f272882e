/*
 * test_engine_basic.c — the engine's everyday behaviour: priorities and FIFO, the commit
 * gate, delays, position, fetch across queues, pause/resume/drain, concurrency, max_size,
 * bulk enqueue, cancel/retry/delete/patch, clear/clean/recover, listing, workers.
 *
 * Every test drives a fresh engine with a simulated clock starting at T0.
 */
#include "helpers.h"

/* ---------------------------------------------------------------- priorities */

Test(engine, priority_order_fifo_within_priority)
{
    jobq_engine *e = eng_new(NULL, 1);
    static const struct {
        const char *id;
        int prio;
    } in[] = {{"a", 0}, {"b", 5},  {"c", -1000}, {"d", 1000}, {"e", 5},
              {"f", 0}, {"g", -3}, {"h", 1000},  {"i", 0},    {"j", -1000}};
    static const char *want[] = {"d", "h", "b", "e", "a", "f", "i", "g", "c", "j"};

    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        enq(e, "q", in[i].id, in[i].prio, T0 + (int64_t)i);
    commit(e, T0 + 20);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        jobq_job *j = fetch1(e, "q", T0 + 100);
        cr_assert_not_null(j, "fetch %zu gave nothing", i);
        cr_assert_str_eq(jobq_job_id(j), want[i], "fetch %zu: got %s, want %s", i, jobq_job_id(j),
                         want[i]);
        cr_assert_eq(jobq_job_state(j), JOBQ_ACTIVE);
    }
    cr_assert_null(fetch1(e, "q", T0 + 100));
    jobq_engine_free(e);
}

Test(engine, priority_fifo_one_fetch_many)
{
    jobq_engine *e = eng_new(NULL, 2);
    jobq_job *out[8];
    char id[16];

    /* 6 jobs at two priorities, fetched in one call of count 8 */
    for (int i = 0; i < 6; i++) {
        snprintf(id, sizeof id, "j%d", i);
        enq(e, "q", id, i % 2 ? 10 : 0, T0);
    }
    commit(e, T0);
    cr_assert_eq(fetchq(e, "q", 8, "w", T0, out), 6);
    cr_assert_str_eq(jobq_job_id(out[0]), "j1");
    cr_assert_str_eq(jobq_job_id(out[1]), "j3");
    cr_assert_str_eq(jobq_job_id(out[2]), "j5");
    cr_assert_str_eq(jobq_job_id(out[3]), "j0");
    cr_assert_str_eq(jobq_job_id(out[4]), "j2");
    cr_assert_str_eq(jobq_job_id(out[5]), "j4");
    jobq_engine_free(e);
}

Test(engine, priority_names_and_bounds)
{
    jobq_engine *e = eng_new(NULL, 3);
    static const struct {
        const char *json;
        int prio;
    } ok[] = {{"{\"id\":\"low\",\"priority\":\"low\"}", -10},
              {"{\"id\":\"normal\",\"priority\":\"normal\"}", 0},
              {"{\"id\":\"high\",\"priority\":\"high\"}", 10},
              {"{\"id\":\"urgent\",\"priority\":\"urgent\"}", 20},
              {"{\"id\":\"max\",\"priority\":1000}", 1000},
              {"{\"id\":\"min\",\"priority\":-1000}", -1000},
              {"{\"id\":\"n15\",\"priority\":15}", 15}};
    static const char *bad[] = {"{\"priority\":1001}", "{\"priority\":-1001}",
                                "{\"priority\":\"critical\"}", "{\"priority\":1.5}",
                                "{\"priority\":null}"};
    static const char *order[] = {"max", "urgent", "n15", "high", "normal", "low", "min"};
    int p = 99;

    cr_assert_eq(jobq_priority_parse("urgent", &p), 0);
    cr_assert_eq(p, 20);
    cr_assert_eq(jobq_priority_parse("URGENT", &p), -1);
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        jobq_job *j = enq_json(e, "q", ok[i].json, T0);
        cr_assert_eq(job_int(e, j, "priority", T0), ok[i].prio, "%s", ok[i].json);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *o = json_loads(bad[i], 0, NULL);
        jobq_job_spec s;
        const char *field = NULL, *why = NULL;
        cr_assert_eq(jobq_job_spec_parse(o, T0, &s, &field, &why), JOBQ_EINVAL, "%s", bad[i]);
        cr_assert_str_eq(field, "priority");
        json_decref(o);
    }
    commit(e, T0);
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        jobq_job *j = fetch1(e, "q", T0);
        cr_assert_not_null(j);
        cr_assert_str_eq(jobq_job_id(j), order[i]);
    }
    jobq_engine_free(e);
}

static void opts_prio7(jobq_queue_opts *o)
{
    o->defaults.priority = 7;
}

Test(engine, priority_queue_default_applies)
{
    jobq_engine *e = eng_new(NULL, 4);
    jobq_job_spec s = spec_default();
    jobq_job *a, *b;

    mkq(e, "q", T0, opts_prio7);
    a = enq_spec(e, "q", &s, T0); /* no priority: the queue's default */
    b = enq(e, "q", "b", 0, T0);  /* explicit 0 stays 0 */
    cr_assert_eq(job_int(e, a, "priority", T0), 7);
    cr_assert_eq(job_int(e, b, "priority", T0), 0);
    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), a);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- commit gate */

Test(engine, commit_gate_not_fetchable_before_commit)
{
    hook_log h;
    jobq_engine *e = eng_new(&h, 5);
    jobq_job *a, *b;
    jobq_batch *b1, *b2;
    jobq_queue *q;

    a = enq(e, "q", "a", 0, T0);
    q = jobq_engine_queue(e, "q");
    cr_assert_not_null(q);
    cr_assert_eq(jobq_job_state(a), JOBQ_WAITING);
    cr_assert_eq(jobq_queue_count(q, JOBQ_WAITING), 1, "counted at once");
    cr_assert_null(fetch1(e, "q", T0), "fetchable before its batch was taken");
    cr_assert_eq(h.ready, 0, "ready hook before commit");

    b1 = jobq_engine_take_changes(e);
    cr_assert_not_null(b1);
    cr_assert_null(fetch1(e, "q", T0), "fetchable while its batch is in flight");
    b = enq(e, "q", "b", 100, T0 + 1); /* goes into the next batch */
    jobq_engine_committed(e, T0 + 2);
    jobq_batch_free(b1);
    cr_assert_geq(h.ready, 1, "ready hook after commit");
    cr_assert_eq(h.last_ready, q);
    /* b has the higher priority but is not durable yet: a comes out */
    cr_assert_eq(jobq_engine_job_position(e, a), 0);
    cr_assert_eq(jobq_engine_job_position(e, b), 1, "uncommitted job is behind the fetchable");
    cr_assert_eq(fetch1(e, "q", T0 + 3), a);
    cr_assert_null(fetch1(e, "q", T0 + 3), "job of the next batch handed out early");

    b2 = jobq_engine_take_changes(e);
    cr_assert_not_null(b2);
    cr_assert_null(fetch1(e, "q", T0 + 4));
    jobq_engine_committed(e, T0 + 5);
    jobq_batch_free(b2);
    cr_assert_eq(fetch1(e, "q", T0 + 6), b);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- delays */

Test(engine, delay_ms_and_run_at)
{
    jobq_engine *e = eng_new(NULL, 6);
    jobq_job *d, *r, *past, *now_;
    json_t *o;
    jobq_job_spec s;
    const char *field = NULL, *why = NULL;

    d = enq_json(e, "q", "{\"id\":\"d\",\"delay_ms\":5000}", T0);
    r = enq_json(e, "q", "{\"id\":\"r\",\"run_at\":1700000010000}", T0);
    past = enq_json(e, "q", "{\"id\":\"past\",\"run_at\":1699999999000}", T0);
    now_ = enq_json(e, "q", "{\"id\":\"zero\",\"delay_ms\":0}", T0);
    cr_assert_eq(jobq_job_state(d), JOBQ_SCHEDULED);
    cr_assert_eq(jobq_job_state(r), JOBQ_SCHEDULED);
    cr_assert_eq(jobq_job_state(past), JOBQ_WAITING);
    cr_assert_eq(jobq_job_state(now_), JOBQ_WAITING);
    cr_assert_eq(job_run_at(e, d, T0), T0 + 5000);
    cr_assert_eq(job_run_at(e, r, T0), T0 + 10000);
    cr_assert_eq(job_run_at(e, past, T0), -1, "run_at is null for a waiting job");
    cr_assert_eq(jobq_engine_job_position(e, d), -1);
    commit(e, T0);
    cr_assert_eq(jobq_engine_next_timer(e), T0 + 5000);

    cr_assert_eq(fetch1(e, "q", T0), past);
    cr_assert_eq(fetch1(e, "q", T0), now_);
    cr_assert_null(fetch1(e, "q", T0));
    jobq_engine_tick(e, T0 + 4999);
    cr_assert_eq(jobq_job_state(d), JOBQ_SCHEDULED);
    cr_assert_null(fetch1(e, "q", T0 + 4999));
    jobq_engine_tick(e, T0 + 5000);
    cr_assert_eq(jobq_job_state(d), JOBQ_WAITING);
    cr_assert_eq(job_run_at(e, d, T0 + 5000), -1);
    cr_assert_eq(jobq_engine_next_timer(e), T0 + 10000);
    cr_assert_eq(fetch1(e, "q", T0 + 5000), d);
    jobq_engine_tick(e, T0 + 20000);
    cr_assert_eq(jobq_job_state(r), JOBQ_WAITING);
    cr_assert_eq(fetch1(e, "q", T0 + 20000), r);

    /* delay_ms and run_at together are refused */
    o = json_loads("{\"delay_ms\":1,\"run_at\":1700000010000}", 0, NULL);
    cr_assert_eq(jobq_job_spec_parse(o, T0, &s, &field, &why), JOBQ_EINVAL);
    cr_assert_str_eq(field, "run_at");
    json_decref(o);
    jobq_engine_free(e);
}

Test(engine, delayed_job_due_before_commit_waits_for_commit)
{
    jobq_engine *e = eng_new(NULL, 7);
    jobq_job *d = enq_json(e, "q", "{\"delay_ms\":10}", T0);
    jobq_batch *b;

    jobq_engine_tick(e, T0 + 10); /* due, but its enqueue is not durable yet */
    cr_assert_eq(jobq_job_state(d), JOBQ_WAITING);
    cr_assert_null(fetch1(e, "q", T0 + 10));
    b = jobq_engine_take_changes(e);
    cr_assert_null(fetch1(e, "q", T0 + 11));
    jobq_engine_committed(e, T0 + 12);
    jobq_batch_free(b);
    cr_assert_eq(fetch1(e, "q", T0 + 12), d);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- position */

Test(engine, position_follows_fetch_and_patch)
{
    jobq_engine *e = eng_new(NULL, 8);
    jobq_job *a = enq(e, "q", "a", 0, T0);
    jobq_job *b = enq(e, "q", "b", 0, T0);
    jobq_job *c = enq(e, "q", "c", 5, T0);
    jobq_job *d = enq(e, "q", "d", 0, T0);
    jobq_job *other = enq(e, "other", "x", 100, T0);

    commit(e, T0);
    cr_assert_eq(jobq_engine_job_position(e, c), 0);
    cr_assert_eq(jobq_engine_job_position(e, a), 1);
    cr_assert_eq(jobq_engine_job_position(e, b), 2);
    cr_assert_eq(jobq_engine_job_position(e, d), 3);
    cr_assert_eq(jobq_engine_job_position(e, other), 0, "position is per queue");
    cr_assert_eq(job_int(e, b, "position", T0), 2, "rendered position");

    cr_assert_eq(jobq_engine_job_patch(e, d, 1, 6, 0, 0, T0 + 1), 0);
    cr_assert_eq(jobq_engine_job_position(e, d), 0);
    cr_assert_eq(jobq_engine_job_position(e, c), 1);
    cr_assert_eq(jobq_engine_job_position(e, a), 2);

    cr_assert_eq(jobq_engine_job_patch(e, d, 1, -1, 0, 0, T0 + 2), 0);
    cr_assert_eq(jobq_engine_job_position(e, d), 3);
    cr_assert_eq(jobq_engine_job_patch(e, d, 1, 0, 0, 0, T0 + 3), 0);
    cr_assert_eq(jobq_engine_job_position(e, d), 3, "back to its FIFO place among equals");
    cr_assert_eq(jobq_engine_job_patch(e, a, 1, 0, 0, 0, T0 + 3), 0, "same priority: no-op");
    cr_assert_eq(jobq_engine_job_position(e, a), 1);

    cr_assert_eq(fetch1(e, "q", T0 + 4), c);
    cr_assert_eq(jobq_engine_job_position(e, c), -1);
    cr_assert_eq(job_int(e, c, "position", T0 + 4), -1, "position null when not waiting");
    cr_assert_eq(jobq_engine_job_position(e, a), 0);
    cr_assert_eq(jobq_engine_job_position(e, b), 1);
    cr_assert_eq(jobq_engine_job_position(e, d), 2);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- fetch across queues */

Test(engine, fetch_across_queues_priority_then_fifo)
{
    jobq_engine *e = eng_new(NULL, 9);
    const char *qs[] = {"q1", "nope", "q2"};
    jobq_job *out[10];
    size_t n;

    enq(e, "q1", "a", 0, T0);
    enq(e, "q2", "b", 0, T0);
    enq(e, "q1", "c", 3, T0);
    enq(e, "q2", "d", 3, T0);
    enq(e, "q3", "z", 100, T0); /* not asked for */
    commit(e, T0);
    n = jobq_engine_fetch(e, qs, 3, 10, "w", T0, out);
    cr_assert_eq(n, 4);
    cr_assert_str_eq(jobq_job_id(out[0]), "c");
    cr_assert_str_eq(jobq_job_id(out[1]), "d");
    cr_assert_str_eq(jobq_job_id(out[2]), "a");
    cr_assert_str_eq(jobq_job_id(out[3]), "b");
    cr_assert_eq(jobq_engine_fetch(e, qs, 3, 10, "w", T0, out), 0);
    {
        const char *unk[] = {"unknown"};
        cr_assert_eq(jobq_engine_fetch(e, unk, 1, 10, "w", T0, out), 0);
    }
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- pause, resume, drain */

Test(engine, pause_resume)
{
    hook_log h;
    jobq_engine *e = eng_new(&h, 10);
    jobq_queue *q;
    jobq_job *a;

    a = enq(e, "q", "a", 0, T0);
    commit(e, T0);
    q = jobq_engine_queue(e, "q");
    cr_assert_eq(jobq_engine_queue_pause(e, q, T0 + 1), 0);
    cr_assert_eq(jobq_queue_status(q), JOBQ_Q_PAUSED);
    cr_assert_null(fetch1(e, "q", T0 + 2), "paused queue handed out a job");
    enq(e, "q", "b", 0, T0 + 3); /* enqueue still accepted */
    commit(e, T0 + 3);
    cr_assert_null(fetch1(e, "q", T0 + 4));
    cr_assert_eq(jobq_engine_job_position(e, a), 0, "position still answered when paused");
    h.ready = 0;
    cr_assert_eq(jobq_engine_queue_resume(e, q, T0 + 5), 0);
    cr_assert_eq(jobq_queue_status(q), JOBQ_Q_ACTIVE);
    cr_assert_geq(h.ready, 1, "resume with waiting jobs must fire the ready hook");
    cr_assert_eq(fetch1(e, "q", T0 + 6), a);
    jobq_engine_free(e);
}

Test(engine, pause_keeps_active_jobs_running)
{
    jobq_engine *e = eng_new(NULL, 11);
    jobq_job *a = enq(e, "q", "a", 0, T0);
    jobq_queue *q = jobq_engine_queue(e, "q");

    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), a);
    jobq_engine_queue_pause(e, q, T0 + 1);
    complete_ok(e, a, T0 + 2);
    cr_assert_eq(jobq_job_state(a), JOBQ_COMPLETED);
    cr_assert_eq(jobq_queue_status(q), JOBQ_Q_PAUSED);
    jobq_engine_free(e);
}

Test(engine, drain_refuses_enqueue_then_pauses)
{
    jobq_engine *e = eng_new(NULL, 12);
    jobq_job *a = enq(e, "q", "a", 0, T0), *b = enq(e, "q", "b", 0, T0), *x = NULL;
    jobq_job *sched = enq_json(e, "q", "{\"delay_ms\":1000}", T0);
    jobq_queue *q = jobq_engine_queue(e, "q");
    jobq_job_spec s = spec_default();
    long bad = 7;

    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), a);
    cr_assert_eq(jobq_engine_queue_drain(e, q, T0 + 1), 0);
    cr_assert_eq(jobq_queue_status(q), JOBQ_Q_DRAINING);
    cr_assert_eq(jobq_engine_enqueue(e, "q", &s, 1, T0 + 2, &x, &bad), JOBQ_EDRAINING);
    cr_assert_eq(jobq_queue_count(q, JOBQ_WAITING), 1);
    cr_assert_eq(fetch1(e, "q", T0 + 3), b, "a draining queue still hands out its jobs");
    complete_ok(e, a, T0 + 4);
    complete_ok(e, b, T0 + 5);
    cr_assert_eq(jobq_queue_status(q), JOBQ_Q_DRAINING, "a scheduled job is still there");
    jobq_engine_tick(e, T0 + 1000);
    cr_assert_eq(fetch1(e, "q", T0 + 1000), sched);
    complete_ok(e, sched, T0 + 1001);
    cr_assert_eq(jobq_queue_status(q), JOBQ_Q_PAUSED, "drained queue must become paused");
    cr_assert_null(fetch1(e, "q", T0 + 1002));
    /* paused again: enqueue accepted */
    cr_assert_eq(jobq_engine_enqueue(e, "q", &s, 1, T0 + 1003, &x, &bad), 0);

    /* an empty queue drains at once */
    {
        jobq_queue *q2 = mkq(e, "empty", T0, NULL);
        jobq_engine_queue_drain(e, q2, T0 + 2000);
        cr_assert_eq(jobq_queue_status(q2), JOBQ_Q_PAUSED);
    }
    jobq_engine_free(e);
}

Test(engine, drain_ends_when_last_job_cancelled_or_deleted)
{
    jobq_engine *e = eng_new(NULL, 13);
    jobq_job *a = enq(e, "q", "a", 0, T0), *b = enq(e, "q", "b", 0, T0);
    jobq_queue *q = jobq_engine_queue(e, "q");

    commit(e, T0);
    jobq_engine_queue_drain(e, q, T0 + 1);
    cr_assert_eq(jobq_engine_job_cancel(e, a, T0 + 2), 0);
    cr_assert_eq(jobq_queue_status(q), JOBQ_Q_DRAINING);
    cr_assert_eq(jobq_engine_job_delete(e, b, T0 + 3), 0);
    cr_assert_eq(jobq_queue_status(q), JOBQ_Q_PAUSED);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- concurrency */

static void opts_conc2(jobq_queue_opts *o)
{
    o->concurrency = 2;
}

Test(engine, concurrency_limits_fetch_and_frees_on_completion)
{
    hook_log h;
    jobq_engine *e = eng_new(&h, 14);
    jobq_queue *q = mkq(e, "q", T0, opts_conc2);
    jobq_job *out[8], *more[8];
    char id[16];

    for (int i = 0; i < 6; i++) {
        snprintf(id, sizeof id, "j%d", i);
        enq(e, "q", id, 0, T0);
    }
    commit(e, T0);
    cr_assert_eq(fetchq(e, "q", 8, "w", T0, out), 2);
    cr_assert_eq(jobq_queue_count(q, JOBQ_ACTIVE), 2);
    cr_assert_eq(fetchq(e, "q", 8, "w", T0, more), 0, "limit exceeded");

    h.ready = 0;
    complete_ok(e, out[0], T0 + 1);
    cr_assert_eq(h.ready, 1, "completion under a full limit must fire the ready hook");
    cr_assert_eq(h.last_ready, q);
    cr_assert_eq(fetchq(e, "q", 8, "w", T0 + 1, more), 1);
    cr_assert_str_eq(jobq_job_id(more[0]), "j2");

    /* a failure that retries later frees the slot too */
    h.ready = 0;
    fail_ok(e, out[1], "x", 1, 10000, T0 + 2);
    cr_assert_eq(jobq_job_state(out[1]), JOBQ_RETRYING);
    cr_assert_eq(h.ready, 1, "retrying frees a slot: ready hook");
    cr_assert_eq(fetchq(e, "q", 8, "w", T0 + 2, more + 1), 1);
    cr_assert_str_eq(jobq_job_id(more[1]), "j3");

    /* a failure that finalizes frees it too */
    h.ready = 0;
    fail_ok(e, more[0], "x", 0, -1, T0 + 3);
    cr_assert_eq(jobq_job_state(more[0]), JOBQ_FAILED);
    cr_assert_eq(h.ready, 1);

    /* raising the limit wakes workers */
    {
        jobq_queue_opts o;
        jobq_queue_opts_default(&o);
        o.set = JOBQ_QO_CONCURRENCY;
        o.concurrency = 0;
        h.ready = 0;
        cr_assert_eq(jobq_engine_queue_patch(e, q, &o, T0 + 4), 0);
        jobq_queue_opts_clear(&o);
        cr_assert_geq(h.ready, 1);
    }
    cr_assert_eq(fetchq(e, "q", 8, "w", T0 + 4, more + 2), 2, "j4, j5 after unlimit");
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- max_size, bulk */

static void opts_max3(jobq_queue_opts *o)
{
    o->max_size = 3;
}

Test(engine, max_size_full)
{
    jobq_engine *e = eng_new(NULL, 15);
    jobq_queue *q = mkq(e, "q", T0, opts_max3);
    jobq_job_spec s[2] = {spec_default(), spec_default()};
    jobq_job *out[2] = {NULL, NULL};
    jobq_job *a;
    long bad = 5;

    a = enq(e, "q", "a", 0, T0);
    enq_json(e, "q", "{\"delay_ms\":100}", T0); /* scheduled counts */
    cr_assert_eq(jobq_engine_enqueue(e, "q", s, 2, T0, out, &bad), JOBQ_EFULL);
    cr_assert_eq(jobq_engine_job_total(e), 2);
    enq(e, "q", "c", 0, T0);
    cr_assert_eq(jobq_engine_enqueue(e, "q", s, 1, T0, out, &bad), JOBQ_EFULL);
    cr_assert_eq(jobq_queue_count(q, JOBQ_WAITING), 2);
    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), a); /* active jobs do not count */
    cr_assert_eq(jobq_engine_enqueue(e, "q", s, 1, T0, out, &bad), 0);
    cr_assert_eq(jobq_engine_enqueue(e, "q", s, 1, T0, out, &bad), JOBQ_EFULL);
    jobq_engine_free(e);
}

Test(engine, bulk_enqueue_atomic)
{
    jobq_engine *e = eng_new(NULL, 16);
    jobq_job_spec s[4];
    jobq_job *out[4];
    jobq_queue *q;
    long bad = -5;
    size_t total;
    int rc;

    enq(e, "q", "taken", 0, T0);
    q = jobq_engine_queue(e, "q");
    commit(e, T0);
    total = jobq_engine_job_total(e);
    for (int i = 0; i < 4; i++)
        s[i] = spec_default();
    s[0].id = "a";
    s[1].id = "b";
    s[2].id = "taken";
    s[3].id = "c";
    rc = jobq_engine_enqueue(e, "q", s, 4, T0 + 1, out, &bad);
    cr_assert_eq(rc, JOBQ_EEXIST);
    cr_assert_eq(bad, 2);
    cr_assert_eq(jobq_engine_job_total(e), total, "a failed bulk enqueue left jobs behind");
    cr_assert_null(jobq_engine_job(e, "a"));
    cr_assert_null(jobq_engine_job(e, "b"));
    cr_assert_null(jobq_engine_job(e, "c"));
    cr_assert_eq(jobq_queue_count(q, JOBQ_WAITING), 1);
    cr_assert_eq(jobq_engine_has_changes(e), 0, "a refused enqueue wrote records");

    /* the same id twice in one request */
    s[2].id = "b";
    bad = -5;
    rc = jobq_engine_enqueue(e, "q", s, 4, T0 + 1, out, &bad);
    cr_assert_eq(rc, JOBQ_EEXIST);
    cr_assert_eq(bad, 2);
    cr_assert_eq(jobq_engine_job_total(e), total);

    /* into a queue that does not exist yet: the queue is not created either */
    s[2].id = "taken";
    rc = jobq_engine_enqueue(e, "fresh", s, 4, T0 + 1, out, &bad);
    cr_assert_eq(rc, JOBQ_EEXIST);
    cr_assert_null(jobq_engine_queue(e, "fresh"));
    cr_assert_eq(jobq_engine_has_changes(e), 0);

    /* all good: every job in, in order, one batch */
    s[2].id = NULL;
    rc = jobq_engine_enqueue(e, "q", s, 4, T0 + 2, out, &bad);
    cr_assert_eq(rc, 0);
    cr_assert_eq(bad, -1);
    cr_assert_eq(jobq_engine_job_total(e), total + 4);
    cr_assert_str_eq(jobq_job_id(out[0]), "a");
    cr_assert_str_eq(jobq_job_id(out[3]), "c");
    cr_assert(jobq_job_seq(out[0]) < jobq_job_seq(out[1]) &&
              jobq_job_seq(out[1]) < jobq_job_seq(out[2]) &&
              jobq_job_seq(out[2]) < jobq_job_seq(out[3]));
    cr_assert_eq(strlen(jobq_job_id(out[2])), 36, "generated UUIDv7");
    cr_assert_eq(jobq_job_id(out[2])[14], '7');
    jobq_engine_free(e);
}

Test(engine, enqueue_unknown_queue_strict_and_bad_name)
{
    jobq_engine_config cfg = {.strict_queues = 1, .seed = 17};
    jobq_engine *e = jobq_engine_new(&cfg, NULL);
    jobq_job_spec s = spec_default();
    jobq_job *j = NULL;
    long bad = 0;

    cr_assert_eq(jobq_engine_enqueue(e, "nope", &s, 1, T0, &j, &bad), JOBQ_ENOTFOUND);
    cr_assert_eq(jobq_engine_queue_total(e), 0);
    jobq_engine_free(e);

    e = eng_new(NULL, 17);
    cr_assert_eq(jobq_engine_enqueue(e, "bad name", &s, 1, T0, &j, &bad), JOBQ_EINVAL);
    cr_assert_eq(jobq_engine_enqueue(e, "", &s, 1, T0, &j, &bad), JOBQ_EINVAL);
    cr_assert_eq(jobq_engine_queue_total(e), 0);
    cr_assert_eq(jobq_engine_enqueue(e, "auto.q-1_x", &s, 1, T0, &j, &bad), 0);
    cr_assert_not_null(jobq_engine_queue(e, "auto.q-1_x"));
    cr_assert_eq(jobq_engine_queue(e, jobq_queue_id(jobq_engine_queue(e, "auto.q-1_x"))),
                 jobq_engine_queue(e, "auto.q-1_x"), "queue found by id");
    jobq_engine_free(e);
}

/* engine.h: enqueue fails with JOBQ_EINVAL for a bad id (API: 1..128 of [A-Za-z0-9._:-]). */
Test(engine, enqueue_refuses_bad_id)
{
    jobq_engine *e = eng_new(NULL, 18);
    jobq_job_spec s = spec_default();
    jobq_job *j = NULL;
    long bad = 0;
    char longid[130];

    memset(longid, 'x', 129);
    longid[129] = '\0';
    s.id = "has space";
    cr_assert_eq(jobq_engine_enqueue(e, "q", &s, 1, T0, &j, &bad), JOBQ_EINVAL,
                 "id with a space accepted");
    s.id = "";
    cr_assert_eq(jobq_engine_enqueue(e, "q", &s, 1, T0, &j, &bad), JOBQ_EINVAL,
                 "empty id accepted");
    s.id = longid;
    cr_assert_eq(jobq_engine_enqueue(e, "q", &s, 1, T0, &j, &bad), JOBQ_EINVAL,
                 "129-char id accepted");
    cr_assert_eq(jobq_engine_job_total(e), 0);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- cancel */

Test(engine, cancel_waiting_and_scheduled)
{
    hook_log h;
    jobq_engine *e = eng_new(&h, 19);
    jobq_job *w = enq(e, "q", "w", 0, T0);
    jobq_job *s = enq_json(e, "q", "{\"id\":\"s\",\"delay_ms\":500}", T0);
    jobq_queue *q = jobq_engine_queue(e, "q");

    commit(e, T0);
    cr_assert_eq(jobq_engine_job_cancel(e, w, T0 + 1), 0);
    cr_assert_eq(jobq_job_state(w), JOBQ_CANCELLED);
    cr_assert_eq(h.final, 1);
    cr_assert_eq(h.last_final_state, JOBQ_CANCELLED);
    cr_assert_eq(jobq_engine_job_cancel(e, s, T0 + 1), 0);
    cr_assert_eq(jobq_job_state(s), JOBQ_CANCELLED);
    cr_assert_eq(jobq_queue_count(q, JOBQ_CANCELLED), 2);
    cr_assert_eq(jobq_queue_count(q, JOBQ_WAITING), 0);
    cr_assert_eq(jobq_queue_count(q, JOBQ_SCHEDULED), 0);
    cr_assert_eq(jobq_engine_job_cancel(e, w, T0 + 2), JOBQ_ESTATE, "cancel of a final job");
    jobq_engine_tick(e, T0 + 1000);
    cr_assert_eq(jobq_job_state(s), JOBQ_CANCELLED, "cancelled job's timer still fired");
    cr_assert_null(fetch1(e, "q", T0 + 1000));
    jobq_engine_free(e);
}

Test(engine, cancel_active_ends_on_complete_or_fail)
{
    hook_log h;
    jobq_engine *e = eng_new(&h, 20);
    jobq_job *a = enq(e, "q", "a", 0, T0), *b = enq(e, "q", "b", 0, T0);
    json_t *o;

    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), a);
    cr_assert_eq(fetch1(e, "q", T0), b);
    cr_assert_eq(jobq_engine_job_cancel(e, a, T0 + 1), 0);
    cr_assert_eq(jobq_engine_job_cancel(e, a, T0 + 1), 0, "second cancel is fine");
    cr_assert_eq(jobq_job_state(a), JOBQ_ACTIVE);
    cr_assert(jobq_job_cancel_requested(a));
    o = job_json(e, a, T0 + 1);
    cr_assert(json_is_true(json_object_get(o, "cancel_requested")));
    cr_assert_str_eq(json_string_value(json_object_get(o, "state")), "active");
    json_decref(o);
    cr_assert_eq(h.final, 0);
    complete_ok(e, a, T0 + 2);
    cr_assert_eq(jobq_job_state(a), JOBQ_CANCELLED, "complete of a cancel-requested job");
    cr_assert_not(jobq_job_cancel_requested(a));
    cr_assert_eq(h.final, 1);

    cr_assert_eq(jobq_engine_job_cancel(e, b, T0 + 3), 0);
    fail_ok(e, b, "x", 1, -1, T0 + 4); /* retryable, attempts left: still cancelled */
    cr_assert_eq(jobq_job_state(b), JOBQ_CANCELLED);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- retry, delete, patch */

Test(engine, retry_failed_and_cancelled_resets_attempt)
{
    jobq_engine *e = eng_new(NULL, 21);
    jobq_job *a = enq_json(e, "q", "{\"id\":\"a\",\"max_attempts\":2}", T0);
    jobq_job *c = enq(e, "q", "c", 0, T0);
    json_t *o;

    commit(e, T0);
    cr_assert_eq(jobq_engine_job_retry(e, a, T0), JOBQ_ESTATE, "retry of a waiting job");
    cr_assert_eq(fetch1(e, "q", T0), a);
    cr_assert_eq(jobq_engine_job_retry(e, a, T0), JOBQ_ESTATE, "retry of an active job");
    fail_ok(e, a, "x", 1, 0, T0 + 1); /* attempt 1, straight back */
    cr_assert_eq(jobq_job_state(a), JOBQ_WAITING);
    cr_assert_eq(fetch1(e, "q", T0 + 2), a);
    fail_ok(e, a, "x", 1, 0, T0 + 3); /* attempt 2 = max */
    cr_assert_eq(jobq_job_state(a), JOBQ_FAILED);
    cr_assert_eq(jobq_job_attempt(a), 2);

    cr_assert_eq(jobq_engine_job_retry(e, a, T0 + 4), 0);
    cr_assert_eq(jobq_job_state(a), JOBQ_WAITING);
    cr_assert_eq(jobq_job_attempt(a), 0);
    o = job_json(e, a, T0 + 4);
    cr_assert(json_is_null(json_object_get(o, "error")), "error kept after retry");
    cr_assert(json_is_null(json_object_get(o, "finished_at")));
    json_decref(o);
    cr_assert_eq(jobq_engine_job_position(e, a), 0, "older seq: ahead of c");
    cr_assert_eq(fetch1(e, "q", T0 + 5), a);

    cr_assert_eq(jobq_engine_job_cancel(e, c, T0 + 6), 0);
    cr_assert_eq(jobq_engine_job_retry(e, c, T0 + 7), 0);
    cr_assert_eq(jobq_job_state(c), JOBQ_WAITING);
    cr_assert_eq(fetch1(e, "q", T0 + 8), c);
    complete_ok(e, c, T0 + 9);
    cr_assert_eq(jobq_engine_job_retry(e, c, T0 + 10), JOBQ_ESTATE, "retry of completed");
    jobq_engine_free(e);
}

Test(engine, delete_refuses_active)
{
    hook_log h;
    jobq_engine *e = eng_new(&h, 22);
    jobq_job *a = enq(e, "q", "a", 0, T0), *b = enq(e, "q", "b", 0, T0);
    jobq_job *s = enq_json(e, "q", "{\"id\":\"s\",\"delay_ms\":100}", T0);
    jobq_queue *q = jobq_engine_queue(e, "q");

    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), a);
    cr_assert_eq(jobq_engine_job_delete(e, a, T0 + 1), JOBQ_ESTATE);
    cr_assert_eq(jobq_engine_job(e, "a"), a);
    cr_assert_eq(jobq_engine_job_delete(e, b, T0 + 1), 0);
    cr_assert_null(jobq_engine_job(e, "b"));
    cr_assert_eq(h.deleted, 1);
    cr_assert_eq(jobq_engine_job_delete(e, s, T0 + 1), 0);
    cr_assert_eq(jobq_queue_count(q, JOBQ_WAITING), 0);
    cr_assert_eq(jobq_queue_count(q, JOBQ_SCHEDULED), 0);
    cr_assert_eq(jobq_engine_next_timer(e), T0 + 30000, "only a's lease is left");
    complete_ok(e, a, T0 + 2);
    cr_assert_eq(jobq_engine_job_delete(e, a, T0 + 3), 0, "final jobs can be deleted");
    cr_assert_eq(jobq_queue_count(q, JOBQ_COMPLETED), 0);
    cr_assert_eq(jobq_engine_job_total(e), 0);
    commit(e, T0 + 4);
    /* the id is free again */
    enq(e, "q", "b", 0, T0 + 5);
    jobq_engine_free(e);
}

Test(engine, delete_uncommitted_job)
{
    jobq_engine *e = eng_new(NULL, 23);
    jobq_job *a = enq(e, "q", "a", 0, T0);
    jobq_job *b = enq(e, "q", "b", 0, T0);
    jobq_batch *bt;

    cr_assert_eq(jobq_engine_job_delete(e, a, T0), 0);
    bt = jobq_engine_take_changes(e);
    cr_assert_eq(jobq_engine_job_delete(e, b, T0), 0); /* deleted while its batch is in flight */
    jobq_engine_committed(e, T0);
    jobq_batch_free(bt);
    commit(e, T0);
    cr_assert_null(fetch1(e, "q", T0));
    cr_assert_eq(jobq_engine_job_total(e), 0);
    cr_assert_eq(jobq_queue_count(jobq_engine_queue(e, "q"), JOBQ_WAITING), 0);
    jobq_engine_free(e);
}

Test(engine, patch_run_at)
{
    jobq_engine *e = eng_new(NULL, 24);
    jobq_job *s = enq_json(e, "q", "{\"id\":\"s\",\"delay_ms\":10000}", T0);
    jobq_job *w = enq(e, "q", "w", 0, T0);

    commit(e, T0);
    cr_assert_eq(jobq_engine_job_patch(e, w, 0, 0, 1, T0 + 5, T0), JOBQ_ESTATE,
                 "run_at of a waiting job");
    cr_assert_eq(jobq_engine_job_patch(e, s, 0, 0, 1, T0 + 3000, T0), 0);
    cr_assert_eq(job_run_at(e, s, T0), T0 + 3000);
    cr_assert_eq(jobq_engine_next_timer(e), T0 + 3000);
    jobq_engine_tick(e, T0 + 2999);
    cr_assert_eq(jobq_job_state(s), JOBQ_SCHEDULED);
    cr_assert_eq(jobq_engine_job_patch(e, s, 1, 50, 1, T0 + 20000, T0 + 2999), 0);
    jobq_engine_tick(e, T0 + 3000);
    cr_assert_eq(jobq_job_state(s), JOBQ_SCHEDULED, "old timer fired after run_at moved");
    cr_assert_eq(jobq_engine_job_patch(e, s, 0, 0, 1, T0 + 3001, T0 + 3001), 0);
    cr_assert_eq(jobq_job_state(s), JOBQ_WAITING, "run_at <= now: ready at once");
    cr_assert_eq(fetch1(e, "q", T0 + 3001), s, "patched priority 50 first");
    cr_assert_eq(fetch1(e, "q", T0 + 3001), w);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- clear, clean, recover */

Test(engine, clear_removes_waiting_scheduled_retrying)
{
    hook_log h;
    jobq_engine *e = eng_new(&h, 25);
    jobq_job *act = enq(e, "q", "act", 10, T0), *ret = enq(e, "q", "ret", 9, T0);
    jobq_job *done = enq(e, "q", "done", 8, T0);
    jobq_queue *q = jobq_engine_queue(e, "q");

    enq(e, "q", "w1", 0, T0);
    enq(e, "q", "w2", 0, T0);
    enq_json(e, "q", "{\"id\":\"s\",\"delay_ms\":100}", T0);
    enq(e, "other", "o", 0, T0);
    commit(e, T0);
    enq(e, "q", "pending", 0, T0); /* not committed yet */
    cr_assert_eq(fetch1(e, "q", T0), act);
    cr_assert_eq(fetch1(e, "q", T0), ret);
    cr_assert_eq(fetch1(e, "q", T0), done);
    complete_ok(e, done, T0);
    fail_ok(e, ret, "x", 1, 5000, T0);
    cr_assert_eq(jobq_job_state(ret), JOBQ_RETRYING);

    cr_assert_eq(jobq_engine_queue_clear(e, q, T0 + 1), 5);
    cr_assert_eq(h.deleted, 5);
    cr_assert_eq(jobq_queue_count(q, JOBQ_WAITING), 0);
    cr_assert_eq(jobq_queue_count(q, JOBQ_SCHEDULED), 0);
    cr_assert_eq(jobq_queue_count(q, JOBQ_RETRYING), 0);
    cr_assert_eq(jobq_queue_count(q, JOBQ_ACTIVE), 1);
    cr_assert_eq(jobq_queue_count(q, JOBQ_COMPLETED), 1);
    cr_assert_null(jobq_engine_job(e, "pending"));
    cr_assert_null(jobq_engine_job(e, "ret"));
    cr_assert_not_null(jobq_engine_job(e, "o"), "clear touched another queue");
    commit(e, T0 + 2);
    jobq_engine_tick(e, T0 + 10000);
    cr_assert_null(fetch1(e, "q", T0 + 10000));
    cr_assert_eq(jobq_engine_queue_clear(e, q, T0 + 3), 0);
    jobq_engine_free(e);
}

Test(engine, clean_final_jobs_by_age_and_keep)
{
    jobq_engine *e = eng_new(NULL, 26);
    jobq_queue *q;
    jobq_job *j[6];
    char id[16];

    for (int i = 0; i < 6; i++) {
        snprintf(id, sizeof id, "c%d", i);
        j[i] = enq(e, "q", id, 0, T0);
    }
    q = jobq_engine_queue(e, "q");
    commit(e, T0);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(fetch1(e, "q", T0 + 1000 * i), j[i]);
        complete_ok(e, j[i], T0 + 1000 * i); /* finished at T0, T0+1000, ... T0+5000 */
    }
    /* no age limit, keep the newest 4: c0 and c1 go */
    cr_assert_eq(jobq_engine_queue_clean(e, q, JOBQ_COMPLETED, 0, 4, T0 + 5000), 2);
    cr_assert_null(jobq_engine_job(e, "c0"));
    cr_assert_null(jobq_engine_job(e, "c1"));
    cr_assert_eq(jobq_engine_queue_clean(e, q, JOBQ_COMPLETED, 2500, 0, T0 + 5000), 1);
    cr_assert_null(jobq_engine_job(e, "c2"));
    cr_assert_not_null(jobq_engine_job(e, "c3"));
    cr_assert_eq(jobq_engine_queue_clean(e, q, JOBQ_FAILED, 0, 0, T0 + 5000), 0);
    cr_assert_eq(jobq_engine_queue_clean(e, q, JOBQ_COMPLETED, 0, 0, T0 + 5000), 3);
    cr_assert_eq(jobq_queue_count(q, JOBQ_COMPLETED), 0);
    cr_assert_eq(jobq_engine_job_total(e), 0);
    jobq_engine_free(e);
}

Test(engine, recover_by_worker_and_by_staleness)
{
    jobq_engine *e = eng_new(NULL, 27);
    jobq_job *a = enq(e, "q", "a", 0, T0), *b = enq(e, "q", "b", 0, T0);
    jobq_job *c = enq(e, "q", "c", 0, T0), *out = NULL;
    jobq_queue *q = jobq_engine_queue(e, "q");
    lease_buf la, lb;

    commit(e, T0);
    cr_assert_eq(fetchq(e, "q", 1, "w1", T0, &out), 1);
    cr_assert_eq(out, a);
    cr_assert_eq(fetchq(e, "q", 1, "w2", T0, &out), 1);
    cr_assert_eq(out, b);
    cr_assert_eq(fetchq(e, "q", 1, "w3", T0, &out), 1);
    cr_assert_eq(out, c);
    la = lease_of(a);
    lb = lease_of(b);

    cr_assert_eq(jobq_engine_queue_recover(e, q, "w1", 0, T0 + 10), 1);
    cr_assert_eq(jobq_job_state(a), JOBQ_WAITING);
    cr_assert_eq(jobq_job_attempt(a), 0, "recover spends no attempt");
    cr_assert_eq(job_int(e, a, "stalls", T0 + 10), 0, "recover is not a stall");
    cr_assert_eq(complete_with(e, a, la.s, T0 + 11), JOBQ_ELEASE);
    cr_assert_eq(jobq_job_state(b), JOBQ_ACTIVE);

    /* w2 seen recently, w3 long ago */
    jobq_engine_worker_seen(e, "w2", NULL, 0, T0 + 50000);
    jobq_engine_worker_seen(e, "w3", NULL, 0, T0 + 1000);
    cr_assert_eq(jobq_engine_queue_recover(e, q, NULL, 30000, T0 + 60000), 1);
    cr_assert_eq(jobq_job_state(c), JOBQ_WAITING);
    cr_assert_eq(jobq_job_state(b), JOBQ_ACTIVE);
    cr_assert_eq(complete_with(e, b, lb.s, T0 + 60001), 0);
    cr_assert_eq(fetch1(e, "q", T0 + 60002), a);
    cr_assert_eq(fetch1(e, "q", T0 + 60002), c);
    jobq_engine_free(e);
}

Test(engine, recover_cancel_requested_job_is_cancelled)
{
    jobq_engine *e = eng_new(NULL, 28);
    jobq_job *a = enq(e, "q", "a", 0, T0), *out = NULL;

    lease_buf l;
    jobq_failure f = failure("x", 1, -1);
    int repeat = -1;

    commit(e, T0);
    cr_assert_eq(fetchq(e, "q", 1, "w1", T0, &out), 1);
    l = lease_of(a);
    jobq_engine_job_cancel(e, a, T0 + 1);
    cr_assert_eq(jobq_engine_queue_recover(e, jobq_engine_queue(e, "q"), "w1", 0, T0 + 2), 1);
    cr_assert_eq(jobq_job_state(a), JOBQ_CANCELLED);
    /* the recovered worker is fenced off: its late report is refused, not taken as a repeat */
    cr_assert_eq(jobq_engine_fail(e, a, l.s, &f, T0 + 3, &repeat), JOBQ_ELEASE);
    cr_assert_eq(complete_with(e, a, l.s, T0 + 3), JOBQ_ELEASE);
    jobq_engine_free(e);
}

Test(engine, queue_delete_refused_with_active_unless_forced)
{
    hook_log h;
    jobq_engine *e = eng_new(&h, 29);
    jobq_job *a = enq(e, "q", "a", 0, T0);
    jobq_queue *q = jobq_engine_queue(e, "q");
    jobq_batch *b;

    enq(e, "q", "b", 0, T0);
    enq_json(e, "q", "{\"id\":\"s\",\"delay_ms\":100}", T0);
    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), a);
    cr_assert_eq(jobq_engine_queue_delete(e, q, 0, T0 + 1), JOBQ_ESTATE);
    cr_assert_eq(jobq_engine_queue(e, "q"), q);
    cr_assert_eq(jobq_engine_queue_delete(e, q, 1, T0 + 1), 0);
    cr_assert_null(jobq_engine_queue(e, "q"));
    cr_assert_null(jobq_engine_job(e, "a"));
    cr_assert_eq(jobq_engine_job_total(e), 0);
    cr_assert_eq(h.deleted, 3);
    cr_assert_eq(jobq_engine_next_timer(e), INT64_MAX);
    b = jobq_engine_take_changes(e);
    cr_assert_eq(rec_count(b, JOBQ_REC_JOB_DELETE), 3);
    cr_assert_eq(rec_count(b, JOBQ_REC_QUEUE_DELETE), 1);
    cr_assert_eq(rec_count(b, JOBQ_REC_QUEUE_PUT), 0, "deleted queue written back");
    jobq_engine_committed(e, T0 + 2);
    jobq_batch_free(b);
    /* the name is free again */
    enq(e, "q", "a", 0, T0 + 3);
    cr_assert_neq(jobq_engine_queue(e, "q"), NULL);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- listing */

static size_t list_ids(const jobq_engine *e, const jobq_job_filter *f, const char *cursor,
                       size_t limit, GString *ids, char next[JOBQ_CURSOR_MAX])
{
    jobq_job *out[64];
    size_t n = jobq_engine_job_list(e, f, cursor, limit, out, next);

    g_string_truncate(ids, 0);
    for (size_t i = 0; i < n; i++)
        g_string_append_printf(ids, "%s%s", i ? "," : "", jobq_job_id(out[i]));
    return n;
}

Test(engine, list_filters_newest_first)
{
    jobq_engine *e = eng_new(NULL, 30);
    GString *ids = g_string_new(NULL);
    char next[JOBQ_CURSOR_MAX];
    jobq_job_filter f = {0};
    jobq_job *x;

    enq_json(e, "q1", "{\"id\":\"a\",\"group\":\"g1\",\"tags\":{\"k\":\"v\"}}", T0);
    enq_json(e, "q2", "{\"id\":\"b\",\"group\":\"g2\",\"project\":\"p\"}", T0);
    enq_json(e, "q1", "{\"id\":\"c\",\"group\":\"g1\",\"tags\":{\"k\":\"w\"}}", T0);
    enq_json(e, "q1", "{\"id\":\"d\",\"project\":\"p\",\"tags\":{\"k\":\"v\",\"z\":\"1\"}}", T0);
    enq_json(e, "q2", "{\"id\":\"e\",\"delay_ms\":1000}", T0);
    commit(e, T0);
    x = fetch1(e, "q1", T0);
    cr_assert_str_eq(jobq_job_id(x), "a");

    cr_assert_eq(list_ids(e, &f, NULL, 50, ids, next), 5);
    cr_assert_str_eq(ids->str, "e,d,c,b,a");
    cr_assert_str_eq(next, "");
    f.queue = jobq_engine_queue(e, "q1");
    list_ids(e, &f, NULL, 50, ids, next);
    cr_assert_str_eq(ids->str, "d,c,a");
    f.states = 1u << JOBQ_WAITING;
    list_ids(e, &f, NULL, 50, ids, next);
    cr_assert_str_eq(ids->str, "d,c");
    f.states = (1u << JOBQ_ACTIVE) | (1u << JOBQ_SCHEDULED);
    list_ids(e, &f, NULL, 50, ids, next);
    cr_assert_str_eq(ids->str, "a");
    f.queue = NULL;
    list_ids(e, &f, NULL, 50, ids, next);
    cr_assert_str_eq(ids->str, "e,a");
    f.states = 0;
    f.group = "g1";
    list_ids(e, &f, NULL, 50, ids, next);
    cr_assert_str_eq(ids->str, "c,a");
    f.group = NULL;
    f.project = "p";
    list_ids(e, &f, NULL, 50, ids, next);
    cr_assert_str_eq(ids->str, "d,b");
    f.project = NULL;
    f.tag_key = "k";
    f.tag_value = "v";
    list_ids(e, &f, NULL, 50, ids, next);
    cr_assert_str_eq(ids->str, "d,a");
    f.tag_key = "z";
    f.tag_value = "1";
    list_ids(e, &f, NULL, 50, ids, next);
    cr_assert_str_eq(ids->str, "d");
    f.tag_key = NULL;
    f.queue = jobq_engine_queue(e, "q2");
    f.states = 1u << JOBQ_COMPLETED;
    cr_assert_eq(list_ids(e, &f, NULL, 50, ids, next), 0);
    cr_assert_str_eq(next, "");
    g_string_free(ids, TRUE);
    jobq_engine_free(e);
}

Test(engine, list_cursor_paging)
{
    jobq_engine *e = eng_new(NULL, 31);
    GString *ids = g_string_new(NULL), *all = g_string_new(NULL);
    char next[JOBQ_CURSOR_MAX], cur[JOBQ_CURSOR_MAX];
    jobq_job_filter f = {0};
    char id[16];
    size_t n, pages = 0;

    for (int i = 0; i < 25; i++) {
        snprintf(id, sizeof id, "j%02d", i);
        enq(e, i % 2 ? "odd" : "even", id, 0, T0 + i);
    }
    commit(e, T0 + 100);
    cur[0] = '\0';
    do {
        n = list_ids(e, &f, cur[0] ? cur : NULL, 10, ids, next);
        g_string_append_printf(all, "%s%s", all->len ? "," : "", ids->str);
        pages++;
        cr_assert_leq(n, 10);
        g_strlcpy(cur, next, sizeof cur);
    } while (cur[0]);
    cr_assert_eq(pages, 3);
    cr_assert_str_eq(all->str, "j24,j23,j22,j21,j20,j19,j18,j17,j16,j15,j14,j13,j12,j11,"
                               "j10,j09,j08,j07,j06,j05,j04,j03,j02,j01,j00");

    /* a filtered walk with a cursor whose job is deleted before the next page */
    f.queue = jobq_engine_queue(e, "odd");
    n = list_ids(e, &f, NULL, 4, ids, next);
    cr_assert_eq(n, 4);
    cr_assert_str_eq(ids->str, "j23,j21,j19,j17");
    cr_assert_neq(next[0], '\0');
    cr_assert_eq(jobq_engine_job_delete(e, jobq_engine_job(e, "j17"), T0 + 200), 0);
    cr_assert_eq(jobq_engine_job_delete(e, jobq_engine_job(e, "j15"), T0 + 200), 0);
    g_strlcpy(cur, next, sizeof cur);
    n = list_ids(e, &f, cur, 4, ids, next);
    cr_assert_str_eq(ids->str, "j13,j11,j09,j07");
    g_strlcpy(cur, next, sizeof cur);
    n = list_ids(e, &f, cur, 4, ids, next);
    cr_assert_str_eq(ids->str, "j05,j03,j01");
    cr_assert_str_eq(next, "", "last page has no next cursor");
    g_string_free(ids, TRUE);
    g_string_free(all, TRUE);
    jobq_engine_free(e);
}

/* A page of exactly `limit` jobs with nothing after it has no next cursor; limit 0 returns
 * nothing and must not read out[-1]. */
Test(engine, list_exact_page_and_limit_zero)
{
    jobq_engine *e = eng_new(NULL, 32);
    GString *ids = g_string_new(NULL);
    char next[JOBQ_CURSOR_MAX];
    jobq_job_filter f = {0};

    enq(e, "q", "a", 0, T0);
    enq(e, "q", "b", 0, T0);
    cr_assert_eq(list_ids(e, &f, NULL, 2, ids, next), 2);
    cr_assert_str_eq(next, "");
    cr_assert_eq(list_ids(e, &f, NULL, 1, ids, next), 1);
    cr_assert_str_eq(ids->str, "b");
    cr_assert_neq(next[0], '\0');
    cr_assert_eq(list_ids(e, &f, NULL, 0, ids, next), 0);
    g_string_free(ids, TRUE);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- workers */

static int64_t worker_active(const jobq_engine *e, const char *id, int64_t now)
{
    json_t *a = jobq_engine_workers_json(e, 60000, now), *w;
    size_t i;
    int64_t r = -1;

    json_array_foreach(a, i, w)
    {
        if (!strcmp(json_string_value(json_object_get(w, "id")), id))
            r = json_integer_value(json_object_get(w, "active_jobs"));
    }
    json_decref(a);
    return r;
}

Test(engine, workers_count_active_jobs)
{
    jobq_engine *e = eng_new(NULL, 33);
    jobq_job *out[3];
    const char *qs[] = {"q"};

    for (int i = 0; i < 3; i++)
        enq(e, "q", NULL, 0, T0);
    commit(e, T0);
    jobq_engine_worker_seen(e, "w1", qs, 1, T0);
    cr_assert_eq(fetchq(e, "q", 3, "w1", T0, out), 3);
    cr_assert_eq(worker_active(e, "w1", T0), 3);
    complete_ok(e, out[0], T0 + 1);
    fail_ok(e, out[1], "x", 1, 1000, T0 + 1);
    cr_assert_eq(worker_active(e, "w1", T0 + 1), 1);
    jobq_engine_tick(e, T0 + 30000); /* out[2]'s lease expires: stall */
    cr_assert_eq(jobq_job_state(out[2]), JOBQ_WAITING);
    cr_assert_eq(worker_active(e, "w1", T0 + 30000), 0);
    cr_assert_eq(worker_active(e, "nobody", T0), -1);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- estimates and stats */

Test(engine, estimated_start_and_queue_stats)
{
    jobq_engine *e = eng_new(NULL, 34);
    int64_t m0 = (T0 / 60000 + 1) * 60000; /* a minute boundary */
    jobq_job *done[60], *last = NULL, *f;
    json_t *st;
    int64_t est;

    for (int i = 0; i < 60; i++)
        done[i] = enq(e, "q", NULL, 0, m0);
    f = enq(e, "q", "f", 0, m0);
    for (int i = 0; i < 10; i++)
        last = enq(e, "q", NULL, 0, m0);
    commit(e, m0);
    cr_assert_eq(job_int(e, last, "position", m0), 70);
    cr_assert_eq(job_int(e, last, "estimated_start_ms", m0), -1,
                 "no throughput yet: estimated_start_ms must be null");
    /* 60 completions in one minute: one per second */
    for (int i = 0; i < 60; i++) {
        cr_assert_eq(fetch1(e, "q", m0 + 1000 * i), done[i]);
        complete_ok(e, done[i], m0 + 1000 * i);
    }
    cr_assert_eq(fetch1(e, "q", m0 + 59500), f);
    fail_ok(e, f, "x", 0, -1, m0 + 59500);
    /* at the start of the next minute: 10 waiting, the last one has 9 ahead of it; at one
     * job a second it starts in 9 s (or 10 s, counting its own turn) */
    cr_assert_eq(jobq_engine_job_position(e, last), 9);
    est = job_int(e, last, "estimated_start_ms", m0 + 60000);
    cr_assert(est >= 9000 && est <= 10000, "estimated_start_ms %" PRId64 ", want 9..10 s", est);
    cr_assert_eq(job_int(e, f, "estimated_start_ms", m0 + 60000), -1, "null when not waiting");

    st = jobq_engine_queue_stats(e, jobq_engine_queue(e, "q"), m0 + 60000);
    cr_assert_eq(json_integer_value(json_object_get(st, "processed")), 60);
    cr_assert_eq(json_integer_value(json_object_get(st, "failed")), 1);
    cr_assert_eq(json_integer_value(json_object_get(st, "enqueued")), 71);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(st, "counts"), "waiting")), 10);
    cr_assert_float_eq(json_real_value(json_object_get(st, "success_rate")), 100.0 * 60 / 61, 1e-9);
    cr_assert_float_eq(json_real_value(json_object_get(st, "throughput_per_min")), 60.0, 1e-6);
    cr_assert(json_is_null(json_object_get(st, "utilization_percent")));
    json_decref(st);
    st = jobq_engine_stats(e, m0 + 60000);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(st, "total"), "processed")),
                 60);
    json_decref(st);
    jobq_engine_free(e);
}
