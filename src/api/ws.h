/*
 * ws.h — WebSocket connections (RFC 6455) on the loop: the handshake on top of the HTTP
 * server's upgrade, framing by wslay, I/O by a uv_poll on the upgraded socket.
 *
 * Used by /v1/events (a subscriber) and /v1/worker (the worker channel). Text messages
 * only; pings are answered by wslay; a close is answered and the socket released.
 */
#ifndef JOBQ_WS_H
#define JOBQ_WS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http/server.h"

typedef struct jobq_ws jobq_ws;

typedef struct jobq_ws_handlers {
    /* A complete text message (binary ones are refused with a close 1003). */
    void (*on_text)(void *ud, jobq_ws *ws, const char *msg, size_t len);
    /* The connection is over (closed by either side, failed, or never opened); ws is freed
     * when this returns. Called exactly once, from the loop (never from inside a call to
     * jobq_ws_send or jobq_ws_close). */
    void (*on_close)(void *ud, jobq_ws *ws);
} jobq_ws_handlers;

/* 1 when rq asks for a WebSocket upgrade (GET with Upgrade: websocket). */
int jobq_ws_requested(jobq_req *rq);

/* Answers rq's upgrade: checks the handshake headers (400 naming the bad one, and NULL), or
 * answers 101 and returns the connection, usable at once (messages sent before the socket
 * is handed over wait in its queue). Messages over max_msg bytes close it with 1009. */
jobq_ws *jobq_ws_accept(jobq_req *rq, uv_loop_t *loop, size_t max_msg, const jobq_ws_handlers *h,
                        void *ud);

/* Queues a text message (copied) and sends what the socket takes now. 0, or -1 when the
 * connection is closing. */
int jobq_ws_send(jobq_ws *ws, const char *text, size_t len);
/* 1 once the connection is closing or over: nothing more can be sent. */
int jobq_ws_closing(const jobq_ws *ws);
/* Bytes queued and not yet written to the socket. */
size_t jobq_ws_queued(const jobq_ws *ws);
/* Starts the close handshake (code 1000 normal, 1001 going away, 1008 policy, 1011 error):
 * what is queued is sent first; the socket is released when the peer answers or after a few
 * seconds. */
void jobq_ws_close(jobq_ws *ws, uint16_t code, const char *reason);

#endif
