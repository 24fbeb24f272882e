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

#endif
