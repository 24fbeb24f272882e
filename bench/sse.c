/*
 * sse.c — event-stream subscribers attached to a run (--sse N).
 *
 * Each subscriber is a raw TCP connection that sends GET /v1/events and then reads and
 * throws away everything the server streams, counting the bytes and the events (the
 * "data: " lines), so the server pays what real subscribers cost it: rendering, framing,
 * copying into each subscriber's buffer and writing to its socket. The workload starts once
 * every subscriber has received the stream's first bytes (it is attached). Reading is done
 * on the same loop as the workload; a subscriber that falls behind is the server's problem
 * (it is dropped with an overflow event, which the report would show as fewer events).
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sub {
    struct bench *b;
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    char req[400];
    int attached;
    int tail; /* bytes of "data: " matched at the end of the last read */
};

static struct {
    struct sub *subs;
    int n;
    int attached;
    void (*then)(struct bench *b);
    char buf[1 << 16];
} sse;

uint64_t bench_sse_bytes, bench_sse_events;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    (void)h;
    (void)suggested;
    *out = uv_buf_init(sse.buf, sizeof(sse.buf));
}

/* Counts "data: " occurrences, also across reads. */
static void count(struct sub *s, const char *p, size_t n)
{
    static const char pat[] = "data: ";

    for (size_t i = 0; i < n; i++) {
        if (p[i] == pat[s->tail]) {
            if (++s->tail == 6) {
                bench_sse_events++;
                s->tail = 0;
            }
        } else {
            s->tail = p[i] == 'd';
        }
    }
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct sub *s = st->data;

    if (n < 0) {
        if (!s->b->finished)
            bench_fail(s->b, "an event subscriber lost its connection: %s", uv_strerror((int)n));
        uv_read_stop(st);
        return;
    }
    bench_sse_bytes += (uint64_t)n;
    count(s, buf->base, (size_t)n);
    if (!s->attached && n > 0) {
        s->attached = 1;
        if (++sse.attached == sse.n)
            sse.then(s->b);
    }
}

static void on_written(uv_write_t *w, int status)
{
    struct sub *s = w->data;

    if (status < 0)
        bench_fail(s->b, "an event subscriber could not send: %s", uv_strerror(status));
}

static void on_connect(uv_connect_t *c, int status)
{
    struct sub *s = c->data;
    uv_buf_t req;

    if (status < 0) {
        bench_fail(s->b, "an event subscriber could not connect: %s", uv_strerror(status));
        return;
    }
    req = uv_buf_init(s->req, (unsigned)strlen(s->req));
    s->write.data = s;
    uv_write(&s->write, (uv_stream_t *)&s->tcp, &req, 1, on_written);
    uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
}

int bench_sse_start(struct bench *b, int n, void (*then)(struct bench *b))
{
    sse.subs = calloc((size_t)n, sizeof(*sse.subs));
    if (!sse.subs)
        return -1;
    sse.n = n;
    sse.then = then;
    for (int i = 0; i < n; i++) {
        struct sub *s = &sse.subs[i];

        s->b = b;
        snprintf(s->req, sizeof(s->req),
                 "GET /v1/events HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n",
                 b->host);
        if (uv_tcp_init(b->loop, &s->tcp) < 0)
            return -1;
        s->tcp.data = s;
        uv_tcp_nodelay(&s->tcp, 1);
        s->connect.data = s;
        if (uv_tcp_connect(&s->connect, &s->tcp, (const struct sockaddr *)&b->addr, on_connect) < 0)
            return -1;
    }
    return 0;
}

void bench_sse_fini(void)
{
    free(sse.subs); /* their handles were closed with every other one */
    sse.subs = NULL;
}
