/*
 * batch.c — the records of one group commit: a growable array of jobq_rec, each owning its
 * strings.
 *
 * The engine fills a batch during one loop turn; the writer applies it in one transaction
 * and hands it back. This file only allocates, grows and frees; it never looks at what the
 * records mean.
 */
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

/* Returns a new empty batch, or NULL on OOM. Freed by jobq_batch_free. */
jobq_batch *jobq_batch_new(void)
{
    return calloc(1, sizeof(jobq_batch));
}

void jobq_job_row_clear(jobq_job_row *r)
{
    free(r->id);
    free(r->queue_id);
    free(r->data);
    free(r->opts);
    free(r->result);
    free(r->error);
    free(r->progress);
    free(r->checkpoint);
    free(r->worker);
    memset(r, 0, sizeof(*r));
}

/* Frees the strings record `r` owns for its kind (unused fields are NULL: add zeroes). */
static void rec_clear(jobq_rec *r)
{
    switch (r->kind) {
    case JOBQ_REC_JOB_INSERT:
    case JOBQ_REC_JOB_UPDATE:
        jobq_job_row_clear(&r->u.job);
        break;
    case JOBQ_REC_JOB_DELETE:
        break;
    case JOBQ_REC_HIST:
        free(r->u.hist.worker);
        free(r->u.hist.error);
        break;
    case JOBQ_REC_LOG:
    case JOBQ_REC_LOG_TRIM:
        free(r->u.log.line);
        break;
    case JOBQ_REC_QUEUE_PUT:
    case JOBQ_REC_QUEUE_DELETE:
        free(r->u.queue.id);
        free(r->u.queue.name);
        free(r->u.queue.config);
        break;
    case JOBQ_REC_META_PUT:
        free(r->u.meta.key);
        free(r->u.meta.value);
        break;
    case JOBQ_REC_DOC_PUT:
    case JOBQ_REC_DOC_DELETE:
        free(r->u.doc.kind);
        free(r->u.doc.id);
        free(r->u.doc.body);
        break;
    }
}

/* Frees b, every record and every string the records own. Takes NULL. */
void jobq_batch_free(jobq_batch *b)
{
    if (!b) {
        return;
    }
    for (size_t i = 0; i < b->n; i++) {
        rec_clear(&b->recs[i]);
    }
    free(b->recs);
    free(b);
}

/* Appends a zeroed record of `kind` and returns it (borrowed; valid until the next add), or
 * NULL on OOM (b unchanged). Strings the caller stores in it are stolen by the batch. */
jobq_rec *jobq_batch_add(jobq_batch *b, jobq_rec_kind kind)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        jobq_rec *recs = realloc(b->recs, cap * sizeof(*recs));
        if (!recs) {
            return NULL;
        }
        b->recs = recs;
        b->cap = cap;
    }
    jobq_rec *r = &b->recs[b->n++];
    memset(r, 0, sizeof(*r));
    r->kind = kind;
    return r;
}
