/*
 * config.c — server settings: tiers, the server-wide cap and per-queue settings, from the
 * config file (jobqd --config FILE), flags and GET/PATCH /v1/config.
 *
 * Settings come in layers; each key takes the value of the highest layer that sets it:
 *   shipped defaults < config file < flags < runtime (PATCH /v1/config).
 * The runtime layer is a document ("config", "runtime") in the store, so a PATCH survives a
 * restart; PATCHing a key to null drops it from the runtime layer and the file (or flag, or
 * default) value applies again. Tiers are merged by name; a tier object replaces that tier
 * whole. The file's "queues" are applied once per start, after the store is loaded, as a
 * PATCH of each named queue (creating it if it does not exist).
 *
 * The engine holds only the effective values (jobq_engine_set_tier, _set_max_active); this
 * file recomputes them whenever a layer changes. It never touches the store but through
 * the engine's documents.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

struct jobq_settings {
    json_t *layers[3]; /* file, flags, runtime: each {"max_active_jobs"?, "tiers"?} */
    json_t *queues;    /* the file's "queues" object, or NULL */
};

enum { L_FILE, L_FLAGS, L_RUNTIME };

static const char *const shipped_tiers =
    "{\"free\": {\"group_concurrency\": 1, \"priority\": -10},"
    " \"basic\": {\"group_concurrency\": 2, \"priority\": 0},"
    " \"pro\": {\"group_concurrency\": 5, \"priority\": 10},"
    " \"enterprise\": {\"group_concurrency\": 10, \"priority\": 20}}";

jobq_settings *jobq_settings_new(void)
{
    jobq_settings *s = g_new0(jobq_settings, 1);

    for (int i = 0; i < 3; i++)
        s->layers[i] = json_object();
    return s;
}

void jobq_settings_free(jobq_settings *s)
{
    if (!s)
        return;
    for (int i = 0; i < 3; i++)
        json_decref(s->layers[i]);
    json_decref(s->queues);
    g_free(s);
}

/* ---------------------------------------------------------------- validation */

static int priority_of(const json_t *v, int *out)
{
    if (json_is_string(v))
        return jobq_priority_parse(json_string_value(v), out);
    if (json_is_integer(v) && json_integer_value(v) >= -1000 && json_integer_value(v) <= 1000) {
        *out = (int)json_integer_value(v);
        return 0;
    }
    return -1;
}

/* A tier object → normalised copy ({"group_concurrency": N, "priority"?: P}), or NULL. */
static json_t *tier_parse(const json_t *v, const char **field, const char **why)
{
    const char *key;
    json_t *x, *out;

    *why = "must be {\"group_concurrency\": N, \"priority\"?: P}";
    if (!json_is_object(v))
        return NULL;
    out = json_object();
    json_object_foreach((json_t *)v, key, x)
    {
        if (!strcmp(key, "group_concurrency")) {
            if (!json_is_integer(x) || json_integer_value(x) < 0 ||
                json_integer_value(x) > 1000000000) {
                *field = "group_concurrency";
                *why = "must be an integer from 0 (no limit) to 1000000000";
                goto bad;
            }
            json_object_set(out, key, x);
        } else if (!strcmp(key, "priority")) {
            int p;
            if (priority_of(x, &p)) {
                *field = "priority";
                *why = "must be -1000..1000 or low, normal, high, urgent";
                goto bad;
            }
            json_object_set_new(out, key, json_integer(p));
        } else {
            *field = key;
            *why = "unknown field (group_concurrency, priority)";
            goto bad;
        }
    }
    if (!json_object_get(out, "group_concurrency"))
        json_object_set_new(out, "group_concurrency", json_integer(0));
    return out;
bad:
    json_decref(out);
    return NULL;
}

/* Checks a layer's body and returns its normalised form (new), or NULL with *field naming
 * what is wrong (in buf) and *why. nulls: a null value means "drop this key" (runtime). */
static json_t *layer_parse(const json_t *in, int nulls, int file, char *buf, size_t n,
                           const char **why)
{
    const char *key;
    json_t *v, *out = json_object();

    if (!json_is_object(in)) {
        snprintf(buf, n, "body");
        *why = "must be an object";
        goto bad;
    }
    json_object_foreach((json_t *)in, key, v)
    {
        snprintf(buf, n, "%.100s", key);
        if (!strcmp(key, "max_active_jobs")) {
            if (json_is_null(v) && nulls) {
                json_object_set(out, key, v);
                continue;
            }
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > 1000000000) {
                *why = "must be an integer from 0 (no cap) to 1000000000";
                goto bad;
            }
            json_object_set(out, key, v);
        } else if (!strcmp(key, "tiers")) {
            const char *name;
            json_t *t, *tiers = json_object();
            if (!json_is_object(v)) {
                json_decref(tiers);
                *why = "must be an object of tier name → {\"group_concurrency\", \"priority\"?}";
                goto bad;
            }
            json_object_set_new(out, key, tiers);
            json_object_foreach(v, name, t)
            {
                const char *f = NULL;
                json_t *norm;
                if (!*name || strlen(name) > 1024) {
                    snprintf(buf, n, "tiers");
                    *why = "tier names are 1 to 1024 bytes";
                    goto bad;
                }
                if (json_is_null(t) && nulls) {
                    json_object_set(tiers, name, t);
                    continue;
                }
                norm = tier_parse(t, &f, why);
                if (!norm) {
                    snprintf(buf, n, "tiers.%.64s%s%s", name, f ? "." : "", f ? f : "");
                    goto bad;
                }
                json_object_set_new(tiers, name, norm);
            }
        } else if (!strcmp(key, "queues") && file) {
            const char *name, *f, *w;
            json_t *qo;
            if (!json_is_object(v)) {
                *why = "must be an object of queue name → queue options";
                goto bad;
            }
            json_object_foreach(v, name, qo)
            {
                jobq_queue_opts o;
                int rc;
                jobq_queue_opts_default(&o);
                rc = jobq_queue_opts_parse(qo, &o, NULL, &f, &w);
                jobq_queue_opts_clear(&o);
                if (rc) {
                    snprintf(buf, n, "queues.%.64s.%.64s", name, f);
                    *why = w;
                    goto bad;
                }
            }
            json_object_set(out, key, v);
        } else {
            *why = file ? "unknown field (max_active_jobs, tiers, queues)"
                        : "unknown field (max_active_jobs, tiers)";
            goto bad;
        }
    }
    return out;
bad:
    json_decref(out);
    return NULL;
}

/* ---------------------------------------------------------------- layers */

int jobq_settings_load_file(jobq_settings *s, const char *path, char **err)
{
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je), *norm;
    char field[256];
    const char *why;

    if (!root) {
        *err = g_strdup_printf("%s:%d: %s", path, je.line, je.text);
        return -1;
    }
    norm = layer_parse(root, 0, 1, field, sizeof field, &why);
    json_decref(root);
    if (!norm) {
        *err = g_strdup_printf("%s: %s %s", path, field, why);
        return -1;
    }
    s->queues = json_incref(json_object_get(norm, "queues"));
    json_object_del(norm, "queues");
    json_decref(s->layers[L_FILE]);
    s->layers[L_FILE] = norm;
    return 0;
}

int jobq_settings_flag_max_active(jobq_settings *s, const char *arg, char **err)
{
    char *end;
    long long n = strtoll(arg, &end, 10);

    if (!*arg || *end || n < 0 || n > 1000000000) {
        *err = g_strdup_printf("--max-active-jobs %s: want an integer from 0 (no cap)", arg);
        return -1;
    }
    json_object_set_new(s->layers[L_FLAGS], "max_active_jobs", json_integer(n));
    return 0;
}

int jobq_settings_flag_tier(jobq_settings *s, const char *arg, char **err)
{
    const char *eq = strchr(arg, '='), *why, *f;
    char *name, *end, *slash;
    long long limit;
    json_t *t, *tiers, *norm;

    if (!eq || eq == arg)
        goto bad;
    name = g_strndup(arg, (size_t)(eq - arg));
    limit = strtoll(eq + 1, &end, 10);
    slash = *end == '/' ? end + 1 : NULL;
    if (end == eq + 1 || (*end && !slash) || limit < 0) {
        g_free(name);
        goto bad;
    }
    t = json_pack("{sI}", "group_concurrency", (json_int_t)limit);
    if (slash) {
        int p;
        char *pe;
        long pv = strtol(slash, &pe, 10);
        int wrong;
        if (pe != slash && !*pe) { /* a number */
            wrong = pv < -1000 || pv > 1000;
            p = (int)pv;
        } else { /* a name; "pro=5/" is neither */
            wrong = jobq_priority_parse(slash, &p) != 0;
        }
        if (wrong) {
            json_decref(t);
            g_free(name);
            goto bad;
        }
        json_object_set_new(t, "priority", json_integer(p));
    }
    norm = tier_parse(t, &f, &why);
    json_decref(t);
    if (!norm) {
        g_free(name);
        goto bad;
    }
    tiers = json_object_get(s->layers[L_FLAGS], "tiers");
    if (!tiers) {
        tiers = json_object();
        json_object_set_new(s->layers[L_FLAGS], "tiers", tiers);
    }
    json_object_set_new(tiers, name, norm);
    g_free(name);
    return 0;
bad:
    *err = g_strdup_printf("--tier %s: want NAME=LIMIT[/PRIORITY], e.g. pro=5/high", arg);
    return -1;
}

int jobq_settings_load_runtime(jobq_settings *s, const char *body)
{
    json_t *v = json_loads(body, 0, NULL), *norm;
    char field[256];
    const char *why;

    norm = v ? layer_parse(v, 0, 0, field, sizeof field, &why) : NULL;
    json_decref(v);
    if (!norm)
        return JOBQ_ECORRUPT;
    json_decref(s->layers[L_RUNTIME]);
    s->layers[L_RUNTIME] = norm;
    return 0;
}

/* The effective settings: {"max_active_jobs", "tiers"} (new). */
static json_t *effective(const jobq_settings *s)
{
    json_t *tiers = json_loads(shipped_tiers, 0, NULL);
    int64_t cap = 0;

    for (int i = 0; i < 3; i++) {
        json_t *l = s->layers[i], *v = json_object_get(l, "max_active_jobs");
        if (json_is_integer(v))
            cap = json_integer_value(v);
        json_object_update(tiers, json_object_get(l, "tiers"));
    }
    return json_pack("{sIso}", "max_active_jobs", (json_int_t)cap, "tiers", tiers);
}

void jobq_settings_apply(jobq_settings *s, jobq_engine *e, int64_t now)
{
    json_t *eff = effective(s), *t;
    const char *name;

    jobq_engine_clear_tiers(e, now);
    json_object_foreach(json_object_get(eff, "tiers"), name, t)
    {
        jobq_tier tier = {0};
        json_t *p = json_object_get(t, "priority");
        tier.group_concurrency = json_integer_value(json_object_get(t, "group_concurrency"));
        tier.has_priority = p != NULL;
        tier.priority = (int)json_integer_value(p);
        jobq_engine_set_tier(e, name, &tier, now);
    }
    jobq_engine_set_max_active(e, json_integer_value(json_object_get(eff, "max_active_jobs")), now);
    json_decref(eff);
}

int jobq_settings_apply_queues(jobq_settings *s, jobq_engine *e, int64_t now, char **err)
{
    const char *name, *f, *w;
    json_t *qo;

    json_object_foreach(s->queues, name, qo)
    {
        jobq_queue *q = jobq_engine_queue(e, name);
        jobq_queue_opts o;
        int rc;

        if (q) /* as a PATCH: a partial "defaults" or "alert" keeps the rest */
            jobq_queue_opts_for_patch(&o, jobq_queue_options(q));
        else
            jobq_queue_opts_default(&o);
        rc = jobq_queue_opts_parse(qo, &o, NULL, &f, &w);
        if (rc == 0)
            rc = q ? jobq_engine_queue_patch(e, q, &o, now)
                   : jobq_engine_queue_create(e, name, &o, now, NULL);
        jobq_queue_opts_clear(&o);
        if (rc) {
            *err = g_strdup_printf("queues.%s: %s", name, jobq_strerror(rc));
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- GET/PATCH /v1/config */

static json_t *config_json(jobq_app *a)
{
    jobq_settings *s = jobq_app_settings(a);
    json_t *o = effective(s);

    json_object_set_new(o, "active_jobs",
                        json_integer(jobq_engine_active_total(jobq_app_engine(a))));
    json_object_set(o, "runtime", s->layers[L_RUNTIME]);
    return o;
}

void jobq_h_config_get(jobq_req *rq)
{
    jobq_api_json(rq, 200, config_json(jobq_req_app(rq)));
}

static void finish_config(jobq_app *a, jobq_req *rq)
{
    jobq_api_json(rq, 200, config_json(a));
}

void jobq_h_config_patch(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_settings *s = jobq_app_settings(a);
    json_t *body, *norm, *rt, *v;
    const char *why, *key;
    char field[256];
    char *text;

    if (!jobq_app_writable(a, rq))
        return;
    body = jobq_api_body(rq, 1);
    if (!body)
        return;
    norm = layer_parse(body, 1, 0, field, sizeof field, &why);
    json_decref(body);
    if (!norm) {
        jobq_api_bad_field(rq, field, why);
        return;
    }
    /* merge into the runtime layer: null drops a key */
    rt = json_deep_copy(s->layers[L_RUNTIME]);
    json_object_foreach(norm, key, v)
    {
        if (!strcmp(key, "tiers")) {
            const char *name;
            json_t *t, *tiers = json_object_get(rt, "tiers");
            if (!tiers) {
                tiers = json_object();
                json_object_set_new(rt, "tiers", tiers);
            }
            json_object_foreach(v, name, t)
            {
                if (json_is_null(t))
                    json_object_del(tiers, name);
                else
                    json_object_set(tiers, name, t);
            }
            if (!json_object_size(tiers))
                json_object_del(rt, "tiers");
        } else if (json_is_null(v)) {
            json_object_del(rt, key);
        } else {
            json_object_set(rt, key, v);
        }
    }
    json_decref(norm);
    json_decref(s->layers[L_RUNTIME]);
    s->layers[L_RUNTIME] = rt;
    text = json_dumps(rt, JSON_COMPACT | JSON_SORT_KEYS);
    jobq_engine_doc_put(jobq_app_engine(a), "config", "runtime", text);
    free(text);
    jobq_settings_apply(s, jobq_app_engine(a), jobq_app_now());
    jobq_app_after_commit(a, rq, finish_config);
}
