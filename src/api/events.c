/*
 * events.c — the event bus: from the engine's emission to every sink, in seq order, never
 * ahead of the disk.
 *
 * The engine hands each event to jobq_bus_emit() in the call that made the change. The bus
 * calls every sink's `stage` at once (a webhook outbox adds its documents to the batch being
 * gathered) and keeps a copy: one allocation holding the struct, its JSON and its strings.
 * Held events are in one array in seq order; the application says when a batch is taken
 * (every event held so far rides in it) and when it is durable (those events are published
 * to every sink's `publish`, then moved into the replay ring). Only one batch is in flight
 * at a time (app.c), so the held array is: [events of the batch in flight | events of the
 * batch being gathered].
 *
 * The ring keeps the last N published events for subscribers that resume (Last-Event-ID,
 * ?since=); an older one is freed as a new one comes in.
 *
 * What it never does: block, or fail the engine. Out of memory aborts like every GLib
 * allocation.
 */
#include <string.h>

#include <glib.h>

#include "api/events.h"

#define DEFAULT_RING 10000

typedef struct held_event {
    jobq_event ev;
    char text[]; /* json '\0' type '\0' queue '\0' job '\0' project '\0' group '\0' */
} held_event;

struct jobq_bus {
    GArray *sinks;      /* jobq_event_sink */
    GPtrArray *held;    /* held_event*, not yet published */
    guint n_inflight;   /* the first n of held ride in the batch in flight */
    held_event **ring;  /* circular: the last `cap` published events */
    size_t cap, start, n;
    uint64_t last;      /* the last seq published */
};

jobq_bus *jobq_bus_new(size_t ring)
{
    jobq_bus *bus = g_new0(jobq_bus, 1);

    bus->sinks = g_array_new(FALSE, FALSE, sizeof(jobq_event_sink));
    bus->held = g_ptr_array_new_with_free_func(g_free);
    bus->cap = ring ? ring : DEFAULT_RING;
    bus->ring = g_new0(held_event *, bus->cap);
    return bus;
}

void jobq_bus_free(jobq_bus *bus)
{
    if (!bus)
        return;
    for (size_t i = 0; i < bus->n; i++)
        g_free(bus->ring[(bus->start + i) % bus->cap]);
    g_free(bus->ring);
    g_ptr_array_free(bus->held, TRUE);
    g_array_free(bus->sinks, TRUE);
    g_free(bus);
}

int jobq_bus_add_sink(jobq_bus *bus, const jobq_event_sink *sink)
{
    g_array_append_val(bus->sinks, *sink);
    return 0;
}

/* Copies s (may be NULL) to *p and returns where it went, moving *p past it. */
static const char *put(char **p, const char *s, size_t n)
{
    char *at = *p;

    if (!s)
        return NULL;
    memcpy(at, s, n);
    at[n] = '\0';
    *p += n + 1;
    return at;
}

static held_event *copy(const jobq_event *ev)
{
    size_t lt = strlen(ev->type), lq = ev->queue ? strlen(ev->queue) : 0,
           lj = ev->job ? strlen(ev->job) : 0, lp = ev->project ? strlen(ev->project) : 0,
           lg = ev->group ? strlen(ev->group) : 0;
    held_event *h = g_malloc(sizeof(*h) + ev->json_len + lt + lq + lj + lp + lg + 6);
    char *p = h->text;

    h->ev = *ev;
    h->ev.json = put(&p, ev->json, ev->json_len);
    h->ev.type = put(&p, ev->type, lt);
    h->ev.queue = put(&p, ev->queue, lq);
    h->ev.job = put(&p, ev->job, lj);
    h->ev.project = put(&p, ev->project, lp);
    h->ev.group = put(&p, ev->group, lg);
    return h;
}

void jobq_bus_emit(jobq_bus *bus, const jobq_event *ev)
{
    held_event *h = copy(ev);

    for (guint i = 0; i < bus->sinks->len; i++) {
        const jobq_event_sink *s = &g_array_index(bus->sinks, jobq_event_sink, i);
        if (s->stage)
            s->stage(s->ud, &h->ev);
    }
    g_ptr_array_add(bus->held, h);
}

void jobq_bus_batch_taken(jobq_bus *bus)
{
    bus->n_inflight = bus->held->len;
}

static void ring_push(jobq_bus *bus, held_event *h)
{
    if (bus->n == bus->cap) {
        g_free(bus->ring[bus->start]);
        bus->ring[bus->start] = h;
        bus->start = (bus->start + 1) % bus->cap;
    } else {
        bus->ring[(bus->start + bus->n) % bus->cap] = h;
        bus->n++;
    }
}

void jobq_bus_batch_durable(jobq_bus *bus)
{
    guint n = bus->n_inflight;

    if (!n)
        return;
    for (guint i = 0; i < n; i++) {
        held_event *h = g_ptr_array_index(bus->held, i);
        for (guint k = 0; k < bus->sinks->len; k++) {
            const jobq_event_sink *s = &g_array_index(bus->sinks, jobq_event_sink, k);
            if (s->publish)
                s->publish(s->ud, &h->ev);
        }
        bus->last = h->ev.seq;
        ring_push(bus, h);
        bus->held->pdata[i] = NULL; /* the ring owns it now */
    }
    g_ptr_array_remove_range(bus->held, 0, n);
    bus->n_inflight = 0;
}

uint64_t jobq_bus_oldest(const jobq_bus *bus)
{
    return bus->n ? bus->ring[bus->start]->ev.seq : 0;
}

uint64_t jobq_bus_last(const jobq_bus *bus)
{
    return bus->last;
}

void jobq_bus_replay(const jobq_bus *bus, uint64_t since,
                     int (*fn)(void *ud, const jobq_event *ev), void *ud)
{
    size_t lo = 0, hi = bus->n;

    /* seqs in the ring are increasing: find the first one past `since` */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (bus->ring[(bus->start + mid) % bus->cap]->ev.seq <= since)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < bus->n; i++)
        if (fn(ud, &bus->ring[(bus->start + i) % bus->cap]->ev))
            return;
}
