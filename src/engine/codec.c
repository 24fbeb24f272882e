/*
 * codec.c — JSON in: enqueue items, queue options, backoff, priorities.
 *
 * Each parser checks every field's type and range and names the first bad one, so the API
 * can answer 400 with details.field. Unknown fields are refused: a typo must not silently
 * become a default.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "util/jsonw.h"

#define MAX_MS (INT64_C(100) * 365 * 24 * 3600 * 1000) /* a century: bound for every *_ms */
#define MAX_SPAN_MS INT64_C(2147483647) /* lease_ms, timeout_ms: ~24.8 days, kept in 32 bits */
#define MAX_STR 1024                    /* name, group, tier, project */

int jobq_priority_parse(const char *s, int *out)
{
    static const struct {
        const char *name;
        int v;
    } names[] = {{"low", -10}, {"normal", 0}, {"high", 10}, {"urgent", 20}};

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0) {
            *out = names[i].v;
            return 0;
        }
    return -1;
}

static int get_ms(const json_t *v, int64_t lo, int64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > MAX_MS)
        return -1;
    *out = json_integer_value(v);
    return 0;
}

/* Backoff from JSON; NULL with field and why set on error. New reference. */
jobq_backoff *jobq_backoff_parse(const json_t *v, const char **field, const char **why)
{
    const char *type, *key;
    json_t *x;
    jobq_backoff *b = NULL;

    *field = "backoff";
    if (!json_is_object(v)) {
        *why = "must be an object";
        return NULL;
    }
    x = json_object_get(v, "type");
    type = json_string_value(x);
    if (!type) {
        *field = "backoff.type";
        *why = "must be fixed, exponential or list";
        return NULL;
    }
    if (!strcmp(type, "fixed") || !strcmp(type, "exponential")) {
        b = jobq_backoff_new(!strcmp(type, "fixed") ? JOBQ_BACKOFF_FIXED : JOBQ_BACKOFF_EXPONENTIAL,
                             0);
    } else if (!strcmp(type, "list")) {
        json_t *l = json_object_get(v, "delays_ms");
        size_t i;
        if (!json_is_array(l) || json_array_size(l) < 1 || json_array_size(l) > 100) {
            *field = "backoff.delays_ms";
            *why = "must be a list of 1 to 100 delays";
            return NULL;
        }
        b = jobq_backoff_new(JOBQ_BACKOFF_LIST, json_array_size(l));
        json_array_foreach(l, i, x)
        {
            if (get_ms(x, 0, &b->delays[i])) {
                *field = "backoff.delays_ms";
                *why = "delays must be non-negative integers (ms)";
                goto fail;
            }
        }
    } else {
        *field = "backoff.type";
        *why = "must be fixed, exponential or list";
        return NULL;
    }
    json_object_foreach((json_t *)v, key, x)
    {
        if (!strcmp(key, "type") || (!strcmp(key, "delays_ms") && b->type == JOBQ_BACKOFF_LIST))
            continue;
        if (!strcmp(key, "delay_ms") && b->type != JOBQ_BACKOFF_LIST) {
            if (get_ms(x, 0, &b->delay_ms)) {
                *field = "backoff.delay_ms";
                *why = "must be a non-negative integer (ms)";
                goto fail;
            }
        } else if (!strcmp(key, "factor") && b->type == JOBQ_BACKOFF_EXPONENTIAL) {
            if (!json_is_number(x) || json_number_value(x) < 1 || json_number_value(x) > 100) {
                *field = "backoff.factor";
                *why = "must be a number from 1 to 100";
                goto fail;
            }
            b->factor = json_number_value(x);
        } else if (!strcmp(key, "max_ms") && b->type == JOBQ_BACKOFF_EXPONENTIAL) {
            if (get_ms(x, 0, &b->max_ms)) {
                *field = "backoff.max_ms";
                *why = "must be a non-negative integer (ms)";
                goto fail;
            }
        } else if (!strcmp(key, "jitter")) {
            if (!json_is_number(x) || json_number_value(x) < 0 || json_number_value(x) > 1) {
                *field = "backoff.jitter";
                *why = "must be a number from 0 to 1";
                goto fail;
            }
            b->jitter = json_number_value(x);
        } else {
            /* names the offending key; one buffer is enough: the engine has one thread */
            static char name[160];
            snprintf(name, sizeof name, "backoff.%.140s", key);
            *field = name;
            *why = "unknown field for this backoff type";
            goto fail;
        }
    }
    return b;
fail:
    jobq_backoff_unref(b);
    return NULL;
}

void jobq_backoff_render(const jobq_backoff *b, GString *o)
{
    int first = 1;
    size_t start = o->len;

    if (b->json) {
        g_string_append(o, b->json);
        return;
    }
    g_string_append_c(o, '{');
    switch (b->type) {
    case JOBQ_BACKOFF_FIXED:
        jobq_jw_kstr(o, &first, "type", "fixed");
        jobq_jw_kint(o, &first, "delay_ms", b->delay_ms);
        break;
    case JOBQ_BACKOFF_EXPONENTIAL:
        jobq_jw_kstr(o, &first, "type", "exponential");
        jobq_jw_kint(o, &first, "delay_ms", b->delay_ms);
        jobq_jw_key(o, &first, "factor");
        g_string_append_printf(o, "%.17g", b->factor);
        jobq_jw_kint(o, &first, "max_ms", b->max_ms);
        break;
    case JOBQ_BACKOFF_LIST:
        jobq_jw_kstr(o, &first, "type", "list");
        jobq_jw_key(o, &first, "delays_ms");
        g_string_append_c(o, '[');
        for (size_t i = 0; i < b->n; i++) {
            if (i)
                g_string_append_c(o, ',');
            jobq_jw_int(o, b->delays[i]);
        }
        g_string_append_c(o, ']');
        break;
    }
    jobq_jw_key(o, &first, "jitter");
    g_string_append_printf(o, "%.17g", b->jitter);
    g_string_append_c(o, '}');
    /* a backoff never changes once made: keep the text (the cast drops only the cache's
     * constness) */
    ((jobq_backoff *)b)->json = g_strndup(o->str + start, o->len - start);
}

static int get_str(const json_t *v, size_t max, const char **out)
{
    size_t len;

    if (!json_is_string(v))
        return -1;
    len = json_string_length(v);
    if (len < 1 || len > max || strlen(json_string_value(v)) != len)
        return -1;
    *out = json_string_value(v);
    return 0;
}

int jobq_valid_job_id(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++) {
        char c = s[n];
        if (!(g_ascii_isalnum(c) || c == '.' || c == '_' || c == ':' || c == '-'))
            return 0;
    }
    return n >= 1 && n <= 128;
}

/* ---------------------------------------------------------------- enqueue items */

void jobq_job_spec_clear(jobq_job_spec *s)
{
    free(s->own_data);
    free(s->own_tags);
    free(s->own_requires);
    free(s->own_webhook);
    g_free(s->own_deps);
    jobq_backoff_unref(s->backoff);
    memset(s, 0, sizeof *s);
}

int jobq_job_spec_parse(const json_t *obj, int64_t now, jobq_job_spec *s, const char **field,
                        const char **why)
{
    return jobq_job_spec_parse_raw(obj, NULL, 0, now, s, field, why);
}

int jobq_job_spec_parse_raw(const json_t *obj, const char *raw_data, size_t raw_len, int64_t now,
                            jobq_job_spec *s, const char **field, const char **why)
{
    const char *key;
    json_t *v;
    int has_delay = 0, has_run_at = 0;

    memset(s, 0, sizeof *s);
    s->timeout_ms = -1;
    if (!json_is_object(obj)) {
        *field = "job";
        *why = "must be an object";
        return JOBQ_EINVAL;
    }
    json_object_foreach((json_t *)obj, key, v)
    {
        *field = key;
        if (!strcmp(key, "data")) {
            if (raw_data) {
                s->data = raw_data;
                s->data_len = raw_len;
                continue;
            }
            s->own_data = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            if (!s->own_data)
                goto nomem;
            s->data = s->own_data;
            s->data_len = strlen(s->data);
        } else if (!strcmp(key, "id")) {
            if (!json_is_string(v) || !jobq_valid_job_id(json_string_value(v))) {
                *why = "must be 1 to 128 characters of A-Z a-z 0-9 . _ : -";
                goto bad;
            }
            s->id = json_string_value(v);
        } else if (!strcmp(key, "name") || !strcmp(key, "group") || !strcmp(key, "tier") ||
                   !strcmp(key, "project")) {
            const char *str;
            if (get_str(v, MAX_STR, &str)) {
                *why = "must be a string of 1 to 1024 bytes";
                goto bad;
            }
            if (!strcmp(key, "name"))
                s->name = str;
            else if (!strcmp(key, "group"))
                s->group = str;
            else if (!strcmp(key, "tier"))
                s->tier = str;
            else
                s->project = str;
        } else if (!strcmp(key, "tags")) {
            const char *k2;
            json_t *v2;
            if (!json_is_object(v) || json_object_size(v) > 64) {
                *why = "must be an object of at most 64 string values";
                goto bad;
            }
            json_object_foreach(v, k2, v2)
            {
                if (!json_is_string(v2) || json_string_length(v2) > MAX_STR || strlen(k2) > 128) {
                    *why = "must be an object of at most 64 string values";
                    goto bad;
                }
            }
            s->own_tags = json_dumps(v, JSON_COMPACT);
            s->tags = s->own_tags;
        } else if (!strcmp(key, "requires")) {
            const char *k2;
            json_t *v2;
            if (!json_is_object(v) || json_object_size(v) > 32) {
                *why = "must be an object of at most 32 non-negative numbers";
                goto bad;
            }
            json_object_foreach(v, k2, v2)
            {
                if (!json_is_number(v2) || json_number_value(v2) < 0 || strlen(k2) > 128) {
                    *why = "must be an object of at most 32 non-negative numbers";
                    goto bad;
                }
            }
            s->own_requires = json_dumps(v, JSON_COMPACT);
            s->requires = s->own_requires;
        } else if (!strcmp(key, "webhook")) {
            if (jobq_webhook_parse(v, 0, &s->own_webhook, field, why))
                goto bad;
            s->webhook = s->own_webhook;
        } else if (!strcmp(key, "priority")) {
            if (json_is_string(v)) {
                if (jobq_priority_parse(json_string_value(v), &s->priority)) {
                    *why = "must be -1000..1000 or low, normal, high, urgent";
                    goto bad;
                }
            } else if (json_is_integer(v) && json_integer_value(v) >= -1000 &&
                       json_integer_value(v) <= 1000) {
                s->priority = (int)json_integer_value(v);
            } else {
                *why = "must be -1000..1000 or low, normal, high, urgent";
                goto bad;
            }
            s->has_priority = 1;
        } else if (!strcmp(key, "delay_ms")) {
            int64_t d;
            if (get_ms(v, 0, &d)) {
                *why = "must be a non-negative integer (ms)";
                goto bad;
            }
            s->run_at = d ? now + d : 0;
            has_delay = 1;
        } else if (!strcmp(key, "run_at")) {
            if (get_ms(v, 0, &s->run_at)) {
                *why = "must be ms since the epoch";
                goto bad;
            }
            has_run_at = 1;
        } else if (!strcmp(key, "max_attempts")) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000) {
                *why = "must be an integer from 1 to 1000";
                goto bad;
            }
            s->max_attempts = (int)json_integer_value(v);
        } else if (!strcmp(key, "backoff")) {
            s->backoff = jobq_backoff_parse(v, field, why);
            if (!s->backoff)
                goto bad;
        } else if (!strcmp(key, "timeout_ms")) {
            if (get_ms(v, 0, &s->timeout_ms) || s->timeout_ms > MAX_SPAN_MS) {
                *why = "must be an integer from 0 (none) to 2147483647 (ms)";
                goto bad;
            }
        } else if (!strcmp(key, "lease_ms")) {
            if (get_ms(v, 100, &s->lease_ms) || s->lease_ms > MAX_SPAN_MS) {
                *why = "must be an integer from 100 to 2147483647 (ms)";
                goto bad;
            }
        } else if (!strcmp(key, "depends_on")) {
            size_t i;
            json_t *x;
            if (!json_is_array(v) || json_array_size(v) > JOBQ_MAX_DEPS) {
                *why = "must be a list of at most 64 job ids";
                goto bad;
            }
            s->ndeps = json_array_size(v);
            s->own_deps = g_new0(const char *, s->ndeps + 1);
            json_array_foreach(v, i, x)
            {
                if (!json_is_string(x) || !jobq_valid_job_id(json_string_value(x))) {
                    *why = "must be a list of job ids (or refs, in a flow)";
                    goto bad;
                }
                for (size_t k = 0; k < i; k++)
                    if (!strcmp(s->own_deps[k], json_string_value(x))) {
                        *why = "names the same job twice";
                        goto bad;
                    }
                s->own_deps[i] = json_string_value(x);
            }
            s->depends_on = s->own_deps;
        } else if (!strcmp(key, "review")) {
            if (!json_is_boolean(v)) {
                *why = "must be true or false";
                goto bad;
            }
            s->review = json_is_true(v);
        } else if (!strcmp(key, "on_parent_failure")) {
            int p = json_is_string(v) ? jobq_opf_parse(json_string_value(v)) : -1;
            if (p < 0) {
                *why = "must be cancel or continue";
                goto bad;
            }
            s->on_parent_failure = p;
        } else if (!strcmp(key, "unique_key")) {
            if (get_str(v, MAX_STR, &s->unique_key)) {
                *why = "must be a string of 1 to 1024 bytes";
                goto bad;
            }
        } else if (!strcmp(key, "cache")) {
            const char *k2;
            json_t *v2;
            if (!json_is_object(v)) {
                *why = "must be {\"key\": \"…\", \"ttl_ms\"?: MS}";
                goto bad;
            }
            s->cache_ttl_ms = JOBQ_CACHE_TTL_DEFAULT;
            json_object_foreach(v, k2, v2)
            {
                if (!strcmp(k2, "key")) {
                    if (get_str(v2, MAX_STR, &s->cache_key)) {
                        *field = "cache.key";
                        *why = "must be a string of 1 to 1024 bytes";
                        goto bad;
                    }
                } else if (!strcmp(k2, "ttl_ms")) {
                    if (get_ms(v2, 0, &s->cache_ttl_ms)) {
                        *field = "cache.ttl_ms";
                        *why = "must be a non-negative integer (ms)";
                        goto bad;
                    }
                } else {
                    *field = "cache";
                    *why = "unknown field (key and ttl_ms are accepted)";
                    goto bad;
                }
            }
            if (!s->cache_key) {
                *field = "cache.key";
                *why = "is required";
                goto bad;
            }
        } else {
            *why = "unknown field";
            goto bad;
        }
    }
    if (has_delay && has_run_at) {
        *field = "run_at";
        *why = "give delay_ms or run_at, not both";
        goto bad;
    }
    return 0;
nomem:
    jobq_job_spec_clear(s);
    return JOBQ_ENOMEM;
bad:
    jobq_job_spec_clear(s);
    return JOBQ_EINVAL;
}

/* ---------------------------------------------------------------- queue options */

void jobq_queue_opts_default(jobq_queue_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_stalls = 1;
    o->defaults.max_attempts = 3;
    o->defaults.backoff = jobq_backoff_new(JOBQ_BACKOFF_EXPONENTIAL, 0);
    o->defaults.backoff->delay_ms = 2000;
    o->defaults.lease_ms = 30000;
    o->keep_completed.count = 1000;
    o->keep_failed.count = -1;
    o->keep_failed.age_ms = INT64_C(7) * 24 * 3600 * 1000;
    o->alert_backlog = 100;
    o->alert_error_rate = 10;
    o->alert_paused_ms = 3600000;
    o->alert_idle_ms = 1800000;
    o->alert_utilization = -1;
    o->alert_processing_p95_ms = -1;
}

void jobq_queue_opts_clear(jobq_queue_opts *o)
{
    g_free(o->type);
    g_free(o->description);
    jobq_backoff_unref(o->defaults.backoff);
    memset(o, 0, sizeof *o);
}

void jobq_queue_opts_for_patch(jobq_queue_opts *o, const jobq_queue_opts *cur)
{
    jobq_queue_opts_default(o);
    jobq_backoff_unref(o->defaults.backoff);
    o->defaults = cur->defaults;
    jobq_backoff_ref(o->defaults.backoff);
    o->keep_completed = cur->keep_completed;
    o->keep_failed = cur->keep_failed;
    o->alert_backlog = cur->alert_backlog;
    o->alert_error_rate = cur->alert_error_rate;
    o->alert_paused_ms = cur->alert_paused_ms;
    o->alert_idle_ms = cur->alert_idle_ms;
    o->alert_utilization = cur->alert_utilization;
    o->alert_processing_p95_ms = cur->alert_processing_p95_ms;
}

static int parse_keep(const json_t *v, jobq_keep *k)
{
    const char *key;
    json_t *x;

    if (json_is_integer(v)) { /* BullMQ's removeOnComplete: N */
        if (json_integer_value(v) < 0)
            return -1;
        k->count = json_integer_value(v);
        k->age_ms = 0;
        return 0;
    }
    if (!json_is_object(v))
        return -1;
    k->count = -1;
    k->age_ms = 0;
    json_object_foreach((json_t *)v, key, x)
    {
        if (!strcmp(key, "count")) {
            if (json_is_null(x))
                continue;
            if (!json_is_integer(x) || json_integer_value(x) < 0)
                return -1;
            k->count = json_integer_value(x);
        } else if (!strcmp(key, "age_ms")) {
            if (json_is_null(x))
                continue;
            if (get_ms(x, 0, &k->age_ms))
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

static int get_count(const json_t *v, int64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > INT64_C(1000000000))
        return -1;
    *out = json_integer_value(v);
    return 0;
}

static int percent(const json_t *v, double *out)
{
    if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 100)
        return -1;
    *out = json_number_value(v);
    return 0;
}

/* The health thresholds (health.c): every key optional; utilization and
 * processing_p95_ms take null (off). *field names the key at fault. */
static int parse_alert(const json_t *v, jobq_queue_opts *o, const char **field, const char **why)
{
    const char *k;
    json_t *x;

    if (!json_is_object(v)) {
        *why = "must be an object: {\"backlog\", \"error_rate\", \"paused_ms\", "
               "\"idle_ms\", \"utilization\", \"processing_p95_ms\"}, each optional";
        return -1;
    }
    json_object_foreach((json_t *)v, k, x)
    {
        int bad;
        if (!strcmp(k, "backlog")) {
            bad = get_count(x, &o->alert_backlog);
            *why = "must be an integer >= 0";
        } else if (!strcmp(k, "error_rate")) {
            bad = percent(x, &o->alert_error_rate);
            *why = "must be a percentage (0..100)";
        } else if (!strcmp(k, "paused_ms")) {
            bad = get_ms(x, 0, &o->alert_paused_ms);
            *why = "must be a duration in ms";
        } else if (!strcmp(k, "idle_ms")) {
            bad = get_ms(x, 0, &o->alert_idle_ms);
            *why = "must be a duration in ms";
        } else if (!strcmp(k, "utilization")) {
            o->alert_utilization = -1;
            bad = !json_is_null(x) && percent(x, &o->alert_utilization);
            *why = "must be a percentage (0..100) or null";
        } else if (!strcmp(k, "processing_p95_ms")) {
            o->alert_processing_p95_ms = -1;
            bad = !json_is_null(x) && get_ms(x, 0, &o->alert_processing_p95_ms);
            *why = "must be a duration in ms or null";
        } else {
            bad = 1;
            *why = "unknown field";
        }
        if (bad) {
            *field = k; /* names the key inside "alert" */
            return -1;
        }
    }
    return 0;
}

static int parse_defaults(const json_t *v, jobq_job_defaults *d, const char **field,
                          const char **why)
{
    const char *key;
    json_t *x;

    if (!json_is_object(v)) {
        *field = "defaults";
        *why = "must be an object";
        return -1;
    }
    json_object_foreach((json_t *)v, key, x)
    {
        *field = key;
        if (!strcmp(key, "max_attempts")) {
            if (!json_is_integer(x) || json_integer_value(x) < 1 || json_integer_value(x) > 1000) {
                *why = "must be an integer from 1 to 1000";
                return -1;
            }
            d->max_attempts = (int)json_integer_value(x);
        } else if (!strcmp(key, "backoff")) {
            jobq_backoff *b = jobq_backoff_parse(x, field, why);
            if (!b)
                return -1;
            jobq_backoff_unref(d->backoff);
            d->backoff = b;
        } else if (!strcmp(key, "timeout_ms")) {
            if (get_ms(x, 0, &d->timeout_ms) || d->timeout_ms > MAX_SPAN_MS) {
                *why = "must be an integer from 0 (none) to 2147483647 (ms)";
                return -1;
            }
        } else if (!strcmp(key, "lease_ms")) {
            if (get_ms(x, 100, &d->lease_ms) || d->lease_ms > MAX_SPAN_MS) {
                *why = "must be an integer from 100 to 2147483647 (ms)";
                return -1;
            }
        } else if (!strcmp(key, "priority")) {
            int p = 0;
            if (json_is_string(x) ? jobq_priority_parse(json_string_value(x), &p)
                                  : !json_is_integer(x) || json_integer_value(x) < -1000 ||
                                        json_integer_value(x) > 1000) {
                *why = "must be -1000..1000 or low, normal, high, urgent";
                return -1;
            }
            d->priority = json_is_string(x) ? p : (int)json_integer_value(x);
        } else {
            *why = "unknown field";
            return -1;
        }
    }
    return 0;
}

int jobq_queue_opts_parse(const json_t *obj, jobq_queue_opts *o, const char *const *skip,
                          const char **field, const char **why)
{
    const char *key;
    json_t *v;

    if (!json_is_object(obj)) {
        *field = "body";
        *why = "must be an object";
        return JOBQ_EINVAL;
    }
    json_object_foreach((json_t *)obj, key, v)
    {
        int skipped = 0;
        for (size_t i = 0; skip && skip[i]; i++)
            skipped |= strcmp(key, skip[i]) == 0;
        if (skipped)
            continue;
        *field = key;
        *why = "invalid value";
        if (!strcmp(key, "type") || !strcmp(key, "description")) {
            const char *s;
            if (json_is_null(v)) {
                s = NULL;
            } else if (get_str(v, MAX_STR, &s)) {
                *why = "must be a string of 1 to 1024 bytes";
                return JOBQ_EINVAL;
            }
            if (!strcmp(key, "type")) {
                g_free(o->type);
                o->type = g_strdup(s);
                o->set |= JOBQ_QO_TYPE;
            } else {
                g_free(o->description);
                o->description = g_strdup(s);
                o->set |= JOBQ_QO_DESCRIPTION;
            }
        } else if (!strcmp(key, "concurrency")) {
            if (get_count(v, &o->concurrency)) {
                *why = "must be a non-negative integer (0 = unlimited)";
                return JOBQ_EINVAL;
            }
            o->set |= JOBQ_QO_CONCURRENCY;
        } else if (!strcmp(key, "group_concurrency")) {
            if (get_count(v, &o->group_concurrency)) {
                *why = "must be a non-negative integer (0 = unlimited)";
                return JOBQ_EINVAL;
            }
            o->set |= JOBQ_QO_GROUP_CONCURRENCY;
        } else if (!strcmp(key, "max_size")) {
            if (get_count(v, &o->max_size)) {
                *why = "must be a non-negative integer (0 = unlimited)";
                return JOBQ_EINVAL;
            }
            o->set |= JOBQ_QO_MAX_SIZE;
        } else if (!strcmp(key, "max_stalls")) {
            int64_t n;
            if (get_count(v, &n) || n > 1000) {
                *why = "must be an integer from 0 to 1000";
                return JOBQ_EINVAL;
            }
            o->max_stalls = (int)n;
            o->set |= JOBQ_QO_MAX_STALLS;
        } else if (!strcmp(key, "rate_limit")) {
            if (json_is_null(v)) {
                o->rate_max = o->rate_per_ms = 0;
            } else if (!json_is_object(v) || get_count(json_object_get(v, "max"), &o->rate_max) ||
                       o->rate_max < 1 || o->rate_max > 1000000 ||
                       get_ms(json_object_get(v, "per_ms"), 1, &o->rate_per_ms) ||
                       json_object_size(v) != 2) {
                *why = "must be {\"max\": 1..1000000, \"per_ms\": MS} or null";
                return JOBQ_EINVAL;
            }
            o->set |= JOBQ_QO_RATE_LIMIT;
        } else if (!strcmp(key, "circuit_breaker")) {
            if (json_is_null(v)) {
                o->cb_failures = o->cb_cooldown_ms = 0;
            } else if (!json_is_object(v) ||
                       get_count(json_object_get(v, "failures"), &o->cb_failures) ||
                       get_ms(json_object_get(v, "cooldown_ms"), 0, &o->cb_cooldown_ms) ||
                       json_object_size(v) != 2) {
                *why = "must be {\"failures\": N, \"cooldown_ms\": MS} or null";
                return JOBQ_EINVAL;
            }
            o->set |= JOBQ_QO_CIRCUIT_BREAKER;
        } else if (!strcmp(key, "alert")) {
            if (parse_alert(v, o, field, why))
                return JOBQ_EINVAL;
            o->set |= JOBQ_QO_ALERT;
        } else if (!strcmp(key, "defaults")) {
            if (parse_defaults(v, &o->defaults, field, why))
                return JOBQ_EINVAL;
            o->set |= JOBQ_QO_DEFAULTS;
        } else if (!strcmp(key, "keep_completed") || !strcmp(key, "keep_failed")) {
            int c = !strcmp(key, "keep_completed");
            if (parse_keep(v, c ? &o->keep_completed : &o->keep_failed)) {
                *why = "must be {\"count\"?: N, \"age_ms\"?: MS} or a count";
                return JOBQ_EINVAL;
            }
            o->set |= c ? JOBQ_QO_KEEP_COMPLETED : JOBQ_QO_KEEP_FAILED;
        } else if (!strcmp(key, "fairness")) {
            const char *f = json_string_value(v);
            if (json_is_null(v))
                o->fairness = JOBQ_FAIR_AUTO;
            else if (f && !strcmp(f, "fifo"))
                o->fairness = JOBQ_FAIR_FIFO;
            else if (f && !strcmp(f, "round_robin"))
                o->fairness = JOBQ_FAIR_ROUND_ROBIN;
            else {
                *why = "must be fifo, round_robin or null (round_robin when groups are limited)";
                return JOBQ_EINVAL;
            }
            o->set |= JOBQ_QO_FAIRNESS;
        } else if (!strcmp(key, "status")) {
            int st = json_is_string(v) ? jobq_qstatus_parse(json_string_value(v)) : -1;
            if (st < 0 || st == JOBQ_Q_ERROR) {
                *why = "must be active, paused or draining";
                return JOBQ_EINVAL;
            }
            o->status = st;
            o->set |= JOBQ_QO_STATUS;
        } else {
            *why = "unknown field";
            return JOBQ_EINVAL;
        }
    }
    return 0;
}
