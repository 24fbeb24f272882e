/*
 * sqlite.c — the embedded store backend: one SQLite file, DIR/jobq.db, in WAL mode.
 *
 * One connection, used by one thread at a time: the caller's during open and load, the
 * writer's (writer.c) afterwards. A batch is one BEGIN IMMEDIATE … COMMIT with
 * synchronous=FULL, so COMMIT returning means one WAL fsync made it durable. Every
 * statement is prepared once at open; text is bound SQLITE_STATIC because the batch
 * outlives the step.
 *
 * Schema (meta.schema_version = 3; a version 2 file gains the docs table on open):
 *   meta(key, value)                   the store's schema_version and the engine's pairs
 *   queues(id, name, config, created_at)
 *   jobs(seq INTEGER PRIMARY KEY, ...) seq is the rowid: loads come back in seq order and
 *                                      every change addresses the job by it. No secondary
 *                                      index: the engine holds its indexes in memory.
 *                                      The history column holds the job's state changes as
 *                                      JSON objects, each followed by a comma; a batch's
 *                                      entries ride on the job's own INSERT/UPDATE, so a
 *                                      state change costs no statement of its own.
 *   logs(job, n, ...) WITHOUT ROWID:   keyed (job, n), one job's lines are one range.
 *   docs(kind, id, body) WITHOUT ROWID: every other object (store.h "Documents").
 * DIR/LOCK carries an flock held for the store's life (and the holder's pid, for the error
 * message of the next opener).
 *
 * Failures: any error rolls the whole batch back (SQLite may already have done so after
 * SQLITE_FULL / SQLITE_IOERR) and answers JOBQ_ESTORE; the WAL never holds a partial commit,
 * so the file is not corrupted and the next batch succeeds once the disk does.
 * Checkpoints: our WAL hook replaces SQLite's auto-checkpoint. The writer's idle call
 * checkpoints once the WAL holds WAL_IDLE_PAGES; a writer that never idles checkpoints after
 * the commit that crosses WAL_FORCE_PAGES.
 *
 * What it never does: SQL outside this file, or any decision about jobs.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <jansson.h>

#include "store/store.h"
#include "util/err.h"
#include "util/jsonw.h"

#define SCHEMA_VERSION "3"
#define CACHE_KIB 16384         /* page cache: the writer mostly appends; reads are rare */
#define WAL_IDLE_PAGES 1000     /* checkpoint when the writer idles (SQLite's default) */
#define WAL_FORCE_PAGES 10000   /* checkpoint right after a commit (~40 MiB of WAL) */
#define WAL_KEEP_BYTES 33554432 /* a reset WAL file is truncated to this */
#define BUSY_MS 2000            /* another process (sqlite3 shell) holding the lock */

enum stmt {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_JOB_INSERT,
    S_JOB_UPDATE,
    S_JOB_DELETE,
    S_JOB_DELETE_LOGS,
    S_HIST_APPEND,
    S_LOG_INSERT,
    S_LOG_TRIM,
    S_QUEUE_PUT,
    S_QUEUE_DELETE,
    S_META_PUT,
    S_DOC_PUT,
    S_DOC_DELETE,
    S_HIST_SELECT,
    S_LOG_SELECT,
    S_COUNT
};

/* JOB_INSERT and JOB_UPDATE share ?1..?20 (seq, the mutable columns, and the history entries
 * this batch adds), see bind_job. */
static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_JOB_INSERT] = "INSERT OR REPLACE INTO jobs(seq, state, priority, attempt, max_attempts,"
                     " stalls, run_at, updated_at, started_at, finished_at, hist_n, log_n,"
                     " worker, progress, checkpoint, error, result, history, flags, lease,"
                     " id, queue_id, created_at, opts, data)"
                     " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,"
                     " ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)",
    [S_JOB_UPDATE] = "UPDATE jobs SET state = ?2, priority = ?3, attempt = ?4,"
                     " max_attempts = ?5, stalls = ?6, run_at = ?7, updated_at = ?8,"
                     " started_at = ?9, finished_at = ?10, hist_n = ?11, log_n = ?12,"
                     " worker = ?13, progress = ?14, checkpoint = ?15, error = ?16,"
                     " result = ?17, history = history || ?18, flags = ?19, lease = ?20"
                     " WHERE seq = ?1",
    [S_JOB_DELETE] = "DELETE FROM jobs WHERE seq = ?1",
    [S_JOB_DELETE_LOGS] = "DELETE FROM logs WHERE job = ?1",
    [S_HIST_APPEND] = "UPDATE jobs SET history = history || ?2 WHERE seq = ?1",
    [S_LOG_INSERT] = "INSERT OR REPLACE INTO logs(job, n, attempt, at, line)"
                     " VALUES(?1, ?2, ?3, ?4, ?5)",
    [S_LOG_TRIM] = "DELETE FROM logs WHERE job = ?1 AND n < ?2",
    [S_QUEUE_PUT] = "INSERT OR REPLACE INTO queues(id, name, config, created_at)"
                    " VALUES(?1, ?2, ?3, ?4)",
    [S_QUEUE_DELETE] = "DELETE FROM queues WHERE id = ?1",
    [S_META_PUT] = "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)",
    [S_DOC_PUT] = "INSERT OR REPLACE INTO docs(kind, id, body) VALUES(?1, ?2, ?3)",
    [S_DOC_DELETE] = "DELETE FROM docs WHERE kind = ?1 AND id = ?2",
    [S_HIST_SELECT] = "SELECT history FROM jobs WHERE seq = ?1",
    [S_LOG_SELECT] = "SELECT line FROM logs WHERE job = ?1 AND (?2 < 0 OR attempt = ?2)"
                     " ORDER BY n",
};

/* Small fixed-size columns first and the big immutable payloads last, so a row's hot
 * columns sit in its first bytes. */
#define DOCS_SQL                                                                            \
    "CREATE TABLE IF NOT EXISTS docs(kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT,"         \
    " PRIMARY KEY(kind, id)) WITHOUT ROWID;"

static const char schema_sql[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
    "CREATE TABLE queues(id TEXT PRIMARY KEY, name TEXT NOT NULL, config TEXT,"
    " created_at INTEGER NOT NULL);"
    "CREATE TABLE jobs(seq INTEGER PRIMARY KEY, id TEXT NOT NULL, queue_id TEXT NOT NULL,"
    " state INTEGER NOT NULL, priority INTEGER NOT NULL, attempt INTEGER NOT NULL,"
    " max_attempts INTEGER NOT NULL, stalls INTEGER NOT NULL, run_at INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, started_at INTEGER NOT NULL,"
    " finished_at INTEGER NOT NULL, hist_n INTEGER NOT NULL, log_n INTEGER NOT NULL,"
    " worker TEXT, progress TEXT, checkpoint TEXT, error TEXT, result TEXT,"
    " history TEXT NOT NULL DEFAULT '', flags INTEGER NOT NULL DEFAULT 0,"
    " lease INTEGER NOT NULL DEFAULT 0, opts TEXT, data TEXT);"
    "CREATE TABLE logs(job INTEGER NOT NULL, n INTEGER NOT NULL, attempt INTEGER NOT NULL,"
    " at INTEGER NOT NULL, line TEXT NOT NULL, PRIMARY KEY(job, n)) WITHOUT ROWID;"
    DOCS_SQL
    "INSERT INTO meta(key, value) VALUES('schema_version', '" SCHEMA_VERSION "');";

/* Column order of this SELECT is what load_job reads by index. */
static const char load_jobs_sql[] =
    "SELECT seq, id, queue_id, state, priority, attempt, max_attempts, stalls, run_at,"
    " created_at, updated_at, started_at, finished_at, hist_n, log_n, worker, progress,"
    " checkpoint, error, result, opts, data, flags, lease FROM jobs ORDER BY seq";

typedef struct sq {
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT];
    int lock_fd;
    int wal_pages;  /* frames in the WAL after the last commit (writer thread) */
    bool failing;   /* the last apply failed: log the recovery once */
    int step_errno; /* errno right after the last failed step */
} sq;

static int code_of(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_NOMEM:
        return JOBQ_ENOMEM;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return JOBQ_ECORRUPT;
    default:
        return JOBQ_ESTORE;
    }
}

static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* Binds ?1..?20 of S_JOB_UPDATE / S_JOB_INSERT; the insert adds ?21..?25. hist is the
 * history text this batch adds to the job (NULL: none). */
static int bind_job(sqlite3_stmt *st, const jobq_job_row *r, bool insert, const GString *hist)
{
    int rc = sqlite3_bind_int64(st, 1, r->seq);
    rc |= sqlite3_bind_int(st, 2, r->state);
    rc |= sqlite3_bind_int(st, 3, r->priority);
    rc |= sqlite3_bind_int(st, 4, r->attempt);
    rc |= sqlite3_bind_int(st, 5, r->max_attempts);
    rc |= sqlite3_bind_int(st, 6, r->stalls);
    rc |= sqlite3_bind_int64(st, 7, r->run_at);
    rc |= sqlite3_bind_int64(st, 8, r->updated_at);
    rc |= sqlite3_bind_int64(st, 9, r->started_at);
    rc |= sqlite3_bind_int64(st, 10, r->finished_at);
    rc |= sqlite3_bind_int(st, 11, r->hist_n);
    rc |= sqlite3_bind_int(st, 12, r->log_n);
    rc |= bind_text(st, 13, r->worker);
    rc |= bind_text(st, 14, r->progress);
    rc |= bind_text(st, 15, r->checkpoint);
    rc |= bind_text(st, 16, r->error);
    rc |= bind_text(st, 17, r->result);
    rc |=
        sqlite3_bind_text(st, 18, hist ? hist->str : "", hist ? (int)hist->len : 0, SQLITE_STATIC);
    rc |= sqlite3_bind_int(st, 19, r->flags);
    rc |= sqlite3_bind_int64(st, 20, r->lease);
    if (insert) {
        rc |= bind_text(st, 21, r->id);
        rc |= bind_text(st, 22, r->queue_id);
        rc |= sqlite3_bind_int64(st, 23, r->created_at);
        rc |= bind_text(st, 24, r->opts);
        rc |= bind_text(st, 25, r->data);
    }
    return rc;
}

/* Steps a bound write statement once and resets it; SQLITE_DONE on success. */
static int run(sq *q, sqlite3_stmt *st)
{
    errno = 0;
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        /* SQLite 3.40 reports EFBIG / ENOSPC / EIO only as "disk I/O error"; the errno of
         * the failed write is still there right after the step. */
        q->step_errno = errno;
    }
    sqlite3_reset(st);
    return rc;
}

/* One history entry as the JSON object text it is kept as, with a trailing comma: a job's
 * history column is these objects one after another, read back inside [ ]. */
static void hist_text(GString *o, const jobq_hist_row *h)
{
    static const char *const names[] = {"waiting", "scheduled", "retrying", "blocked",  "active",
                                        "review",  "completed", "failed",   "cancelled"};
    int first = 1;
    int from_ok = h->from_state >= 0 && h->from_state < 9;
    int to_ok = h->to_state >= 0 && h->to_state < 9;

    g_string_append_c(o, '{');
    jobq_jw_kint(o, &first, "at", h->at);
    jobq_jw_kstr(o, &first, "from", from_ok ? names[h->from_state] : NULL);
    jobq_jw_kstr(o, &first, "to", to_ok ? names[h->to_state] : NULL);
    jobq_jw_kint(o, &first, "attempt", h->attempt);
    jobq_jw_kstr(o, &first, "worker", h->worker);
    jobq_jw_kraw(o, &first, "error", h->error);
    g_string_append(o, "},");
}

/* Applies one record inside the open transaction. SQLITE_DONE on success. hist maps a job's
 * seq to the history text this batch adds to it; entries whose job has a row record here
 * ride on that record's INSERT/UPDATE, the rest are appended on their own. */
static int apply_rec(sq *q, const jobq_rec *r, GHashTable *hist, GHashTable *rows)
{
    sqlite3_stmt *st;
    int rc;
    switch (r->kind) {
    case JOBQ_REC_JOB_INSERT:
    case JOBQ_REC_JOB_UPDATE: {
        bool insert = r->kind == JOBQ_REC_JOB_INSERT;
        st = q->st[insert ? S_JOB_INSERT : S_JOB_UPDATE];
        rc = bind_job(st, &r->u.job, insert, g_hash_table_lookup(hist, &r->u.job.seq));
        break;
    }
    case JOBQ_REC_JOB_DELETE:
        if (r->logs) {
            sqlite3_bind_int64(q->st[S_JOB_DELETE_LOGS], 1, r->job_seq);
            rc = run(q, q->st[S_JOB_DELETE_LOGS]);
            if (rc != SQLITE_DONE) {
                return rc;
            }
        }
        st = q->st[S_JOB_DELETE];
        rc = sqlite3_bind_int64(st, 1, r->job_seq);
        break;
    case JOBQ_REC_HIST: {
        const GString *t;
        if (g_hash_table_contains(rows, &r->u.hist.job_seq)) {
            return SQLITE_DONE; /* written with the job's row */
        }
        t = g_hash_table_lookup(hist, &r->u.hist.job_seq);
        if (!t || !t->len) {
            return SQLITE_DONE; /* already appended with an earlier entry */
        }
        st = q->st[S_HIST_APPEND];
        rc = sqlite3_bind_int64(st, 1, r->u.hist.job_seq);
        rc |= sqlite3_bind_text(st, 2, t->str, (int)t->len, SQLITE_STATIC);
        if (rc == SQLITE_OK) {
            rc = run(q, st);
            g_string_truncate((GString *)t, 0);
            return rc;
        }
        break;
    }
    case JOBQ_REC_LOG:
        st = q->st[S_LOG_INSERT];
        rc = sqlite3_bind_int64(st, 1, r->u.log.job_seq);
        rc |= sqlite3_bind_int(st, 2, r->u.log.n);
        rc |= sqlite3_bind_int(st, 3, r->u.log.attempt);
        rc |= sqlite3_bind_int64(st, 4, r->u.log.at);
        rc |= bind_text(st, 5, r->u.log.line);
        break;
    case JOBQ_REC_LOG_TRIM:
        st = q->st[S_LOG_TRIM];
        rc = sqlite3_bind_int64(st, 1, r->u.log.job_seq);
        rc |= sqlite3_bind_int(st, 2, r->u.log.n);
        break;
    case JOBQ_REC_QUEUE_PUT:
        st = q->st[S_QUEUE_PUT];
        rc = bind_text(st, 1, r->u.queue.id);
        rc |= bind_text(st, 2, r->u.queue.name);
        rc |= bind_text(st, 3, r->u.queue.config);
        rc |= sqlite3_bind_int64(st, 4, r->u.queue.created_at);
        break;
    case JOBQ_REC_QUEUE_DELETE:
        st = q->st[S_QUEUE_DELETE];
        rc = bind_text(st, 1, r->u.queue.id);
        break;
    case JOBQ_REC_META_PUT:
        st = q->st[S_META_PUT];
        rc = bind_text(st, 1, r->u.meta.key);
        rc |= bind_text(st, 2, r->u.meta.value);
        break;
    case JOBQ_REC_DOC_PUT:
        st = q->st[S_DOC_PUT];
        rc = bind_text(st, 1, r->u.doc.kind);
        rc |= bind_text(st, 2, r->u.doc.id);
        rc |= bind_text(st, 3, r->u.doc.body);
        break;
    case JOBQ_REC_DOC_DELETE:
        st = q->st[S_DOC_DELETE];
        rc = bind_text(st, 1, r->u.doc.kind);
        rc |= bind_text(st, 2, r->u.doc.id);
        break;
    default:
        return SQLITE_MISUSE;
    }
    if (rc != SQLITE_OK) {
        /* A failed bind is SQLITE_TOOBIG / SQLITE_RANGE; which one no longer matters. */
        return SQLITE_ERROR;
    }
    return run(q, st);
}

static void gstring_free(gpointer p)
{
    g_string_free(p, TRUE);
}

/* Writer thread. One transaction for the whole batch; on failure nothing stays. The batch's
 * history entries are first grouped by job, so that a job's row and its history are one
 * statement (a job whose row is deleted in this batch keeps none). */
static int sq_apply(void *be, const jobq_batch *b)
{
    sq *q = be;
    GHashTable *hist = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, gstring_free);
    GHashTable *rows = g_hash_table_new(g_int64_hash, g_int64_equal);
    int rc;

    for (size_t i = 0; i < b->n; i++) {
        const jobq_rec *r = &b->recs[i];
        if (r->kind == JOBQ_REC_HIST) {
            GString *t = g_hash_table_lookup(hist, &r->u.hist.job_seq);
            if (!t) {
                t = g_string_sized_new(128);
                g_hash_table_insert(hist, (gpointer)&r->u.hist.job_seq, t);
            }
            hist_text(t, &r->u.hist);
        } else if (r->kind == JOBQ_REC_JOB_INSERT || r->kind == JOBQ_REC_JOB_UPDATE) {
            g_hash_table_add(rows, (gpointer)&r->u.job.seq);
        } else if (r->kind == JOBQ_REC_JOB_DELETE) {
            g_hash_table_add(rows, (gpointer)&r->job_seq); /* nothing to append to */
        }
    }
    rc = run(q, q->st[S_BEGIN]);
    for (size_t i = 0; rc == SQLITE_DONE && i < b->n; i++) {
        rc = apply_rec(q, &b->recs[i], hist, rows);
    }
    g_hash_table_destroy(hist);
    g_hash_table_destroy(rows);
    if (rc == SQLITE_DONE) {
        rc = run(q, q->st[S_COMMIT]);
    }
    if (rc == SQLITE_DONE) {
        if (q->failing) {
            fprintf(stderr, "jobqd: store: commits to %s work again\n",
                    sqlite3_db_filename(q->db, "main"));
            q->failing = false;
        }
        return 0;
    }

    if (!q->failing) {
        /* Once per failing spell: a full disk is retried by the caller, over and over. */
        int sys = (rc & 0xff) == SQLITE_IOERR || (rc & 0xff) == SQLITE_FULL ? q->step_errno : 0;
        fprintf(stderr, "jobqd: store: commit to %s failed: %s%s%s%s\n",
                sqlite3_db_filename(q->db, "main"), sqlite3_errmsg(q->db), sys ? " (" : "",
                sys ? strerror(sys) : "", sys ? ")" : "");
        q->failing = true;
    }
    /* SQLite rolls back by itself after some errors (SQLITE_FULL, SQLITE_IOERR, ...); a
     * transaction still open is ours to end so the connection is usable again. */
    if (!sqlite3_get_autocommit(q->db)) {
        run(q, q->st[S_ROLLBACK]);
    }
    return JOBQ_ESTORE;
}

/* Copies column i of the current row into *out (new, NULL for SQL NULL). 0 or -1 on OOM. */
static int dup_col(sqlite3_stmt *st, int i, char **out)
{
    *out = NULL;
    if (sqlite3_column_type(st, i) == SQLITE_NULL) {
        return 0;
    }
    const char *v = (const char *)sqlite3_column_text(st, i);
    *out = v ? strdup(v) : NULL;
    return *out ? 0 : -1;
}

static void free_hist(jobq_hist_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(rows[i].worker);
        free(rows[i].error);
    }
    free(rows);
}

static int state_num(const char *name)
{
    static const char *const names[] = {"waiting", "scheduled", "retrying", "blocked",  "active",
                                        "review",  "completed", "failed",   "cancelled"};
    for (int i = 0; name && i < 9; i++) {
        if (strcmp(name, names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

/* Reads a job's history column back into rows (see hist_text for its form). */
static int sq_read_history(void *be, int64_t job_seq, jobq_hist_row **out, size_t *out_n)
{
    sq *q = be;
    sqlite3_stmt *st = q->st[S_HIST_SELECT];
    jobq_hist_row *rows = NULL;
    json_t *arr = NULL, *e;
    size_t n = 0, i;
    int rc, ret = JOBQ_ECORRUPT;

    sqlite3_bind_int64(st, 1, job_seq);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        size_t len = (size_t)sqlite3_column_bytes(st, 0);
        GString *doc = g_string_sized_new(len + 2);
        g_string_append_c(doc, '[');
        g_string_append_len(doc, t ? t : "", (gssize)len);
        if (doc->len > 1) {
            g_string_truncate(doc, doc->len - 1); /* the last entry's comma */
        }
        g_string_append_c(doc, ']');
        arr = json_loadb(doc->str, doc->len, 0, NULL);
        g_string_free(doc, TRUE);
        if (!json_is_array(arr)) {
            goto out_fail;
        }
    } else if (rc != SQLITE_DONE) {
        ret = code_of(rc);
        goto out_fail;
    }
    n = arr ? json_array_size(arr) : 0;
    rows = calloc(n ? n : 1, sizeof(*rows));
    if (!rows) {
        ret = JOBQ_ENOMEM;
        goto out_fail;
    }
    json_array_foreach(arr, i, e)
    {
        jobq_hist_row *h = &rows[i];
        const char *w = json_string_value(json_object_get(e, "worker"));
        json_t *err = json_object_get(e, "error");
        h->job_seq = job_seq;
        h->n = (int)i;
        h->at = json_integer_value(json_object_get(e, "at"));
        h->from_state = state_num(json_string_value(json_object_get(e, "from")));
        h->to_state = state_num(json_string_value(json_object_get(e, "to")));
        h->attempt = (int)json_integer_value(json_object_get(e, "attempt"));
        h->worker = w ? strdup(w) : NULL;
        h->error = err && !json_is_null(err) ? json_dumps(err, JSON_COMPACT) : NULL;
    }
    sqlite3_reset(st);
    json_decref(arr);
    *out = rows;
    *out_n = n;
    return 0;

out_fail:
    sqlite3_reset(st);
    json_decref(arr);
    free_hist(rows, n);
    return ret;
}

static int sq_read_logs(void *be, int64_t job_seq, int attempt, char ***out, size_t *out_n)
{
    sq *q = be;
    sqlite3_stmt *st = q->st[S_LOG_SELECT];
    char **lines = NULL;
    size_t n = 0, cap = 0;
    int ret = JOBQ_ENOMEM;
    int rc;

    sqlite3_bind_int64(st, 1, job_seq);
    sqlite3_bind_int(st, 2, attempt);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **grown = realloc(lines, ncap * sizeof(*grown));
            if (!grown) {
                goto out_fail;
            }
            lines = grown;
            cap = ncap;
        }
        if (dup_col(st, 0, &lines[n]) < 0) {
            goto out_fail;
        }
        n++;
    }
    if (rc != SQLITE_DONE) {
        ret = code_of(rc);
        goto out_fail;
    }
    sqlite3_reset(st);
    *out = lines;
    *out_n = n;
    return 0;

out_fail:
    sqlite3_reset(st);
    for (size_t i = 0; i < n; i++) {
        free(lines[i]);
    }
    free(lines);
    return ret;
}

/* Per-row loaders: fill a borrowed row from the current result row and hand it on. */
static int load_meta(sqlite3_stmt *st, const jobq_load_cb *cb)
{
    return cb->meta(cb->ud, (const char *)sqlite3_column_text(st, 0),
                    (const char *)sqlite3_column_text(st, 1));
}

static int load_doc(sqlite3_stmt *st, const jobq_load_cb *cb)
{
    return cb->doc(cb->ud, (const char *)sqlite3_column_text(st, 0),
                   (const char *)sqlite3_column_text(st, 1),
                   (const char *)sqlite3_column_text(st, 2));
}

static int load_queue(sqlite3_stmt *st, const jobq_load_cb *cb)
{
    jobq_queue_row r = {
        .id = (char *)sqlite3_column_text(st, 0),
        .name = (char *)sqlite3_column_text(st, 1),
        .config = (char *)sqlite3_column_text(st, 2),
        .created_at = sqlite3_column_int64(st, 3),
    };
    return cb->queue(cb->ud, &r);
}

static int load_job(sqlite3_stmt *st, const jobq_load_cb *cb)
{
    jobq_job_row r = {
        .seq = sqlite3_column_int64(st, 0),
        .id = (char *)sqlite3_column_text(st, 1),
        .queue_id = (char *)sqlite3_column_text(st, 2),
        .state = sqlite3_column_int(st, 3),
        .priority = sqlite3_column_int(st, 4),
        .attempt = sqlite3_column_int(st, 5),
        .max_attempts = sqlite3_column_int(st, 6),
        .stalls = sqlite3_column_int(st, 7),
        .run_at = sqlite3_column_int64(st, 8),
        .created_at = sqlite3_column_int64(st, 9),
        .updated_at = sqlite3_column_int64(st, 10),
        .started_at = sqlite3_column_int64(st, 11),
        .finished_at = sqlite3_column_int64(st, 12),
        .hist_n = sqlite3_column_int(st, 13),
        .log_n = sqlite3_column_int(st, 14),
        .worker = (char *)sqlite3_column_text(st, 15),
        .progress = (char *)sqlite3_column_text(st, 16),
        .checkpoint = (char *)sqlite3_column_text(st, 17),
        .error = (char *)sqlite3_column_text(st, 18),
        .result = (char *)sqlite3_column_text(st, 19),
        .opts = (char *)sqlite3_column_text(st, 20),
        .data = (char *)sqlite3_column_text(st, 21),
        .flags = sqlite3_column_int(st, 22),
        .lease = sqlite3_column_int64(st, 23),
    };
    return cb->job(cb->ud, &r);
}

/* Runs `sql` and calls fn for every row; a non-zero fn result stops with that value. */
static int load_rows(sq *q, const char *sql, int (*fn)(sqlite3_stmt *, const jobq_load_cb *),
                     const jobq_load_cb *cb)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(q->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        return code_of(rc);
    }
    int ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ret = fn(st, cb);
        if (ret) {
            goto out_finalize;
        }
    }
    if (rc != SQLITE_DONE) {
        ret = code_of(rc);
    }
out_finalize:
    sqlite3_finalize(st);
    return ret;
}

/* Caller's thread, before the writer starts. One read transaction: one consistent view. */
static int sq_load(void *be, const jobq_load_cb *cb)
{
    sq *q = be;
    int ret = 0;
    int rc = sqlite3_exec(q->db, "BEGIN", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        return code_of(rc);
    }
    if (cb->meta) {
        ret = load_rows(q, "SELECT key, value FROM meta WHERE key <> 'schema_version'", load_meta,
                        cb);
    }
    if (!ret && cb->doc) {
        ret = load_rows(q, "SELECT kind, id, body FROM docs ORDER BY kind, id", load_doc, cb);
    }
    if (!ret && cb->queue) {
        ret = load_rows(q,
                        "SELECT id, name, config, created_at FROM queues"
                        " ORDER BY created_at, id",
                        load_queue, cb);
    }
    if (!ret && cb->job) {
        ret = load_rows(q, load_jobs_sql, load_job, cb);
    }
    sqlite3_exec(q->db, "COMMIT", NULL, NULL, NULL);
    return ret;
}

/* SQLite calls this after every commit, in place of its auto-checkpoint. */
static int wal_hook(void *ud, sqlite3 *db, const char *name, int pages)
{
    sq *q = ud;
    q->wal_pages = pages;
    if (pages >= WAL_FORCE_PAGES) {
        /* A failed checkpoint (disk full) leaves the WAL as it was; the next one retries. */
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        q->wal_pages = 0;
    }
    return SQLITE_OK;
}

static void sq_idle(void *be)
{
    sq *q = be;
    if (q->wal_pages >= WAL_IDLE_PAGES) {
        sqlite3_wal_checkpoint_v2(q->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        q->wal_pages = 0;
    }
}

static void sq_close(void *be)
{
    sq *q = be;
    for (int i = 0; i < S_COUNT; i++) {
        sqlite3_finalize(q->st[i]);
    }
    /* The last connection to close checkpoints and removes the WAL. */
    sqlite3_close(q->db);
    if (q->lock_fd >= 0) {
        close(q->lock_fd); /* releases the flock */
    }
    free(q);
}

static const jobq_store_backend sqlite_backend = {
    .name = "sqlite",
    .load = sq_load,
    .apply = sq_apply,
    .read_history = sq_read_history,
    .read_logs = sq_read_logs,
    .idle = sq_idle,
    .close = sq_close,
};

/* Takes DIR/LOCK. 0, or negative with `why` filled in. */
static int take_lock(sq *q, const char *dir, char *why, size_t whylen)
{
    char *path = g_build_filename(dir, "LOCK", NULL);
    int ret = 0;
    q->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (q->lock_fd < 0) {
        snprintf(why, whylen, "cannot open %s: %s", path, strerror(errno));
        ret = JOBQ_EIO;
        goto out_path;
    }
    if (flock(q->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            char pid[24] = "";
            ssize_t len = pread(q->lock_fd, pid, sizeof(pid) - 1, 0);
            pid[len > 0 ? len : 0] = '\0';
            pid[strcspn(pid, "\n")] = '\0';
            snprintf(why, whylen,
                     "data directory %s is in use by another jobqd%s%s%s; stop it or use "
                     "another --data directory",
                     dir, pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "");
            ret = JOBQ_ELOCKED;
        } else {
            snprintf(why, whylen, "cannot lock %s: %s", path, strerror(errno));
            ret = JOBQ_EIO;
        }
        goto out_path;
    }
    /* The pid only informs the next opener's message; failing to write it is harmless. */
    if (ftruncate(q->lock_fd, 0) == 0) {
        dprintf(q->lock_fd, "%ld\n", (long)getpid());
    }
out_path:
    g_free(path);
    return ret;
}

/* Runs a PRAGMA that answers one text value and copies it into out. SQLITE_OK or error. */
static int pragma_text(sqlite3 *db, const char *sql, char *out, size_t outlen)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        return rc;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        snprintf(out, outlen, "%s", v ? v : "");
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Creates the schema in a new file, or checks the version of an existing one. */
static int check_schema(sq *q, char *why, size_t whylen)
{
    char version[32] = "";
    int rc = sqlite3_exec(q->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        goto out_sqlite;
    }
    char present[8] = "";
    rc = pragma_text(q->db, "SELECT count(*) FROM sqlite_schema WHERE name = 'meta'", present,
                     sizeof(present));
    if (rc != SQLITE_OK) {
        goto out_rollback;
    }
    if (strcmp(present, "0") == 0) {
        rc = sqlite3_exec(q->db, schema_sql, NULL, NULL, NULL);
    } else {
        rc = pragma_text(q->db, "SELECT value FROM meta WHERE key = 'schema_version'", version,
                         sizeof(version));
        if (rc == SQLITE_OK && strcmp(version, "2") == 0) {
            rc = sqlite3_exec(q->db,
                              DOCS_SQL "UPDATE meta SET value = '" SCHEMA_VERSION
                                       "' WHERE key = 'schema_version';",
                              NULL, NULL, NULL);
            if (rc != SQLITE_OK) {
                goto out_rollback;
            }
            strcpy(version, SCHEMA_VERSION);
        }
        if (rc == SQLITE_OK && strcmp(version, SCHEMA_VERSION) != 0) {
            sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
            snprintf(why, whylen,
                     "%s has schema version '%s'; this jobqd reads version " SCHEMA_VERSION,
                     sqlite3_db_filename(q->db, "main"), version);
            return JOBQ_ECORRUPT;
        }
    }
    if (rc != SQLITE_OK) {
        goto out_rollback;
    }
    rc = sqlite3_exec(q->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        goto out_rollback;
    }
    return 0;

out_rollback:
    snprintf(why, whylen, "%s: %s", sqlite3_db_filename(q->db, "main"), sqlite3_errmsg(q->db));
    if (!sqlite3_get_autocommit(q->db)) {
        sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return code_of(rc);
out_sqlite:
    snprintf(why, whylen, "%s: %s", sqlite3_db_filename(q->db, "main"), sqlite3_errmsg(q->db));
    return code_of(rc);
}

/* Opens DIR/jobq.db with the pragmas, schema and statements. 0, or negative with `why`. */
static int open_db(sq *q, const char *dir, char *why, size_t whylen)
{
    char *path = g_build_filename(dir, "jobq.db", NULL);
    char mode[16] = "";
    int ret;
    int rc = sqlite3_open_v2(
        path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(why, whylen, "cannot open %s: %s", path,
                 q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc));
        ret = code_of(rc);
        goto out_path;
    }
    sqlite3_extended_result_codes(q->db, 1);
    sqlite3_busy_timeout(q->db, BUSY_MS);
    rc = pragma_text(q->db, "PRAGMA journal_mode = WAL", mode, sizeof(mode));
    if (rc == SQLITE_OK && strcmp(mode, "wal") != 0) {
        snprintf(why, whylen, "%s: cannot use WAL journal mode (got '%s')", path, mode);
        ret = JOBQ_ESTORE;
        goto out_path;
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_exec(
            q->db,
            "PRAGMA synchronous = FULL;"
            "PRAGMA foreign_keys = OFF;"
            "PRAGMA cache_size = -" G_STRINGIFY(
                CACHE_KIB) ";"
                           "PRAGMA journal_size_limit = " G_STRINGIFY(WAL_KEEP_BYTES) ";",
            NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        snprintf(why, whylen, "%s: %s", path, sqlite3_errmsg(q->db));
        ret = code_of(rc);
        if (ret == JOBQ_ECORRUPT) {
            snprintf(why, whylen, "%s is not a jobq database: %s", path, sqlite3_errmsg(q->db));
        }
        goto out_path;
    }
    sqlite3_wal_hook(q->db, wal_hook, q);

    ret = check_schema(q, why, whylen);
    if (ret) {
        goto out_path;
    }
    for (int i = 0; i < S_COUNT; i++) {
        rc = sqlite3_prepare_v3(q->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &q->st[i], NULL);
        if (rc != SQLITE_OK) {
            snprintf(why, whylen, "%s: %s", path, sqlite3_errmsg(q->db));
            ret = code_of(rc);
            goto out_path;
        }
    }
out_path:
    g_free(path);
    return ret;
}

jobq_store *jobq_store_open_sqlite(const char *dir, int *err, const char **msg)
{
    /* Messages name the directory, so they cannot be string literals. */
    static _Thread_local char why[1024];
    why[0] = '\0';
    *msg = why;

    sq *q = calloc(1, sizeof(*q));
    if (!q) {
        *err = JOBQ_ENOMEM;
        *msg = "out of memory";
        return NULL;
    }
    q->lock_fd = -1;
    if (g_mkdir_with_parents(dir, 0755) != 0) {
        snprintf(why, sizeof(why), "cannot create data directory %s: %s", dir, strerror(errno));
        *err = JOBQ_EIO;
        goto out_close;
    }
    *err = take_lock(q, dir, why, sizeof(why));
    if (*err) {
        goto out_close;
    }
    *err = open_db(q, dir, why, sizeof(why));
    if (*err) {
        goto out_close;
    }
    jobq_store *s = jobq_store_new(&sqlite_backend, q); /* closes q when it fails */
    if (!s) {
        *err = JOBQ_ENOMEM;
        *msg = "out of memory";
    }
    return s;

out_close:
    sq_close(q);
    return NULL;
}
