/*
 * stream.c — /v1/events: event subscribers over Server-Sent Events or WebSocket.
 *
 * A subscriber is a filter (queues, job, project, group, types) and an outgoing buffer. It
 * is registered as one publish sink of the bus for all of them: each published event is
 * framed once (SSE: "id: N\ndata: JSON\n\n") and copied to every subscriber it matches. An
 * SSE buffer is read by the HTTP server's content reader as the socket takes it; a
 * WebSocket subscriber's messages queue in wslay. SSE subscribers without a filter (the
 * firehose: dashboards, `jobq events`) share one stream instead: each event is framed into
 * a list of shared chunks once, and each of them keeps only its position in it, so ten
 * of them cost one copy, not ten. A subscriber more than `cap` bytes behind
 * (a client that does not read) gets no more events: one final `overflow` event, then its
 * stream ends. The engine never waits for anyone.
 *
 * Resuming: Last-Event-ID (SSE reconnects send it) or ?since=SEQ replays the ring's events
 * after SEQ. When events after SEQ have left the ring (or were published by an earlier
 * process), an explicit `gap` event comes first. Every 15 s an idle SSE stream gets a
 * comment line, so proxies keep it open and a vanished client is noticed.
 *
 * What it never does: touch the engine, or hold an event that is not durable.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/stream.h"
#include "api/ws.h"
#include "util/jsonw.h"

#define DEFAULT_CAP (8u << 20)
#define PING_MS 15000
#define FLUSH_MS 10 /* SSE output is handed to the sockets at most this often */
#define MAX_LIST 64    /* entries in a queues / types filter */
#define WS_MAX_MSG 4096 /* subscribers send nothing but closes and pings */

typedef struct filter {
    char **queues; /* NULL-terminated, or NULL = any */
    char **types;  /* "job.completed" or a prefix "job.*"; NULL = any */
    char *job, *project, *group;
} filter;

/* A piece of the firehose: framed events, appended while it is the newest. A chunk lives
 * while a subscriber's position is in it (refs) or it is the newest; chunks are freed from
 * the oldest, so a subscriber can always step to `next`. */
typedef struct chunk {
    struct chunk *next;
    uint64_t base; /* position of its first byte in the whole firehose */
    int refs;
    GString *s;
} chunk;

typedef struct sub {
    jobq_streams *st;
    jobq_req *rq; /* SSE, NULL once over */
    jobq_ws *ws;  /* WebSocket */
    filter f;
    GString *buf; /* SSE: bytes not yet read by the server (a firehose subscriber: what
                   * comes before its share of the firehose, and notes after it) */
    size_t off;   /* read position in buf */
    uint64_t last; /* seq of the last event given to it */
    /* firehose subscribers */
    chunk *at;         /* the chunk its position is in (a reference), NULL if none */
    uint64_t pos, end; /* its position in the firehose; where its share ends once ending */
    uint64_t start;    /* where it joined */
    unsigned firehose : 1;
    unsigned prefix_done : 1; /* buf's bytes from before it joined are sent */
    unsigned ending : 1; /* no more events: finish sending, then end */
    unsigned live : 1;   /* in st->subs, or st->fire for a firehose subscriber */
    GList link;
} sub;

struct jobq_streams {
    jobq_app *a;
    jobq_bus *bus;
    uv_loop_t *loop;
    size_t cap;
    uint64_t floor; /* every event after this seq is in the ring or still to come */
    GQueue subs;
    GString *frame; /* scratch: the SSE framing of the event being published */
    uv_timer_t ping;
    uv_timer_t flush; /* wakes the SSE streams that have output: one write per socket per
                       * FLUSH_MS however many batches were published, off the commit path */
    int flush_armed;
    int stopping;
    int closing; /* timers not yet closed */
    /* the firehose shared by unfiltered SSE subscribers */
    chunk *head, *cur; /* oldest and newest chunk */
    uint64_t total;    /* bytes ever framed into it */
    GQueue fire;       /* its live subscribers (they are not in subs) */
    uint64_t fire_last; /* seq of the last event framed into it */
};

/* ---------------------------------------------------------------- filters */

static void filter_clear(filter *f)
{
    g_strfreev(f->queues);
    g_strfreev(f->types);
    g_free(f->job);
    g_free(f->project);
    g_free(f->group);
    memset(f, 0, sizeof *f);
}

static int in_list(char *const *list, const char *s)
{
    for (; *list; list++)
        if (strcmp(*list, s) == 0)
            return 1;
    return 0;
}

static int type_matches(char *const *types, const char *t)
{
    for (; *types; types++) {
        size_t n = strlen(*types);
        if (n >= 2 && (*types)[n - 1] == '*' && (*types)[n - 2] == '.') {
            if (strncmp(*types, t, n - 1) == 0)
                return 1;
        } else if (strcmp(*types, t) == 0) {
            return 1;
        }
    }
    return 0;
}

static int matches(const filter *f, const jobq_event *ev)
{
    if (f->types && !type_matches(f->types, ev->type))
        return 0;
    if (f->queues && (!ev->queue || !in_list(f->queues, ev->queue)))
        return 0;
    if (f->job && (!ev->job || strcmp(f->job, ev->job) != 0))
        return 0;
    if (f->project && (!ev->project || strcmp(f->project, ev->project) != 0))
        return 0;
    if (f->group && (!ev->group || strcmp(f->group, ev->group) != 0))
        return 0;
    return 1;
}

/* "a,b,c" → {"a","b","c",NULL}; NULL for an absent argument. -1 (answered 400) when an
 * entry is empty or there are too many. */
static int parse_list(jobq_req *rq, const char *name, char ***out)
{
    const char *v = jobq_req_query(rq, name);
    char **parts;
    guint n;

    *out = NULL;
    if (!v)
        return 0;
    parts = g_strsplit(v, ",", -1);
    n = g_strv_length(parts);
    for (guint i = 0; i < n; i++) {
        if (!parts[i][0] || n > MAX_LIST) {
            jobq_api_bad_field(rq, name,
                               "must be a comma-separated list of at most 64 non-empty names");
            g_strfreev(parts);
            return -1;
        }
    }
    if (!n) {
        jobq_api_bad_field(rq, name, "must not be empty");
        g_strfreev(parts);
        return -1;
    }
    *out = parts;
    return 0;
}

static int parse_one(jobq_req *rq, const char *name, char **out)
{
    const char *v = jobq_req_query(rq, name);

    *out = NULL;
    if (!v)
        return 0;
    if (!*v) {
        jobq_api_bad_field(rq, name, "must not be empty");
        return -1;
    }
    *out = g_strdup(v);
    return 0;
}

/* The filter and the resume point of a request. -1 when answered 400. *since is -1 when
 * the subscriber starts live. */
static int parse_request(jobq_req *rq, filter *f, int64_t *since)
{
    const char *lei = jobq_req_header(rq, "Last-Event-ID");

    memset(f, 0, sizeof *f);
    *since = -1;
    if (parse_list(rq, "queues", &f->queues) || (!f->queues && parse_list(rq, "queue", &f->queues)) ||
        parse_list(rq, "types", &f->types) || (!f->types && parse_list(rq, "type", &f->types)) ||
        parse_one(rq, "job", &f->job) || parse_one(rq, "project", &f->project) ||
        parse_one(rq, "group", &f->group))
        goto bad;
    if (lei && *lei) {
        char *end;
        unsigned long long n = strtoull(lei, &end, 10);
        if (*end || lei[0] == '-' || n > INT64_MAX) {
            jobq_api_bad_field(rq, "Last-Event-ID", "must be an event's seq");
            goto bad;
        }
        *since = (int64_t)n;
    } else if (jobq_req_query(rq, "since")) {
        *since = jobq_api_query_int(rq, "since", 0, INT64_MAX);
        if (*since < 0)
            goto bad;
    }
    return 0;
bad:
    filter_clear(f);
    return -1;
}

/* ---------------------------------------------------------------- delivery */

static void chunk_unref(jobq_streams *st, chunk *c);

static void sub_free(sub *s)
{
    if (s->at)
        chunk_unref(s->st, s->at);
    filter_clear(&s->f);
    if (s->buf)
        g_string_free(s->buf, TRUE);
    g_free(s);
}

static void sub_unlink(sub *s)
{
    if (s->live) {
        g_queue_unlink(s->firehose ? &s->st->fire : &s->st->subs, &s->link);
        s->live = 0;
    }
}

static size_t backlog(const sub *s)
{
    if (s->ws)
        return jobq_ws_queued(s->ws);
    return s->buf->len - s->off + (s->firehose ? (size_t)(s->st->total - s->pos) : 0);
}

/* ---------------------------------------------------------------- the firehose */

/* Frees the oldest chunks nobody reads any more (never the newest). */
static void chunks_trim(jobq_streams *st)
{
    while (st->head && st->head != st->cur && st->head->refs == 0) {
        chunk *c = st->head;
        st->head = c->next;
        g_string_free(c->s, TRUE);
        g_free(c);
    }
}

static void chunk_unref(jobq_streams *st, chunk *c)
{
    c->refs--;
    chunks_trim(st);
}

/* The newest chunk, opened when there is none or the current one went to the sockets. */
static chunk *chunk_open(jobq_streams *st)
{
    chunk *c;

    if (st->cur)
        return st->cur;
    c = g_new0(chunk, 1);
    c->base = st->total;
    c->s = g_string_sized_new(64 * 1024);
    if (st->head) {
        chunk *t = st->head;
        while (t->next)
            t = t->next;
        t->next = c;
    } else {
        st->head = c;
    }
    st->cur = c;
    return c;
}

/* Copies up to max firehose bytes from s's position (up to `limit`) into buf. */
static size_t firehose_read(sub *s, uint64_t limit, char *buf, size_t max)
{
    jobq_streams *st = s->st;
    size_t n = 0;

    while (n < max && s->pos < limit) {
        chunk *c = s->at;
        size_t in, take;

        if (!c) { /* it joined before any chunk was opened: the oldest is its */
            c = s->at = st->head;
            c->refs++;
        }
        in = (size_t)(s->pos - c->base);
        if (in == c->s->len) { /* this one is done: step to the next */
            chunk *next = c->next;
            next->refs++;
            s->at = next;
            chunk_unref(st, c);
            continue;
        }
        take = MIN(c->s->len - in, max - n);
        if (take > limit - s->pos)
            take = (size_t)(limit - s->pos);
        memcpy(buf + n, c->s->str + in, take);
        n += take;
        s->pos += take;
    }
    return n;
}

/* Sends a JSON object that is not a numbered event (gap, overflow). */
static void send_note(sub *s, const char *json, size_t len)
{
    if (s->ws) {
        jobq_ws_send(s->ws, json, len);
        return;
    }
    jobq_jw_put(s->buf, "data: ", 6);
    jobq_jw_put(s->buf, json, len);
    jobq_jw_put(s->buf, "\n\n", 2);
}

static void wake(sub *s)
{
    if (s->rq)
        jobq_req_stream_wake(s->rq);
}

/* The subscriber gets nothing more: what is queued goes out, then the stream ends. */
static void end_sub(sub *s)
{
    s->ending = 1;
    s->end = s->st->total; /* what the firehose holds now is still its */
    sub_unlink(s);
    if (s->ws)
        jobq_ws_close(s->ws, s->st->stopping ? 1001 : 1008,
                      s->st->stopping ? "server stopping" : "too far behind");
    wake(s);
}

static void overflow(sub *s)
{
    char note[160];
    int n = snprintf(note, sizeof note,
                     "{\"type\":\"overflow\",\"at\":%" PRId64 ",\"last\":%" PRIu64
                     ",\"message\":\"too far behind: resume from last\"}",
                     jobq_app_now(), s->last);

    send_note(s, note, (size_t)n);
    end_sub(s);
}

static void on_flush(uv_timer_t *t)
{
    jobq_streams *st = t->data;

    st->flush_armed = 0;
    if (st->cur && st->cur->s->len) /* the next events go into a new chunk */
        st->cur = NULL;
    for (GList *l = st->subs.head; l; l = l->next) {
        sub *s = l->data;
        if (s->rq && s->buf->len > s->off)
            wake(s);
    }
    /* a firehose subscriber's lag is checked here, not per event: it keeps everything up to
     * now, and at most FLUSH_MS of events more than the cap */
    for (GList *l = st->fire.head, *next; l; l = next) {
        sub *s = l->data;
        next = l->next;
        if (st->fire_last > s->last && st->total > s->start)
            s->last = st->fire_last; /* the newest event framed since it joined */
        if (backlog(s) > st->cap)
            overflow(s);
        else if (s->pos < st->total || s->buf->len > s->off)
            wake(s);
    }
    chunks_trim(st);
}

static void arm_flush(jobq_streams *st)
{
    if (!st->flush_armed) {
        st->flush_armed = 1;
        uv_timer_start(&st->flush, on_flush, FLUSH_MS, 0);
    }
}

/* Gives ev to s; `frame` is its SSE framing. */
static void deliver(sub *s, const jobq_event *ev, const GString *frame)
{
    size_t add = s->ws ? ev->json_len : frame->len;

    if (backlog(s) + add > s->st->cap) {
        overflow(s);
        return;
    }
    s->last = ev->seq;
    if (s->ws) {
        jobq_ws_send(s->ws, ev->json, ev->json_len);
    } else {
        if (s->off && s->off == s->buf->len) {
            g_string_truncate(s->buf, 0);
            s->off = 0;
        }
        jobq_jw_put(s->buf, frame->str, frame->len);
        arm_flush(s->st);
    }
}

static void frame_event(GString *o, const jobq_event *ev)
{
    g_string_truncate(o, 0);
    jobq_jw_put(o, "id: ", 4);
    jobq_jw_int(o, (int64_t)ev->seq);
    jobq_jw_put(o, "\ndata: ", 7);
    jobq_jw_put(o, ev->json, ev->json_len);
    jobq_jw_put(o, "\n\n", 2);
}

static void on_publish(void *ud, const jobq_event *ev)
{
    jobq_streams *st = ud;
    GList *l, *next;
    int framed = 0;

    if (st->fire.length) { /* framed once into the shared stream, nothing per subscriber */
        chunk *c = chunk_open(st);
        frame_event(st->frame, ev);
        framed = 1;
        jobq_jw_put(c->s, st->frame->str, st->frame->len);
        st->total += st->frame->len;
        st->fire_last = ev->seq;
        arm_flush(st);
    }
    for (l = st->subs.head; l; l = next) {
        sub *s = l->data;
        next = l->next;
        if (!matches(&s->f, ev))
            continue;
        if (!framed && !s->ws) {
            frame_event(st->frame, ev);
            framed = 1;
        }
        deliver(s, ev, st->frame);
    }
}

typedef struct replay_ctx {
    sub *s;
    GString *frame;
} replay_ctx;

static int replay_one(void *ud, const jobq_event *ev)
{
    replay_ctx *c = ud;

    if (!matches(&c->s->f, ev))
        return 0;
    frame_event(c->frame, ev);
    deliver(c->s, ev, c->frame);
    return c->s->ending;
}

/* What a resuming subscriber missed: a gap note when some of it is gone, then the ring. */
static void replay(sub *s, uint64_t since)
{
    jobq_streams *st = s->st;
    uint64_t oldest = jobq_bus_oldest(st->bus), floor = st->floor;
    replay_ctx c = {s, g_string_sized_new(512)};

    if (oldest && oldest - 1 > floor)
        floor = oldest - 1;
    if (since < floor) {
        char note[200];
        int n = snprintf(note, sizeof note,
                         "{\"type\":\"gap\",\"at\":%" PRId64 ",\"since\":%" PRIu64
                         ",\"next\":%" PRIu64
                         ",\"message\":\"events after since and before next are no longer "
                         "kept\"}",
                         jobq_app_now(), since, floor + 1);
        send_note(s, note, (size_t)n);
    }
    s->last = since;
    jobq_bus_replay(st->bus, since, replay_one, &c);
    g_string_free(c.frame, TRUE);
}

/* ---------------------------------------------------------------- SSE */

/* Order: buf's bytes from before it joined the firehose (the opening comment, a replay),
 * then its share of the firehose, then what buf got since (pings, the overflow note). */
static long sse_read(void *ud, char *buf, size_t max)
{
    sub *s = ud;
    size_t n;

    if (s->firehose && s->prefix_done) {
        n = firehose_read(s, s->ending ? s->end : s->st->total, buf, max);
        if (n)
            return (long)n;
    }
    n = s->buf->len - s->off;
    if (!n) {
        s->off = 0;
        g_string_truncate(s->buf, 0);
        if (s->firehose && !s->prefix_done) {
            s->prefix_done = 1;
            return sse_read(ud, buf, max);
        }
        return s->ending ? -1 : 0;
    }
    if (n > max)
        n = max;
    memcpy(buf, s->buf->str + s->off, n);
    s->off += n;
    return (long)n;
}

static void sse_end(void *ud)
{
    sub *s = ud;

    sub_unlink(s);
    s->rq = NULL;
    sub_free(s);
}

/* ---------------------------------------------------------------- WebSocket */

static void ws_text(void *ud, jobq_ws *ws, const char *msg, size_t len)
{
    (void)ud;
    (void)ws;
    (void)msg;
    (void)len; /* nothing to say to an event stream; pings are answered by wslay */
}

static void ws_closed(void *ud, jobq_ws *ws)
{
    sub *s = ud;

    (void)ws;
    sub_unlink(s);
    sub_free(s);
}

/* ---------------------------------------------------------------- the handler */

void jobq_h_events(jobq_req *rq)
{
    jobq_app *a = jobq_req_app(rq);
    jobq_streams *st = jobq_app_streams(a);
    sub *s;
    int64_t since;

    if (st->stopping) {
        jobq_req_error(rq, 503, "unavailable", "the server is shutting down", NULL);
        return;
    }
    s = g_new0(sub, 1);
    s->st = st;
    if (parse_request(rq, &s->f, &since) != 0) {
        g_free(s);
        return;
    }
    s->link.data = s;
    s->live = 1;
    if (jobq_ws_requested(rq)) {
        g_queue_push_tail_link(&st->subs, &s->link);
        static const jobq_ws_handlers h = {ws_text, ws_closed};
        s->ws = jobq_ws_accept(rq, st->loop, WS_MAX_MSG, &h, s);
        if (!s->ws) { /* answered 400 */
            sub_unlink(s);
            sub_free(s);
            return;
        }
        if (since >= 0)
            replay(s, (uint64_t)since);
        return;
    }
    s->buf = g_string_sized_new(4096);
    /* a comment, so the client sees the stream open at once; reconnect after 1 s */
    g_string_append(s->buf, ": jobq events\nretry: 1000\n\n");
    s->rq = rq;
    if (!s->f.queues && !s->f.types && !s->f.job && !s->f.project && !s->f.group) {
        s->firehose = 1; /* it shares the firehose from here on */
        g_queue_push_tail_link(&st->fire, &s->link);
        s->at = chunk_open(st);
        s->at->refs++;
        s->pos = s->start = st->total;
    } else {
        g_queue_push_tail_link(&st->subs, &s->link);
    }
    if (since >= 0)
        replay(s, (uint64_t)since);
    jobq_req_reply_stream(rq, 200, "text/event-stream", sse_read, sse_end, s);
}

/* ---------------------------------------------------------------- life */

static void ping_list(jobq_streams *st, GQueue *list)
{
    for (GList *l = list->head; l; l = l->next) {
        sub *s = l->data;
        if (s->rq && s->buf->len == s->off && (!s->firehose || s->pos == st->total)) {
            g_string_append(s->buf, ": ping\n\n");
            wake(s);
        }
    }
}

static void on_ping(uv_timer_t *t)
{
    jobq_streams *st = t->data;

    ping_list(st, &st->subs);
    ping_list(st, &st->fire);
}

jobq_streams *jobq_streams_new(jobq_app *a, uv_loop_t *loop, size_t cap)
{
    jobq_streams *st = g_new0(jobq_streams, 1);
    jobq_event_sink sink = {NULL, on_publish, st};

    st->a = a;
    st->bus = jobq_app_bus(a);
    st->loop = loop;
    st->cap = cap ? cap : DEFAULT_CAP;
    st->frame = g_string_sized_new(1024);
    g_queue_init(&st->subs);
    g_queue_init(&st->fire);
    jobq_bus_add_sink(st->bus, &sink);
    uv_timer_init(loop, &st->flush);
    st->flush.data = st;
    uv_timer_init(loop, &st->ping);
    st->ping.data = st;
    uv_timer_start(&st->ping, on_ping, PING_MS, PING_MS);
    uv_unref((uv_handle_t *)&st->ping);
    return st;
}

void jobq_streams_start(jobq_streams *st, uint64_t first_seq)
{
    st->floor = first_seq ? first_seq - 1 : 0;
}

size_t jobq_streams_count(const jobq_streams *st)
{
    return st->subs.length + st->fire.length;
}

void jobq_streams_stop(jobq_streams *st)
{
    st->stopping = 1;
    while (st->subs.head)
        end_sub(st->subs.head->data);
    while (st->fire.head)
        end_sub(st->fire.head->data);
}

static void timer_closed(uv_handle_t *h)
{
    jobq_streams *st = h->data;

    if (--st->closing > 0)
        return;
    while (st->head) {
        chunk *c = st->head;
        st->head = c->next;
        g_string_free(c->s, TRUE);
        g_free(c);
    }
    g_string_free(st->frame, TRUE);
    g_free(st);
}

void jobq_streams_free(jobq_streams *st)
{
    if (!st)
        return;
    st->closing = 2;
    uv_close((uv_handle_t *)&st->ping, timer_closed);
    uv_close((uv_handle_t *)&st->flush, timer_closed);
}
