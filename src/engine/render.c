/*
 * render.c — a job as the API's job object (docs/api.md), written straight into a GString.
 *
 * The payload, result, error, progress and checkpoint are stored as validated JSON text
 * and copied in as they are; nothing is re-serialised (payloads are bytes). This runs
 * for every job of every answer, so it allocates nothing but the output's growth.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "engine/internal.h"
#include "util/jsonw.h"

/* The key of parent `id` (the job p, NULL when removed) in a child's `parents`: its ref
 * within the child's flow, else its id. */
static const char *parent_key(const jobq_orch *oc, const jobq_job *p, const char *id)
{
    const jobq_orch *po = p && p->x ? p->x->orch : NULL;
    const jobq_flow *f = oc->flow;

    if (!f)
        return id;
    if (po && po->ref && po->flow == f)
        return po->ref;
    for (size_t i = 0; !p && i < f->n; i++) /* removed: the flow still knows its ref */
        if (strcmp(f->ids[i], id) == 0)
            return f->refs[i];
    return id;
}

/* A fetched job's parents' results, keyed the way depends_on named them: by ref within a
 * flow, by id otherwise. A parent removed meanwhile gives null. */
static void render_parents(const jobq_engine *e, const jobq_orch *oc, GString *o, int *first)
{
    jobq_jw_key(o, first, "parents");
    g_string_append_c(o, '{');
    for (size_t k = 0; k < oc->nparents; k++) {
        const jobq_job *p = jobq_engine_job(e, oc->parents[k]);
        int f2 = (k == 0);
        jobq_jw_key(o, &f2, parent_key(oc, p, oc->parents[k]));
        g_string_append(o, p && p->x && p->x->result ? p->x->result : "null");
    }
    g_string_append_c(o, '}');
}

void jobq_job_render(const jobq_engine *e, const jobq_job *j, int with_lease, int64_t now,
                     GString *o)
{
    const jobq_job_extra *x = j->x;
    const jobq_orch *oc = x ? x->orch : NULL;
    int first = 1;
    int64_t pos = jobq_engine_job_position(e, j);

    g_string_append_c(o, '{');
    jobq_jw_kstr(o, &first, "id", JOB_ID(j));
    jobq_jw_kstr(o, &first, "queue", j->q->name);
    jobq_jw_kstr(o, &first, "name", x ? x->name : NULL);
    jobq_jw_key(o, &first, "data");
    jobq_jw_put(o, j->data, j->data_len);
    jobq_jw_kstr(o, &first, "state", jobq_state_name(j->state));
    jobq_jw_kint(o, &first, "priority", j->priority);
    jobq_jw_kstr(o, &first, "group", x ? x->group : NULL);
    jobq_jw_kstr(o, &first, "tier", x ? x->tier : NULL);
    jobq_jw_kstr(o, &first, "project", x ? x->project : NULL);
    jobq_jw_kraw(o, &first, "tags", x && x->tags ? x->tags : "{}");
    jobq_jw_kint(o, &first, "attempt", j->attempt);
    jobq_jw_kint(o, &first, "max_attempts", j->max_attempts);
    jobq_jw_kint(o, &first, "stalls", j->stalls);
    jobq_jw_key(o, &first, "backoff");
    if (j->backoff)
        jobq_backoff_render(j->backoff, o);
    else
        g_string_append_len(o, "null", 4);
    jobq_jw_kint(o, &first, "timeout_ms", j->timeout_ms);
    jobq_jw_kint(o, &first, "lease_ms", j->lease_ms);
    jobq_jw_kts(o, &first, "run_at",
                j->state == JOBQ_SCHEDULED || j->state == JOBQ_RETRYING ? j->run_at : 0);
    jobq_jw_key(o, &first, "depends_on");
    g_string_append_c(o, '[');
    for (size_t k = 0; oc && k < oc->nparents; k++) {
        if (k)
            g_string_append_c(o, ',');
        jobq_jw_str(o, oc->parents[k]);
    }
    g_string_append_c(o, ']');
    jobq_jw_kbool(o, &first, "review", oc && oc->review);
    jobq_jw_kraw(o, &first, "requires", x && x->requires ? x->requires : "{}");
    jobq_jw_kraw(o, &first, "checkpoint", x ? x->checkpoint : NULL);
    jobq_jw_kraw(o, &first, "progress", x ? x->progress : NULL);
    jobq_jw_kraw(o, &first, "result", x ? x->result : NULL);
    jobq_jw_kraw(o, &first, "error", x ? x->error : NULL);
    if (pos >= 0) {
        int64_t est = jobq_engine_estimated_start(e, j, now);
        jobq_jw_kint(o, &first, "position", pos);
        if (est >= 0)
            jobq_jw_kint(o, &first, "estimated_start_ms", est);
        else
            jobq_jw_kraw(o, &first, "estimated_start_ms", NULL);
    } else {
        jobq_jw_kraw(o, &first, "position", NULL);
        jobq_jw_kraw(o, &first, "estimated_start_ms", NULL);
    }
    jobq_jw_kstr(o, &first, "worker", x && j->state == JOBQ_ACTIVE ? x->worker : NULL);
    jobq_jw_kbool(o, &first, "cancel_requested", (j->flags & JF_CANCEL_REQUESTED) != 0);
    jobq_jw_kstr(o, &first, "flow", oc && oc->flow ? oc->flow->id : NULL);
    if (oc) {
        if (oc->ref)
            jobq_jw_kstr(o, &first, "ref", oc->ref);
        if (oc->cached)
            jobq_jw_kbool(o, &first, "cached", 1);
        if (oc->feedback)
            jobq_jw_kraw(o, &first, "review_feedback", oc->feedback);
        if (with_lease && oc->nparents)
            render_parents(e, oc, o, &first);
    }
    jobq_jw_kraw(o, &first, "traceparent", NULL);
    jobq_jw_kint(o, &first, "created_at", j->created_at);
    jobq_jw_kts(o, &first, "started_at", x ? x->started_at : 0);
    jobq_jw_kts(o, &first, "finished_at", x ? x->finished_at : 0);
    jobq_jw_kint(o, &first, "updated_at", j->updated_at);
    if (with_lease && x && x->lease && j->state == JOBQ_ACTIVE) {
        char lease[17];
        jobq_lease_text(x->lease, lease);
        jobq_jw_kstr(o, &first, "lease", lease);
        jobq_jw_kint(o, &first, "lease_expires_at", x->lease_expires_at);
    }
    g_string_append_c(o, '}');
}
