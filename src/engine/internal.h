/*
 * internal.h — the engine's structures, shared by the files of src/engine/ only.
 *
 * Indexes (no operation scans all jobs):
 *   e->jobs     id → job (a GHashTable used as a set keyed by the job's id)
 *   q->ready    the queue's fetchable jobs ordered by (priority desc, seq asc): a GSequence,
 *               a balanced tree that also answers a job's position in O(log n)
 *   e->timers   one binary heap for every job waiting on time: delayed runs, retries, lease
 *               expiries and attempt timeouts (a job has at most one pending time)
 *   q lists     every job that is not in q->ready sits in exactly one intrusive list of its
 *               queue: pending (enqueued, not yet durable), delayed (scheduled/retrying),
 *               active, completed, failed, cancelled (final lists in finish order, which is
 *               what retention trims from the front)
 *   e->all      every job in creation (seq) order, for listing newest first
 *
 * Deleted jobs become tombstones: out of every index at once, freed only when no batch
 * that is still being committed can list them (e->graveyard).
 */
#ifndef JOBQ_ENGINE_INTERNAL_H
#define JOBQ_ENGINE_INTERNAL_H

#include "engine/engine.h"

/* An intrusive doubly-linked list. */
typedef struct jobq_link {
    struct jobq_link *prev, *next;
} jobq_link;

typedef struct jobq_list {
    jobq_link head; /* sentinel */
    int64_t n;
} jobq_list;

void jobq_list_init(jobq_list *l);
void jobq_list_push(jobq_list *l, jobq_link *x); /* at the back */
void jobq_list_remove(jobq_list *l, jobq_link *x);
#define jobq_list_first(l) ((l)->n ? (l)->head.next : NULL)
#define jobq_list_last(l) ((l)->n ? (l)->head.prev : NULL)

/* job flags */
enum {
    JF_UNCOMMITTED = 1 << 0, /* enqueue not durable yet: never handed out */
    JF_PERSISTED = 1 << 1,   /* an INSERT record has been emitted */
    JF_DIRTY = 1 << 2,       /* in e->dirty */
    JF_DELETED = 1 << 3,     /* tombstone: out of every index, freed after its batch */
    JF_CANCEL_REQUESTED = 1 << 4,
    JF_HIST_ERROR = 1 << 5, /* the next history entry carries x->error */
};

/* Which list of its queue a job is in. */
enum { JL_NONE, JL_PENDING, JL_DELAYED, JL_ACTIVE, JL_COMPLETED, JL_FAILED, JL_CANCELLED };

/* Rarely-needed parts of a job, allocated on first need. */
typedef struct jobq_job_extra {
    char *name, *group, *tier, *project;
    char *tags;       /* JSON object text */
    char *requires;   /* JSON object text */
    char *result;     /* JSON text */
    char *error;      /* JSON text of the error object */
    char *error_type; /* borrowed view into nothing: owned copy of error.type, may be NULL */
    char *progress;   /* JSON text */
    char *checkpoint; /* JSON text */
    char *worker;     /* current (active) or last worker */
    uint64_t lease;   /* current lease, 0 = none; kept after completion for idempotency */
    int64_t lease_expires_at;
    int64_t deadline; /* attempt timeout, 0 = none */
    int64_t started_at, finished_at;
    int log_n;       /* log lines written (next n) */
    int log_first;   /* n of the oldest kept line */
    int log_attempt; /* attempt the last lines belong to */
} jobq_job_extra;

/* A heap entry: the key lives here, not in the job, so waiting jobs do not pay for it. */
typedef struct jobq_timer {
    int64_t at; /* ms since epoch */
    jobq_job *j;
} jobq_timer;

struct jobq_job {
    jobq_queue *q;
    char *data; /* JSON text, points into the tail; immutable */
    uint32_t data_len;
    uint32_t heap_idx; /* index in e->timers + 1, 0 = not there */
    int64_t seq;
    int64_t created_at, updated_at;
    int64_t run_at; /* scheduled / retrying: when it becomes ready */
    int16_t priority;
    uint8_t state;
    uint8_t list; /* JL_* */
    uint16_t flags;
    uint16_t attempt, max_attempts, stalls;
    uint16_t hist_n;
    int32_t lease_ms, timeout_ms; /* ms; at most 2^31-1 (about 24.8 days) */
    jobq_backoff *backoff;        /* owned reference */
    GSequenceIter *ready;         /* in q->ready, or NULL */
    jobq_link qlink;              /* in one of q's lists */
    jobq_link alink;              /* in e->all */
    jobq_job_extra *x;
    /* tail: id '\0' data '\0' (the id is JOB_ID(j): its place needs no pointer) */
};

#define JOB_ID(j) ((char *)((j) + 1))
#define JOBQ_MAX_ID 128 /* longest job id (client-given ids are checked against it) */

#define JOB_OF_QLINK(l) ((jobq_job *)((char *)(l)-offsetof(jobq_job, qlink)))
#define JOB_OF_ALINK(l) ((jobq_job *)((char *)(l)-offsetof(jobq_job, alink)))

struct jobq_queue {
    char id[37];
    char *name;
    jobq_queue_opts o;
    int status;
    int deleted;
    int dirty;
    int64_t created_at, updated_at, paused_at;
    int64_t counts[JOBQ_NSTATES];
    int64_t enqueued, processed, failed, retried, stalled;
    int64_t last_processed_at, last_error_at;
    char *last_error;
    GSequence *ready;
    jobq_list pending, delayed, active, completed, failed_l, cancelled;
    /* throughput estimate for estimated_start_ms: completions per ms, smoothed */
    double rate;
    int64_t rate_at;
    int64_t rate_n;
};

typedef struct jobq_worker {
    char *id;
    char **queues;
    size_t nq;
    int64_t active;
    int64_t last_seen_at;
} jobq_worker;

struct jobq_engine {
    jobq_engine_config cfg;
    jobq_engine_hooks hooks;
    GHashTable *jobs;      /* set of jobq_job*, hashed by id */
    GHashTable *queues;    /* name → jobq_queue* */
    GHashTable *queue_ids; /* id → jobq_queue* */
    GHashTable *workers;   /* id → jobq_worker* */
    jobq_timer *timers;    /* binary min-heap on .at */
    size_t ntimers, timers_cap;
    jobq_list all; /* every job, creation order (alink) */
    int64_t next_seq;
    uint64_t rng;       /* splitmix64 state */
    int64_t last_id_ms; /* UUIDv7 monotonicity */
    uint64_t id_counter;
    int64_t started_at;
    int64_t last_retention; /* ms since epoch of the last age sweep */
    /* group commit */
    jobq_batch *batch;       /* records not yet taken (history, logs, queue deletes) */
    GPtrArray *dirty;        /* jobs whose row changed */
    GPtrArray *dirty_queues; /* queues whose row changed */
    GPtrArray *dead_queues;  /* deleted queues to free at take */
    GPtrArray *fresh;        /* jobs enqueued since the last take (uncommitted) */
    GQueue inflight;         /* per taken, unconfirmed batch: a GPtrArray of its new jobs */
    size_t inflight_jobs;
    GPtrArray *graveyard;      /* deleted jobs an unconfirmed batch may still list */
    int64_t seq_written;       /* next_seq as last written to the store's meta */
    int64_t last_worker_prune; /* ms since epoch */
    int loading;
    struct jobq_scheds *scheds; /* recurring jobs (schedule.c), NULL until the first */
    /* events (event.c) */
    uint64_t event_seq;          /* the next event's seq */
    uint64_t event_seq_reserved; /* seqs below this are covered by the stored mark */
    int event_mark_due;          /* the mark must go into the next batch */
    int ev_retry;                /* the attempt being re-queued failed: job.retrying */
    size_t events_untaken;       /* events emitted since the last take_changes */
    GString *ev_buf, *ev_fields; /* scratch: the event being rendered, its extra fields */
};

/* engine.c */
void jobq_worker_free(gpointer w);
uint64_t jobq_rand(jobq_engine *e);
double jobq_rand01(jobq_engine *e);
void jobq_mark_dirty(jobq_engine *e, jobq_job *j);
void jobq_hist(jobq_engine *e, jobq_job *j, int from, int to, int64_t now);
void jobq_set_state(jobq_engine *e, jobq_job *j, int to, int64_t now); /* counts + history */
void jobq_timer_set(jobq_engine *e, jobq_job *j, int64_t at);
void jobq_timer_clear(jobq_engine *e, jobq_job *j);
void jobq_make_ready(jobq_engine *e, jobq_job *j, int64_t now); /* → waiting, fetchable */
void jobq_unready(jobq_engine *e, jobq_job *j);                 /* out of q->ready / lists */
void jobq_list_move(jobq_job *j, int list);
void jobq_job_destroy(jobq_engine *e, jobq_job *j, int64_t now); /* tombstone + unlink */
jobq_job_extra *jobq_extra(jobq_job *j);
void jobq_finalize(jobq_engine *e, jobq_job *j, int to, int64_t now);
void jobq_queue_touch(jobq_engine *e, jobq_queue *q, int64_t now);
void jobq_check_drained(jobq_engine *e, jobq_queue *q, int64_t now);
void jobq_notify_ready(jobq_engine *e, jobq_queue *q);
int jobq_queue_can_dispatch(const jobq_queue *q);
jobq_job *jobq_job_alloc(const char *id, const char *data, size_t data_len);
void jobq_job_free(jobq_job *j);
void jobq_make_uuid7(jobq_engine *e, int64_t now, char out[37]);
void jobq_lease_text(uint64_t lease, char buf[17]); /* 16 lowercase hex digits */

gint jobq_ready_cmp(gconstpointer a, gconstpointer b, gpointer ud);
double jobq_queue_rate_per_ms(const jobq_queue *q, int64_t now);
int64_t jobq_engine_estimated_start(const jobq_engine *e, const jobq_job *j, int64_t now);
/* The running attempt of j failed with f (no lease check): retry, fail or cancel. (job.c) */
void jobq_fail_attempt(jobq_engine *e, jobq_job *j, const jobq_failure *f, int64_t now);

/* event.c */
void jobq_event_state(jobq_engine *e, jobq_job *j, int from, int64_t now);
void jobq_event_progress(jobq_engine *e, jobq_job *j, int64_t now);
void jobq_event_queue(jobq_engine *e, jobq_queue *q, const char *type, int64_t now);
void jobq_event_take(jobq_engine *e, jobq_batch *b);
void jobq_event_load_mark(jobq_engine *e, const char *value);

/* codec.c */
jobq_backoff *jobq_backoff_parse(const json_t *v, const char **field, const char **why);
void jobq_backoff_render(const jobq_backoff *b, GString *o);

/* queue.c */
jobq_queue *jobq_queue_alloc(jobq_engine *e, const char *name, const char *id, int64_t now);
void jobq_queue_free(jobq_queue *q);
char *jobq_queue_config_text(const jobq_queue *q); /* JSON for the store (new, g_free) */
void jobq_retention(jobq_engine *e, jobq_queue *q, int64_t now, int by_age);
int jobq_valid_name(const char *s);
int jobq_valid_job_id(const char *s); /* event.c */
void jobq_event_state(jobq_engine *e, jobq_job *j, int from, int64_t now);
void jobq_event_progress(jobq_engine *e, jobq_job *j, int64_t now);
void jobq_event_queue(jobq_engine *e, jobq_queue *q, const char *type, int64_t now);
void jobq_event_take(jobq_engine *e, jobq_batch *b);
void jobq_event_load_mark(jobq_engine *e, const char *value);

/* codec.c */

/* job.c */
void jobq_worker_active(jobq_engine *e, const char *worker, int delta);
char *jobq_job_opts_text(const jobq_job *j); /* JSON for the store (new, g_free) */
int jobq_job_apply_opts(jobq_job *j, const char *opts_json);

#endif
