/*
 * test_engine_limits.c — fairness and limits on a simulated clock: round-robin across
 * groups, group and tier limits, the server-wide cap, rate windows, queue backoff, the
 * circuit breaker, resource-aware dispatch, and grouped queues after a restart.
 */
#include "helpers.h"

static jobq_job *enq_group(jobq_engine *e, const char *queue, const char *group, const char *tier,
                           int64_t now)
{
    jobq_job_spec s = spec_default();

    s.group = group;
    s.tier = tier;
    return enq_spec(e, queue, &s, now);
}

static void set_rr(jobq_queue_opts *o)
{
    o->fairness = JOBQ_FAIR_ROUND_ROBIN;
}

static void set_gc1(jobq_queue_opts *o)
{
    o->group_concurrency = 1;
}

static void set_gc3(jobq_queue_opts *o)
{
    o->group_concurrency = 3;
}

static const char *group_of(const jobq_engine *e, const jobq_job *j)
{
    static char buf[64];
    json_t *o = job_json(e, j, T0);
    const char *g = json_string_value(json_object_get(o, "group"));

    snprintf(buf, sizeof buf, "%s", g ? g : "");
    json_decref(o);
    return buf;
}

/* ---------------------------------------------------------------- fairness */

/* 1,000 groups with skewed backlogs: one group queued 20,000 jobs first, the others 1 to 5
 * each after it. Round-robin must start every group's first job within one round of the
 * groups, however long the big backlog is. */
Test(limits, round_robin_across_1000_groups_bounds_the_smallest_groups_wait)
{
    jobq_engine *e = eng_new(NULL, 1);
    int64_t t = T0;
    GHashTable *first = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    int64_t dispatched = 0, worst = 0;
    int ngroups = 1000;
    jobq_job *out[16];

    mkq(e, "render", t, set_rr);
    for (int i = 0; i < 20000; i++)
        enq_group(e, "render", "big", NULL, t);
    for (int g = 1; g < ngroups; g++) {
        char name[32];
        snprintf(name, sizeof name, "user-%d", g);
        for (int k = 0; k < 1 + g % 5; k++)
            enq_group(e, "render", name, NULL, t);
    }
    commit(e, t);
    while ((int)g_hash_table_size(first) < ngroups) {
        size_t n = fetchq(e, "render", 16, "w", ++t, out);
        cr_assert_gt(n, 0, "work left but nothing handed out");
        for (size_t i = 0; i < n; i++) {
            const char *g = group_of(e, out[i]);
            dispatched++;
            if (!g_hash_table_contains(first, g)) {
                g_hash_table_insert(first, g_strdup(g), NULL);
                if (dispatched > worst)
                    worst = dispatched;
            }
            complete_ok(e, out[i], t);
        }
        commit(e, t);
    }
    /* every group started within the first round (one job per group, plus one batch) */
    cr_assert_leq(worst, ngroups + 16, "a group's first job waited %" PRId64 " dispatches", worst);
    g_hash_table_destroy(first);
    jobq_engine_free(e);
}

Test(limits, fifo_queue_keeps_priority_then_seq_order)
{
    jobq_engine *e = eng_new(NULL, 1);
    jobq_job *a, *b, *c, *out[4];

    mkq(e, "q", T0, NULL);
    a = enq_group(e, "q", "g1", NULL, T0);
    b = enq_group(e, "q", "g1", NULL, T0);
    c = enq_group(e, "q", "g2", NULL, T0);
    commit(e, T0);
    cr_assert_eq(fetchq(e, "q", 3, "w", T0, out), 3);
    cr_assert(out[0] == a && out[1] == b && out[2] == c, "no groups limited: plain FIFO");
    jobq_engine_free(e);
}

Test(limits, saturated_group_is_skipped_without_blocking_others)
{
    jobq_engine *e = eng_new(NULL, 1);
    jobq_job *out[16], *a[3], *b[3];
    jobq_queue *q = mkq(e, "q", T0, set_gc1);

    for (int i = 0; i < 3; i++)
        a[i] = enq_group(e, "q", "a", NULL, T0);
    for (int i = 0; i < 3; i++)
        b[i] = enq_group(e, "q", "b", NULL, T0);
    commit(e, T0);
    cr_assert_eq(fetchq(e, "q", 16, "w", T0, out), 2, "one per group");
    cr_assert(out[0] == a[0] && out[1] == b[0]);
    cr_assert_eq(fetchq(e, "q", 16, "w", T0, out), 0, "both groups at their limit");
    /* position stays the (priority, seq) rank among waiting jobs */
    cr_assert_eq(jobq_engine_job_position(e, a[1]), 0);
    cr_assert_eq(jobq_engine_job_position(e, b[1]), 2);
    complete_ok(e, a[0], T0 + 1);
    cr_assert_eq(fetchq(e, "q", 16, "w", T0 + 1, out), 1);
    cr_assert(out[0] == a[1], "a frees a slot: its next job");
    /* raising the limit frees the groups at once */
    {
        jobq_queue_opts o;
        jobq_queue_opts_default(&o);
        o.set = JOBQ_QO_GROUP_CONCURRENCY;
        o.group_concurrency = 2;
        jobq_engine_queue_patch(e, q, &o, T0 + 2);
        jobq_queue_opts_clear(&o);
    }
    cr_assert_eq(fetchq(e, "q", 16, "w", T0 + 2, out), 2);
    cr_assert(out[0] == b[1] || out[1] == b[1]);
    jobq_engine_free(e);
}

/* 9,000 of 10,000 groups at their limit: a fetch still finds the ready ones at once. */
Test(limits, fetch_ignores_saturated_groups)
{
    jobq_engine *e = eng_new(NULL, 1);
    jobq_job *out[1000];
    char name[32];
    size_t got = 0;

    mkq(e, "q", T0, set_gc1);
    for (int g = 0; g < 10000; g++) {
        snprintf(name, sizeof name, "g%d", g);
        enq_group(e, "q", name, NULL, T0);
        enq_group(e, "q", name, NULL, T0);
    }
    commit(e, T0);
    while (got < 10000) {
        size_t n = fetchq(e, "q", 1000, "w", T0, out);
        cr_assert_gt(n, 0);
        got += n;
    }
    cr_assert_eq(fetchq(e, "q", 1000, "w", T0, out), 0, "every group saturated");
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- tiers */

static void shipped_tiers(jobq_engine *e)
{
    static const struct {
        const char *name;
        int64_t limit;
        int prio;
    } tiers[] = {{"free", 1, -10}, {"basic", 2, 0}, {"pro", 5, 10}, {"enterprise", 10, 20}};

    for (size_t i = 0; i < 4; i++) {
        jobq_tier t = {
            .group_concurrency = tiers[i].limit, .has_priority = 1, .priority = tiers[i].prio};
        jobq_engine_set_tier(e, tiers[i].name, &t, T0);
    }
}

Test(limits, tiers_limit_groups_and_set_default_priority)
{
    jobq_engine *e = eng_new(NULL, 1);
    jobq_job *out[64], *f, *p;
    int nfree = 0, npro = 0;

    shipped_tiers(e);
    mkq(e, "render", T0, NULL);
    for (int i = 0; i < 10; i++)
        f = enq_group(e, "render", "u-free", "free", T0);
    for (int i = 0; i < 10; i++)
        p = enq_group(e, "render", "u-pro", "pro", T0);
    {
        jobq_job_spec s = spec_prio(20);
        s.group = "u-free2";
        s.tier = "free";
        jobq_job *x = enq_spec(e, "render", &s, T0);
        cr_assert_eq(job_int(e, x, "priority", T0), 20, "an explicit priority wins");
    }
    cr_assert_eq(job_int(e, f, "priority", T0), -10, "free: low");
    cr_assert_eq(job_int(e, p, "priority", T0), 10, "pro: high");
    commit(e, T0);
    size_t n = fetchq(e, "render", 64, "w", T0, out);
    for (size_t i = 0; i < n; i++) {
        nfree += !strcmp(group_of(e, out[i]), "u-free");
        npro += !strcmp(group_of(e, out[i]), "u-pro");
    }
    cr_assert_eq(nfree, 1, "free tier: 1 at a time");
    cr_assert_eq(npro, 5, "pro tier: 5 at a time");
    cr_assert_eq(n, 7);
    cr_assert(out[0] != NULL && job_int(e, out[0], "priority", T0) == 20);
    jobq_engine_free(e);
}

Test(limits, effective_limit_is_the_smaller_of_queue_and_tier)
{
    jobq_engine *e = eng_new(NULL, 1);
    jobq_job *out[64];
    jobq_tier ent = {.group_concurrency = 10};

    jobq_engine_set_tier(e, "enterprise", &ent, T0);
    mkq(e, "q", T0, set_gc3);
    for (int i = 0; i < 20; i++)
        enq_group(e, "q", "acme", "enterprise", T0);
    commit(e, T0);
    cr_assert_eq(fetchq(e, "q", 64, "w", T0, out), 3, "min(3, 10)");
    /* a tier change applies at once to the groups already there */
    ent.group_concurrency = 2;
    jobq_engine_set_tier(e, "enterprise", &ent, T0);
    complete_ok(e, out[0], T0);
    cr_assert_eq(fetchq(e, "q", 64, "w", T0, out), 0, "2 active, limit now 2");
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- the server-wide cap */

Test(limits, max_active_changes_mid_run)
{
    hook_log h;
    jobq_engine *e = eng_new(&h, 1);
    jobq_job *out[64], *act[64];
    const char *qs[2] = {"a", "b"};
    size_t na = 0;

    for (int i = 0; i < 20; i++) {
        enq(e, "a", NULL, 0, T0);
        enq(e, "b", NULL, 0, T0);
    }
    commit(e, T0);
    jobq_engine_set_max_active(e, 3, T0);
    na += jobq_engine_fetch(e, qs, 2, 64, "w", T0, act + na);
    cr_assert_eq(na, 3);
    cr_assert_eq(jobq_engine_active_total(e), 3);
    h.ready = 0;
    jobq_engine_set_max_active(e, 5, T0 + 1);
    cr_assert_gt(h.ready, 0, "raising the cap wakes parked fetches");
    na += jobq_engine_fetch(e, qs, 2, 64, "w", T0 + 1, act + na);
    cr_assert_eq(na, 5);
    jobq_engine_set_max_active(e, 1, T0 + 2); /* an incident: running jobs finish */
    cr_assert_eq(jobq_engine_fetch(e, qs, 2, 64, "w", T0 + 2, out), 0);
    for (int i = 0; i < 4; i++)
        complete_ok(e, act[--na], T0 + 3);
    cr_assert_eq(jobq_engine_active_total(e), 1);
    cr_assert_eq(jobq_engine_fetch(e, qs, 2, 64, "w", T0 + 3, out), 0, "1 running, cap 1");
    h.ready = 0;
    complete_ok(e, act[--na], T0 + 4);
    cr_assert_gt(h.ready, 0, "a job under the cap finishing wakes parked fetches");
    cr_assert_eq(jobq_engine_fetch(e, qs, 2, 64, "w", T0 + 4, out), 1);
    jobq_engine_set_max_active(e, 0, T0 + 5);
    cr_assert_eq(jobq_engine_fetch(e, qs, 2, 64, "w", T0 + 5, out), 34, "no cap");
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- rate limits */

static void set_rate(jobq_queue_opts *o)
{
    o->rate_max = 7;
    o->rate_per_ms = 1000;
}

/* Ten simulated minutes of workers fetching at odd moments: no window of 1 s ever holds
 * more than 7 dispatches, and the limit is used fully (parked fetches wake when it opens). */
Test(limits, rate_window_is_exact_over_ten_minutes)
{
    hook_log h;
    jobq_engine *e = eng_new(&h, 1);
    GArray *at = g_array_new(FALSE, FALSE, sizeof(int64_t));
    jobq_job *out[8];
    int64_t t = T0, end = T0 + 600000;

    mkq(e, "tts", t, set_rate);
    for (int i = 0; i < 5000; i++)
        enq(e, "tts", NULL, 0, t);
    commit(e, t);
    while (t < end) {
        size_t n = fetchq(e, "tts", 3, "w", t, out);
        for (size_t i = 0; i < n; i++) {
            g_array_append_val(at, t);
            complete_ok(e, out[i], t);
        }
        if (n == 0) {
            /* a parked fetch sleeps until the engine's next timer, which must be when the
             * window opens, and the tick there says the queue is ready */
            int64_t next = jobq_engine_next_timer(e);
            cr_assert_gt(next, t);
            cr_assert_leq(next, t + 1000);
            h.ready = 0;
            t = next;
            jobq_engine_tick(e, t);
            cr_assert_gt(h.ready, 0, "the window opened: ready hook");
        } else {
            t += 37 * (int64_t)(1 + (t % 3));
        }
    }
    for (guint i = 0; i < at->len; i++) {
        int64_t ti = g_array_index(at, int64_t, i), in = 0;
        for (guint k = i; k < at->len && g_array_index(at, int64_t, k) < ti + 1000; k++)
            in++;
        cr_assert_leq(in, 7, "window at %" PRId64 " holds %" PRId64, ti - T0, in);
    }
    cr_assert_geq(at->len, 600 * 7 - 7, "the rate is used fully: %u dispatches", at->len);
    cr_assert_leq(at->len, 600 * 7 + 7);
    g_array_free(at, TRUE);
    jobq_engine_free(e);
}

/* The window is a fact about dispatches already made: neither a restart nor a PATCH of the
 * rate limit (the config file applies one at every start) opens a full window early. */
Test(limits, rate_window_survives_a_restart_and_a_patch)
{
    simstore *s = sim_new();
    jobq_engine *e = eng_new(NULL, 1);
    jobq_queue *q = mkq(e, "tts", T0, set_rate);
    jobq_queue_opts o;
    jobq_job *out[16];

    for (int i = 0; i < 30; i++)
        enq(e, "tts", NULL, 0, T0);
    commit_to(e, s, T0);
    cr_assert_eq(fetchq(e, "tts", 4, "w", T0, out), 4);
    for (int i = 0; i < 4; i++)
        complete_ok(e, out[i], T0 + 10);
    cr_assert_eq(fetchq(e, "tts", 3, "w", T0 + 400, out), 3); /* 2 of them still running */
    complete_ok(e, out[0], T0 + 410);
    commit_to(e, s, T0 + 500);
    jobq_engine_free(e);

    e = eng_new(NULL, 2);
    sim_load(s, e, T0 + 600);
    q = jobq_engine_queue(e, "tts");
    cr_assert_eq(fetchq(e, "tts", 16, "w", T0 + 600, out), 0, "7 started in the last second");
    cr_assert_eq(jobq_engine_next_timer(e) <= T0 + 1000, 1);
    cr_assert_eq(fetchq(e, "tts", 16, "w", T0 + 1000, out), 4, "the first 4 left the window");

    /* the same limit patched again: still full; a smaller max keeps the latest starts */
    jobq_queue_opts_default(&o);
    o.set = JOBQ_QO_RATE_LIMIT;
    o.rate_max = 7;
    o.rate_per_ms = 1000;
    cr_assert_eq(jobq_engine_queue_patch(e, q, &o, T0 + 1100), 0);
    cr_assert_eq(fetchq(e, "tts", 16, "w", T0 + 1100, out), 0);
    o.rate_max = 5;
    cr_assert_eq(jobq_engine_queue_patch(e, q, &o, T0 + 1100), 0);
    cr_assert_eq(fetchq(e, "tts", 16, "w", T0 + 1399, out), 0);
    cr_assert_eq(fetchq(e, "tts", 16, "w", T0 + 1400, out), 1,
                 "kept: one start at 400, four at 1000; at 1400 four are in the window");
    jobq_queue_opts_clear(&o);
    jobq_engine_free(e);
    sim_free(s);
}

Test(limits, rate_limit_error_with_queue_backoff_pauses_the_queue)
{
    jobq_engine *e = eng_new(NULL, 1);
    jobq_job *j, *out[4];

    mkq(e, "q", T0, NULL);
    for (int i = 0; i < 3; i++)
        enq(e, "q", NULL, 0, T0);
    commit(e, T0);
    j = fetch1(e, "q", T0);
    {
        lease_buf l = lease_of(j);
        jobq_failure f = failure("rate_limit", 1, 500);
        f.queue_backoff = 1;
        cr_assert_eq(jobq_engine_fail(e, j, l.s, &f, T0, NULL), 0);
    }
    cr_assert_eq(jobq_job_attempt(j), 0, "no attempt spent");
    cr_assert_eq(jobq_job_state(j), JOBQ_RETRYING);
    cr_assert_eq(fetchq(e, "q", 4, "w", T0 + 499, out), 0, "the whole queue waits");
    cr_assert_eq(jobq_engine_next_timer(e), T0 + 500);
    jobq_engine_tick(e, T0 + 500);
    cr_assert_eq(fetchq(e, "q", 4, "w", T0 + 500, out), 3);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- circuit breaker */

static void set_cb(jobq_queue_opts *o)
{
    o->cb_failures = 3;
    o->cb_cooldown_ms = 1000;
    o->defaults.max_attempts = 100;
}

Test(limits, breaker_opens_half_opens_and_closes)
{
    hook_log h;
    jobq_engine *e = eng_new(&h, 1);
    jobq_queue *q = mkq(e, "tts", T0, set_cb);
    jobq_job *out[16], *j;
    int64_t t = T0;

    for (int i = 0; i < 10; i++)
        enq(e, "tts", NULL, 0, t);
    commit(e, t);
    /* two provider errors and a completion: not consecutive */
    for (int i = 0; i < 2; i++)
        fail_ok(e, fetch1(e, "tts", t), "provider", 1, 0, t);
    complete_ok(e, fetch1(e, "tts", t), t);
    cr_assert_eq(jobq_queue_status(q), JOBQ_Q_ACTIVE);
    /* three in a row open it */
    cr_assert_eq(fetchq(e, "tts", 3, "w", t, out), 3);
    for (int i = 0; i < 3; i++)
        fail_ok(e, out[i], "provider", 1, 0, t);
    cr_assert_eq(jobq_queue_status(q), JOBQ_Q_ERROR);
    cr_assert_eq(fetchq(e, "tts", 16, "w", t + 999, out), 0, "open: nothing dispatched");
    cr_assert_eq(jobq_engine_next_timer(e), t + 1000, "wakes when the cooldown ends");
    h.ready = 0;
    t += 1000;
    jobq_engine_tick(e, t);
    cr_assert_gt(h.ready, 0);
    /* half-open: exactly one trial */
    cr_assert_eq(fetchq(e, "tts", 16, "w", t, out), 1);
    j = out[0];
    cr_assert_eq(fetchq(e, "tts", 16, "w", t, out), 0, "one trial at a time");
    cr_assert_eq(jobq_queue_status(q), JOBQ_Q_ERROR);
    fail_ok(e, j, "provider", 1, 0, t);
    cr_assert_eq(jobq_queue_status(q), JOBQ_Q_ERROR, "trial failed: open again");
    cr_assert_eq(fetchq(e, "tts", 16, "w", t + 500, out), 0);
    t += 1000;
    jobq_engine_tick(e, t);
    cr_assert_eq(fetchq(e, "tts", 16, "w", t, out), 1);
    complete_ok(e, out[0], t);
    cr_assert_eq(jobq_queue_status(q), JOBQ_Q_ACTIVE, "trial succeeded: closed");
    cr_assert_eq(fetchq(e, "tts", 16, "w", t, out), 8, "everything else flows again");
    /* waiting jobs spent no attempts while it was open */
    for (int i = 0; i < 8; i++)
        cr_assert_leq(jobq_job_attempt(out[i]), 1);
    jobq_engine_free(e);
}

/* A job that was running when the breaker opened completes: the provider answered, so the
 * breaker closes at once (docs/limits.md), before its cooldown. */
Test(limits, breaker_closes_on_any_completion)
{
    jobq_engine *e = eng_new(NULL, 1);
    jobq_queue *q = mkq(e, "tts", T0, set_cb);
    jobq_job *out[16];

    for (int i = 0; i < 8; i++)
        enq(e, "tts", NULL, 0, T0);
    commit(e, T0);
    cr_assert_eq(fetchq(e, "tts", 4, "w", T0, out), 4);
    for (int i = 0; i < 3; i++)
        fail_ok(e, out[i], "provider", 1, 0, T0);
    cr_assert_eq(jobq_queue_status(q), JOBQ_Q_ERROR);
    cr_assert_eq(fetchq(e, "tts", 16, "w", T0 + 10, out + 4), 0);
    complete_ok(e, out[3], T0 + 20);
    cr_assert_eq(jobq_queue_status(q), JOBQ_Q_ACTIVE);
    cr_assert_eq(fetchq(e, "tts", 16, "w", T0 + 20, out), 7, "no cooldown left to wait");
    jobq_engine_free(e);
}

Test(limits, breaker_trial_that_stalls_lets_another_trial_go)
{
    jobq_engine *e = eng_new(NULL, 1);
    jobq_queue *q = mkq(e, "tts", T0, set_cb);
    jobq_job *out[16];

    for (int i = 0; i < 5; i++)
        enq(e, "tts", NULL, 0, T0);
    commit(e, T0);
    cr_assert_eq(fetchq(e, "tts", 3, "w", T0, out), 3);
    for (int i = 0; i < 3; i++)
        fail_ok(e, out[i], "provider", 1, 0, T0);
    cr_assert_eq(fetchq(e, "tts", 3, "w", T0 + 1000, out), 1);
    /* the trial's lease runs out (30 s): no verdict, another trial may go */
    jobq_engine_tick(e, T0 + 1000 + 30000);
    cr_assert_eq(jobq_queue_status(q), JOBQ_Q_ERROR);
    cr_assert_eq(fetchq(e, "tts", 3, "w", T0 + 31001, out), 1);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- resources */

static jobq_resources *res(const char *json)
{
    json_t *v = json_loads(json, 0, NULL);
    const char *why;
    jobq_resources *r = jobq_resources_parse(v, &why);

    cr_assert_not_null(r, "%s", json);
    json_decref(v);
    return r;
}

static size_t fetch_cap(jobq_engine *e, const char *queue, size_t n, const char *worker,
                        const jobq_resources *cap, int64_t now, jobq_job **out)
{
    const char *qs[1] = {queue};

    return jobq_engine_fetch_fit(e, qs, 1, n, worker, cap, now, out);
}

Test(limits, resource_packing_with_mixed_sizes)
{
    jobq_engine *e = eng_new(NULL, 1);
    jobq_resources *gpu2 = res("{\"gpu\": 2, \"vram_mb\": 48000}");
    jobq_job *big, *s1, *s2, *s3, *none, *out[16];

    big = enq_json(e, "gpu", "{\"requires\": {\"gpu\": 2, \"vram_mb\": 40000}, \"priority\": 10}",
                   T0);
    s1 = enq_json(e, "gpu", "{\"requires\": {\"gpu\": 1, \"vram_mb\": 16000}}", T0);
    s2 = enq_json(e, "gpu", "{\"requires\": {\"gpu\": 1, \"vram_mb\": 16000}}", T0);
    s3 = enq_json(e, "gpu", "{\"requires\": {\"gpu\": 1, \"vram_mb\": 24000}}", T0);
    none = enq_json(e, "gpu", "{}", T0);
    commit(e, T0);
    /* the big one fills the worker; a job that needs nothing still goes */
    cr_assert_eq(fetch_cap(e, "gpu", 16, "box", gpu2, T0, out), 2);
    cr_assert(out[0] == big && out[1] == none);
    complete_ok(e, big, T0 + 1);
    /* two smalls fit (2 gpus, 32 GB); the third would need a third gpu */
    cr_assert_eq(fetch_cap(e, "gpu", 16, "box", gpu2, T0 + 1, out), 2);
    cr_assert(out[0] == s1 && out[1] == s2);
    complete_ok(e, s1, T0 + 2);
    cr_assert_eq(fetch_cap(e, "gpu", 16, "box", gpu2, T0 + 2, out), 1);
    cr_assert(out[0] == s3, "16 + 24 GB fit in 48");
    /* another worker has its own capacity */
    {
        jobq_job *x = enq_json(e, "gpu", "{\"requires\": {\"gpu\": 1}}", T0 + 3);
        commit(e, T0 + 3);
        cr_assert_eq(fetch_cap(e, "gpu", 16, "box", gpu2, T0 + 3, out), 0, "box is full");
        cr_assert_eq(fetch_cap(e, "gpu", 16, "box2", gpu2, T0 + 3, out), 1);
        cr_assert(out[0] == x);
    }
    jobq_resources_free(gpu2);
    jobq_engine_free(e);
}

Test(limits, big_job_reserves_after_being_skipped)
{
    jobq_engine *e = eng_new(NULL, 1);
    jobq_resources *cap = res("{\"gpu\": 2}"), *small_cap = res("{\"gpu\": 1}");
    jobq_job *keep, *big, *out[4];
    int64_t t = T0;
    int handed = 0;

    keep = enq_json(e, "gpu", "{\"requires\": {\"gpu\": 1}, \"priority\": 5}", t);
    big = enq_json(e, "gpu", "{\"requires\": {\"gpu\": 2}, \"priority\": 1}", t);
    for (int i = 0; i < 50; i++)
        enq_json(e, "gpu", "{\"requires\": {\"gpu\": 1}}", t);
    commit(e, t);
    cr_assert_eq(fetch_cap(e, "gpu", 1, "box", cap, t, out), 1);
    cr_assert(out[0] == keep);
    /* one gpu stays busy; small jobs pass the big one until it has been skipped 8 times */
    for (int i = 0; i < 20; i++) {
        size_t n = fetch_cap(e, "gpu", 1, "box", cap, ++t, out);
        if (!n)
            break;
        cr_assert(out[0] != big);
        handed++;
        complete_ok(e, out[0], t);
    }
    cr_assert_eq(handed, 8, "small jobs passed the big one %d times", handed);
    /* a worker that could never run the big job still gets small ones */
    cr_assert_eq(fetch_cap(e, "gpu", 1, "tiny", small_cap, t, out), 1);
    complete_ok(e, out[0], t);
    /* once box's gpu frees up, the big job goes */
    complete_ok(e, keep, ++t);
    cr_assert_eq(fetch_cap(e, "gpu", 1, "box", cap, t, out), 1);
    cr_assert(out[0] == big);
    jobq_resources_free(cap);
    jobq_resources_free(small_cap);
    jobq_engine_free(e);
}

/* Fetches without a worker id share the "anonymous" worker: the second sees what the
 * first one's job holds. */
Test(limits, fetches_without_a_worker_id_count_what_anonymous_holds)
{
    jobq_engine *e = eng_new(NULL, 1);
    jobq_resources *gpu1 = res("{\"gpu\": 1}");
    jobq_job *a, *b, *out[4];

    a = enq_json(e, "gpu", "{\"requires\": {\"gpu\": 1}}", T0);
    b = enq_json(e, "gpu", "{\"requires\": {\"gpu\": 1}}", T0);
    commit(e, T0);
    cr_assert_eq(fetch_cap(e, "gpu", 4, NULL, gpu1, T0, out), 1);
    cr_assert_eq(out[0], a);
    cr_assert_eq(fetch_cap(e, "gpu", 4, NULL, gpu1, T0, out), 0, "the one gpu is taken");
    complete_ok(e, a, T0);
    cr_assert_eq(fetch_cap(e, "gpu", 4, NULL, gpu1, T0, out), 1);
    cr_assert_eq(out[0], b);
    jobq_resources_free(gpu1);
    jobq_engine_free(e);
}

Test(limits, resources_parse_refuses_bad_maps)
{
    const char *bad[] = {"[]", "{\"gpu\": -1}", "{\"gpu\": \"1\"}", "{\"\": 1}", NULL};

    for (int i = 0; bad[i]; i++) {
        json_t *v = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        const char *why = NULL;
        cr_assert_null(jobq_resources_parse(v, &why), "%s", bad[i]);
        cr_assert_not_null(why);
        json_decref(v);
    }
}

/* ---------------------------------------------------------------- restart */

Test(limits, grouped_queue_survives_a_restart)
{
    simstore *s = sim_new();
    jobq_engine *e = eng_new(NULL, 1), *b;
    jobq_job *out[16];

    shipped_tiers(e);
    mkq(e, "q", T0, NULL);
    mkq(e, "gc", T0, set_gc1);
    for (int i = 0; i < 4; i++)
        enq_group(e, "q", "u1", "free", T0);
    for (int i = 0; i < 4; i++)
        enq_group(e, "q", "u2", "basic", T0);
    for (int i = 0; i < 3; i++) {
        enq_group(e, "gc", "a", NULL, T0);
        enq_group(e, "gc", "b", NULL, T0);
    }
    commit_to(e, s, T0);
    cr_assert_eq(fetchq(e, "q", 16, "w", T0, out), 3);
    cr_assert_eq(fetchq(e, "gc", 1, "w", T0, out), 1);
    commit_to(e, s, T0);
    jobq_engine_free(e);

    b = eng_new(NULL, 2);
    shipped_tiers(b);
    sim_load(s, b, T0 + 10);
    /* the three that were active are waiting again; limits hold as before */
    cr_assert_eq(jobq_engine_active_total(b), 0);
    cr_assert_eq(fetchq(b, "q", 16, "w", T0 + 10, out), 3);
    cr_assert_eq(jobq_engine_active_total(b), 3);
    cr_assert_eq(fetchq(b, "q", 16, "w", T0 + 10, out), 0);
    /* a queue grouped by its own group_concurrency: one per group, as before */
    cr_assert_eq(fetchq(b, "gc", 16, "w", T0 + 10, out), 2);
    {
        char g0[64];
        snprintf(g0, sizeof g0, "%s", group_of(b, out[0]));
        cr_assert(strcmp(g0, group_of(b, out[1])) != 0);
    }
    cr_assert_eq(fetchq(b, "gc", 16, "w", T0 + 10, out), 0);
    jobq_engine_free(b);
    sim_free(s);
}

/* ---------------------------------------------------------------- events */

static void hk_types(void *ud, const jobq_event *ev)
{
    GString *s = ud;

    if (g_str_has_prefix(ev->type, "queue.")) {
        g_string_append(s, ev->json);
        g_string_append_c(s, '\n');
    }
}

Test(limits, breaker_announces_queue_error_and_resumed)
{
    GString *log = g_string_new(NULL);
    jobq_engine_config cfg = {.seed = 1};
    jobq_engine_hooks hooks = {.event = hk_types, .ud = log};
    jobq_engine *e = jobq_engine_new(&cfg, &hooks);
    jobq_job *out[4];

    jobq_engine_load_done(e, T0);
    mkq(e, "tts", T0, set_cb);
    for (int i = 0; i < 4; i++)
        enq(e, "tts", NULL, 0, T0);
    commit(e, T0);
    cr_assert_eq(fetchq(e, "tts", 3, "w", T0, out), 3);
    for (int i = 0; i < 3; i++)
        fail_ok(e, out[i], "provider", 1, 0, T0);
    cr_assert(strstr(log->str, "\"type\":\"queue.error\"") != NULL, "%s", log->str);
    cr_assert(strstr(log->str, "\"status\":\"error\"") != NULL, "%s", log->str);
    jobq_engine_tick(e, T0 + 1000);
    cr_assert_eq(fetchq(e, "tts", 3, "w", T0 + 1000, out), 1);
    complete_ok(e, out[0], T0 + 1000);
    cr_assert(strstr(log->str, "\"type\":\"queue.resumed\"") != NULL, "%s", log->str);
    cr_assert(strstr(log->str, "\"breaker\":\"closed\"") != NULL, "%s", log->str);
    jobq_engine_free(e);
    g_string_free(log, TRUE);
}

static void set_gc1_fifo(jobq_queue_opts *o)
{
    o->group_concurrency = 1;
    o->fairness = JOBQ_FAIR_FIFO;
}

Test(limits, fifo_with_group_limits_keeps_enqueue_order_across_groups)
{
    jobq_engine *e = eng_new(NULL, 1);
    jobq_job *a[3], *b[3], *out[8];

    mkq(e, "q", T0, set_gc1_fifo);
    for (int i = 0; i < 3; i++)
        a[i] = enq_group(e, "q", "a", NULL, T0);
    for (int i = 0; i < 3; i++)
        b[i] = enq_group(e, "q", "b", NULL, T0);
    commit(e, T0);
    cr_assert_eq(fetchq(e, "q", 8, "w", T0, out), 2);
    cr_assert(out[0] == a[0] && out[1] == b[0]);
    complete_ok(e, b[0], T0);
    complete_ok(e, a[0], T0);
    cr_assert_eq(fetchq(e, "q", 1, "w", T0, out), 1);
    cr_assert(out[0] == a[1], "fifo: the older job first, whichever group freed up first");
    jobq_engine_free(e);
}

Test(limits, round_robin_per_priority_level)
{
    jobq_engine *e = eng_new(NULL, 1);
    jobq_job *out[8], *xh, *xl, *yl[2];
    jobq_job_spec s = spec_prio(10);

    mkq(e, "q", T0, set_rr);
    xl = enq_group(e, "q", "x", NULL, T0);
    yl[0] = enq_group(e, "q", "y", NULL, T0);
    yl[1] = enq_group(e, "q", "y", NULL, T0);
    s.group = "x";
    xh = enq_spec(e, "q", &s, T0);
    commit(e, T0);
    cr_assert_eq(fetchq(e, "q", 8, "w", T0, out), 4);
    cr_assert(out[0] == xh, "higher priority first");
    cr_assert(out[1] == xl && out[2] == yl[0] && out[3] == yl[1], "then x, y in turn");
    jobq_engine_free(e);

    /* a job whose priority is patched moves to its new level */
    e = eng_new(NULL, 1);
    mkq(e, "q", T0, set_rr);
    xl = enq_group(e, "q", "x", NULL, T0);
    yl[0] = enq_group(e, "q", "y", NULL, T0);
    commit(e, T0);
    cr_assert_eq(jobq_engine_job_patch(e, yl[0], 1, 50, 0, 0, T0), 0);
    cr_assert_eq(jobq_engine_job_position(e, yl[0]), 0);
    cr_assert_eq(fetchq(e, "q", 8, "w", T0, out), 2);
    cr_assert(out[0] == yl[0] && out[1] == xl);
    jobq_engine_free(e);
}

static void patch_q(jobq_engine *e, jobq_queue *q, unsigned set, int64_t gc, int fairness)
{
    jobq_queue_opts o;

    jobq_queue_opts_default(&o);
    o.set = set;
    o.group_concurrency = gc;
    o.fairness = fairness;
    cr_assert_eq(jobq_engine_queue_patch(e, q, &o, T0), 0);
    jobq_queue_opts_clear(&o);
}

/* A job that left its group's index while the group lived on (here: retrying) must not
 * keep a pointer to it: the queue stops grouping, the group is freed, and the job runs
 * again later (under ASan a stale pointer is a use after free). */
Test(limits, job_retrying_when_the_queue_stops_grouping_runs_again)
{
    jobq_engine *e = eng_new(NULL, 1);
    jobq_queue *q = mkq(e, "q", T0, set_gc1);
    jobq_job *a1, *out[8];

    a1 = enq_group(e, "q", "a", NULL, T0);
    enq_group(e, "q", "a", NULL, T0);
    enq_group(e, "q", "b", NULL, T0);
    commit(e, T0);
    cr_assert_eq(fetchq(e, "q", 8, "w", T0, out), 2);
    cr_assert_eq(out[0], a1);
    fail_ok(e, a1, "other", 1, 1000, T0); /* retrying; group a keeps its waiting job */
    a1 = enq_group(e, "q", "a", NULL, T0); /* and group a more */
    commit(e, T0);
    patch_q(e, q, JOBQ_QO_GROUP_CONCURRENCY | JOBQ_QO_FAIRNESS, 0, JOBQ_FAIR_FIFO);
    jobq_engine_tick(e, T0 + 1000);
    cr_assert_eq(fetchq(e, "q", 8, "w", T0 + 1000, out), 3, "plain fifo: every waiting job");
    patch_q(e, q, JOBQ_QO_GROUP_CONCURRENCY, 1, JOBQ_FAIR_FIFO); /* grouped again */
    cr_assert_eq(fetchq(e, "q", 8, "w", T0 + 1000, out), 0);
    jobq_engine_free(e);
}

Test(limits, switching_modes_mid_run_keeps_counts)
{
    jobq_engine *e = eng_new(NULL, 1);
    jobq_queue *q = mkq(e, "q", T0, set_gc1);
    jobq_job *a[3], *b[3], *out[8];

    for (int i = 0; i < 3; i++) {
        a[i] = enq_group(e, "q", "a", NULL, T0);
        b[i] = enq_group(e, "q", "b", NULL, T0);
    }
    commit(e, T0);
    cr_assert_eq(fetchq(e, "q", 8, "w", T0, out), 2);
    patch_q(e, q, JOBQ_QO_FAIRNESS, 0, JOBQ_FAIR_FIFO); /* rebuilt: actives counted again */
    cr_assert_eq(fetchq(e, "q", 8, "w", T0, out), 0, "both groups still at their limit");
    complete_ok(e, a[0], T0);
    cr_assert_eq(fetchq(e, "q", 8, "w", T0, out), 1);
    cr_assert(out[0] == a[1]);
    /* no limits, no round-robin: plain again; the jobs still running finish normally */
    patch_q(e, q, JOBQ_QO_FAIRNESS | JOBQ_QO_GROUP_CONCURRENCY, 0, JOBQ_FAIR_AUTO);
    cr_assert_eq(fetchq(e, "q", 8, "w", T0, out), 3);
    complete_ok(e, b[0], T0);
    complete_ok(e, a[1], T0);
    for (int i = 0; i < 3; i++)
        complete_ok(e, out[i], T0);
    cr_assert_eq(jobq_engine_active_total(e), 0);
    /* and grouped once more, with nothing left */
    patch_q(e, q, JOBQ_QO_GROUP_CONCURRENCY, 1, JOBQ_FAIR_AUTO);
    cr_assert_eq(fetchq(e, "q", 8, "w", T0, out), 0);
    jobq_engine_free(e);
}

Test(limits, clear_and_delete_a_grouped_queue)
{
    jobq_engine *e = eng_new(NULL, 1);
    jobq_queue *q = mkq(e, "q", T0, set_gc1);
    jobq_job *out[8];

    for (int i = 0; i < 4; i++) {
        enq_group(e, "q", "a", NULL, T0);
        enq_group(e, "q", "b", "free", T0);
    }
    commit(e, T0);
    cr_assert_eq(fetchq(e, "q", 8, "w", T0, out), 2);
    cr_assert_eq(jobq_engine_queue_clear(e, q, T0), 6);
    cr_assert_eq(fetchq(e, "q", 8, "w", T0, out), 0);
    enq_group(e, "q", "a", NULL, T0);
    enq_group(e, "q", "c", NULL, T0);
    commit(e, T0);
    cr_assert_eq(fetchq(e, "q", 8, "w", T0, out), 1, "a is still at its limit; c goes");
    cr_assert_eq(jobq_engine_queue_delete(e, q, 1, T0), 0);
    cr_assert_eq(jobq_engine_active_total(e), 0);
    commit(e, T0);
    jobq_engine_free(e);
}

/* Queues stored before rate limits were enforced could have a max of 0 or above today's
 * bound: they load (as no limit, or as the bound) instead of stopping the server. */
Test(limits, old_rate_limits_load)
{
    simstore *s = sim_new();
    jobq_engine *e = eng_new(NULL, 1), *b;
    jobq_queue *q0 = mkq(e, "zero", T0, set_rate), *q1 = mkq(e, "huge", T0, set_rate);
    char id0[37], id1[37];

    snprintf(id0, sizeof id0, "%s", jobq_queue_id(q0));
    snprintf(id1, sizeof id1, "%s", jobq_queue_id(q1));
    commit_to(e, s, T0);
    jobq_engine_free(e);
    {
        jobq_queue_row *r0 = g_hash_table_lookup(s->queues, id0);
        jobq_queue_row *r1 = g_hash_table_lookup(s->queues, id1);
        char *c0 = r0->config, *c1 = r1->config;
        cr_assert_not_null(strstr(c0, "\"max\":7"));
        char **p0 = g_strsplit(c0, "\"max\":7", 2), **p1 = g_strsplit(c1, "\"max\":7", 2);
        char *n0 = g_strjoinv("\"max\":0", p0), *n1 = g_strjoinv("\"max\":5000000", p1);
        r0->config = sdup(n0);
        r1->config = sdup(n1);
        g_free(n0);
        g_free(n1);
        g_strfreev(p0);
        g_strfreev(p1);
        free(c0);
        free(c1);
    }
    b = eng_new(NULL, 2);
    sim_load(s, b, T0 + 1);
    cr_assert_eq(jobq_queue_options(jobq_engine_queue(b, "zero"))->rate_per_ms, 0);
    cr_assert_eq(jobq_queue_options(jobq_engine_queue(b, "huge"))->rate_max, 1000000);
    jobq_engine_free(b);
    sim_free(s);
}
