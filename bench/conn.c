/*
 * conn.c — keep-alive HTTP/1.1 client connections on libuv, one request in flight each.
 *
 * A request is written with Content-Length; its answer is read as a status line, headers
 * and a body framed by Content-Length, which is how jobqd answers. This reader never
 * pipelines and does not speak chunked transfer coding (a chunked answer fails the run).
 * When the server closes a keep-alive connection (EOF while idle, or `Connection: close`)
 * the connection is reopened for its next request and that is counted in b->reconnects, so
 * the report can say the server did it.
 */
#include "bench.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum conn_state { ST_CONNECTING, ST_OPEN, ST_CLOSING, ST_CLOSED };

struct bench_conn {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    struct bench *b;
    bench_conn *next; /* in b->all_conns */
    enum conn_state state;
    int freeing; /* bench_conn_free_all has run: free on close */

    struct bench_buf wbuf; /* the request in flight, until handed to the socket */
    int write_queued;      /* wbuf waits for the connection to open */
    int busy;              /* a request waits for its answer */
    char what[300];        /* "METHOD PATH" of that request, for messages */
    uint64_t sent_ns;
    bench_conn_cb cb;
    void *arg;

    char *rbuf; /* bytes read and not yet consumed */
    size_t rlen;
    size_t rcap;
    size_t hdr_len;  /* header length incl. the blank line, 0 until seen */
    size_t body_len; /* Content-Length of the answer being read */
    int status;
    int close_after; /* the answer said Connection: close */
};

/* A write libuv could not finish at once: owns the unwritten rest of the request. */
struct wreq {
    uv_write_t req;
    bench_conn *c;
    char data[];
};

static void start_connect(bench_conn *c);
static void flush(bench_conn *c);

void bench_fail(struct bench *b, const char *fmt, ...)
{
    va_list ap;

    if (b->failed) {
        return;
    }
    b->failed = 1;
    fputs("jobq-bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    uv_stop(b->loop);
}

void bench_finish(struct bench *b)
{
    b->finished = 1;
    uv_stop(b->loop);
}

const char *bench_conn_describe(const bench_conn *c)
{
    return c->busy ? c->what : "";
}

bench_conn *bench_next_conn(const bench_conn *c)
{
    return c->next;
}

int bench_conn_busy(const bench_conn *c)
{
    return c->busy;
}

static void on_close(uv_handle_t *h)
{
    bench_conn *c = h->data;

    c->state = ST_CLOSED;
    if (c->freeing) {
        bench_buf_fini(&c->wbuf);
        free(c->rbuf);
        free(c);
        return;
    }
    /* reopened lazily; at once if a request is already waiting */
    if (c->write_queued) {
        start_connect(c);
    }
}

/* The server closed (or will close) an open connection: drop it, reopen when needed. */
static void drop(bench_conn *c)
{
    if (c->state != ST_OPEN) {
        return;
    }
    c->state = ST_CLOSING;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_close((uv_handle_t *)&c->tcp, on_close);
    c->rlen = 0;
    c->hdr_len = 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    bench_conn *c = h->data;
    size_t want = suggested < 65536 ? 65536 : suggested;

    if (c->rcap - c->rlen < want) {
        size_t cap = c->rcap ? c->rcap : 65536;
        char *p;

        while (cap - c->rlen < want) {
            cap *= 2;
        }
        p = realloc(c->rbuf, cap + 1); /* +1: room to NUL-terminate a body */
        if (!p) {
            out->base = NULL;
            out->len = 0;
            return;
        }
        c->rbuf = p;
        c->rcap = cap;
    }
    out->base = c->rbuf + c->rlen;
    out->len = c->rcap - c->rlen;
}

/* Value of header line [p, end) when its name is `name` (case-insensitive), else NULL. */
static const char *header_value(const char *p, const char *end, const char *name)
{
    size_t n = strlen(name);

    if ((size_t)(end - p) <= n || strncasecmp(p, name, n) != 0 || p[n] != ':') {
        return NULL;
    }
    p += n + 1;
    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }
    return p;
}

/* Parse the header block c->rbuf[0, c->hdr_len). 0 on success, -1 after failing the run. */
static int parse_header(bench_conn *c)
{
    const char *p = c->rbuf;
    const char *end = c->rbuf + c->hdr_len - 2; /* last line's CRLF stays, blank line not */
    const char *eol;
    int have_len = 0;

    if (c->hdr_len < 16 || strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ' || p[9] < '1' ||
        p[9] > '5') {
        bench_fail(c->b, "%s: malformed status line: %.60s", c->what, p);
        return -1;
    }
    c->status = atoi(p + 9);
    c->body_len = 0;
    c->close_after = p[7] == '0'; /* HTTP/1.0 closes unless told otherwise; jobqd is 1.1 */
    eol = memchr(p, '\n', (size_t)(end - p));
    while (eol && eol + 1 < end) {
        const char *v;

        p = eol + 1;
        eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) {
            break;
        }
        if ((v = header_value(p, eol, "content-length"))) {
            char *stop;
            unsigned long long n = strtoull(v, &stop, 10);

            if (stop == v || n > (1ull << 31)) {
                bench_fail(c->b, "%s: bad Content-Length: %.40s", c->what, v);
                return -1;
            }
            c->body_len = (size_t)n;
            have_len = 1;
        } else if ((v = header_value(p, eol, "connection"))) {
            c->close_after = strncasecmp(v, "close", 5) == 0;
        } else if ((v = header_value(p, eol, "transfer-encoding"))) {
            bench_fail(c->b,
                       "%s: answer uses Transfer-Encoding %.30s; jobq-bench expects "
                       "Content-Length",
                       c->what, v);
            return -1;
        }
    }
    if (!have_len && c->status != 204 && c->status != 304 && c->status >= 200) {
        bench_fail(c->b, "%s: answer %d has no Content-Length", c->what, c->status);
        return -1;
    }
    return 0;
}

/* Deliver every complete answer in the read buffer. */
static void consume(bench_conn *c)
{
    struct bench *b = c->b;

    for (;;) {
        struct bench_resp r;
        size_t total;
        bench_conn_cb cb;
        char saved;

        if (!c->hdr_len) {
            char *e = c->rlen >= 4 ? memmem(c->rbuf, c->rlen, "\r\n\r\n", 4) : NULL;

            if (!e) {
                if (c->rlen > 65536) {
                    bench_fail(b, "%s: answer header over 64 KiB", c->what);
                }
                return;
            }
            if (!c->busy) {
                bench_fail(b, "server sent an answer nobody asked for: %.80s", c->rbuf);
                return;
            }
            c->hdr_len = (size_t)(e - c->rbuf) + 4;
            if (parse_header(c) < 0) {
                return;
            }
        }
        total = c->hdr_len + c->body_len;
        if (c->rlen < total) {
            return;
        }
        if (c->status < 200) { /* 100 Continue and friends: skip, read on */
            memmove(c->rbuf, c->rbuf + total, c->rlen - total);
            c->rlen -= total;
            c->hdr_len = 0;
            continue;
        }
        r.status = c->status;
        r.body = c->rbuf + c->hdr_len;
        r.len = c->body_len;
        r.sent_ns = c->sent_ns;
        r.recv_ns = uv_hrtime();
        saved = c->rbuf[total]; /* rcap has one byte of slack; this may be the next answer's */
        c->rbuf[total] = '\0';
        b->answers++;
        if (r.status < 200 || r.status > 299) {
            bench_fail(b, "%s -> %d: %.*s", c->what, r.status, r.len > 2000 ? 2000 : (int)r.len,
                       r.body);
            return;
        }
        cb = c->cb;
        c->busy = 0;
        if (c->close_after) {
            drop(c); /* before the callback, so its next request waits for a new socket */
        }
        cb(c, &r, c->arg);
        if (b->failed || c->state != ST_OPEN) {
            return;
        }
        c->rbuf[total] = saved;
        if (c->rlen > total) {
            memmove(c->rbuf, c->rbuf + total, c->rlen - total);
        }
        c->rlen -= total;
        c->hdr_len = 0;
        if (!c->rlen) {
            return;
        }
    }
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    bench_conn *c = s->data;

    (void)buf;
    if (n == UV_ENOBUFS) {
        bench_fail(c->b, "out of memory reading an answer");
        return;
    }
    if (n < 0) {
        if (c->busy) {
            bench_fail(c->b, "%s: connection %s before the answer was complete (%zu bytes read)",
                       c->what, n == UV_EOF ? "closed by the server" : uv_strerror((int)n),
                       c->rlen);
            return;
        }
        drop(c);
        return;
    }
    c->rlen += (size_t)n;
    consume(c);
}

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    bench_conn *c = w->c;

    free(w);
    if (status < 0 && status != UV_ECANCELED) {
        bench_fail(c->b, "%s: write failed: %s", c->what, uv_strerror(status));
    }
}

/* Hand the built request to the socket; what the kernel does not take now is copied into a
 * write request so wbuf is free again at once. */
static void flush(bench_conn *c)
{
    uv_buf_t buf = uv_buf_init(c->wbuf.data, (unsigned int)c->wbuf.len);
    int n;
    struct wreq *w;

    c->write_queued = 0;
    c->sent_ns = uv_hrtime();
    n = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
    if (n == UV_EAGAIN) {
        n = 0;
    }
    if (n < 0) {
        bench_fail(c->b, "%s: write failed: %s", c->what, uv_strerror(n));
        return;
    }
    if ((size_t)n == c->wbuf.len) {
        return;
    }
    w = malloc(sizeof(*w) + c->wbuf.len - (size_t)n);
    if (!w) {
        bench_fail(c->b, "out of memory writing a request");
        return;
    }
    w->c = c;
    memcpy(w->data, c->wbuf.data + n, c->wbuf.len - (size_t)n);
    buf = uv_buf_init(w->data, (unsigned int)(c->wbuf.len - (size_t)n));
    n = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
    if (n < 0) {
        free(w);
        bench_fail(c->b, "%s: write failed: %s", c->what, uv_strerror(n));
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    bench_conn *c = req->data;
    int rc;

    if (c->state != ST_CONNECTING) {
        return; /* closed meanwhile */
    }
    if (status < 0) {
        bench_fail(c->b, "connect to %s: %s", c->b->host, uv_strerror(status));
        return;
    }
    c->state = ST_OPEN;
    uv_tcp_nodelay(&c->tcp, 1);
    rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc < 0) {
        bench_fail(c->b, "read from %s: %s", c->b->host, uv_strerror(rc));
        return;
    }
    if (c->write_queued) {
        flush(c);
    }
}

static void start_connect(bench_conn *c)
{
    int rc = uv_tcp_init(c->b->loop, &c->tcp);

    if (rc == 0) {
        c->tcp.data = c;
        c->connect_req.data = c;
        c->state = ST_CONNECTING;
        rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&c->b->addr,
                            on_connect);
        if (rc < 0) {
            uv_close((uv_handle_t *)&c->tcp, on_close);
            c->state = ST_CLOSING;
        }
    }
    if (rc < 0) {
        bench_fail(c->b, "connect to %s: %s", c->b->host, uv_strerror(rc));
    }
}

bench_conn *bench_conn_new(struct bench *b)
{
    bench_conn *c = calloc(1, sizeof(*c));

    if (!c) {
        return NULL;
    }
    c->b = b;
    c->next = b->all_conns;
    b->all_conns = c;
    start_connect(c);
    return c;
}

void bench_conn_request(bench_conn *c, const char *method, const char *path, const char *body,
                        size_t len, bench_conn_cb cb, void *arg)
{
    struct bench_buf *w = &c->wbuf;

    if (c->busy) {
        bench_fail(c->b, "internal: second request on a busy connection (%s)", c->what);
        return;
    }
    snprintf(c->what, sizeof(c->what), "%s %s", method, path);
    w->len = 0;
    if (bench_buf_printf(w,
                         "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\n\r\n",
                         method, path, c->b->host, len) < 0 ||
        bench_buf_add(w, body, len) < 0) {
        bench_fail(c->b, "out of memory building %s", c->what);
        return;
    }
    c->busy = 1;
    c->cb = cb;
    c->arg = arg;
    c->write_queued = 1;
    if (c->state == ST_CLOSED || c->state == ST_CLOSING) {
        c->b->reconnects++; /* an idle connection nobody uses again is not counted */
    }
    if (c->state == ST_OPEN) {
        flush(c);
    } else if (c->state == ST_CLOSED) {
        start_connect(c);
    }
    /* ST_CONNECTING: on_connect flushes; ST_CLOSING: on_close reconnects */
}

void bench_conn_free_all(struct bench *b)
{
    bench_conn *c = b->all_conns;

    b->all_conns = NULL;
    while (c) {
        bench_conn *next = c->next;

        c->freeing = 1;
        if (c->state == ST_CLOSED) {
            bench_buf_fini(&c->wbuf);
            free(c->rbuf);
            free(c);
        } else if (c->state != ST_CLOSING) {
            c->state = ST_CLOSING;
            uv_close((uv_handle_t *)&c->tcp, on_close);
        }
        c = next;
    }
}

int bench_buf_reserve(struct bench_buf *buf, size_t extra)
{
    size_t cap;
    char *p;

    if (buf->cap - buf->len > extra) {
        return 0;
    }
    cap = buf->cap ? buf->cap : 256;
    while (cap - buf->len <= extra) {
        cap *= 2;
    }
    p = realloc(buf->data, cap);
    if (!p) {
        return -1;
    }
    buf->data = p;
    buf->cap = cap;
    return 0;
}

int bench_buf_add(struct bench_buf *buf, const char *s, size_t n)
{
    if (bench_buf_reserve(buf, n) < 0) {
        return -1;
    }
    if (n) {
        memcpy(buf->data + buf->len, s, n);
    }
    buf->len += n;
    buf->data[buf->len] = '\0';
    return 0;
}

int bench_buf_adds(struct bench_buf *buf, const char *s)
{
    return bench_buf_add(buf, s, strlen(s));
}

int bench_buf_printf(struct bench_buf *buf, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (bench_buf_reserve(buf, 128) < 0) {
        return -1;
    }
    va_start(ap, fmt);
    n = vsnprintf(buf->data + buf->len, buf->cap - buf->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return -1;
    }
    if ((size_t)n >= buf->cap - buf->len) {
        if (bench_buf_reserve(buf, (size_t)n) < 0) {
            return -1;
        }
        va_start(ap, fmt);
        vsnprintf(buf->data + buf->len, buf->cap - buf->len, fmt, ap);
        va_end(ap);
    }
    buf->len += (size_t)n;
    return 0;
}

int bench_buf_add_jstr(struct bench_buf *buf, const char *s)
{
    static const char hex[] = "0123456789abcdef";

    if (bench_buf_reserve(buf, strlen(s) * 6 + 2) < 0) {
        return -1;
    }
    buf->data[buf->len++] = '"';
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch == '"' || ch == '\\') {
            buf->data[buf->len++] = '\\';
            buf->data[buf->len++] = (char)ch;
        } else if (ch < 0x20) {
            memcpy(buf->data + buf->len, "\\u00", 4);
            buf->data[buf->len + 4] = hex[ch >> 4];
            buf->data[buf->len + 5] = hex[ch & 15];
            buf->len += 6;
        } else {
            buf->data[buf->len++] = (char)ch;
        }
    }
    buf->data[buf->len++] = '"';
    buf->data[buf->len] = '\0';
    return 0;
}

void bench_buf_fini(struct bench_buf *buf)
{
    free(buf->data);
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
}
