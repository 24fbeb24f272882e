/*
 * limits.c — fairness and limits: groups and tiers, the server-wide cap, rate limits,
 * queue backoff, the circuit breaker, and resource-aware dispatch.
 *
 * Plain queues never come here on the hot path: engine.c's fetch takes the head of
 * q->ready as before and only asks this file when a queue is grouped (q->fair), gated
 * (q->gated: rate limit, backoff, breaker) or the worker declared a capacity.
 *
 * Grouped dispatch keeps ready groups and saturated groups apart (see jobq_gslot in
 * internal.h): a fetch takes the first slot in line, which holds only groups below
 * their limit, so its cost does not grow with the number of saturated groups. A group
 * leaves the line when it reaches its limit and returns when one of its jobs stops being
 * active.
 *
 * Gates hold no timer of their own: when one closes with work waiting, the queue gets a
 * wake_at, which jobq_engine_next_timer reports and jobq_engine_tick turns into a `ready`
 * hook, so parked fetches are offered the queue the moment it opens.
 *
 * It never does I/O; `now` comes from the caller.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

/* A big job passed over this many times for smaller ones reserves the worker capacity it
 * needs (docs/limits.md). */
#define RESERVE_AFTER 8
/* Most ready jobs one capacity-aware pick looks at in a queue. */
#define FIT_SCAN_MAX 256
/* Most dispatches a rate window may allow (the window is kept exactly: one time each). */
#define RATE_MAX_MAX 1000000

/* ---------------------------------------------------------------- resources */

void jobq_resources_free(jobq_resources *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        g_free(r->names[i]);
    g_free(r->names);
    g_free(r->v);
    g_free(r);
}

jobq_resources *jobq_resources_parse(const json_t *v, const char **why)
{
    jobq_resources *r;
    const char *key;
    json_t *x;

    *why = "must be an object of at most 32 non-negative numbers";
    if (!json_is_object(v) || json_object_size(v) > 32)
        return NULL;
    r = g_new0(jobq_resources, 1);
    r->names = g_new0(char *, json_object_size(v) + 1);
    r->v = g_new0(double, json_object_size(v) + 1);
    json_object_foreach((json_t *)v, key, x)
    {
        if (!json_is_number(x) || json_number_value(x) < 0 || !isfinite(json_number_value(x)) ||
            strlen(key) > 128 || !*key) {
            jobq_resources_free(r);
            return NULL;
        }
        r->names[r->n] = g_strdup(key);
        r->v[r->n++] = json_number_value(x);
    }
    return r;
}

jobq_resources *jobq_resources_from_text(const char *json)
{
    json_t *v = json ? json_loads(json, 0, NULL) : NULL;
    const char *why;
    jobq_resources *r = v ? jobq_resources_parse(v, &why) : NULL;

    json_decref(v);
    if (r && !r->n) { /* {} requires nothing */
        jobq_resources_free(r);
        r = NULL;
    }
    return r;
}

static double res_get(const jobq_resources *r, const char *name)
{
    for (size_t i = 0; r && i < r->n; i++)
        if (strcmp(r->names[i], name) == 0)
            return r->v[i];
    return 0;
}

/* *acc += sign × r, adding names as needed. */
static void res_add(jobq_resources **acc, const jobq_resources *r, double sign)
{
    jobq_resources *a = *acc;

    if (!a)
        a = *acc = g_new0(jobq_resources, 1);
    for (size_t i = 0; i < r->n; i++) {
        size_t k;
        for (k = 0; k < a->n; k++)
            if (strcmp(a->names[k], r->names[i]) == 0)
                break;
        if (k == a->n) {
            a->names = g_renew(char *, a->names, a->n + 1);
            a->v = g_renew(double, a->v, a->n + 1);
            a->names[k] = g_strdup(r->names[i]);
            a->v[k] = 0;
            a->n++;
        }
        a->v[k] += sign * r->v[i];
        if (fabs(a->v[k]) < 1e-9)
            a->v[k] = 0;
    }
}

/* Does req fit in cap less used? A name the capacity does not declare counts as 0. */
static int res_fits(const jobq_resources *req, const jobq_resources *cap,
                    const jobq_resources *used)
{
    for (size_t i = 0; i < req->n; i++)
        if (req->v[i] > res_get(cap, req->names[i]) - res_get(used, req->names[i]) + 1e-9)
            return 0;
    return 1;
}

/* ---------------------------------------------------------------- engine state */

static void tier_free(gpointer p)
{
    g_free(p);
}

void jobq_limits_init(jobq_engine *e)
{
    e->tiers = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, tier_free);
    e->waking = g_ptr_array_new();
}

void jobq_limits_fini(jobq_engine *e)
{
    g_hash_table_destroy(e->tiers);
    g_ptr_array_free(e->waking, TRUE);
}

jobq_worker *jobq_worker_get(jobq_engine *e, const char *id)
{
    jobq_worker *w = g_hash_table_lookup(e->workers, id);

    if (!w) {
        w = g_new0(jobq_worker, 1);
        w->id = g_strdup(id);
        g_hash_table_insert(e->workers, w->id, w);
    }
    return w;
}

/* ---------------------------------------------------------------- wakes */

static void wake_at(jobq_engine *e, jobq_queue *q, int64_t at)
{
    if (q->wake_at && q->wake_at <= at)
        return;
    if (!q->wake_at)
        g_ptr_array_add(e->waking, q);
    q->wake_at = at;
}

int64_t jobq_wake_next(const jobq_engine *e)
{
    int64_t t = INT64_MAX;

    for (guint i = 0; i < e->waking->len; i++) {
        jobq_queue *q = g_ptr_array_index(e->waking, i);
        if (q->wake_at < t)
            t = q->wake_at;
    }
    return t;
}

void jobq_wake_fire(jobq_engine *e, int64_t now)
{
    for (guint i = 0; i < e->waking->len;) {
        jobq_queue *q = g_ptr_array_index(e->waking, i);
        if (q->wake_at > now) {
            i++;
            continue;
        }
        q->wake_at = 0;
        g_ptr_array_remove_index_fast(e->waking, i);
        if (g_sequence_get_length(q->ready))
            jobq_notify_ready(e, q);
    }
}

void jobq_limits_queue_deleted(jobq_engine *e, jobq_queue *q)
{
    if (q->wake_at)
        g_ptr_array_remove_fast(e->waking, q);
    q->wake_at = 0;
}

/* ---------------------------------------------------------------- gates */

static void gated_update(jobq_queue *q)
{
    q->gated = q->o.rate_per_ms > 0 || q->backoff_until > 0 || q->cb_state != CB_CLOSED;
}

/* Drops dispatch times that left the window (now - per_ms, now]. */
static void rate_trim(jobq_queue *q, int64_t now)
{
    while (q->rate_len && q->rate_ring[q->rate_head] <= now - q->o.rate_per_ms) {
        q->rate_head = (q->rate_head + 1) % q->rate_cap;
        q->rate_len--;
    }
}

int jobq_gate_open(jobq_engine *e, jobq_queue *q, int64_t now)
{
    if (q->backoff_until) {
        if (now < q->backoff_until) {
            wake_at(e, q, q->backoff_until);
            return 0;
        }
        q->backoff_until = 0;
        gated_update(q);
    }
    if (q->cb_state == CB_HALF_OPEN)
        return 0; /* the trial is out: nothing else until it reports */
    if (q->cb_state == CB_OPEN && now < q->cb_until) {
        wake_at(e, q, q->cb_until);
        return 0;
    }
    if (q->o.rate_per_ms > 0) {
        rate_trim(q, now);
        if (q->rate_len >= (size_t)q->o.rate_max) {
            wake_at(e, q, q->rate_ring[q->rate_head] + q->o.rate_per_ms);
            return 0;
        }
    }
    return 1;
}

/* Records a dispatch at `at` in q's window (times come in ascending order). */
static void rate_record(jobq_queue *q, int64_t at)
{
    if (q->rate_len == q->rate_cap) {
        /* grow the ring (at most rate_max entries), keeping its order */
        size_t cap = q->rate_cap ? q->rate_cap * 2 : 16;
        int64_t *r;
        if (cap > (size_t)q->o.rate_max)
            cap = (size_t)q->o.rate_max;
        r = g_new(int64_t, cap);
        for (size_t i = 0; i < q->rate_len; i++)
            r[i] = q->rate_ring[(q->rate_head + i) % q->rate_cap];
        g_free(q->rate_ring);
        q->rate_ring = r;
        q->rate_head = 0;
        q->rate_cap = cap;
    }
    q->rate_ring[(q->rate_head + q->rate_len) % q->rate_cap] = at;
    q->rate_len++;
}

static gint i64_cmp(gconstpointer a, gconstpointer b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

/* After a restart each rate window starts from the start times the store holds (every job's
 * latest attempt), so a restart in the middle of a full window does not open it early. */
void jobq_rate_load_done(jobq_engine *e, int64_t now)
{
    GHashTable *starts = g_hash_table_new_full(NULL, NULL, NULL, (GDestroyNotify)g_array_unref);
    GHashTableIter it;
    gpointer k, v;

    for (jobq_link *l = e->all.head.next; l != &e->all.head; l = l->next) {
        jobq_job *j = JOB_OF_ALINK(l);
        jobq_queue *q = j->q;
        GArray *a;
        if (q->o.rate_per_ms <= 0 || !j->x || j->x->started_at <= now - q->o.rate_per_ms ||
            j->x->started_at > now)
            continue;
        a = g_hash_table_lookup(starts, q);
        if (!a)
            g_hash_table_insert(starts, q, a = g_array_new(FALSE, FALSE, sizeof(int64_t)));
        g_array_append_val(a, j->x->started_at);
    }
    g_hash_table_iter_init(&it, starts);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        jobq_queue *q = k;
        GArray *a = v;
        g_array_sort(a, i64_cmp);
        for (guint i = a->len > (guint)q->o.rate_max ? a->len - (guint)q->o.rate_max : 0;
             i < a->len; i++)
            rate_record(q, g_array_index(a, int64_t, i));
    }
    g_hash_table_destroy(starts);
}

void jobq_dispatched(jobq_engine *e, jobq_queue *q, jobq_job *j, int64_t now)
{
    (void)e;
    if (q->o.rate_per_ms > 0)
        rate_record(q, now);
    if (q->cb_state == CB_OPEN) { /* past the cooldown (the gate let it through) */
        q->cb_state = CB_HALF_OPEN;
        q->cb_trial = j;
    }
}

void jobq_queue_backoff(jobq_engine *e, jobq_queue *q, int64_t until)
{
    if (until <= q->backoff_until)
        return;
    q->backoff_until = until;
    gated_update(q);
    wake_at(e, q, until);
}

/* The breaker's transitions are announced as queue.error (opened, or re-opened after a failed
 * trial) and queue.resumed (closed), with the status clients now see. */
static void cb_announce(jobq_engine *e, jobq_queue *q, const char *type, int64_t now)
{
    char f[160];

    if (!jobq_engine_events_on(e))
        return;
    snprintf(f, sizeof f, "\"status\":\"%s\",\"breaker\":\"%s\",\"failures\":%" PRId64,
             jobq_qstatus_name(jobq_queue_status(q)), q->cb_state == CB_CLOSED ? "closed" : "open",
             q->cb_fails);
    jobq_engine_emit(e, type, now, q->name, NULL, NULL, NULL, f);
}

static void cb_open(jobq_engine *e, jobq_queue *q, int64_t now)
{
    q->cb_state = CB_OPEN;
    q->cb_until = now + q->o.cb_cooldown_ms;
    q->cb_trial = NULL;
    gated_update(q);
    wake_at(e, q, q->cb_until);
    jobq_queue_touch(e, q, now);
    cb_announce(e, q, "queue.error", now);
}

void jobq_breaker_failure(jobq_engine *e, jobq_queue *q, jobq_job *j, int64_t now)
{
    if (q->o.cb_failures <= 0)
        return;
    q->cb_fails++;
    if (q->cb_state == CB_HALF_OPEN && q->cb_trial == j)
        cb_open(e, q, now); /* the trial failed: another cooldown */
    else if (q->cb_state == CB_CLOSED && q->cb_fails >= q->o.cb_failures)
        cb_open(e, q, now);
}

void jobq_breaker_success(jobq_engine *e, jobq_queue *q, int64_t now)
{
    q->cb_fails = 0;
    if (q->cb_state == CB_CLOSED)
        return;
    q->cb_state = CB_CLOSED;
    q->cb_trial = NULL;
    gated_update(q);
    jobq_queue_touch(e, q, now);
    cb_announce(e, q, "queue.resumed", now);
    if (g_sequence_get_length(q->ready))
        jobq_notify_ready(e, q);
}

json_t *jobq_breaker_json(const jobq_queue *q)
{
    static const char *const names[] = {"closed", "open", "half_open"};

    if (q->o.cb_failures <= 0)
        return json_null();
    return json_pack("{s:s, s:I, s:o}", "state", names[q->cb_state], "failures",
                     (json_int_t)q->cb_fails,
                     "trial_at", q->cb_state == CB_OPEN ? json_integer(q->cb_until) : json_null());
}

int jobq_queue_status(const jobq_queue *q)
{
    if (q->cb_state != CB_CLOSED && q->status == JOBQ_Q_ACTIVE)
        return JOBQ_Q_ERROR;
    return q->status;
}

/* ---------------------------------------------------------------- groups */

static gint slot_cmp(gconstpointer a, gconstpointer b, gpointer ud)
{
    const jobq_gslot *x = a, *y = b;

    (void)ud;
    if (x->priority != y->priority)
        return x->priority > y->priority ? -1 : 1;
    return x->key < y->key ? -1 : x->key > y->key;
}

static gint level_cmp(gconstpointer a, gconstpointer b, gpointer ud)
{
    const jobq_level *x = a, *y = b;

    (void)ud;
    return x->priority > y->priority ? -1 : x->priority < y->priority;
}

static jobq_job *slot_first(const jobq_gslot *s)
{
    return s->first;
}

/* ---- the line: slots whose group may run another job */

/* s joins the line: at the back of its priority (round-robin) or by its first job (fifo). */
static void line_add(jobq_queue *q, jobq_gslot *s)
{
    jobq_level *lv = s->lv;

    s->in_line = 1;
    if (!q->rr) {
        s->key = slot_first(s)->seq;
        s->it = g_sequence_insert_sorted(q->slots, s, slot_cmp, NULL);
        return;
    }
    s->lnext = NULL;
    s->lprev = lv->tail;
    if (lv->tail) {
        lv->tail->lnext = s;
    } else {
        lv->head = s;
        lv->it = g_sequence_insert_sorted(q->levels, lv, level_cmp, NULL);
    }
    lv->tail = s;
}

static void line_remove(jobq_queue *q, jobq_gslot *s)
{
    jobq_level *lv = s->lv;

    s->in_line = 0;
    if (!q->rr) {
        g_sequence_remove(s->it);
        s->it = NULL;
        return;
    }
    if (s->lprev)
        s->lprev->lnext = s->lnext;
    else
        lv->head = s->lnext;
    if (s->lnext)
        s->lnext->lprev = s->lprev;
    else
        lv->tail = s->lprev;
    s->lprev = s->lnext = NULL;
    if (!lv->head) {
        g_sequence_remove(lv->it);
        lv->it = NULL;
    }
}

/* Round-robin: s was served; it goes to the back of its priority. */
static void line_rotate(jobq_queue *q, jobq_gslot *s)
{
    if (s->lv->tail == s)
        return;
    line_remove(q, s); /* the level keeps other slots: it stays in q->levels */
    line_add(q, s);
}

/* Fifo: s's first job changed. */
static void line_rekey(jobq_gslot *s)
{
    s->key = slot_first(s)->seq;
    g_sequence_sort_changed(s->it, slot_cmp, NULL);
}

static jobq_gslot *line_first(jobq_queue *q)
{
    GSequenceIter *it = g_sequence_get_begin_iter(q->rr ? q->levels : q->slots);

    if (g_sequence_iter_is_end(it))
        return NULL;
    return q->rr ? ((jobq_level *)g_sequence_get(it))->head : g_sequence_get(it);
}

static jobq_gslot *line_next(jobq_queue *q, jobq_gslot *s)
{
    GSequenceIter *it;

    if (q->rr && s->lnext)
        return s->lnext;
    it = g_sequence_iter_next(q->rr ? s->lv->it : s->it);
    if (g_sequence_iter_is_end(it))
        return NULL;
    return q->rr ? ((jobq_level *)g_sequence_get(it))->head : g_sequence_get(it);
}

static jobq_level *level_get(jobq_queue *q, int priority)
{
    jobq_level *lv = g_hash_table_lookup(q->level_of, GINT_TO_POINTER(priority));

    if (!lv) {
        lv = g_new0(jobq_level, 1);
        lv->priority = priority;
        g_hash_table_insert(q->level_of, GINT_TO_POINTER(priority), lv);
    }
    return lv;
}

/* ---- groups */

static int64_t group_limit(const jobq_engine *e, const jobq_queue *q, const jobq_group *g)
{
    int64_t lim = q->o.group_concurrency;

    if (!g->name[0])
        return 0;
    if (g->tier) {
        const jobq_tier *t = g_hash_table_lookup(e->tiers, g->tier);
        if (t && t->group_concurrency > 0 && (lim == 0 || t->group_concurrency < lim))
            lim = t->group_concurrency;
    }
    return lim;
}

/* Re-evaluates g's limit; moves its slots out of or back into the line as it saturates or
 * frees up. Returns 1 when it freed up. */
static int group_refresh(jobq_engine *e, jobq_queue *q, jobq_group *g)
{
    int sat;

    g->limit = group_limit(e, q, g);
    sat = g->limit > 0 && g->active >= g->limit;
    if (sat == g->saturated)
        return 0;
    g->saturated = sat;
    for (jobq_gslot *s = g->slots; s; s = s->next) {
        if (sat && s->in_line)
            line_remove(q, s);
        else if (!sat && !s->in_line)
            line_add(q, s);
    }
    return !sat;
}

static void slot_free(jobq_gslot *s)
{
    g_free(s);
}

static void group_free(gpointer p)
{
    jobq_group *g = p;

    while (g->slots) {
        jobq_gslot *s = g->slots;
        g->slots = s->next;
        slot_free(s);
    }
    g_free(g->name);
    g_free(g->tier);
    g_free(g);
}

static jobq_group *group_get(jobq_engine *e, jobq_queue *q, const char *name)
{
    jobq_group *g = g_hash_table_lookup(q->groups, name ? name : "");

    if (!g) {
        g = g_new0(jobq_group, 1);
        g->name = g_strdup(name ? name : "");
        g_hash_table_insert(q->groups, g->name, g);
        g->limit = group_limit(e, q, g);
    }
    return g;
}

/* Frees g once nothing refers to it: no ready job, none active. */
static void group_gc(jobq_queue *q, jobq_group *g)
{
    if (!g->slots && !g->active)
        g_hash_table_remove(q->groups, g->name);
}

void jobq_group_ready(jobq_engine *e, jobq_job *j)
{
    jobq_queue *q = j->q;
    jobq_job_extra *x = jobq_extra(j);
    jobq_group *g = group_get(e, q, x->group);
    jobq_gslot *s;

    if (x->tier && (!g->tier || strcmp(g->tier, x->tier))) {
        g_free(g->tier);
        g->tier = g_strdup(x->tier);
        group_refresh(e, q, g);
    }
    x->grp = g;
    for (s = g->slots; s && s->priority != j->priority; s = s->next)
        ;
    if (!s) {
        s = g_new0(jobq_gslot, 1);
        s->g = g;
        s->priority = j->priority;
        if (q->rr)
            s->lv = level_get(q, j->priority);
        s->next = g->slots;
        g->slots = s;
    }
    x->slot = s;
    {
        /* by seq (a list, not a tree: no allocation per job, and the first job is one load
         * away). The place is sought from both ends at once: a new job goes last at once,
         * and a retried or released one, whose seq is old, is found near the front instead
         * of walking back through a big group's whole backlog. */
        jobq_job *after = s->last, *front = s->first;
        while (after && after->seq > j->seq) {
            if (front->seq > j->seq) { /* everything before front is older than j */
                after = front->x->gprev;
                break;
            }
            front = front->x->gnext;
            after = after->x->gprev;
        }
        x->gprev = after;
        x->gnext = after ? after->x->gnext : s->first;
        if (x->gnext)
            x->gnext->x->gprev = j;
        else
            s->last = j;
        if (after)
            after->x->gnext = j;
        else
            s->first = j;
    }
    if (!s->in_line) {
        if (!g->saturated && s->first == j && s->last == j)
            line_add(q, s);
    } else if (!q->rr && s->first == j) {
        line_rekey(s); /* fifo: a new first job moves the slot up */
    }
}

void jobq_group_unready(jobq_engine *e, jobq_job *j)
{
    jobq_queue *q = j->q;
    jobq_job_extra *x = j->x;
    jobq_gslot *s = x->slot;
    jobq_group *g = s->g;
    int was_first = s->first == j;

    (void)e;
    if (x->gprev)
        x->gprev->x->gnext = x->gnext;
    else
        s->first = x->gnext;
    if (x->gnext)
        x->gnext->x->gprev = x->gprev;
    else
        s->last = x->gprev;
    x->gprev = x->gnext = NULL;
    x->slot = NULL;
    if (!s->first) {
        jobq_gslot **pp = &g->slots;
        if (s->in_line)
            line_remove(q, s);
        while (*pp != s)
            pp = &(*pp)->next;
        *pp = s->next;
        slot_free(s);
    } else if (was_first && !q->rr && s->in_line) {
        line_rekey(s);
    }
    if (!x->gcounted) { /* not going active: j no longer belongs to the group's index */
        group_gc(q, g);
        x->grp = NULL;
    }
}

jobq_job *jobq_fair_head(jobq_queue *q)
{
    jobq_gslot *s = line_first(q);

    return s ? slot_first(s) : NULL;
}

/* Frees q's group index (groups, their slots, the line). */
static void groups_free(jobq_queue *q)
{
    if (q->groups)
        g_hash_table_destroy(q->groups);
    if (q->slots)
        g_sequence_free(q->slots);
    if (q->levels) {
        g_sequence_free(q->levels);
        g_hash_table_destroy(q->level_of);
    }
    q->groups = NULL;
    q->slots = q->levels = NULL;
    q->level_of = NULL;
}

/* Grouped dispatch on or off, as the queue's options and jobs ask. Switching rebuilds the
 * group index from q->active and q->ready: O(jobs) once, on an admin change or the first
 * tiered job. */
void jobq_fair_update(jobq_engine *e, jobq_queue *q)
{
    int fair = q->o.fairness == JOBQ_FAIR_ROUND_ROBIN || q->o.group_concurrency > 0 || q->tiered;
    int rr = fair && q->o.fairness != JOBQ_FAIR_FIFO;

    if (fair == q->fair && rr == q->rr)
        return;
    if (q->fair) { /* off: forget every group */
        for (GSequenceIter *it = g_sequence_get_begin_iter(q->ready); !g_sequence_iter_is_end(it);
             it = g_sequence_iter_next(it)) {
            jobq_job *j = g_sequence_get(it);
            j->x->grp = NULL;
            j->x->slot = NULL;
            j->x->gprev = j->x->gnext = NULL;
        }
        for (jobq_link *l = q->active.head.next; l != &q->active.head; l = l->next) {
            jobq_job *j = JOB_OF_QLINK(l);
            if (j->x) {
                j->x->grp = NULL;
                j->x->gcounted = 0;
            }
        }
        groups_free(q);
    }
    q->fair = fair;
    q->rr = rr;
    if (!fair)
        return;
    q->groups = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, group_free);
    if (rr) {
        q->levels = g_sequence_new(NULL);
        q->level_of = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
    } else {
        q->slots = g_sequence_new(NULL);
    }
    for (jobq_link *l = q->active.head.next; l != &q->active.head; l = l->next) {
        jobq_job *j = JOB_OF_QLINK(l);
        jobq_job_extra *x = jobq_extra(j);
        jobq_group *g = group_get(e, q, x->group);
        if (x->tier && !g->tier)
            g->tier = g_strdup(x->tier);
        x->grp = g;
        x->gcounted = 1;
        g->active++;
    }
    {
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, q->groups);
        while (g_hash_table_iter_next(&it, &k, &v))
            group_refresh(e, q, v);
    }
    for (GSequenceIter *it = g_sequence_get_begin_iter(q->ready); !g_sequence_iter_is_end(it);
         it = g_sequence_iter_next(it))
        jobq_group_ready(e, g_sequence_get(it));
}

/* Every group of q follows its limit as it is now (queue option or tier changed). */
static int refresh_all(jobq_engine *e, jobq_queue *q)
{
    GHashTableIter it;
    gpointer k, v;
    int freed = 0;

    if (!q->fair)
        return 0;
    g_hash_table_iter_init(&it, q->groups);
    while (g_hash_table_iter_next(&it, &k, &v))
        freed |= group_refresh(e, q, v);
    return freed;
}

void jobq_limits_patched(jobq_engine *e, jobq_queue *q, unsigned set)
{
    if (set & JOBQ_QO_RATE_LIMIT) {
        /* the dispatches already made still count (a PATCH, or the config file applied at
         * start, does not open a full window): the latest rate_max of them are kept */
        int64_t *old = q->rate_ring;
        size_t head = q->rate_head, len = q->rate_len, cap = q->rate_cap;
        if (q->o.rate_max > RATE_MAX_MAX)
            q->o.rate_max = RATE_MAX_MAX;
        q->rate_ring = NULL;
        q->rate_head = q->rate_len = q->rate_cap = 0;
        if (q->o.rate_per_ms > 0 && q->o.rate_max > 0)
            for (size_t i = len > (size_t)q->o.rate_max ? len - (size_t)q->o.rate_max : 0;
                 i < len; i++)
                rate_record(q, old[(head + i) % cap]);
        g_free(old);
    }
    if ((set & JOBQ_QO_CIRCUIT_BREAKER) && q->o.cb_failures <= 0) {
        q->cb_state = CB_CLOSED;
        q->cb_trial = NULL;
        q->cb_fails = 0;
    }
    gated_update(q);
    if (e->loading) /* jobq_engine_load_done builds the index once every job is in place */
        return;
    jobq_fair_update(e, q);
    if (set & JOBQ_QO_GROUP_CONCURRENCY)
        refresh_all(e, q);
    if (g_sequence_get_length(q->ready) && jobq_queue_can_dispatch(q))
        jobq_notify_ready(e, q);
}

void jobq_queue_limits_free(jobq_queue *q)
{
    groups_free(q);
    g_free(q->rate_ring);
}

/* ---------------------------------------------------------------- active accounting */

void jobq_entered_active(jobq_engine *e, jobq_job *j)
{
    jobq_job_extra *x = j->x;

    e->nactive++;
    if (!x)
        return;
    if (x->grp && !x->gcounted) {
        jobq_group *g = x->grp;
        x->gcounted = 1;
        g->active++;
        if (g->limit > 0 && g->active >= g->limit)
            group_refresh(e, j->q, g); /* saturated: its slots leave the line */
        else if (j->q->rr && x->slot && x->slot->in_line)
            line_rotate(j->q, x->slot); /* served: to the back of its priority */
    }
    if (x->req && x->worker && !x->charged) {
        res_add(&jobq_worker_get(e, x->worker)->used, x->req, +1);
        x->charged = 1;
    }
}

void jobq_left_active(jobq_engine *e, jobq_job *j, int64_t now)
{
    jobq_queue *q = j->q;
    jobq_job_extra *x = j->x;
    int notify = e->max_active > 0 && e->nactive == e->max_active;

    e->nactive--;
    if (x && x->gcounted) {
        jobq_group *g = x->grp;
        x->gcounted = 0;
        g->active--;
        if (g->saturated)
            notify |= group_refresh(e, q, g);
        group_gc(q, g);
        /* x->grp holds only while j is ready or counted: a job that waits elsewhere
         * (retrying, delayed, final) must not keep a group that may be freed meanwhile,
         * e.g. when the queue stops grouping; it is set again when j is ready */
        x->grp = NULL;
    }
    if (x && x->charged) {
        jobq_worker *w = g_hash_table_lookup(e->workers, x->worker);
        if (w && w->used)
            res_add(&w->used, x->req, -1);
        x->charged = 0;
        notify = 1;
    }
    if (q->cb_trial == j) { /* the trial ended without a verdict: another may go at once */
        q->cb_state = CB_OPEN;
        q->cb_until = now;
        q->cb_trial = NULL;
        notify = 1;
    }
    if (notify && !q->deleted)
        jobq_notify_ready(e, q);
}

/* ---------------------------------------------------------------- capacity */

/* The best job of q that fits what the worker has free; *passed gets the first job passed
 * over that could fit the worker's whole capacity (its skip count grows if the pick is
 * used). A job passed over RESERVE_AFTER times stops the scan: what it needs is reserved. */
jobq_job *jobq_fit_pick(jobq_engine *e, jobq_queue *q, jobq_worker *w, const jobq_resources *cap,
                        jobq_job **passed)
{
    GSequenceIter *it = q->fair ? NULL : g_sequence_get_begin_iter(q->ready);
    jobq_gslot *s = q->fair ? line_first(q) : NULL;
    const jobq_resources *used = w ? w->used : NULL;

    (void)e;
    *passed = NULL;
    for (int n = 0; n < FIT_SCAN_MAX; n++) {
        jobq_job *j;
        const jobq_resources *req;
        if (q->fair) { /* the first job of each slot in line, in line order */
            if (!s)
                break;
            j = slot_first(s);
            s = line_next(q, s);
        } else {
            if (g_sequence_iter_is_end(it))
                break;
            j = g_sequence_get(it);
            it = g_sequence_iter_next(it);
        }
        req = j->x ? j->x->req : NULL;
        if (!req || res_fits(req, cap, used))
            return j;
        if (!res_fits(req, cap, NULL))
            continue; /* bigger than this worker altogether: never its job */
        if (j->x->skips >= RESERVE_AFTER)
            return NULL;
        if (!*passed)
            *passed = j;
    }
    return NULL;
}

/* ---------------------------------------------------------------- tiers and the cap */

int jobq_tier_priority(const jobq_engine *e, const char *tier, int *out)
{
    const jobq_tier *t = tier ? g_hash_table_lookup(e->tiers, tier) : NULL;

    if (!t || !t->has_priority)
        return 0;
    *out = t->priority;
    return 1;
}

static void tiers_changed(jobq_engine *e)
{
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, e->queues);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        jobq_queue *q = v;
        if (refresh_all(e, q) && jobq_queue_can_dispatch(q))
            jobq_notify_ready(e, q);
    }
}

void jobq_engine_set_tier(jobq_engine *e, const char *name, const jobq_tier *t, int64_t now)
{
    (void)now;
    if (t)
        g_hash_table_replace(e->tiers, g_strdup(name), g_memdup2(t, sizeof *t));
    else
        g_hash_table_remove(e->tiers, name);
    tiers_changed(e);
}

void jobq_engine_clear_tiers(jobq_engine *e, int64_t now)
{
    (void)now;
    g_hash_table_remove_all(e->tiers);
    tiers_changed(e);
}

int jobq_engine_get_tier(const jobq_engine *e, const char *name, jobq_tier *out)
{
    const jobq_tier *t = g_hash_table_lookup(e->tiers, name);

    if (!t)
        return JOBQ_ENOTFOUND;
    *out = *t;
    return 0;
}

void jobq_engine_tiers_each(const jobq_engine *e,
                            void (*fn)(void *ud, const char *name, const jobq_tier *t), void *ud)
{
    GList *keys = g_list_sort(g_hash_table_get_keys(e->tiers), (GCompareFunc)strcmp);

    for (GList *l = keys; l; l = l->next)
        fn(ud, l->data, g_hash_table_lookup(e->tiers, l->data));
    g_list_free(keys);
}

void jobq_engine_set_max_active(jobq_engine *e, int64_t n, int64_t now)
{
    int more = n == 0 || (e->max_active > 0 && n > e->max_active);
    GHashTableIter it;
    gpointer k, v;

    (void)now;
    e->max_active = n < 0 ? 0 : n;
    if (!more)
        return;
    g_hash_table_iter_init(&it, e->queues);
    while (g_hash_table_iter_next(&it, &k, &v))
        if (g_sequence_get_length(((jobq_queue *)v)->ready))
            jobq_notify_ready(e, v);
}

int64_t jobq_engine_max_active(const jobq_engine *e)
{
    return e->max_active;
}

int64_t jobq_engine_active_total(const jobq_engine *e)
{
    return e->nactive;
}
