/*
 * fetch.h — the fetch thread of `jobq worker`: long-polls POST /v1/fetch for as many jobs as
 * the worker has free slots and hands them over to the main thread.
 *
 * Hand-over: the thread appends leased jobs to an array under a mutex and writes a byte to a
 * wake pipe (jobq_fetch_fd()) the main loop polls; jobq_fetch_take() empties the array.
 * Slots: the thread fetches at most the free slots, counts what it got as taken, and sleeps
 * while none is free; jobq_fetch_release() gives slots back.
 *
 * What it never does: run or report jobs; the main thread (worker.c) owns them once taken.
 */
#ifndef JOBQ_CLI_FETCH_H
#define JOBQ_CLI_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

typedef struct jobq_fetch jobq_fetch;

/*
 * Starts the thread with its own client for `url` (and bearer `token`, may be NULL), taking
 * jobs from `queues` (`nqueues` names) as `worker_id`, with `slots` free slots. The thread
 * starts with SIGCHLD, SIGTERM and SIGINT blocked. All strings are borrowed and must outlive
 * the fetcher. Returns a new fetcher, or NULL when out of memory or threads.
 */
jobq_fetch *jobq_fetch_start(const char *url, const char *token, const char *const *queues,
                             size_t nqueues, const char *worker_id, int slots,
                             json_t *capacity);

/* The wake pipe's read end: readable after jobs arrived or the thread ended. */
int jobq_fetch_fd(const jobq_fetch *f);

/* Empties the wake pipe and returns the jobs fetched since the last call (new array
 * reference, maybe empty), or NULL when out of memory (they stay for the next call). */
json_t *jobq_fetch_take(jobq_fetch *f);

/* Gives `n` slots back: their jobs are done. */
void jobq_fetch_release(jobq_fetch *f, int n);

/* Whether the thread has ended and every job it fetched was taken. *fatal is set when it
 * ended because the server refused the fetch for good (a 4xx other than 408/429). */
bool jobq_fetch_over(jobq_fetch *f, bool *fatal);

/* Asks the thread to end and aborts its parked long-poll at once. Not for signal
 * handlers; call from the main loop. */
void jobq_fetch_stop(jobq_fetch *f);

/* Stops and joins the thread, drops untaken jobs, frees `f`. Takes NULL. */
void jobq_fetch_free(jobq_fetch *f);

#endif
