/*
 * test_engine_events.c — what the engine announces: one event per state change, numbered
 * without gaps, rendered as docs/events.md says, and a numbering that a restart never
 * reuses.
 */
#include "helpers.h"

#define MAXEV 256

typedef struct evlog {
    int n;
    uint64_t seq[MAXEV];
    char *type[MAXEV];
    json_t *obj[MAXEV];
} evlog;

static void hk_event(void *ud, const jobq_event *ev)
{
    evlog *l = ud;
    json_error_t err;

    cr_assert_lt(l->n, MAXEV);
    cr_assert_eq(strlen(ev->json), ev->json_len);
    l->seq[l->n] = ev->seq;
    l->type[l->n] = g_strdup(ev->type);
    l->obj[l->n] = json_loadb(ev->json, ev->json_len, 0, &err);
    cr_assert_not_null(l->obj[l->n], "event is not JSON (%s): %s", err.text, ev->json);
    cr_assert_eq((uint64_t)json_integer_value(json_object_get(l->obj[l->n], "seq")), ev->seq);
    cr_assert_str_eq(json_string_value(json_object_get(l->obj[l->n], "type")), ev->type);
    cr_assert_eq(json_integer_value(json_object_get(l->obj[l->n], "at")), ev->at);
    if (ev->job)
        cr_assert_str_eq(json_string_value(json_object_get(l->obj[l->n], "job")), ev->job);
    if (ev->queue)
        cr_assert_str_eq(json_string_value(json_object_get(l->obj[l->n], "queue")), ev->queue);
    l->n++;
}

static jobq_engine *ev_engine(evlog *l, uint64_t seed)
{
    jobq_engine_config cfg = {.seed = seed};
    jobq_engine_hooks hooks = {.event = hk_event, .ud = l};

    memset(l, 0, sizeof *l);
    return jobq_engine_new(&cfg, &hooks);
}

static void ev_clear(evlog *l)
{
    for (int i = 0; i < l->n; i++) {
        g_free(l->type[i]);
        json_decref(l->obj[i]);
    }
    l->n = 0;
}

static const char *ev_str(const evlog *l, int i, const char *key)
{
    return json_string_value(json_object_get(l->obj[i], key));
}

static int64_t ev_int(const evlog *l, int i, const char *key)
{
    return json_integer_value(json_object_get(l->obj[i], key));
}

/* Asserts the types of the events logged since `from`, in order. */
static void want_types(const evlog *l, int from, const char *const *types, int n)
{
    cr_assert_eq(l->n - from, n, "got %d events, want %d", l->n - from, n);
    for (int i = 0; i < n; i++)
        cr_assert_str_eq(l->type[from + i], types[i], "event %d: %s, want %s", from + i,
                         l->type[from + i], types[i]);
}

Test(events, job_life_and_seq_order)
{
    evlog l;
    jobq_engine *e = ev_engine(&l, 1);
    static const char *const want[] = {"job.created", "job.started", "job.progress",
                                       "job.completed"};
    jobq_job *j;
    lease_buf lb;
    int durable;

    j = enq_json(e, "q", "{\"data\":1,\"project\":\"p1\",\"group\":\"g1\"}", T0);
    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0 + 1), j);
    lb = lease_of(j);
    cr_assert_eq(jobq_engine_progress(e, j, lb.s, "{\"percent\":50,\"stage\":\"tts\"}", NULL,
                                      T0 + 2, &durable),
                 0);
    complete_with(e, j, lb.s, T0 + 3);
    want_types(&l, 0, want, 4);
    for (int i = 0; i < l.n; i++) {
        cr_assert_eq(l.seq[i], (uint64_t)i + 1, "seqs start at 1 and have no gaps");
        cr_assert_str_eq(ev_str(&l, i, "queue"), "q");
        cr_assert_str_eq(ev_str(&l, i, "job"), jobq_job_id(j));
        cr_assert_str_eq(ev_str(&l, i, "project"), "p1");
        cr_assert_str_eq(ev_str(&l, i, "group"), "g1");
    }
    cr_assert_str_eq(ev_str(&l, 0, "state"), "waiting");
    cr_assert_eq(ev_int(&l, 1, "attempt"), 1);
    cr_assert_not_null(ev_str(&l, 1, "worker"));
    cr_assert_eq(json_integer_value(
                     json_object_get(json_object_get(l.obj[2], "progress"), "percent")),
                 50);
    cr_assert_str_eq(ev_str(&l, 3, "state"), "completed");
    cr_assert_eq(ev_int(&l, 3, "at"), T0 + 3);
    cr_assert_eq(jobq_engine_event_seq(e), 5);
    ev_clear(&l);
    jobq_engine_free(e);
}

Test(events, failures_retries_stalls_cancels)
{
    evlog l;
    jobq_engine *e = ev_engine(&l, 2);
    jobq_job *j, *k, *c;
    int from;

    j = enq_json(e, "q", "{\"data\":1,\"max_attempts\":2,\"backoff\":{\"type\":\"fixed\","
                         "\"delay_ms\":1000},\"lease_ms\":5000}",
                 T0);
    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), j);
    from = l.n;
    fail_ok(e, j, "provider", 1, -1, T0 + 1);
    {
        static const char *const want[] = {"job.retrying"};
        want_types(&l, from, want, 1);
        cr_assert_eq(ev_int(&l, from, "run_at"), T0 + 1001);
        cr_assert_str_eq(
            json_string_value(json_object_get(json_object_get(l.obj[from], "error"), "type")),
            "provider");
    }
    from = l.n;
    jobq_engine_tick(e, T0 + 1001); /* the delay ran out: nothing to announce */
    cr_assert_eq(l.n, from);
    cr_assert_eq(fetch1(e, "q", T0 + 1001), j);
    jobq_engine_tick(e, T0 + 1001 + 5000); /* lease lost: a stall */
    fetch1(e, "q", T0 + 7000);
    fail_ok(e, j, "provider", 0, -1, T0 + 7001);
    {
        static const char *const want[] = {"job.started", "job.stalled", "job.started",
                                           "job.failed"};
        want_types(&l, from, want, 4);
        cr_assert_eq(ev_int(&l, from + 1, "stalls"), 1);
        cr_assert_str_eq(ev_str(&l, from + 3, "state"), "failed");
        cr_assert_not_null(json_object_get(l.obj[from + 3], "error"));
    }
    /* a failure retried at once is a retry, not a stall */
    k = enq_json(e, "q", "{\"data\":2}", T0 + 8000);
    commit(e, T0 + 8000);
    cr_assert_eq(fetch1(e, "q", T0 + 8000), k);
    from = l.n;
    fail_ok(e, k, "provider", 1, 0, T0 + 8001);
    cr_assert_str_eq(l.type[from], "job.retrying");
    /* cancel of a waiting job; retry by hand */
    c = enq_json(e, "q", "{\"data\":3}", T0 + 9000);
    from = l.n;
    cr_assert_eq(jobq_engine_job_cancel(e, c, T0 + 9001), 0);
    cr_assert_eq(jobq_engine_job_retry(e, c, T0 + 9002), 0);
    {
        static const char *const want[] = {"job.cancelled", "job.retrying"};
        want_types(&l, from, want, 2);
    }
    for (int i = 1; i < l.n; i++)
        cr_assert_eq(l.seq[i], l.seq[i - 1] + 1);
    ev_clear(&l);
    jobq_engine_free(e);
}

Test(events, queue_status)
{
    evlog l;
    jobq_engine *e = ev_engine(&l, 3);
    jobq_queue *q = mkq(e, "q", T0, NULL);
    jobq_job *j;
    static const char *const want[] = {"queue.paused",  "queue.resumed", "job.created",
                                       "job.started",   "queue.draining", "job.completed",
                                       "queue.drained"};

    jobq_engine_queue_pause(e, q, T0);
    jobq_engine_queue_pause(e, q, T0); /* no change, no event */
    jobq_engine_queue_resume(e, q, T0);
    j = enq(e, "q", "a", 0, T0);
    commit(e, T0);
    fetch1(e, "q", T0);
    jobq_engine_queue_drain(e, q, T0 + 1);
    complete_ok(e, j, T0 + 2);
    want_types(&l, 0, want, 7);
    cr_assert_str_eq(ev_str(&l, 0, "status"), "paused");
    cr_assert_null(json_object_get(l.obj[0], "job"));
    cr_assert_str_eq(ev_str(&l, 6, "status"), "paused");
    ev_clear(&l);
    jobq_engine_free(e);
}

Test(events, emit_by_others_makes_a_batch)
{
    evlog l;
    jobq_engine *e = ev_engine(&l, 4);
    jobq_job *j;
    jobq_batch *b;

    commit(e, T0);
    cr_assert_not(jobq_engine_has_changes(e));
    jobq_engine_emit(e, "health.changed", T0, "q", NULL, NULL, NULL,
                     "\"from\":\"healthy\",\"to\":\"degraded\"");
    cr_assert(jobq_engine_has_changes(e), "an event alone must ride in a batch");
    b = jobq_engine_take_changes(e);
    cr_assert_not_null(b);
    jobq_batch_free(b);
    jobq_engine_committed(e, T0);
    cr_assert_str_eq(l.type[0], "health.changed");
    cr_assert_str_eq(ev_str(&l, 0, "to"), "degraded");
    cr_assert_null(json_object_get(l.obj[0], "project"));
    j = enq(e, "q", "x", 0, T0);
    jobq_engine_emit_job(e, j, "job.review_requested", T0, "\"reviewers\":[\"ann\"]");
    cr_assert_str_eq(ev_str(&l, 2, "job"), "x");
    cr_assert_str_eq(ev_str(&l, 2, "state"), "waiting");
    cr_assert_eq(json_array_size(json_object_get(l.obj[2], "reviewers")), 1);
    ev_clear(&l);
    jobq_engine_free(e);
}

Test(events, no_hook_no_events)
{
    jobq_engine *e = eng_new(NULL, 5);

    enq(e, "q", "a", 0, T0);
    commit(e, T0);
    jobq_engine_emit(e, "x", T0, NULL, NULL, NULL, NULL, NULL);
    cr_assert_not(jobq_engine_has_changes(e));
    cr_assert_eq(jobq_engine_event_seq(e), 1);
    jobq_engine_free(e);
}

/* The reservation mark is written with the batch that opens a block, and a restarted
 * engine numbers past everything the old one may have made durable. */
Test(events, seq_survives_restart)
{
    evlog l, l2;
    simstore *s = sim_new();
    jobq_engine *e = ev_engine(&l, 6), *e2;
    uint64_t last;
    const char *mark;

    enq(e, "q", "a", 0, T0);
    commit_to(e, s, T0);
    mark = g_hash_table_lookup(s->meta, "event_seq");
    cr_assert_not_null(mark, "the first event's batch carries the mark");
    cr_assert_gt(g_ascii_strtoull(mark, NULL, 10), l.seq[l.n - 1]);
    for (int i = 0; i < 50; i++)
        enq(e, "q", NULL, 0, T0 + 1);
    cr_assert_eq(commit_to(e, s, T0 + 1) > 0, 1);
    last = l.seq[l.n - 1];
    e2 = ev_engine(&l2, 7);
    sim_load(s, e2, T0 + 2);
    enq(e2, "q", "b", 0, T0 + 3);
    cr_assert_eq(l2.n, 1);
    cr_assert_gt(l2.seq[0], last, "a restarted engine reuses no seq (%" PRIu64 " <= %" PRIu64 ")",
                 l2.seq[0], last);
    cr_assert_geq(l2.seq[0], g_ascii_strtoull(mark, NULL, 10));
    commit_to(e2, s, T0 + 3);
    cr_assert_gt(g_ascii_strtoull(g_hash_table_lookup(s->meta, "event_seq"), NULL, 10),
                 l2.seq[0]);
    ev_clear(&l);
    ev_clear(&l2);
    jobq_engine_free(e);
    jobq_engine_free(e2);
    sim_free(s);
}
