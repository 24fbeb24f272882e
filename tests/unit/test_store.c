/*
 * test_store.c — the durable store: SQLite backend through the writer thread.
 *
 * Each test gets its own temporary data directory. A tiny loop stands in for libuv: the
 * writer's notify() writes a byte to a pipe, and wait_for() polls that pipe and calls
 * jobq_store_poll() until the expected completions have arrived. Durability is checked the
 * way the server sees it: free the store, open it again and load.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "store/store.h"
#include "util/err.h"

static char dir[64];
static int wake[2]; /* notify → loop */

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/jobq-store-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(pipe2(wake, O_NONBLOCK | O_CLOEXEC), 0);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void teardown(void)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    close(wake[0]);
    close(wake[1]);
}

TestSuite(store, .init = setup, .fini = teardown, .timeout = 60);

/* ---- the stand-in loop ---- */

static void notify(void *ud)
{
    (void)ud;
    char c = 1;
    /* A full pipe already holds a wake-up. */
    ssize_t r = write(wake[1], &c, 1);
    (void)r;
}

/* Runs the loop until *count reaches want (10 s at most). */
static void wait_for(jobq_store *s, const int *count, int want)
{
    while (*count < want) {
        struct pollfd p = {.fd = wake[0], .events = POLLIN};
        cr_assert_eq(poll(&p, 1, 10000), 1, "no completion within 10 s");
        char buf[64];
        while (read(wake[0], buf, sizeof(buf)) > 0) {
        }
        jobq_store_poll(s);
    }
}

static jobq_store *open_store(void)
{
    int err = 0;
    const char *msg = NULL;
    jobq_store *s = jobq_store_open_sqlite(dir, &err, &msg);
    cr_assert_not_null(s, "open: %d %s", err, msg ? msg : "");
    return s;
}

static jobq_store *open_started(void)
{
    jobq_store *s = open_store();
    cr_assert_eq(jobq_store_start(s, notify, NULL), 0);
    return s;
}

/* ---- commits ---- */

typedef struct commit_result {
    int done;
    int status;
    jobq_batch *batch; /* handed back by the store; the test frees it */
} commit_result;

static void on_commit(void *ud, jobq_batch *b, int status)
{
    commit_result *r = ud;
    r->done++;
    r->status = status;
    r->batch = b;
}

/* Submits b, waits for its completion, frees it; returns the status. */
static int commit(jobq_store *s, jobq_batch *b)
{
    commit_result r = {0};
    cr_assert_eq(jobq_store_submit(s, b, on_commit, &r), 0);
    wait_for(s, &r.done, 1);
    cr_assert_eq(r.batch, b);
    jobq_batch_free(r.batch);
    return r.status;
}

static char *xdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* A job row with every field set from seq. */
static void fill_job(jobq_job_row *j, int64_t seq)
{
    char buf[128];
    j->seq = seq;
    snprintf(buf, sizeof(buf), "job-%06" PRId64, seq);
    j->id = strdup(buf);
    j->queue_id = strdup(seq % 2 ? "q-odd" : "q-even");
    j->state = (int)(seq % 7);
    j->priority = (int)(seq % 11) - 5;
    j->attempt = (int)(seq % 3);
    j->max_attempts = 3;
    j->stalls = (int)(seq % 2);
    j->run_at = 1700000000000 + seq * 10;
    j->created_at = 1700000000000 + seq;
    j->updated_at = 1700000000000 + seq + 1;
    j->started_at = seq % 3 ? 1700000000000 + seq + 2 : 0;
    j->finished_at = 0;
    snprintf(buf, sizeof(buf), "{\"n\":%" PRId64 ",\"pad\":\"%.*s\"}", seq, (int)(seq % 50),
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    j->data = strdup(buf);
    j->opts = strdup("{\"max_attempts\":3}");
    j->result = NULL;
    j->error = seq % 5 ? NULL : strdup("{\"type\":\"boom\"}");
    j->progress = NULL;
    j->checkpoint = NULL;
    j->worker = seq % 4 ? strdup("w-1") : NULL;
    j->hist_n = (int)(seq % 4);
    j->log_n = 0;
}

static void add_insert(jobq_batch *b, int64_t seq)
{
    jobq_rec *r = jobq_batch_add(b, JOBQ_REC_JOB_INSERT);
    cr_assert_not_null(r);
    fill_job(&r->u.job, seq);
}

static void add_hist(jobq_batch *b, int64_t seq, int n)
{
    jobq_rec *r = jobq_batch_add(b, JOBQ_REC_HIST);
    cr_assert_not_null(r);
    r->u.hist.job_seq = seq;
    r->u.hist.n = n;
    r->u.hist.at = 1000 + n;
    r->u.hist.from_state = n - 1;
    r->u.hist.to_state = n;
    r->u.hist.attempt = n / 2;
    r->u.hist.worker = n % 2 ? strdup("w-7") : NULL;
    r->u.hist.error = n == 3 ? strdup("{\"type\":\"t\"}") : NULL;
}

static void add_log(jobq_batch *b, int64_t seq, int n, int attempt)
{
    char buf[64];
    jobq_rec *r = jobq_batch_add(b, JOBQ_REC_LOG);
    cr_assert_not_null(r);
    r->u.log.job_seq = seq;
    r->u.log.n = n;
    r->u.log.attempt = attempt;
    r->u.log.at = 2000 + n;
    snprintf(buf, sizeof(buf), "line %d of attempt %d", n, attempt);
    r->u.log.line = strdup(buf);
}

/* ---- loading into memory ---- */

typedef struct loaded {
    jobq_job_row *jobs;
    size_t n_jobs, cap_jobs;
    jobq_queue_row queues[16];
    size_t n_queues;
    char *meta[16][2];
    size_t n_meta;
    char *docs[16][3]; /* kind, id, body */
    size_t n_docs;
    char order[4096]; /* 'm', 'd', 'q', 'j' per callback, while there is room */
    size_t n_order;
    int stop_after; /* job callback returns 7 after this many jobs; 0 = never */
} loaded;

static void note(loaded *l, char c)
{
    if (l->n_order + 1 < sizeof(l->order)) {
        l->order[l->n_order++] = c;
    }
}

static int on_meta(void *ud, const char *key, const char *value)
{
    loaded *l = ud;
    note(l, 'm');
    cr_assert_lt(l->n_meta, 16);
    l->meta[l->n_meta][0] = xdup(key);
    l->meta[l->n_meta][1] = xdup(value);
    l->n_meta++;
    return 0;
}

static int on_queue(void *ud, const jobq_queue_row *row)
{
    loaded *l = ud;
    note(l, 'q');
    cr_assert_lt(l->n_queues, 16);
    jobq_queue_row *q = &l->queues[l->n_queues++];
    q->id = xdup(row->id);
    q->name = xdup(row->name);
    q->config = xdup(row->config);
    q->created_at = row->created_at;
    return 0;
}

static int on_job(void *ud, const jobq_job_row *row)
{
    loaded *l = ud;
    note(l, 'j');
    if (l->n_jobs == l->cap_jobs) {
        l->cap_jobs = l->cap_jobs ? l->cap_jobs * 2 : 64;
        l->jobs = realloc(l->jobs, l->cap_jobs * sizeof(*l->jobs));
        cr_assert_not_null(l->jobs);
    }
    jobq_job_row *j = &l->jobs[l->n_jobs++];
    *j = *row;
    j->id = xdup(row->id);
    j->queue_id = xdup(row->queue_id);
    j->data = xdup(row->data);
    j->opts = xdup(row->opts);
    j->result = xdup(row->result);
    j->error = xdup(row->error);
    j->progress = xdup(row->progress);
    j->checkpoint = xdup(row->checkpoint);
    j->worker = xdup(row->worker);
    if (l->stop_after && l->n_jobs == (size_t)l->stop_after) {
        return 7;
    }
    return 0;
}

static void loaded_free(loaded *l)
{
    for (size_t i = 0; i < l->n_jobs; i++) {
        jobq_job_row_clear(&l->jobs[i]);
    }
    free(l->jobs);
    for (size_t i = 0; i < l->n_queues; i++) {
        free(l->queues[i].id);
        free(l->queues[i].name);
        free(l->queues[i].config);
    }
    for (size_t i = 0; i < l->n_meta; i++) {
        free(l->meta[i][0]);
        free(l->meta[i][1]);
    }
    for (size_t i = 0; i < l->n_docs; i++) {
        for (int k = 0; k < 3; k++) {
            free(l->docs[i][k]);
        }
    }
}

static int on_doc(void *ud, const char *kind, const char *id, const char *body)
{
    loaded *l = ud;
    note(l, 'd');
    cr_assert_lt(l->n_docs, 16);
    l->docs[l->n_docs][0] = xdup(kind);
    l->docs[l->n_docs][1] = xdup(id);
    l->docs[l->n_docs][2] = xdup(body);
    l->n_docs++;
    return 0;
}

/* Opens the store in dir, loads everything into *l, and closes it again. */
static void reload(loaded *l)
{
    jobq_store *s = open_store();
    jobq_load_cb cb = {.meta = on_meta, .queue = on_queue, .job = on_job, .doc = on_doc, .ud = l};
    cr_assert_eq(jobq_store_load(s, &cb), 0);
    jobq_store_free(s);
}

static void assert_str(const char *got, const char *want, const char *what)
{
    if (!want) {
        cr_assert_null(got, "%s: want NULL, got '%s'", what, got);
    } else {
        cr_assert_not_null(got, "%s: want '%s', got NULL", what, want);
        cr_assert_str_eq(got, want, "%s", what);
    }
}

static void assert_job(const jobq_job_row *got, const jobq_job_row *want)
{
    cr_assert_eq(got->seq, want->seq);
    assert_str(got->id, want->id, "id");
    assert_str(got->queue_id, want->queue_id, "queue_id");
    cr_assert_eq(got->state, want->state);
    cr_assert_eq(got->priority, want->priority);
    cr_assert_eq(got->attempt, want->attempt);
    cr_assert_eq(got->max_attempts, want->max_attempts);
    cr_assert_eq(got->stalls, want->stalls);
    cr_assert_eq(got->run_at, want->run_at);
    cr_assert_eq(got->created_at, want->created_at);
    cr_assert_eq(got->updated_at, want->updated_at);
    cr_assert_eq(got->started_at, want->started_at);
    cr_assert_eq(got->finished_at, want->finished_at);
    assert_str(got->data, want->data, "data");
    assert_str(got->opts, want->opts, "opts");
    assert_str(got->result, want->result, "result");
    assert_str(got->error, want->error, "error");
    assert_str(got->progress, want->progress, "progress");
    assert_str(got->checkpoint, want->checkpoint, "checkpoint");
    assert_str(got->worker, want->worker, "worker");
    cr_assert_eq(got->hist_n, want->hist_n);
    cr_assert_eq(got->log_n, want->log_n);
}

static void assert_job_seq(const jobq_job_row *got, int64_t seq)
{
    jobq_job_row want = {0};
    fill_job(&want, seq);
    assert_job(got, &want);
    jobq_job_row_clear(&want);
}

/* ---- reads ---- */

typedef struct hist_result {
    int done;
    int status;
    size_t n;
    jobq_hist_row rows[32];
    char *strs[32][2];
} hist_result;

static void on_hist(void *ud, int status, const jobq_hist_row *rows, size_t n)
{
    hist_result *r = ud;
    r->done++;
    r->status = status;
    r->n = n;
    for (size_t i = 0; i < n && i < 32; i++) {
        r->rows[i] = rows[i];
        r->rows[i].worker = r->strs[i][0] = xdup(rows[i].worker);
        r->rows[i].error = r->strs[i][1] = xdup(rows[i].error);
    }
}

static void hist_result_free(hist_result *r)
{
    for (size_t i = 0; i < r->n && i < 32; i++) {
        free(r->strs[i][0]);
        free(r->strs[i][1]);
    }
}

typedef struct logs_result {
    int done;
    int status;
    size_t n;
    char *lines[64];
} logs_result;

static void on_logs(void *ud, int status, char *const *lines, size_t n)
{
    logs_result *r = ud;
    r->done++;
    r->status = status;
    r->n = n;
    for (size_t i = 0; i < n && i < 64; i++) {
        r->lines[i] = strdup(lines[i]);
    }
}

static void logs_result_free(logs_result *r)
{
    for (size_t i = 0; i < r->n && i < 64; i++) {
        free(r->lines[i]);
    }
    memset(r, 0, sizeof(*r));
}

static void read_hist(jobq_store *s, int64_t seq, hist_result *r)
{
    memset(r, 0, sizeof(*r));
    cr_assert_eq(jobq_store_read_history(s, seq, on_hist, r), 0);
    wait_for(s, &r->done, 1);
    cr_assert_eq(r->status, 0);
}

static void read_logs(jobq_store *s, int64_t seq, int attempt, logs_result *r)
{
    memset(r, 0, sizeof(*r));
    cr_assert_eq(jobq_store_read_logs(s, seq, attempt, on_logs, r), 0);
    wait_for(s, &r->done, 1);
    cr_assert_eq(r->status, 0);
}

/* ==== tests ==== */

Test(store, empty_store_loads_nothing)
{
    loaded l = {0};
    reload(&l);
    cr_assert_eq(l.n_jobs + l.n_queues + l.n_meta, 0, "schema_version is the store's own");
    loaded_free(&l);
}

Test(store, creates_missing_directory)
{
    char sub[128];
    snprintf(sub, sizeof(sub), "%s/a/b", dir);
    int err = 0;
    const char *msg = NULL;
    jobq_store *s = jobq_store_open_sqlite(sub, &err, &msg);
    cr_assert_not_null(s, "%s", msg);
    jobq_store_free(s);
    cr_assert_eq(access(sub, F_OK), 0);
}

Test(store, insert_update_delete_round_trip)
{
    jobq_store *s = open_started();
    jobq_batch *b = jobq_batch_new();
    for (int64_t seq = 1; seq <= 5; seq++) {
        add_insert(b, seq);
    }
    add_hist(b, 3, 0);
    add_log(b, 3, 0, 0);
    cr_assert_eq(commit(s, b), 0);

    /* Update job 2: every mutable column changes; the immutable ones in the record are
     * garbage and must be ignored. */
    b = jobq_batch_new();
    jobq_rec *r = jobq_batch_add(b, JOBQ_REC_JOB_UPDATE);
    jobq_job_row *u = &r->u.job;
    u->seq = 2;
    u->id = strdup("not-the-id");
    u->queue_id = strdup("not-the-queue");
    u->data = strdup("\"not the data\"");
    u->opts = NULL;
    u->created_at = 1;
    u->state = 4;
    u->priority = 9;
    u->attempt = 2;
    u->max_attempts = 5;
    u->stalls = 1;
    u->run_at = 0;
    u->updated_at = 1800000000000;
    u->started_at = 1800000000001;
    u->finished_at = 1800000000002;
    u->result = strdup("{\"ok\":true}");
    u->error = NULL;
    u->progress = strdup("{\"pct\":100}");
    u->checkpoint = strdup("[1,2]");
    u->worker = strdup("w-9");
    u->hist_n = 6;
    u->log_n = 3;
    r = jobq_batch_add(b, JOBQ_REC_JOB_DELETE);
    r->job_seq = 3;
    r->logs = 1;
    cr_assert_eq(commit(s, b), 0);

    hist_result h;
    read_hist(s, 3, &h);
    cr_assert_eq(h.n, 0, "JOB_DELETE removes the history");
    logs_result lr;
    read_logs(s, 3, -1, &lr);
    cr_assert_eq(lr.n, 0, "JOB_DELETE removes the logs");
    jobq_store_free(s);

    loaded l = {0};
    reload(&l);
    cr_assert_eq(l.n_jobs, 4);
    assert_job_seq(&l.jobs[0], 1);
    jobq_job_row want = {0};
    fill_job(&want, 2);
    want.state = 4;
    want.priority = 9;
    want.attempt = 2;
    want.max_attempts = 5;
    want.stalls = 1;
    want.run_at = 0;
    want.updated_at = 1800000000000;
    want.started_at = 1800000000001;
    want.finished_at = 1800000000002;
    free(want.worker);
    want.worker = strdup("w-9");
    want.result = strdup("{\"ok\":true}");
    want.progress = strdup("{\"pct\":100}");
    want.checkpoint = strdup("[1,2]");
    want.hist_n = 6;
    want.log_n = 3;
    assert_job(&l.jobs[1], &want);
    jobq_job_row_clear(&want);
    assert_job_seq(&l.jobs[2], 4);
    assert_job_seq(&l.jobs[3], 5);
    loaded_free(&l);
}

Test(store, insert_is_safe_to_repeat)
{
    jobq_store *s = open_started();
    for (int round = 0; round < 2; round++) {
        jobq_batch *b = jobq_batch_new();
        add_insert(b, 1);
        add_hist(b, 1, 0);
        add_log(b, 1, 0, 0);
        jobq_rec *r = jobq_batch_add(b, JOBQ_REC_QUEUE_PUT);
        r->u.queue.id = strdup("q1");
        r->u.queue.name = strdup("render");
        r->u.queue.created_at = 5;
        cr_assert_eq(commit(s, b), 0, "round %d", round);
    }
    hist_result h;
    read_hist(s, 1, &h);
    cr_assert_eq(h.n, 1);
    hist_result_free(&h);
    jobq_store_free(s);

    loaded l = {0};
    reload(&l);
    cr_assert_eq(l.n_jobs, 1);
    cr_assert_eq(l.n_queues, 1);
    loaded_free(&l);
}

Test(store, queues_and_meta_round_trip_in_callback_order)
{
    jobq_store *s = open_started();
    jobq_batch *b = jobq_batch_new();
    const char *names[] = {"render", "ingest", "score"};
    for (int i = 0; i < 3; i++) {
        jobq_rec *r = jobq_batch_add(b, JOBQ_REC_QUEUE_PUT);
        char id[16];
        snprintf(id, sizeof(id), "q%d", i);
        r->u.queue.id = strdup(id);
        r->u.queue.name = strdup(names[i]);
        r->u.queue.config = strdup("{\"concurrency\":1}");
        r->u.queue.created_at = 100 + i;
    }
    jobq_rec *r = jobq_batch_add(b, JOBQ_REC_META_PUT);
    r->u.meta.key = strdup("config");
    r->u.meta.value = strdup("{\"a\":1}");
    add_insert(b, 1);
    cr_assert_eq(commit(s, b), 0);

    b = jobq_batch_new();
    r = jobq_batch_add(b, JOBQ_REC_QUEUE_PUT); /* replace q0 */
    r->u.queue.id = strdup("q0");
    r->u.queue.name = strdup("render");
    r->u.queue.config = strdup("{\"concurrency\":8,\"paused\":true}");
    r->u.queue.created_at = 100;
    r = jobq_batch_add(b, JOBQ_REC_QUEUE_DELETE);
    r->u.queue.id = strdup("q1");
    r = jobq_batch_add(b, JOBQ_REC_META_PUT); /* replace */
    r->u.meta.key = strdup("config");
    r->u.meta.value = strdup("{\"a\":2}");
    r = jobq_batch_add(b, JOBQ_REC_META_PUT);
    r->u.meta.key = strdup("epoch");
    r->u.meta.value = NULL;
    cr_assert_eq(commit(s, b), 0);
    jobq_store_free(s);

    loaded l = {0};
    reload(&l);
    cr_assert_str_eq(l.order, "mmqqj", "meta, then queues, then jobs");
    cr_assert_eq(l.n_meta, 2);
    int config = strcmp(l.meta[0][0], "config") == 0 ? 0 : 1;
    cr_assert_str_eq(l.meta[config][0], "config");
    cr_assert_str_eq(l.meta[config][1], "{\"a\":2}");
    cr_assert_str_eq(l.meta[!config][0], "epoch");
    cr_assert_null(l.meta[!config][1]);
    cr_assert_eq(l.n_queues, 2);
    cr_assert_str_eq(l.queues[0].id, "q0", "in created_at order");
    cr_assert_str_eq(l.queues[0].config, "{\"concurrency\":8,\"paused\":true}");
    cr_assert_str_eq(l.queues[1].id, "q2");
    cr_assert_str_eq(l.queues[1].name, "score");
    cr_assert_eq(l.queues[1].created_at, 102);
    loaded_free(&l);
}

static void add_doc(jobq_batch *b, jobq_rec_kind kind, const char *k, const char *id,
                    const char *body)
{
    jobq_rec *r = jobq_batch_add(b, kind);
    r->u.doc.kind = strdup(k);
    r->u.doc.id = strdup(id);
    r->u.doc.body = body ? strdup(body) : NULL;
}

Test(store, documents_put_replace_delete_and_load_by_kind_and_id)
{
    jobq_store *s = open_started();
    jobq_batch *b = jobq_batch_new();
    add_doc(b, JOBQ_REC_DOC_PUT, "schedule", "nightly", "{\"cron\":\"0 3 * * *\"}");
    add_doc(b, JOBQ_REC_DOC_PUT, "flow", "f2", "{\"n\":2}");
    add_doc(b, JOBQ_REC_DOC_PUT, "flow", "f1", "{\"n\":1}");
    add_doc(b, JOBQ_REC_DOC_PUT, "webhook", "w1", "{}");
    add_insert(b, 1);
    cr_assert_eq(commit(s, b), 0);
    b = jobq_batch_new();
    add_doc(b, JOBQ_REC_DOC_PUT, "flow", "f2", "{\"n\":22}"); /* replace */
    add_doc(b, JOBQ_REC_DOC_DELETE, "webhook", "w1", NULL);
    add_doc(b, JOBQ_REC_DOC_DELETE, "webhook", "never-stored", NULL);
    cr_assert_eq(commit(s, b), 0);
    jobq_store_free(s);

    loaded l = {0};
    reload(&l);
    cr_assert_str_eq(l.order, "dddj", "documents before queues and jobs");
    cr_assert_eq(l.n_docs, 3);
    const char *want[3][3] = {{"flow", "f1", "{\"n\":1}"},
                              {"flow", "f2", "{\"n\":22}"},
                              {"schedule", "nightly", "{\"cron\":\"0 3 * * *\"}"}};
    for (int i = 0; i < 3; i++) {
        for (int k = 0; k < 3; k++) {
            cr_assert_str_eq(l.docs[i][k], want[i][k], "doc %d field %d", i, k);
        }
    }
    loaded_free(&l);
}

Test(store, upgrades_a_version_2_file_with_its_jobs_kept)
{
    jobq_store *s = open_started();
    jobq_batch *b = jobq_batch_new();
    add_insert(b, 1);
    cr_assert_eq(commit(s, b), 0);
    jobq_store_free(s);
    char path[128];
    snprintf(path, sizeof(path), "%s/jobq.db", dir);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db,
                              "DROP TABLE docs;"
                              "UPDATE meta SET value = '2' WHERE key = 'schema_version'",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);

    s = open_started();
    b = jobq_batch_new();
    add_doc(b, JOBQ_REC_DOC_PUT, "pipeline", "dubbing", "{}");
    cr_assert_eq(commit(s, b), 0);
    jobq_store_free(s);
    loaded l = {0};
    reload(&l);
    cr_assert_str_eq(l.order, "dj");
    cr_assert_str_eq(l.docs[0][1], "dubbing");
    loaded_free(&l);
}

Test(store, load_stops_on_callback_error)
{
    jobq_store *s = open_started();
    jobq_batch *b = jobq_batch_new();
    for (int64_t seq = 1; seq <= 10; seq++) {
        add_insert(b, seq);
    }
    cr_assert_eq(commit(s, b), 0);
    jobq_store_free(s);

    s = open_store();
    loaded l = {.stop_after = 3};
    jobq_load_cb cb = {.job = on_job, .ud = &l};
    cr_assert_eq(jobq_store_load(s, &cb), 7);
    cr_assert_eq(l.n_jobs, 3);
    /* The store is still usable after a stopped load. */
    cr_assert_eq(jobq_store_start(s, notify, NULL), 0);
    cr_assert_eq(jobq_store_load(s, &cb), JOBQ_ESTATE, "load only before start");
    b = jobq_batch_new();
    add_insert(b, 11);
    cr_assert_eq(commit(s, b), 0);
    jobq_store_free(s);
    loaded_free(&l);
}

Test(store, history_and_logs_read_in_order)
{
    jobq_store *s = open_started();
    jobq_batch *b = jobq_batch_new();
    add_insert(b, 1);
    add_insert(b, 2);
    /* History is kept in the order it is written (the engine writes it in n order); the
     * entries of two jobs interleave in the batch. */
    for (int i = 0; i < 5; i++) {
        add_hist(b, 1, i);
        if (i == 2) {
            add_hist(b, 2, 0);
        }
    }
    /* Lines of attempts 0 and 1 interleaved, written out of order. */
    add_log(b, 1, 3, 1);
    add_log(b, 1, 0, 0);
    add_log(b, 1, 2, 1);
    add_log(b, 1, 1, 0);
    add_log(b, 1, 4, 1);
    add_log(b, 2, 0, 0);
    cr_assert_eq(commit(s, b), 0);

    hist_result h;
    read_hist(s, 1, &h);
    cr_assert_eq(h.n, 5);
    for (int n = 0; n < 5; n++) {
        const jobq_hist_row *row = &h.rows[n];
        cr_assert_eq(row->job_seq, 1);
        cr_assert_eq(row->n, n);
        cr_assert_eq(row->at, 1000 + n);
        cr_assert_eq(row->from_state, n - 1);
        cr_assert_eq(row->to_state, n);
        cr_assert_eq(row->attempt, n / 2);
        assert_str(row->worker, n % 2 ? "w-7" : NULL, "worker");
        assert_str(row->error, n == 3 ? "{\"type\":\"t\"}" : NULL, "error");
    }
    hist_result_free(&h);
    read_hist(s, 99, &h);
    cr_assert_eq(h.n, 0, "no history: empty, not an error");

    logs_result lr;
    read_logs(s, 1, 1, &lr);
    cr_assert_eq(lr.n, 3);
    cr_assert_str_eq(lr.lines[0], "line 2 of attempt 1");
    cr_assert_str_eq(lr.lines[1], "line 3 of attempt 1");
    cr_assert_str_eq(lr.lines[2], "line 4 of attempt 1");
    logs_result_free(&lr);
    read_logs(s, 1, 0, &lr);
    cr_assert_eq(lr.n, 2);
    cr_assert_str_eq(lr.lines[0], "line 0 of attempt 0");
    cr_assert_str_eq(lr.lines[1], "line 1 of attempt 0");
    logs_result_free(&lr);
    read_logs(s, 1, -1, &lr);
    cr_assert_eq(lr.n, 5, "attempt < 0: every attempt");
    for (int n = 0; n < 5; n++) {
        char want[64];
        snprintf(want, sizeof(want), "line %d of attempt %d", n, n >= 2);
        cr_assert_str_eq(lr.lines[n], want);
    }
    logs_result_free(&lr);
    jobq_store_free(s);
}

Test(store, log_trim_drops_older_lines)
{
    jobq_store *s = open_started();
    jobq_batch *b = jobq_batch_new();
    add_insert(b, 1);
    add_insert(b, 2);
    for (int n = 0; n < 10; n++) {
        add_log(b, 1, n, 0);
        add_log(b, 2, n, 0);
    }
    cr_assert_eq(commit(s, b), 0);

    b = jobq_batch_new();
    jobq_rec *r = jobq_batch_add(b, JOBQ_REC_LOG_TRIM);
    r->u.log.job_seq = 1;
    r->u.log.n = 7;
    add_log(b, 1, 10, 0);
    cr_assert_eq(commit(s, b), 0);

    logs_result lr;
    read_logs(s, 1, 0, &lr);
    cr_assert_eq(lr.n, 4);
    for (int i = 0; i < 4; i++) {
        char want[64];
        snprintf(want, sizeof(want), "line %d of attempt 0", 7 + i);
        cr_assert_str_eq(lr.lines[i], want);
    }
    logs_result_free(&lr);
    read_logs(s, 2, 0, &lr);
    cr_assert_eq(lr.n, 10, "other jobs' lines stay");
    logs_result_free(&lr);
    jobq_store_free(s);
}

Test(store, reads_see_earlier_batches)
{
    jobq_store *s = open_started();
    commit_result c[3] = {{0}};
    hist_result h = {0};
    logs_result lr = {0};
    for (int i = 0; i < 3; i++) {
        jobq_batch *b = jobq_batch_new();
        if (i == 0) {
            add_insert(b, 1);
        }
        add_hist(b, 1, i);
        add_log(b, 1, i, 0);
        cr_assert_eq(jobq_store_submit(s, b, on_commit, &c[i]), 0);
    }
    /* Queued behind the batches, without waiting for them. */
    cr_assert_eq(jobq_store_read_history(s, 1, on_hist, &h), 0);
    cr_assert_eq(jobq_store_read_logs(s, 1, 0, on_logs, &lr), 0);
    wait_for(s, &lr.done, 1);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(c[i].done, 1, "completions arrive in submission order");
    }
    cr_assert_eq(h.done, 1);
    cr_assert_eq(h.n, 3);
    cr_assert_eq(lr.n, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(c[i].status, 0);
        jobq_batch_free(c[i].batch);
    }
    hist_result_free(&h);
    logs_result_free(&lr);
    jobq_store_free(s);
}

Test(store, lock_refuses_second_opener)
{
    jobq_store *s = open_store();
    int err = 0;
    const char *msg = NULL;
    jobq_store *s2 = jobq_store_open_sqlite(dir, &err, &msg);
    cr_assert_null(s2);
    cr_assert_eq(err, JOBQ_ELOCKED);
    cr_assert_not_null(msg);
    cr_assert_not_null(strstr(msg, dir), "message names the directory: %s", msg);
    char pid[32];
    snprintf(pid, sizeof(pid), "pid %ld", (long)getpid());
    cr_assert_not_null(strstr(msg, pid), "message names the holder: %s", msg);
    jobq_store_free(s);

    s = open_store(); /* the lock went with the store */
    jobq_store_free(s);
}

Test(store, failed_batch_applies_nothing)
{
    jobq_store *s = open_started();
    jobq_batch *b = jobq_batch_new();
    add_insert(b, 1);
    cr_assert_eq(commit(s, b), 0);

    /* Half-way through, a row the schema refuses (a job without an id). */
    b = jobq_batch_new();
    add_insert(b, 2);
    add_hist(b, 1, 0);
    add_log(b, 1, 0, 0);
    jobq_rec *r = jobq_batch_add(b, JOBQ_REC_JOB_UPDATE);
    fill_job(&r->u.job, 1);
    r->u.job.state = 6;
    r = jobq_batch_add(b, JOBQ_REC_JOB_INSERT);
    fill_job(&r->u.job, 3);
    free(r->u.job.id);
    r->u.job.id = NULL;
    add_insert(b, 4);
    cr_assert_eq(commit(s, b), JOBQ_ESTORE);

    hist_result h;
    read_hist(s, 1, &h);
    cr_assert_eq(h.n, 0);
    logs_result lr;
    read_logs(s, 1, -1, &lr);
    cr_assert_eq(lr.n, 0);

    b = jobq_batch_new(); /* submitted after the failure was delivered: applied */
    add_insert(b, 5);
    cr_assert_eq(commit(s, b), 0);
    jobq_store_free(s);

    loaded l = {0};
    reload(&l);
    cr_assert_eq(l.n_jobs, 2);
    assert_job_seq(&l.jobs[0], 1); /* the update did not stick */
    assert_job_seq(&l.jobs[1], 5);
    loaded_free(&l);
}

Test(store, batches_behind_a_failure_fail_until_it_is_delivered)
{
    jobq_store *s = open_started();
    commit_result bad = {0}, behind = {0}, after = {0};
    jobq_batch *b = jobq_batch_new();
    add_insert(b, 1);
    jobq_rec *r = jobq_batch_add(b, JOBQ_REC_JOB_INSERT);
    fill_job(&r->u.job, 2);
    free(r->u.job.queue_id);
    r->u.job.queue_id = NULL;
    cr_assert_eq(jobq_store_submit(s, b, on_commit, &bad), 0);
    b = jobq_batch_new();
    add_insert(b, 3); /* would succeed alone */
    cr_assert_eq(jobq_store_submit(s, b, on_commit, &behind), 0);
    wait_for(s, &behind.done, 1);
    cr_assert_eq(bad.status, JOBQ_ESTORE);
    cr_assert_eq(behind.status, JOBQ_ESTORE, "queued behind the failure: not applied");

    /* Resubmitted in order once the failure is known: applied. */
    jobq_batch_free(bad.batch);
    cr_assert_eq(jobq_store_submit(s, behind.batch, on_commit, &after), 0);
    wait_for(s, &after.done, 1);
    cr_assert_eq(after.status, 0);
    jobq_batch_free(after.batch);
    jobq_store_free(s);

    loaded l = {0};
    reload(&l);
    cr_assert_eq(l.n_jobs, 1);
    assert_job_seq(&l.jobs[0], 3);
    loaded_free(&l);
}

static void assert_integrity(void)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/jobq.db", dir);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* The file-size limit stands in for a full disk: writes past it fail with EFBIG. */
Test(store, disk_full_fails_cleanly_and_recovers)
{
    signal(SIGXFSZ, SIG_IGN);
    jobq_store *s = open_started();
    jobq_batch *b = jobq_batch_new();
    add_insert(b, 1);
    cr_assert_eq(commit(s, b), 0);

    struct rlimit old, low;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    low = old;
    low.rlim_cur = 256 * 1024;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &low), 0);

    /* ~2 MiB of jobs plus history: cannot fit under the limit. */
    static char big[4001];
    memset(big, 'x', sizeof(big) - 1);
    b = jobq_batch_new();
    for (int64_t seq = 2; seq <= 500; seq++) {
        jobq_rec *r = jobq_batch_add(b, JOBQ_REC_JOB_INSERT);
        fill_job(&r->u.job, seq);
        free(r->u.job.result);
        r->u.job.result = strdup(big);
        add_hist(b, seq, 0);
    }
    add_hist(b, 1, 0);
    commit_result c = {0};
    cr_assert_eq(jobq_store_submit(s, b, on_commit, &c), 0);
    wait_for(s, &c.done, 1);
    cr_assert_eq(c.status, JOBQ_ESTORE);

    /* Still failing while the disk is full, and a read still works. */
    c.done = 0;
    cr_assert_eq(jobq_store_submit(s, c.batch, on_commit, &c), 0);
    wait_for(s, &c.done, 1);
    cr_assert_eq(c.status, JOBQ_ESTORE);
    hist_result h;
    read_hist(s, 1, &h);
    cr_assert_eq(h.n, 0, "nothing of the failed batch applied");

    /* The disk has room again: the same batch goes through. */
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    c.done = 0;
    cr_assert_eq(jobq_store_submit(s, c.batch, on_commit, &c), 0);
    wait_for(s, &c.done, 1);
    cr_assert_eq(c.status, 0);
    jobq_batch_free(c.batch);
    read_hist(s, 1, &h);
    cr_assert_eq(h.n, 1);
    hist_result_free(&h);
    jobq_store_free(s);

    loaded l = {0};
    reload(&l);
    cr_assert_eq(l.n_jobs, 500);
    for (size_t i = 0; i < l.n_jobs; i++) {
        cr_assert_eq(l.jobs[i].seq, (int64_t)i + 1);
    }
    cr_assert_str_eq(l.jobs[499].result, big);
    loaded_free(&l);
    assert_integrity();
}

/* A batch bigger than the page cache: SQLite spills pages to the WAL in the middle of the
 * transaction, so the write fails inside a statement rather than at COMMIT. */
Test(store, disk_full_in_the_middle_of_a_batch)
{
    enum { ROWS = 1100, SIZE = 64 * 1024 }; /* ~70 MiB, past the 64 MiB cache */
    signal(SIGXFSZ, SIG_IGN);
    jobq_store *s = open_started();
    jobq_batch *b = jobq_batch_new();
    add_insert(b, 1);
    cr_assert_eq(commit(s, b), 0);

    struct rlimit old, low;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    low = old;
    low.rlim_cur = 1024 * 1024;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &low), 0);
    b = jobq_batch_new();
    for (int64_t seq = 2; seq <= ROWS; seq++) {
        jobq_rec *r = jobq_batch_add(b, JOBQ_REC_JOB_INSERT);
        fill_job(&r->u.job, seq);
        r->u.job.result = malloc(SIZE);
        memset(r->u.job.result, 'a' + (int)(seq % 26), SIZE - 1);
        r->u.job.result[SIZE - 1] = '\0';
    }
    commit_result c = {0};
    cr_assert_eq(jobq_store_submit(s, b, on_commit, &c), 0);
    wait_for(s, &c.done, 1);
    cr_assert_eq(c.status, JOBQ_ESTORE);

    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    jobq_batch *small = jobq_batch_new();
    add_hist(small, 1, 0);
    cr_assert_eq(commit(s, small), 0, "the connection is usable after the failure");
    c.done = 0;
    cr_assert_eq(jobq_store_submit(s, c.batch, on_commit, &c), 0);
    wait_for(s, &c.done, 1);
    cr_assert_eq(c.status, 0);
    jobq_batch_free(c.batch);
    jobq_store_free(s);

    loaded l = {0};
    reload(&l);
    cr_assert_eq(l.n_jobs, ROWS);
    cr_assert_eq(strlen(l.jobs[ROWS - 1].result), SIZE - 1);
    cr_assert_eq(l.jobs[ROWS - 1].result[0], 'a' + ROWS % 26);
    loaded_free(&l);
    assert_integrity();
}

Test(store, big_batch_loads_back_exactly)
{
    enum { N = 100000 };
    jobq_store *s = open_started();
    jobq_batch *b = jobq_batch_new();
    for (int64_t seq = 1; seq <= N; seq++) {
        add_insert(b, seq * 3); /* seqs need not be dense */
    }
    cr_assert_eq(commit(s, b), 0);
    jobq_store_free(s);

    loaded l = {0};
    reload(&l);
    cr_assert_eq(l.n_jobs, N);
    for (size_t i = 0; i < N; i++) {
        assert_job_seq(&l.jobs[i], ((int64_t)i + 1) * 3);
    }
    loaded_free(&l);
}

Test(store, free_drains_the_queue_and_delivers)
{
    jobq_store *s = open_started();
    commit_result c[5] = {{0}};
    for (int i = 0; i < 5; i++) {
        jobq_batch *b = jobq_batch_new();
        add_insert(b, i + 1);
        cr_assert_eq(jobq_store_submit(s, b, on_commit, &c[i]), 0);
    }
    hist_result h = {0};
    cr_assert_eq(jobq_store_read_history(s, 1, on_hist, &h), 0);
    jobq_store_free(s);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(c[i].done, 1);
        cr_assert_eq(c[i].status, 0);
        jobq_batch_free(c[i].batch);
    }
    cr_assert_eq(h.done, 1);
    hist_result_free(&h);

    loaded l = {0};
    reload(&l);
    cr_assert_eq(l.n_jobs, 5);
    loaded_free(&l);
}

Test(store, tasks_before_start_run_in_free)
{
    jobq_store *s = open_store();
    commit_result c = {0};
    jobq_batch *b = jobq_batch_new();
    add_insert(b, 1);
    cr_assert_eq(jobq_store_submit(s, b, on_commit, &c), 0);
    jobq_store_free(s);
    cr_assert_eq(c.done, 1);
    cr_assert_eq(c.status, 0);
    jobq_batch_free(c.batch);

    loaded l = {0};
    reload(&l);
    cr_assert_eq(l.n_jobs, 1);
    loaded_free(&l);
}

Test(store, refuses_other_schema_version)
{
    jobq_store_free(open_store());
    char path[128];
    snprintf(path, sizeof(path), "%s/jobq.db", dir);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'", NULL,
                              NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);

    int err = 0;
    const char *msg = NULL;
    cr_assert_null(jobq_store_open_sqlite(dir, &err, &msg));
    cr_assert_eq(err, JOBQ_ECORRUPT);
    cr_assert_not_null(strstr(msg, "'99'"), "%s", msg);
}

Test(store, refuses_a_file_that_is_not_a_database)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/jobq.db", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 512; i++) {
        fputs("this is not a database. ", f);
    }
    fclose(f);
    int err = 0;
    const char *msg = NULL;
    cr_assert_null(jobq_store_open_sqlite(dir, &err, &msg));
    cr_assert_eq(err, JOBQ_ECORRUPT, "%d %s", err, msg);
    cr_assert_not_null(strstr(msg, path), "%s", msg);
}

/* ---- the writer on a fake backend: ordering and failure epochs, no SQLite ---- */

typedef struct fake {
    int fail_first; /* batches with id 1 fail this many times */
    uint64_t applied[16];
    int n_applied;
} fake;

static int fake_apply(void *be, const jobq_batch *b)
{
    fake *f = be;
    if (b->id == 1 && f->fail_first > 0) {
        f->fail_first--;
        return JOBQ_ESTORE;
    }
    if (f->n_applied < 16) {
        f->applied[f->n_applied++] = b->id;
    }
    return 0;
}

static int fake_load(void *be, const jobq_load_cb *cb)
{
    (void)be;
    (void)cb;
    return 0;
}

static void fake_close(void *be)
{
    (void)be;
}

static const jobq_store_backend fake_ops = {
    .name = "fake",
    .load = fake_load,
    .apply = fake_apply,
    .close = fake_close,
};

typedef struct resubmitter {
    jobq_store *s;
    int done;
    int failures;
} resubmitter;

/* Like an engine would: a failed batch goes straight back into the queue. */
static void resubmit(void *ud, jobq_batch *b, int status)
{
    resubmitter *r = ud;
    if (status < 0) {
        r->failures++;
        cr_assert_eq(jobq_store_submit(r->s, b, resubmit, r), 0);
        return;
    }
    r->done++;
    jobq_batch_free(b);
}

static void fake_order(int fail_first)
{
    fake f = {.fail_first = fail_first};
    jobq_store *s = jobq_store_new(&fake_ops, &f);
    cr_assert_not_null(s);
    cr_assert_eq(jobq_store_start(s, notify, NULL), 0);
    resubmitter r = {.s = s};
    for (uint64_t id = 1; id <= 3; id++) {
        jobq_batch *b = jobq_batch_new();
        b->id = id;
        cr_assert_eq(jobq_store_submit(s, b, resubmit, &r), 0);
    }
    wait_for(s, &r.done, 3);
    jobq_store_free(s);
    cr_assert_eq(f.n_applied, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(f.applied[i], (uint64_t)i + 1, "applied out of order: %d at %d",
                     (int)f.applied[i], i);
    }
    cr_assert_geq(r.failures, fail_first);
}

Test(store, writer_keeps_order_across_resubmitted_failures)
{
    fake_order(0);
    fake_order(1);
    fake_order(3);
}
