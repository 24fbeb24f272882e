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

/* Orchestration parts of a job (dependencies, flow, review, dedup, cache), allocated only
 * for jobs that use any of them (orch.c). Parents are kept by id: a parent may be removed
 * (retention, DELETE) while its id stays part of the child's record. */
typedef struct jobq_orch {
    char **parents;        /* ids, nparents of them */
    uint16_t nparents;
    uint16_t unmet;        /* parents not completed yet (the job is blocked while > 0) */
    uint8_t review;        /* completion waits in state review */
    uint8_t opf;           /* JOBQ_OPF_*: what a failed or cancelled parent does to it */
    uint8_t cached;        /* made completed from the result cache */
    uint8_t holding;       /* counted in its parents' holds (it is not final) */
    uint32_t holds;        /* dependants not final yet: retention keeps it (their parents) */
    uint32_t flow_idx;     /* its slot in flow->jobs */
    GPtrArray *children;   /* live jobs that depend on it (jobq_job*), or NULL */
    jobq_flow *flow;       /* NULL outside flows (borrowed: flows live as long as the engine) */
    char *ref;             /* its name within the flow */
    char *unique_key;      /* "queue\nkey" index key, NULL = none */
    char *cache_key;       /* "queue\nkey" index key, NULL = none */
    int64_t cache_ttl_ms;
    char *feedback;        /* JSON {"reason","notes","result","at"} after a reject with rerun */
} jobq_orch;

/* A flow: jobs by ref, their states counted as they change (no scans), stored as a
 * document of kind "flow" when made, cancelled, and when it ends. */
struct jobq_flow {
    char id[37];
    char *name, *project;
    int opf;       /* JOBQ_OPF_* */
    int cancelled; /* a flow cancel was asked */
    int state;     /* JOBQ_FLOW_* */
    int64_t created_at, finished_at;
    size_t n;
    char **refs, **ids;
    jobq_job **jobs;   /* NULL once a job is removed */
    size_t present;    /* jobs not removed: the flow is forgotten when it has ended and none is */
    GList *order;      /* its link in e->flow_order */
    GList *porder;     /* its link in its project's list (e->flows_by_project), or NULL */
    GHashTable *slots; /* while the store loads: job id → slot + 1, else NULL */
    char **skipped;    /* pipeline stages left out */
    size_t nskipped;
    int64_t counts[JOBQ_NSTATES]; /* member jobs per state; removed: as ended (live: cancelled) */
    /* members removed while the flow ran that had not completed (stored: a restart counts the
     * other removed members completed) */
    int64_t gone_failed, gone_cancelled;
};

enum { JOBQ_FLOW_RUNNING, JOBQ_FLOW_REVIEW, JOBQ_FLOW_COMPLETED, JOBQ_FLOW_FAILED,
       JOBQ_FLOW_CANCELLED };

/* Rarely-needed parts of a job, allocated on first need. */
typedef struct jobq_job_extra {
    char *name, *group, *tier, *project;
    char *tags;       /* JSON object text */
    char *requires;   /* JSON object text */
    char *webhook;    /* JSON object text (jobq_webhook_parse), NULL = none */
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
    jobq_orch *orch; /* NULL unless the job uses orchestration */
    /* limits (limits.c) */
    jobq_resources *req;        /* parsed `requires`, or NULL */
    struct jobq_group *grp;     /* its group while ready or active in a grouped queue */
    struct jobq_gslot *slot;    /* the (group, priority) slot holding it while ready */
    struct jobq_job *gprev, *gnext; /* its neighbours in slot's FIFO (by seq) */
    uint32_t skips;             /* fetches that passed over it for lack of capacity */
    uint8_t gcounted;           /* counted in grp->active */
    uint8_t charged;            /* its req counted in its worker's used resources */
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
    int64_t run_at; /* scheduled / retrying: when it becomes ready; waiting: when it became
                     * ready (0: at created_at), which stats.c's wait time counts from */
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

/* Resources: parallel arrays of names and amounts. */
struct jobq_resources {
    size_t n;
    char **names;
    double *v;
};

/* Grouped dispatch (limits.c). A queue whose groups are limited, or that asks for
 * round-robin, keeps its ready jobs twice: in q->ready (position, listing, clear) and in
 * one FIFO per (group, priority), a slot. Slots whose group is below its limit are *in
 * line*; the first slot in line holds the next job to hand out:
 *   round-robin: per priority a level, a ring of its slots in line (a slot served goes to
 *                the back, O(1)); q->levels holds the levels with slots in line, by
 *                priority desc;
 *   fifo:        q->slots holds the slots in line ordered by (priority desc, first seq).
 * A saturated group's slots leave the line and come back when one of its jobs stops being
 * active, so a fetch never looks at a saturated group. */
typedef struct jobq_level {
    int priority;
    struct jobq_gslot *head, *tail; /* slots in line, in turn order (lprev/lnext) */
    GSequenceIter *it;              /* in q->levels while head != NULL */
} jobq_level;

typedef struct jobq_gslot {
    struct jobq_group *g;
    int priority;
    int in_line;
    struct jobq_job *first, *last; /* ready jobs, by seq: an intrusive list (gprev/gnext) */
    jobq_level *lv;                  /* round-robin: its level */
    struct jobq_gslot *lprev, *lnext; /* round-robin: in lv's line */
    int64_t key;                     /* fifo: first->seq while in line */
    GSequenceIter *it;               /* fifo: in q->slots while in line */
    struct jobq_gslot *next;         /* in g->slots */
} jobq_gslot;

typedef struct jobq_group {
    char *name; /* "" for jobs without a group (never limited) */
    char *tier; /* tier of its latest job that named one, or NULL */
    int64_t active;
    int64_t limit; /* effective limit, 0 = none */
    int saturated;
    jobq_gslot *slots;
} jobq_group;

/* Circuit breaker states. */
enum { CB_CLOSED = 0, CB_OPEN, CB_HALF_OPEN };

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
    /* limits (limits.c) */
    int fair;           /* grouped dispatch */
    int rr;             /* round-robin within a priority (else fifo) */
    int tiered;         /* has had a job with both group and tier */
    GHashTable *groups; /* name → jobq_group*, while fair */
    GSequence *slots;   /* fifo: slots in line (see jobq_gslot) */
    GSequence *levels;  /* round-robin: levels with slots in line */
    GHashTable *level_of; /* round-robin: priority → jobq_level* */
    int gated;              /* any of the gates below may close the queue */
    int64_t *rate_ring;     /* dispatch times in the window, a circular buffer */
    size_t rate_head, rate_len, rate_cap;
    int64_t backoff_until;  /* queue_backoff: no dispatch before this (ms since epoch) */
    int cb_state;           /* CB_* */
    int64_t cb_fails;       /* consecutive provider failures */
    int64_t cb_until;       /* open: no trial before this */
    jobq_job *cb_trial;     /* half-open: the one trial job */
    int64_t wake_at;        /* a gate opens then: tell parked fetches (0 = none) */
    struct jobq_qstats *st; /* stats.c: timing histograms, series, health; made on first use */
};

typedef struct jobq_worker {
    char *id;
    char **queues;
    size_t nq;
    int64_t active;
    int64_t last_seen_at;
    jobq_resources *used; /* what its active jobs require, NULL = nothing */
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
    /* orchestration (orch.c) */
    GHashTable *uniq;   /* "queue\nunique_key" → live job holding it */
    GHashTable *cache;  /* "queue\ncache key" → latest job that ran and completed with it */
    GHashTable *flows;  /* id → jobq_flow* */
    GQueue flow_order;  /* flows in creation order */
    GHashTable *flows_by_project; /* project → GQueue* of its flows in creation order */
    GPtrArray *dead_flows; /* forgotten flows, freed at the next take_changes */
    GPtrArray *settle;  /* jobs that became final whose dependants are still to be told */
    int settling;
    /* limits (limits.c) */
    int64_t nactive;    /* active jobs across all queues */
    int64_t max_active; /* 0 = no cap */
    GHashTable *tiers;  /* name → jobq_tier* */
    GPtrArray *waking;  /* queues with a wake_at */
    struct jobq_scheds *scheds; /* recurring jobs (schedule.c), NULL until the first */
    /* events (event.c) */
    uint64_t event_seq;          /* the next event's seq */
    uint64_t event_seq_reserved; /* seqs below this are covered by the stored mark */
    int event_mark_due;          /* the mark must go into the next batch */
    int ev_retry;                /* the attempt being re-queued failed: job.retrying */
    int ev_release;              /* the job being re-queued was given back: job.released */
    size_t events_untaken;       /* events emitted since the last take_changes */
    GString *ev_buf, *ev_fields; /* scratch: the event being rendered, its extra fields */
    int64_t ev_at;               /* the last event's time, and its decimal text */
    char ev_at_text[24];
    size_t ev_at_len;
    struct jobq_estats *stats; /* stats.c: daily aggregates and housekeeping times */
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
int jobq_valid_job_id(const char *s); /* codec.c */

/* limits.c */
void jobq_limits_init(jobq_engine *e);
void jobq_limits_fini(jobq_engine *e);
void jobq_queue_limits_free(jobq_queue *q);
void jobq_entered_active(jobq_engine *e, jobq_job *j);
void jobq_left_active(jobq_engine *e, jobq_job *j, int64_t now);
void jobq_group_ready(jobq_engine *e, jobq_job *j);   /* j went into q->ready (fair q) */
void jobq_group_unready(jobq_engine *e, jobq_job *j); /* j leaves it */
void jobq_fair_update(jobq_engine *e, jobq_queue *q); /* options or tiers changed */
void jobq_limits_patched(jobq_engine *e, jobq_queue *q, unsigned set);
void jobq_limits_queue_deleted(jobq_engine *e, jobq_queue *q);
int jobq_gate_open(jobq_engine *e, jobq_queue *q, int64_t now);
void jobq_dispatched(jobq_engine *e, jobq_queue *q, jobq_job *j, int64_t now);
void jobq_rate_load_done(jobq_engine *e, int64_t now); /* rate windows from stored starts */
jobq_job *jobq_fair_head(jobq_queue *q);
jobq_job *jobq_fit_pick(jobq_engine *e, jobq_queue *q, jobq_worker *w,
                        const jobq_resources *cap, jobq_job **passed);
void jobq_breaker_failure(jobq_engine *e, jobq_queue *q, jobq_job *j, int64_t now);
void jobq_breaker_success(jobq_engine *e, jobq_queue *q, int64_t now);
json_t *jobq_breaker_json(const jobq_queue *q); /* the queue object's "breaker" (new) */
void jobq_queue_backoff(jobq_engine *e, jobq_queue *q, int64_t until);
int64_t jobq_wake_next(const jobq_engine *e);
void jobq_wake_fire(jobq_engine *e, int64_t now);
int jobq_tier_priority(const jobq_engine *e, const char *tier, int *out);
jobq_resources *jobq_resources_from_text(const char *json);
jobq_worker *jobq_worker_get(jobq_engine *e, const char *id);
/* stats.c — recording (the hot path: a few counters in the queue's open minute) */
typedef struct jobq_slot jobq_slot;     /* one minute of one queue */
typedef struct jobq_window jobq_window; /* 15 slots, the 24 h series, today's sums */
typedef struct jobq_qstats {
    jobq_slot *open;  /* the minute samples go to, or NULL */
    int64_t slot_end; /* ms since epoch: end of the open minute, 0 when none is open */
    jobq_window *w;   /* allocated with the queue's first sample (about 94 KiB) */
    /* since start, for Prometheus: per jobq_hist_le_ms bucket (not cumulative) + overflow */
    uint64_t life_proc[JOBQ_HIST_NLE + 1], life_wait[JOBQ_HIST_NLE + 1];
    uint64_t life_proc_sum, life_wait_sum; /* ms */
    /* health.c */
    int level;             /* JOBQ_HEALTHY…, as last announced */
    int64_t waiting_since; /* ms since epoch: waiting jobs seen since then; 0 = none */
} jobq_qstats;

jobq_qstats *jobq_qstats_of(jobq_queue *q); /* allocates on first use */
void jobq_stats_enqueued(jobq_engine *e, jobq_queue *q, int64_t n, int64_t now);
void jobq_stats_started(jobq_engine *e, jobq_queue *q, int64_t wait_ms, int64_t now);
/* A job of q reached completed (processing time proc_ms; -1: none to note) or failed
 * (proc_ms unused). */
void jobq_stats_finished(jobq_engine *e, jobq_queue *q, int completed, int64_t proc_ms,
                         int64_t now);
void jobq_stats_queue_deleted(jobq_engine *e, jobq_queue *q, int64_t now);
void jobq_qstats_free(jobq_qstats *st); /* takes NULL */
void jobq_estats_free(struct jobq_estats *s);
/* Loading: 1 when kind is not the engine's stats kind ("daily"), else 0 or an error. */
int jobq_stats_load_doc(jobq_engine *e, const char *kind, const char *id, const char *body);
void jobq_stats_load_done(jobq_engine *e, int64_t now);

/* The last 15 minutes of a queue (the open minute included). Percentiles are -1 without
 * samples, and only computed when asked for. */
typedef struct jobq_recent {
    int64_t enqueued, completed, failed;
    int64_t proc_n, wait_n;
    double proc_avg, wait_avg;
    int64_t proc_p[3], wait_p[3]; /* p50, p95, p99 in ms */
} jobq_recent;
void jobq_stats_recent(const jobq_queue *q, int64_t now, int percentiles, jobq_recent *r);

/* health.c */
/* Evaluates q's rules at now; appends a reason string per broken rule to `reasons` (may be
 * NULL). Returns JOBQ_HEALTHY, JOBQ_DEGRADED or JOBQ_UNHEALTHY. */
int jobq_health_eval(const jobq_engine *e, const jobq_queue *q, int64_t now, json_t *reasons);
/* Re-evaluates every queue; a queue whose level changed is announced (health.changed)
 * unless `quiet` (used at load, where levels are only remembered). */
void jobq_health_sweep(jobq_engine *e, int64_t now, int quiet);

/* orch.c */
void jobq_orch_init(jobq_engine *e);
void jobq_orch_fini(jobq_engine *e);
void jobq_orch_free(jobq_orch *o);
void jobq_orch_take(jobq_engine *e); /* a batch was taken: frees forgotten flows */
jobq_orch *jobq_orch_of(jobq_job *j); /* allocates */
/* j's state changed from → to (flow counters) */
void jobq_orch_state(jobq_engine *e, jobq_job *j, int from, int to, int64_t now);
/* j became final: keys, cache, dependants */
void jobq_orch_final(jobq_engine *e, jobq_job *j, int64_t now);
/* 1 while j has dependants that are not final: retention keeps it for their `parents` */
int jobq_orch_pinned(const jobq_job *j);
/* j is being removed */
void jobq_orch_destroy(jobq_engine *e, jobq_job *j, int64_t now);
/* a completion of a job with review: true; returns 1 when it went to review */
int jobq_orch_review_enter(jobq_engine *e, jobq_job *j, int64_t now);
/* retry of a failed/cancelled job: 1 when it is blocked again on its parents */
int jobq_orch_retry(jobq_engine *e, jobq_job *j, int64_t now);
void jobq_orch_opts(const jobq_job *j, GString *o, int *first);      /* stored options */
int jobq_orch_apply_opt(jobq_engine *e, jobq_job *j, const char *key, json_t *v);
void jobq_orch_loaded(jobq_engine *e, jobq_job *j); /* links a loaded job (load_job) */
void jobq_orch_load_done(jobq_engine *e, int64_t now);
int jobq_orch_load_flow(jobq_engine *e, const char *id, const char *body);
/* The initial state of a new job using orchestration; links it (parents, flow, keys). */
int jobq_orch_setup(jobq_engine *e, jobq_job *j, const jobq_job_spec *s, jobq_job **parents,
                    jobq_flow *f, int64_t now, int initial, unsigned *flags);
/* The live job of q holding unique_key `key`, or NULL. */
jobq_job *jobq_orch_unique(jobq_engine *e, const jobq_queue *q, const char *key);
/* Makes one job from s in q (checked by the caller); parents resolved. */
jobq_job *jobq_job_create(jobq_engine *e, jobq_queue *q, const jobq_job_spec *s,
                          jobq_job **parents, jobq_flow *f, int64_t now, unsigned *flags);

/* job.c */
void jobq_worker_active(jobq_engine *e, const char *worker, int delta);
char *jobq_job_opts_text(const jobq_job *j); /* JSON for the store (new, g_free) */
int jobq_job_apply_opts(jobq_engine *e, jobq_job *j, const char *opts_json);
int64_t jobq_waiting_size(const jobq_queue *q);

#endif
