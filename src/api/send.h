/*
 * send.h — outgoing HTTP POSTs on the loop: libcurl's multi interface driven by libuv.
 *
 * curl tells us which sockets to watch and when to wake it (CURLMOPT_SOCKETFUNCTION,
 * CURLMOPT_TIMERFUNCTION); a uv_poll per socket and one uv_timer hand the readiness back
 * with curl_multi_socket_action. Nothing here blocks: name resolution runs in curl's
 * resolver thread, and every transfer is bounded by a timeout.
 *
 * What it never does: retry, sign, or decide what a delivery means (webhooks.c does).
 * Everything runs on the loop thread.
 */
#ifndef JOBQ_SEND_H
#define JOBQ_SEND_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct jobq_sender jobq_sender;

/* A finished POST: code is the HTTP status (0 when none came: refused, timed out, …) and
 * error a description of what went wrong, NULL on a 2xx. ms: how long it took. Both are
 * borrowed for the call. */
typedef void (*jobq_sent_fn)(void *ud, long code, const char *error, int64_t ms);

/* New sender on loop; every transfer is abandoned after timeout_ms. NULL on failure. */
jobq_sender *jobq_sender_new(uv_loop_t *loop, int64_t timeout_ms);

/* POSTs body (copied) to url with the given header lines ("Name: value", copied) and calls
 * done(ud, …) once, from a later loop callback. 0, or a negative jobq code (the call is then
 * never made). */
int jobq_sender_post(jobq_sender *s, const char *url, const char *body, size_t len,
                     const char *const *headers, size_t nheaders, jobq_sent_fn done, void *ud);

/* Number of transfers in progress. */
size_t jobq_sender_active(const jobq_sender *s);

/* Abandons every transfer (their callbacks never run) and closes the handles; the sender is
 * freed once libuv has closed them (after the loop runs them). Takes NULL. */
void jobq_sender_close(jobq_sender *s);

#endif
