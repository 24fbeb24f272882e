/*
 * webhook.c — checking a webhook's description: a registered hook's body
 * (POST /v1/webhooks) and a job's own `webhook` enqueue option.
 *
 * Both are validated here, field by field, and kept as one normalised JSON text (compact,
 * only the fields given). The engine stores a job's text with its options and never looks
 * inside again; delivering is the API layer's business (src/api/webhooks.c).
 *
 * What it never does: resolve or contact the URL.
 */
#include <string.h>

#include "engine/internal.h"

#define MAX_URL 2048
#define MAX_SECRET 256
#define MAX_TOKEN 4096
#define MAX_EVENTS 32
#define MAX_QUEUES 100
#define MAX_PROJECT 1024

/* The event types of docs/api.md that a webhook may ask for. "*" takes every type and
 * "job.*" (or flow., queue., health.) every type of that family. */
static const char *const types[] = {
    "job.created",  "job.started",    "job.progress",  "job.completed",        "job.failed",
    "job.retrying", "job.stalled",    "job.cancelled", "job.review_requested", "flow.completed",
    "flow.failed",  "queue.paused",   "queue.resumed", "queue.draining",       "queue.drained",
    "queue.error",  "health.changed",
};
static const char *const families[] = {"job.*", "flow.*", "queue.*", "health.*"};

int jobq_webhook_type_known(const char *t)
{
    if (!strcmp(t, "*"))
        return 1;
    for (size_t i = 0; i < G_N_ELEMENTS(types); i++)
        if (!strcmp(t, types[i]))
            return 1;
    for (size_t i = 0; i < G_N_ELEMENTS(families); i++)
        if (!strcmp(t, families[i]))
            return 1;
    return 0;
}

int jobq_webhook_type_match(const char *pattern, const char *type)
{
    size_t n = strlen(pattern);

    if (!strcmp(pattern, "*"))
        return 1;
    if (n >= 2 && pattern[n - 1] == '*' && pattern[n - 2] == '.')
        return !strncmp(pattern, type, n - 1);
    return !strcmp(pattern, type);
}

/* A string of 1..max bytes without NUL; with `header` also without control characters,
 * since it goes into an HTTP header line. */
static int ok_str(const json_t *v, size_t max, int header)
{
    const char *s = json_string_value(v);
    size_t len;

    if (!s)
        return 0;
    len = json_string_length(v);
    if (len < 1 || len > max || strlen(s) != len)
        return 0;
    if (header)
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                return 0;
    return 1;
}

/* http:// or https:// followed by a host, no whitespace or control characters. */
static int ok_url(const json_t *v)
{
    const char *s = json_string_value(v), *host;

    if (!ok_str(v, MAX_URL, 1) || strchr(s, ' '))
        return 0;
    if (!g_ascii_strncasecmp(s, "http://", 7))
        host = s + 7;
    else if (!g_ascii_strncasecmp(s, "https://", 8))
        host = s + 8;
    else
        return 0;
    return *host && *host != '/' && *host != '?' && *host != '#';
}

/* Field names as the API reports them: a job's option is nested under "webhook". */
#define F(top, name) ((top) ? (name) : "webhook." name)

int jobq_webhook_parse(const json_t *obj, int registered, char **out, const char **field,
                       const char **why)
{
    const char *key;
    json_t *v, *norm;
    size_t i;

    *out = NULL;
    if (!json_is_object(obj)) {
        *field = registered ? "body" : "webhook";
        *why = "must be an object";
        return JOBQ_EINVAL;
    }
    if (!ok_url(json_object_get(obj, "url"))) {
        *field = F(registered, "url");
        *why = "is required: an http:// or https:// URL of at most 2048 bytes";
        return JOBQ_EINVAL;
    }
    if (registered && !json_object_get(obj, "events")) {
        *field = "events";
        *why = "is required: a list of event types (\"*\" for all)";
        return JOBQ_EINVAL;
    }
    norm = json_object();
    json_object_foreach((json_t *)obj, key, v)
    {
        if (!strcmp(key, "url")) {
            /* checked above */
        } else if (!strcmp(key, "events")) {
            json_t *t;
            *field = F(registered, "events");
            *why = "must be a list of 1 to 32 event types (docs/webhooks.md), \"*\" or "
                   "\"job.*\"";
            if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > MAX_EVENTS)
                goto bad;
            json_array_foreach(v, i, t)
            {
                if (!json_is_string(t) || !jobq_webhook_type_known(json_string_value(t)))
                    goto bad;
            }
        } else if (registered && !strcmp(key, "queues")) {
            json_t *t;
            *field = "queues";
            *why = "must be a list of 1 to 100 queue names";
            if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > MAX_QUEUES)
                goto bad;
            json_array_foreach(v, i, t)
            {
                if (!json_is_string(t) || !jobq_valid_name(json_string_value(t)))
                    goto bad;
            }
        } else if (registered && !strcmp(key, "project")) {
            *field = "project";
            *why = "must be a string of 1 to 1024 bytes";
            if (!ok_str(v, MAX_PROJECT, 0))
                goto bad;
        } else if (!strcmp(key, "secret")) {
            *field = F(registered, "secret");
            *why = "must be a string of 1 to 256 bytes without control characters";
            if (!ok_str(v, MAX_SECRET, 1))
                goto bad;
        } else if (!strcmp(key, "token")) {
            *field = F(registered, "token");
            *why = "must be a string of 1 to 4096 bytes without control characters";
            if (!ok_str(v, MAX_TOKEN, 1))
                goto bad;
        } else {
            *field = registered ? key : "webhook";
            *why = registered ? "unknown field"
                              : "unknown field (url, events, secret and token are known)";
            goto bad;
        }
        json_object_set(norm, key, v);
    }
    *out = json_dumps(norm, JSON_COMPACT);
    json_decref(norm);
    return *out ? 0 : JOBQ_ENOMEM;
bad:
    json_decref(norm);
    return JOBQ_EINVAL;
}

const char *jobq_job_webhook_text(const jobq_job *j)
{
    return j->x ? j->x->webhook : NULL;
}
