/*
 * pipelines.c — /v1/pipelines…: named templates of stages, and their runs.
 *
 * A template is a list of stages (name, queue, review, when, after, and job options). It is
 * checked once, when it is stored (each stage's options through the enqueue parser), kept
 * in memory by name, and stored as a document of kind "pipeline" (id = its name) so it
 * survives a restart.
 *
 * A run turns the template into a flow body: one job per stage whose `when` flag is true in
 * the run's flags (or that has no `when`), named by the stage's name, depending on the
 * stages it runs after. A stage left out counts as done for the stages after it: they
 * depend on what it depended on instead. The flow is then made exactly like a POST
 * /v1/flows (flows.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

#define MAX_STAGES 100
#define MAX_PIPELINES 1000 /* kept in memory: a client cannot grow them without end */

struct jobq_pipelines {
    GHashTable *byname; /* name (owned) → json_t template (owned) */
};

jobq_pipelines *jobq_pipelines_new(void)
{
    jobq_pipelines *p = g_new0(jobq_pipelines, 1);

    p->byname = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)json_decref);
    return p;
}

void jobq_pipelines_free(jobq_pipelines *p)
{
    if (!p)
        return;
    g_hash_table_destroy(p->byname);
    g_free(p);
}

int jobq_pipelines_load(jobq_pipelines *p, const char *name, const char *body)
{
    json_t *t = json_loads(body, 0, NULL);

    if (!json_is_object(t)) {
        json_decref(t);
        return JOBQ_ECORRUPT;
    }
    g_hash_table_replace(p->byname, g_strdup(name), t);
    return 0;
}

static int valid_name(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++)
        if (!(g_ascii_isalnum(s[n]) || s[n] == '.' || s[n] == '_' || s[n] == '-'))
            return 0;
    return n >= 1 && n <= 128;
}

/* The keys a stage has besides job options. */
static int stage_key(const char *k)
{
    return !strcmp(k, "name") || !strcmp(k, "queue") || !strcmp(k, "when") || !strcmp(k, "after");
}

static void bad_stage(jobq_req *rq, size_t i, const char *field, const char *why)
{
    char f[200];

    snprintf(f, sizeof f, "stages[%zu].%.150s", i, field);
    jobq_api_bad_field(rq, f, why);
}

/* Checks a template; answers 400 and returns -1 when it is not one. */
static int check_template(jobq_req *rq, json_t *t)
{
    json_t *v, *stages;
    const char *key;
    GHashTable *names;
    size_t i;
    int rc = -1;

    if (!json_is_object(t)) {
        jobq_api_bad_field(rq, "body", "must be an object");
        return -1;
    }
    json_object_foreach(t, key, v)
    {
        if (!strcmp(key, "name")) {
            if (!json_is_string(v) || !valid_name(json_string_value(v))) {
                jobq_api_bad_field(rq, key, "must be 1 to 128 characters of A-Z a-z 0-9 . _ -");
                return -1;
            }
        } else if (!strcmp(key, "description")) {
            if (!json_is_string(v) || json_string_length(v) > 4096) {
                jobq_api_bad_field(rq, key, "must be a string of at most 4096 bytes");
                return -1;
            }
        } else if (!strcmp(key, "on_parent_failure")) {
            if (!json_is_string(v) || jobq_opf_parse(json_string_value(v)) < 0) {
                jobq_api_bad_field(rq, key, "must be cancel or continue");
                return -1;
            }
        } else if (strcmp(key, "stages")) {
            jobq_api_bad_field(rq, key, "unknown field");
            return -1;
        }
    }
    if (!json_object_get(t, "name")) {
        jobq_api_bad_field(rq, "name", "is required");
        return -1;
    }
    stages = json_object_get(t, "stages");
    if (!json_is_array(stages) || json_array_size(stages) < 1 ||
        json_array_size(stages) > MAX_STAGES) {
        jobq_api_bad_field(rq, "stages", "must be a list of 1 to 100 stages");
        return -1;
    }
    names = g_hash_table_new(g_str_hash, g_str_equal);
    json_array_foreach(stages, i, v)
    {
        json_t *x, *opts;
        const char *k;
        jobq_job_spec spec;
        const char *field = NULL, *why = NULL;
        int prc;
        if (!json_is_object(v)) {
            bad_stage(rq, i, "stage", "must be an object");
            goto out;
        }
        x = json_object_get(v, "name");
        if (!json_is_string(x) || !valid_name(json_string_value(x))) {
            bad_stage(rq, i, "name", "is required: 1 to 128 characters of A-Z a-z 0-9 . _ -");
            goto out;
        }
        if (!g_hash_table_add(names, (gpointer)json_string_value(x))) {
            bad_stage(rq, i, "name", "repeats an earlier stage's name");
            goto out;
        }
        x = json_object_get(v, "queue");
        if (!json_is_string(x) || !valid_name(json_string_value(x))) {
            bad_stage(rq, i, "queue", "is required: a queue name");
            goto out;
        }
        x = json_object_get(v, "when");
        if (x && (!json_is_string(x) || json_string_length(x) < 1 || json_string_length(x) > 128)) {
            bad_stage(rq, i, "when", "must be the name of a flag");
            goto out;
        }
        x = json_object_get(v, "after");
        if (x) {
            size_t m;
            json_t *a;
            if (!json_is_array(x) || json_array_size(x) > 64) {
                bad_stage(rq, i, "after", "must be a list of earlier stages' names");
                goto out;
            }
            json_array_foreach(x, m, a)
            {
                /* only earlier stages: a template can never hold a cycle */
                if (!json_is_string(a) || !g_hash_table_contains(names, json_string_value(a)) ||
                    !strcmp(json_string_value(a), json_string_value(json_object_get(v, "name")))) {
                    bad_stage(rq, i, "after", "must name earlier stages");
                    goto out;
                }
            }
        }
        /* the rest are job options, checked as an enqueue would check them */
        opts = json_object();
        json_object_foreach(v, k, x)
        {
            if (stage_key(k))
                continue;
            if (!strcmp(k, "depends_on") || !strcmp(k, "id") || !strcmp(k, "data") ||
                !strcmp(k, "unique_key") || !strcmp(k, "project") ||
                !strcmp(k, "on_parent_failure")) {
                json_decref(opts);
                bad_stage(rq, i, k,
                          "is not a stage option (use after; data and project come with "
                          "each run; on_parent_failure is the pipeline's)");
                goto out;
            }
            json_object_set(opts, k, x);
        }
        prc = jobq_job_spec_parse(opts, 0, &spec, &field, &why);
        if (prc == 0)
            jobq_job_spec_clear(&spec);
        else /* field may point into opts */
            bad_stage(rq, i, field ? field : "stage", why ? why : "invalid");
        json_decref(opts);
        if (prc)
            goto out;
    }
    rc = 0;
out:
    g_hash_table_destroy(names);
    return rc;
}

static void finish_put(jobq_app *a, jobq_req *rq)
{
    json_t *t = g_hash_table_lookup(jobq_app_pipelines(a)->byname, jobq_req_data(rq));

    if (!t) {
        jobq_req_error(rq, 404, "not_found", "pipeline removed meanwhile", NULL);
        return;
    }
    jobq_api_json(rq, 201, json_incref(t));
}

void jobq_h_pipeline_put(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_pipelines *p = jobq_app_pipelines(a);
    const char *replace = jobq_req_query(rq, "replace");
    json_t *t;
    const char *name;
    char *text;

    if (!jobq_app_writable(a, rq))
        return;
    t = jobq_api_body(rq, 1);
    if (!t)
        return;
    if (check_template(rq, t)) {
        json_decref(t);
        return;
    }
    name = json_string_value(json_object_get(t, "name"));
    if (g_hash_table_contains(p->byname, name) && !(replace && !strcmp(replace, "true"))) {
        char msg[200];
        snprintf(msg, sizeof msg, "pipeline %.128s exists (POST ?replace=true to change it)", name);
        jobq_api_fail(rq, JOBQ_EEXIST, msg);
        json_decref(t);
        return;
    }
    if (!g_hash_table_contains(p->byname, name) && g_hash_table_size(p->byname) >= MAX_PIPELINES) {
        jobq_req_error(rq, 409, "conflict", "at most 1000 pipelines; delete one first", NULL);
        json_decref(t);
        return;
    }
    text = json_dumps(t, JSON_COMPACT);
    jobq_engine_doc_put(jobq_app_engine(a), "pipeline", name, text);
    free(text);
    jobq_req_set_data(rq, g_strdup(name), g_free);
    g_hash_table_replace(p->byname, g_strdup(name), t);
    jobq_app_after_commit(a, rq, finish_put);
}

static gint by_name(gconstpointer x, gconstpointer y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

void jobq_h_pipelines_list(jobq_req *rq)
{
    jobq_pipelines *p = jobq_app_pipelines(jobq_req_app(rq));
    GPtrArray *names = g_ptr_array_new();
    json_t *list = json_array();
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, p->byname);
    while (g_hash_table_iter_next(&it, &k, &v))
        g_ptr_array_add(names, k);

    g_ptr_array_sort(names, by_name);
    for (guint i = 0; i < names->len; i++)
        json_array_append(list, g_hash_table_lookup(p->byname, g_ptr_array_index(names, i)));
    g_ptr_array_free(names, TRUE);
    jobq_api_json(rq, 200, json_pack("{s:o}", "pipelines", list));
}

static json_t *find(jobq_req *rq)
{
    const char *name = jobq_req_param(rq, 0);
    json_t *t = g_hash_table_lookup(jobq_app_pipelines(jobq_req_app(rq))->byname, name);

    if (!t) {
        char msg[200];
        snprintf(msg, sizeof msg, "pipeline %.150s not found", name);
        jobq_req_error(rq, 404, "not_found", msg, NULL);
    }
    return t;
}

void jobq_h_pipeline_get(jobq_req *rq)
{
    json_t *t = find(rq);

    if (t)
        jobq_api_json(rq, 200, json_incref(t));
}

void jobq_h_pipeline_delete(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    const char *name = jobq_req_param(rq, 0);

    if (!jobq_app_writable(a, rq) || !find(rq))
        return;
    jobq_engine_doc_delete(jobq_app_engine(a), "pipeline", name);
    g_hash_table_remove(jobq_app_pipelines(a)->byname, name);
    jobq_api_reply_durable(a, rq, 204, NULL);
}

/* ---------------------------------------------------------------- runs */

/* The stages a stage runs after, by name: its `after`, or the stage before it. */
static json_t *after_of(json_t *stages, size_t i)
{
    json_t *a = json_object_get(json_array_get(stages, i), "after");

    if (a)
        return json_incref(a);
    if (i == 0)
        return json_array();
    return json_pack("[O]", json_object_get(json_array_get(stages, i - 1), "name"));
}

void jobq_h_pipeline_run(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    json_t *t, *body, *v, *stages, *flags, *jobs, *flow, *stage;
    json_t *deps; /* stage name → list of included stages it waits for */
    GPtrArray *skipped = g_ptr_array_new();
    const char *key;
    size_t i;

    if (!jobq_app_writable(a, rq) || !(t = find(rq)))
        goto done;
    body = jobq_api_object_body(rq, 0);
    if (!body)
        goto done;
    json_object_foreach(body, key, v)
    {
        if (!strcmp(key, "flags")) {
            const char *fk;
            json_t *fv;
            if (!json_is_object(v)) {
                jobq_api_bad_field(rq, key, "must be an object of true/false flags");
                json_decref(body);
                goto done;
            }
            json_object_foreach(v, fk, fv)
            {
                if (!json_is_boolean(fv)) {
                    jobq_api_bad_field(rq, key, "must be an object of true/false flags");
                    json_decref(body);
                    goto done;
                }
            }
        } else if (!strcmp(key, "tags") && !json_is_object(v)) {
            jobq_api_bad_field(rq, key, "must be an object of string values");
            json_decref(body);
            goto done;
        } else if (strcmp(key, "project") && strcmp(key, "data") && strcmp(key, "group") &&
                   strcmp(key, "priority") && strcmp(key, "tags")) {
            jobq_api_bad_field(rq, key,
                               "unknown field (project, data, flags, group, priority and tags "
                               "are accepted)");
            json_decref(body);
            goto done;
        }
    }
    stages = json_object_get(t, "stages");
    flags = json_object_get(body, "flags");
    jobs = json_array();
    deps = json_object();
    json_array_foreach(stages, i, stage)
    {
        const char *name = json_string_value(json_object_get(stage, "name"));
        const char *when = json_string_value(json_object_get(stage, "when"));
        json_t *after = after_of(stages, i), *mine = json_array(), *x, *item;
        size_t m;
        const char *k;
        /* a stage left out is done for its followers: they wait for what it waited for */
        json_array_foreach(after, m, x)
        {
            json_t *up = json_object_get(deps, json_string_value(x));
            size_t u;
            json_t *r;
            json_array_foreach(up, u, r)
            {
                size_t w;
                json_t *have;
                int dup = 0;
                json_array_foreach(mine, w, have) dup |= json_equal(have, r);
                if (!dup)
                    json_array_append(mine, r);
            }
        }
        json_decref(after);
        if (when && !json_is_true(json_object_get(flags, when))) {
            g_ptr_array_add(skipped, (gpointer)name);
            json_object_set_new(deps, name, mine); /* followers inherit its waits */
            continue;
        }
        item = json_object();
        json_object_foreach(stage, k, x)
        {
            if (!stage_key(k))
                json_object_set(item, k, x);
        }
        json_object_set_new(item, "ref", json_string(name));
        json_object_set(item, "queue", json_object_get(stage, "queue"));
        json_object_set_new(item, "name", json_string(name));
        json_object_set(item, "data",
                        json_object_get(body, "data") ? json_object_get(body, "data")
                                                      : json_null());
        if (json_array_size(mine))
            json_object_set(item, "depends_on", mine);
        if (json_object_get(body, "group"))
            json_object_set(item, "group", json_object_get(body, "group"));
        if (json_object_get(body, "priority"))
            json_object_set(item, "priority", json_object_get(body, "priority"));
        {
            /* tags: the stage's, the run's, and where the job comes from */
            json_t *tags = json_object();
            if (json_is_object(json_object_get(stage, "tags")))
                json_object_update(tags, json_object_get(stage, "tags"));
            if (json_is_object(json_object_get(body, "tags")))
                json_object_update(tags, json_object_get(body, "tags"));
            json_object_set(tags, "pipeline", json_object_get(t, "name"));
            json_object_set_new(tags, "stage", json_string(name));
            json_object_set_new(item, "tags", tags);
        }
        json_array_append_new(jobs, item);
        json_decref(mine);
        json_object_set_new(deps, name, json_pack("[s]", name));
    }
    json_decref(deps);
    flow = json_pack("{s:O, s:o}", "name", json_object_get(t, "name"), "jobs", jobs);
    if (json_object_get(body, "project"))
        json_object_set(flow, "project", json_object_get(body, "project"));
    if (json_object_get(t, "on_parent_failure"))
        json_object_set(flow, "on_parent_failure", json_object_get(t, "on_parent_failure"));
    json_decref(body);
    if (!json_array_size(jobs)) {
        json_decref(flow);
        jobq_api_bad_field(rq, "flags", "leave out every stage of the pipeline");
        goto done;
    }
    jobq_api_flow_submit(rq, flow, (const char *const *)skipped->pdata, skipped->len);
    json_decref(flow);
done:
    g_ptr_array_free(skipped, TRUE);
}
