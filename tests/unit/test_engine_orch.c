/*
 * test_engine_orch.c — orchestration in the engine: flow validation, dependencies and
 * failure propagation in diamonds, review gates, unique_key lifetime, the result cache's
 * ttl, and a restart that rebuilds blocked jobs, child lists, flows and indexes from the
 * store.
 */
#include "helpers.h"

/* Parses a flow body ({"on_parent_failure"?, "jobs": [{"ref","queue",…options}]}) and asks
 * the engine to make it. Returns the engine's code; *f, *bad_ref and *why as it set them. */
static int mkflow(jobq_engine *e, const char *json, int64_t now, jobq_flow **f,
                  const char **bad_ref, const char **why)
{
    json_error_t err;
    json_t *body = json_loads(json, 0, &err), *jobs, *it;
    jobq_flow_spec fs = {0};
    size_t i;
    int rc;

    cr_assert_not_null(body, "bad test JSON: %s", err.text);
    jobs = json_object_get(body, "jobs");
    fs.n = json_array_size(jobs);
    fs.items = calloc(fs.n, sizeof *fs.items);
    fs.project = json_string_value(json_object_get(body, "project"));
    if (json_object_get(body, "on_parent_failure"))
        fs.on_parent_failure =
            jobq_opf_parse(json_string_value(json_object_get(body, "on_parent_failure")));
    json_array_foreach(jobs, i, it)
    {
        json_t *copy = json_deep_copy(it);
        const char *field = NULL, *w = NULL;
        fs.items[i].queue = json_string_value(json_object_get(it, "queue"));
        json_object_del(copy, "queue");
        json_object_del(copy, "ref");
        json_array_set_new(jobs, i, json_pack("{s:O, s:o}", "orig", it, "copy", copy));
        rc = jobq_job_spec_parse(copy, now, &fs.items[i].spec, &field, &w);
        cr_assert_eq(rc, 0, "item %zu: %s %s", i, field ? field : "", w ? w : "");
        fs.items[i].spec.ref = json_string_value(
            json_object_get(json_object_get(json_array_get(jobs, i), "orig"), "ref"));
        fs.items[i].queue = json_string_value(
            json_object_get(json_object_get(json_array_get(jobs, i), "orig"), "queue"));
    }
    *f = NULL;
    rc = jobq_engine_flow_create(e, &fs, now, f, bad_ref, why);
    if (*bad_ref) { /* it points into the body freed below */
        static char keep[160];
        snprintf(keep, sizeof keep, "%s", *bad_ref);
        *bad_ref = keep;
    }
    for (i = 0; i < fs.n; i++)
        jobq_job_spec_clear(&fs.items[i].spec);
    free(fs.items);
    json_decref(body);
    return rc;
}

static jobq_flow *flow_ok(jobq_engine *e, const char *json, int64_t now)
{
    jobq_flow *f = NULL;
    const char *ref = NULL, *why = NULL;
    int rc = mkflow(e, json, now, &f, &ref, &why);

    cr_assert_eq(rc, 0, "flow_create = %d (%s: %s)", rc, ref ? ref : "", why ? why : "");
    return f;
}

/* The flow as rendered (new reference). */
static json_t *flow_json(jobq_engine *e, jobq_flow *f)
{
    GString *s = g_string_new(NULL);
    json_t *o;

    jobq_flow_render(e, f, s);
    o = json_loads(s->str, 0, NULL);
    cr_assert_not_null(o, "flow render is not JSON: %s", s->str);
    g_string_free(s, TRUE);
    return o;
}

static const char *flow_state(jobq_engine *e, jobq_flow *f)
{
    static char buf[32];
    json_t *o = flow_json(e, f);

    snprintf(buf, sizeof buf, "%s", json_string_value(json_object_get(o, "state")));
    json_decref(o);
    return buf;
}

/* The job of ref r in flow f. */
static jobq_job *member(jobq_engine *e, jobq_flow *f, const char *r)
{
    json_t *o = flow_json(e, f);
    const char *id = json_string_value(json_object_get(json_object_get(o, "jobs"), r));
    jobq_job *j;

    cr_assert_not_null(id, "no ref %s", r);
    j = jobq_engine_job(e, id);
    json_decref(o);
    return j;
}

#define DIAMOND                                                                                    \
    "{%s\"jobs\":["                                                                                \
    "{\"ref\":\"a\",\"queue\":\"q\"},"                                                             \
    "{\"ref\":\"b\",\"queue\":\"q\",\"depends_on\":[\"a\"]},"                                      \
    "{\"ref\":\"c\",\"queue\":\"q\",\"depends_on\":[\"a\"]},"                                      \
    "{\"ref\":\"d\",\"queue\":\"q\",\"depends_on\":[\"b\",\"c\"]}]}"

static jobq_flow *diamond(jobq_engine *e, const char *policy, int64_t now)
{
    char buf[512], pol[64] = "";

    if (policy)
        snprintf(pol, sizeof pol, "\"on_parent_failure\":\"%s\",", policy);
    snprintf(buf, sizeof buf, DIAMOND, pol);
    return flow_ok(e, buf, now);
}

/* ---------------------------------------------------------------- validation */

Test(orch, dag_validation_names_the_ref)
{
    jobq_engine *e = eng_new(NULL, 1);
    static const struct {
        const char *json, *ref, *why;
    } bad[] = {
        {"{\"jobs\":[{\"ref\":\"a\",\"queue\":\"q\"},{\"ref\":\"a\",\"queue\":\"q\"}]}", "a",
         "duplicate"},
        {"{\"jobs\":[{\"ref\":\"a\",\"queue\":\"q\",\"depends_on\":[\"zz\"]}]}", "zz", "unknown"},
        {"{\"jobs\":[{\"ref\":\"a\",\"queue\":\"q\",\"depends_on\":[\"a\"]}]}", "a", "cycle"},
        {"{\"jobs\":[{\"ref\":\"x\",\"queue\":\"q\"},"
         "{\"ref\":\"a\",\"queue\":\"q\",\"depends_on\":[\"x\",\"c\"]},"
         "{\"ref\":\"b\",\"queue\":\"q\",\"depends_on\":[\"a\"]},"
         "{\"ref\":\"c\",\"queue\":\"q\",\"depends_on\":[\"b\"]}]}",
         "a", "cycle"},
        {"{\"jobs\":[{\"ref\":\"a\",\"queue\":\"bad name\"}]}", "a", "queue"},
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        jobq_flow *f = NULL;
        const char *ref = NULL, *why = NULL;
        int rc = mkflow(e, bad[i].json, T0, &f, &ref, &why);
        cr_assert_eq(rc, JOBQ_EINVAL, "case %zu: rc %d", i, rc);
        cr_assert_str_eq(ref, bad[i].ref, "case %zu: ref %s", i, ref);
        cr_assert(strstr(why, bad[i].why), "case %zu: why %s", i, why);
    }
    /* nothing was made by any of them */
    cr_assert_eq(jobq_engine_job_total(e), 0);
    cr_assert_null(jobq_engine_take_changes(e));
    jobq_engine_free(e);
}

Test(orch, flow_is_made_parents_first_and_atomically)
{
    jobq_engine *e = eng_new(NULL, 2);
    jobq_flow *f =
        flow_ok(e,
                "{\"jobs\":[{\"ref\":\"d\",\"queue\":\"q\",\"depends_on\":[\"b\",\"c\"]},"
                "{\"ref\":\"c\",\"queue\":\"q\",\"depends_on\":[\"a\"]},"
                "{\"ref\":\"b\",\"queue\":\"q2\",\"depends_on\":[\"a\"]},"
                "{\"ref\":\"a\",\"queue\":\"q\"}]}",
                T0);
    jobq_batch *b;

    cr_assert(jobq_job_seq(member(e, f, "a")) < jobq_job_seq(member(e, f, "b")));
    cr_assert(jobq_job_seq(member(e, f, "b")) < jobq_job_seq(member(e, f, "d")));
    cr_assert(jobq_job_seq(member(e, f, "c")) < jobq_job_seq(member(e, f, "d")));
    cr_assert_eq(jobq_job_state(member(e, f, "a")), JOBQ_WAITING);
    cr_assert_eq(jobq_job_state(member(e, f, "d")), JOBQ_BLOCKED);
    b = jobq_engine_take_changes(e);
    cr_assert_eq(rec_count(b, JOBQ_REC_JOB_INSERT), 4, "one batch holds the whole flow");
    cr_assert_eq(rec_count(b, JOBQ_REC_DOC_PUT), 1);
    jobq_engine_committed(e, T0);
    jobq_batch_free(b);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- diamonds */

Test(orch, diamond_completes_in_order)
{
    jobq_engine *e = eng_new(NULL, 3);
    jobq_flow *f = diamond(e, NULL, T0);
    jobq_job *j, *k;

    commit(e, T0);
    j = fetch1(e, "q", T0 + 1);
    cr_assert_eq(j, member(e, f, "a"));
    cr_assert_null(fetch1(e, "q", T0 + 1), "b and c wait for a");
    complete_ok(e, j, T0 + 2);
    commit(e, T0 + 2);
    j = fetch1(e, "q", T0 + 3);
    k = fetch1(e, "q", T0 + 3);
    cr_assert(j && k);
    complete_ok(e, j, T0 + 4);
    cr_assert_eq(jobq_job_state(member(e, f, "d")), JOBQ_BLOCKED, "one parent left");
    complete_ok(e, k, T0 + 5);
    cr_assert_eq(jobq_job_state(member(e, f, "d")), JOBQ_WAITING);
    commit(e, T0 + 5);
    j = fetch1(e, "q", T0 + 6);
    cr_assert_eq(j, member(e, f, "d"));
    {
        json_t *o = job_json(e, j, T0 + 6), *p = json_object_get(o, "parents");
        cr_assert_eq(json_object_size(p), 2);
        cr_assert(json_is_true(json_object_get(json_object_get(p, "b"), "ok")));
        json_decref(o);
    }
    cr_assert_str_eq(flow_state(e, f), "running");
    complete_ok(e, j, T0 + 7);
    cr_assert_str_eq(flow_state(e, f), "completed");
    jobq_engine_free(e);
}

Test(orch, diamond_failure_cancels_the_join)
{
    hook_log h;
    jobq_engine *e = eng_new(&h, 4);
    jobq_flow *f = diamond(e, "cancel", T0);
    jobq_job *a, *x, *y, *b, *c;
    char et[32];

    commit(e, T0);
    a = fetch1(e, "q", T0);
    complete_ok(e, a, T0);
    commit(e, T0);
    x = fetch1(e, "q", T0);
    y = fetch1(e, "q", T0);
    b = x == member(e, f, "b") ? x : y;
    c = b == x ? y : x;
    fail_ok(e, b, "error", 0, -1, T0 + 1);
    cr_assert_eq(jobq_job_state(b), JOBQ_FAILED);
    cr_assert_eq(jobq_job_state(member(e, f, "d")), JOBQ_CANCELLED);
    job_error_type(e, member(e, f, "d"), T0, et, sizeof et);
    cr_assert_str_eq(et, "parent_failed");
    cr_assert_str_eq(flow_state(e, f), "running", "c still runs");
    complete_ok(e, c, T0 + 2);
    cr_assert_str_eq(flow_state(e, f), "failed");
    jobq_engine_free(e);
}

Test(orch, diamond_failure_continue_runs_the_join)
{
    jobq_engine *e = eng_new(NULL, 5);
    jobq_flow *f = diamond(e, "continue", T0);
    jobq_job *a, *x, *y, *b, *c, *d;

    commit(e, T0);
    a = fetch1(e, "q", T0);
    complete_ok(e, a, T0);
    commit(e, T0);
    x = fetch1(e, "q", T0);
    y = fetch1(e, "q", T0);
    b = x == member(e, f, "b") ? x : y;
    c = b == x ? y : x;
    jobq_engine_job_cancel(e, b, T0); /* active: only requested */
    cr_assert_eq(jobq_job_state(b), JOBQ_ACTIVE);
    complete_ok(e, b, T0 + 1); /* ends cancelled */
    cr_assert_eq(jobq_job_state(b), JOBQ_CANCELLED);
    cr_assert_eq(jobq_job_state(member(e, f, "d")), JOBQ_BLOCKED);
    complete_ok(e, c, T0 + 2);
    d = member(e, f, "d");
    cr_assert_eq(jobq_job_state(d), JOBQ_WAITING);
    commit(e, T0 + 2);
    cr_assert_eq(fetch1(e, "q", T0 + 3), d);
    complete_ok(e, d, T0 + 4);
    cr_assert_str_eq(flow_state(e, f), "cancelled");
    jobq_engine_free(e);
}

static void keep_all(jobq_queue_opts *o)
{
    o->keep_completed.count = -1;
}

Test(orch, long_chain_cancels_without_recursion)
{
    jobq_engine *e = eng_new(NULL, 6);
    enum { N = 20000 };
    jobq_queue *q H_UNUSED = mkq(e, "q", T0, keep_all);
    jobq_job *first = enq(e, "q", "c0", 0, T0), *prev = first, *last = NULL;
    char id[32];

    for (int i = 1; i < N; i++) {
        jobq_job_spec s = spec_default();
        const char *dep = jobq_job_id(prev);
        snprintf(id, sizeof id, "c%d", i);
        s.id = id;
        s.depends_on = &dep;
        s.ndeps = 1;
        prev = last = enq_spec(e, "q", &s, T0);
        cr_assert_eq(jobq_job_state(last), JOBQ_BLOCKED);
    }
    commit(e, T0);
    cr_assert_eq(jobq_engine_job_cancel(e, first, T0 + 1), 0);
    cr_assert_eq(jobq_job_state(last), JOBQ_CANCELLED);
    cr_assert_eq(jobq_queue_count(jobq_job_queue(last), JOBQ_CANCELLED), N);
    jobq_engine_free(e);
}

Test(orch, parent_already_final_at_enqueue)
{
    jobq_engine *e = eng_new(NULL, 7);
    jobq_job *p = enq(e, "q", "p", 0, T0), *bad = enq(e, "q", "bad", 0, T0), *c;
    jobq_job_spec s = spec_default();
    const char *dep;

    commit(e, T0);
    complete_ok(e, fetch1(e, "q", T0), T0);
    fail_ok(e, fetch1(e, "q", T0), "error", 0, -1, T0);
    cr_assert_eq(jobq_job_state(p), JOBQ_COMPLETED);
    cr_assert_eq(jobq_job_state(bad), JOBQ_FAILED);
    dep = "p";
    s.depends_on = &dep;
    s.ndeps = 1;
    c = enq_spec(e, "q2", &s, T0);
    cr_assert_eq(jobq_job_state(c), JOBQ_WAITING, "a completed parent is satisfied at once");
    dep = "bad";
    c = enq_spec(e, "q2", &s, T0);
    cr_assert_eq(jobq_job_state(c), JOBQ_CANCELLED);
    s.on_parent_failure = JOBQ_OPF_CONTINUE;
    c = enq_spec(e, "q2", &s, T0);
    cr_assert_eq(jobq_job_state(c), JOBQ_WAITING);
    {
        long badi = 0;
        const char *why_id = NULL;
        jobq_job *out = NULL;
        dep = "missing";
        cr_assert_eq(jobq_engine_enqueue_ex(e, "q2", &s, 1, T0, &out, NULL, &badi, &why_id),
                     JOBQ_EINVAL);
        cr_assert_str_eq(why_id, "missing");
    }
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- review */

Test(orch, review_approve_and_reject)
{
    jobq_engine *e = eng_new(NULL, 8);
    jobq_flow *f = flow_ok(e,
                           "{\"jobs\":[{\"ref\":\"stt\",\"queue\":\"stt\",\"review\":true},"
                           "{\"ref\":\"mt\",\"queue\":\"mt\",\"depends_on\":[\"stt\"]}]}",
                           T0);
    jobq_job *stt = member(e, f, "stt"), *mt = member(e, f, "mt"), *j;
    json_t *o;

    commit(e, T0);
    cr_assert_eq(jobq_engine_job_approve(e, stt, NULL, T0), JOBQ_ESTATE);
    j = fetch1(e, "stt", T0);
    complete_ok(e, j, T0 + 1);
    cr_assert_eq(jobq_job_state(stt), JOBQ_REVIEW);
    cr_assert_str_eq(flow_state(e, f), "review");
    cr_assert_eq(jobq_job_state(mt), JOBQ_BLOCKED, "nothing downstream while the gate is shut");
    cr_assert_null(fetch1(e, "mt", T0 + 1));
    /* the worker's repeat of its completion is recognised */
    {
        int repeat = 0;
        cr_assert_eq(jobq_engine_complete(e, stt, lease_of(stt).s, "{}", T0, &repeat),
                     JOBQ_ELEASE); /* the lease is not shown outside active */
    }
    /* rejected with a rerun: waiting again, with the reviewer's words */
    cr_assert_eq(jobq_engine_job_reject(e, stt, "bad \"speaker\"", "{\"n\":1}", 1, T0 + 2), 0);
    cr_assert_eq(jobq_job_state(stt), JOBQ_WAITING);
    commit(e, T0 + 2);
    j = fetch1(e, "stt", T0 + 3);
    cr_assert_eq(j, stt);
    o = job_json(e, j, T0 + 3);
    cr_assert_str_eq(
        json_string_value(json_object_get(json_object_get(o, "review_feedback"), "reason")),
        "bad \"speaker\"");
    cr_assert(json_is_true(
        json_object_get(json_object_get(json_object_get(o, "review_feedback"), "result"), "ok")));
    json_decref(o);
    complete_ok(e, j, T0 + 4);
    cr_assert_eq(jobq_job_state(stt), JOBQ_REVIEW);
    cr_assert_eq(jobq_engine_job_approve(e, stt, "{\"fixed\":1}", T0 + 5), 0);
    cr_assert_eq(jobq_job_state(stt), JOBQ_COMPLETED);
    cr_assert_str_eq(jobq_job_result_text(stt), "{\"fixed\":1}");
    cr_assert_eq(jobq_job_state(mt), JOBQ_WAITING);
    jobq_engine_free(e);
}

Test(orch, review_reject_without_rerun_fails)
{
    jobq_engine *e = eng_new(NULL, 9);
    jobq_flow *f = flow_ok(e,
                           "{\"jobs\":[{\"ref\":\"a\",\"queue\":\"q\",\"review\":true},"
                           "{\"ref\":\"b\",\"queue\":\"q\",\"depends_on\":[\"a\"]}]}",
                           T0);
    jobq_job *a = member(e, f, "a");
    char et[32];

    commit(e, T0);
    complete_ok(e, fetch1(e, "q", T0), T0);
    cr_assert_eq(jobq_engine_job_reject(e, a, "no", NULL, 0, T0), 0);
    cr_assert_eq(jobq_job_state(a), JOBQ_FAILED);
    job_error_type(e, a, T0, et, sizeof et);
    cr_assert_str_eq(et, "rejected");
    cr_assert_eq(jobq_job_state(member(e, f, "b")), JOBQ_CANCELLED);
    cr_assert_str_eq(flow_state(e, f), "failed");
    cr_assert_eq(jobq_engine_job_reject(e, a, "again", NULL, 1, T0), JOBQ_ESTATE);
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- dedup and cache */

static jobq_job *enq_flags(jobq_engine *e, const char *queue, const jobq_job_spec *s, int64_t now,
                           unsigned char *flags)
{
    jobq_job *j = NULL;
    long bad;
    const char *why_id;
    int rc = jobq_engine_enqueue_ex(e, queue, s, 1, now, &j, flags, &bad, &why_id);

    cr_assert_eq(rc, 0);
    return j;
}

Test(orch, unique_key_lifetime)
{
    jobq_engine *e = eng_new(NULL, 10);
    jobq_job_spec s = spec_default();
    unsigned char fl = 0;
    jobq_job *a, *b, *c;

    s.unique_key = "k";
    a = enq_flags(e, "q", &s, T0, &fl);
    cr_assert_eq(fl, 0);
    b = enq_flags(e, "q", &s, T0, &fl);
    cr_assert_eq(b, a);
    cr_assert_eq(fl, JOBQ_ENQ_DEDUP);
    c = enq_flags(e, "other", &s, T0, &fl);
    cr_assert_neq(c, a, "keys are per queue");
    commit(e, T0);
    /* active and retrying jobs still hold it */
    fail_ok(e, fetch1(e, "q", T0), "error", 1, 1000, T0);
    cr_assert_eq(enq_flags(e, "q", &s, T0, &fl), a);
    jobq_engine_tick(e, T0 + 1000);
    complete_ok(e, fetch1(e, "q", T0 + 1000), T0 + 1000);
    b = enq_flags(e, "q", &s, T0 + 1001, &fl);
    cr_assert_neq(b, a, "the key freed when the job ended");
    cr_assert_eq(fl, 0);
    /* a cancel frees it too; a retry takes it back when it is free */
    jobq_engine_job_cancel(e, b, T0 + 1002);
    c = enq_flags(e, "q", &s, T0 + 1003, &fl);
    cr_assert_neq(c, b);
    jobq_engine_job_delete(e, c, T0 + 1004);
    cr_assert_eq(jobq_engine_job_retry(e, b, T0 + 1005), 0);
    cr_assert_eq(enq_flags(e, "q", &s, T0 + 1006, &fl), b);
    jobq_engine_free(e);
}

Test(orch, cache_ttl)
{
    jobq_engine *e = eng_new(NULL, 11);
    jobq_job_spec s = spec_default();
    unsigned char fl = 0;
    jobq_job *a, *b;

    s.cache_key = "tts:1";
    s.cache_ttl_ms = 5000;
    a = enq_flags(e, "q", &s, T0, &fl);
    cr_assert_eq(fl, 0);
    b = enq_flags(e, "q", &s, T0, &fl);
    cr_assert_neq(b, a);
    cr_assert_eq(fl, 0, "nothing completed yet: a second job runs too");
    commit(e, T0);
    complete_ok(e, fetch1(e, "q", T0), T0 + 100);
    b = enq_flags(e, "q", &s, T0 + 5100, &fl);
    cr_assert_eq(fl, JOBQ_ENQ_CACHED);
    cr_assert_eq(jobq_job_state(b), JOBQ_COMPLETED);
    cr_assert_str_eq(jobq_job_result_text(b), "{\"ok\":true}");
    b = enq_flags(e, "q", &s, T0 + 5101, &fl);
    cr_assert_eq(fl, 0, "past the ttl");
    cr_assert_eq(jobq_job_state(b), JOBQ_WAITING);
    s.cache_ttl_ms = 100000;
    enq_flags(e, "q", &s, T0 + 5102, &fl);
    cr_assert_eq(fl, JOBQ_ENQ_CACHED, "the asker's ttl decides");
    jobq_engine_free(e);
}

/* ---------------------------------------------------------------- restart */

Test(orch, restart_rebuilds_blocked_jobs_and_child_lists)
{
    simstore *st = sim_new();
    jobq_engine *e = eng_new(NULL, 12), *e2;
    jobq_flow *f = diamond(e, NULL, T0), *f2;
    jobq_job_spec s = spec_default();
    const char *dep;
    unsigned char fl;
    jobq_job *a, *x;
    char fid[64], aid[64], plain[64];

    snprintf(fid, sizeof fid, "%s", jobq_flow_id(f));
    commit_to(e, st, T0);
    a = fetch1(e, "q", T0);
    snprintf(aid, sizeof aid, "%s", jobq_job_id(a));
    dep = aid;
    s.depends_on = &dep;
    s.ndeps = 1;
    s.unique_key = "u";
    snprintf(plain, sizeof plain, "%s", jobq_job_id(enq_spec(e, "p", &s, T0)));
    commit_to(e, st, T0);
    jobq_engine_free(e);

    e2 = eng_new(NULL, 13);
    sim_load(st, e2, T0 + 10);
    f2 = jobq_engine_flow(e2, fid);
    cr_assert_not_null(f2);
    cr_assert_str_eq(flow_state(e2, f2), "running");
    a = jobq_engine_job(e2, aid);
    cr_assert_eq(jobq_job_state(a), JOBQ_WAITING, "active at the crash: back to waiting");
    cr_assert_eq(jobq_job_state(member(e2, f2, "d")), JOBQ_BLOCKED);
    cr_assert_eq(jobq_job_state(jobq_engine_job(e2, plain)), JOBQ_BLOCKED);
    cr_assert_eq(enq_flags(e2, "p", &s, T0 + 11, &fl), jobq_engine_job(e2, plain),
                 "unique keys come back");
    commit(e2, T0 + 11);
    x = fetch1(e2, "q", T0 + 12);
    cr_assert_eq(x, a);
    complete_ok(e2, x, T0 + 13);
    /* the child lists came back: a's end reaches b, c and the plain child */
    cr_assert_eq(jobq_job_state(member(e2, f2, "b")), JOBQ_WAITING);
    cr_assert_eq(jobq_job_state(member(e2, f2, "c")), JOBQ_WAITING);
    cr_assert_eq(jobq_job_state(jobq_engine_job(e2, plain)), JOBQ_WAITING);
    cr_assert_eq(jobq_job_state(member(e2, f2, "d")), JOBQ_BLOCKED);
    jobq_engine_free(e2);
    sim_free(st);
}

Test(orch, restart_keeps_ended_flow_and_cache)
{
    simstore *st = sim_new();
    jobq_engine *e = eng_new(NULL, 14), *e2;
    jobq_flow *f = flow_ok(e,
                           "{\"jobs\":[{\"ref\":\"a\",\"queue\":\"q\","
                           "\"cache\":{\"key\":\"k\",\"ttl_ms\":60000}}]}",
                           T0);
    jobq_job_spec s = spec_default();
    unsigned char fl;
    char fid[64];

    snprintf(fid, sizeof fid, "%s", jobq_flow_id(f));
    commit_to(e, st, T0);
    complete_ok(e, fetch1(e, "q", T0), T0 + 1);
    cr_assert_str_eq(flow_state(e, f), "completed");
    commit_to(e, st, T0 + 1);
    jobq_engine_free(e);

    e2 = eng_new(NULL, 15);
    sim_load(st, e2, T0 + 10);
    cr_assert_str_eq(flow_state(e2, jobq_engine_flow(e2, fid)), "completed");
    s.cache_key = "k";
    s.cache_ttl_ms = 60000;
    enq_flags(e2, "q", &s, T0 + 20, &fl);
    cr_assert_eq(fl, JOBQ_ENQ_CACHED, "the cache is rebuilt from completed jobs");
    jobq_engine_free(e2);
    sim_free(st);
}

/* ---------------------------------------------------------------- events */

typedef struct orch_events {
    GString *types; /* "type type …" in emission order */
    char flow_state[32];
} orch_events;

static void hk_orch_event(void *ud, const jobq_event *ev)
{
    orch_events *l = ud;
    json_t *o = json_loadb(ev->json, ev->json_len, 0, NULL);

    cr_assert_not_null(o, "event is not JSON: %s", ev->json);
    g_string_append_printf(l->types, "%s ", ev->type);
    if (!strncmp(ev->type, "flow.", 5))
        snprintf(l->flow_state, sizeof l->flow_state, "%s",
                 json_string_value(json_object_get(o, "state")));
    if (!strcmp(ev->type, "job.review_requested"))
        cr_assert_str_eq(json_string_value(json_object_get(o, "ref")), "a");
    json_decref(o);
}

Test(orch, events_review_requested_and_flow_end)
{
    orch_events l = {.types = g_string_new(NULL)};
    jobq_engine_config cfg = {.seed = 16};
    jobq_engine_hooks hooks = {.event = hk_orch_event, .ud = &l};
    jobq_engine *e = jobq_engine_new(&cfg, &hooks);
    jobq_flow *f = flow_ok(e,
                           "{\"jobs\":[{\"ref\":\"a\",\"queue\":\"q\",\"review\":true},"
                           "{\"ref\":\"b\",\"queue\":\"q\",\"depends_on\":[\"a\"]}]}",
                           T0);

    commit(e, T0);
    complete_ok(e, fetch1(e, "q", T0), T0 + 1);
    cr_assert(strstr(l.types->str, "job.review_requested"), "%s", l.types->str);
    jobq_engine_job_approve(e, member(e, f, "a"), NULL, T0 + 2);
    commit(e, T0 + 2);
    complete_ok(e, fetch1(e, "q", T0 + 3), T0 + 3);
    cr_assert(g_str_has_suffix(l.types->str, "job.completed flow.completed "), "%s", l.types->str);
    cr_assert_str_eq(l.flow_state, "completed");
    /* a failing flow says so */
    f = flow_ok(e, "{\"jobs\":[{\"ref\":\"a\",\"queue\":\"q\",\"max_attempts\":1}]}", T0 + 4);
    commit(e, T0 + 4);
    fail_ok(e, fetch1(e, "q", T0 + 5), "error", 0, -1, T0 + 5);
    cr_assert(g_str_has_suffix(l.types->str, "job.failed flow.failed "), "%s", l.types->str);
    jobq_engine_free(e);
    g_string_free(l.types, TRUE);
}

static void keep_none(jobq_queue_opts *o)
{
    o->keep_completed.count = 0;
}

Test(orch, retention_keeps_a_parent_its_children_still_need)
{
    jobq_engine *e = eng_new(NULL, 17);
    jobq_queue *q H_UNUSED = mkq(e, "q", T0, keep_none);
    jobq_job *p = enq(e, "q", "p", 0, T0), *c, *x;
    jobq_job_spec s = spec_default();
    const char *dep = "p";
    json_t *o;

    s.depends_on = &dep;
    s.ndeps = 1;
    c = enq_spec(e, "q", &s, T0);
    commit(e, T0);
    complete_ok(e, fetch1(e, "q", T0), T0 + 1);
    cr_assert_eq(jobq_engine_job(e, "p"), p, "kept: its child has not run yet");
    commit(e, T0 + 1);
    x = fetch1(e, "q", T0 + 2);
    cr_assert_eq(x, c);
    o = job_json(e, x, T0 + 2);
    cr_assert(
        json_is_true(json_object_get(json_object_get(json_object_get(o, "parents"), "p"), "ok")));
    json_decref(o);
    complete_ok(e, x, T0 + 3); /* its end trims both: nothing needs p any more */
    cr_assert_null(jobq_engine_job(e, "p"));
    cr_assert_null(jobq_engine_job(e, jobq_job_id(c)));
    jobq_engine_free(e);
}

Test(orch, an_ended_flow_is_forgotten_with_its_last_job)
{
    simstore *st = sim_new();
    jobq_engine *e = eng_new(NULL, 18), *e2;
    jobq_queue *q H_UNUSED = mkq(e, "q", T0, keep_none);
    jobq_flow *f = flow_ok(e,
                           "{\"jobs\":[{\"ref\":\"a\",\"queue\":\"q\"},"
                           "{\"ref\":\"b\",\"queue\":\"q\",\"depends_on\":[\"a\"]}]}",
                           T0),
              *g;
    char fid[64], gid[64];

    snprintf(fid, sizeof fid, "%s", jobq_flow_id(f));
    g = flow_ok(e, "{\"jobs\":[{\"ref\":\"x\",\"queue\":\"other\"}]}", T0);
    snprintf(gid, sizeof gid, "%s", jobq_flow_id(g));
    commit_to(e, st, T0);
    complete_ok(e, fetch1(e, "q", T0), T0 + 1);
    cr_assert_not_null(jobq_engine_flow(e, fid), "a is kept for b: the flow is alive");
    commit_to(e, st, T0 + 1);
    complete_ok(e, fetch1(e, "q", T0 + 2), T0 + 2); /* keep_completed 0 trims a and b */
    cr_assert_null(jobq_engine_flow(e, fid), "ended, and none of its jobs is left");
    cr_assert_not_null(jobq_engine_flow(e, gid));
    commit_to(e, st, T0 + 3);
    jobq_engine_free(e);
    e2 = eng_new(NULL, 19);
    sim_load(st, e2, T0 + 10);
    cr_assert_null(jobq_engine_flow(e2, fid), "its document went with it");
    cr_assert_not_null(jobq_engine_flow(e2, gid));
    jobq_engine_free(e2);
    sim_free(st);
}

/* A child that ends while blocked leaves its live parents' lists: removed afterwards, it is
 * not met again when they end (ASan sees a freed job otherwise); retried, it waits once. */
Test(orch, a_cancelled_child_removed_before_its_parent_ends)
{
    jobq_engine *e = eng_new(NULL, 20);
    jobq_job *p = enq(e, "q", "p", 0, T0), *c, *r;
    jobq_job_spec s = spec_default();
    const char *dep = "p";

    s.depends_on = &dep;
    s.ndeps = 1;
    c = enq_spec(e, "q2", &s, T0);
    r = enq_spec(e, "q2", &s, T0);
    commit(e, T0);
    cr_assert_eq(jobq_job_state(c), JOBQ_BLOCKED);
    cr_assert_eq(jobq_engine_job_cancel(e, c, T0 + 1), 0);
    cr_assert_eq(jobq_engine_job_delete(e, c, T0 + 1), 0);
    cr_assert_eq(jobq_engine_job_cancel(e, r, T0 + 1), 0);
    cr_assert_eq(jobq_engine_job_retry(e, r, T0 + 1), 0);
    cr_assert_eq(jobq_job_state(r), JOBQ_BLOCKED);
    commit(e, T0 + 1);
    commit(e, T0 + 1); /* the tombstone is freed */
    cr_assert_eq(fetch1(e, "q", T0 + 2), p);
    complete_ok(e, p, T0 + 3);
    cr_assert_eq(jobq_job_state(r), JOBQ_WAITING);
    commit(e, T0 + 3);
    cr_assert_eq(fetch1(e, "q2", T0 + 4), r);
    jobq_engine_free(e);
}

static void keep_no_cancelled(jobq_queue_opts *o)
{
    o->keep_completed.count = 0;
    o->keep_failed.count = 0;
}

/* The join of a diamond is cancelled by one side's failure and trimmed at once; the other
 * side ends later. */
Test(orch, a_join_cancelled_and_trimmed_while_a_side_runs)
{
    jobq_engine *e = eng_new(NULL, 21);
    jobq_queue *q H_UNUSED = mkq(e, "q", T0, keep_no_cancelled);
    jobq_flow *f = diamond(e, NULL, T0);
    jobq_job *b, *c;

    commit(e, T0);
    complete_ok(e, fetch1(e, "q", T0), T0 + 1);
    commit(e, T0 + 1);
    b = member(e, f, "b");
    c = member(e, f, "c");
    cr_assert_eq(fetch1(e, "q", T0 + 2), b);
    cr_assert_eq(fetch1(e, "q", T0 + 2), c);
    fail_ok(e, b, "error", 0, -1, T0 + 3);
    commit(e, T0 + 3);
    commit(e, T0 + 3);
    complete_ok(e, c, T0 + 4);
    cr_assert_str_eq(flow_state(e, f), "failed");
    jobq_engine_free(e);
}

/* Flows listed by project, newest first, from the project's own list: kept through a restart
 * and left when a flow is forgotten. */
Test(orch, flows_listed_by_project)
{
    simstore *st = sim_new();
    jobq_engine *e = eng_new(NULL, 22), *e2;
    jobq_queue *q H_UNUSED = mkq(e, "q", T0, keep_none);
    jobq_flow *out[8];
    char a[64], b[64], c[64];

    snprintf(a, sizeof a, "%s",
             jobq_flow_id(flow_ok(
                 e, "{\"project\":\"p1\",\"jobs\":[{\"ref\":\"x\",\"queue\":\"q\"}]}", T0)));
    snprintf(b, sizeof b, "%s",
             jobq_flow_id(flow_ok(
                 e, "{\"project\":\"p2\",\"jobs\":[{\"ref\":\"x\",\"queue\":\"other\"}]}", T0)));
    snprintf(c, sizeof c, "%s",
             jobq_flow_id(flow_ok(
                 e, "{\"project\":\"p1\",\"jobs\":[{\"ref\":\"x\",\"queue\":\"other\"}]}", T0)));
    flow_ok(e, "{\"jobs\":[{\"ref\":\"x\",\"queue\":\"other\",\"project\":\"p1\"}]}", T0);
    cr_assert_eq(jobq_engine_flow_list(e, "p1", 8, out), 2, "a job's project is not the flow's");
    cr_assert_str_eq(jobq_flow_id(out[0]), c);
    cr_assert_str_eq(jobq_flow_id(out[1]), a);
    cr_assert_eq(jobq_engine_flow_list(e, "p1", 1, out), 1);
    cr_assert_str_eq(jobq_flow_id(out[0]), c);
    cr_assert_eq(jobq_engine_flow_list(e, "nope", 8, out), 0);
    cr_assert_eq(jobq_engine_flow_list(e, NULL, 8, out), 4);
    commit_to(e, st, T0);
    e2 = eng_new(NULL, 23);
    sim_load(st, e2, T0 + 1);
    cr_assert_eq(jobq_engine_flow_list(e2, "p1", 8, out), 2);
    cr_assert_str_eq(jobq_flow_id(out[0]), c);
    cr_assert_eq(jobq_engine_flow_list(e2, "p2", 8, out), 1);
    cr_assert_str_eq(jobq_flow_id(out[0]), b);
    /* a's only job ends and is trimmed (keep 0): a is forgotten, and out of p1's list */
    complete_ok(e2, fetch1(e2, "q", T0 + 2), T0 + 2);
    cr_assert_null(jobq_engine_flow(e2, a));
    cr_assert_eq(jobq_engine_flow_list(e2, "p1", 8, out), 1);
    cr_assert_str_eq(jobq_flow_id(out[0]), c);
    jobq_engine_free(e);
    jobq_engine_free(e2);
    sim_free(st);
}

/* Members trimmed by retention while their flow runs still count as they ended, through a
 * restart: a completed one as completed, a failed one as failed. */
Test(orch, restart_counts_trimmed_members_as_they_ended)
{
    simstore *st = sim_new();
    jobq_engine *e = eng_new(NULL, 24), *e2;
    jobq_queue *q H_UNUSED = mkq(e, "q", T0, keep_no_cancelled);
    char ok[64], bad[64];
    jobq_flow *f;

    f = flow_ok(e,
                "{\"jobs\":[{\"ref\":\"a\",\"queue\":\"q\"},"
                "{\"ref\":\"b\",\"queue\":\"q\",\"depends_on\":[\"a\"]},"
                "{\"ref\":\"c\",\"queue\":\"slow\",\"depends_on\":[\"b\"]}]}",
                T0);
    snprintf(ok, sizeof ok, "%s", jobq_flow_id(f));
    f = flow_ok(e,
                "{\"jobs\":[{\"ref\":\"x\",\"queue\":\"q\",\"priority\":-1,\"max_attempts\":1},"
                "{\"ref\":\"y\",\"queue\":\"slow\"}]}",
                T0);
    snprintf(bad, sizeof bad, "%s", jobq_flow_id(f));
    commit_to(e, st, T0);
    complete_ok(e, fetch1(e, "q", T0 + 1), T0 + 1); /* a */
    commit_to(e, st, T0 + 1);
    /* b: a is trimmed, b kept for c; then x fails and is trimmed at once */
    complete_ok(e, fetch1(e, "q", T0 + 2), T0 + 2);
    fail_ok(e, fetch1(e, "q", T0 + 2), "error", 0, -1, T0 + 2);
    {
        json_t *o = flow_json(e, jobq_engine_flow(e, bad));
        cr_assert_eq(json_integer_value(json_object_get(json_object_get(o, "counts"), "failed")), 1,
                     "x counts as failed after its removal");
        cr_assert_str_eq(json_string_value(json_object_get(
                             json_object_get(json_object_get(o, "stages"), "x"), "state")),
                         "removed");
        json_decref(o);
    }
    commit_to(e, st, T0 + 3);
    jobq_engine_free(e);

    e2 = eng_new(NULL, 25);
    sim_load(st, e2, T0 + 10);
    cr_assert_str_eq(flow_state(e2, jobq_engine_flow(e2, ok)), "running");
    complete_ok(e2, fetch1(e2, "slow", T0 + 11), T0 + 11);
    complete_ok(e2, fetch1(e2, "slow", T0 + 11), T0 + 11);
    cr_assert_str_eq(flow_state(e2, jobq_engine_flow(e2, ok)), "completed");
    cr_assert_str_eq(flow_state(e2, jobq_engine_flow(e2, bad)), "failed");
    jobq_engine_free(e2);
    sim_free(st);
}

/* Many parents kept for their children at the front of the completed list: a sweep passes
 * over a bounded number of them, and the jobs behind them are still trimmed over the next
 * completions. */
Test(orch, retention_goes_past_many_kept_parents)
{
    jobq_engine *e = eng_new(NULL, 26);
    jobq_queue *q H_UNUSED = mkq(e, "q", T0, keep_none);
    jobq_job_spec s = spec_default();
    jobq_job *parents[200];
    char id[32];
    const char *dep = id;

    s.depends_on = &dep;
    s.ndeps = 1;
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof id, "p%d", i);
        parents[i] = enq(e, "q", id, 0, T0);
        enq_spec(e, "kids", &s, T0); /* waits for p<i>, then stays waiting: p<i> is kept */
    }
    commit(e, T0);
    for (int i = 0; i < 200; i++)
        complete_ok(e, fetch1(e, "q", T0 + 1), T0 + 1);
    for (int i = 0; i < 20; i++) {
        enq(e, "q", NULL, 0, T0 + 2);
        commit(e, T0 + 2);
        complete_ok(e, fetch1(e, "q", T0 + 3), T0 + 3);
    }
    for (int i = 0; i < 200; i++)
        cr_assert_eq(jobq_engine_job(e, jobq_job_id(parents[i])), parents[i]);
    cr_assert_leq(jobq_queue_count(q, JOBQ_COMPLETED), 200 + 5, "kept %" PRId64 " jobs",
                  jobq_queue_count(q, JOBQ_COMPLETED));
    jobq_engine_free(e);
}

/* A flow parent removed by hand before its child runs: the child finds null under its ref. */
Test(orch, a_removed_flow_parent_is_null_under_its_ref)
{
    jobq_engine *e = eng_new(NULL, 27);
    jobq_flow *f = flow_ok(e,
                           "{\"jobs\":[{\"ref\":\"a\",\"queue\":\"q\"},"
                           "{\"ref\":\"b\",\"queue\":\"q2\",\"depends_on\":[\"a\"]}]}",
                           T0);
    jobq_job *a = member(e, f, "a"), *b = member(e, f, "b");
    json_t *o;

    commit(e, T0);
    complete_ok(e, fetch1(e, "q", T0), T0 + 1);
    cr_assert_eq(jobq_engine_job_delete(e, a, T0 + 1), 0);
    commit(e, T0 + 1);
    cr_assert_eq(fetch1(e, "q2", T0 + 2), b);
    o = job_json(e, b, T0 + 2);
    cr_assert(json_is_null(json_object_get(json_object_get(o, "parents"), "a")), "%s",
              json_dumps(json_object_get(o, "parents"), 0));
    cr_assert_eq(json_object_size(json_object_get(o, "parents")), 1);
    json_decref(o);
    jobq_engine_free(e);
}
