/*
 * engine.h — the queue state machine.
 *
 * The engine holds every live job and queue in memory and decides everything about them:
 * what a fetch hands out, when a lease expires, how long a retry waits, what retention
 * removes. It is pure: no sockets, files, clocks or threads. Every call takes `now` (ms since
 * the epoch) from its caller, so tests drive it with a simulated clock.
 *
 * Every change it makes is also written down for the store: jobq_engine_take_changes()
 * hands over the records of all changes since the last call as one batch (group commit),
 * and jobq_engine_committed() is told when that batch is durable. A newly enqueued job is
 * counted at once but handed out only after its batch is committed (a job becomes fetchable
 * only once its enqueue is durable). One batch is in flight at a time.
 *
 * The caller learns about things that need it (a queue has work for parked workers, a job
 * became final) through hooks, called synchronously from inside engine calls.
 *
 * What it never does: I/O, or waiting. Identity (auth) stays out of it.
 */
#ifndef JOBQ_ENGINE_H
#define JOBQ_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <glib.h>
#include <jansson.h>

#include "api/events.h"
#include "store/store.h"
#include "util/err.h"

typedef enum jobq_state {
    JOBQ_WAITING = 0,
    JOBQ_SCHEDULED,
    JOBQ_RETRYING,
    JOBQ_BLOCKED, /* waiting on dependencies (orchestration) */
    JOBQ_ACTIVE,
    JOBQ_REVIEW, /* waiting for approval (orchestration) */
    JOBQ_COMPLETED,
    JOBQ_FAILED,
    JOBQ_CANCELLED,
    JOBQ_NSTATES
} jobq_state;

/* "waiting", … ; NULL for an out-of-range value. */
const char *jobq_state_name(int state);
/* The state named `s`, or -1. */
int jobq_state_parse(const char *s);
/* 1 for completed, failed, cancelled. */
int jobq_state_final(int state);

typedef enum jobq_qstatus {
    JOBQ_Q_ACTIVE = 0,
    JOBQ_Q_PAUSED,
    JOBQ_Q_DRAINING,
    JOBQ_Q_ERROR
} jobq_qstatus;
const char *jobq_qstatus_name(int s);
int jobq_qstatus_parse(const char *s);

typedef struct jobq_engine jobq_engine;
typedef struct jobq_queue jobq_queue;
typedef struct jobq_job jobq_job;

/* ---------------------------------------------------------------- backoff */

typedef enum { JOBQ_BACKOFF_FIXED, JOBQ_BACKOFF_EXPONENTIAL, JOBQ_BACKOFF_LIST } jobq_backoff_type;

/* Immutable once made, shared by reference between a queue's defaults and its jobs. */
typedef struct jobq_backoff {
    int refs;
    jobq_backoff_type type;
    int64_t delay_ms; /* fixed / exponential: first delay */
    double factor;    /* exponential: multiplier per attempt (default 2) */
    int64_t max_ms;   /* exponential: cap, 0 = none */
    double jitter;    /* 0..1: delay is drawn from [delay*(1-jitter), delay] */
    size_t n;         /* list: number of delays */
    char *json;       /* its JSON text, made on first render (it never changes after) */
    int64_t delays[]; /* list: delays in ms; the last one repeats */
} jobq_backoff;

/* New reference-counted backoff with room for n list delays (zeroed), refs = 1. */
jobq_backoff *jobq_backoff_new(jobq_backoff_type type, size_t n);
jobq_backoff *jobq_backoff_ref(jobq_backoff *b);
void jobq_backoff_unref(jobq_backoff *b); /* takes NULL */
/* Delay before the retry that follows `attempt` finished attempts (attempt >= 1). `rnd` is a
 * uniform random number in [0,1) used for jitter. */
int64_t jobq_backoff_delay(const jobq_backoff *b, int attempt, double rnd);

/* ---------------------------------------------------------------- queues */

typedef struct jobq_keep {
    int64_t count;  /* keep at most this many, -1 = no limit */
    int64_t age_ms; /* remove older than this, 0 = no limit */
} jobq_keep;

/* A queue's options. `set` says which fields a create/patch gives (JOBQ_QO_* bits). */
enum {
    JOBQ_QO_TYPE = 1 << 0,
    JOBQ_QO_DESCRIPTION = 1 << 1,
    JOBQ_QO_CONCURRENCY = 1 << 2,
    JOBQ_QO_GROUP_CONCURRENCY = 1 << 3,
    JOBQ_QO_RATE_LIMIT = 1 << 4,
    JOBQ_QO_MAX_SIZE = 1 << 5,
    JOBQ_QO_MAX_STALLS = 1 << 6,
    JOBQ_QO_DEFAULTS = 1 << 7,
    JOBQ_QO_KEEP_COMPLETED = 1 << 8,
    JOBQ_QO_KEEP_FAILED = 1 << 9,
    JOBQ_QO_CIRCUIT_BREAKER = 1 << 10,
    JOBQ_QO_ALERT = 1 << 11,
    JOBQ_QO_STATUS = 1 << 12,
    JOBQ_QO_FAIRNESS = 1 << 13,
};

/* Dispatch order within one priority level (queue option "fairness"). */
enum { JOBQ_FAIR_AUTO = 0, JOBQ_FAIR_FIFO, JOBQ_FAIR_ROUND_ROBIN };

typedef struct jobq_job_defaults {
    int max_attempts;      /* default 3 */
    jobq_backoff *backoff; /* owned reference; default exponential 2000 ms */
    int64_t timeout_ms;    /* 0 = none */
    int64_t lease_ms;      /* default 30000 */
    int priority;          /* default 0 */
} jobq_job_defaults;

typedef struct jobq_queue_opts {
    unsigned set;
    char *type;          /* owned */
    char *description;   /* owned */
    int64_t concurrency; /* 0 = unlimited */
    int64_t group_concurrency;
    int64_t rate_max, rate_per_ms; /* 0 = none */
    int64_t max_size;              /* 0 = unlimited */
    int max_stalls;                /* default 1 */
    jobq_job_defaults defaults;
    jobq_keep keep_completed;            /* default 1000 / none */
    jobq_keep keep_failed;               /* default none / 7 days */
    int64_t cb_failures, cb_cooldown_ms; /* 0 = no breaker */
    /* health rules (health.c, docs/metrics.md): a queue is degraded past any of these */
    int64_t alert_backlog;         /* waiting jobs, default 100 */
    double alert_error_rate;       /* percent failed over 15 min, default 10 */
    int64_t alert_paused_ms;       /* paused longer than this, default 1 h */
    int64_t alert_idle_ms;         /* waiting jobs and no completion for this, default 30 min */
    double alert_utilization;      /* percent active / concurrency, -1 (default) = off */
    int64_t alert_processing_p95_ms; /* p95 over 15 min, -1 (default) = off */
    int status;                          /* JOBQ_QSTATUS_*, with JOBQ_QO_STATUS */
    int fairness;                        /* JOBQ_FAIR_*; AUTO: round-robin when groups are
                                            limited, else fifo */
} jobq_queue_opts;

/* Fills `o` with the shipped defaults (set = 0). jobq_queue_opts_clear frees owned fields. */
void jobq_queue_opts_default(jobq_queue_opts *o);
void jobq_queue_opts_clear(jobq_queue_opts *o);
/* Fills `o` for a PATCH of a queue whose options are `cur`: defaults, except the objects a
 * patch may give in part ("defaults", "keep_completed", "keep_failed", "alert"), which start
 * from cur so their unnamed keys keep their values. */
void jobq_queue_opts_for_patch(jobq_queue_opts *o, const jobq_queue_opts *cur);

/* Parses a queue create/patch body (or a stored config) into `o`, which must have been
 * filled by jobq_queue_opts_default. Known keys only; on error returns JOBQ_EINVAL with
 * *field (static or pointing into obj) naming the offending field and *why a reason. Keys in
 * `skip` (NULL-terminated, may be NULL) are ignored. */
int jobq_queue_opts_parse(const json_t *obj, jobq_queue_opts *o, const char *const *skip,
                          const char **field, const char **why);

/* Queue read-outs. */
const char *jobq_queue_name(const jobq_queue *q);
const char *jobq_queue_id(const jobq_queue *q);
/* The status as clients see it: `error` while the circuit breaker is open or half-open on a
 * queue that is otherwise active. */
int jobq_queue_status(const jobq_queue *q);
const jobq_queue_opts *jobq_queue_options(const jobq_queue *q);
int64_t jobq_queue_count(const jobq_queue *q, int state);

typedef struct jobq_queue_totals {
    int64_t enqueued, processed, failed, retried, stalled;
    int64_t last_processed_at, last_error_at; /* ms since epoch, 0 = never */
    const char *last_error;                   /* borrowed, may be NULL */
    int64_t created_at, updated_at, paused_at;
} jobq_queue_totals;
void jobq_queue_get_totals(const jobq_queue *q, jobq_queue_totals *t);

/* JSON object of the queue as docs/api.md shows it (new reference). */
json_t *jobq_queue_to_json(const jobq_queue *q);

/* ---------------------------------------------------------------- jobs */

/* What an enqueue asks for. Pointers are borrowed for the call; the engine copies. */
typedef struct jobq_job_spec {
    const char *id;   /* NULL: the engine makes a UUIDv7 */
    const char *data; /* JSON text, NULL = null */
    size_t data_len;
    const char *name, *group, *tier, *project; /* NULL = none */
    const char *tags;                          /* JSON object text or NULL */
    const char *requires;                      /* JSON object text or NULL */
    int has_priority;
    int priority;
    int64_t run_at;        /* ms since epoch; 0 or <= now: ready at once */
    int max_attempts;      /* 0: queue default */
    jobq_backoff *backoff; /* NULL: queue default (borrowed; the engine takes a ref) */
    int64_t timeout_ms;    /* -1: queue default; 0 = none */
    int64_t lease_ms;      /* 0: queue default */
    /* orchestration (docs/orchestration.md) */
    const char *const *depends_on; /* ids of existing jobs (flows: refs), ndeps of them */
    size_t ndeps;
    int review;                /* 1: a completion waits in state review for approval */
    int on_parent_failure;     /* JOBQ_OPF_CANCEL (default) or JOBQ_OPF_CONTINUE */
    const char *unique_key;    /* a live job with this key in the queue is returned instead */
    const char *cache_key;     /* a job completed with this key within cache_ttl_ms is reused */
    int64_t cache_ttl_ms;
    const char *ref;           /* flows: the job's name within its flow */
    const char *webhook;       /* normalised JSON text (jobq_webhook_parse) or NULL */
    /* storage owned by the spec when filled by jobq_job_spec_parse */
    char *own_data, *own_tags, *own_requires, *own_webhook;
    const char **own_deps;
} jobq_job_spec;

enum { JOBQ_OPF_CANCEL = 0, JOBQ_OPF_CONTINUE = 1 };
#define JOBQ_MAX_DEPS 64                               /* parents per job */
#define JOBQ_CACHE_TTL_DEFAULT (INT64_C(24) * 3600000) /* cache.ttl_ms when not given */
/* "cancel" / "continue" → JOBQ_OPF_*, or -1. */
int jobq_opf_parse(const char *s);

/* Parses one enqueue item (a JSON object) into spec. Pointers in spec borrow from obj, which
 * must outlive the spec; jobq_job_spec_clear frees what the spec owns. On error returns
 * JOBQ_EINVAL with *field and *why. */
int jobq_job_spec_parse(const json_t *obj, int64_t now, jobq_job_spec *spec, const char **field,
                        const char **why);
/* The same, with the payload given as the exact JSON text the client sent for "data"
 * (borrowed; NULL: serialise obj's "data" instead). */
int jobq_job_spec_parse_raw(const json_t *obj, const char *raw_data, size_t raw_len, int64_t now,
                            jobq_job_spec *spec, const char **field, const char **why);
void jobq_job_spec_clear(jobq_job_spec *spec);

/* Webhooks (webhook.c). Checks a webhook description: a registered hook's body
 * (registered = 1: url, events required; queues, project, secret, token) or a job's
 * `webhook` option (url required; events, secret, token). On success *out is the normalised
 * JSON text (new, free()); on error JOBQ_EINVAL with *field (static or pointing into obj)
 * and *why. */
int jobq_webhook_parse(const json_t *obj, int registered, char **out, const char **field,
                       const char **why);
/* 1 when t is an event type a webhook may name: a type of docs/api.md, "*", or a family
 * ("job.*", "flow.*", "queue.*", "health.*"). */
int jobq_webhook_type_known(const char *t);
/* 1 when event type `type` matches `pattern` (a type, "*", or "family.*"). */
int jobq_webhook_type_match(const char *pattern, const char *type);

/* Priority names: low=-10 normal=0 high=10 urgent=20. 0 and *out set, or -1. */
int jobq_priority_parse(const char *s, int *out);

const char *jobq_job_id(const jobq_job *j);
jobq_queue *jobq_job_queue(const jobq_job *j);
int jobq_job_state(const jobq_job *j);
int64_t jobq_job_seq(const jobq_job *j);
int jobq_job_attempt(const jobq_job *j);
int64_t jobq_job_lease_expires_at(const jobq_job *j);
int jobq_job_cancel_requested(const jobq_job *j);
/* Stored JSON texts of the job's result and error, or NULL. Borrowed. */
const char *jobq_job_result_text(const jobq_job *j);
const char *jobq_job_error_text(const jobq_job *j);
/* The job's own webhook (normalised JSON text of its `webhook` option) or NULL. Borrowed. */
const char *jobq_job_webhook_text(const jobq_job *j);
/* The job's current lease token (16 hex digits) into buf[17]; "" when it has none. */
void jobq_job_lease(const jobq_job *j, char buf[17]);

/* Appends the job as a JSON object to out. with_lease adds "lease" and "lease_expires_at"
 * (fetch answers). `now` feeds estimated_start_ms. */
void jobq_job_render(const jobq_engine *e, const jobq_job *j, int with_lease, int64_t now,
                     GString *out);

/* ---------------------------------------------------------------- engine */

typedef struct jobq_engine_hooks {
    /* q may now have jobs to hand out (new ready jobs, freed capacity, resumed). */
    void (*ready)(void *ud, jobq_queue *q);
    /* j reached a final state (completed, failed, cancelled) or was deleted (then
     * deleted = 1 and j must not be kept). */
    void (*final)(void *ud, jobq_job *j, int deleted);
    void *ud;
    /* Loading: a stored document of a kind the engine does not own (NULL: ignored). Non-zero
     * stops the load with that value. */
    int (*doc)(void *ud, const char *kind, const char *id, const char *body);
    /* An event (api/events.h), emitted in the call that made the change it announces, with
     * its seq and its JSON already made. ev and its strings are borrowed for the call. The
     * event belongs to the batch the next take_changes returns (NULL: no events at all,
     * and none are rendered). Not called while loading. */
    void (*event)(void *ud, const jobq_event *ev);
} jobq_engine_hooks;

typedef struct jobq_engine_config {
    int strict_queues;    /* enqueue to an unknown queue: 404 instead of creating it */
    uint64_t seed;        /* randomness for ids, leases and jitter */
    size_t max_log_lines; /* per job, default 1000 */
    int64_t stats_flush_ms;     /* today's daily aggregates are written this often (5 min) */
    int64_t health_interval_ms; /* health rules are re-evaluated this often (5 s) */
} jobq_engine_config;

/* New empty engine (NULL on OOM). jobq_engine_free takes NULL. */
jobq_engine *jobq_engine_new(const jobq_engine_config *cfg, const jobq_engine_hooks *hooks);
void jobq_engine_free(jobq_engine *e);

/* Loading: the store's load callbacks. After the last job, jobq_engine_load_done(now)
 * re-queues jobs that were active (their leases died with the old process) and builds
 * the ready indexes. */
jobq_load_cb jobq_engine_loader(jobq_engine *e);
int jobq_engine_load_done(jobq_engine *e, int64_t now);

/* Group commit. take_changes returns the batch of every change since the last call (new,
 * owned by the caller), or NULL when there is none. committed() tells the engine that the
 * oldest taken, unconfirmed batch is durable: its new jobs become fetchable. Batches are
 * confirmed in the order they were taken. A batch the store failed to apply is simply
 * submitted again; the engine needs no word of it (its jobs stay unfetchable until then). */
jobq_batch *jobq_engine_take_changes(jobq_engine *e);
void jobq_engine_committed(jobq_engine *e, int64_t now);
int jobq_engine_has_changes(const jobq_engine *e);

/* Documents (store.h): durable objects that are not jobs or queues, whoever owns them,
 * ride in the engine's next batch, so a caller's jobq_app_after_commit covers them too.
 * Strings are copied; body is JSON text. */
void jobq_engine_doc_put(jobq_engine *e, const char *kind, const char *id, const char *body);
void jobq_engine_doc_delete(jobq_engine *e, const char *kind, const char *id);

/* ---- events (docs/events.md)
 * The engine emits the job and queue events itself (job.created, job.started,
 * job.progress, job.retrying, job.stalled, job.released, job.completed, job.failed, job.cancelled,
 * queue.paused, queue.resumed, queue.draining, queue.drained, queue.error). Other features
 * announce their own with the two calls below (flow.completed, flow.failed,
 * job.review_requested, health.changed, …): the event gets the next seq, is rendered once
 * as {"seq","type","at","queue"?,"job"?,"project"?,"group"?, <fields>} and goes to the
 * `event` hook at once, i.e. to the bus's stage sinks in this loop turn; it is published to
 * subscribers once the batch it rides in (the next one taken) is durable. Emitting makes
 * that batch exist even when nothing else changed. No-ops without an event hook.
 *
 * `fields`: more members of the object as JSON text without the braces, e.g.
 * "\"flow\":\"f-1\",\"state\":\"completed\"" (NULL or "" for none). The caller makes it
 * valid; keys must not repeat the ones above. queue/job/project/group may be NULL. */
void jobq_engine_emit(jobq_engine *e, const char *type, int64_t now, const char *queue,
                      const char *job, const char *project, const char *group, const char *fields);
/* The same about job j: queue, job, project and group are j's, and "state" and "attempt"
 * are added before `fields` (e.g. type "job.review_requested"). */
void jobq_engine_emit_job(jobq_engine *e, jobq_job *j, const char *type, int64_t now,
                          const char *fields);
/* 1 when emitted events go somewhere (a hook is set and the engine is not loading): skip
 * building `fields` otherwise. */
int jobq_engine_events_on(const jobq_engine *e);
/* The seq the next event will get (seqs start at 1, never repeat, also across restarts). */
uint64_t jobq_engine_event_seq(const jobq_engine *e);

/* Timers: runs everything due at `now` (delayed jobs, retries, lease expiries, timeouts,
 * retention by age, schedules: engine/schedule.h). next_timer returns the next due time (ms
 * since epoch) or INT64_MAX. */
void jobq_engine_tick(jobq_engine *e, int64_t now);
int64_t jobq_engine_next_timer(const jobq_engine *e);

/* ---- queues */
jobq_queue *jobq_engine_queue(const jobq_engine *e, const char *name_or_id);
/* Creates a queue; o is copied (its owned fields are taken over and o is zeroed).
 * JOBQ_EEXIST if the name is taken, JOBQ_EINVAL for a bad name. */
int jobq_engine_queue_create(jobq_engine *e, const char *name, jobq_queue_opts *o, int64_t now,
                             jobq_queue **out);
/* Applies the fields in o->set (owned fields taken over). */
int jobq_engine_queue_patch(jobq_engine *e, jobq_queue *q, jobq_queue_opts *o, int64_t now);
/* JOBQ_ESTATE when it has active jobs and !force. */
int jobq_engine_queue_delete(jobq_engine *e, jobq_queue *q, int force, int64_t now);
int jobq_engine_queue_pause(jobq_engine *e, jobq_queue *q, int64_t now);
int jobq_engine_queue_resume(jobq_engine *e, jobq_queue *q, int64_t now);
int jobq_engine_queue_drain(jobq_engine *e, jobq_queue *q, int64_t now);
/* Removes waiting, scheduled and retrying jobs; returns how many (>= 0). */
int64_t jobq_engine_queue_clear(jobq_engine *e, jobq_queue *q, int64_t now);
/* Removes final jobs in `state` finished before now-older_than_ms, keeping the newest
 * `keep`; returns how many. */
int64_t jobq_engine_queue_clean(jobq_engine *e, jobq_queue *q, int state, int64_t older_than_ms,
                                int64_t keep, int64_t now);
/* Re-queues active jobs whose worker is `worker` (or, when NULL, has not been seen for
 * stale_ms); returns how many. */
int64_t jobq_engine_queue_recover(jobq_engine *e, jobq_queue *q, const char *worker,
                                  int64_t stale_ms, int64_t now);
/* Calls fn for every queue in name order; stops when fn returns non-zero. */
void jobq_engine_queue_each(const jobq_engine *e, int (*fn)(void *ud, jobq_queue *q), void *ud);
size_t jobq_engine_queue_total(const jobq_engine *e);

/* ---- jobs */
jobq_job *jobq_engine_job(const jobq_engine *e, const char *id);

/* Enqueues n jobs into the queue named `queue` (created if missing unless strict), all or
 * nothing. out[] (n slots) gets the jobs. On failure *bad is the index of the offending
 * item (or -1) and nothing changed. Errors: JOBQ_ENOTFOUND (strict, unknown queue),
 * JOBQ_EEXIST (id taken), JOBQ_EDRAINING, JOBQ_EFULL, JOBQ_EINVAL (bad id or queue name). */
int jobq_engine_enqueue(jobq_engine *e, const char *queue, const jobq_job_spec *specs, size_t n,
                        int64_t now, jobq_job **out, long *bad);

/* The same, saying per job what happened: flags[i] (n slots, may be NULL) gets
 * JOBQ_ENQ_DEDUP when out[i] is the live job already holding the item's unique_key (nothing
 * new was made), JOBQ_ENQ_CACHED when out[i] was made completed from the result cache. A
 * depends_on naming no job answers JOBQ_EINVAL with *bad set and *why_id the id (borrowed
 * from the spec). */
enum { JOBQ_ENQ_DEDUP = 1, JOBQ_ENQ_CACHED = 2 };
int jobq_engine_enqueue_ex(jobq_engine *e, const char *queue, const jobq_job_spec *specs,
                           size_t n, int64_t now, jobq_job **out, unsigned char *flags, long *bad,
                           const char **why_id);

/* Orchestration read-outs. */
int jobq_job_in_review(const jobq_job *j); /* has review: true */
const char *jobq_job_flow_id(const jobq_job *j); /* NULL outside flows */

/* Review gates: a job in state review is approved (result: JSON text replacing its result,
 * NULL keeps it) → completed, dependants unblock; or rejected with a reason (notes: JSON
 * text or NULL): rerun → back to waiting with the reason in its review_feedback, else failed
 * (error type "rejected"). JOBQ_ESTATE unless the job is in review. */
int jobq_engine_job_approve(jobq_engine *e, jobq_job *j, const char *result, int64_t now);
int jobq_engine_job_reject(jobq_engine *e, jobq_job *j, const char *reason, const char *notes,
                           int rerun, int64_t now);

/* ---- flows: a DAG of jobs by ref, created atomically (orch.c) */
typedef struct jobq_flow jobq_flow;

typedef struct jobq_flow_item {
    const char *queue; /* borrowed */
    jobq_job_spec spec; /* spec.ref names it; spec.depends_on holds refs */
} jobq_flow_item;

typedef struct jobq_flow_spec {
    const char *name, *project; /* may be NULL */
    int on_parent_failure;      /* JOBQ_OPF_* for every job */
    jobq_flow_item *items;
    size_t n;
    const char *const *skipped; /* refs of pipeline stages left out (shown, not run) */
    size_t nskipped;
} jobq_flow_spec;

/* Validates and creates the flow and all its jobs, or nothing. Errors: JOBQ_EINVAL with
 * *bad_ref (the offending ref, borrowed) and *why (duplicate ref, unknown ref, cycle, bad
 * queue name); JOBQ_ENOTFOUND (strict, unknown queue; *bad_ref the item's ref),
 * JOBQ_EDRAINING, JOBQ_EFULL, JOBQ_EEXIST (a given job id is taken). */
int jobq_engine_flow_create(jobq_engine *e, const jobq_flow_spec *fs, int64_t now,
                            jobq_flow **out, const char **bad_ref, const char **why);
jobq_flow *jobq_engine_flow(const jobq_engine *e, const char *id);
const char *jobq_flow_id(const jobq_flow *f);
int jobq_flow_final(const jobq_flow *f);
/* Cancels every live job of the flow (active ones through cancel_requested). JOBQ_ESTATE
 * when the flow has already ended. */
int jobq_engine_flow_cancel(jobq_engine *e, jobq_flow *f, int64_t now);
/* Appends the flow as docs/api.md shows it. */
void jobq_flow_render(const jobq_engine *e, const jobq_flow *f, GString *out);
/* Flows newest first, of `project` (NULL: any); up to limit into out, returns how many. */
size_t jobq_engine_flow_list(const jobq_engine *e, const char *project, size_t limit,
                             jobq_flow **out);

/* Admin verbs. JOBQ_ESTATE when the state does not allow it. */
int jobq_engine_job_delete(jobq_engine *e, jobq_job *j, int64_t now);
int jobq_engine_job_cancel(jobq_engine *e, jobq_job *j, int64_t now);
int jobq_engine_job_retry(jobq_engine *e, jobq_job *j, int64_t now);
/* has_* say which to change. run_at only for scheduled/retrying jobs (else JOBQ_ESTATE). */
int jobq_engine_job_patch(jobq_engine *e, jobq_job *j, int has_priority, int priority,
                          int has_run_at, int64_t run_at, int64_t now);
/* Position among the waiting jobs of its queue (0 = next), or -1 when not waiting. */
int64_t jobq_engine_job_position(const jobq_engine *e, const jobq_job *j);

/* Listing, newest first. The filter's strings are borrowed. cursor: NULL = from the newest,
 * else a cursor an earlier page returned. Fills out[] (up to limit) and returns how many;
 * next[] gets the cursor of the next page, or "" when there is none. A cursor whose job was
 * deleted meanwhile still works (the walk resumes below its sequence number). */
typedef struct jobq_job_filter {
    jobq_queue *queue; /* NULL = any */
    unsigned states;   /* bit per state, 0 = any */
    const char *group, *project;
    const char *tag_key, *tag_value; /* one tag filter, or NULL */
} jobq_job_filter;
#define JOBQ_CURSOR_MAX 160
size_t jobq_engine_job_list(const jobq_engine *e, const jobq_job_filter *f, const char *cursor,
                            size_t limit, jobq_job **out, char next[JOBQ_CURSOR_MAX]);

/* ---- worker protocol
 * Every verb with a lease answers JOBQ_ENOTFOUND (no such job) or JOBQ_ELEASE (the job is
 * not active under that lease) before changing anything. */

/* Hands out up to `count` ready jobs from `queues` (names; unknown ones are skipped),
 * highest priority first across them, then FIFO or round-robin across groups within a
 * priority (the queue's fairness), honouring pause, queue concurrency, group and tier
 * limits, rate limits, the circuit breaker and the server-wide cap. Returns how many were
 * put in out[]. */
size_t jobq_engine_fetch(jobq_engine *e, const char *const *queues, size_t nq, size_t count,
                         const char *worker, int64_t now, jobq_job **out);

/* Resources: a map of name → non-negative number (a job's `requires`, a worker's
 * `capacity`). */
typedef struct jobq_resources jobq_resources;
/* Parses a JSON object of at most 32 names (≤ 128 bytes) → numbers ≥ 0. NULL with *why on
 * error. New; free with jobq_resources_free (takes NULL). */
jobq_resources *jobq_resources_parse(const json_t *v, const char **why);
void jobq_resources_free(jobq_resources *r);

/* As jobq_engine_fetch, for a worker that declares its capacity (borrowed; NULL = none):
 * a job is handed out only if its `requires` fits in the capacity less what the worker's
 * active jobs require. A job that does not fit is skipped; one skipped RESERVE_AFTER times
 * while it could fit this worker's whole capacity reserves it (see docs/limits.md). */
size_t jobq_engine_fetch_fit(jobq_engine *e, const char *const *queues, size_t nq, size_t count,
                             const char *worker, const jobq_resources *capacity, int64_t now,
                             jobq_job **out);

/* ---- server-wide limits (docs/limits.md) */
typedef struct jobq_tier {
    int64_t group_concurrency; /* 0 = no limit */
    int has_priority;
    int priority; /* default priority of jobs with this tier */
} jobq_tier;
/* Sets (t non-NULL) or removes a tier. Groups already waiting follow the new limit at once. */
void jobq_engine_set_tier(jobq_engine *e, const char *name, const jobq_tier *t, int64_t now);
/* Removes every tier. */
void jobq_engine_clear_tiers(jobq_engine *e, int64_t now);
/* 0 and *out filled, or JOBQ_ENOTFOUND. */
int jobq_engine_get_tier(const jobq_engine *e, const char *name, jobq_tier *out);
/* Calls fn for every tier in name order. */
void jobq_engine_tiers_each(const jobq_engine *e,
                            void (*fn)(void *ud, const char *name, const jobq_tier *t), void *ud);
/* Most jobs active at once across all queues (0 = no cap). Applies to the next dispatch;
 * running jobs finish. */
void jobq_engine_set_max_active(jobq_engine *e, int64_t n, int64_t now);
int64_t jobq_engine_max_active(const jobq_engine *e);
int64_t jobq_engine_active_total(const jobq_engine *e);

/* Extends the lease by extend_ms (0: the job's lease_ms). checkpoint (JSON text or NULL) is
 * stored. *changed_durable is set to 1 when the call wrote something that must be durable
 * before the answer (a checkpoint). */
int jobq_engine_heartbeat(jobq_engine *e, jobq_job *j, const char *lease, int64_t extend_ms,
                          const char *checkpoint, int64_t now, int *durable);
/* progress: JSON object text {"percent",...}. Also extends the lease. */
int jobq_engine_progress(jobq_engine *e, jobq_job *j, const char *lease, const char *progress,
                         const char *checkpoint, int64_t now, int *durable);
/* result: JSON text or NULL. Repeating a completion with the lease that completed the job
 * answers 0 without a change (*repeat = 1). */
int jobq_engine_complete(jobq_engine *e, jobq_job *j, const char *lease, const char *result,
                         int64_t now, int *repeat);

typedef struct jobq_failure {
    const char *message; /* may be NULL */
    const char *type;    /* may be NULL; "rate_limit", "provider", "cancelled", ... */
    int retryable;       /* default 1 */
    const char *details; /* JSON text or NULL */
    int64_t retry_in_ms; /* -1: backoff */
    int queue_backoff;   /* rate_limit with retry_in_ms: pause the whole queue that long */
} jobq_failure;
int jobq_engine_fail(jobq_engine *e, jobq_job *j, const char *lease, const jobq_failure *f,
                     int64_t now, int *repeat);
/* Gives an active job back unrun (its worker will not run it): waiting again at once, no
 * attempt spent, the lease refused from now on; a requested cancel ends it cancelled. */
int jobq_engine_release(jobq_engine *e, jobq_job *j, const char *lease, int64_t now);
/* Appends log lines to the running attempt (oldest dropped past max_log_lines). */
int jobq_engine_logs(jobq_engine *e, jobq_job *j, const char *lease, const char *const *lines,
                     size_t n, int64_t now);
/* The store's history/log key for a job, and the attempt a log read defaults to. */
int jobq_engine_log_attempt(const jobq_job *j);

/* Notes that `worker` was seen now, working on `queues` (may be NULL). */
void jobq_engine_worker_seen(jobq_engine *e, const char *worker, const char *const *queues,
                             size_t nq, int64_t now);
/* JSON array of workers seen within `within_ms` (new reference). */
json_t *jobq_engine_workers_json(const jobq_engine *e, int64_t within_ms, int64_t now);

/* ---- dead letter */
/* {"total", "queues": {name: {"total", "types": {type: n}}}} (new reference). */
json_t *jobq_engine_dead_stats(const jobq_engine *e);
/* Retries failed jobs of queue q (NULL = all) or the given ids; returns how many. */
int64_t jobq_engine_dead_retry(jobq_engine *e, jobq_queue *q, const char *const *ids, size_t n,
                               int64_t now);

/* ---- stats (stats.c; docs/metrics.md)
 * Every queue keeps, in memory, a histogram of processing times (start → completion) and
 * of wait times (ready → start) per minute for the last 15 minutes, a per-minute series of
 * the last 24 hours, and today's sums; finished days are documents (kind "daily") kept 90
 * days. Histograms are log-linear: a reported percentile is within 1/32 of the true one. */

/* Per-queue object for /v1/stats (new reference). */
json_t *jobq_engine_queue_stats(const jobq_engine *e, const jobq_queue *q, int64_t now);
/* {"queues": {...}, "total": {...}, "uptime_ms"} (new reference). */
json_t *jobq_engine_stats(const jobq_engine *e, int64_t now);

/* /v1/stats/series: one point per minute for the last `minutes` (1..1440), oldest first:
 * {"queue","metric","minutes","points":[{"at","value"}]}. metric: completed, failed,
 * enqueued, processing_p95, waiting. q NULL = every queue summed (not for processing_p95).
 * *out is new; JOBQ_EINVAL for an unknown metric or processing_p95 without a queue. */
int jobq_engine_stats_series(const jobq_engine *e, const jobq_queue *q, const char *metric,
                             int minutes, int64_t now, json_t **out);
/* /v1/stats/daily: {"days":[{"day","queue","enqueued","completed","failed",
 * "processing_ms":{"count","avg","p95"}}]} for the last `days` UTC days (today included),
 * oldest first; q NULL = every queue (new reference). */
json_t *jobq_engine_stats_daily(const jobq_engine *e, const jobq_queue *q, int days,
                                int64_t now);

/* Housekeeping: closes finished minutes, finishes a day's aggregates when the UTC day
 * changes, writes today's aggregates every stats_flush_ms, prunes days older than 90, and
 * re-evaluates health every health_interval_ms (announcing changes). Run it when
 * jobq_engine_stats_due() says; it is apart from tick/next_timer, which serve jobs only. */
void jobq_engine_stats_tick(jobq_engine *e, int64_t now);
int64_t jobq_engine_stats_due(const jobq_engine *e);
/* Writes today's aggregates of every queue now (into the next batch), e.g. before a stop. */
void jobq_engine_stats_flush(jobq_engine *e, int64_t now);

/* Prometheus histograms (/metrics): cumulative counts since the engine started. */
#define JOBQ_HIST_NLE 17
extern const int64_t jobq_hist_le_ms[JOBQ_HIST_NLE]; /* 100 ms … 4 h, the `le` bounds */
typedef struct jobq_hist_totals {
    uint64_t le[JOBQ_HIST_NLE]; /* observations <= jobq_hist_le_ms[i] */
    uint64_t count;             /* all observations (the +Inf bucket) */
    uint64_t sum_ms;
} jobq_hist_totals;
/* wait = 0: processing times; 1: wait times. */
void jobq_queue_hist_totals(const jobq_queue *q, int wait, jobq_hist_totals *out);
/* Workers seen in the last minute or holding jobs. */
int64_t jobq_engine_active_workers(const jobq_engine *e, int64_t now);
int64_t jobq_engine_uptime_ms(const jobq_engine *e, int64_t now);

/* ---- health (health.c; docs/metrics.md) */
enum { JOBQ_HEALTHY = 0, JOBQ_DEGRADED, JOBQ_UNHEALTHY };
const char *jobq_health_name(int level);
/* q's level now; reasons (may be NULL) gets one string per rule it breaks. */
int jobq_engine_queue_health(const jobq_engine *e, const jobq_queue *q, int64_t now,
                             json_t *reasons);
/* /v1/health: {"status","healthy","total","overloaded","errors","store","queues":{name:
 * {"status","reasons"}}}. store_ok = 0: the store fails, which makes every queue unhealthy
 * (new reference). */
json_t *jobq_engine_health(const jobq_engine *e, int64_t now, int store_ok);

/* Totals over the whole engine. */
size_t jobq_engine_job_total(const jobq_engine *e);

#endif
