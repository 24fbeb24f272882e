/*
 * orch.c — orchestration: dependencies, flows, review gates, deduplication and the result
 * cache.
 *
 * Only jobs that use one of these carry a jobq_orch (hung off their extra part), so plain
 * jobs pay one NULL pointer. The engine's core calls in at four points: a new job
 * (jobq_orch_setup), a state change (jobq_orch_state: flow counters), a job becoming final
 * (jobq_orch_final: keys, cache, dependants) and a removal (jobq_orch_destroy).
 *
 * Dependencies: a child keeps its parents' ids and a count of parents still live; each live
 * parent keeps a list of its blocked children. A parent that ends tells exactly those
 * children, so nothing ever scans the blocked jobs. Telling them runs from a work list, not
 * by recursion, so a long chain of cancellations cannot exhaust the stack.
 *
 * Flows: the jobs of one DAG, made atomically in topological order (so that a parent's seq
 * is always below its children's, and loading in seq order meets parents first). A flow
 * counts its jobs per state as they change; its state is derived from those counters. It is
 * a document of kind "flow", written when made, cancelled, ended or reopened: everything
 * else about it is rebuilt from its jobs when the store is loaded.
 *
 * Nothing here does I/O or reads a clock.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "util/jsonw.h"

static const char *flow_state_names[] = {"running", "review", "completed", "failed", "cancelled"};

int jobq_opf_parse(const char *s)
{
    if (strcmp(s, "cancel") == 0)
        return JOBQ_OPF_CANCEL;
    if (strcmp(s, "continue") == 0)
        return JOBQ_OPF_CONTINUE;
    return -1;
}

/* ---------------------------------------------------------------- life cycle */

static void flow_free(jobq_flow *f)
{
    for (size_t i = 0; i < f->n; i++) {
        g_free(f->refs[i]);
        g_free(f->ids[i]);
    }
    for (size_t i = 0; i < f->nskipped; i++)
        g_free(f->skipped[i]);
    g_free(f->skipped);
    g_free(f->refs);
    g_free(f->ids);
    g_free(f->jobs);
    if (f->slots)
        g_hash_table_destroy(f->slots);
    g_free(f->name);
    g_free(f->project);
    g_free(f);
}

void jobq_orch_init(jobq_engine *e)
{
    e->uniq = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    e->cache = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    e->flows = g_hash_table_new(g_str_hash, g_str_equal);
    g_queue_init(&e->flow_order);
    e->flows_by_project =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_queue_free);
    e->settle = g_ptr_array_new();
    e->dead_flows = g_ptr_array_new();
}

void jobq_orch_fini(jobq_engine *e)
{
    jobq_flow *f;

    while ((f = g_queue_pop_head(&e->flow_order)))
        flow_free(f);
    jobq_orch_take(e);
    g_ptr_array_free(e->dead_flows, TRUE);
    g_hash_table_destroy(e->flows);
    g_hash_table_destroy(e->flows_by_project);
    g_hash_table_destroy(e->uniq);
    g_hash_table_destroy(e->cache);
    g_ptr_array_free(e->settle, TRUE);
}

void jobq_orch_take(jobq_engine *e)
{
    for (guint i = 0; i < e->dead_flows->len; i++)
        flow_free(g_ptr_array_index(e->dead_flows, i));
    g_ptr_array_set_size(e->dead_flows, 0);
}

void jobq_orch_free(jobq_orch *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->nparents; i++)
        g_free(o->parents[i]);
    g_free(o->parents);
    if (o->children)
        g_ptr_array_free(o->children, TRUE);
    g_free(o->ref);
    g_free(o->unique_key);
    g_free(o->cache_key);
    g_free(o->feedback);
    g_free(o);
}

jobq_orch *jobq_orch_of(jobq_job *j)
{
    jobq_job_extra *x = jobq_extra(j);

    if (!x->orch)
        x->orch = g_new0(jobq_orch, 1);
    return x->orch;
}

static jobq_orch *orch(const jobq_job *j)
{
    return j->x ? j->x->orch : NULL;
}

/* Index keys are scoped by queue: "queue\nkey" (a queue name has no newline). */
static char *scoped(const jobq_queue *q, const char *key)
{
    return g_strconcat(q->name, "\n", key, NULL);
}

static const char *unscoped(const char *k)
{
    const char *nl = strchr(k, '\n');

    return nl ? nl + 1 : k;
}

int jobq_job_in_review(const jobq_job *j)
{
    const jobq_orch *o = orch(j);

    return o && o->review;
}

const char *jobq_job_flow_id(const jobq_job *j)
{
    const jobq_orch *o = orch(j);

    return o && o->flow ? o->flow->id : NULL;
}

jobq_job *jobq_orch_unique(jobq_engine *e, const jobq_queue *q, const char *key)
{
    char *k = scoped(q, key);
    jobq_job *j = g_hash_table_lookup(e->uniq, k);

    g_free(k);
    return j;
}

/* ---------------------------------------------------------------- flows: state */

static void flow_save(jobq_engine *e, const jobq_flow *f);

static int flow_live(const jobq_flow *f)
{
    int64_t live = 0;

    for (int s = 0; s < JOBQ_NSTATES; s++)
        if (!jobq_state_final(s))
            live += f->counts[s];
    return live > 0;
}

int jobq_flow_final(const jobq_flow *f)
{
    return f->state >= JOBQ_FLOW_COMPLETED;
}

/* The state the counters say, for a flow with no live job. */
static int flow_end_state(const jobq_flow *f)
{
    if (f->cancelled)
        return JOBQ_FLOW_CANCELLED;
    if (f->counts[JOBQ_FAILED])
        return JOBQ_FLOW_FAILED;
    if (f->counts[JOBQ_CANCELLED])
        return JOBQ_FLOW_CANCELLED;
    return JOBQ_FLOW_COMPLETED;
}

/* flow.completed / flow.failed (a cancelled flow was ended by someone who knows). */
static void flow_event(jobq_engine *e, const jobq_flow *f, int64_t now)
{
    GString *o;
    int first = 1;

    if ((f->state != JOBQ_FLOW_COMPLETED && f->state != JOBQ_FLOW_FAILED) ||
        !jobq_engine_events_on(e))
        return;
    o = g_string_sized_new(128);
    jobq_jw_kstr(o, &first, "flow", f->id);
    jobq_jw_kstr(o, &first, "name", f->name);
    jobq_jw_kstr(o, &first, "state", flow_state_names[f->state]);
    jobq_jw_kint(o, &first, "jobs", (int64_t)f->n);
    jobq_jw_kint(o, &first, "failed", f->counts[JOBQ_FAILED]);
    jobq_engine_emit(e, f->state == JOBQ_FLOW_COMPLETED ? "flow.completed" : "flow.failed", now,
                     NULL, NULL, f->project, NULL, o->str);
    g_string_free(o, TRUE);
}

/* Re-derives f's state after its counters changed. An ended flow stays as it ended while
 * its jobs are trimmed by retention; it opens again only when one of them runs again
 * (a retry). */
static void flow_update(jobq_engine *e, jobq_flow *f, int64_t now)
{
    int was = f->state, st;

    if (flow_live(f)) {
        st = f->counts[JOBQ_REVIEW] ? JOBQ_FLOW_REVIEW : JOBQ_FLOW_RUNNING;
        f->state = st;
        if (was >= JOBQ_FLOW_COMPLETED) { /* reopened by a retry */
            f->finished_at = 0;
            flow_save(e, f);
        }
        return;
    }
    if (jobq_flow_final(f))
        return;
    f->state = flow_end_state(f);
    f->finished_at = now;
    flow_save(e, f);
    flow_event(e, f, now);
}

/* An ended flow whose jobs have all been removed (retention, DELETE) is forgotten: a flow
 * lives as long as any of its jobs. Freed at the next take_changes, so a caller holding it
 * in this turn still may read it. */
static void flow_forget(jobq_engine *e, jobq_flow *f)
{
    g_hash_table_remove(e->flows, f->id);
    g_queue_delete_link(&e->flow_order, f->order);
    f->order = NULL;
    if (f->porder) {
        GQueue *pq = g_hash_table_lookup(e->flows_by_project, f->project);
        g_queue_delete_link(pq, f->porder);
        f->porder = NULL;
        if (!pq->length)
            g_hash_table_remove(e->flows_by_project, f->project);
    }
    jobq_engine_doc_delete(e, "flow", f->id);
    g_ptr_array_add(e->dead_flows, f);
}

void jobq_orch_state(jobq_engine *e, jobq_job *j, int from, int to, int64_t now)
{
    jobq_orch *o = j->x->orch;

    if (!o->flow)
        return;
    o->flow->counts[from]--;
    o->flow->counts[to]++;
    flow_update(e, o->flow, now);
}

/* ---------------------------------------------------------------- holds
 * A job that is not final holds its parents: retention keeps a parent while any of its
 * dependants may still be fetched and need its result. */

static void hold(jobq_engine *e, jobq_job *c, int delta)
{
    jobq_orch *o = c->x->orch;

    for (size_t k = 0; k < o->nparents; k++) {
        jobq_job *p = jobq_engine_job(e, o->parents[k]);
        jobq_orch *po;
        if (!p)
            continue;
        po = jobq_orch_of(p);
        if (delta > 0)
            po->holds++;
        else if (po->holds) /* an id reused after a delete may not have been counted */
            po->holds--;
    }
    o->holding = delta > 0;
}

int jobq_orch_pinned(const jobq_job *j)
{
    return j->x && j->x->orch && j->x->orch->holds > 0;
}

/* ---------------------------------------------------------------- new jobs */

static char *error_json(const char *message, const char *type, int retryable, const char *details)
{
    GString *o = g_string_sized_new(128);
    int first = 1;

    g_string_append_c(o, '{');
    jobq_jw_kstr(o, &first, "message", message);
    jobq_jw_kstr(o, &first, "type", type);
    jobq_jw_kbool(o, &first, "retryable", retryable);
    if (details)
        jobq_jw_kraw(o, &first, "details", details);
    g_string_append_c(o, '}');
    return g_string_free(o, FALSE);
}

/* j ends because parent p failed, was cancelled or removed (p may be a tombstone). */
static void set_parent_error(jobq_job *j, const jobq_job *p)
{
    jobq_job_extra *x = jobq_extra(j);
    char msg[200];

    snprintf(msg, sizeof msg, "parent %.140s %s", JOB_ID(p),
             (p->flags & JF_DELETED)   ? "was removed"
             : p->state == JOBQ_FAILED ? "failed"
                                       : "was cancelled");
    g_free(x->error);
    x->error = error_json(msg, "parent_failed", 0, NULL);
    g_free(x->error_type);
    x->error_type = g_strdup("parent_failed");
    j->flags |= JF_HIST_ERROR;
}

/* A parent's child list holds exactly its blocked children: depends_on names a parent at most
 * once, and a child leaves every list when it stops being blocked (unlink_parents), so
 * linking needs no search. */
static void link_child(jobq_job *parent, jobq_job *child)
{
    jobq_orch *po = jobq_orch_of(parent);

    if (!po->children)
        po->children = g_ptr_array_new();
    g_ptr_array_add(po->children, child);
}

/* j stops waiting for its parents (ended, or removed, while blocked): out of the lists of
 * those still live, which would otherwise keep a pointer to it past its removal. */
static void unlink_parents(jobq_engine *e, jobq_job *j)
{
    jobq_orch *o = j->x->orch;

    for (size_t k = 0; o->unmet && k < o->nparents; k++) {
        jobq_job *p = jobq_engine_job(e, o->parents[k]);
        jobq_orch *po = p ? orch(p) : NULL;
        if (po && po->children)
            g_ptr_array_remove_fast(po->children, j);
    }
    o->unmet = 0;
}

int jobq_orch_setup(jobq_engine *e, jobq_job *j, const jobq_job_spec *s, jobq_job **parents,
                    jobq_flow *f, int64_t now, int initial, unsigned *flags)
{
    jobq_orch *o = jobq_orch_of(j);
    jobq_job *cancel_by = NULL;
    int unmet = 0;

    o->review = (uint8_t)(s->review != 0);
    o->opf = (uint8_t)(f ? f->opf : s->on_parent_failure);
    o->flow = f;
    o->ref = s->ref ? g_strdup(s->ref) : NULL;
    if (s->unique_key)
        o->unique_key = scoped(j->q, s->unique_key);
    if (s->cache_key) {
        o->cache_key = scoped(j->q, s->cache_key);
        o->cache_ttl_ms = s->cache_ttl_ms;
    }
    if (s->ndeps) {
        o->nparents = (uint16_t)s->ndeps;
        o->parents = g_new(char *, s->ndeps);
        for (size_t k = 0; k < s->ndeps; k++)
            o->parents[k] = g_strdup(JOB_ID(parents[k]));
    }
    if (o->cache_key) {
        jobq_job *hit = g_hash_table_lookup(e->cache, o->cache_key);
        if (hit && hit->x && hit->x->finished_at >= now - o->cache_ttl_ms) {
            jobq_extra(j)->result = g_strdup(hit->x->result);
            o->cached = 1;
            *flags |= JOBQ_ENQ_CACHED;
            return JOBQ_COMPLETED;
        }
    }
    for (size_t k = 0; k < s->ndeps; k++) {
        jobq_job *p = parents[k];
        if (!jobq_state_final(p->state))
            unmet++;
        else if (p->state != JOBQ_COMPLETED && o->opf == JOBQ_OPF_CANCEL && !cancel_by)
            cancel_by = p;
    }
    if (cancel_by) {
        set_parent_error(j, cancel_by);
        return JOBQ_CANCELLED;
    }
    if (o->unique_key)
        g_hash_table_replace(e->uniq, g_strdup(o->unique_key), j);
    if (s->ndeps)
        hold(e, j, +1);
    if (!unmet)
        return initial;
    for (size_t k = 0; k < s->ndeps; k++)
        if (!jobq_state_final(parents[k]->state))
            link_child(parents[k], j);
    o->unmet = (uint16_t)unmet;
    return JOBQ_BLOCKED;
}

/* ---------------------------------------------------------------- dependants */

/* Every parent of j is done: it runs (or waits out the rest of its delay). */
static void release(jobq_engine *e, jobq_job *j, int64_t now)
{
    if (j->run_at > now) {
        jobq_set_state(e, j, JOBQ_SCHEDULED, now);
        jobq_timer_set(e, j, j->run_at);
        return;
    }
    jobq_make_ready(e, j, now);
}

/* p ended (or is being removed): its blocked children learn of it. */
static void settle_one(jobq_engine *e, jobq_job *p, int64_t now)
{
    jobq_orch *po = orch(p);
    GPtrArray *kids = po ? po->children : NULL;
    int ok = p->state == JOBQ_COMPLETED;

    if (!kids)
        return;
    po->children = NULL;
    for (guint i = 0; i < kids->len; i++) {
        jobq_job *c = g_ptr_array_index(kids, i);
        jobq_orch *co = orch(c);
        int cont;
        if ((c->flags & JF_DELETED) || c->state != JOBQ_BLOCKED || !co)
            continue;
        cont = ok || (co->opf == JOBQ_OPF_CONTINUE && !(co->flow && co->flow->cancelled));
        if (cont) {
            if (co->unmet)
                co->unmet--;
            if (!co->unmet)
                release(e, c, now);
        } else {
            set_parent_error(c, p);
            jobq_finalize(e, c, JOBQ_CANCELLED, now);
        }
    }
    g_ptr_array_free(kids, TRUE);
}

/* Work list: a parent's end can end its children, and theirs, without recursion. */
static void settle(jobq_engine *e, jobq_job *p, int64_t now)
{
    g_ptr_array_add(e->settle, p);
    if (e->settling)
        return;
    e->settling = 1;
    for (guint i = 0; i < e->settle->len; i++)
        settle_one(e, g_ptr_array_index(e->settle, i), now);
    g_ptr_array_set_size(e->settle, 0);
    e->settling = 0;
}

void jobq_orch_final(jobq_engine *e, jobq_job *j, int64_t now)
{
    jobq_orch *o = j->x->orch;

    if (o->unique_key && g_hash_table_lookup(e->uniq, o->unique_key) == j)
        g_hash_table_remove(e->uniq, o->unique_key);
    if (o->holding)
        hold(e, j, -1);
    unlink_parents(e, j); /* cancelled while blocked */
    if (o->cache_key && !o->cached && j->state == JOBQ_COMPLETED)
        g_hash_table_replace(e->cache, g_strdup(o->cache_key), j);
    if (o->children)
        settle(e, j, now);
}

void jobq_orch_destroy(jobq_engine *e, jobq_job *j, int64_t now)
{
    jobq_orch *o = j->x->orch;

    if (o->unique_key && g_hash_table_lookup(e->uniq, o->unique_key) == j)
        g_hash_table_remove(e->uniq, o->unique_key);
    if (o->cache_key && g_hash_table_lookup(e->cache, o->cache_key) == j)
        g_hash_table_remove(e->cache, o->cache_key);
    if (o->holding)
        hold(e, j, -1);
    unlink_parents(e, j);
    if (o->flow) {
        jobq_flow *f = o->flow;
        int note = !jobq_flow_final(f) && j->state != JOBQ_COMPLETED;
        f->jobs[o->flow_idx] = NULL;
        f->present--;
        /* an ended job removed (retention trims a failed side of a running flow) still
         * counts as it ended, so the flow's end says failed; a live one counts cancelled */
        if (!jobq_state_final(j->state)) {
            f->counts[j->state]--;
            f->counts[JOBQ_CANCELLED]++;
        }
        if (note) /* rare (retention keeps failed jobs for days): the flow is stored again */
            *(j->state == JOBQ_FAILED ? &f->gone_failed : &f->gone_cancelled) += 1;
        o->flow = NULL;
        flow_update(e, f, now);
        if (note && !jobq_flow_final(f)) /* else flow_update stored it */
            flow_save(e, f);
        if (!f->present && jobq_flow_final(f))
            flow_forget(e, f);
    }
    if (o->children && !jobq_state_final(j->state)) {
        j->flags |= JF_DELETED; /* its children are told it was removed */
        settle(e, j, now);
    }
}

/* ---------------------------------------------------------------- review gates */

int jobq_orch_review_enter(jobq_engine *e, jobq_job *j, int64_t now)
{
    jobq_orch *o = orch(j);
    jobq_queue *q = j->q;

    if (!o || !o->review || (j->flags & JF_CANCEL_REQUESTED))
        return 0;
    jobq_timer_clear(e, j);
    if (j->x->worker)
        jobq_worker_active(e, j->x->worker, -1);
    jobq_set_state(e, j, JOBQ_REVIEW, now);
    if (jobq_engine_events_on(e)) {
        GString *f = g_string_sized_new(64);
        int first = 1;
        if (o->flow) {
            jobq_jw_kstr(f, &first, "flow", o->flow->id);
            jobq_jw_kstr(f, &first, "ref", o->ref);
        }
        if (j->x->result && strlen(j->x->result) <= 4096) /* as job.completed does */
            jobq_jw_kraw(f, &first, "result", j->x->result);
        jobq_engine_emit_job(e, j, "job.review_requested", now, f->str);
        g_string_free(f, TRUE);
    }
    jobq_queue_touch(e, q, now);
    if (q->o.concurrency > 0 && g_sequence_get_length(q->ready) && jobq_queue_can_dispatch(q))
        jobq_notify_ready(e, q);
    return 1;
}

int jobq_engine_job_approve(jobq_engine *e, jobq_job *j, const char *result, int64_t now)
{
    if (j->state != JOBQ_REVIEW)
        return JOBQ_ESTATE;
    if (result) {
        g_free(j->x->result);
        j->x->result = g_strdup(result);
    }
    jobq_finalize(e, j, JOBQ_COMPLETED, now);
    return 0;
}

int jobq_engine_job_reject(jobq_engine *e, jobq_job *j, const char *reason, const char *notes,
                           int rerun, int64_t now)
{
    jobq_job_extra *x = j->x;
    jobq_orch *o = orch(j);
    GString *fb;
    int first = 1;

    if (j->state != JOBQ_REVIEW || !o)
        return JOBQ_ESTATE;
    /* what the reviewer said, and what was rejected: the error's details, and (for a rerun)
     * the job's review_feedback, which the next attempt's worker reads */
    fb = g_string_sized_new(128);
    g_string_append_c(fb, '{');
    jobq_jw_kstr(fb, &first, "reason", reason);
    jobq_jw_kraw(fb, &first, "notes", notes);
    jobq_jw_kraw(fb, &first, "result", x->result);
    jobq_jw_kint(fb, &first, "at", now);
    g_string_append_c(fb, '}');
    g_free(x->error);
    x->error = error_json(reason, "rejected", rerun, fb->str);
    g_free(x->error_type);
    x->error_type = g_strdup("rejected");
    j->flags |= JF_HIST_ERROR;
    if (!rerun) {
        g_string_free(fb, TRUE);
        jobq_finalize(e, j, JOBQ_FAILED, now);
        return 0;
    }
    g_free(o->feedback);
    o->feedback = g_string_free(fb, FALSE);
    g_free(x->result);
    x->result = NULL;
    j->q->retried++;
    jobq_queue_touch(e, j->q, now);
    jobq_make_ready(e, j, now);
    return 0;
}

/* ---------------------------------------------------------------- retry */

int jobq_orch_retry(jobq_engine *e, jobq_job *j, int64_t now)
{
    jobq_orch *o = orch(j);
    int unmet = 0;

    if (!o)
        return 0;
    g_free(o->feedback);
    o->feedback = NULL;
    if (o->unique_key && !g_hash_table_lookup(e->uniq, o->unique_key))
        g_hash_table_insert(e->uniq, g_strdup(o->unique_key), j);
    if (o->nparents && !o->holding)
        hold(e, j, +1);
    /* it waits again for the parents that are still live; ended ones count as done */
    for (size_t k = 0; k < o->nparents; k++) {
        jobq_job *p = jobq_engine_job(e, o->parents[k]);
        if (p && !jobq_state_final(p->state)) {
            link_child(p, j);
            unmet++;
        }
    }
    if (!unmet)
        return 0;
    o->unmet = (uint16_t)unmet;
    jobq_timer_clear(e, j);
    jobq_set_state(e, j, JOBQ_BLOCKED, now);
    return 1;
}

/* ---------------------------------------------------------------- stored options */

void jobq_orch_opts(const jobq_job *j, GString *out, int *first)
{
    const jobq_orch *o = j->x->orch;

    if (o->nparents) {
        jobq_jw_key(out, first, "depends_on");
        g_string_append_c(out, '[');
        for (size_t k = 0; k < o->nparents; k++) {
            if (k)
                g_string_append_c(out, ',');
            jobq_jw_str(out, o->parents[k]);
        }
        g_string_append_c(out, ']');
    }
    if (o->review)
        jobq_jw_kbool(out, first, "review", 1);
    if (o->opf == JOBQ_OPF_CONTINUE)
        jobq_jw_kstr(out, first, "on_parent_failure", "continue");
    if (o->unique_key)
        jobq_jw_kstr(out, first, "unique_key", unscoped(o->unique_key));
    if (o->cache_key) {
        jobq_jw_key(out, first, "cache");
        g_string_append_c(out, '{');
        {
            int f2 = 1;
            jobq_jw_kstr(out, &f2, "key", unscoped(o->cache_key));
            jobq_jw_kint(out, &f2, "ttl_ms", o->cache_ttl_ms);
        }
        g_string_append_c(out, '}');
    }
    if (o->cached)
        jobq_jw_kbool(out, first, "cached", 1);
    if (o->flow)
        jobq_jw_kstr(out, first, "flow", o->flow->id);
    if (o->ref)
        jobq_jw_kstr(out, first, "ref", o->ref);
}

int jobq_orch_apply_opt(jobq_engine *e, jobq_job *j, const char *key, json_t *v)
{
    jobq_orch *o;

    if (strcmp(key, "depends_on") && strcmp(key, "review") && strcmp(key, "on_parent_failure") &&
        strcmp(key, "unique_key") && strcmp(key, "cache") && strcmp(key, "cached") &&
        strcmp(key, "flow") && strcmp(key, "ref"))
        return 0; /* not ours */
    o = jobq_orch_of(j);
    if (!strcmp(key, "depends_on")) {
        size_t i;
        json_t *x;
        if (!json_is_array(v) || o->parents)
            return JOBQ_ECORRUPT;
        o->nparents = (uint16_t)json_array_size(v);
        o->parents = g_new0(char *, o->nparents ? o->nparents : 1);
        json_array_foreach(v, i, x)
        {
            if (!json_is_string(x))
                return JOBQ_ECORRUPT;
            o->parents[i] = g_strdup(json_string_value(x));
        }
    } else if (!strcmp(key, "review")) {
        o->review = json_is_true(v);
    } else if (!strcmp(key, "cached")) {
        o->cached = json_is_true(v);
    } else if (!strcmp(key, "on_parent_failure")) {
        int p = json_is_string(v) ? jobq_opf_parse(json_string_value(v)) : -1;
        if (p < 0)
            return JOBQ_ECORRUPT;
        o->opf = (uint8_t)p;
    } else if (!strcmp(key, "unique_key")) {
        if (!json_is_string(v))
            return JOBQ_ECORRUPT;
        o->unique_key = scoped(j->q, json_string_value(v));
    } else if (!strcmp(key, "cache")) {
        const char *k = json_string_value(json_object_get(v, "key"));
        if (!k)
            return JOBQ_ECORRUPT;
        o->cache_key = scoped(j->q, k);
        o->cache_ttl_ms = json_integer_value(json_object_get(v, "ttl_ms"));
    } else if (!strcmp(key, "flow")) {
        if (!json_is_string(v))
            return JOBQ_ECORRUPT;
        o->flow = g_hash_table_lookup(e->flows, json_string_value(v)); /* NULL: doc gone */
    } else if (!strcmp(key, "ref")) {
        if (!json_is_string(v))
            return JOBQ_ECORRUPT;
        o->ref = g_strdup(json_string_value(v));
    }
    return 0;
}

/* ---------------------------------------------------------------- loading */

void jobq_orch_loaded(jobq_engine *e, jobq_job *j)
{
    jobq_orch *o = j->x->orch;

    if (o->flow) {
        jobq_flow *f = o->flow;
        size_t slot = f->slots ? GPOINTER_TO_SIZE(g_hash_table_lookup(f->slots, JOB_ID(j))) : 0;
        size_t i = slot - 1;
        if (!slot || f->jobs[i]) {
            o->flow = NULL; /* not a member after all: keep it out of the counts */
        } else {
            f->jobs[i] = j;
            f->present++;
            o->flow_idx = (uint32_t)i;
            f->counts[j->state]++;
        }
    }
    if (o->unique_key && !jobq_state_final(j->state))
        g_hash_table_replace(e->uniq, g_strdup(o->unique_key), j);
    if (o->nparents && !jobq_state_final(j->state))
        hold(e, j, +1); /* parents load first */
    if (o->cache_key && !o->cached && j->state == JOBQ_COMPLETED) {
        jobq_job *cur = g_hash_table_lookup(e->cache, o->cache_key);
        if (!cur || cur->x->finished_at <= j->x->finished_at)
            g_hash_table_replace(e->cache, g_strdup(o->cache_key), j);
    }
    if (j->state == JOBQ_BLOCKED) {
        /* parents load first (lower seq): link to those still live */
        int unmet = 0;
        for (size_t k = 0; k < o->nparents; k++) {
            jobq_job *p = jobq_engine_job(e, o->parents[k]);
            if (p && !jobq_state_final(p->state)) {
                link_child(p, j);
                unmet++;
            }
        }
        o->unmet = (uint16_t)unmet;
        if (!unmet) /* cannot happen in a consistent store; released at load_done */
            g_ptr_array_add(e->settle, j);
    }
    if (j->x->error_type && strcmp(j->x->error_type, "rejected") == 0 && j->state != JOBQ_FAILED) {
        /* a rerun after a reject: its feedback is the rejection's details */
        json_t *err = json_loads(j->x->error, 0, NULL);
        json_t *d = json_object_get(err, "details");
        char *t = d ? json_dumps(d, JSON_COMPACT) : NULL;
        o->feedback = t ? g_strdup(t) : NULL;
        free(t);
        json_decref(err);
    }
}

void jobq_orch_load_done(jobq_engine *e, int64_t now)
{
    GPtrArray *rel = e->settle;

    e->settle = g_ptr_array_new();
    for (guint i = 0; i < rel->len; i++) {
        jobq_job *j = g_ptr_array_index(rel, i);
        if (j->state == JOBQ_BLOCKED)
            release(e, j, now);
    }
    g_ptr_array_free(rel, TRUE);
    for (GList *l = e->flow_order.head, *next; l; l = next) {
        jobq_flow *f = l->data;
        next = l->next;
        if (f->slots) {
            g_hash_table_destroy(f->slots);
            f->slots = NULL;
        }
        if (!jobq_flow_final(f)) { /* members removed while it ran count as they ended */
            int64_t gone = (int64_t)(f->n - f->present);
            f->counts[JOBQ_FAILED] += MIN(f->gone_failed, gone);
            gone -= MIN(f->gone_failed, gone);
            f->counts[JOBQ_CANCELLED] += MIN(f->gone_cancelled, gone);
            gone -= MIN(f->gone_cancelled, gone);
            f->counts[JOBQ_COMPLETED] += gone;
        }
        if (flow_live(f))
            f->state = f->counts[JOBQ_REVIEW] ? JOBQ_FLOW_REVIEW : JOBQ_FLOW_RUNNING;
        else if (!jobq_flow_final(f))
            flow_update(e, f, now);
        if (!f->present && jobq_flow_final(f)) /* its last jobs went with the old process */
            flow_forget(e, f);
    }
}

static jobq_flow *flow_alloc(jobq_engine *e, const char *id, size_t n)
{
    jobq_flow *f = g_new0(jobq_flow, 1);

    g_strlcpy(f->id, id, sizeof f->id);
    f->n = n;
    f->refs = g_new0(char *, n ? n : 1);
    f->ids = g_new0(char *, n ? n : 1);
    f->jobs = g_new0(jobq_job *, n ? n : 1);
    g_hash_table_insert(e->flows, f->id, f);
    g_queue_push_tail(&e->flow_order, f);
    f->order = e->flow_order.tail;
    return f;
}

/* Lists f under its project (set after flow_alloc), so a listing by project reads only
 * that project's flows. */
static void flow_index_project(jobq_engine *e, jobq_flow *f)
{
    GQueue *pq;

    if (!f->project)
        return;
    pq = g_hash_table_lookup(e->flows_by_project, f->project);
    if (!pq) {
        pq = g_queue_new();
        g_hash_table_insert(e->flows_by_project, g_strdup(f->project), pq);
    }
    g_queue_push_tail(pq, f);
    f->porder = pq->tail;
}

int jobq_orch_load_flow(jobq_engine *e, const char *id, const char *body)
{
    json_t *d = json_loads(body, 0, NULL), *jobs, *sk, *v;
    jobq_flow *f;
    size_t i;
    int st;

    jobs = json_object_get(d, "jobs");
    if (!json_is_array(jobs) || strlen(id) >= 37 || g_hash_table_lookup(e->flows, id)) {
        json_decref(d);
        return JOBQ_ECORRUPT;
    }
    f = flow_alloc(e, id, json_array_size(jobs));
    f->slots = g_hash_table_new(g_str_hash, g_str_equal);
    json_array_foreach(jobs, i, v)
    {
        const char *r = json_string_value(json_array_get(v, 0));
        const char *jid = json_string_value(json_array_get(v, 1));
        f->refs[i] = g_strdup(r ? r : "");
        f->ids[i] = g_strdup(jid ? jid : "");
        g_hash_table_insert(f->slots, f->ids[i], GSIZE_TO_POINTER(i + 1));
    }
    sk = json_object_get(d, "skipped");
    f->nskipped = json_array_size(sk);
    f->skipped = g_new0(char *, f->nskipped ? f->nskipped : 1);
    json_array_foreach(sk, i, v) f->skipped[i] = g_strdup(json_string_value(v));
    if (json_is_string(json_object_get(d, "name")))
        f->name = g_strdup(json_string_value(json_object_get(d, "name")));
    if (json_is_string(json_object_get(d, "project")))
        f->project = g_strdup(json_string_value(json_object_get(d, "project")));
    flow_index_project(e, f);
    f->opf = json_is_string(json_object_get(d, "on_parent_failure")) &&
                     jobq_opf_parse(json_string_value(json_object_get(d, "on_parent_failure"))) ==
                         JOBQ_OPF_CONTINUE
                 ? JOBQ_OPF_CONTINUE
                 : JOBQ_OPF_CANCEL;
    f->cancelled = json_is_true(json_object_get(d, "cancelled"));
    f->created_at = json_integer_value(json_object_get(d, "created_at"));
    f->finished_at = json_integer_value(json_object_get(d, "finished_at"));
    f->gone_failed = json_integer_value(json_object_get(d, "removed_failed"));
    f->gone_cancelled = json_integer_value(json_object_get(d, "removed_cancelled"));
    st = JOBQ_FLOW_RUNNING;
    for (int s = 0; s < 5; s++)
        if (json_is_string(json_object_get(d, "state")) &&
            strcmp(json_string_value(json_object_get(d, "state")), flow_state_names[s]) == 0)
            st = s;
    f->state = st;
    json_decref(d);
    return 0;
}

/* ---------------------------------------------------------------- flows */

static void flow_save(jobq_engine *e, const jobq_flow *f)
{
    GString *o = g_string_sized_new(256 + f->n * 64);
    int first = 1;

    g_string_append_c(o, '{');
    jobq_jw_kstr(o, &first, "id", f->id);
    jobq_jw_kstr(o, &first, "name", f->name);
    jobq_jw_kstr(o, &first, "project", f->project);
    jobq_jw_kstr(o, &first, "on_parent_failure",
                 f->opf == JOBQ_OPF_CONTINUE ? "continue" : "cancel");
    jobq_jw_kbool(o, &first, "cancelled", f->cancelled);
    jobq_jw_kstr(o, &first, "state", flow_state_names[f->state]);
    jobq_jw_kint(o, &first, "created_at", f->created_at);
    jobq_jw_kint(o, &first, "finished_at", f->finished_at);
    if (f->gone_failed)
        jobq_jw_kint(o, &first, "removed_failed", f->gone_failed);
    if (f->gone_cancelled)
        jobq_jw_kint(o, &first, "removed_cancelled", f->gone_cancelled);
    jobq_jw_key(o, &first, "jobs");
    g_string_append_c(o, '[');
    for (size_t i = 0; i < f->n; i++) {
        if (i)
            g_string_append_c(o, ',');
        g_string_append_c(o, '[');
        jobq_jw_str(o, f->refs[i]);
        g_string_append_c(o, ',');
        jobq_jw_str(o, f->ids[i]);
        g_string_append_c(o, ']');
    }
    g_string_append(o, "],\"skipped\":[");
    for (size_t i = 0; i < f->nskipped; i++) {
        if (i)
            g_string_append_c(o, ',');
        jobq_jw_str(o, f->skipped[i]);
    }
    g_string_append(o, "]}");
    jobq_engine_doc_put(e, "flow", f->id, o->str);
    g_string_free(o, TRUE);
}

jobq_flow *jobq_engine_flow(const jobq_engine *e, const char *id)
{
    return g_hash_table_lookup(e->flows, id);
}

const char *jobq_flow_id(const jobq_flow *f)
{
    return f->id;
}

static long ref_index(GHashTable *refs, const char *ref)
{
    gpointer v;

    return g_hash_table_lookup_extended(refs, ref, NULL, &v) ? (long)GPOINTER_TO_SIZE(v) : -1;
}

int jobq_engine_flow_create(jobq_engine *e, const jobq_flow_spec *fs, int64_t now, jobq_flow **out,
                            const char **bad_ref, const char **why)
{
    size_t n = fs->n;
    GHashTable *refs = g_hash_table_new(g_str_hash, g_str_equal);
    GHashTable *ids = g_hash_table_new(g_str_hash, g_str_equal);
    GHashTable *per_queue = g_hash_table_new(g_str_hash, g_str_equal);
    size_t *indeg = g_new0(size_t, n), *order = g_new(size_t, n), head = 0, tail = 0;
    GPtrArray **kids = g_new0(GPtrArray *, n);
    jobq_job **made = g_new0(jobq_job *, n);
    jobq_job **parents = NULL;
    size_t maxdeps = 0;
    jobq_flow *f;
    int rc = 0;

    *bad_ref = NULL;
    *why = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *r = fs->items[i].spec.ref;
        if (!g_hash_table_insert(refs, (gpointer)r, GSIZE_TO_POINTER(i))) {
            *bad_ref = r;
            *why = "duplicate ref";
            rc = JOBQ_EINVAL;
            goto out;
        }
    }
    /* edges parent → child, by index; every ref named must exist */
    for (size_t i = 0; i < n; i++) {
        const jobq_job_spec *s = &fs->items[i].spec;
        maxdeps = MAX(maxdeps, s->ndeps);
        for (size_t k = 0; k < s->ndeps; k++) {
            long p = ref_index(refs, s->depends_on[k]);
            if (p < 0) {
                *bad_ref = s->depends_on[k];
                *why = "depends_on names an unknown ref";
                rc = JOBQ_EINVAL;
                goto out;
            }
            if (!kids[p])
                kids[p] = g_ptr_array_new();
            g_ptr_array_add(kids[p], GSIZE_TO_POINTER(i));
            indeg[i]++;
        }
    }
    /* Kahn: a topological order, or the refs left over are on a cycle */
    for (size_t i = 0; i < n; i++)
        if (!indeg[i])
            order[tail++] = i;
    while (head < tail) {
        size_t p = order[head++];
        for (guint k = 0; kids[p] && k < kids[p]->len; k++) {
            size_t c = GPOINTER_TO_SIZE(g_ptr_array_index(kids[p], k));
            if (--indeg[c] == 0)
                order[tail++] = c;
        }
    }
    if (tail < n) {
        for (size_t i = 0; i < n; i++)
            if (indeg[i]) {
                *bad_ref = fs->items[i].spec.ref;
                break;
            }
        *why = "depends_on forms a cycle";
        rc = JOBQ_EINVAL;
        goto out;
    }
    /* queues and ids, checked before anything is made */
    for (size_t i = 0; i < n; i++) {
        const jobq_flow_item *it = &fs->items[i];
        jobq_queue *q = jobq_engine_queue(e, it->queue);
        gpointer c;
        *bad_ref = it->spec.ref;
        if (!q && e->cfg.strict_queues) {
            rc = JOBQ_ENOTFOUND;
            goto out;
        }
        if (!q && !jobq_valid_name(it->queue)) {
            *why = "queue name must be 1 to 128 characters of A-Z a-z 0-9 . _ -";
            rc = JOBQ_EINVAL;
            goto out;
        }
        if (q && q->status == JOBQ_Q_DRAINING) {
            rc = JOBQ_EDRAINING;
            goto out;
        }
        c = g_hash_table_lookup(per_queue, it->queue);
        c = GSIZE_TO_POINTER(GPOINTER_TO_SIZE(c) + 1);
        g_hash_table_insert(per_queue, (gpointer)it->queue, c);
        if (q && q->o.max_size > 0 &&
            jobq_waiting_size(q) + (int64_t)GPOINTER_TO_SIZE(c) > q->o.max_size) {
            rc = JOBQ_EFULL;
            goto out;
        }
        if (it->spec.unique_key) {
            *why = "unique_key is not accepted in a flow";
            rc = JOBQ_EINVAL;
            goto out;
        }
        if (it->spec.id) {
            if (!jobq_valid_job_id(it->spec.id)) {
                *why = "id must be 1 to 128 characters of A-Z a-z 0-9 . _ : -";
                rc = JOBQ_EINVAL;
                goto out;
            }
            if (jobq_engine_job(e, it->spec.id) || !g_hash_table_add(ids, (gpointer)it->spec.id)) {
                rc = JOBQ_EEXIST;
                goto out;
            }
        }
    }
    *bad_ref = NULL;
    /* make it: the flow, then its jobs parents first */
    {
        char fid[37];
        jobq_make_uuid7(e, now, fid);
        f = flow_alloc(e, fid, n);
    }
    f->name = fs->name ? g_strdup(fs->name) : NULL;
    f->project = fs->project ? g_strdup(fs->project) : NULL;
    flow_index_project(e, f);
    f->opf = fs->on_parent_failure;
    f->created_at = now;
    f->nskipped = fs->nskipped;
    f->skipped = g_new0(char *, fs->nskipped ? fs->nskipped : 1);
    for (size_t i = 0; i < fs->nskipped; i++)
        f->skipped[i] = g_strdup(fs->skipped[i]);
    parents = g_new(jobq_job *, maxdeps ? maxdeps : 1);
    for (size_t t = 0; t < n; t++) {
        size_t i = order[t];
        const jobq_flow_item *it = &fs->items[i];
        jobq_queue *q = jobq_engine_queue(e, it->queue);
        unsigned fl = 0;
        jobq_job *j;
        if (!q) {
            jobq_queue_opts o;
            jobq_queue_opts_default(&o);
            jobq_engine_queue_create(e, it->queue, &o, now, &q);
            jobq_queue_opts_clear(&o);
        }
        for (size_t k = 0; k < it->spec.ndeps; k++)
            parents[k] = made[ref_index(refs, it->spec.depends_on[k])];
        j = jobq_job_create(e, q, &it->spec, parents, f, now, &fl);
        made[i] = j;
        f->refs[i] = g_strdup(it->spec.ref);
        f->ids[i] = g_strdup(JOB_ID(j));
        f->jobs[i] = j;
        f->present++;
        j->x->orch->flow_idx = (uint32_t)i;
        f->counts[j->state]++;
        jobq_queue_touch(e, q, now);
    }
    f->state = JOBQ_FLOW_RUNNING;
    flow_save(e, f);
    flow_update(e, f, now); /* every job from the cache: done at once */
    *out = f;
out:
    for (size_t i = 0; i < n; i++)
        if (kids[i])
            g_ptr_array_free(kids[i], TRUE);
    g_free(kids);
    g_free(indeg);
    g_free(order);
    g_free(made);
    g_free(parents);
    g_hash_table_destroy(refs);
    g_hash_table_destroy(ids);
    g_hash_table_destroy(per_queue);
    return rc;
}

int jobq_engine_flow_cancel(jobq_engine *e, jobq_flow *f, int64_t now)
{
    if (jobq_flow_final(f))
        return JOBQ_ESTATE;
    /* the flag first: a continue-on-failure child of a cancelled job must not start */
    f->cancelled = 1;
    flow_save(e, f);
    for (size_t i = f->n; i-- > 0;) {
        jobq_job *j = f->jobs[i];
        if (j && !jobq_state_final(j->state))
            jobq_engine_job_cancel(e, j, now);
    }
    return 0;
}

size_t jobq_engine_flow_list(const jobq_engine *e, const char *project, size_t limit,
                             jobq_flow **out)
{
    const GQueue *fq = &e->flow_order;
    size_t n = 0;

    if (project && !(fq = g_hash_table_lookup(e->flows_by_project, project)))
        return 0;
    for (GList *l = fq->tail; l && n < limit; l = l->prev)
        out[n++] = l->data;
    return n;
}

void jobq_flow_render(const jobq_engine *e, const jobq_flow *f, GString *o)
{
    int first = 1;

    (void)e;
    g_string_append_c(o, '{');
    jobq_jw_kstr(o, &first, "id", f->id);
    jobq_jw_kstr(o, &first, "name", f->name);
    jobq_jw_kstr(o, &first, "project", f->project);
    jobq_jw_kstr(o, &first, "state", flow_state_names[f->state]);
    jobq_jw_kstr(o, &first, "on_parent_failure",
                 f->opf == JOBQ_OPF_CONTINUE ? "continue" : "cancel");
    jobq_jw_key(o, &first, "jobs");
    g_string_append_c(o, '{');
    for (size_t i = 0; i < f->n; i++) {
        int f2 = (i == 0);
        jobq_jw_kstr(o, &f2, f->refs[i], f->ids[i]);
    }
    g_string_append_c(o, '}');
    /* each job's state (and outcome), and which refs are running or waiting now */
    jobq_jw_key(o, &first, "stages");
    g_string_append_c(o, '{');
    for (size_t i = 0; i < f->n; i++) {
        const jobq_job *j = f->jobs[i];
        int f2 = (i == 0), f3 = 1;
        jobq_jw_key(o, &f2, f->refs[i]);
        g_string_append_c(o, '{');
        jobq_jw_kstr(o, &f3, "id", f->ids[i]);
        jobq_jw_kstr(o, &f3, "queue", j ? j->q->name : NULL);
        jobq_jw_kstr(o, &f3, "state", j ? jobq_state_name(j->state) : "removed");
        jobq_jw_kraw(o, &f3, "result", j && j->x ? j->x->result : NULL);
        jobq_jw_kraw(o, &f3, "error", j && j->x ? j->x->error : NULL);
        g_string_append_c(o, '}');
    }
    g_string_append_c(o, '}');
    jobq_jw_key(o, &first, "current");
    g_string_append_c(o, '[');
    {
        int any = 0;
        for (size_t i = 0; i < f->n; i++) {
            const jobq_job *j = f->jobs[i];
            if (!j || jobq_state_final(j->state) || j->state == JOBQ_BLOCKED)
                continue;
            if (any++)
                g_string_append_c(o, ',');
            jobq_jw_str(o, f->refs[i]);
        }
    }
    g_string_append_c(o, ']');
    jobq_jw_key(o, &first, "skipped");
    g_string_append_c(o, '[');
    for (size_t i = 0; i < f->nskipped; i++) {
        if (i)
            g_string_append_c(o, ',');
        jobq_jw_str(o, f->skipped[i]);
    }
    g_string_append_c(o, ']');
    jobq_jw_key(o, &first, "counts");
    g_string_append_c(o, '{');
    for (int s = 0; s < JOBQ_NSTATES; s++) {
        int f2 = (s == 0);
        jobq_jw_kint(o, &f2, jobq_state_name(s), f->counts[s]);
    }
    g_string_append_c(o, '}');
    jobq_jw_kint(o, &first, "created_at", f->created_at);
    jobq_jw_kts(o, &first, "finished_at", f->finished_at);
    g_string_append_c(o, '}');
}
