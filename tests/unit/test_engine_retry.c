/*
 * test_engine_retry.c — time and failure: leases and heartbeats, stalls and max_stalls,
 * attempt timeouts, backoff sequences (fixed, exponential, list, jitter) seen as the run_at
 * of retrying jobs, non-retryable errors, rate_limit, lease fencing and idempotent
 * completion, dead-letter stats and bulk retry, retention by count and by age.
 */
#include "helpers.h"

/* Fetches j (the only ready job of "q") at t, fails it at t and returns run_at - t of the
 * retrying job (or -1 when it did not go to retrying). */
static int64_t fail_and_delay(jobq_engine *e, jobq_job *j, int64_t t)
{
    cr_assert_eq(fetch1(e, "q", t), j);
    fail_ok(e, j, "x", 1, -1, t);
    if (jobq_job_state(j) != JOBQ_RETRYING)
        return -1;
    return job_run_at(e, j, t) - t;
}

/* Runs j through its retries; delays[] gets each backoff delay; returns how many retries
 * there were before it failed for good. */
static size_t retry_delays(jobq_engine *e, jobq_job *j, int64_t *delays, size_t max)
{
    int64_t t = T0 + 1000;
    size_t n = 0;

    for (;;) {
        int64_t d = fail_and_delay(e, j, t);
        if (d < 0)
            break;
        cr_assert_lt(n, max, "more retries than expected");
        delays[n++] = d;
        cr_assert_eq(jobq_engine_next_timer(e) <= t + d, 1);
        jobq_engine_tick(e, t + d - 1);
        cr_assert_eq(jobq_job_state(j), JOBQ_RETRYING, "retried before its run_at");
        t += d;
        jobq_engine_tick(e, t);
        cr_assert_eq(jobq_job_state(j), JOBQ_WAITING);
        cr_assert_eq(jobq_job_attempt(j), (int)n);
    }
    cr_assert_eq(jobq_job_state(j), JOBQ_FAILED);
    return n;
}

static void check_delays(const char *json, const int64_t *want, size_t nwant)
{
    jobq_engine *e = eng_new(NULL, 100);
    jobq_job *j = enq_json(e, "q", json, T0);
    int64_t got[64];
    size_t n;

    commit(e, T0);
    n = retry_delays(e, j, got, 64);
    cr_assert_eq(n, nwant, "%s: %zu retries, want %zu", json, n, nwant);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(got[i], want[i], "%s: retry %zu waited %" PRId64 " ms, want %" PRId64, json,
                     i + 1, got[i], want[i]);
    cr_assert_eq(jobq_job_attempt(j), (int)nwant + 1);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- backoff */

Test(engine, backoff_fixed)
{
    static const int64_t w[] = {700, 700, 700, 700};
    check_delays("{\"max_attempts\":5,\"backoff\":{\"type\":\"fixed\",\"delay_ms\":700}}", w, 4);
}

Test(engine, backoff_exponential_factor_and_max)
{
    static const int64_t w[] = {1000, 3000, 9000, 20000, 20000, 20000};
    check_delays("{\"max_attempts\":7,\"backoff\":{\"type\":\"exponential\",\"delay_ms\":1000,"
                 "\"factor\":3,\"max_ms\":20000}}",
                 w, 6);
}

Test(engine, backoff_exponential_default_factor_no_max)
{
    static const int64_t w[] = {500, 1000, 2000, 4000, 8000};
    check_delays("{\"max_attempts\":6,\"backoff\":{\"type\":\"exponential\",\"delay_ms\":500}}", w,
                 5);
}

Test(engine, backoff_exponential_fractional_factor)
{
    static const int64_t w[] = {1000, 1500, 2250, 3375};
    check_delays("{\"max_attempts\":5,\"backoff\":{\"type\":\"exponential\",\"delay_ms\":1000,"
                 "\"factor\":1.5}}",
                 w, 4);
}

Test(engine, backoff_list_last_repeats)
{
    static const int64_t w[] = {100, 250, 50, 50, 50};
    check_delays("{\"max_attempts\":6,\"backoff\":{\"type\":\"list\",\"delays_ms\":[100,250,50]}}",
                 w, 5);
}

Test(engine, backoff_queue_default_exponential_2000)
{
    static const int64_t w[] = {2000, 4000};
    check_delays("{}", w, 2); /* defaults: 3 attempts, exponential 2000 ms */
}

Test(engine, backoff_delay_function)
{
    jobq_backoff *b = jobq_backoff_new(JOBQ_BACKOFF_EXPONENTIAL, 0);
    jobq_backoff *l = jobq_backoff_new(JOBQ_BACKOFF_LIST, 2);

    b->delay_ms = 1000;
    cr_assert_eq(b->factor, 2.0, "default factor");
    cr_assert_eq(jobq_backoff_delay(b, 1, 0), 1000);
    cr_assert_eq(jobq_backoff_delay(b, 0, 0), 1000, "attempt < 1 reads as 1");
    cr_assert_eq(jobq_backoff_delay(b, 4, 0), 8000);
    b->max_ms = 5000;
    cr_assert_eq(jobq_backoff_delay(b, 4, 0), 5000);
    cr_assert_eq(jobq_backoff_delay(b, 200, 0), 5000, "huge attempt is capped");
    b->max_ms = 0;
    cr_assert_gt(jobq_backoff_delay(b, 2000, 0), 0, "no overflow without a cap");
    b->jitter = 0.5;
    cr_assert_eq(jobq_backoff_delay(b, 3, 0.0), 4000);
    cr_assert_eq(jobq_backoff_delay(b, 3, 0.5), 3000);
    cr_assert_eq(jobq_backoff_delay(b, 3, 0.999999), 2000);
    b->jitter = 1.0;
    cr_assert_eq(jobq_backoff_delay(b, 1, 0.999999), 0);
    l->delays[0] = 10;
    l->delays[1] = 20;
    cr_assert_eq(jobq_backoff_delay(l, 1, 0), 10);
    cr_assert_eq(jobq_backoff_delay(l, 2, 0), 20);
    cr_assert_eq(jobq_backoff_delay(l, 9, 0), 20);
    cr_assert_eq(jobq_backoff_delay(NULL, 1, 0), 0);
    cr_assert_eq(jobq_backoff_ref(b), b);
    cr_assert_eq(b->refs, 2);
    jobq_backoff_unref(b);
    jobq_backoff_unref(b);
    jobq_backoff_unref(l);
    jobq_backoff_unref(NULL);
}

Test(engine, backoff_jitter_bounds_in_engine)
{
    jobq_engine *e = eng_new(NULL, 101);
    jobq_job *j[200], *out[200];
    int64_t lo = INT64_MAX, hi = 0;

    for (int i = 0; i < 200; i++)
        j[i] = enq_json(e, "q",
                        "{\"max_attempts\":3,\"backoff\":{\"type\":\"exponential\","
                        "\"delay_ms\":10000,\"jitter\":0.5}}",
                        T0);
    commit(e, T0);
    cr_assert_eq(fetchq(e, "q", 200, "w", T0, out), 200);
    for (int i = 0; i < 200; i++) {
        int64_t d;
        fail_ok(e, j[i], "x", 1, -1, T0 + 10);
        cr_assert_eq(jobq_job_state(j[i]), JOBQ_RETRYING);
        d = job_run_at(e, j[i], T0 + 10) - (T0 + 10);
        cr_assert(d >= 5000 && d <= 10000, "jittered delay %" PRId64 " outside [5000, 10000]", d);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    cr_assert_lt(lo, 6000, "jitter never drew low: min %" PRId64, lo);
    cr_assert_gt(hi, 9000, "jitter never drew high: max %" PRId64, hi);
    /* second attempt: base 20000 */
    jobq_engine_tick(e, T0 + 20000);
    cr_assert_eq(fetchq(e, "q", 200, "w", T0 + 20000, out), 200);
    for (int i = 0; i < 200; i++) {
        int64_t d;
        fail_ok(e, out[i], "x", 1, -1, T0 + 20000);
        d = job_run_at(e, out[i], T0 + 20000) - (T0 + 20000);
        cr_assert(d >= 10000 && d <= 20000, "second delay %" PRId64 " outside [10000, 20000]", d);
    }
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- failures */

Test(engine, retryable_false_fails_at_once)
{
    hook_log h;
    jobq_engine *e = eng_new(&h, 102);
    jobq_job *j = enq_json(e, "q", "{\"max_attempts\":5}", T0);
    json_t *o, *err;

    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), j);
    fail_ok(e, j, "validation", 0, -1, T0 + 1);
    cr_assert_eq(jobq_job_state(j), JOBQ_FAILED);
    cr_assert_eq(jobq_job_attempt(j), 1);
    cr_assert_eq(h.final, 1);
    cr_assert_eq(h.last_final_state, JOBQ_FAILED);
    o = job_json(e, j, T0 + 1);
    err = json_object_get(o, "error");
    cr_assert_str_eq(json_string_value(json_object_get(err, "type")), "validation");
    cr_assert_str_eq(json_string_value(json_object_get(err, "message")), "boom");
    cr_assert(json_is_false(json_object_get(err, "retryable")));
    cr_assert_eq(json_integer_value(json_object_get(o, "finished_at")), T0 + 1);
    json_decref(o);
    jobq_engine_free(e);
}

Test(engine, retry_in_ms_overrides_backoff)
{
    jobq_engine *e = eng_new(NULL, 103);
    jobq_job *j = enq_json(
        e, "q", "{\"max_attempts\":5,\"backoff\":{\"type\":\"fixed\",\"delay_ms\":1000}}", T0);

    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), j);
    fail_ok(e, j, NULL, 1, 250, T0);
    cr_assert_eq(jobq_job_state(j), JOBQ_RETRYING);
    cr_assert_eq(job_run_at(e, j, T0), T0 + 250);
    cr_assert_eq(jobq_engine_next_timer(e), T0 + 250);
    jobq_engine_tick(e, T0 + 250);
    cr_assert_eq(fetch1(e, "q", T0 + 250), j);
    fail_ok(e, j, NULL, 1, 0, T0 + 300);
    cr_assert_eq(jobq_job_state(j), JOBQ_WAITING, "retry_in_ms 0: straight back to waiting");
    cr_assert_eq(jobq_job_attempt(j), 2);
    cr_assert_eq(fetch1(e, "q", T0 + 300), j);
    jobq_engine_free(e);
}

Test(engine, rate_limit_does_not_spend_an_attempt)
{
    jobq_engine *e = eng_new(NULL, 104);
    jobq_job *j = enq_json(e, "q", "{\"max_attempts\":1}", T0);
    jobq_job *k = enq_json(
        e, "q", "{\"max_attempts\":3,\"backoff\":{\"type\":\"list\",\"delays_ms\":[100,200,300]}}",
        T0);
    jobq_queue_totals tot;

    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), j);
    for (int round = 0; round < 3; round++) {
        int64_t t = T0 + round * 10000;
        fail_ok(e, j, "rate_limit", 1, 5000, t);
        cr_assert_eq(jobq_job_state(j), JOBQ_RETRYING, "rate_limit on the last attempt");
        cr_assert_eq(jobq_job_attempt(j), 0);
        cr_assert_eq(job_run_at(e, j, t), t + 5000);
        jobq_engine_tick(e, t + 5000);
        cr_assert_eq(jobq_job_state(j), JOBQ_WAITING);
        cr_assert_eq(fetch1(e, "q", t + 5000), j);
    }
    fail_ok(e, j, "x", 1, -1, T0 + 40000); /* a real failure: its one attempt is spent */
    cr_assert_eq(jobq_job_state(j), JOBQ_FAILED);
    cr_assert_eq(jobq_job_attempt(j), 1);

    /* without retry_in_ms: the backoff delay of the running attempt */
    cr_assert_eq(fetch1(e, "q", T0 + 50000), k);
    fail_ok(e, k, "rate_limit", 1, -1, T0 + 50000);
    cr_assert_eq(job_run_at(e, k, T0 + 50000), T0 + 50100);
    jobq_engine_tick(e, T0 + 50100);
    cr_assert_eq(fetch1(e, "q", T0 + 50100), k);
    fail_ok(e, k, "x", 1, -1, T0 + 50100); /* attempt 1 spent: 100 ms */
    cr_assert_eq(jobq_job_attempt(k), 1);
    cr_assert_eq(job_run_at(e, k, T0 + 50100), T0 + 50200);
    jobq_engine_tick(e, T0 + 50200);
    cr_assert_eq(fetch1(e, "q", T0 + 50200), k);
    fail_ok(e, k, "rate_limit", 1, -1, T0 + 50200); /* running attempt is 2: 200 ms */
    cr_assert_eq(jobq_job_attempt(k), 1);
    cr_assert_eq(job_run_at(e, k, T0 + 50200), T0 + 50400);
    jobq_queue_get_totals(jobq_engine_queue(e, "q"), &tot);
    cr_assert_eq(tot.failed, 1);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- leases */

Test(engine, heartbeat_extends_lease)
{
    jobq_engine *e = eng_new(NULL, 105);
    jobq_job *j = enq_json(e, "q", "{\"lease_ms\":1000}", T0);
    lease_buf l;
    int durable = -1;

    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), j);
    l = lease_of(j);
    cr_assert_eq(strlen(l.s), 16);
    cr_assert_eq(jobq_job_lease_expires_at(j), T0 + 1000);
    cr_assert_eq(job_int(e, j, "lease_expires_at", T0), T0 + 1000);
    cr_assert_eq(jobq_engine_next_timer(e), T0 + 1000);

    cr_assert_eq(jobq_engine_heartbeat(e, j, l.s, 0, NULL, T0 + 900, &durable), 0);
    cr_assert_eq(durable, 0);
    cr_assert_eq(jobq_job_lease_expires_at(j), T0 + 1900);
    cr_assert_eq(jobq_engine_next_timer(e), T0 + 1900);
    jobq_engine_tick(e, T0 + 1500);
    cr_assert_eq(jobq_job_state(j), JOBQ_ACTIVE, "expired although extended");
    cr_assert_eq(jobq_engine_heartbeat(e, j, l.s, 5000, NULL, T0 + 1800, &durable), 0);
    cr_assert_eq(jobq_job_lease_expires_at(j), T0 + 6800);
    cr_assert_eq(jobq_engine_progress(e, j, l.s, "{\"percent\":50}", NULL, T0 + 6000, &durable), 0);
    cr_assert_eq(jobq_job_lease_expires_at(j), T0 + 7000, "progress extends by lease_ms");
    cr_assert_eq(job_int(e, j, "attempt", T0 + 6000), 0);

    /* wrong leases are refused and change nothing */
    cr_assert_eq(jobq_engine_heartbeat(e, j, "0000000000000001", 0, NULL, T0 + 6500, &durable),
                 JOBQ_ELEASE);
    cr_assert_eq(jobq_engine_heartbeat(e, j, "zz", 0, NULL, T0 + 6500, &durable), JOBQ_ELEASE);
    cr_assert_eq(jobq_engine_heartbeat(e, j, "", 0, NULL, T0 + 6500, &durable), JOBQ_ELEASE);
    cr_assert_eq(jobq_engine_heartbeat(e, j, NULL, 0, NULL, T0 + 6500, &durable), JOBQ_ELEASE);
    cr_assert_eq(jobq_job_lease_expires_at(j), T0 + 7000);

    jobq_engine_tick(e, T0 + 6999);
    cr_assert_eq(jobq_job_state(j), JOBQ_ACTIVE);
    jobq_engine_tick(e, T0 + 7000);
    cr_assert_eq(jobq_job_state(j), JOBQ_WAITING, "lease ran out: stalled back to waiting");
    cr_assert_eq(jobq_job_attempt(j), 0, "a stall keeps the attempt");
    cr_assert_eq(job_int(e, j, "stalls", T0 + 7000), 1);
    cr_assert_eq(jobq_engine_heartbeat(e, j, l.s, 0, NULL, T0 + 7001, &durable), JOBQ_ELEASE);
    cr_assert_eq(complete_with(e, j, l.s, T0 + 7001), JOBQ_ELEASE);
    /* fetched again: a new lease; the old one still refused */
    cr_assert_eq(fetch1(e, "q", T0 + 7002), j);
    cr_assert_str_neq(lease_of(j).s, l.s);
    cr_assert_eq(complete_with(e, j, l.s, T0 + 7003), JOBQ_ELEASE);
    cr_assert_eq(jobq_job_state(j), JOBQ_ACTIVE);
    complete_ok(e, j, T0 + 7004);
    cr_assert_eq(jobq_job_attempt(j), 1);
    jobq_engine_free(e);
}

Test(engine, stall_keeps_fifo_place)
{
    jobq_engine *e = eng_new(NULL, 106);
    jobq_job *a = enq_json(e, "q", "{\"id\":\"a\",\"lease_ms\":1000}", T0);
    jobq_job *b = enq(e, "q", "b", 0, T0);

    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), a);
    jobq_engine_tick(e, T0 + 1000);
    cr_assert_eq(jobq_job_state(a), JOBQ_WAITING);
    cr_assert_eq(jobq_engine_job_position(e, a), 0, "stalled job is back at its FIFO place");
    cr_assert_eq(jobq_engine_job_position(e, b), 1);
    jobq_engine_free(e);
}

static void check_max_stalls(int max_stalls)
{
    jobq_engine *e = eng_new(NULL, 107);
    jobq_queue_opts o;
    jobq_queue *q = NULL;
    jobq_job *j;
    jobq_queue_totals tot;
    char type[32];
    int64_t t = T0;

    jobq_queue_opts_default(&o);
    o.max_stalls = max_stalls;
    o.defaults.lease_ms = 1000;
    o.defaults.max_attempts = 10;
    cr_assert_eq(jobq_engine_queue_create(e, "q", &o, T0, &q), 0);
    j = enq(e, "q", "j", 0, T0);
    commit(e, T0);
    for (int s = 1; s <= max_stalls; s++) {
        cr_assert_eq(fetch1(e, "q", t), j);
        t += 1000;
        jobq_engine_tick(e, t);
        cr_assert_eq(jobq_job_state(j), JOBQ_WAITING, "stall %d of max %d", s, max_stalls);
        cr_assert_eq(jobq_job_attempt(j), 0);
        cr_assert_eq(job_int(e, j, "stalls", t), s);
    }
    cr_assert_eq(fetch1(e, "q", t), j);
    t += 1000;
    jobq_engine_tick(e, t);
    cr_assert_eq(jobq_job_state(j), JOBQ_FAILED, "stall %d > max_stalls %d must fail",
                 max_stalls + 1, max_stalls);
    job_error_type(e, j, t, type, sizeof type);
    cr_assert_str_eq(type, "stalled");
    jobq_queue_get_totals(q, &tot);
    cr_assert_eq(tot.stalled, max_stalls + 1);
    cr_assert_eq(tot.failed, 1);
    jobq_engine_free(e);
}

Test(engine, stalls_past_max_stalls_fail)
{
    check_max_stalls(1); /* the default */
    check_max_stalls(0);
    check_max_stalls(3);
}

Test(engine, cancel_requested_then_lease_expiry_cancels)
{
    jobq_engine *e = eng_new(NULL, 108);
    jobq_job *j = enq_json(e, "q", "{\"lease_ms\":1000}", T0);
    lease_buf l;

    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), j);
    l = lease_of(j);
    cr_assert_eq(jobq_engine_job_cancel(e, j, T0 + 10), 0);
    jobq_engine_tick(e, T0 + 1000);
    cr_assert_eq(jobq_job_state(j), JOBQ_CANCELLED);
    cr_assert_eq(complete_with(e, j, l.s, T0 + 1001), JOBQ_ELEASE);
    {
        jobq_failure f = failure("x", 1, -1);
        int repeat = -1;
        cr_assert_eq(jobq_engine_fail(e, j, l.s, &f, T0 + 1001, &repeat), JOBQ_ELEASE,
                     "a worker whose lease expired reported as a repeat");
    }
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- timeouts */

Test(engine, timeout_fails_attempt_and_refuses_old_lease)
{
    jobq_engine *e = eng_new(NULL, 109);
    jobq_job *j = enq_json(e, "q",
                           "{\"timeout_ms\":5000,\"max_attempts\":2,"
                           "\"backoff\":{\"type\":\"fixed\",\"delay_ms\":1000}}",
                           T0);
    lease_buf l;
    char type[32];
    int durable, repeat;
    jobq_failure f = failure("x", 1, -1);

    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), j);
    l = lease_of(j);
    cr_assert_eq(jobq_engine_next_timer(e), T0 + 5000, "deadline before the 30 s lease");
    jobq_engine_tick(e, T0 + 4999);
    cr_assert_eq(jobq_job_state(j), JOBQ_ACTIVE);
    jobq_engine_tick(e, T0 + 5000);
    cr_assert_eq(jobq_job_state(j), JOBQ_RETRYING);
    cr_assert_eq(jobq_job_attempt(j), 1);
    job_error_type(e, j, T0 + 5000, type, sizeof type);
    cr_assert_str_eq(type, "timeout");
    cr_assert_eq(job_run_at(e, j, T0 + 5000), T0 + 6000);
    cr_assert_eq(complete_with(e, j, l.s, T0 + 5001), JOBQ_ELEASE);
    cr_assert_eq(jobq_engine_heartbeat(e, j, l.s, 0, NULL, T0 + 5001, &durable), JOBQ_ELEASE);
    cr_assert_eq(jobq_engine_fail(e, j, l.s, &f, T0 + 5001, &repeat), JOBQ_ELEASE);
    cr_assert_eq(jobq_job_attempt(j), 1);

    /* the last attempt times out: failed, type timeout */
    jobq_engine_tick(e, T0 + 6000);
    cr_assert_eq(fetch1(e, "q", T0 + 6000), j);
    cr_assert_eq(jobq_engine_next_timer(e), T0 + 11000, "deadline counts from the new fetch");
    jobq_engine_tick(e, T0 + 11000);
    cr_assert_eq(jobq_job_state(j), JOBQ_FAILED);
    cr_assert_eq(jobq_job_attempt(j), 2);
    job_error_type(e, j, T0 + 11000, type, sizeof type);
    cr_assert_str_eq(type, "timeout");
    jobq_engine_free(e);
}

Test(engine, timeout_not_extended_by_heartbeats)
{
    jobq_engine *e = eng_new(NULL, 110);
    jobq_job *j = enq_json(e, "q", "{\"timeout_ms\":5000,\"lease_ms\":2000}", T0);
    lease_buf l;
    int durable;

    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), j);
    l = lease_of(j);
    cr_assert_eq(jobq_engine_next_timer(e), T0 + 2000);
    for (int64_t t = T0 + 1500; t < T0 + 5000; t += 1500) {
        cr_assert_eq(jobq_engine_heartbeat(e, j, l.s, 0, NULL, t, &durable), 0);
        jobq_engine_tick(e, t);
        cr_assert_eq(jobq_job_state(j), JOBQ_ACTIVE);
    }
    /* last heartbeat at T0+4500: lease to T0+6500, but the deadline is T0+5000 */
    cr_assert_eq(jobq_engine_next_timer(e), T0 + 5000);
    jobq_engine_tick(e, T0 + 5000);
    cr_assert_eq(jobq_job_state(j), JOBQ_RETRYING);
    cr_assert_eq(job_int(e, j, "stalls", T0 + 5000), 0, "a timeout is not a stall");
    jobq_engine_free(e);
}

Test(engine, timeout_with_cancel_requested_cancels)
{
    jobq_engine *e = eng_new(NULL, 111);
    jobq_job *j = enq_json(e, "q", "{\"timeout_ms\":100}", T0);

    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), j);
    jobq_engine_job_cancel(e, j, T0 + 1);
    jobq_engine_tick(e, T0 + 100);
    cr_assert_eq(jobq_job_state(j), JOBQ_CANCELLED);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- fencing, idempotency */

Test(engine, complete_and_fail_are_fenced_and_idempotent)
{
    jobq_engine *e = eng_new(NULL, 112);
    jobq_job *a = enq(e, "q", "a", 0, T0), *b = enq(e, "q", "b", 0, T0);
    jobq_failure f = failure("x", 0, -1);
    lease_buf la, lb;
    int repeat = -1;

    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), a);
    cr_assert_eq(fetch1(e, "q", T0), b);
    la = lease_of(a);
    lb = lease_of(b);
    cr_assert_str_neq(la.s, lb.s);
    cr_assert_eq(complete_with(e, a, lb.s, T0), JOBQ_ELEASE, "another job's lease");
    cr_assert_eq(jobq_engine_complete(e, a, la.s, "1", T0 + 1, &repeat), 0);
    cr_assert_eq(repeat, 0);
    cr_assert_eq(jobq_engine_complete(e, a, la.s, "1", T0 + 2, &repeat), 0);
    cr_assert_eq(repeat, 1, "repeated completion answered as a repeat");
    cr_assert_eq(jobq_job_attempt(a), 1, "repeat changed the job");
    cr_assert_eq(jobq_engine_fail(e, a, la.s, &f, T0 + 3, &repeat), JOBQ_ELEASE,
                 "fail after complete");
    cr_assert_eq(jobq_job_state(a), JOBQ_COMPLETED);
    cr_assert_eq(lease_of(a).s[0], '\0', "a completed job shows no lease");

    cr_assert_eq(jobq_engine_fail(e, b, lb.s, &f, T0 + 4, &repeat), 0);
    cr_assert_eq(repeat, 0);
    cr_assert_eq(jobq_job_state(b), JOBQ_FAILED);
    cr_assert_eq(jobq_engine_fail(e, b, lb.s, &f, T0 + 5, &repeat), 0);
    cr_assert_eq(repeat, 1);
    cr_assert_eq(jobq_job_attempt(b), 1);
    cr_assert_eq(complete_with(e, b, lb.s, T0 + 6), JOBQ_ELEASE, "complete after fail");
    cr_assert_eq(jobq_job_state(b), JOBQ_FAILED);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- dead letter */

Test(engine, dead_letter_stats_and_bulk_retry)
{
    jobq_engine *e = eng_new(NULL, 113);
    jobq_job *p1 = enq(e, "q1", "p1", 0, T0), *p2 = enq(e, "q1", "p2", 0, T0);
    jobq_job *n1 = enq(e, "q1", "n1", 0, T0), *ok = enq(e, "q1", "ok", 0, T0);
    jobq_job *s1 = enq_json(e, "q2", "{\"id\":\"s1\",\"lease_ms\":1000}", T0);
    const char *ids[] = {"p1", "ok", "nope"};
    json_t *st, *want;

    commit(e, T0);
    cr_assert_eq(fetch1(e, "q1", T0), p1);
    cr_assert_eq(fetch1(e, "q1", T0), p2);
    cr_assert_eq(fetch1(e, "q1", T0), n1);
    cr_assert_eq(fetch1(e, "q1", T0), ok);
    fail_ok(e, p1, "provider", 0, -1, T0 + 1);
    fail_ok(e, p2, "provider", 0, -1, T0 + 1);
    fail_ok(e, n1, NULL, 0, -1, T0 + 1);
    complete_ok(e, ok, T0 + 1);
    for (int i = 0; i < 2; i++) { /* two stalls > max_stalls 1 */
        cr_assert_eq(fetch1(e, "q2", T0 + 1000 * i), s1);
        jobq_engine_tick(e, T0 + 1000 * (i + 1));
    }
    cr_assert_eq(jobq_job_state(s1), JOBQ_FAILED);

    st = jobq_engine_dead_stats(e);
    want = json_loads("{\"total\":4,\"queues\":{\"q1\":{\"total\":3,\"types\":{\"provider\":2,"
                      "\"error\":1}},\"q2\":{\"total\":1,\"types\":{\"stalled\":1}}}}",
                      0, NULL);
    cr_assert(json_equal(st, want), "dead stats: %s", json_dumps(st, JSON_COMPACT));
    json_decref(st);
    json_decref(want);

    cr_assert_eq(jobq_engine_dead_retry(e, NULL, ids, 3, T0 + 5000), 1, "only p1 is failed");
    cr_assert_eq(jobq_job_state(p1), JOBQ_WAITING);
    cr_assert_eq(jobq_job_attempt(p1), 0);
    cr_assert_eq(jobq_job_state(ok), JOBQ_COMPLETED);
    cr_assert_eq(jobq_engine_dead_retry(e, jobq_engine_queue(e, "q2"), ids, 1, T0 + 5000), 0,
                 "id of another queue");
    cr_assert_eq(jobq_engine_dead_retry(e, jobq_engine_queue(e, "q1"), NULL, 0, T0 + 5000), 2);
    cr_assert_eq(jobq_job_state(p2), JOBQ_WAITING);
    cr_assert_eq(jobq_job_state(n1), JOBQ_WAITING);
    cr_assert_eq(jobq_job_state(s1), JOBQ_FAILED);
    cr_assert_eq(jobq_engine_dead_retry(e, NULL, NULL, 0, T0 + 5000), 1);
    cr_assert_eq(jobq_job_state(s1), JOBQ_WAITING);
    cr_assert_eq(job_int(e, s1, "stalls", T0 + 5000), 0, "retry resets the stall count");
    st = jobq_engine_dead_stats(e);
    cr_assert_eq(json_integer_value(json_object_get(st, "total")), 0);
    cr_assert_eq(json_object_size(json_object_get(st, "queues")), 0);
    json_decref(st);
    /* retried in FIFO order */
    cr_assert_eq(fetch1(e, "q1", T0 + 5000), p1);
    cr_assert_eq(fetch1(e, "q1", T0 + 5000), p2);
    cr_assert_eq(fetch1(e, "q1", T0 + 5000), n1);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- retention */

static void opts_keep2(jobq_queue_opts *o)
{
    o->keep_completed.count = 2;
    o->keep_completed.age_ms = 0;
    o->keep_failed.count = 1;
    o->keep_failed.age_ms = 0;
}

Test(engine, retention_by_count)
{
    hook_log h;
    jobq_engine *e = eng_new(&h, 114);
    jobq_queue *q = mkq(e, "q", T0, opts_keep2);
    jobq_job *j[8];
    char id[16];

    for (int i = 0; i < 8; i++) {
        snprintf(id, sizeof id, "j%d", i);
        j[i] = enq(e, "q", id, 0, T0);
    }
    commit(e, T0);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(fetch1(e, "q", T0 + i), j[i]);
        complete_ok(e, j[i], T0 + i);
    }
    cr_assert_eq(jobq_queue_count(q, JOBQ_COMPLETED), 2);
    cr_assert_eq(h.deleted, 3);
    cr_assert_null(jobq_engine_job(e, "j0"));
    cr_assert_null(jobq_engine_job(e, "j2"));
    cr_assert_not_null(jobq_engine_job(e, "j3"), "the newest two are kept");
    cr_assert_not_null(jobq_engine_job(e, "j4"));
    for (int i = 5; i < 8; i++) {
        cr_assert_eq(fetch1(e, "q", T0 + i), j[i]);
        fail_ok(e, j[i], "x", 0, -1, T0 + i);
    }
    cr_assert_eq(jobq_queue_count(q, JOBQ_FAILED), 1);
    cr_assert_not_null(jobq_engine_job(e, "j7"));
    cr_assert_null(jobq_engine_job(e, "j6"));
    cr_assert_eq(jobq_engine_job_total(e), 3);
    {
        /* lowering the limit trims at once */
        jobq_queue_opts o;
        jobq_queue_opts_default(&o);
        o.set = JOBQ_QO_KEEP_COMPLETED;
        o.keep_completed.count = 0;
        o.keep_completed.age_ms = 0;
        jobq_engine_queue_patch(e, q, &o, T0 + 100);
        jobq_queue_opts_clear(&o);
    }
    cr_assert_eq(jobq_queue_count(q, JOBQ_COMPLETED), 0);
    cr_assert_eq(jobq_engine_job_total(e), 1);
    commit(e, T0 + 100);
    jobq_engine_free(e);
}

static void opts_age(jobq_queue_opts *o)
{
    o->keep_completed.count = -1;
    o->keep_completed.age_ms = 10000;
}

Test(engine, retention_by_age_via_tick)
{
    jobq_engine *e = eng_new(NULL, 115);
    jobq_job *a, *b, *f;
    int64_t gone_a = 0, gone_b = 0, gone_f = 0;
    const int64_t week = INT64_C(7) * 24 * 3600 * 1000;

    mkq(e, "q", T0, opts_age);
    a = enq(e, "q", "a", 0, T0);
    b = enq(e, "q", "b", 0, T0);
    f = enq(e, "d", "f", 0, T0); /* queue "d": default keep_failed = 7 days */
    commit(e, T0);
    cr_assert_eq(fetch1(e, "q", T0), a);
    complete_ok(e, a, T0);
    cr_assert_eq(fetch1(e, "q", T0 + 5000), b);
    complete_ok(e, b, T0 + 5000);
    cr_assert_eq(fetch1(e, "d", T0), f);
    fail_ok(e, f, "x", 0, -1, T0);
    cr_assert_leq(jobq_engine_next_timer(e), T0 + 1000, "age sweep must be on the timer");
    for (int64_t t = T0 + 100; t <= T0 + 20000; t += 100) {
        jobq_engine_tick(e, t);
        if (!gone_a && !jobq_engine_job(e, "a"))
            gone_a = t;
        if (!gone_b && !jobq_engine_job(e, "b"))
            gone_b = t;
    }
    cr_assert(gone_a >= T0 + 10000 && gone_a <= T0 + 11000, "a removed at +%" PRId64, gone_a - T0);
    cr_assert(gone_b >= T0 + 15000 && gone_b <= T0 + 16000, "b removed at +%" PRId64, gone_b - T0);
    cr_assert_not_null(jobq_engine_job(e, "f"));
    /* the failed job: 7 days (the default keep_failed), swept by ticks at next_timer */
    jobq_engine_tick(e, T0 + week - 1);
    cr_assert_not_null(jobq_engine_job(e, "f"), "failed job removed before 7 days");
    for (int64_t t = T0 + week - 1; t <= T0 + week + 5000;) {
        int64_t nt = jobq_engine_next_timer(e);
        cr_assert_lt(nt, INT64_MAX, "no timer while a final job awaits its age limit");
        t = nt > t ? nt : t + 1;
        jobq_engine_tick(e, t);
        if (!jobq_engine_job(e, "f")) {
            gone_f = t;
            break;
        }
    }
    cr_assert(gone_f >= T0 + week && gone_f <= T0 + week + 1000,
              "failed job removed at +%" PRId64 " ms, want 7 days", gone_f - T0);
    cr_assert_eq(jobq_engine_job_total(e), 0);
    jobq_engine_free(e);
}
