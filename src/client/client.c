/*
 * client.c — libjobq: a synchronous client of the jobq HTTP API on one libcurl easy handle.
 *
 * jobq_client_request() is the whole protocol: it serialises a jansson body, sends it,
 * collects the answer (bounded), parses it back, and records the server's error code and
 * message (or a local one) for the caller to show. The helpers below it only build paths and
 * bodies for the job and worker verbs.
 *
 * What it never does: retry, sleep, keep global state of its own, or print anything.
 */
#include "jobq/jobq.h"

#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <curl/curl.h>

#define DEFAULT_TIMEOUT_MS 60000L
#define CONNECT_TIMEOUT_MS 10000L
#define MAX_ANSWER (256u * 1024u * 1024u) /* bytes; the server's largest list fits well */

struct jobq_client {
    CURL *curl;
    char *base;              /* URL without trailing '/' */
    char *auth;              /* "Authorization: Bearer …" header line, or NULL */
    long timeout_ms;         /* per request; 0 = none */
    atomic_int aborted;      /* set by jobq_client_abort(), never cleared */
    pthread_mutex_t sock_mu; /* guards sock against its close while abort shuts it down */
    curl_socket_t sock;      /* the connection's socket, CURL_SOCKET_BAD when none */
    long status;             /* last HTTP status, 0 = none */
    char code[64];           /* last failure's code, "" after success */
    char message[1024];      /* last failure's message */
    char curl_err[CURL_ERROR_SIZE];
};

struct answer {
    char *buf;
    size_t len, cap;
    bool too_big;
};

const char *jobq_client_strerror(int err)
{
    switch (err) {
    case JOBQ_CLIENT_OK:
        return "success";
    case JOBQ_CLIENT_ENOMEM:
        return "out of memory";
    case JOBQ_CLIENT_EINVAL:
        return "invalid argument";
    case JOBQ_CLIENT_ETRANSPORT:
        return "no answer from the server";
    case JOBQ_CLIENT_EPROTO:
        return "unexpected answer from the server";
    case JOBQ_CLIENT_ESERVER:
        return "the server answered with an error";
    case JOBQ_CLIENT_EABORTED:
        return "aborted";
    }
    return "unknown error";
}

__attribute__((format(printf, 3, 4))) static void set_error(jobq_client *c, const char *code,
                                                            const char *fmt, ...)
{
    va_list ap;

    snprintf(c->code, sizeof(c->code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(c->message, sizeof(c->message), fmt, ap);
    va_end(ap);
}

static void clear_error(jobq_client *c)
{
    c->code[0] = '\0';
    c->message[0] = '\0';
}

jobq_client *jobq_client_new(const char *url)
{
    jobq_client *c;
    size_t n;

    if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
        return NULL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    atomic_init(&c->aborted, 0);
    c->sock = CURL_SOCKET_BAD;
    if (pthread_mutex_init(&c->sock_mu, NULL) != 0) {
        free(c);
        return NULL;
    }
    c->timeout_ms = DEFAULT_TIMEOUT_MS;
    c->base = strdup(url);
    if (!c->base)
        goto out_free;
    n = strlen(c->base);
    while (n > 0 && c->base[n - 1] == '/')
        c->base[--n] = '\0';
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        goto out_base;
    c->curl = curl_easy_init();
    if (!c->curl)
        goto out_global;
    return c;

out_global:
    curl_global_cleanup();
out_base:
    free(c->base);
out_free:
    pthread_mutex_destroy(&c->sock_mu);
    free(c);
    return NULL;
}

void jobq_client_free(jobq_client *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->curl);
    curl_global_cleanup();
    pthread_mutex_destroy(&c->sock_mu);
    free(c->auth);
    free(c->base);
    free(c);
}

int jobq_client_set_token(jobq_client *c, const char *token)
{
    char *line = NULL;

    if (token && asprintf(&line, "Authorization: Bearer %s", token) < 0)
        return JOBQ_CLIENT_ENOMEM;
    free(c->auth);
    c->auth = line;
    return JOBQ_CLIENT_OK;
}

void jobq_client_set_timeout(jobq_client *c, long timeout_ms)
{
    c->timeout_ms = timeout_ms < 0 ? 0 : timeout_ms;
}

void jobq_client_abort(jobq_client *c)
{
    atomic_store(&c->aborted, 1);
    /* Shutting the socket down wakes a transfer parked in a long-poll at once; the flag
     * alone is seen by the progress callback, which idles at about one call a second. */
    pthread_mutex_lock(&c->sock_mu);
    if (c->sock != CURL_SOCKET_BAD)
        shutdown(c->sock, SHUT_RDWR);
    pthread_mutex_unlock(&c->sock_mu);
}

static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    jobq_client *c = clientp;
    curl_socket_t fd;

    (void)purpose;
    fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    if (fd < 0)
        return CURL_SOCKET_BAD;
    pthread_mutex_lock(&c->sock_mu);
    c->sock = fd;
    pthread_mutex_unlock(&c->sock_mu);
    return fd;
}

static int on_close_socket(void *clientp, curl_socket_t fd)
{
    jobq_client *c = clientp;
    int rc;

    pthread_mutex_lock(&c->sock_mu);
    if (c->sock == fd)
        c->sock = CURL_SOCKET_BAD;
    rc = close(fd);
    pthread_mutex_unlock(&c->sock_mu);
    return rc;
}

long jobq_client_status(const jobq_client *c)
{
    return c->status;
}

const char *jobq_client_error_code(const jobq_client *c)
{
    return c->code;
}

const char *jobq_client_error_message(const jobq_client *c)
{
    return c->message;
}

char *jobq_client_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out, *p;

    if (n > (SIZE_MAX - 1) / 3)
        return NULL;
    out = malloc(3 * n + 1);
    if (!out)
        return NULL;
    p = out;
    for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
        if ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') ||
            *q == '.' || *q == '_' || *q == '~' || *q == '-') {
            *p++ = (char)*q;
        } else {
            *p++ = '%';
            *p++ = hex[*q >> 4];
            *p++ = hex[*q & 15];
        }
    }
    *p = '\0';
    return out;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct answer *a = userdata;
    size_t n = size * nmemb;
    size_t cap;
    char *buf;

    if (n > MAX_ANSWER - a->len) {
        a->too_big = true;
        return 0;
    }
    if (a->len + n + 1 > a->cap) {
        cap = a->cap ? a->cap : 4096;
        while (cap < a->len + n + 1)
            cap *= 2;
        buf = realloc(a->buf, cap);
        if (!buf)
            return 0;
        a->buf = buf;
        a->cap = cap;
    }
    memcpy(a->buf + a->len, ptr, n);
    a->len += n;
    a->buf[a->len] = '\0';
    return n;
}

static int on_progress(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    jobq_client *c = clientp;

    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return atomic_load(&c->aborted) ? 1 : 0;
}

/* Records the error an answer with a non-2xx `status` carries; `answer` may be NULL. */
static void set_server_error(jobq_client *c, long status, json_t *answer, const char *text)
{
    json_t *err = json_object_get(answer, "error");
    const char *code = json_string_value(json_object_get(err, "code"));
    const char *msg = json_string_value(json_object_get(err, "message"));
    char fallback[32];
    int n = 0;

    if (code) {
        set_error(c, code, "%s", msg ? msg : "");
        return;
    }
    snprintf(fallback, sizeof(fallback), "http_%ld", status);
    if (text) {
        /* Show the first line of a non-JSON body, as a proxy or a crash page would send. */
        while (text[n] && text[n] != '\n' && text[n] != '\r' && n < 300)
            n++;
    }
    set_error(c, fallback, "HTTP status %ld%s%.*s", status, n ? ": " : "", n, text ? text : "");
}

/* Performs the transfer set up on c->curl; fills `a`, sets c->status. */
static int perform(jobq_client *c, struct answer *a)
{
    CURLcode rc;

    rc = curl_easy_perform(c->curl);
    if (rc != CURLE_OK) {
        if (atomic_load(&c->aborted)) {
            set_error(c, "aborted", "request aborted");
            return JOBQ_CLIENT_EABORTED;
        }
        if (a->too_big) {
            set_error(c, "protocol", "answer larger than %u bytes", MAX_ANSWER);
            return JOBQ_CLIENT_EPROTO;
        }
        if (rc == CURLE_WRITE_ERROR || rc == CURLE_OUT_OF_MEMORY) {
            set_error(c, "out_of_memory", "out of memory reading the answer");
            return JOBQ_CLIENT_ENOMEM;
        }
        set_error(c, "transport", "%s: %s", c->base,
                  c->curl_err[0] ? c->curl_err : curl_easy_strerror(rc));
        return JOBQ_CLIENT_ETRANSPORT;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &c->status);
    return JOBQ_CLIENT_OK;
}

/* Sets every option of one request; the handle was reset, its connections kept. */
static int setup(jobq_client *c, const char *method, const char *url, const char *payload,
                 struct curl_slist **headers, struct answer *a)
{
    struct curl_slist *h = NULL, *t;
    const char *lines[4];
    int n = 0;

    lines[n++] = "Accept: application/json";
    lines[n++] = "Expect:"; /* no 100-continue round trip for large bodies */
    if (payload)
        lines[n++] = "Content-Type: application/json";
    if (c->auth)
        lines[n++] = c->auth;
    for (int i = 0; i < n; i++) {
        t = curl_slist_append(h, lines[i]);
        if (!t) {
            curl_slist_free_all(h);
            return JOBQ_CLIENT_ENOMEM;
        }
        h = t;
    }
    *headers = h;

    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->curl_err);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, c);
    curl_easy_setopt(c->curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c->curl, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(c->curl, CURLOPT_OPENSOCKETDATA, c);
    curl_easy_setopt(c->curl, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(c->curl, CURLOPT_CLOSESOCKETDATA, c);
    if (payload) {
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(payload));
    } else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
               strcmp(method, "PATCH") == 0) {
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    } else {
        curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    return JOBQ_CLIENT_OK;
}

int jobq_client_request(jobq_client *c, const char *method, const char *path, json_t *body,
                        long *status, json_t **response)
{
    struct answer a = {0};
    struct curl_slist *headers = NULL;
    char *payload = NULL, *url = NULL;
    json_t *parsed = NULL;
    json_error_t jerr;
    int rc;

    if (status)
        *status = 0;
    if (response)
        *response = NULL;
    c->status = 0;
    c->curl_err[0] = '\0';
    clear_error(c);
    if (!method || !path || path[0] != '/') {
        set_error(c, "invalid_argument", "path must begin with '/'");
        return JOBQ_CLIENT_EINVAL;
    }
    if (atomic_load(&c->aborted)) {
        set_error(c, "aborted", "request aborted");
        return JOBQ_CLIENT_EABORTED;
    }
    if (body) {
        payload = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!payload) {
            set_error(c, "out_of_memory", "could not serialise the request body");
            return JOBQ_CLIENT_ENOMEM;
        }
    }
    if (asprintf(&url, "%s%s", c->base, path) < 0) {
        url = NULL;
        rc = JOBQ_CLIENT_ENOMEM;
        set_error(c, "out_of_memory", "out of memory");
        goto out_payload;
    }
    curl_easy_reset(c->curl);
    rc = setup(c, method, url, payload, &headers, &a);
    if (rc < 0) {
        set_error(c, "out_of_memory", "out of memory");
        goto out_url;
    }
    rc = perform(c, &a);
    if (rc < 0)
        goto out_answer;

    if (a.len > 0) {
        parsed = json_loadb(a.buf, a.len, JSON_DECODE_ANY, &jerr);
        if (!parsed && c->status >= 200 && c->status < 300) {
            set_error(c, "protocol", "answer is not JSON: %s", jerr.text);
            rc = JOBQ_CLIENT_EPROTO;
            goto out_answer;
        }
    }
    if (c->status < 200 || c->status >= 300) {
        set_server_error(c, c->status, parsed, a.buf);
        rc = JOBQ_CLIENT_ESERVER;
    }
    if (status)
        *status = c->status;
    if (response) {
        *response = parsed;
        parsed = NULL;
    }

out_answer:
    json_decref(parsed);
    free(a.buf);
    curl_slist_free_all(headers);
out_url:
    free(url);
out_payload:
    free(payload);
    return rc;
}

/* Requests `method` on the path prefix + escaped `arg` + suffix. Steals `body` (may be NULL). */
static int call(jobq_client *c, const char *method, json_t *body, json_t **out, const char *prefix,
                const char *arg, const char *suffix)
{
    char *esc = NULL, *path = NULL;
    int rc = JOBQ_CLIENT_ENOMEM;

    if (out)
        *out = NULL;
    clear_error(c);
    if (!body && strcmp(method, "GET") != 0)
        goto out_body; /* the builder below ran out of memory */
    if (!arg) {
        set_error(c, "invalid_argument", "missing id or name");
        rc = JOBQ_CLIENT_EINVAL;
        goto out_body;
    }
    esc = jobq_client_escape(arg);
    if (!esc)
        goto out_body;
    if (asprintf(&path, "%s%s%s", prefix, esc, suffix) < 0) {
        path = NULL;
        goto out_esc;
    }
    rc = jobq_client_request(c, method, path, body, NULL, out);
    free(path);
out_esc:
    free(esc);
out_body:
    if (rc == JOBQ_CLIENT_ENOMEM && !c->code[0])
        set_error(c, "out_of_memory", "out of memory");
    json_decref(body);
    return rc;
}

/* A new {"lease": lease} object, or NULL. */
static json_t *with_lease(const char *lease)
{
    json_t *o = json_object();

    if (o && json_object_set_new(o, "lease", json_string(lease ? lease : "")) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Sets o[key] to the string `s` (borrowed). json_string() refuses text that is not UTF-8
 * (or, far more rarely, finds no memory); the first is what gets reported. */
static int put_string(jobq_client *c, json_t *o, const char *key, const char *s)
{
    json_t *v = json_string(s);

    if (!v) {
        set_error(c, "invalid_argument", "%s is not valid UTF-8", key);
        return JOBQ_CLIENT_EINVAL;
    }
    if (json_object_set_new(o, key, v) < 0) {
        set_error(c, "out_of_memory", "out of memory");
        return JOBQ_CLIENT_ENOMEM;
    }
    return JOBQ_CLIENT_OK;
}

/* Reads cancel_requested from a heartbeat/progress answer, then drops the answer. */
static void take_cancel(json_t *answer, int *cancel_requested)
{
    if (cancel_requested)
        *cancel_requested = json_is_true(json_object_get(answer, "cancel_requested"));
    json_decref(answer);
}

int jobq_client_enqueue(jobq_client *c, const char *queue, json_t *job, json_t **out)
{
    if (!job) {
        set_error(c, "invalid_argument", "no job");
        return JOBQ_CLIENT_EINVAL;
    }
    return call(c, "POST", json_incref(job), out, "/v1/queues/", queue, "/jobs");
}

int jobq_client_fetch(jobq_client *c, const char *const *queues, size_t nqueues, int count,
                      long wait_ms, const char *worker, json_t **jobs)
{
    return jobq_client_fetch_fit(c, queues, nqueues, count, wait_ms, worker, NULL, jobs);
}

int jobq_client_fetch_fit(jobq_client *c, const char *const *queues, size_t nqueues, int count,
                          long wait_ms, const char *worker, json_t *capacity, json_t **jobs)
{
    json_t *body, *names, *answer = NULL, *list;
    long saved = c->timeout_ms;
    int rc = JOBQ_CLIENT_ENOMEM;

    *jobs = NULL;
    clear_error(c);
    body = json_object();
    names = json_array();
    if (!body || !names)
        goto out_body;
    for (size_t i = 0; i < nqueues; i++) {
        json_t *name = json_string(queues[i]);

        if (!name) {
            set_error(c, "invalid_argument", "queue name is not valid UTF-8");
            rc = JOBQ_CLIENT_EINVAL;
            goto out_body;
        }
        if (json_array_append_new(names, name) < 0)
            goto out_body;
    }
    if (json_object_set(body, "queues", names) < 0 ||
        json_object_set_new(body, "count", json_integer(count)) < 0 ||
        json_object_set_new(body, "wait_ms", json_integer(wait_ms)) < 0)
        goto out_body;
    if (worker && (rc = put_string(c, body, "worker", worker)) < 0)
        goto out_body;
    if (capacity && json_object_set(body, "capacity", capacity) < 0) {
        rc = JOBQ_CLIENT_ENOMEM;
        goto out_body;
    }
    /* The server parks up to wait_ms before it answers; that is not a slow answer. */
    if (saved > 0)
        c->timeout_ms = saved + (wait_ms > 0 ? wait_ms : 0);
    rc = jobq_client_request(c, "POST", "/v1/fetch", body, NULL, &answer);
    c->timeout_ms = saved;
    if (rc < 0)
        goto out_body;
    list = json_object_get(answer, "jobs");
    if (!json_is_array(list)) {
        set_error(c, "protocol", "fetch answer has no \"jobs\" array");
        rc = JOBQ_CLIENT_EPROTO;
        goto out_body;
    }
    *jobs = json_incref(list);

out_body:
    if (rc == JOBQ_CLIENT_ENOMEM && !c->code[0])
        set_error(c, "out_of_memory", "out of memory");
    json_decref(answer);
    json_decref(names);
    json_decref(body);
    return rc;
}

int jobq_client_heartbeat(jobq_client *c, const char *id, const char *lease, long extend_ms,
                          json_t *checkpoint, int *cancel_requested)
{
    json_t *body = with_lease(lease), *answer = NULL;
    int rc;

    if (cancel_requested)
        *cancel_requested = 0;
    if (body && extend_ms > 0 && json_object_set_new(body, "extend_ms", json_integer(extend_ms)))
        goto out_nomem;
    if (body && checkpoint && json_object_set(body, "checkpoint", checkpoint) < 0)
        goto out_nomem;
    rc = call(c, "POST", body, &answer, "/v1/jobs/", id, "/heartbeat");
    take_cancel(answer, cancel_requested);
    return rc;

out_nomem:
    json_decref(body);
    set_error(c, "out_of_memory", "out of memory");
    return JOBQ_CLIENT_ENOMEM;
}

int jobq_client_progress(jobq_client *c, const char *id, const char *lease, double percent,
                         const char *stage, json_t *extra, int *cancel_requested)
{
    json_t *body = with_lease(lease), *answer = NULL;
    int rc = JOBQ_CLIENT_ENOMEM;

    if (cancel_requested)
        *cancel_requested = 0;
    clear_error(c);
    if (body && extra && json_object_update(body, extra) < 0)
        goto out_body;
    if (body && json_object_set_new(body, "percent", json_real(percent)) < 0)
        goto out_body;
    if (body && stage && (rc = put_string(c, body, "stage", stage)) < 0)
        goto out_body;
    rc = call(c, "POST", body, &answer, "/v1/jobs/", id, "/progress");
    take_cancel(answer, cancel_requested);
    return rc;

out_body:
    if (rc == JOBQ_CLIENT_ENOMEM)
        set_error(c, "out_of_memory", "out of memory");
    json_decref(body);
    return rc;
}

int jobq_client_complete(jobq_client *c, const char *id, const char *lease, json_t *result)
{
    json_t *body = with_lease(lease);

    if (body && result && json_object_set(body, "result", result) < 0) {
        json_decref(body);
        set_error(c, "out_of_memory", "out of memory");
        return JOBQ_CLIENT_ENOMEM;
    }
    return call(c, "POST", body, NULL, "/v1/jobs/", id, "/complete");
}

int jobq_client_fail(jobq_client *c, const char *id, const char *lease, const char *message,
                     const char *type, int retryable, json_t *details)
{
    json_t *body = with_lease(lease), *err = json_object();
    int rc = JOBQ_CLIENT_ENOMEM;

    clear_error(c);
    if (!body || !err)
        goto out_err;
    if ((rc = put_string(c, err, "message", message ? message : "")) < 0)
        goto out_err;
    if (type && (rc = put_string(c, err, "type", type)) < 0)
        goto out_err;
    rc = JOBQ_CLIENT_ENOMEM;
    if (json_object_set_new(err, "retryable", json_boolean(retryable)) < 0)
        goto out_err;
    if (details && json_object_set(err, "details", details) < 0)
        goto out_err;
    if (json_object_set_new(body, "error", err) < 0) {
        err = NULL; /* set_new stole it even on failure */
        goto out_err;
    }
    return call(c, "POST", body, NULL, "/v1/jobs/", id, "/fail");

out_err:
    if (rc == JOBQ_CLIENT_ENOMEM)
        set_error(c, "out_of_memory", "out of memory");
    json_decref(err);
    json_decref(body);
    return rc;
}

int jobq_client_logs(jobq_client *c, const char *id, const char *lease, json_t *lines)
{
    json_t *body = with_lease(lease);

    if (body && json_object_set(body, "lines", lines) < 0) {
        json_decref(body);
        set_error(c, "out_of_memory", "out of memory");
        return JOBQ_CLIENT_ENOMEM;
    }
    return call(c, "POST", body, NULL, "/v1/jobs/", id, "/logs");
}
