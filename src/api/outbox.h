/*
 * outbox.h — webhooks: registered hooks, the durable outbox of deliveries, and sending.
 *
 * A sink on the event bus (events.h). Its `stage` callback matches each event against the
 * registered hooks and the job's own `webhook`, and writes a delivery document (kind
 * "delivery") into the very batch that holds the change, so a delivery exists exactly when
 * the change is durable. Its `publish` callback (the batch is durable) releases those
 * deliveries to the sender: POSTs through libcurl multi on the loop (send.h), signed and
 * retried with exponential backoff. Every step of a delivery is written back to its
 * document, so a restart (even after kill -9) resumes what was pending: at least once.
 * Finished deliveries stay as a bounded history per hook, then their documents go.
 *
 * Hooks are documents of kind "webhook". Both kinds are loaded through the application's
 * document hook and resumed by jobq_webhooks_start once the store is loaded.
 *
 * What it never does: block the loop or the engine (a slow endpoint only holds its own
 * delivery slots), or let the outbox grow without bound (past max_outbox new deliveries are
 * dropped and counted). Everything runs on the loop thread, except load_doc, which runs
 * on the loading thread while nothing else touches the module.
 */
#ifndef JOBQ_OUTBOX_H
#define JOBQ_OUTBOX_H

#include <stddef.h>
#include <stdint.h>
#include <glib.h>
#include <uv.h>

#include "api/events.h"
#include "engine/engine.h"

typedef struct jobq_webhooks jobq_webhooks;

typedef struct jobq_webhooks_config {
    int64_t backoff_ms;  /* first retry after this; each next one 4 times longer (30000) */
    int64_t progress_ms; /* job.progress: at most one per job and hook per this (30000) */
    int64_t timeout_ms;  /* per attempt (10000) */
    size_t max_inflight; /* concurrent POSTs in all (32) */
    size_t max_per_hook; /* concurrent POSTs per hook (4) */
    size_t max_outbox;   /* deliveries not yet finished (10000) */
} jobq_webhooks_config;

#define JOBQ_WEBHOOK_ATTEMPTS 4 /* the first try and 3 retries */

/* New module (0 fields of cfg take the defaults). NULL on failure. */
jobq_webhooks *jobq_webhooks_new(uv_loop_t *loop, jobq_engine *e, const jobq_webhooks_config *cfg);
/* Loading: a stored document. Claims kinds "webhook" and "delivery" (returns 0 for those
 * and for every other kind, which it leaves alone); a document it cannot read is dropped
 * with a line on stderr. */
int jobq_webhooks_load_doc(jobq_webhooks *w, const char *kind, const char *id, const char *body);
/* After the load: pending deliveries are queued again (due retries at once). */
void jobq_webhooks_start(jobq_webhooks *w, int64_t now);
/* The bus sink (stage and publish, ud = w). */
jobq_event_sink jobq_webhooks_sink(jobq_webhooks *w);
/* The server is stopping: no new POST starts (those in flight may still end and have their
 * outcome stored with the last batch); what is pending stays pending for the next start.
 * Without it a stop would last as long as deliveries keep finishing. */
void jobq_webhooks_stop(jobq_webhooks *w);
/* Abandons transfers in flight (their deliveries stay pending in the store) and closes
 * every handle. jobq_webhooks_free once the loop has run the close callbacks. */
void jobq_webhooks_close(jobq_webhooks *w);
void jobq_webhooks_free(jobq_webhooks *w); /* takes NULL */

/* ---- for the HTTP resource (webhooks.c). Changes ride in the engine's next batch. */
/* Registers a hook from its normalised description (jobq_webhook_parse) and appends it as
 * the API shows it to o. JOBQ_EFULL past the limit of hooks. */
int jobq_webhooks_add(jobq_webhooks *w, const char *spec, int64_t now, GString *o);
/* Deletes a hook, its pending deliveries and its history. JOBQ_ENOTFOUND. */
int jobq_webhooks_remove(jobq_webhooks *w, const char *id);
/* Appends the hook `id` (JOBQ_ENOTFOUND), or {"webhooks":[…],"outbox":{…}}. */
int jobq_webhooks_render(const jobq_webhooks *w, const char *id, GString *o);
void jobq_webhooks_render_all(const jobq_webhooks *w, GString *o);
/* Appends {"deliveries":[…]} of hook `id` (or "job:<job id>" for a job's own webhook),
 * pending first, then finished newest first, at most limit. JOBQ_ENOTFOUND. */
int jobq_webhooks_render_deliveries(const jobq_webhooks *w, const char *id, size_t limit,
                                    GString *o);

#endif
