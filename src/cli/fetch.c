/*
 * fetch.c — the fetch thread of `jobq worker` (see fetch.h).
 *
 * Why a thread: the server parks a fetch up to wait_ms (30 s) until a job is ready. Parking
 * it here keeps the main loop free to serve its children's pipes and timers without
 * re-polling the server at short intervals. On transport or server-side errors the thread
 * backs off (1 s doubling to 30 s) and tries again; a permanent refusal ends it.
 *
 * What it never does: touch a job after handing it over.
 */
#include "cli/fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "jobq/jobq.h"

#define FETCH_WAIT_MS 30000L
#define BACKOFF_FIRST_MS 1000L
#define BACKOFF_MAX_MS 30000L

struct jobq_fetch {
    pthread_t thread;
    jobq_client *client; /* owned; used by the thread only (and jobq_client_abort) */
    pthread_mutex_t mu;
    pthread_cond_t cv;         /* on CLOCK_MONOTONIC */
    int free_slots;            /* guarded: slots no job holds or is being fetched for */
    bool stop;                 /* guarded: stop fetching */
    bool done;                 /* guarded: the thread has ended */
    bool fatal;                /* guarded: the server refused the fetch for good */
    json_t *jobs;              /* guarded: fetched, not yet taken (array) */
    int wake_r, wake_w;        /* the thread writes a byte after each change */
    const char *const *queues; /* borrowed */
    size_t nqueues;
    const char *worker_id; /* borrowed */
    json_t *capacity;      /* borrowed, may be NULL: sent with every fetch */
};

static void wake(jobq_fetch *f)
{
    char b = 'w';

    if (write(f->wake_w, &b, 1) < 0) {
        /* A full pipe already holds a wake-up. */
    }
}

/* Permanent refusals: asking again will not help. */
static bool fatal_refusal(int rc, long status)
{
    return rc == JOBQ_CLIENT_ESERVER && status >= 400 && status < 500 && status != 408 &&
           status != 429;
}

/* Waits on the condition variable for `ms` or until stopped; holds f->mu. */
static void back_off(jobq_fetch *f, long ms)
{
    struct timespec until;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (!f->stop && pthread_cond_timedwait(&f->cv, &f->mu, &until) != ETIMEDOUT)
        ;
}

static void *fetch_main(void *arg)
{
    jobq_fetch *f = arg;
    long backoff = 0, status;
    json_t *jobs;
    int n, rc;

    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->stop && f->free_slots <= 0)
            pthread_cond_wait(&f->cv, &f->mu);
        if (f->stop)
            break;
        n = f->free_slots;
        pthread_mutex_unlock(&f->mu);

        rc = jobq_client_fetch_fit(f->client, f->queues, f->nqueues, n, FETCH_WAIT_MS,
                                   f->worker_id, f->capacity, &jobs);
        status = jobq_client_status(f->client);
        if (rc < 0 && rc != JOBQ_CLIENT_EABORTED)
            fprintf(stderr, "jobq: %s: %s (fetch; %s)\n", jobq_client_error_code(f->client),
                    jobq_client_error_message(f->client),
                    fatal_refusal(rc, status) ? "giving up" : "trying again");

        pthread_mutex_lock(&f->mu);
        if (rc == 0) {
            backoff = 0;
            if (json_array_size(jobs) > 0) {
                /* Out of memory here, the jobs' leases expire and they run again. */
                json_array_extend(f->jobs, jobs);
                f->free_slots -= (int)json_array_size(jobs);
                wake(f);
            }
            json_decref(jobs);
            continue;
        }
        if (rc == JOBQ_CLIENT_EABORTED)
            break;
        if (fatal_refusal(rc, status)) {
            f->fatal = true;
            break;
        }
        backoff = backoff ? backoff * 2 : BACKOFF_FIRST_MS;
        if (backoff > BACKOFF_MAX_MS)
            backoff = BACKOFF_MAX_MS;
        back_off(f, backoff);
    }
    f->done = true;
    pthread_mutex_unlock(&f->mu);
    wake(f);
    return NULL;
}

jobq_fetch *jobq_fetch_start(const char *url, const char *token, const char *const *queues,
                             size_t nqueues, const char *worker_id, int slots,
                             json_t *capacity)
{
    pthread_condattr_t ca;
    sigset_t block, old;
    jobq_fetch *f;
    int fds[2], rc;

    f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->queues = queues;
    f->nqueues = nqueues;
    f->worker_id = worker_id;
    f->capacity = capacity;
    f->free_slots = slots;
    f->client = jobq_client_new(url);
    if (!f->client || (token && jobq_client_set_token(f->client, token) < 0))
        goto out_client;
    f->jobs = json_array();
    if (!f->jobs)
        goto out_client;
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
        goto out_jobs;
    f->wake_r = fds[0];
    f->wake_w = fds[1];
    pthread_mutex_init(&f->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->cv, &ca);
    pthread_condattr_destroy(&ca);

    /* Signals belong to the main thread's loop; the fetch thread inherits them blocked. */
    sigemptyset(&block);
    sigaddset(&block, SIGCHLD);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    rc = pthread_create(&f->thread, NULL, fetch_main, f);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        goto out_sync;
    return f;

out_sync:
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    close(f->wake_r);
    close(f->wake_w);
out_jobs:
    json_decref(f->jobs);
out_client:
    jobq_client_free(f->client);
    free(f);
    return NULL;
}

int jobq_fetch_fd(const jobq_fetch *f)
{
    return f->wake_r;
}

json_t *jobq_fetch_take(jobq_fetch *f)
{
    json_t *jobs, *fresh = json_array();
    char buf[256];

    while (read(f->wake_r, buf, sizeof(buf)) > 0)
        ;
    if (!fresh)
        return NULL;
    pthread_mutex_lock(&f->mu);
    jobs = f->jobs;
    f->jobs = fresh;
    pthread_mutex_unlock(&f->mu);
    return jobs;
}

void jobq_fetch_release(jobq_fetch *f, int n)
{
    pthread_mutex_lock(&f->mu);
    f->free_slots += n;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

bool jobq_fetch_over(jobq_fetch *f, bool *fatal)
{
    bool over;

    pthread_mutex_lock(&f->mu);
    over = f->done && json_array_size(f->jobs) == 0;
    *fatal = f->fatal;
    pthread_mutex_unlock(&f->mu);
    return over;
}

void jobq_fetch_stop(jobq_fetch *f)
{
    pthread_mutex_lock(&f->mu);
    f->stop = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    jobq_client_abort(f->client);
}

void jobq_fetch_free(jobq_fetch *f)
{
    if (!f)
        return;
    jobq_fetch_stop(f);
    pthread_join(f->thread, NULL);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    close(f->wake_r);
    close(f->wake_w);
    json_decref(f->jobs);
    jobq_client_free(f->client);
    free(f);
}
