/*
 * api.h — the HTTP resources of jobq and the application that serves them.
 *
 * app.c ties the engine, the store and the HTTP server together on one libuv loop: it runs
 * the group commit (every change of a loop turn → one store batch → answers after it is
 * synced), the engine's timers, parked long-poll fetches and result waits, and shutdown.
 * The other files are one per resource: parse and validate JSON → call the engine → JSON
 * out. No handler touches SQLite or any store detail; HTTP status mapping lives here only.
 */
#ifndef JOBQ_API_H
#define JOBQ_API_H

#include <jansson.h>
#include <uv.h>

#include "api/events.h"
#include "engine/engine.h"
#include "http/server.h"
#include "store/store.h"

typedef struct jobq_app jobq_app;
typedef struct jobq_settings jobq_settings;

typedef struct jobq_app_config {
    const char *listen_host;
    int listen_port;
    const char *data_dir;
    int strict_queues;
    size_t max_body;
    int64_t webhook_backoff_ms;  /* first webhook retry (0: 30 s); each next one 4 times longer */
    int64_t webhook_progress_ms; /* job.progress to a hook at most once per this (0: 30 s) */
    size_t webhook_outbox_max;   /* unfinished deliveries kept (0: 10000) */
    jobq_settings *settings; /* stolen; NULL: the shipped defaults */
    size_t event_ring;   /* events kept for replay (0: 10000) */
    size_t event_buffer; /* bytes a subscriber may fall behind by (0: 8 MiB) */
    int64_t idempotency_ttl_ms; /* how long Idempotency-Key answers are kept (0: 24 h) */
    size_t idempotency_max_bytes; /* their memory before the oldest go early (0: 64 MiB) */
    int64_t stats_flush_ms;     /* 0: the engine's default */
    int64_t health_interval_ms; /* 0: the engine's default */
} jobq_app_config;

/* Opens the store, listens, and starts loading the store in the background: until it is
 * loaded /healthz answers 200 and every other path 503, and "listening on" is printed once
 * it is. NULL with a message on stderr when the store cannot be opened or the address not
 * bound; *exit_code says which (1: lock/bind, 2: store). */
jobq_app *jobq_app_new(uv_loop_t *loop, const jobq_app_config *cfg, int *exit_code);
/* The port actually bound. */
int jobq_app_port(const jobq_app *a);
/* Begins a graceful stop: no new connections; in-flight requests finish; parked ones are
 * answered; then every handle closes and uv_run returns. */
void jobq_app_stop(jobq_app *a);
/* The process's exit status once uv_run returned: 0, or 2 when the store could not be
 * loaded or a stop gave up on changes a failing store never took. */
int jobq_app_exit_code(const jobq_app *a);
/* Frees what is left after uv_run returned. Takes NULL. */
void jobq_app_free(jobq_app *a);

/* ---- for handlers (app.c) */
jobq_engine *jobq_app_engine(jobq_app *a);
jobq_store *jobq_app_store(jobq_app *a);
/* The Idempotency-Key records (idem.c). */
struct jobq_idem *jobq_app_idem(jobq_app *a);
struct jobq_webhooks *jobq_app_webhooks(jobq_app *a);
/* The event bus (events.h): add sinks here, e.g. when the app is created. */
jobq_bus *jobq_app_bus(jobq_app *a);
/* The /v1/events subscribers (stream.h), the /v1/worker sockets (wsworker.h), the loop. */
struct jobq_streams *jobq_app_streams(jobq_app *a);
struct jobq_wsworkers *jobq_app_wsworkers(jobq_app *a);
uv_loop_t *jobq_app_loop(jobq_app *a);
int64_t jobq_app_now(void);
/* 0 while the store fails to save batches (they are being retried), else 1. */
int jobq_app_store_ok(const jobq_app *a);
/* Non-zero when state changes are accepted now; otherwise answers 503 and returns 0. */
int jobq_app_writable(jobq_app *a, jobq_req *rq);
/* Answers rq with finish(rq) once every change made so far is durable, or 503 if the store
 * fails; when nothing is pending, at once. */
typedef void (*jobq_finish_fn)(jobq_app *a, jobq_req *rq);
void jobq_app_after_commit(jobq_app *a, jobq_req *rq, jobq_finish_fn finish);
/* The same for a caller that is not a request: fn(a, ud, ok) runs once every change made so
 * far is durable (ok = 1) or the store failed it (ok = 0); at once when nothing is pending. */
void jobq_app_when_durable(jobq_app *a, void (*fn)(jobq_app *a, void *ud, int ok), void *ud);
/* 1 when state changes are accepted now (the store takes writes, the server is not
 * stopping): jobq_app_writable without an answer. */
int jobq_app_accepts_changes(const jobq_app *a);
/* Parks a fetch that found nothing: answered when jobs arrive or at deadline. queues are
 * copied; capacity (may be NULL) is stolen. */
void jobq_app_park_fetch(jobq_app *a, jobq_req *rq, const char *const *queues, size_t nq,
                         size_t count, const char *worker, jobq_resources *capacity,
                         int64_t deadline);
/* Parks a result wait on job id until it is final or at deadline. */
void jobq_app_park_result(jobq_app *a, jobq_req *rq, const char *id, int64_t deadline);
/* The same for a flow (flow = 1: id is a flow's; answered with the flow when it ends). */
void jobq_app_park_wait(jobq_app *a, jobq_req *rq, const char *id, int flow, int64_t deadline);

/* ---- server settings (config.c): tiers, max_active_jobs, queues from the config file;
 * layers: shipped defaults < file < flags < runtime (PATCH /v1/config, persisted) */
jobq_settings *jobq_settings_new(void);
void jobq_settings_free(jobq_settings *s);
/* Reads a JSON config file; -1 with *err (new, g_free) naming the file and field. */
int jobq_settings_load_file(jobq_settings *s, const char *path, char **err);
/* --max-active-jobs N, --tier NAME=LIMIT[/PRIORITY]; -1 with *err. */
int jobq_settings_flag_max_active(jobq_settings *s, const char *arg, char **err);
int jobq_settings_flag_tier(jobq_settings *s, const char *arg, char **err);
/* The stored runtime layer (document "config"/"runtime"). */
int jobq_settings_load_runtime(jobq_settings *s, const char *body);
/* Pushes the effective tiers and cap into the engine. */
void jobq_settings_apply(jobq_settings *s, jobq_engine *e, int64_t now);
/* Creates or patches the file's queues; -1 with *err. */
int jobq_settings_apply_queues(jobq_settings *s, jobq_engine *e, int64_t now, char **err);
jobq_settings *jobq_app_settings(jobq_app *a);

/* ---- helpers (common.c) */
/* The request body as a JSON value (new reference). Empty body → {} unless required. On
 * error answers 400 invalid_json and returns NULL. */
json_t *jobq_api_body(jobq_req *rq, int required);
/* jobq_api_body for verbs whose body must be an object: anything else answers 400 naming
 * "body" and returns NULL, like every other error. */
json_t *jobq_api_object_body(jobq_req *rq, int required);
/* 1 when JSON text nests deeper than the 64 levels any body may have. */
int jobq_api_too_deep(const char *s, size_t len);
/* Answers the error for jobq code rc (404, 409, 429, …) with message msg. */
void jobq_api_fail(jobq_req *rq, int rc, const char *msg);
/* 400 invalid_argument naming field. */
void jobq_api_bad_field(jobq_req *rq, const char *field, const char *why);
/* Answers a jansson value (stolen) with status. */
void jobq_api_json(jobq_req *rq, unsigned status, json_t *v);
/* Answers a GString (stolen). */
void jobq_api_gstring(jobq_req *rq, unsigned status, GString *s);
/* Parses a non-negative integer query argument; def when absent. -1 (and a 400 sent) when
 * malformed or above max. */
int64_t jobq_api_query_int(jobq_req *rq, const char *name, int64_t def, int64_t max);
/* Parses a failure (the "error" object, "retry_in_ms", "queue_backoff" (may be NULL)) into
 * f; strings are borrowed from the JSON, *details is new (free()). NULL on success, else the
 * reason, with *field naming the offending field. (worker.c) */
const char *jobq_api_parse_failure(const json_t *err, const json_t *retry_in,
                                   const json_t *queue_backoff, jobq_failure *f, char **details,
                                   const char **field);
/* Answers `body` (stolen; NULL = no body) once every change so far is durable. (jobs.c) */
void jobq_api_reply_durable(jobq_app *a, jobq_req *rq, unsigned status, GString *body);
/* Renders one job answer. */
void jobq_api_job(jobq_app *a, jobq_req *rq, unsigned status, const jobq_job *j, int with_lease);
/* The job as an answer's body (no lease), e.g. for jobq_api_reply_durable. */
GString *jobq_api_job_text(jobq_app *a, const jobq_job *j);
/* Answers 200 {"id","state","result","error"} for j (GET /v1/jobs/{id}/result). */
void jobq_api_result(jobq_req *rq, const jobq_job *j);
/* 404 not_found "<what> <id> not found" (id cut at 200 bytes; the message is escaped). */
void jobq_api_not_found(jobq_req *rq, const char *what, const char *id);
/* 404 for a missing job/queue, else the object. */
jobq_job *jobq_api_find_job(jobq_app *a, jobq_req *rq);
jobq_queue *jobq_api_find_queue(jobq_app *a, jobq_req *rq);

/* Validates a flow body (stolen reference kept by the caller) and creates the flow, answering
 * 201 with it once durable, or the error. skipped: pipeline stages left out. (flows.c) */
void jobq_api_flow_submit(jobq_req *rq, json_t *body, const char *const *skipped,
                          size_t nskipped);
/* Pipelines: the stored templates, by name (pipelines.c). */
typedef struct jobq_pipelines jobq_pipelines;
jobq_pipelines *jobq_pipelines_new(void);
void jobq_pipelines_free(jobq_pipelines *p);
/* Loading: a stored document of kind "pipeline". */
int jobq_pipelines_load(jobq_pipelines *p, const char *name, const char *body);
jobq_pipelines *jobq_app_pipelines(jobq_app *a);

/* ---- the routes (routes.c) */
extern const jobq_route jobq_routes[];
extern const size_t jobq_nroutes;

/* handlers, by file */
void jobq_h_healthz(jobq_req *rq);
void jobq_h_readyz(jobq_req *rq);
void jobq_h_stats(jobq_req *rq);
void jobq_h_workers(jobq_req *rq);
void jobq_h_config_get(jobq_req *rq);
void jobq_h_config_patch(jobq_req *rq);
void jobq_h_stats_series(jobq_req *rq); /* stats.c */
void jobq_h_stats_daily(jobq_req *rq);
void jobq_h_health(jobq_req *rq);
void jobq_h_metrics(jobq_req *rq); /* metrics.c */

void jobq_h_queues_list(jobq_req *rq);
void jobq_h_queue_create(jobq_req *rq);
void jobq_h_queue_get(jobq_req *rq);
void jobq_h_queue_patch(jobq_req *rq);
void jobq_h_queue_delete(jobq_req *rq);
void jobq_h_queue_pause(jobq_req *rq);
void jobq_h_queue_resume(jobq_req *rq);
void jobq_h_queue_drain(jobq_req *rq);
void jobq_h_queue_clear(jobq_req *rq);
void jobq_h_queue_clean(jobq_req *rq);
void jobq_h_queue_recover(jobq_req *rq);
void jobq_h_queue_stats(jobq_req *rq);

void jobq_h_enqueue(jobq_req *rq);
void jobq_h_jobs_list(jobq_req *rq);
void jobq_h_job_get(jobq_req *rq);
void jobq_h_job_patch(jobq_req *rq);
void jobq_h_job_delete(jobq_req *rq);
void jobq_h_job_result(jobq_req *rq);
void jobq_h_job_history(jobq_req *rq);
void jobq_h_job_logs_get(jobq_req *rq);
void jobq_h_job_cancel(jobq_req *rq);
void jobq_h_job_retry(jobq_req *rq);
void jobq_h_dead_list(jobq_req *rq);
void jobq_h_dead_stats(jobq_req *rq);
void jobq_h_dead_retry(jobq_req *rq);

void jobq_h_events(jobq_req *rq);    /* stream.c */
void jobq_h_worker_ws(jobq_req *rq); /* wsworker.c */
void jobq_h_flow_create(jobq_req *rq);
void jobq_h_flow_get(jobq_req *rq);
void jobq_h_flows_list(jobq_req *rq);
void jobq_h_flow_cancel(jobq_req *rq);
void jobq_h_job_approve(jobq_req *rq);
void jobq_h_job_reject(jobq_req *rq);
void jobq_h_pipelines_list(jobq_req *rq);
void jobq_h_pipeline_put(jobq_req *rq);
void jobq_h_pipeline_get(jobq_req *rq);
void jobq_h_pipeline_delete(jobq_req *rq);
void jobq_h_pipeline_run(jobq_req *rq);

void jobq_h_fetch(jobq_req *rq);
void jobq_h_heartbeat(jobq_req *rq);
void jobq_h_progress(jobq_req *rq);
void jobq_h_complete(jobq_req *rq);
void jobq_h_fail(jobq_req *rq);
void jobq_h_logs_post(jobq_req *rq);
void jobq_h_ack(jobq_req *rq);

void jobq_h_webhooks_list(jobq_req *rq);
void jobq_h_webhook_create(jobq_req *rq);
void jobq_h_webhook_get(jobq_req *rq);
void jobq_h_webhook_delete(jobq_req *rq);
void jobq_h_webhook_deliveries(jobq_req *rq);
void jobq_h_schedules_list(jobq_req *rq);
void jobq_h_schedule_create(jobq_req *rq);
void jobq_h_schedule_get(jobq_req *rq);
void jobq_h_schedule_patch(jobq_req *rq);
void jobq_h_schedule_delete(jobq_req *rq);
void jobq_h_schedule_pause(jobq_req *rq);
void jobq_h_schedule_resume(jobq_req *rq);
void jobq_h_schedule_trigger(jobq_req *rq);

#endif
