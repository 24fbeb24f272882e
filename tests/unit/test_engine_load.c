/*
 * test_engine_load.c — what the engine writes down and reads back: the records of
 * take_changes (JOB_INSERT, JOB_UPDATE, JOB_DELETE, history, logs, queue rows), the commit
 * protocol, and loading a fresh engine from those records (jobq_engine_loader +
 * jobq_engine_load_done): active jobs re-queued without spending an attempt, old leases
 * refused, everything else as it was.
 */
#include "helpers.h"

/* ---------------------------------------------------------------- change records */

Test(engine, changes_insert_then_update_with_history)
{
    jobq_engine *e = eng_new(NULL, 200);
    jobq_job *a = enq_json(e, "q", "{\"id\":\"a\",\"data\":{\"x\":1},\"priority\":7}", T0);
    jobq_job *out = NULL;
    jobq_batch *b;
    const jobq_rec *r;
    int64_t seq = jobq_job_seq(a);
    long i, h;

    b = jobq_engine_take_changes(e);
    cr_assert_not_null(b);
    i = rec_find(b, JOBQ_REC_JOB_INSERT, seq, 0);
    cr_assert_geq(i, 0, "no JOB_INSERT for a new job");
    cr_assert_eq(rec_find(b, JOBQ_REC_JOB_UPDATE, seq, 0), -1);
    r = &b->recs[i];
    cr_assert_str_eq(r->u.job.id, "a");
    cr_assert_str_eq(r->u.job.queue_id, jobq_queue_id(jobq_engine_queue(e, "q")));
    cr_assert_str_eq(r->u.job.data, "{\"x\":1}");
    cr_assert_not_null(r->u.job.opts);
    cr_assert_eq(r->u.job.state, JOBQ_WAITING);
    cr_assert_eq(r->u.job.priority, 7);
    cr_assert_eq(r->u.job.max_attempts, 3);
    cr_assert_eq(r->u.job.created_at, T0);
    cr_assert_eq(r->u.job.hist_n, 1);
    h = rec_find(b, JOBQ_REC_HIST, seq, 0);
    cr_assert_geq(h, 0, "no history record for the enqueue");
    cr_assert_eq(b->recs[h].u.hist.from_state, -1);
    cr_assert_eq(b->recs[h].u.hist.to_state, JOBQ_WAITING);
    cr_assert_eq(b->recs[h].u.hist.n, 0);
    cr_assert_eq(b->recs[h].u.hist.at, T0);
    cr_assert_geq(rec_find(b, JOBQ_REC_QUEUE_PUT, 0, 0), 0, "auto-created queue not written");
    jobq_engine_committed(e, T0);
    jobq_batch_free(b);
    cr_assert_eq(jobq_engine_has_changes(e), 0);
    cr_assert_null(jobq_engine_take_changes(e), "an empty take must answer NULL");

    cr_assert_eq(fetchq(e, "q", 1, "w9", T0 + 1, &out), 1);
    b = jobq_engine_take_changes(e);
    cr_assert_eq(rec_find(b, JOBQ_REC_JOB_INSERT, seq, 0), -1, "second INSERT of a job");
    i = rec_find(b, JOBQ_REC_JOB_UPDATE, seq, 0);
    cr_assert_geq(i, 0);
    r = &b->recs[i];
    cr_assert_eq(r->u.job.state, JOBQ_ACTIVE);
    cr_assert_eq(r->u.job.started_at, T0 + 1);
    cr_assert_str_eq(r->u.job.worker, "w9");
    cr_assert_eq(r->u.job.hist_n, 2);
    h = rec_find(b, JOBQ_REC_HIST, seq, 0);
    cr_assert_geq(h, 0);
    cr_assert_eq(b->recs[h].u.hist.from_state, JOBQ_WAITING);
    cr_assert_eq(b->recs[h].u.hist.to_state, JOBQ_ACTIVE);
    cr_assert_eq(b->recs[h].u.hist.n, 1);
    cr_assert_str_eq(b->recs[h].u.hist.worker, "w9");
    jobq_engine_committed(e, T0 + 1);
    jobq_batch_free(b);

    fail_ok(e, a, "x", 1, 0, T0 + 2); /* active → waiting (retry_in 0) */
    cr_assert_eq(fetch1(e, "q", T0 + 3), a);
    complete_ok(e, a, T0 + 4); /* several changes, one batch */
    b = jobq_engine_take_changes(e);
    cr_assert_eq(rec_count(b, JOBQ_REC_JOB_UPDATE), 1, "one UPDATE per changed job");
    i = rec_find(b, JOBQ_REC_JOB_UPDATE, seq, 0);
    r = &b->recs[i];
    cr_assert_eq(r->u.job.state, JOBQ_COMPLETED);
    cr_assert_eq(r->u.job.attempt, 2);
    cr_assert_eq(r->u.job.finished_at, T0 + 4);
    cr_assert_str_eq(r->u.job.result, "{\"ok\":true}");
    cr_assert_eq(r->u.job.hist_n, 5);
    {
        static const int want[][2] = {{JOBQ_ACTIVE, JOBQ_WAITING},
                                      {JOBQ_WAITING, JOBQ_ACTIVE},
                                      {JOBQ_ACTIVE, JOBQ_COMPLETED}};
        size_t k = 0;
        for (h = rec_find(b, JOBQ_REC_HIST, seq, 0); h >= 0;
             h = rec_find(b, JOBQ_REC_HIST, seq, (size_t)h + 1), k++) {
            cr_assert_lt(k, 3);
            cr_assert_eq(b->recs[h].u.hist.from_state, want[k][0], "hist %zu from", k);
            cr_assert_eq(b->recs[h].u.hist.to_state, want[k][1], "hist %zu to", k);
            cr_assert_eq(b->recs[h].u.hist.n, (int)k + 2);
        }
        cr_assert_eq(k, 3);
    }
    jobq_engine_committed(e, T0 + 4);
    jobq_batch_free(b);
    jobq_engine_free(e);
}

Test(engine, changes_retrying_history_has_error)
{
    jobq_engine *e = eng_new(NULL, 201);
    jobq_job *a = enq(e, "q", "a", 0, T0);
    jobq_batch *b;
    long h;

    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), a);
    commit(e, T0);
    fail_ok(e, a, "provider", 1, 5000, T0 + 1);
    b = jobq_engine_take_changes(e);
    h = rec_find(b, JOBQ_REC_HIST, jobq_job_seq(a), 0);
    cr_assert_geq(h, 0);
    cr_assert_eq(b->recs[h].u.hist.from_state, JOBQ_ACTIVE);
    cr_assert_eq(b->recs[h].u.hist.to_state, JOBQ_RETRYING);
    cr_assert_eq(b->recs[h].u.hist.attempt, 1);
    cr_assert_not_null(b->recs[h].u.hist.error);
    cr_assert_not_null(strstr(b->recs[h].u.hist.error, "\"provider\""));
    cr_assert_eq(b->recs[rec_find(b, JOBQ_REC_JOB_UPDATE, jobq_job_seq(a), 0)].u.job.run_at,
                 T0 + 5001);
    jobq_engine_committed(e, T0 + 1);
    jobq_batch_free(b);
    jobq_engine_free(e);
}

/* A failed attempt retried at once (retry_in_ms 0, or a backoff delay of 0) goes active →
 * waiting; its history entry must still carry the attempt's error, as active → retrying does
 * (docs/api.md: history is [{"at","from","to","attempt","worker","error"}]). */
Test(engine, changes_history_error_on_immediate_retry)
{
    jobq_engine *e = eng_new(NULL, 214);
    jobq_job *a = enq(e, "q", "a", 0, T0);
    jobq_batch *b;
    long h;

    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), a);
    commit(e, T0);
    fail_ok(e, a, "provider", 1, 0, T0 + 1);
    cr_assert_eq(jobq_job_state(a), JOBQ_WAITING);
    b = jobq_engine_take_changes(e);
    h = rec_find(b, JOBQ_REC_HIST, jobq_job_seq(a), 0);
    cr_assert_geq(h, 0);
    cr_assert_eq(b->recs[h].u.hist.from_state, JOBQ_ACTIVE);
    cr_assert_eq(b->recs[h].u.hist.to_state, JOBQ_WAITING);
    cr_assert_eq(b->recs[h].u.hist.attempt, 1);
    cr_assert_not_null(b->recs[h].u.hist.error, "failed attempt's error missing from history");
    jobq_engine_committed(e, T0 + 1);
    jobq_batch_free(b);
    jobq_engine_free(e);
}

Test(engine, changes_insert_of_job_changed_before_take)
{
    jobq_engine *e = eng_new(NULL, 202);
    jobq_job *a = enq(e, "q", "a", 0, T0);
    jobq_batch *b;
    long i;

    cr_assert_eq(jobq_engine_job_cancel(e, a, T0), 0);
    b = jobq_engine_take_changes(e);
    cr_assert_eq(rec_count(b, JOBQ_REC_JOB_INSERT), 1);
    cr_assert_eq(rec_count(b, JOBQ_REC_JOB_UPDATE), 0);
    i = rec_find(b, JOBQ_REC_JOB_INSERT, jobq_job_seq(a), 0);
    cr_assert_eq(b->recs[i].u.job.state, JOBQ_CANCELLED);
    cr_assert_eq(b->recs[i].u.job.hist_n, 2);
    cr_assert_eq(rec_count(b, JOBQ_REC_HIST), 2);
    jobq_engine_committed(e, T0);
    jobq_batch_free(b);
    jobq_engine_free(e);
}

Test(engine, changes_delete_records)
{
    jobq_engine *e = eng_new(NULL, 203);
    jobq_queue_opts o;
    jobq_queue *q = NULL;
    jobq_job *a, *c1, *c2;
    jobq_batch *b;
    int64_t sa, s1;

    jobq_queue_opts_default(&o);
    o.keep_completed.count = 1;
    cr_assert_eq(jobq_engine_queue_create(e, "q", &o, T0, &q), 0);
    a = enq(e, "q", "a", 0, T0);
    c1 = enq(e, "q", "c1", 1, T0);
    c2 = enq(e, "q", "c2", 1, T0);
    sa = jobq_job_seq(a);
    s1 = jobq_job_seq(c1);
    commit(e, T0);
    cr_assert_eq(jobq_engine_job_delete(e, a, T0 + 1), 0);
    cr_assert_eq(fetch1(e, "q", T0 + 1), c1);
    complete_ok(e, c1, T0 + 1);
    cr_assert_eq(fetch1(e, "q", T0 + 1), c2);
    complete_ok(e, c2, T0 + 2); /* retention (keep 1) removes c1 */
    b = jobq_engine_take_changes(e);
    cr_assert_geq(rec_find(b, JOBQ_REC_JOB_DELETE, sa, 0), 0, "no JOB_DELETE for delete");
    cr_assert_geq(rec_find(b, JOBQ_REC_JOB_DELETE, s1, 0), 0, "no JOB_DELETE for retention");
    cr_assert_eq(rec_find(b, JOBQ_REC_JOB_UPDATE, sa, 0), -1);
    cr_assert_eq(rec_find(b, JOBQ_REC_JOB_UPDATE, s1, 0), -1);
    cr_assert_eq(rec_count(b, JOBQ_REC_JOB_DELETE), 2);
    jobq_engine_committed(e, T0 + 2);
    jobq_batch_free(b);
    jobq_engine_free(e);
}

Test(engine, changes_queue_rows)
{
    jobq_engine *e = eng_new(NULL, 204);
    jobq_queue_opts o;
    jobq_queue *q = NULL;
    jobq_batch *b;
    json_t *cfg;
    long i;

    jobq_queue_opts_default(&o);
    o.concurrency = 4;
    o.description = g_strdup("desc");
    cr_assert_eq(jobq_engine_queue_create(e, "q", &o, T0, &q), 0);
    jobq_queue_opts_clear(&o);
    b = jobq_engine_take_changes(e);
    i = rec_find(b, JOBQ_REC_QUEUE_PUT, 0, 0);
    cr_assert_geq(i, 0);
    cr_assert_str_eq(b->recs[i].u.queue.name, "q");
    cr_assert_str_eq(b->recs[i].u.queue.id, jobq_queue_id(q));
    cr_assert_eq(b->recs[i].u.queue.created_at, T0);
    cfg = json_loads(b->recs[i].u.queue.config, 0, NULL);
    cr_assert_not_null(cfg, "queue config is not JSON");
    cr_assert_eq(json_integer_value(json_object_get(cfg, "concurrency")), 4);
    cr_assert_str_eq(json_string_value(json_object_get(cfg, "description")), "desc");
    cr_assert_str_eq(json_string_value(json_object_get(cfg, "status")), "active");
    json_decref(cfg);
    jobq_engine_committed(e, T0);
    jobq_batch_free(b);

    jobq_engine_queue_pause(e, q, T0 + 1);
    b = jobq_engine_take_changes(e);
    i = rec_find(b, JOBQ_REC_QUEUE_PUT, 0, 0);
    cr_assert_geq(i, 0, "pause not written");
    cfg = json_loads(b->recs[i].u.queue.config, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(cfg, "status")), "paused");
    json_decref(cfg);
    jobq_engine_committed(e, T0 + 1);
    jobq_batch_free(b);
    jobq_engine_free(e);
}

Test(engine, changes_checkpoint_progress_logs)
{
    jobq_engine_config cfg = {.seed = 205, .max_log_lines = 3};
    jobq_engine *e = jobq_engine_new(&cfg, NULL);
    jobq_job *a = enq(e, "q", "a", 0, T0);
    const char *lines[] = {"l0", "l1", "l2", "l3", "l4"};
    lease_buf l;
    jobq_batch *b;
    int durable = -1;
    long i;

    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), a);
    commit(e, T0);
    l = lease_of(a);
    cr_assert_eq(jobq_engine_heartbeat(e, a, l.s, 0, NULL, T0 + 1, &durable), 0);
    cr_assert_eq(durable, 0);
    cr_assert_eq(jobq_engine_has_changes(e), 0, "a bare heartbeat wrote something");
    cr_assert_eq(jobq_engine_heartbeat(e, a, l.s, 0, "{\"step\":3}", T0 + 2, &durable), 0);
    cr_assert_eq(durable, 1, "checkpoint must be durable before the answer");
    cr_assert_eq(jobq_engine_progress(e, a, l.s, "{\"percent\":40}", NULL, T0 + 3, &durable), 0);
    cr_assert_eq(jobq_engine_logs(e, a, l.s, lines, 5, T0 + 4), 0);
    cr_assert_eq(jobq_engine_logs(e, a, "0123456789abcdef", lines, 1, T0 + 4), JOBQ_ELEASE);
    b = jobq_engine_take_changes(e);
    i = rec_find(b, JOBQ_REC_JOB_UPDATE, jobq_job_seq(a), 0);
    cr_assert_geq(i, 0);
    cr_assert_str_eq(b->recs[i].u.job.checkpoint, "{\"step\":3}");
    cr_assert_str_eq(b->recs[i].u.job.progress, "{\"percent\":40}");
    cr_assert_eq(b->recs[i].u.job.log_n, 5);
    cr_assert_eq(rec_count(b, JOBQ_REC_LOG), 5);
    i = rec_find(b, JOBQ_REC_LOG, jobq_job_seq(a), 0);
    cr_assert_str_eq(b->recs[i].u.log.line, "l0");
    cr_assert_eq(b->recs[i].u.log.attempt, 1);
    cr_assert_eq(b->recs[i].u.log.n, 0);
    i = rec_find(b, JOBQ_REC_LOG_TRIM, jobq_job_seq(a), 0);
    cr_assert_geq(i, 0, "past max_log_lines the oldest lines must be trimmed");
    cr_assert_eq(b->recs[i].u.log.n, 2, "keep lines 2..4");
    jobq_engine_committed(e, T0 + 4);
    jobq_batch_free(b);
    cr_assert_eq(jobq_engine_log_attempt(a), 1);
    jobq_engine_free(e);
}

/* engine.h: "committed() tells the engine the last taken batch is durable", and a failed
 * batch is kept by the caller and submitted again later, so a second batch can be taken
 * while the first is not durable yet. Batches are applied in order (store.h), so once the
 * second is durable the first is too: the jobs of both must become fetchable. */
Test(engine, commit_after_resubmitted_batch_releases_its_jobs)
{
    jobq_engine *e = eng_new(NULL, 206);
    jobq_job *a, *b;
    jobq_batch *b1, *b2;

    a = enq(e, "q", "a", 0, T0);
    b1 = jobq_engine_take_changes(e); /* its commit fails: kept for a retry */
    b = enq(e, "q", "b", 0, T0 + 1);
    b2 = jobq_engine_take_changes(e);
    /* the caller resubmits b1, then b2; both become durable */
    jobq_engine_committed(e, T0 + 2);
    jobq_engine_committed(e, T0 + 2);
    jobq_batch_free(b1);
    jobq_batch_free(b2);
    cr_assert_eq(fetch1(e, "q", T0 + 3), a, "job of the re-submitted batch never fetchable");
    cr_assert_eq(fetch1(e, "q", T0 + 3), b);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- loading */

/* Every live job of e, rendered, as {id: job} without the fields that depend on the moment
 * (position, estimated_start_ms) or on a running attempt (lease, worker...). */
static json_t *snapshot(const jobq_engine *e, int64_t now)
{
    json_t *all = json_object();
    jobq_job_filter f = {0};
    jobq_job *out[256];
    char next[JOBQ_CURSOR_MAX];
    size_t n = jobq_engine_job_list(e, &f, NULL, 256, out, next);

    for (size_t i = 0; i < n; i++) {
        json_t *o = job_json(e, out[i], now);
        json_object_del(o, "position");
        json_object_del(o, "estimated_start_ms");
        json_object_set_new(all, jobq_job_id(out[i]), o);
    }
    return all;
}

static void opts_q(jobq_queue_opts *o)
{
    o->concurrency = 3;
    o->max_stalls = 2;
    o->max_size = 1000;
    o->defaults.priority = 4;
    o->defaults.max_attempts = 5;
    o->defaults.lease_ms = 20000;
    o->keep_completed.count = 50;
    o->keep_completed.age_ms = 3600000;
    o->type = g_strdup("INGEST");
}

static void opts_paused(jobq_queue_opts *o)
{
    o->set = JOBQ_QO_STATUS;
    o->status = JOBQ_Q_PAUSED;
}

/* Builds a store with jobs in every state; *act_lease gets the lease of the active job. */
static simstore *build_store(jobq_engine **pe, lease_buf *act_lease, int64_t *tend)
{
    jobq_engine *e = eng_new(NULL, 207);
    simstore *s = sim_new();
    jobq_job *act, *r, *c, *f, *x, *del, *out = NULL;
    int64_t t = T0;

    mkq(e, "q", t, opts_q);
    mkq(e, "p", t, opts_paused);
    commit_to(e, s, t);
    enq(e, "q", "w1", 5, t);
    enq(e, "q", "w2", 0, t);
    enq(e, "q", "w3", 5, t);
    act = enq_json(e, "q", "{\"id\":\"act\",\"priority\":5,\"data\":[1,2]}", t);
    enq_json(e, "q", "{\"id\":\"s\",\"run_at\":1700000060000,\"name\":\"later\"}", t);
    r = enq_json(e, "q",
                 "{\"id\":\"r\",\"priority\":900,\"backoff\":{\"type\":\"list\",\"delays_ms\":"
                 "[30000,45000]},\"timeout_ms\":9000,\"lease_ms\":1000}",
                 t);
    c = enq_json(e, "q",
                 "{\"id\":\"c\",\"priority\":800,\"group\":\"g\",\"project\":\"p1\","
                 "\"tags\":{\"a\":\"b\"},\"tier\":\"pro\",\"requires\":{\"gpu\":1}}",
                 t);
    f = enq(e, "q", "f", 700, t);
    x = enq(e, "q", "x", 600, t);
    del = enq(e, "q", "del", 0, t);
    enq(e, "p", "pw", 0, t);
    commit_to(e, s, t);

    t += 100;
    cr_assert_eq(fetch1(e, "q", t), r);
    fail_ok(e, r, "provider", 1, -1, t); /* retrying, run_at t + 30000 */
    cr_assert_eq(fetch1(e, "q", t), c);
    complete_ok(e, c, t + 1);
    cr_assert_eq(fetch1(e, "q", t + 2), f);
    fail_ok(e, f, "bad_input", 0, -1, t + 3);
    cr_assert_eq(jobq_engine_job_cancel(e, x, t + 4), 0);
    cr_assert_eq(jobq_engine_job_delete(e, del, t + 5), 0);
    commit_to(e, s, t + 5);

    t += 100;
    cr_assert_eq(fetch1(e, "q", t), jobq_engine_job(e, "w1"));
    fail_ok(e, jobq_engine_job(e, "w1"), "x", 1, 0, t); /* attempt 1, straight back */
    /* w1 (5, seq 1) is at the head again; take it and act under worker "old" */
    cr_assert_eq(fetchq(e, "q", 1, "old", t + 1, &out), 1);
    cr_assert_str_eq(jobq_job_id(out), "w1");
    complete_ok(e, out, t + 2);
    cr_assert_eq(fetchq(e, "q", 1, "old", t + 3, &out), 1);
    cr_assert_str_eq(jobq_job_id(out), "w3");
    fail_ok(e, out, "x", 1, 0, t + 4); /* w3: attempt 1, waiting */
    cr_assert_eq(fetchq(e, "q", 1, "old", t + 5, &out), 1);
    cr_assert_str_eq(jobq_job_id(out), "w3");
    /* put w3 back by a stall: stalls 1 */
    jobq_engine_tick(e, t + 5 + 20000);
    cr_assert_eq(jobq_job_state(out), JOBQ_WAITING);
    t += 20005;
    cr_assert_eq(fetchq(e, "q", 1, "old", t, &out), 1);
    cr_assert_str_eq(jobq_job_id(out), "w3");
    cr_assert_eq(fetchq(e, "q", 1, "old", t, &out), 1);
    cr_assert_eq(out, act);
    *act_lease = lease_of(act);
    {
        int durable;
        cr_assert_eq(jobq_engine_progress(e, act, act_lease->s, "{\"percent\":10}",
                                          "{\"resume\":\"here\"}", t + 1, &durable),
                     0);
    }
    commit_to(e, s, t + 1);
    *pe = e;
    *tend = t + 1;
    return s;
}

Test(engine, load_restores_every_state)
{
    jobq_engine *a, *b;
    lease_buf old;
    int64_t t, t1;
    simstore *s = build_store(&a, &old, &t);
    json_t *before, *after, *ja, *jb;
    const char *id;
    jobq_batch *bt;
    jobq_job *act, *w3;

    cr_assert_eq(jobq_job_state(jobq_engine_job(a, "act")), JOBQ_ACTIVE);
    cr_assert_eq(jobq_job_state(jobq_engine_job(a, "w3")), JOBQ_ACTIVE);
    before = snapshot(a, t);

    t1 = t + 1000;
    b = eng_new(NULL, 9999);
    sim_load(s, b, t1);
    after = snapshot(b, t1);
    cr_assert_eq(json_object_size(after), json_object_size(before), "job count: %zu vs %zu",
                 json_object_size(after), json_object_size(before));
    cr_assert_null(jobq_engine_job(b, "del"), "deleted job came back");
    json_object_foreach(before, id, ja)
    {
        jb = json_object_get(after, id);
        cr_assert_not_null(jb, "job %s lost", id);
        if (!strcmp(json_string_value(json_object_get(ja, "state")), "active")) {
            /* re-queued: waiting, same attempt, no lease, no worker */
            cr_assert_str_eq(json_string_value(json_object_get(jb, "state")), "waiting",
                             "active job %s not re-queued", id);
            cr_assert(json_equal(json_object_get(ja, "attempt"), json_object_get(jb, "attempt")),
                      "re-queue of %s spent an attempt", id);
            cr_assert(json_equal(json_object_get(ja, "stalls"), json_object_get(jb, "stalls")));
            cr_assert_null(json_object_get(jb, "lease"));
            cr_assert(json_is_null(json_object_get(jb, "worker")));
            cr_assert(
                json_equal(json_object_get(ja, "checkpoint"), json_object_get(jb, "checkpoint")));
            continue;
        }
        json_object_del(ja, "updated_at");
        json_object_del(jb, "updated_at");
        cr_assert(json_equal(ja, jb), "job %s differs after load:\n%s\n%s", id,
                  json_dumps(ja, JSON_COMPACT), json_dumps(jb, JSON_COMPACT));
    }
    json_decref(before);
    json_decref(after);

    /* the re-queue is written down: UPDATE + history active → waiting, nothing inserted */
    act = jobq_engine_job(b, "act");
    w3 = jobq_engine_job(b, "w3");
    bt = jobq_engine_take_changes(b);
    cr_assert_not_null(bt);
    cr_assert_eq(rec_count(bt, JOBQ_REC_JOB_INSERT), 0);
    cr_assert_eq(rec_count(bt, JOBQ_REC_JOB_UPDATE), 2);
    {
        long h = rec_find(bt, JOBQ_REC_HIST, jobq_job_seq(act), 0);
        cr_assert_geq(h, 0);
        cr_assert_eq(bt->recs[h].u.hist.from_state, JOBQ_ACTIVE);
        cr_assert_eq(bt->recs[h].u.hist.to_state, JOBQ_WAITING);
        cr_assert_eq(bt->recs[h].u.hist.n, sim_job(s, jobq_job_seq(act))->hist_n);
    }
    sim_apply(s, bt);
    jobq_engine_committed(b, t1);
    jobq_batch_free(bt);

    /* positions: priority 5 first (w3 seq 3, act seq 4), then w2; r, s on timers */
    cr_assert_eq(jobq_engine_job_position(b, w3), 0);
    cr_assert_eq(jobq_engine_job_position(b, act), 1);
    cr_assert_eq(jobq_engine_job_position(b, jobq_engine_job(b, "w2")), 2);
    /* the old lease is refused, before and after the job is handed out again */
    cr_assert_eq(complete_with(b, act, old.s, t1), JOBQ_ELEASE);
    cr_assert_eq(fetch1(b, "q", t1), w3);
    cr_assert_eq(fetch1(b, "q", t1), act);
    cr_assert_str_neq(lease_of(act).s, old.s);
    cr_assert_eq(complete_with(b, act, old.s, t1 + 1), JOBQ_ELEASE);
    cr_assert_eq(jobq_job_attempt(act), 0);
    complete_ok(b, act, t1 + 2);
    cr_assert_eq(jobq_job_attempt(act), 1);
    /* the new sequence numbers continue past the loaded ones */
    {
        jobq_job *n = enq(b, "q", "new", 0, t1 + 3);
        cr_assert_gt(jobq_job_seq(n), jobq_job_seq(jobq_engine_job(b, "pw")));
    }
    jobq_engine_free(a);
    jobq_engine_free(b);
    sim_free(s);
}

Test(engine, load_resumes_timers_and_options)
{
    jobq_engine *a, *b;
    lease_buf old;
    int64_t t;
    simstore *s = build_store(&a, &old, &t);
    jobq_queue *q, *p, *qa;
    jobq_job *r, *sj;
    jobq_queue_totals ta, tb;
    json_t *ja, *jb, *da, *db;
    char type[32];

    b = eng_new(NULL, 4242);
    sim_load(s, b, t + 10);
    commit_to(b, s, t + 10);
    q = jobq_engine_queue(b, "q");
    p = jobq_engine_queue(b, "p");
    qa = jobq_engine_queue(a, "q");
    cr_assert_not_null(q);
    cr_assert_not_null(p);
    cr_assert_str_eq(jobq_queue_id(q), jobq_queue_id(qa));
    cr_assert_eq(jobq_queue_status(p), JOBQ_Q_PAUSED, "paused status lost");
    cr_assert_eq(jobq_queue_status(q), JOBQ_Q_ACTIVE);
    cr_assert_eq(jobq_queue_options(q)->concurrency, 3);
    cr_assert_eq(jobq_queue_options(q)->max_stalls, 2);
    cr_assert_eq(jobq_queue_options(q)->max_size, 1000);
    cr_assert_eq(jobq_queue_options(q)->defaults.priority, 4);
    cr_assert_eq(jobq_queue_options(q)->defaults.max_attempts, 5);
    cr_assert_eq(jobq_queue_options(q)->defaults.lease_ms, 20000);
    cr_assert_eq(jobq_queue_options(q)->keep_completed.count, 50);
    cr_assert_eq(jobq_queue_options(q)->keep_completed.age_ms, 3600000);
    cr_assert_str_eq(jobq_queue_options(q)->type, "INGEST");
    jobq_queue_get_totals(qa, &ta);
    jobq_queue_get_totals(q, &tb);
    cr_assert_eq(tb.enqueued, ta.enqueued);
    cr_assert_eq(tb.processed, ta.processed);
    cr_assert_eq(tb.failed, ta.failed);
    cr_assert_eq(tb.retried, ta.retried);
    cr_assert_eq(tb.last_processed_at, ta.last_processed_at);
    cr_assert_eq(tb.created_at, ta.created_at);
    for (int st = 0; st < JOBQ_NSTATES; st++) {
        int64_t want = jobq_queue_count(qa, st);
        if (st == JOBQ_WAITING)
            want += jobq_queue_count(qa, JOBQ_ACTIVE);
        if (st == JOBQ_ACTIVE)
            want = 0;
        cr_assert_eq(jobq_queue_count(q, st), want, "count of %s", jobq_state_name(st));
    }
    da = jobq_engine_dead_stats(a);
    db = jobq_engine_dead_stats(b);
    cr_assert(json_equal(da, db), "dead stats differ after load");
    json_decref(da);
    json_decref(db);
    ja = jobq_queue_to_json(qa);
    jb = jobq_queue_to_json(q);
    json_object_del(ja, "counts");
    json_object_del(jb, "counts");
    json_object_del(ja, "updated_at");
    json_object_del(jb, "updated_at");
    cr_assert(json_equal(ja, jb), "queue differs after load:\n%s\n%s", json_dumps(ja, JSON_COMPACT),
              json_dumps(jb, JSON_COMPACT));
    json_decref(ja);
    json_decref(jb);

    /* the retrying and the scheduled job fire at their run_at */
    r = jobq_engine_job(b, "r");
    sj = jobq_engine_job(b, "s");
    cr_assert_eq(jobq_job_state(r), JOBQ_RETRYING);
    cr_assert_eq(job_run_at(b, r, t), T0 + 100 + 30000);
    cr_assert_eq(job_run_at(b, sj, t), T0 + 60000);
    jobq_engine_tick(b, T0 + 100 + 30000);
    cr_assert_eq(jobq_job_state(r), JOBQ_WAITING);
    cr_assert_eq(jobq_job_state(sj), JOBQ_SCHEDULED);
    jobq_engine_tick(b, T0 + 60000);
    cr_assert_eq(jobq_job_state(sj), JOBQ_WAITING);
    /* the job keeps its own options: priority 900 first, list backoff, timeout, lease */
    cr_assert_eq(fetch1(b, "q", T0 + 60000), r);
    cr_assert_eq(jobq_job_lease_expires_at(r), T0 + 60000 + 1000, "job lease_ms lost");
    cr_assert_eq(jobq_engine_next_timer(b) <= T0 + 61000, 1);
    fail_ok(b, r, "x", 1, -1, T0 + 60500);
    cr_assert_eq(jobq_job_attempt(r), 2);
    cr_assert_eq(job_run_at(b, r, T0 + 60500), T0 + 60500 + 45000, "job backoff lost");
    job_error_type(b, r, T0 + 60500, type, sizeof type);
    cr_assert_str_eq(type, "x");
    /* the paused queue's job stays put */
    {
        jobq_job *o = NULL;
        cr_assert_eq(fetchq(b, "p", 1, "w", T0 + 60500, &o), 0);
    }
    jobq_engine_free(a);
    jobq_engine_free(b);
    sim_free(s);
}

Test(engine, load_requeue_of_final_lists_keeps_retention_order)
{
    jobq_engine *a = eng_new(NULL, 208), *b;
    simstore *s = sim_new();
    jobq_job *j[4];
    char id[16];

    for (int i = 0; i < 4; i++) {
        snprintf(id, sizeof id, "c%d", i);
        j[i] = enq(a, "q", id, 0, T0);
    }
    commit_to(a, s, T0);
    /* finish in the order c2, c0, c3, c1 */
    static const int order[] = {2, 0, 3, 1};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(fetch1(a, "q", T0), j[i]);
    for (int i = 0; i < 4; i++)
        complete_ok(a, j[order[i]], T0 + 10 * (i + 1));
    commit_to(a, s, T0 + 100);
    b = eng_new(NULL, 209);
    sim_load(s, b, T0 + 200);
    /* trim to 2 by clean: the two that finished first go */
    cr_assert_eq(
        jobq_engine_queue_clean(b, jobq_engine_queue(b, "q"), JOBQ_COMPLETED, 0, 2, T0 + 300), 2);
    cr_assert_null(jobq_engine_job(b, "c2"));
    cr_assert_null(jobq_engine_job(b, "c0"));
    cr_assert_not_null(jobq_engine_job(b, "c3"));
    cr_assert_not_null(jobq_engine_job(b, "c1"));
    jobq_engine_free(a);
    jobq_engine_free(b);
    sim_free(s);
}

/* A stall counts in the queue's `stalled` total, which is part of the stored queue row; after
 * a restart the total must still be there. */
Test(engine, load_keeps_stalled_total)
{
    jobq_engine *a = eng_new(NULL, 210), *b;
    simstore *s = sim_new();
    jobq_job *j = enq_json(a, "q", "{\"lease_ms\":1000}", T0);
    jobq_queue_totals ta, tb;

    commit_to(a, s, T0);
    cr_assert_eq(fetch1(a, "q", T0), j);
    commit_to(a, s, T0);
    jobq_engine_tick(a, T0 + 1000); /* stall */
    commit_to(a, s, T0 + 1000);
    jobq_queue_get_totals(jobq_engine_queue(a, "q"), &ta);
    cr_assert_eq(ta.stalled, 1);
    b = eng_new(NULL, 211);
    sim_load(s, b, T0 + 2000);
    jobq_queue_get_totals(jobq_engine_queue(b, "q"), &tb);
    cr_assert_eq(tb.stalled, 1, "the stall was never written to the queue row");
    jobq_engine_free(a);
    jobq_engine_free(b);
    sim_free(s);
}

/* docs/api.md: a 2xx answer means the change is durable, and an active job whose cancel was
 * requested "ends cancelled when the worker reports back or its lease expires". A restart
 * ends every lease: the job must end cancelled, not run again. */
Test(engine, load_keeps_cancel_request_of_active_job)
{
    jobq_engine *a = eng_new(NULL, 212), *b;
    simstore *s = sim_new();
    jobq_job *j = enq(a, "q", "j", 0, T0);

    commit_to(a, s, T0);
    cr_assert_eq(fetch1(a, "q", T0), j);
    commit_to(a, s, T0);
    cr_assert_eq(jobq_engine_job_cancel(a, j, T0 + 1), 0);
    cr_assert(jobq_job_cancel_requested(j));
    commit_to(a, s, T0 + 1); /* the cancel is acknowledged once this is durable */
    b = eng_new(NULL, 213);
    sim_load(s, b, T0 + 2);
    j = jobq_engine_job(b, "j");
    cr_assert_not_null(j);
    cr_assert_null(fetch1(b, "q", T0 + 3), "job whose cancel was acknowledged ran again");
    cr_assert_eq(jobq_job_state(j), JOBQ_CANCELLED);
    jobq_engine_free(a);
    jobq_engine_free(b);
    sim_free(s);
}

/* With the default seed (0), a restarted engine must still never hand out a lease the old
 * process had handed out: the old worker would pass the fencing check. */
Test(engine, load_default_seed_does_not_replay_leases)
{
    jobq_engine *a = eng_new(NULL, 0), *b;
    simstore *s = sim_new();
    jobq_job *x = enq(a, "q", "x", 0, T0), *out = NULL;
    jobq_job_spec sp = spec_default();
    lease_buf la, lb;

    commit_to(a, s, T0);
    cr_assert_eq(fetch1(a, "q", T0), x);
    la = lease_of(x);
    commit_to(a, s, T0);
    /* crash; a new process with the same (default) configuration */
    b = eng_new(NULL, 0);
    sim_load(s, b, T0 + 60000);
    enq_spec(b, "q", &sp, T0 + 60001); /* a producer enqueues (generated id) */
    commit_to(b, s, T0 + 60001);
    cr_assert_eq(fetchq(b, "q", 1, "new", T0 + 60002, &out), 1);
    x = jobq_engine_job(b, "x");
    cr_assert_eq(out, x);
    lb = lease_of(x);
    cr_assert_str_neq(la.s, lb.s, "restarted engine handed out the dead process's lease %s", la.s);
    cr_assert_eq(complete_with(b, x, la.s, T0 + 60003), JOBQ_ELEASE,
                 "the old worker completed a job another worker now runs");
    jobq_engine_free(a);
    jobq_engine_free(b);
    sim_free(s);
}

/* docs/api.md: "Repeating the same complete with the lease that completed it answers 200 again
 * (idempotent)". The usual reason to repeat is a lost answer — e.g. the server died right
 * after the completion became durable. The restarted server must still answer the repeat. */
Test(engine, load_keeps_completion_idempotent)
{
    jobq_engine *a = eng_new(NULL, 215), *b;
    simstore *s = sim_new();
    jobq_job *j = enq(a, "q", "j", 0, T0);
    lease_buf l;
    int repeat = -1;

    commit_to(a, s, T0);
    cr_assert_eq(fetch1(a, "q", T0), j);
    l = lease_of(j);
    commit_to(a, s, T0);
    complete_ok(a, j, T0 + 1);
    commit_to(a, s, T0 + 1); /* durable; the answer is lost with the process */
    cr_assert_eq(jobq_engine_complete(a, j, l.s, NULL, T0 + 2, &repeat), 0);
    cr_assert_eq(repeat, 1, "repeat before the restart");
    b = eng_new(NULL, 216);
    sim_load(s, b, T0 + 1000);
    j = jobq_engine_job(b, "j");
    cr_assert_eq(jobq_job_state(j), JOBQ_COMPLETED);
    repeat = -1;
    cr_assert_eq(jobq_engine_complete(b, j, l.s, NULL, T0 + 1001, &repeat), 0,
                 "repeated completion after a restart answered lease_lost");
    cr_assert_eq(repeat, 1);
    jobq_engine_free(a);
    jobq_engine_free(b);
    sim_free(s);
}

/* store.h: a job's seq is "unique, never reused". The newest job deleted before a restart
 * must not hand its seq to the next job enqueued after it. */
Test(engine, load_never_reuses_a_seq)
{
    jobq_engine *a = eng_new(NULL, 217), *b;
    simstore *s = sim_new();
    jobq_job *j1 = enq(a, "q", "j1", 0, T0), *j2 = enq(a, "q", "j2", 0, T0), *j3;
    int64_t s2 = jobq_job_seq(j2);

    (void)j1;
    commit_to(a, s, T0);
    cr_assert_eq(jobq_engine_job_delete(a, j2, T0 + 1), 0);
    commit_to(a, s, T0 + 1);
    b = eng_new(NULL, 218);
    sim_load(s, b, T0 + 2);
    j3 = enq(b, "q", "j3", 0, T0 + 3);
    cr_assert_gt(jobq_job_seq(j3), s2, "seq %" PRId64 " of a deleted job reused", jobq_job_seq(j3));
    jobq_engine_free(a);
    jobq_engine_free(b);
    sim_free(s);
}
