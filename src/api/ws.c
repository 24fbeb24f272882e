/*
 * ws.c — a WebSocket connection: handshake, wslay framing, libuv I/O (see ws.h).
 *
 * The HTTP server answers 101 and hands over the socket (MHD's upgrade); from then on the
 * connection is ours: a uv_poll watches it, wslay reads and writes frames through the recv
 * and send callbacks below (EAGAIN → WSLAY_ERR_WOULDBLOCK), and the poll asks for
 * writability only while wslay has something queued. TCP_NODELAY is set (without it the
 * first push waits for a delayed ACK, ~40 ms). A close is a handshake: ours is queued behind
 * pending messages, the peer's answer (or a 5 s timer) ends it; the socket is then given
 * back to MHD to close. Until the socket arrives (MHD sends the 101 first) messages queue.
 *
 * What it never does: block, or read past max_msg into memory.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#include <glib.h>
#include <wslay/wslay.h>

#include "api/ws.h"

#define CLOSE_WAIT_MS 5000

struct jobq_ws {
    uv_loop_t *loop;
    wslay_event_context_ptr ctx;
    jobq_ws_handlers h;
    void *ud;
    int fd;                 /* -1 until upgraded */
    jobq_upgraded *u;       /* MHD's handle of the upgraded socket */
    const char *extra;      /* bytes read by MHD past the request: fed to wslay first */
    size_t extra_len;
    char *extra_copy;
    uv_poll_t poll;
    uv_timer_t close_timer;
    int events;             /* what the poll watches now */
    unsigned polling : 1;   /* poll initialised */
    unsigned closing : 1;   /* our close was queued */
    unsigned done : 1;      /* finished: handles closing, on_close called */
    int handles;            /* open uv handles */
};

int jobq_ws_requested(jobq_req *rq)
{
    const char *up = jobq_req_header(rq, "Upgrade");

    return up && g_ascii_strcasecmp(up, "websocket") == 0;
}

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user)
{
    jobq_ws *ws = user;
    ssize_t n;

    (void)flags;
    if (ws->extra_len) {
        n = (ssize_t)MIN(len, ws->extra_len);
        memcpy(buf, ws->extra, (size_t)n);
        ws->extra += n;
        ws->extra_len -= (size_t)n;
        return n;
    }
    do
        n = recv(ws->fd, buf, len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (n <= 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return n;
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                          void *user)
{
    jobq_ws *ws = user;
    ssize_t n;

    (void)flags;
    do
        n = send(ws->fd, data, len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        wslay_event_set_error(ctx, errno == EAGAIN || errno == EWOULDBLOCK
                                       ? WSLAY_ERR_WOULDBLOCK
                                       : WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return n;
}

static void ws_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                      void *user)
{
    jobq_ws *ws = user;

    (void)ctx;
    if (ws->done || ws->closing)
        return;
    if (arg->opcode == WSLAY_TEXT_FRAME) {
        if (ws->h.on_text)
            ws->h.on_text(ws->ud, ws, (const char *)arg->msg, arg->msg_length);
    } else if (arg->opcode == WSLAY_BINARY_FRAME) {
        jobq_ws_close(ws, 1003, "text messages only");
    }
}

static void handle_closed(uv_handle_t *hd)
{
    jobq_ws *ws = hd->data;

    if (--ws->handles > 0)
        return;
    if (ws->h.on_close)
        ws->h.on_close(ws->ud, ws);
    if (ws->u)
        jobq_http_upgraded_close(ws->u);
    if (ws->ctx)
        wslay_event_context_free(ws->ctx);
    g_free(ws->extra_copy);
    g_free(ws);
}

/* The end, from any path: close the handles; once closed, tell the owner and free. The
 * owner hears of it from the loop, never from inside one of its own calls (a send that
 * fails must not free the caller's state under it). */
static void finish(jobq_ws *ws)
{
    if (ws->done)
        return;
    ws->done = 1;
    ws->handles = 1 + (ws->polling ? 1 : 0);
    if (ws->polling)
        uv_close((uv_handle_t *)&ws->poll, handle_closed);
    uv_close((uv_handle_t *)&ws->close_timer, handle_closed);
}

static void on_io(uv_poll_t *p, int status, int events);

/* Runs wslay both ways and re-arms the poll for what it wants next. */
static void pump(jobq_ws *ws, int readable)
{
    int want;

    if (ws->done || ws->fd < 0)
        return;
    if (readable && wslay_event_recv(ws->ctx) != 0) {
        finish(ws);
        return;
    }
    if (ws->done) /* an on_text handler may have ended it */
        return;
    if (wslay_event_want_write(ws->ctx) && wslay_event_send(ws->ctx) != 0) {
        finish(ws);
        return;
    }
    if (!wslay_event_want_read(ws->ctx) && !wslay_event_want_write(ws->ctx)) {
        finish(ws);
        return;
    }
    want = (wslay_event_want_read(ws->ctx) ? UV_READABLE : 0) |
           (wslay_event_want_write(ws->ctx) ? UV_WRITABLE : 0);
    if (want != ws->events) {
        ws->events = want;
        uv_poll_start(&ws->poll, want, on_io);
    }
}

static void on_io(uv_poll_t *p, int status, int events)
{
    jobq_ws *ws = p->data;

    if (status < 0) {
        finish(ws);
        return;
    }
    pump(ws, (events & (UV_READABLE | UV_DISCONNECT)) != 0);
}

static void on_close_timer(uv_timer_t *t)
{
    finish(t->data); /* the peer never answered our close */
}

static void on_upgrade(void *ud, int fd, const char *extra, size_t extra_len, jobq_upgraded *u)
{
    jobq_ws *ws = ud;
    int one = 1;

    if (fd < 0) { /* no memory for the handle: MHD closed it */
        finish(ws);
        return;
    }
    ws->fd = fd;
    ws->u = u;
    if (extra_len) {
        ws->extra_copy = g_memdup2(extra, extra_len);
        ws->extra = ws->extra_copy;
        ws->extra_len = extra_len;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (uv_poll_init_socket(ws->loop, &ws->poll, fd) != 0) {
        finish(ws);
        return;
    }
    ws->poll.data = ws;
    ws->polling = 1;
    ws->events = 0;
    pump(ws, extra_len > 0);
    if (!ws->done && !ws->events) {
        ws->events = UV_READABLE;
        uv_poll_start(&ws->poll, UV_READABLE, on_io);
    }
}

/* The 101 never went out (the client left first). */
static void on_never(void *ud)
{
    finish(ud);
}

jobq_ws *jobq_ws_accept(jobq_req *rq, uv_loop_t *loop, size_t max_msg, const jobq_ws_handlers *h,
                        void *ud)
{
    static const struct wslay_event_callbacks cbs = {ws_recv, ws_send_cb, NULL, NULL,
                                                     NULL,    NULL,       ws_on_msg};
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    const char *key = jobq_req_header(rq, "Sec-WebSocket-Key");
    const char *ver = jobq_req_header(rq, "Sec-WebSocket-Version");
    const char *conn = jobq_req_header(rq, "Connection");
    GChecksum *sha;
    guint8 digest[20];
    gsize dlen = sizeof digest;
    gchar *accept;
    jobq_ws *ws;

    if (strcmp(jobq_req_method(rq), "GET") != 0) {
        jobq_req_error(rq, 400, "invalid_argument", "a WebSocket upgrade must be a GET", NULL);
        return NULL;
    }
    if (!conn || !strcasestr(conn, "upgrade")) {
        jobq_req_error(rq, 400, "invalid_argument", "Connection must include Upgrade",
                       "{\"field\":\"Connection\"}");
        return NULL;
    }
    if (!ver || strcmp(ver, "13") != 0) {
        jobq_req_add_header(rq, "Sec-WebSocket-Version", "13");
        jobq_req_error(rq, 400, "invalid_argument", "Sec-WebSocket-Version must be 13",
                       "{\"field\":\"Sec-WebSocket-Version\"}");
        return NULL;
    }
    if (!key || strlen(key) != 24) {
        jobq_req_error(rq, 400, "invalid_argument",
                       "Sec-WebSocket-Key must be 16 bytes in base64 (24 characters)",
                       "{\"field\":\"Sec-WebSocket-Key\"}");
        return NULL;
    }
    sha = g_checksum_new(G_CHECKSUM_SHA1);
    g_checksum_update(sha, (const guchar *)key, 24);
    g_checksum_update(sha, (const guchar *)guid, sizeof guid - 1);
    g_checksum_get_digest(sha, digest, &dlen);
    g_checksum_free(sha);
    accept = g_base64_encode(digest, dlen);

    ws = g_new0(jobq_ws, 1);
    ws->loop = loop;
    ws->fd = -1;
    ws->h = *h;
    ws->ud = ud;
    wslay_event_context_server_init(&ws->ctx, &cbs, ws);
    wslay_event_config_set_max_recv_msg_length(ws->ctx, max_msg);
    uv_timer_init(loop, &ws->close_timer);
    ws->close_timer.data = ws;
    jobq_req_add_header(rq, "Sec-WebSocket-Accept", accept);
    g_free(accept);
    jobq_req_reply_upgrade(rq, "websocket", on_upgrade, on_never, ws);
    return ws;
}

int jobq_ws_send(jobq_ws *ws, const char *text, size_t len)
{
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)text, len};

    if (ws->done || ws->closing || wslay_event_queue_msg(ws->ctx, &m) != 0)
        return -1;
    pump(ws, 0);
    return 0;
}

int jobq_ws_closing(const jobq_ws *ws)
{
    return ws->done || ws->closing;
}

size_t jobq_ws_queued(const jobq_ws *ws)
{
    return wslay_event_get_queued_msg_length(ws->ctx);
}

void jobq_ws_close(jobq_ws *ws, uint16_t code, const char *reason)
{
    if (ws->done || ws->closing)
        return;
    ws->closing = 1;
    wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, reason ? strlen(reason) : 0);
    uv_timer_start(&ws->close_timer, on_close_timer, CLOSE_WAIT_MS, 0);
    pump(ws, 0);
}
