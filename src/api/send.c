/*
 * send.c — libcurl multi on the libuv loop (send.h).
 *
 * The pattern of curl's multi_socket API: curl asks, through the socket callback, for each
 * of its sockets to be watched for reading and/or writing, or no longer (CURL_POLL_REMOVE);
 * each watched socket gets a uv_poll whose events are handed back with
 * curl_multi_socket_action(fd, …). The timer callback asks for one wake-up at a time; a
 * uv_timer calls curl_multi_socket_action(CURL_SOCKET_TIMEOUT). After either, finished
 * transfers are collected with curl_multi_info_read. The timer is never acted on inside
 * curl's own callback (curl forbids re-entering itself there): a timeout of 0 becomes a
 * uv_timer of 0 ms, run in the loop's next timers phase.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <glib.h>

#include "api/send.h"
#include "util/err.h"

typedef struct sock {
    uv_poll_t poll;
    curl_socket_t fd;
    jobq_sender *s;
    GList link; /* in s->socks */
} sock;

typedef struct transfer {
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    jobq_sent_fn done;
    void *ud;
    uint64_t started; /* uv_now, ms */
    char errbuf[CURL_ERROR_SIZE];
    GList link; /* in s->transfers */
} transfer;

struct jobq_sender {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    int64_t timeout_ms;
    GQueue transfers;
    GQueue socks;
    int open; /* libuv handles not yet closed (the timer and every sock) */
    int closing;
};

static void maybe_free(jobq_sender *s)
{
    if (s->closing && s->open == 0)
        g_free(s);
}

static void on_sock_closed(uv_handle_t *h)
{
    sock *k = h->data;
    jobq_sender *s = k->s;

    g_free(k);
    s->open--;
    maybe_free(s);
}

static void sock_close(jobq_sender *s, sock *k)
{
    g_queue_unlink(&s->socks, &k->link);
    uv_poll_stop(&k->poll);
    uv_close((uv_handle_t *)&k->poll, on_sock_closed);
}

static void transfer_free(transfer *t)
{
    curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
    g_free(t->body);
    g_free(t);
}

/* Collects finished transfers and reports them. */
static void check_done(jobq_sender *s)
{
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(s->multi, &left))) {
        transfer *t = NULL;
        CURLcode res = m->data.result;
        long code = 0;
        char err[CURL_ERROR_SIZE + 32];
        const char *error = NULL;
        jobq_sent_fn done;
        void *ud;
        int64_t ms;

        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
        curl_multi_remove_handle(s->multi, m->easy_handle);
        if (res != CURLE_OK) {
            snprintf(err, sizeof err, "%s", t->errbuf[0] ? t->errbuf : curl_easy_strerror(res));
            error = err;
        } else if (code < 200 || code > 299) {
            snprintf(err, sizeof err, "HTTP %ld", code);
            error = err;
        }
        ms = (int64_t)(uv_now(s->loop) - t->started);
        done = t->done;
        ud = t->ud;
        g_queue_unlink(&s->transfers, &t->link);
        transfer_free(t);
        done(ud, code, error, ms); /* last: it may post again */
    }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    sock *k = p->data;
    jobq_sender *s = k->s;
    int flags = 0, running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    /* k may be closed by curl's socket callback inside this call: read nothing after it */
    curl_multi_socket_action(s->multi, k->fd, flags, &running);
    check_done(s);
}

static void on_timer(uv_timer_t *t)
{
    jobq_sender *s = t->data;
    int running;

    curl_multi_socket_action(s->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(s);
}

/* CURLMOPT_SOCKETFUNCTION */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    jobq_sender *s = userp;
    sock *k = socketp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (k) {
            sock_close(s, k);
            curl_multi_assign(s->multi, fd, NULL);
        }
        return 0;
    }
    if (!k) {
        k = g_new0(sock, 1);
        k->fd = fd;
        k->s = s;
        k->poll.data = k;
        k->link.data = k;
        if (uv_poll_init_socket(s->loop, &k->poll, fd) != 0) {
            g_free(k);
            return -1;
        }
        s->open++;
        g_queue_push_tail_link(&s->socks, &k->link);
        curl_multi_assign(s->multi, fd, k);
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&k->poll, events, on_poll);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    jobq_sender *s = userp;

    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&s->timer);
    else
        uv_timer_start(&s->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* The answer's body is not read by anyone: take it and drop it. */
static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

jobq_sender *jobq_sender_new(uv_loop_t *loop, int64_t timeout_ms)
{
    jobq_sender *s;
    static int global;

    if (!global) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return NULL;
        global = 1;
    }
    s = g_new0(jobq_sender, 1);
    s->loop = loop;
    s->timeout_ms = timeout_ms > 0 ? timeout_ms : 10000;
    s->multi = curl_multi_init();
    if (!s->multi) {
        g_free(s);
        return NULL;
    }
    g_queue_init(&s->transfers);
    g_queue_init(&s->socks);
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s);
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->open = 1;
    return s;
}

int jobq_sender_post(jobq_sender *s, const char *url, const char *body, size_t len,
                     const char *const *headers, size_t nheaders, jobq_sent_fn done, void *ud)
{
    transfer *t;
    CURL *c;

    if (s->closing)
        return JOBQ_ESTATE;
    c = curl_easy_init();
    if (!c)
        return JOBQ_ENOMEM;
    t = g_new0(transfer, 1);
    t->easy = c;
    t->body = g_memdup2(body, len + 1);
    t->done = done;
    t->ud = ud;
    t->started = uv_now(s->loop);
    t->link.data = t;
    for (size_t i = 0; i < nheaders; i++)
        t->headers = curl_slist_append(t->headers, headers[i]);
    /* no "Expect: 100-continue" round trip for larger bodies */
    t->headers = curl_slist_append(t->headers, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, t->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "jobq-webhook/1");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    /* a transfer that ends (timed out, or abandoned at a stop) while its name is still being
     * resolved leaves curl's resolver thread to finish on its own: without this curl joins
     * it, and the loop would stand still until getaddrinfo gives up */
    curl_easy_setopt(c, CURLOPT_QUICK_EXIT, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, t->errbuf);
    curl_easy_setopt(c, CURLOPT_PRIVATE, t);
    if (curl_multi_add_handle(s->multi, c) != CURLM_OK) {
        transfer_free(t);
        return JOBQ_ENOMEM;
    }
    g_queue_push_tail_link(&s->transfers, &t->link);
    return 0;
}

size_t jobq_sender_active(const jobq_sender *s)
{
    return s->transfers.length;
}

static void on_timer_closed(uv_handle_t *h)
{
    jobq_sender *s = h->data;

    s->open--;
    maybe_free(s);
}

void jobq_sender_close(jobq_sender *s)
{
    GList *l;

    if (!s || s->closing)
        return;
    while ((l = g_queue_peek_head_link(&s->transfers))) {
        transfer *t = l->data;
        g_queue_unlink(&s->transfers, l);
        curl_multi_remove_handle(s->multi, t->easy);
        transfer_free(t);
    }
    curl_multi_cleanup(s->multi); /* may still report sockets as removed */
    s->multi = NULL;
    while ((l = g_queue_peek_head_link(&s->socks)))
        sock_close(s, l->data);
    s->closing = 1;
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}
