/*
 * store.h — the durable store behind the engine.
 *
 * The engine keeps every live job in memory; the store is where its changes become durable
 * and where they are read back on start. Callers speak in rows and records; no SQL (or any
 * backend detail) leaves a backend file. Backends: sqlite.c (embedded, default); a PostgreSQL
 * backend implements the same vtable later.
 *
 * Threading: jobq_store_submit() and jobq_store_read_*() are called from the loop thread;
 * the backend runs on one writer thread (writer.c) that applies tasks in submission order:
 * one batch = one transaction = one sync. Completions are handed back through
 * jobq_store_poll() on the loop thread after the writer wakes the loop with the notify
 * callback given to jobq_store_start().
 *
 * What it never does: decide anything about jobs. It stores what it is told.
 */
#ifndef JOBQ_STORE_H
#define JOBQ_STORE_H

#include <stddef.h>
#include <stdint.h>

/* One job row. Strings are NUL-terminated, owned by whoever holds the row (a record owns its
 * row's strings; a row passed to a load callback is borrowed for the call). NULL = SQL NULL. */
typedef struct jobq_job_row {
    int64_t seq;    /* primary key: creation order, unique, never reused */
    char *id;       /* job id (UUIDv7 text or client-given) */
    char *queue_id; /* queue's id */
    int state;      /* enum jobq_state value */
    int priority;
    int attempt;
    int max_attempts;
    int stalls;
    int64_t run_at;      /* ms since epoch, 0 = none */
    int64_t created_at;  /* ms since epoch */
    int64_t updated_at;  /* ms since epoch */
    int64_t started_at;  /* ms since epoch, 0 = never */
    int64_t finished_at; /* ms since epoch, 0 = not final */
    char *data;          /* JSON text; immutable after insert */
    char *opts;          /* JSON text of the job's options; immutable after insert */
    char *result;        /* JSON text */
    char *error;         /* JSON text of the error object */
    char *progress;      /* JSON text of the progress object */
    char *checkpoint;    /* JSON text */
    char *worker;        /* last worker that ran it */
    int hist_n;          /* history entries written so far (next n) */
    int log_n;           /* log lines written so far (next n) */
    int flags;           /* JOBQ_ROW_* */
    int64_t lease;       /* the lease that ran the last attempt (repeat completions) */
} jobq_job_row;

enum { JOBQ_ROW_CANCEL_REQUESTED = 1 };

typedef struct jobq_hist_row {
    int64_t job_seq;
    int n;          /* per-job sequence number */
    int64_t at;     /* ms since epoch */
    int from_state; /* enum jobq_state, -1 = none (created) */
    int to_state;
    int attempt;
    char *worker; /* may be NULL */
    char *error;  /* JSON text, may be NULL */
} jobq_hist_row;

typedef struct jobq_queue_row {
    char *id;
    char *name;
    char *config; /* JSON text: the queue's options, status and counters to keep */
    int64_t created_at;
} jobq_queue_row;

typedef enum jobq_rec_kind {
    JOBQ_REC_JOB_INSERT,   /* row: every column */
    JOBQ_REC_JOB_UPDATE,   /* row: every column but data, opts, queue_id, id, created_at */
    JOBQ_REC_JOB_DELETE,   /* job_seq: the job and its history; its logs when `logs` */
    JOBQ_REC_HIST,         /* hist: appended to the job's history in record order */
    JOBQ_REC_LOG,          /* log: append one line */
    JOBQ_REC_LOG_TRIM,     /* log: delete lines of job_seq with n < log.n */
    JOBQ_REC_QUEUE_PUT,    /* queue: insert or replace */
    JOBQ_REC_QUEUE_DELETE, /* queue.id: the queue row (its jobs are deleted by JOB_DELETE records)
                            */
    JOBQ_REC_META_PUT,     /* meta key/value, e.g. "config" */
    JOBQ_REC_DOC_PUT,      /* doc: insert or replace (kind, id) with body */
    JOBQ_REC_DOC_DELETE,   /* doc: delete (kind, id); body unused */
} jobq_rec_kind;

typedef struct jobq_rec {
    jobq_rec_kind kind;
    int64_t job_seq; /* JOB_DELETE */
    int logs;        /* JOB_DELETE: the job has log lines to delete too */
    union {
        jobq_job_row job;   /* JOB_INSERT, JOB_UPDATE */
        jobq_hist_row hist; /* HIST */
        struct {
            int64_t job_seq;
            int n;
            int attempt;
            int64_t at;
            char *line;
        } log;                /* LOG, LOG_TRIM (n only) */
        jobq_queue_row queue; /* QUEUE_PUT, QUEUE_DELETE (id only) */
        struct {
            char *key;
            char *value;
        } meta; /* META_PUT */
        struct {
            char *kind; /* e.g. "flow", "schedule", "webhook": who owns the document */
            char *id;
            char *body; /* JSON text, opaque to the store */
        } doc;          /* DOC_PUT, DOC_DELETE */
    } u;
} jobq_rec;

/* A batch: the records of one group commit, applied in order in one transaction. */
typedef struct jobq_batch {
    jobq_rec *recs;
    size_t n, cap;
    uint64_t id; /* set by the caller; echoed in the completion */
} jobq_batch;

/* Returns a new empty batch (NULL on OOM). jobq_batch_free takes NULL and frees every
 * record's strings. jobq_batch_add returns a pointer to a zeroed record of `kind` to fill in
 * (strings stolen by the batch; the pointer is valid until the next add) or NULL on OOM. */
jobq_batch *jobq_batch_new(void);
void jobq_batch_free(jobq_batch *b);
jobq_rec *jobq_batch_add(jobq_batch *b, jobq_rec_kind kind);
void jobq_job_row_clear(jobq_job_row *r); /* frees the strings, zeroes the row */

/* Callbacks the loader calls, in this order: every meta pair (but the store's own
 * "schema_version", a reserved key), every document (by kind, then id), every queue (by
 * created_at), then every job in seq order. A NULL callback skips its kind. Rows are
 * borrowed for the call. A non-zero return stops the load with that value.
 *
 * Documents are the store's home for everything that is not a job or a queue (flows,
 * pipelines, schedules, webhooks, deliveries, settings): a JSON body under (kind, id), put
 * and deleted by DOC records, read back whole on load. The store never looks inside. */
typedef struct jobq_load_cb {
    int (*meta)(void *ud, const char *key, const char *value);
    int (*queue)(void *ud, const jobq_queue_row *row);
    int (*job)(void *ud, const jobq_job_row *row);
    void *ud;
    int (*doc)(void *ud, const char *kind, const char *id, const char *body);
} jobq_load_cb;

/* Read results, delivered on the loop thread. `rows`/`lines` are borrowed for the call.
 * status: 0 ok, negative jobq error code on failure. */
typedef void (*jobq_hist_cb)(void *ud, int status, const jobq_hist_row *rows, size_t n);
typedef void (*jobq_logs_cb)(void *ud, int status, char *const *lines, size_t n);
/* Batch completion: status 0 = durable, negative = failed (nothing of it applied). The batch
 * is handed back (owned by the callee again). */
typedef void (*jobq_commit_cb)(void *ud, jobq_batch *b, int status);

typedef struct jobq_store jobq_store;

/* Backend vtable, implemented by sqlite.c (and later postgres.c). Every function runs on the
 * writer thread except open/load/close, which run before start / after stop.
 * apply: all of b or nothing; on failure nothing is applied and the same batch may be
 * applied again later, so it must be safe to retry.
 * read_history/read_logs: on success *rows / *lines are new (a malloc'd array whose strings
 * are malloc'd one by one; the writer frees them with free()), rows in n order; attempt < 0
 * reads the lines of every attempt. On failure they return negative and set nothing.
 * idle (may be NULL): called when the writer's queue has run empty, for housekeeping. */
typedef struct jobq_store_backend {
    const char *name;
    int (*load)(void *be, const jobq_load_cb *cb);
    int (*apply)(void *be, const jobq_batch *b); /* one transaction, synced; 0 or negative */
    int (*read_history)(void *be, int64_t job_seq, jobq_hist_row **rows, size_t *n);
    int (*read_logs)(void *be, int64_t job_seq, int attempt, char ***lines, size_t *n);
    void (*idle)(void *be);
    void (*close)(void *be);
} jobq_store_backend;

/* Wraps backend `be` (stolen: closed by jobq_store_free, or by this function when it fails)
 * driven through `ops` (borrowed, must outlive the store) in a new store. Returns NULL on
 * OOM. Backends' open functions call this; tests use it to put a fake backend behind the
 * writer. */
jobq_store *jobq_store_new(const jobq_store_backend *ops, void *be);

/* Opens the SQLite store in directory `dir` (created if missing; a lock file makes a second
 * opener fail with JOBQ_ELOCKED). On failure returns NULL and sets *err to a negative jobq
 * error code and *msg to a reason (not to be freed; valid until the next open call on this
 * thread). */
jobq_store *jobq_store_open_sqlite(const char *dir, int *err, const char **msg);

/* Loads everything through cb (before jobq_store_start). 0 or negative. */
int jobq_store_load(jobq_store *s, const jobq_load_cb *cb);

/* Starts the writer thread. `notify(ud)` is called from the writer thread whenever a
 * completion is ready (the caller wakes its loop, e.g. uv_async_send). 0 or negative. */
int jobq_store_start(jobq_store *s, void (*notify)(void *ud), void *ud);

/* Queues batch b (stolen) for the writer; cb runs from jobq_store_poll once it is durable
 * or has failed. Returns 0, or negative (then b was not taken).
 * Ordering after a failure: when a batch fails, every later batch that was submitted before
 * that failure reached its callback fails too, unapplied, so nothing is applied out of order
 * behind the hole. Batches submitted from that callback on are applied again: resubmitting
 * the failed ones in their original order (e.g. each from its own callback) restores the
 * sequence. */
int jobq_store_submit(jobq_store *s, jobq_batch *b, jobq_commit_cb cb, void *ud);

/* Queues a read, ordered after every batch submitted before it. 0 or negative. History
 * rows come in n order; log lines in n order, of one attempt (attempt < 0: of every one).
 * Tasks queued before jobq_store_start wait for the writer. */
int jobq_store_read_history(jobq_store *s, int64_t job_seq, jobq_hist_cb cb, void *ud);
int jobq_store_read_logs(jobq_store *s, int64_t job_seq, int attempt, jobq_logs_cb cb, void *ud);

/* Runs the callbacks of every finished task, on the caller's (loop) thread. */
void jobq_store_poll(jobq_store *s);

/* Stops the writer after it has applied everything queued, runs the callbacks of every
 * task still undelivered (as jobq_store_poll; submissions from them are refused), then
 * closes the backend and releases the lock. Call it on the loop thread. Takes NULL. */
void jobq_store_free(jobq_store *s);

#endif
