/*
 * writer.c — the store's writer thread: a FIFO of tasks (batches and reads) applied one by
 * one through a backend vtable, and a done-list handed back to the loop thread.
 *
 * The loop thread submits; the writer pops in submission order, calls the backend (one
 * batch = one transaction = one sync), moves the task to the done-list and wakes the loop
 * with notify() when that list was empty. jobq_store_poll() on the loop thread takes the
 * whole list and runs the callbacks there, so callers never see the writer thread.
 *
 * Failure ordering: when a batch fails, later batches that were queued before the caller
 * could know of it must not be applied (they may update or delete what the failed one
 * inserted). Each task carries the loop's epoch at submission; the epoch moves on just
 * before a failure is handed to its callback, and the writer fails unapplied every batch
 * whose epoch is older than the delivery of the last failure it produced.
 *
 * What it never does: look inside a batch, or know which backend it drives.
 */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "store/store.h"
#include "util/err.h"

enum task_kind { TASK_BATCH, TASK_HIST, TASK_LOGS };

typedef struct task {
    struct task *next;
    enum task_kind kind;
    int status;     /* result of the backend call; 0 or negative */
    bool failed;    /* a batch the backend tried and failed (not one failed unapplied) */
    uint64_t epoch; /* s->epoch at submission */
    void *ud;
    int64_t job_seq; /* reads */
    int attempt;     /* read_logs */
    union {
        jobq_commit_cb commit;
        jobq_hist_cb hist;
        jobq_logs_cb logs;
    } cb;
    jobq_batch *batch;   /* TASK_BATCH, owned by the task until its callback */
    jobq_hist_row *rows; /* TASK_HIST result, new */
    char **lines;        /* TASK_LOGS result, new */
    size_t n;            /* rows / lines */
} task;

typedef struct task_list {
    task *head, *tail;
} task_list;

struct jobq_store {
    const jobq_store_backend *ops; /* borrowed */
    void *be;                      /* owned: ops->close */

    pthread_mutex_t mu;
    pthread_cond_t wake; /* todo gained a task, or stopping */
    task_list todo;      /* under mu */
    task_list done;      /* under mu */
    bool stopping;       /* under mu: drain todo, then exit */
    /* Batches with epoch < clear_epoch fail unapplied; UINT64_MAX while a failure the
     * writer produced has not been delivered yet. Under mu. */
    uint64_t clear_epoch;
    unsigned undelivered; /* failures produced but not yet delivered; under mu */

    uint64_t epoch; /* loop thread only */
    bool closed;    /* loop thread only: jobq_store_free has begun; refuse new tasks */
    bool started;   /* loop thread only */
    pthread_t thread;
    void (*notify)(void *ud);
    void *notify_ud;
};

static void list_push(task_list *l, task *t)
{
    t->next = NULL;
    if (l->tail) {
        l->tail->next = t;
    } else {
        l->head = t;
    }
    l->tail = t;
}

static task *list_pop(task_list *l)
{
    task *t = l->head;
    if (t) {
        l->head = t->next;
        if (!l->head) {
            l->tail = NULL;
        }
    }
    return t;
}

jobq_store *jobq_store_new(const jobq_store_backend *ops, void *be)
{
    jobq_store *s = calloc(1, sizeof(*s));
    if (!s) {
        goto out_close;
    }
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        goto out_free;
    }
    if (pthread_cond_init(&s->wake, NULL) != 0) {
        goto out_mutex;
    }
    s->ops = ops;
    s->be = be;
    return s;

out_mutex:
    pthread_mutex_destroy(&s->mu);
out_free:
    free(s);
out_close:
    ops->close(be);
    return NULL;
}

/* Runs task t against the backend (writer thread, or the caller of free when the writer
 * never started). `poisoned`: a batch that must fail unapplied. */
static void run_task(jobq_store *s, task *t, bool poisoned)
{
    switch (t->kind) {
    case TASK_BATCH:
        if (poisoned) {
            t->status = JOBQ_ESTORE;
        } else {
            t->status = s->ops->apply(s->be, t->batch);
            t->failed = t->status < 0;
        }
        break;
    case TASK_HIST:
        t->status = s->ops->read_history(s->be, t->job_seq, &t->rows, &t->n);
        break;
    case TASK_LOGS:
        t->status = s->ops->read_logs(s->be, t->job_seq, t->attempt, &t->lines, &t->n);
        break;
    }
}

/* Pops and runs the next task, moves it to done. Called and returns with s->mu held; false
 * when todo was empty. */
static bool run_next(jobq_store *s)
{
    task *t = list_pop(&s->todo);
    if (!t) {
        return false;
    }
    bool poisoned = t->kind == TASK_BATCH && t->epoch < s->clear_epoch;
    pthread_mutex_unlock(&s->mu);
    run_task(s, t, poisoned);
    pthread_mutex_lock(&s->mu);
    if (t->failed) {
        s->clear_epoch = UINT64_MAX;
        s->undelivered++;
    }
    bool was_empty = s->done.head == NULL;
    list_push(&s->done, t);
    if (was_empty && s->notify) {
        /* Outside the lock: notify may take locks of its own (uv_async_send does not, but a
         * test's condition variable may). */
        pthread_mutex_unlock(&s->mu);
        s->notify(s->notify_ud);
        pthread_mutex_lock(&s->mu);
    }
    return true;
}

static void *writer_main(void *arg)
{
    jobq_store *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        bool worked = false;
        while (run_next(s)) {
            worked = true;
        }
        if (s->stopping) {
            break;
        }
        if (worked && s->ops->idle) {
            pthread_mutex_unlock(&s->mu);
            s->ops->idle(s->be);
            pthread_mutex_lock(&s->mu);
            continue; /* tasks may have arrived meanwhile */
        }
        pthread_cond_wait(&s->wake, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int jobq_store_load(jobq_store *s, const jobq_load_cb *cb)
{
    if (s->started || s->closed) {
        return JOBQ_ESTATE;
    }
    return s->ops->load(s->be, cb);
}

int jobq_store_start(jobq_store *s, void (*notify)(void *ud), void *ud)
{
    if (s->started || s->closed) {
        return JOBQ_ESTATE;
    }
    s->notify = notify;
    s->notify_ud = ud;

    /* The writer takes no asynchronous signals: they belong to the loop thread. SIGXFSZ
     * blocked means a file-size limit fails the write (EFBIG → 503) instead of killing the
     * server. Faults stay deliverable. */
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&s->thread, NULL, writer_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        return JOBQ_ENOMEM;
    }
    s->started = true;
    return 0;
}

/* Queues t (stolen) at the tail of todo and wakes the writer. */
static void enqueue(jobq_store *s, task *t)
{
    t->epoch = s->epoch;
    pthread_mutex_lock(&s->mu);
    list_push(&s->todo, t);
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
}

int jobq_store_submit(jobq_store *s, jobq_batch *b, jobq_commit_cb cb, void *ud)
{
    if (s->closed) {
        return JOBQ_ESTATE;
    }
    task *t = calloc(1, sizeof(*t));
    if (!t) {
        return JOBQ_ENOMEM;
    }
    t->kind = TASK_BATCH;
    t->batch = b;
    t->cb.commit = cb;
    t->ud = ud;
    enqueue(s, t);
    return 0;
}

int jobq_store_read_history(jobq_store *s, int64_t job_seq, jobq_hist_cb cb, void *ud)
{
    if (s->closed) {
        return JOBQ_ESTATE;
    }
    task *t = calloc(1, sizeof(*t));
    if (!t) {
        return JOBQ_ENOMEM;
    }
    t->kind = TASK_HIST;
    t->job_seq = job_seq;
    t->cb.hist = cb;
    t->ud = ud;
    enqueue(s, t);
    return 0;
}

int jobq_store_read_logs(jobq_store *s, int64_t job_seq, int attempt, jobq_logs_cb cb, void *ud)
{
    if (s->closed) {
        return JOBQ_ESTATE;
    }
    task *t = calloc(1, sizeof(*t));
    if (!t) {
        return JOBQ_ENOMEM;
    }
    t->kind = TASK_LOGS;
    t->job_seq = job_seq;
    t->attempt = attempt;
    t->cb.logs = cb;
    t->ud = ud;
    enqueue(s, t);
    return 0;
}

/* Runs t's callback and frees t with whatever read result it holds. A batch goes back to
 * the callback's owner. */
static void deliver(jobq_store *s, task *t)
{
    switch (t->kind) {
    case TASK_BATCH:
        if (t->failed) {
            /* From here on the caller knows: what it submits next is applied again. */
            s->epoch++;
            pthread_mutex_lock(&s->mu);
            if (--s->undelivered == 0) {
                s->clear_epoch = s->epoch;
            }
            pthread_mutex_unlock(&s->mu);
        }
        t->cb.commit(t->ud, t->batch, t->status);
        break;
    case TASK_HIST:
        t->cb.hist(t->ud, t->status, t->rows, t->n);
        for (size_t i = 0; i < t->n; i++) {
            free(t->rows[i].worker);
            free(t->rows[i].error);
        }
        free(t->rows);
        break;
    case TASK_LOGS:
        t->cb.logs(t->ud, t->status, t->lines, t->n);
        for (size_t i = 0; i < t->n; i++) {
            free(t->lines[i]);
        }
        free(t->lines);
        break;
    }
    free(t);
}

void jobq_store_poll(jobq_store *s)
{
    pthread_mutex_lock(&s->mu);
    task *t = s->done.head;
    s->done.head = s->done.tail = NULL;
    pthread_mutex_unlock(&s->mu);
    while (t) {
        task *next = t->next;
        deliver(s, t);
        t = next;
    }
}

void jobq_store_free(jobq_store *s)
{
    if (!s) {
        return;
    }
    s->closed = true;
    pthread_mutex_lock(&s->mu);
    if (s->started) {
        s->stopping = true;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    } else {
        /* Never started: what was queued runs here, in order, so nothing is lost. */
        while (run_next(s)) {
        }
        pthread_mutex_unlock(&s->mu);
    }
    jobq_store_poll(s);
    s->ops->close(s->be);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
