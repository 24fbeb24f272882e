/*
 * events.h — what a state change looks like to subscribers (SSE, WebSocket, webhooks).
 *
 * The engine's changes become events once the batch holding them is durable (an event
 * never announces something a crash could undo). Each has a server-wide, monotonically
 * increasing seq and is rendered once, as the JSON object /v1/events sends
 * ({"seq","type","at","queue","job","project","group",…}); every consumer shares that text.
 */
#ifndef JOBQ_EVENTS_H
#define JOBQ_EVENTS_H

#include <stddef.h>
#include <stdint.h>

typedef struct jobq_event {
    uint64_t seq;
    const char *type; /* "job.created", "job.completed", "flow.completed", "queue.error", … */
    int64_t at;       /* ms since epoch */
    const char *queue, *job, *project, *group; /* NULL when the event has none */
    const char *json; /* the whole event object, NUL-terminated */
    size_t json_len;
} jobq_event;

/* The bus (events.c) carries every event to its sinks.
 *   stage:   called for every event as it is emitted, in the loop turn that made the change,
 *            before that change's batch is taken: a sink that must remember the event
 *            durably (the webhook outbox) adds documents to the same batch here
 *            (jobq_engine_doc_put), so the event and its delivery commit together.
 *   publish: called once the batch holding the event is durable, in seq order (SSE and
 *            WebSocket subscribers, the replay ring).
 * Either may be NULL. Sinks are called on the loop thread; ev is borrowed for the call. */
typedef struct jobq_event_sink {
    void (*stage)(void *ud, const jobq_event *ev);
    void (*publish)(void *ud, const jobq_event *ev);
    void *ud;
} jobq_event_sink;

typedef struct jobq_bus jobq_bus;

/* Adds a sink (copied). 0 or negative. */
int jobq_bus_add_sink(jobq_bus *bus, const jobq_event_sink *sink);

/* ---- the bus's own life, driven by the application (app.c) */

/* New bus keeping the last `ring` published events for replay (0: the default, 10000). */
jobq_bus *jobq_bus_new(size_t ring);
void jobq_bus_free(jobq_bus *bus); /* takes NULL */
/* The engine's event hook: stages the event at once and holds a copy until its batch is
 * durable. */
void jobq_bus_emit(jobq_bus *bus, const jobq_event *ev);
/* The batch just taken holds every event emitted so far. */
void jobq_bus_batch_taken(jobq_bus *bus);
/* The batch taken last is durable: its events are published, in seq order, and kept in the
 * replay ring. */
void jobq_bus_batch_durable(jobq_bus *bus);

/* ---- replay */

/* The oldest seq the ring still holds, or 0 when it is empty. */
uint64_t jobq_bus_oldest(const jobq_bus *bus);
/* The last seq published, or 0 when none was since the start. */
uint64_t jobq_bus_last(const jobq_bus *bus);
/* Calls fn for every event in the ring with seq > since, oldest first; stops when fn
 * returns non-zero. */
void jobq_bus_replay(const jobq_bus *bus, uint64_t since,
                     int (*fn)(void *ud, const jobq_event *ev), void *ud);

#endif
