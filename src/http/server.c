/*
 * server.c — libmicrohttpd driven from the libuv loop: requests in, routed, answered.
 *
 * MHD runs without threads of its own, in external-epoll mode: a uv_poll on MHD's epoll fd
 * and a uv_timer for MHD's timeouts call MHD_run(), and a uv_prepare runs it once more
 * before the loop blocks whenever a parked request was resumed (from the loop thread MHD
 * does not signal its own wake-up channel, so nothing else would run it). Per request there
 * is one jobq_req, created in MHD's URI callback (which sees the raw, still percent-encoded path)
 * and given back in MHD's completion callback. The body is collected (bounded by max_body) and the
 * route's handler runs once, on MHD's final call. Its answer is queued on that call, or, if it
 * parked the request, the connection is suspended and the answer resumes it later.
 *
 * Life of a jobq_req: refs = 1 for MHD (dropped in on_completed) + 1 while the disconnect
 * watch of a parked request is open (dropped in its close callback). Only at 0 is it freed;
 * the jobq_http itself is freed once its own handles are closed and no jobq_req is left.
 *
 * What it never does: parse JSON bodies, decide API status codes other than the transport
 * errors (400 framing, 404, 405, 413), or call MHD from another thread.
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <assert.h>
#include <glib.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/router.h"
#include "util/err.h"

#define DEFAULT_MAX_BODY (1024 * 1024)
#define DEFAULT_MAX_CONNECTIONS 10000
#define DEFAULT_IDLE_TIMEOUT_S 60
#define SMALL_BODY 512 /* bytes kept inside the request: most JSON bodies fit */

enum rq_state {
    RQ_NEW,     /* URI seen; the access handler has not run yet */
    RQ_BODY,    /* headers checked, body being collected */
    RQ_HANDLER, /* inside the route's handler */
    RQ_PARKED,  /* connection suspended, waiting for an answer */
    RQ_WAKING,  /* answered while parked; resumed, MHD will call us to queue the answer */
    RQ_DONE,    /* answer queued */
    RQ_GONE,    /* client left while parked; on_gone has run */
};

/* Framing problems found on the first call (answered at once, which makes MHD close). */
enum { FRAME_OK, FRAME_BAD_LENGTH, FRAME_BAD_ENCODING };

typedef struct hdr {
    struct hdr *next;
    char *value; /* points into the same allocation, after name */
    char name[];
} hdr;

struct jobq_http {
    uv_loop_t *loop; /* borrowed */
    jobq_router *router;
    void *app;                 /* borrowed, for handlers */
    int (*gate)(jobq_req *rq); /* may answer a request before its handler runs */
    size_t max_body;           /* bytes */
    unsigned max_connections;
    unsigned idle_timeout_s;
    struct MHD_Daemon *d;     /* NULL until listening */
    struct MHD_Response *oom; /* shared 503 for when a request cannot be allocated */
    uv_poll_t io;             /* MHD's epoll fd */
    uv_timer_t timer;         /* MHD's next timeout; 0 ms after a resume */
    uv_prepare_t prepare;     /* runs MHD before the loop blocks when `dirty` */
    int handles_open;         /* of io, timer, prepare: not yet closed */
    size_t nreq;              /* jobq_req structs allocated and not yet freed */
    size_t pending;           /* requests fully received (or refused early) whose answer
                               * has not been sent: see count() */
    size_t parked;            /* requests whose connection is suspended */
    jobq_req *parked_head;    /* list of those */
    unsigned dirty : 1;       /* a connection was resumed: MHD_run before blocking */
    unsigned quiesced : 1;
    unsigned kick : 1;    /* draining and pending just reached 0: turn the loop once
                           * more so a uv_check watching jobq_http_pending sees it */
    unsigned freeing : 1; /* jobq_http_free ran; free when the last thing closes */
    unsigned quiet : 1;   /* we are closing a gone client's connection: MHD's log
                           * line about it is expected, not an error */
};

struct jobq_req {
    jobq_http *h;
    struct MHD_Connection *conn; /* NULL once MHD has completed the request */
    const char *method;          /* borrowed from MHD; NULL before the first call */
    const jobq_route *route;     /* NULL when the request is answered with an error */
    int route_err;               /* JOBQ_ROUTE_* when route is NULL */
    enum rq_state state;
    int refs;
    unsigned status;           /* of resp */
    struct MHD_Response *resp; /* the answer, built but not queued yet */
    unsigned resp_shared : 1;  /* resp is h->oom: never destroyed here */
    unsigned park_asked : 1;   /* the handler called jobq_req_park */
    unsigned hup_open : 1;     /* the disconnect watch is initialised and not closed */
    unsigned too_large : 1;    /* chunked body went past max_body: rest discarded */
    unsigned discard : 1;      /* body not needed (error answer) or no memory for it */
    unsigned no_mem : 1;       /* body buffer could not grow: answer 503 */
    unsigned counted : 1;      /* included in h->pending */
    unsigned stream_wait : 1;  /* a stream with nothing to send: suspended, in parked list */
    unsigned stream_gone : 1;  /* the streaming client left: end the body with an error */
    unsigned upgraded : 1;     /* answered 101: on_upgrade owns the socket */
    long (*stream_read)(void *ud, char *buf, size_t max);
    void (*stream_end)(void *ud); /* also the upgrade's "never happened" */
    void (*on_upgrade)(void *ud, int fd, const char *extra, size_t extra_len, jobq_upgraded *u);
    void *stream_ud;
    hdr *hdrs;                 /* extra answer headers, in the order added */
    void *data;                /* jobq_req_set_data */
    void (*data_free)(void *);
    void (*on_gone)(jobq_req *rq, void *ud);
    void *gone_ud;
    jobq_answer_hook hook; /* jobq_req_hook_answer: takes the next answer */
    void *hook_ud;
    jobq_req *prev, *next; /* in h->parked_head while parked */
    uv_poll_t hup;         /* UV_DISCONNECT watch of a parked request */
    char *body;            /* small, or malloc'd when larger; NUL-terminated */
    size_t body_len;       /* bytes */
    size_t body_cap;       /* bytes */
    const char *params[JOBQ_ROUTER_MAX_PARAMS];
    int nparams;
    size_t path_len; /* bytes */
    char *path;      /* raw path, NUL-terminated, in tail */
    char *scratch;   /* decoded parameters, in tail after path */
    char small[SMALL_BODY];
    char tail[];
};

static void service(jobq_http *h);
static void on_timer(uv_timer_t *t);

/* ---------------------------------------------------------------- lifetime ---------- */

static void maybe_free_http(jobq_http *h)
{
    if (h->freeing && h->handles_open == 0 && h->nreq == 0)
        free(h);
}

static void rq_unref(jobq_req *rq)
{
    jobq_http *h = rq->h;

    assert(rq->refs > 0);
    if (--rq->refs > 0)
        return;
    free(rq);
    h->nreq--;
    maybe_free_http(h);
}

static void on_hup_closed(uv_handle_t *handle)
{
    rq_unref(handle->data);
}

/* Closes the disconnect watch. Must happen while MHD still has the socket open, i.e.
 * before resuming the connection: a watcher left on a closed (and reused) fd is a bug. */
static void hup_close(jobq_req *rq)
{
    if (!rq->hup_open)
        return;
    rq->hup_open = 0;
    uv_close((uv_handle_t *)&rq->hup, on_hup_closed);
}

static void parked_unlink(jobq_req *rq)
{
    jobq_http *h = rq->h;

    if (rq->prev)
        rq->prev->next = rq->next;
    else
        h->parked_head = rq->next;
    if (rq->next)
        rq->next->prev = rq->prev;
    rq->prev = rq->next = NULL;
    h->parked--;
}

/* Resumes a parked connection and makes sure MHD runs before the loop next blocks: the
 * prepare hook sees `dirty`, and the 0 ms timer covers a resume from a callback that runs
 * after the prepare phase (a later prepare or check handle). */
static void wake(jobq_req *rq)
{
    jobq_http *h = rq->h;

    hup_close(rq);
    parked_unlink(rq);
    MHD_resume_connection(rq->conn);
    h->dirty = 1;
    uv_timer_start(&h->timer, on_timer, 0, 0);
}

static void release_answer(jobq_req *rq)
{
    if (rq->resp && !rq->resp_shared)
        MHD_destroy_response(rq->resp);
    rq->resp = NULL;
    rq->resp_shared = 0;
}

static void free_hdrs(jobq_req *rq)
{
    while (rq->hdrs) {
        hdr *next = rq->hdrs->next;

        free(rq->hdrs);
        rq->hdrs = next;
    }
}

/* MHD is done with the request (answered, failed, or the daemon stops). */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    jobq_http *h = cls;
    jobq_req *rq = *con_cls;

    (void)c;
    (void)toe;
    if (!rq)
        return;
    *con_cls = NULL;
    if (rq->hook) { /* never answered: the client left while it was parked */
        jobq_answer_hook fn = rq->hook;
        rq->hook = NULL;
        fn(rq, 0, NULL, 0, rq->hook_ud);
    }
    if (rq->counted && --h->pending == 0 && h->quiesced)
        h->kick = 1;
    h->quiet = 0;
    /* MHD completes no suspended connection; jobq_http_free resumes them before stopping */
    assert(rq->state != RQ_PARKED && !rq->stream_wait);
    hup_close(rq); /* a stream's watch, kept between waits; MHD has not closed the fd yet */
    if (rq->stream_end && !rq->upgraded) {
        void (*end)(void *ud) = rq->stream_end;

        rq->stream_end = NULL;
        end(rq->stream_ud);
    }
    release_answer(rq);
    free_hdrs(rq);
    if (rq->data_free)
        rq->data_free(rq->data);
    rq->data = NULL;
    rq->data_free = NULL;
    if (rq->body != rq->small)
        free(rq->body);
    rq->body = NULL;
    rq->conn = NULL;
    rq_unref(rq);
}

/* MHD's URI callback: runs once per request, before MHD splits off and decodes the query
 * and decodes the path. We keep the raw path so that "%2F" inside a parameter cannot split
 * it. The return value becomes the request's *con_cls. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    jobq_http *h = cls;
    const char *p = uri ? uri : "";
    size_t len;
    jobq_req *rq;

    if (p[0] != '/' && strstr(p, "://")) {
        /* absolute-form "http://host/path?q": the path starts after the authority, and an
         * empty one means "/" */
        p = strstr(p, "://") + 3;
        p += strcspn(p, "/?#");
        if (*p != '/')
            p = "/";
    }
    len = strcspn(p, "?#");
    rq = malloc(sizeof(*rq) + 2 * (len + 1));
    if (!rq)
        return NULL; /* the access handler answers 503 */
    memset(rq, 0, sizeof(*rq));
    rq->h = h;
    rq->conn = c;
    rq->refs = 1;
    rq->state = RQ_NEW;
    rq->body = rq->small;
    rq->body_cap = sizeof(rq->small);
    rq->path = rq->tail;
    rq->scratch = rq->tail + len + 1; /* as long as the path: decoding only shrinks */
    rq->path_len = len;
    memcpy(rq->path, p, len);
    rq->path[len] = '\0';
    h->nreq++;
    return rq;
}

/* ---------------------------------------------------------------- answers ----------- */

/* Adds the headers every answer gets, then stores it on the request; a parked request is
 * resumed. `r` NULL means creating it failed: the shared 503 goes out instead. */
static void set_answer(jobq_req *rq, unsigned status, struct MHD_Response *r, int has_body)
{
    jobq_http *h = rq->h;

    if (rq->resp || (rq->state != RQ_HANDLER && rq->state != RQ_PARKED && rq->state != RQ_BODY)) {
        fprintf(stderr, "jobqd: http: %s %s answered twice or after it ended; ignored\n",
                rq->method ? rq->method : "?", rq->path);
        if (r)
            MHD_destroy_response(r);
        free_hdrs(rq);
        return;
    }
    if (r) {
        int typed = 0; /* a handler that gives its own Content-Type (/metrics) keeps it */
        for (const hdr *x = rq->hdrs; x; x = x->next) {
            MHD_add_response_header(r, x->name, x->value);
            typed |= strcasecmp(x->name, MHD_HTTP_HEADER_CONTENT_TYPE) == 0;
        }
        if (has_body && !typed)
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        /* Draining: tell keep-alive clients to go elsewhere after this answer. */
        if (h->quiesced)
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
        rq->resp = r;
        rq->status = status;
    } else {
        rq->resp = h->oom;
        rq->resp_shared = 1;
        rq->status = MHD_HTTP_SERVICE_UNAVAILABLE;
    }
    free_hdrs(rq);
    if (rq->state == RQ_PARKED) {
        rq->state = RQ_WAKING;
        wake(rq);
    }
}

/* A request counts as pending from the moment it is fully received (or refused early)
 * until MHD reports its answer sent. Not from its first byte: MHD 0.9.75 in epoll mode can
 * miss a client's FIN that arrives together with request bytes (a short read clears its
 * read-ready flag), leaving a half-received request to the idle timeout; such requests
 * must not hold up a shutdown drain. */
static void count(jobq_req *rq)
{
    rq->counted = 1;
    rq->h->pending++;
}

/* Queues the stored answer on MHD (inside the access handler only). */
static enum MHD_Result queue_answer(jobq_req *rq)
{
    enum MHD_Result ret = MHD_queue_response(rq->conn, rq->status, rq->resp);

    release_answer(rq);
    rq->state = RQ_DONE;
    return ret;
}

void jobq_req_add_header(jobq_req *rq, const char *name, const char *value)
{
    size_t nl = strlen(name);
    size_t vl = strlen(value);
    hdr *x = malloc(sizeof(*x) + nl + 1 + vl + 1);
    hdr **tail;

    if (!x)
        return; /* the answer goes out without it; nothing better to do */
    memcpy(x->name, name, nl + 1);
    x->value = x->name + nl + 1;
    memcpy(x->value, value, vl + 1);
    x->next = NULL;
    for (tail = &rq->hdrs; *tail; tail = &(*tail)->next)
        ;
    *tail = x;
}

void jobq_req_hook_answer(jobq_req *rq, jobq_answer_hook fn, void *ud)
{
    rq->hook = fn;
    rq->hook_ud = ud;
}

/* Hands an answer to the request's hook, if it has one and may still be answered. 1 when
 * the hook took it. A parked request loses its disconnect watch: its owner is done with it,
 * and the hook's wait is short (a commit). */
static int hooked(jobq_req *rq, unsigned status, const char *body, size_t len)
{
    jobq_answer_hook fn = rq->hook;

    if (!fn || rq->resp || (rq->state != RQ_HANDLER && rq->state != RQ_PARKED))
        return 0;
    rq->hook = NULL;
    if (rq->state == RQ_PARKED)
        hup_close(rq);
    rq->on_gone = NULL;
    fn(rq, status, body, len, rq->hook_ud);
    return 1;
}

void jobq_req_reply(jobq_req *rq, unsigned status, const char *body, size_t len)
{
    struct MHD_Response *r;

    if (hooked(rq, status, body, len))
        return;
    r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    set_answer(rq, status, r, 1);
}

/* The body is released with free() (MHD_RESPMEM_MUST_FREE). That is also right for g_malloc
 * memory: since GLib 2.46 g_malloc is always the system malloc. */
void jobq_req_reply_take(jobq_req *rq, unsigned status, char *body, size_t len)
{
    struct MHD_Response *r;

    if (hooked(rq, status, body, len)) {
        free(body);
        return;
    }
    r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);

    if (!r)
        free(body);
    set_answer(rq, status, r, 1);
}

void jobq_req_reply_empty(jobq_req *rq, unsigned status)
{
    if (hooked(rq, status, NULL, 0))
        return;
    set_answer(rq, status, MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT), 0);
}

/* Appends s as the inside of a JSON string: quote, backslash and control characters are
 * escaped (\n, \t, … or \u00XX), and bytes that are not UTF-8 become U+FFFD, so a message
 * that quotes client input is always valid JSON. */
static void json_escape(GString *out, const char *s)
{
    const char *p = s;

    while (*p) {
        unsigned char ch = (unsigned char)*p;

        if (ch >= 0x80) {
            gunichar u = g_utf8_get_char_validated(p, -1);

            if (u == (gunichar)-1 || u == (gunichar)-2) {
                g_string_append(out, "\\ufffd");
                p++;
            } else {
                const char *next = g_utf8_next_char(p);

                g_string_append_len(out, p, next - p);
                p = next;
            }
            continue;
        }
        switch (ch) {
        case '"':
            g_string_append(out, "\\\"");
            break;
        case '\\':
            g_string_append(out, "\\\\");
            break;
        case '\n':
            g_string_append(out, "\\n");
            break;
        case '\r':
            g_string_append(out, "\\r");
            break;
        case '\t':
            g_string_append(out, "\\t");
            break;
        case '\b':
            g_string_append(out, "\\b");
            break;
        case '\f':
            g_string_append(out, "\\f");
            break;
        default:
            if (ch < 0x20 || ch == 0x7f)
                g_string_append_printf(out, "\\u%04x", ch);
            else
                g_string_append_c(out, (char)ch);
        }
        p++;
    }
}

void jobq_req_error(jobq_req *rq, unsigned status, const char *code, const char *message,
                    const char *details_json)
{
    GString *b = g_string_sized_new(96 + (message ? strlen(message) : 0));
    size_t len;

    g_string_append(b, "{\"error\":{\"code\":\"");
    json_escape(b, code ? code : "internal");
    g_string_append(b, "\",\"message\":\"");
    json_escape(b, message ? message : "");
    g_string_append_c(b, '"');
    if (details_json) {
        g_string_append(b, ",\"details\":");
        g_string_append(b, details_json);
    }
    g_string_append(b, "}}");
    len = b->len;
    jobq_req_reply_take(rq, status, g_string_free(b, FALSE), len);
}

/* ---------------------------------------------------------------- requests ---------- */

void *jobq_req_app(const jobq_req *rq)
{
    return rq->h->app;
}

const char *jobq_req_method(const jobq_req *rq)
{
    return rq->method ? rq->method : "";
}

const char *jobq_req_path(const jobq_req *rq)
{
    return rq->path;
}

const char *jobq_req_param(const jobq_req *rq, int i)
{
    return i >= 0 && i < rq->nparams ? rq->params[i] : NULL;
}

const char *jobq_req_query(const jobq_req *rq, const char *name)
{
    const char *v = NULL;
    size_t vlen = 0;

    if (!rq->conn || MHD_lookup_connection_value_n(rq->conn, MHD_GET_ARGUMENT_KIND, name,
                                                   strlen(name), &v, &vlen) != MHD_YES)
        return NULL;
    return v ? v : ""; /* MHD gives NULL for a bare "?x" */
}

const char *jobq_req_header(const jobq_req *rq, const char *name)
{
    return rq->conn ? MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name) : NULL;
}

typedef struct query_iter {
    int (*fn)(void *ud, const char *k, const char *v);
    void *ud;
} query_iter;

static enum MHD_Result query_step(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    query_iter *it = cls;

    (void)kind;
    return it->fn(it->ud, key, value ? value : "") ? MHD_NO : MHD_YES;
}

void jobq_req_query_each(const jobq_req *rq, int (*fn)(void *ud, const char *k, const char *v),
                         void *ud)
{
    query_iter it = {fn, ud};

    if (rq->conn)
        MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, query_step, &it);
}

const char *jobq_req_body(const jobq_req *rq, size_t *len)
{
    if (len)
        *len = rq->body_len;
    return rq->body ? rq->body : "";
}

void jobq_req_set_data(jobq_req *rq, void *data, void (*free_fn)(void *))
{
    if (rq->data_free && rq->data != data)
        rq->data_free(rq->data);
    rq->data = data;
    rq->data_free = free_fn;
}

void *jobq_req_data(const jobq_req *rq)
{
    return rq->data;
}

void jobq_req_park(jobq_req *rq, void (*on_gone)(jobq_req *rq, void *ud), void *ud)
{
    if (rq->state != RQ_HANDLER) {
        fprintf(stderr, "jobqd: http: %s %s: park outside its handler; ignored\n",
                jobq_req_method(rq), rq->path);
        return;
    }
    rq->park_asked = 1;
    rq->on_gone = on_gone;
    rq->gone_ud = ud;
}

int jobq_req_parked(const jobq_req *rq)
{
    return rq->park_asked && !rq->resp && (rq->state == RQ_HANDLER || rq->state == RQ_PARKED);
}

static void h_quiet(jobq_req *rq)
{
    rq->h->quiet = 1; /* MHD's line about the closed stream is expected */
}

/* ---------------------------------------------------------------- streams ---------- */

static void watch_hup(jobq_req *rq);
static void on_hup(uv_poll_t *p, int status, int events);

/* MHD's content reader: what the owner has, or a wait until it has more. */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    jobq_req *rq = cls;
    jobq_http *h = rq->h;
    long n;

    (void)pos;
    if (rq->stream_gone || !rq->stream_read)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    n = rq->stream_read(rq->stream_ud, buf, max);
    if (n > 0)
        return (ssize_t)n;
    if (n < 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    /* nothing now: suspend; MHD stops polling the socket, so watch it for a hang-up. The
     * watch is kept (stopped) between waits: a stream waits and resumes many times a second,
     * and a handle cannot be initialised again before its close has completed. */
    MHD_suspend_connection(rq->conn);
    rq->stream_wait = 1;
    rq->next = h->parked_head;
    if (h->parked_head)
        h->parked_head->prev = rq;
    h->parked_head = rq;
    h->parked++;
    if (!rq->hup_open)
        watch_hup(rq);
    else
        uv_poll_start(&rq->hup, UV_DISCONNECT, on_hup);
    return 0;
}

/* Resumes a waiting stream; its hang-up watch is stopped, not closed. */
static void stream_resume(jobq_req *rq)
{
    jobq_http *h = rq->h;

    rq->stream_wait = 0;
    if (rq->hup_open)
        uv_poll_stop(&rq->hup);
    parked_unlink(rq);
    MHD_resume_connection(rq->conn);
    h->dirty = 1;
    uv_timer_start(&h->timer, on_timer, 0, 0);
}

void jobq_req_reply_stream(jobq_req *rq, unsigned status, const char *content_type,
                           long (*read)(void *ud, char *buf, size_t max),
                           void (*on_end)(void *ud), void *ud)
{
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, stream_reader, rq, NULL);

    if (r) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    }
    rq->stream_read = read;
    rq->stream_end = on_end; /* without r the shared 503 goes out; on_end runs after it */
    rq->stream_ud = ud;
    set_answer(rq, status, r, 0);
}

void jobq_req_stream_wake(jobq_req *rq)
{
    if (rq->stream_wait)
        stream_resume(rq);
}

/* ---------------------------------------------------------------- upgrades ---------- */

struct jobq_upgraded {
    jobq_http *h;
    struct MHD_UpgradeResponseHandle *urh;
};

static void on_upgraded(void *cls, struct MHD_Connection *c, void *con_cls, const char *extra,
                        size_t extra_len, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    jobq_req *rq = cls;
    jobq_upgraded *u = malloc(sizeof(*u));

    (void)c;
    (void)con_cls;
    rq->upgraded = 1;
    if (!u) {
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        rq->on_upgrade(rq->stream_ud, -1, NULL, 0, NULL);
        return;
    }
    u->h = rq->h;
    u->urh = urh;
    rq->on_upgrade(rq->stream_ud, sock, extra, extra_len, u);
}

void jobq_req_reply_upgrade(jobq_req *rq, const char *proto,
                            void (*on_upgrade)(void *ud, int fd, const char *extra,
                                               size_t extra_len, jobq_upgraded *u),
                            void (*on_end)(void *ud), void *ud)
{
    struct MHD_Response *r = MHD_create_response_for_upgrade(on_upgraded, rq);

    if (r)
        MHD_add_response_header(r, MHD_HTTP_HEADER_UPGRADE, proto);
    rq->on_upgrade = on_upgrade;
    rq->stream_end = on_end; /* without r the shared 503 goes out; on_end runs after it */
    rq->stream_ud = ud;
    set_answer(rq, MHD_HTTP_SWITCHING_PROTOCOLS, r, 0);
}

/* MHD cleans the connection up (and completes its request) in its next run: make sure
 * there is one soon, as after a resume. */
void jobq_http_upgraded_close(jobq_upgraded *u)
{
    jobq_http *h = u->h;

    MHD_upgrade_action(u->urh, MHD_UPGRADE_ACTION_CLOSE);
    free(u);
    h->dirty = 1;
    uv_timer_start(&h->timer, on_timer, 0, 0);
}

/* The parked client's socket hung up (or failed): close the watch first, tell the owner,
 * then resume so that MHD sees the dead connection and completes the request. */
static void on_hup(uv_poll_t *p, int status, int events)
{
    jobq_req *rq = p->data;

    (void)status;
    (void)events;
    if (rq->stream_wait) { /* a streaming client left while it had nothing to read */
        rq->stream_gone = 1;
        h_quiet(rq);
        stream_resume(rq);
        return;
    }
    if (rq->state != RQ_PARKED)
        return;
    hup_close(rq);
    rq->state = RQ_GONE;
    if (rq->on_gone)
        rq->on_gone(rq, rq->gone_ud);
    wake(rq);
}

/* Watches a parked client's socket for a hang-up. Without the watch (it failed) the request
 * still works; only a client that leaves goes unnoticed until the answer is sent. */
static void watch_hup(jobq_req *rq)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(rq->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    int err = UV_EBADF;

    if (ci)
        err = uv_poll_init_socket(rq->h->loop, &rq->hup, ci->connect_fd);
    if (err)
        goto out_fail;
    rq->hup.data = rq;
    rq->hup_open = 1;
    rq->refs++;
    /* UV_DISCONNECT only: UV_READABLE would fire (and spin) on pipelined requests. */
    err = uv_poll_start(&rq->hup, UV_DISCONNECT, on_hup);
    if (err)
        goto out_close;
    return;

out_close:
    hup_close(rq);
out_fail:
    fprintf(stderr, "jobqd: http: cannot watch a parked client: %s\n", uv_strerror(err));
}

/* Suspends the connection of a request its handler parked, and watches for the client
 * leaving when the owner wants to know. */
static void park(jobq_req *rq)
{
    jobq_http *h = rq->h;

    MHD_suspend_connection(rq->conn);
    rq->state = RQ_PARKED;
    rq->next = h->parked_head;
    if (h->parked_head)
        h->parked_head->prev = rq;
    h->parked_head = rq;
    h->parked++;
    if (rq->on_gone)
        watch_hup(rq);
}

static void route_error(jobq_req *rq)
{
    char allow[128];

    switch (rq->route_err) {
    case JOBQ_ROUTE_BAD_METHOD:
        jobq_router_allow(rq->h->router, rq->path, rq->path_len, allow, sizeof(allow));
        jobq_req_add_header(rq, MHD_HTTP_HEADER_ALLOW, allow);
        jobq_req_error(rq, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                       "method not allowed on this path", NULL);
        break;
    case JOBQ_ROUTE_BAD_PATH:
        jobq_req_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_argument",
                       "malformed percent-escape in the path", NULL);
        break;
    default:
        jobq_req_error(rq, MHD_HTTP_NOT_FOUND, "not_found",
                       "no such path (the routes are listed in docs/api.md)", NULL);
    }
}

/* The server's gate, if any, answered rq: its handler must not run. */
static int h_gate(jobq_req *rq)
{
    return rq->h->gate && rq->h->gate(rq);
}

void jobq_http_set_gate(jobq_http *h, int (*gate)(jobq_req *rq))
{
    h->gate = gate;
}

/* The body is complete: answer a transport error, or run the handler and queue its answer
 * or park the request. */
static enum MHD_Result dispatch(jobq_req *rq)
{
    char big[64];

    count(rq);
    if (!rq->route) {
        route_error(rq);
    } else if (rq->too_large) {
        snprintf(big, sizeof(big), "body over %zu bytes", rq->h->max_body);
        jobq_req_error(rq, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large", big, NULL);
    } else if (rq->no_mem) {
        jobq_req_error(rq, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "out of memory", NULL);
    } else {
        rq->body[rq->body_len] = '\0';
        rq->state = RQ_HANDLER;
        if (!h_gate(rq))
            rq->route->fn(rq);
        if (!rq->resp && rq->park_asked) {
            park(rq);
            return MHD_YES;
        }
        if (!rq->resp) {
            fprintf(stderr, "jobqd: http: %s %s: handler neither answered nor parked\n", rq->method,
                    rq->path);
            jobq_req_error(rq, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
                           "the handler did not answer", NULL);
        }
    }
    return queue_answer(rq);
}

/* Makes room for `need` body bytes plus the NUL. 0, or -1 when out of memory. */
static int body_reserve(jobq_req *rq, size_t need)
{
    size_t cap;
    char *nb;

    if (need + 1 <= rq->body_cap)
        return 0;
    cap = rq->body_cap * 2;
    if (cap < need + 1)
        cap = need + 1;
    if (cap > rq->h->max_body + 1)
        cap = rq->h->max_body + 1;
    if (rq->body == rq->small) {
        nb = malloc(cap);
        if (nb)
            memcpy(nb, rq->small, rq->body_len);
    } else {
        nb = realloc(rq->body, cap);
    }
    if (!nb)
        return -1;
    rq->body = nb;
    rq->body_cap = cap;
    return 0;
}

static void body_drop(jobq_req *rq)
{
    if (rq->body != rq->small)
        free(rq->body);
    rq->body = rq->small;
    rq->body_cap = sizeof(rq->small);
    rq->body_len = 0;
}

static void body_append(jobq_req *rq, const char *data, size_t n)
{
    if (rq->discard || rq->too_large)
        return;
    if (n > rq->h->max_body - rq->body_len) {
        /* chunked upload past the limit: keep reading, keep nothing, answer 413 at the end */
        rq->too_large = 1;
        body_drop(rq);
        return;
    }
    if (body_reserve(rq, rq->body_len + n) != 0) {
        rq->no_mem = 1;
        rq->discard = 1;
        body_drop(rq);
        return;
    }
    memcpy(rq->body + rq->body_len, data, n);
    rq->body_len += n;
}

typedef struct clen_check {
    int count;
    int bad;
    uint64_t value;
} clen_check;

/* Plain decimal digits, nothing else (no sign, no list, no blanks inside). */
static int parse_clen(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

static enum MHD_Result clen_step(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    clen_check *cc = cls;
    uint64_t v;

    (void)kind;
    if (g_ascii_strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) != 0)
        return MHD_YES;
    if (!value || parse_clen(value, &v) != 0 || (cc->count > 0 && v != cc->value)) {
        cc->bad = 1;
        return MHD_NO;
    }
    cc->value = v;
    cc->count++;
    return MHD_YES;
}

/* Checks the body framing headers MHD lets through: every Content-Length a plain decimal
 * and all equal (MHD reads only the first of several), and no Transfer-Encoding other than
 * "chunked" nor one together with a Content-Length (request smuggling). */
static int check_framing(struct MHD_Connection *c, uint64_t *clen, int *has_clen)
{
    const char *te =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    clen_check cc = {0, 0, 0};

    *has_clen = 0;
    if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
        MHD_get_connection_values(c, MHD_HEADER_KIND, clen_step, &cc);
        if (cc.bad || te)
            return FRAME_BAD_LENGTH;
        *has_clen = 1;
        *clen = cc.value;
    }
    if (te && g_ascii_strcasecmp(te, "chunked") != 0)
        return FRAME_BAD_ENCODING;
    return FRAME_OK;
}

/* First call: headers are in. Only framing errors and a declared body over the limit are
 * answered now (MHD then closes the connection, which is what we want for those); any
 * other answer waits for the final call, since an answer on this call costs keep-alive. */
static enum MHD_Result first_call(jobq_req *rq, const char *method)
{
    jobq_http *h = rq->h;
    uint64_t clen = 0;
    int has_clen;
    int frame;
    char msg[64];

    rq->method = method;
    rq->state = RQ_BODY;
    frame = check_framing(rq->conn, &clen, &has_clen);
    if (frame != FRAME_OK || (has_clen && clen > h->max_body))
        count(rq);
    if (frame == FRAME_BAD_LENGTH) {
        jobq_req_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_argument",
                       "Content-Length must be one plain decimal number", NULL);
        return queue_answer(rq);
    }
    if (frame == FRAME_BAD_ENCODING) {
        jobq_req_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_argument",
                       "only chunked Transfer-Encoding is supported", NULL);
        return queue_answer(rq);
    }
    if (has_clen && clen > h->max_body) {
        snprintf(msg, sizeof(msg), "body over %zu bytes", h->max_body);
        jobq_req_error(rq, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large", msg, NULL);
        return queue_answer(rq);
    }
    rq->route_err = jobq_router_match(h->router, method, rq->path, rq->path_len, rq->scratch,
                                      &rq->route, rq->params, &rq->nparams);
    if (rq->route_err != JOBQ_ROUTE_FOUND) {
        rq->route = NULL;
        rq->discard = 1;
    } else if (has_clen && body_reserve(rq, (size_t)clen) != 0) {
        rq->no_mem = 1;
        rq->discard = 1;
    }
    return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    jobq_http *h = cls;
    jobq_req *rq = *con_cls;

    (void)url; /* decoded by MHD; routing uses the raw path kept by on_uri */
    (void)version;
    if (!rq)
        return MHD_queue_response(c, MHD_HTTP_SERVICE_UNAVAILABLE, h->oom);
    switch (rq->state) {
    case RQ_NEW:
        return first_call(rq, method);
    case RQ_BODY:
        if (*upload_size) {
            body_append(rq, upload, *upload_size);
            *upload_size = 0;
            return MHD_YES;
        }
        return dispatch(rq);
    case RQ_WAKING:
        return queue_answer(rq);
    case RQ_GONE:
        /* Close: the client is gone. MHD logs this as an application error just before it
         * completes the request; a client leaving a long poll is routine, so skip that. */
        h->quiet = 1;
        return MHD_NO;
    default:
        /* no call is expected in the other states; drop what MHD offers */
        *upload_size = 0;
        return MHD_YES;
    }
}

/* ---------------------------------------------------------------- the loop ---------- */

static void service(jobq_http *h)
{
    MHD_UNSIGNED_LONG_LONG to = 0;

    h->dirty = 0;
    MHD_run(h->d);
    /* A handler may have answered a parked request during MHD_run: MHD picks the resumed
     * connection up only on its next run, so run again at once (likewise for a kick). */
    if (h->dirty || h->kick) {
        h->kick = 0;
        to = 0;
    } else if (MHD_get_timeout(h->d, &to) != MHD_YES) {
        uv_timer_stop(&h->timer);
        return;
    }
    uv_timer_start(&h->timer, on_timer, to, 0);
}

static void on_io(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    service(p->data);
}

static void on_timer(uv_timer_t *t)
{
    service(t->data);
}

static void on_prepare(uv_prepare_t *p)
{
    jobq_http *h = p->data;

    if (h->dirty)
        service(h);
}

static void on_handle_closed(uv_handle_t *handle)
{
    jobq_http *h = handle->data;

    h->handles_open--;
    maybe_free_http(h);
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    jobq_http *h = cls;

    if (h->quiet)
        return;
    fputs("jobqd: http: ", stderr);
    vfprintf(stderr, fmt, ap);
}

/* ---------------------------------------------------------------- server ------------ */

static const char oom_body[] =
    "{\"error\":{\"code\":\"unavailable\",\"message\":\"out of memory\"}}";

jobq_http *jobq_http_new(uv_loop_t *loop, const jobq_http_config *cfg, const jobq_route *routes,
                         size_t nroutes, void *app)
{
    jobq_http *h = calloc(1, sizeof(*h));

    if (!h)
        goto out_fail;
    h->loop = loop;
    h->app = app;
    h->max_body = cfg && cfg->max_body ? cfg->max_body : DEFAULT_MAX_BODY;
    h->max_connections =
        cfg && cfg->max_connections ? cfg->max_connections : DEFAULT_MAX_CONNECTIONS;
    h->idle_timeout_s = cfg && cfg->idle_timeout_s ? cfg->idle_timeout_s : DEFAULT_IDLE_TIMEOUT_S;
    h->router = jobq_router_new(routes, nroutes);
    if (!h->router)
        goto out_free;
    h->oom = MHD_create_response_from_buffer(sizeof(oom_body) - 1, (void *)oom_body,
                                             MHD_RESPMEM_PERSISTENT);
    if (!h->oom || MHD_add_response_header(h->oom, MHD_HTTP_HEADER_CONTENT_TYPE,
                                           "application/json") != MHD_YES)
        goto out_router;
    return h;

out_router:
    if (h->oom)
        MHD_destroy_response(h->oom);
    jobq_router_free(h->router);
out_free:
    free(h);
out_fail:
    return NULL;
}

/* host: an IPv4 or IPv6 literal (brackets allowed), "localhost" (127.0.0.1), or NULL / ""
 * for every IPv4 address. 0 or JOBQ_EINVAL. */
static int make_addr(const char *host, int port, struct sockaddr_storage *ss, int *v6)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    char buf[INET6_ADDRSTRLEN + 2];
    size_t len;

    memset(ss, 0, sizeof(*ss));
    *v6 = 0;
    if (!host || !host[0])
        host = "0.0.0.0";
    else if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    len = strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        if (len - 2 >= sizeof(buf))
            return JOBQ_EINVAL;
        memcpy(buf, host + 1, len - 2);
        buf[len - 2] = '\0';
        host = buf;
    }
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *v6 = 1;
        return 0;
    }
    return JOBQ_EINVAL;
}

int jobq_http_listen(jobq_http *h, const char *host, int port, int *bound_port)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    const union MHD_DaemonInfo *info;
    unsigned flags =
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG;
    int v6;
    int err;

    if (h->d || port < 0 || port > 65535)
        return JOBQ_EINVAL;
    err = make_addr(host, port, &ss, &v6);
    if (err)
        return err;
    if (v6)
        flags |= MHD_USE_IPv6;
    /* the port is only for MHD's messages: MHD_OPTION_SOCK_ADDR decides */
    h->d = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, on_access, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_URI_LOG_CALLBACK, on_uri, h,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_CONNECTION_LIMIT,
        h->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, h->idle_timeout_s, MHD_OPTION_END);
    if (!h->d)
        return JOBQ_EIO;

    info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_LISTEN_FD);
    if (!info || getsockname(info->listen_fd, (struct sockaddr *)&ss, &sl) != 0)
        goto out_stop;
    if (bound_port)
        *bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                     : ((struct sockaddr_in *)&ss)->sin_port);
    info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info || uv_poll_init(h->loop, &h->io, info->epoll_fd) != 0)
        goto out_stop;
    uv_timer_init(h->loop, &h->timer);
    uv_prepare_init(h->loop, &h->prepare);
    h->io.data = h->timer.data = h->prepare.data = h;
    h->handles_open = 3;
    uv_poll_start(&h->io, UV_READABLE, on_io);
    uv_prepare_start(&h->prepare, on_prepare);
    /* The prepare hook alone must not keep the loop running; the poll does that. */
    uv_unref((uv_handle_t *)&h->prepare);
    service(h);
    return 0;

out_stop:
    MHD_stop_daemon(h->d);
    h->d = NULL;
    return JOBQ_EIO;
}

void jobq_http_quiesce(jobq_http *h)
{
    MHD_socket fd;

    if (!h || !h->d || h->quiesced)
        return;
    h->quiesced = 1;
    fd = MHD_quiesce_daemon(h->d);
    /* The listen socket is ours now; MHD_stop_daemon will not close it. */
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

size_t jobq_http_pending(const jobq_http *h)
{
    return h ? h->pending : 0;
}

void jobq_http_free(jobq_http *h)
{
    if (!h)
        return;
    /* MHD_stop_daemon with a suspended connection aborts the process. */
    assert(h->parked == 0 && "jobq_http_free with parked requests");
    if (h->d) {
        /* Without assertions: end them as if their clients had left. */
        while (h->parked_head) {
            jobq_req *rq = h->parked_head;

            if (rq->stream_wait) {
                rq->stream_gone = 1;
                stream_resume(rq);
                continue;
            }
            hup_close(rq);
            rq->state = RQ_GONE;
            if (rq->on_gone)
                rq->on_gone(rq, rq->gone_ud);
            wake(rq);
        }
        /* Stop watching the epoll fd before MHD closes it. */
        uv_close((uv_handle_t *)&h->io, on_handle_closed);
        uv_close((uv_handle_t *)&h->timer, on_handle_closed);
        uv_close((uv_handle_t *)&h->prepare, on_handle_closed);
        MHD_stop_daemon(h->d); /* completes every request still open */
        h->d = NULL;
    }
    MHD_destroy_response(h->oom);
    h->oom = NULL;
    jobq_router_free(h->router);
    h->router = NULL;
    h->freeing = 1;
    maybe_free_http(h);
}
