/*
 * worker.c — `jobq worker`: fetch jobs, run a shell command per job, report back.
 *
 * Shape: two threads.
 *  - The fetch thread (fetch.c) only long-polls POST /v1/fetch (wait_ms 30000, count = free
 *    slots, worker = "hostname:pid") on its own client and hands the leased jobs over
 *    through a wake pipe. It sleeps while every slot is taken. Parking the long-poll there
 *    keeps the main loop responsive without polling the server at short intervals.
 *  - The main thread runs one poll() loop over a self-pipe (SIGCHLD, SIGTERM, SIGINT), the
 *    wake pipe, and each child's stdin/stdout/stderr pipes, with timers for heartbeats
 *    (every third of the lease), the job's timeout, the SIGTERM→SIGKILL grace and log
 *    batches. Its HTTP calls (progress, heartbeat, logs, complete, fail) are short and
 *    synchronous on the main client.
 *
 * A child's stdout lines "PROGRESS <percent> [stage]" and "CHECKPOINT <json>" become
 * progress and heartbeat calls; its last non-blank stdout line, if it is JSON, is the
 * result. Its stderr lines go to the job's log in batches. Exit 0 completes the job, 75
 * (EX_TEMPFAIL) fails it retryable, anything else fails it for good. Cancel, timeout, a lost
 * lease and a second shutdown signal stop the child's whole process group: SIGTERM, then
 * SIGKILL after KILL_GRACE_MS.
 *
 * Shutdown: the first SIGTERM/SIGINT stops fetching (the in-flight long-poll is aborted;
 * jobs whose fetch answer had already arrived are still run), running children finish and
 * are reported, then the worker exits 0. A second signal terminates the children (reported
 * as retryable failures, type "interrupted"); a third kills them outright.
 *
 * What it never does: retry a job itself or reinterpret the server's decisions; a failure is
 * reported and the server applies the queue's retry policy.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "cli/child.h"
#include "cli/cli.h"
#include "cli/fetch.h"

#define KILL_GRACE_MS 5000
#define DEFAULT_LEASE_MS 30000
#define MIN_HEARTBEAT_MS 100
#define LOG_BATCH_LINES 100
#define LOG_BATCH_MS 500
#define MAX_OUT_LINE (1024 * 1024) /* bytes: a result line larger than a request body is moot */
#define MAX_ERR_LINE 8192          /* bytes of one log line */
#define EXIT_TEMPFAIL 75           /* sysexits.h EX_TEMPFAIL */
#define REPORT_TRIES 3

enum stop_reason {
    STOP_NONE,
    STOP_CANCEL,     /* the server asked to cancel */
    STOP_TIMEOUT,    /* the job's timeout_ms passed */
    STOP_SHUTDOWN,   /* the worker was told twice to stop */
    STOP_LEASE_LOST, /* the job is no longer ours: report nothing */
};

/* One job and the command running it. */
struct child {
    struct child *next;
    json_t *job;             /* owned: the job as fetched, lease included */
    const char *id;          /* borrowed from job */
    const char *lease;       /* borrowed from job */
    const char *queue;       /* borrowed from job */
    long attempt;            /* the running attempt: job.attempt + 1 */
    pid_t pid;               /* also its process group id; 0 once reaped */
    int wstatus;             /* wait status once reaped */
    struct jobq_child_io io; /* -1 for each closed end */
    char *input;             /* job JSON for stdin */
    size_t input_len, input_off;
    struct jobq_lines out, err;
    char *last_line; /* last non-blank stdout line, or NULL */
    bool last_cut;   /* last_line lost its tail */
    char *last_err;  /* last non-blank stderr line, or NULL */
    json_t *logs;    /* stderr lines not sent yet (array) */
    enum stop_reason stop;
    int64_t started;    /* monotonic ms */
    int64_t hb_every;   /* ms between heartbeats */
    int64_t next_hb;    /* monotonic ms */
    int64_t deadline;   /* monotonic ms when timeout_ms passes; 0 = none */
    int64_t timeout_ms; /* the job's, 0 = none */
    int64_t logs_due;   /* monotonic ms to send pending logs; 0 = none pending */
    int64_t kill_at;    /* monotonic ms to SIGKILL; 0 = no SIGTERM sent yet */
    bool killed;        /* SIGKILL sent */
};

struct worker {
    jobq_client *client; /* borrowed: the main thread's */
    const char *url;     /* borrowed */
    const char *command; /* borrowed */
    char worker_id[300]; /* "hostname:pid" */
    long lease_ms;       /* --lease-ms, 0 = the job's own */
    struct child *children;
    int running;
    int sig_r;        /* self-pipe read end */
    int signals_seen; /* SIGTERM/SIGINT handled so far */
    bool stopping;
    jobq_fetch *fetch; /* owned */
};

/* The self-pipe: the handler notes what arrived and writes a byte to wake poll(). */
static int sig_w = -1;
static volatile sig_atomic_t got_chld;
static volatile sig_atomic_t got_term;

static void on_signal(int signo)
{
    int saved = errno;
    char b = 's';

    if (signo == SIGCHLD)
        got_chld = 1;
    else
        got_term = got_term + 1;
    if (write(sig_w, &b, 1) < 0) {
        /* A full pipe already holds a wake-up. */
    }
    errno = saved;
}

static void drain_fd(int fd)
{
    char buf[256];

    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

__attribute__((format(printf, 2, 3))) static void say(const struct child *c, const char *fmt, ...)
{
    va_list ap;

    if (c)
        fprintf(stderr, "jobq: worker: job %s: ", c->id);
    else
        fputs("jobq: worker: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- talking to the server about one child ----------------------------------------------- */

/* Stops the child's process group: SIGTERM now, SIGKILL after the grace. */
static void terminate(struct child *c, enum stop_reason why)
{
    if (why == STOP_LEASE_LOST || c->stop == STOP_NONE)
        c->stop = why;
    if (c->pid <= 0 || c->kill_at)
        return;
    kill(-c->pid, SIGTERM);
    c->kill_at = jobq_cli_now_ms() + KILL_GRACE_MS;
}

/* Handles the outcome of a call that carries the lease (heartbeat, progress, logs). */
static void after_call(struct worker *w, struct child *c, const char *what, int rc, int cancel)
{
    const char *code = jobq_client_error_code(w->client);

    if (rc == 0) {
        if (cancel && c->stop == STOP_NONE) {
            say(c, "cancel requested, stopping the command");
            terminate(c, STOP_CANCEL);
        }
        return;
    }
    if (strcmp(code, "lease_lost") == 0 || strcmp(code, "not_found") == 0) {
        if (c->stop != STOP_LEASE_LOST)
            say(c, "%s: %s, stopping the command", code, jobq_client_error_message(w->client));
        terminate(c, STOP_LEASE_LOST);
        return;
    }
    fprintf(stderr, "jobq: %s: %s (job %s %s)\n", code, jobq_client_error_message(w->client), c->id,
            what);
}

static void heartbeat(struct worker *w, struct child *c, json_t *checkpoint)
{
    int cancel = 0, rc;

    c->next_hb = jobq_cli_now_ms() + c->hb_every;
    rc = jobq_client_heartbeat(w->client, c->id, c->lease, w->lease_ms, checkpoint, &cancel);
    after_call(w, c, checkpoint ? "checkpoint" : "heartbeat", rc, cancel);
}

static void send_logs(struct worker *w, struct child *c)
{
    int rc;

    c->logs_due = 0;
    if (json_array_size(c->logs) == 0)
        return;
    if (c->stop != STOP_LEASE_LOST) {
        rc = jobq_client_logs(w->client, c->id, c->lease, c->logs);
        after_call(w, c, "logs", rc, 0);
    }
    /* Sent or not, a batch is not kept: a server that is away must not grow the worker. */
    json_array_clear(c->logs);
}

/* "PROGRESS <percent> [stage words]" */
static void on_progress(struct worker *w, struct child *c, const char *args)
{
    const char *stage;
    char *end;
    double percent;
    int cancel = 0, rc;

    errno = 0;
    percent = strtod(args, &end);
    if (end == args || errno || !isfinite(percent) || (*end && *end != ' ' && *end != '\t')) {
        say(c, "ignoring a PROGRESS line without a percent: %.80s", args);
        return;
    }
    stage = end + strspn(end, " \t");
    rc = jobq_client_progress(w->client, c->id, c->lease, percent, *stage ? stage : NULL, NULL,
                              &cancel);
    if (rc == 0)
        c->next_hb = jobq_cli_now_ms() + c->hb_every; /* progress extends the lease */
    after_call(w, c, "progress", rc, cancel);
}

/* "CHECKPOINT <json>" */
static void on_checkpoint(struct worker *w, struct child *c, const char *args)
{
    json_error_t err;
    json_t *value = json_loads(args, JSON_DECODE_ANY, &err);

    if (!value) {
        say(c, "ignoring a CHECKPOINT line that is not JSON: %s", err.text);
        return;
    }
    heartbeat(w, c, value);
    json_decref(value);
}

/* Whether `line` starts with the word `word` followed by a blank or its end; *args is
 * what follows the blanks. */
static bool keyword(const char *line, const char *word, const char **args)
{
    size_t n = strlen(word);

    if (strncmp(line, word, n) != 0 || (line[n] && line[n] != ' ' && line[n] != '\t'))
        return false;
    *args = line + n + strspn(line + n, " \t");
    return true;
}

static bool blank(const char *s)
{
    return s[strspn(s, " \t\r\n\f\v")] == '\0';
}

struct line_ctx {
    struct worker *w;
    struct child *c;
};

static void on_out_line(void *arg, const char *line, size_t len, bool cut)
{
    struct line_ctx *x = arg;
    struct child *c = x->c;
    const char *args;
    char *copy;

    if (blank(line))
        return;
    copy = strndup(line, len);
    if (copy) {
        free(c->last_line);
        c->last_line = copy;
        c->last_cut = cut;
    }
    if (cut || c->stop == STOP_LEASE_LOST)
        return;
    if (keyword(line, "PROGRESS", &args))
        on_progress(x->w, c, args);
    else if (keyword(line, "CHECKPOINT", &args))
        on_checkpoint(x->w, c, args);
}

static void on_err_line(void *arg, const char *line, size_t len, bool cut)
{
    struct line_ctx *x = arg;
    struct child *c = x->c;
    char *text = NULL;

    if (!blank(line)) {
        free(c->last_err);
        c->last_err = strndup(line, len);
    }
    if (cut && asprintf(&text, "%s [cut]", line) < 0)
        text = NULL;
    json_array_append_new(c->logs, json_string_nocheck(text ? text : line));
    free(text);
    if (!c->logs_due)
        c->logs_due = jobq_cli_now_ms() + LOG_BATCH_MS;
    if (json_array_size(c->logs) >= LOG_BATCH_LINES)
        send_logs(x->w, c);
}

/* Reads what is there on one of the child's output pipes; closes it at end of stream.
 * Returns whether it read something (more may follow). */
static bool read_pipe(struct worker *w, struct child *c, int *fd, bool is_err)
{
    struct line_ctx x = {w, c};
    struct jobq_lines *l = is_err ? &c->err : &c->out;
    jobq_lines_fn *fn = is_err ? on_err_line : on_out_line;
    char buf[65536];
    ssize_t n;

    n = read(*fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return false;
    if (n > 0) {
        if (jobq_lines_feed(l, buf, (size_t)n, fn, &x) < 0)
            say(c, "out of memory reading the command's output");
        return true;
    }
    jobq_lines_end(l, fn, &x);
    close(*fd);
    *fd = -1;
    return false;
}

static void write_input(struct child *c)
{
    ssize_t n = write(c->io.in, c->input + c->input_off, c->input_len - c->input_off);

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n > 0)
        c->input_off += (size_t)n;
    /* Done, or the command closed its stdin (EPIPE): either way there is no more to send. */
    if (n < 0 || c->input_off >= c->input_len) {
        close(c->io.in);
        c->io.in = -1;
    }
}

/* ---- one job from fetch to report -------------------------------------------------------- */

static void child_free(struct child *c)
{
    if (!c)
        return;
    if (c->io.in >= 0)
        close(c->io.in);
    if (c->io.out >= 0)
        close(c->io.out);
    if (c->io.err >= 0)
        close(c->io.err);
    jobq_lines_fini(&c->out);
    jobq_lines_fini(&c->err);
    free(c->input);
    free(c->last_line);
    free(c->last_err);
    json_decref(c->logs);
    json_decref(c->job);
    free(c);
}

/* Sends the final complete or fail, trying again on a transport or server-side error. */
static void report(struct worker *w, struct child *c, json_t *result, const char *message,
                   const char *type, bool retryable, json_t *details)
{
    int rc = 0;

    for (int i = 0; i < REPORT_TRIES; i++) {
        if (i > 0)
            usleep(500 * 1000);
        if (message)
            rc = jobq_client_fail(w->client, c->id, c->lease, message, type, retryable, details);
        else
            rc = jobq_client_complete(w->client, c->id, c->lease, result);
        if (rc != JOBQ_CLIENT_ETRANSPORT &&
            !(rc == JOBQ_CLIENT_ESERVER && jobq_client_status(w->client) >= 500))
            break;
    }
    if (rc == 0) {
        if (message)
            say(c, "failed (%s): %s", retryable ? "retryable" : "final", message);
        else
            say(c, "completed");
        return;
    }
    fprintf(stderr, "jobq: %s: %s (job %s %s)\n", jobq_client_error_code(w->client),
            jobq_client_error_message(w->client), c->id, message ? "fail" : "complete");
}

/* Drops a UTF-8 sequence that snprintf() cut at the end of `s`. */
static void trim_utf8(char *s)
{
    size_t n = strlen(s), start = n, need;
    unsigned char lead;

    while (start > 0 && ((unsigned char)s[start - 1] & 0xC0) == 0x80 && n - start < 3)
        start--;
    if (start == 0)
        return;
    lead = (unsigned char)s[start - 1];
    if (lead < 0xC0)
        return;
    need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
    if (n - (start - 1) < need)
        s[start - 1] = '\0';
}

/* Reports a reaped child's outcome. */
static void conclude(struct worker *w, struct child *c)
{
    json_t *details = NULL, *result = NULL;
    char msg[512];
    const char *tail = c->last_err ? c->last_err : "";
    const char *sep = c->last_err ? ": " : "";
    int st = c->wstatus;

    send_logs(w, c);
    switch (c->stop) {
    case STOP_LEASE_LOST:
        say(c, "lease lost; not reporting");
        return;
    case STOP_CANCEL:
        report(w, c, NULL, "cancelled", "cancelled", false, NULL);
        return;
    case STOP_TIMEOUT:
        snprintf(msg, sizeof(msg), "timed out after %lld ms", (long long)c->timeout_ms);
        report(w, c, NULL, msg, "timeout", true, NULL);
        return;
    case STOP_SHUTDOWN:
        report(w, c, NULL, "worker shut down while the command ran", "interrupted", true, NULL);
        return;
    case STOP_NONE:
        break;
    }

    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        if (c->last_line && !c->last_cut)
            result = json_loads(c->last_line, JSON_DECODE_ANY, NULL);
        report(w, c, result, NULL, NULL, false, NULL);
        json_decref(result);
        return;
    }
    if (WIFEXITED(st)) {
        snprintf(msg, sizeof(msg), "command exited with status %d%s%s", WEXITSTATUS(st), sep, tail);
        trim_utf8(msg);
        details = json_pack("{si}", "exit_code", WEXITSTATUS(st));
        report(w, c, NULL, msg, NULL, WEXITSTATUS(st) == EXIT_TEMPFAIL, details);
    } else {
        int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;

        snprintf(msg, sizeof(msg), "command killed by signal %d (SIG%s)%s%s", sig,
                 sigabbrev_np(sig) ? sigabbrev_np(sig) : "?", sep, tail);
        trim_utf8(msg);
        details = json_pack("{si}", "signal", sig);
        report(w, c, NULL, msg, NULL, false, details);
    }
    json_decref(details);
}

/* Starts the command for a fetched `job` (stolen). */
static void start(struct worker *w, json_t *job)
{
    static const char *const names[] = {"JOBQ_JOB_ID", "JOBQ_ATTEMPT", "JOBQ_QUEUE", "JOBQ_URL"};
    const char *values[4];
    char attempt[32], *text;
    struct child *c;
    json_int_t lease_ms;
    char **env;
    int rc;

    c = calloc(1, sizeof(*c));
    if (!c) {
        json_decref(job);
        jobq_fetch_release(w->fetch, 1);
        say(NULL, "out of memory starting a job; its lease will expire");
        return;
    }
    c->job = job;
    c->io.in = c->io.out = c->io.err = -1;
    jobq_lines_init(&c->out, MAX_OUT_LINE);
    jobq_lines_init(&c->err, MAX_ERR_LINE);
    c->id = json_string_value(json_object_get(job, "id"));
    c->lease = json_string_value(json_object_get(job, "lease"));
    c->queue = json_string_value(json_object_get(job, "queue"));
    c->attempt = (long)json_integer_value(json_object_get(job, "attempt")) + 1;
    c->timeout_ms = json_integer_value(json_object_get(job, "timeout_ms"));
    lease_ms = json_integer_value(json_object_get(job, "lease_ms"));
    if (lease_ms <= 0)
        lease_ms = DEFAULT_LEASE_MS;
    if (w->lease_ms > 0 && w->lease_ms < lease_ms)
        lease_ms = w->lease_ms;
    c->hb_every = lease_ms / 3 > MIN_HEARTBEAT_MS ? lease_ms / 3 : MIN_HEARTBEAT_MS;
    c->logs = json_array();
    text = json_dumps(job, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!c->id || !c->lease) {
        say(NULL, "fetched a job without an id or lease; skipping it");
        goto out_child;
    }
    if (!c->logs || !text || asprintf(&c->input, "%s\n", text) < 0) {
        c->input = NULL;
        say(c, "out of memory starting the job; its lease will expire");
        goto out_child;
    }
    c->input_len = strlen(c->input);

    snprintf(attempt, sizeof(attempt), "%ld", c->attempt);
    values[0] = c->id;
    values[1] = attempt;
    values[2] = c->queue ? c->queue : "";
    values[3] = w->url;
    env = jobq_child_env(names, values, 4);
    if (!env) {
        say(c, "out of memory starting the job; its lease will expire");
        goto out_child;
    }
    rc = jobq_child_spawn(w->command, env, &c->pid, &c->io);
    jobq_child_env_free(env);
    if (rc < 0) {
        char msg[256];

        snprintf(msg, sizeof(msg), "could not start /bin/sh: %s", strerror(-rc));
        report(w, c, NULL, msg, "spawn", true, NULL);
        goto out_child;
    }
    free(text);
    c->started = jobq_cli_now_ms();
    c->next_hb = c->started + c->hb_every;
    if (c->timeout_ms > 0)
        c->deadline = c->started + c->timeout_ms;
    c->next = w->children;
    w->children = c;
    w->running++;
    say(c, "started (queue %s, attempt %ld, pid %ld)", values[2], c->attempt, (long)c->pid);
    return;

out_child:
    free(text);
    child_free(c);
    jobq_fetch_release(w->fetch, 1);
}

/* Takes the jobs the fetch thread left. */
static void take_jobs(struct worker *w)
{
    json_t *jobs = jobq_fetch_take(w->fetch), *job;
    size_t i;

    json_array_foreach(jobs, i, job) start(w, json_incref(job));
    json_decref(jobs);
}

/* Reaps exited children; reads what they left in their pipes; reports and frees them. */
static void reap(struct worker *w)
{
    struct child **pp = &w->children, *c;
    struct line_ctx x;
    pid_t r;

    got_chld = 0;
    while ((c = *pp)) {
        r = c->pid > 0 ? waitpid(c->pid, &c->wstatus, WNOHANG) : 0;
        if (r != c->pid) {
            pp = &c->next;
            continue;
        }
        c->pid = 0;
        /* What the command wrote before it exited is in the pipes; a grandchild that keeps
         * them open is not waited for. */
        while (c->io.out >= 0 && read_pipe(w, c, &c->io.out, false))
            ;
        while (c->io.err >= 0 && read_pipe(w, c, &c->io.err, true))
            ;
        x = (struct line_ctx){w, c};
        jobq_lines_end(&c->out, on_out_line, &x);
        jobq_lines_end(&c->err, on_err_line, &x);
        conclude(w, c);
        *pp = c->next;
        child_free(c);
        w->running--;
        jobq_fetch_release(w->fetch, 1);
    }
}

/* Heartbeats, timeouts, the SIGKILL grace, log batches. Returns the next due time. */
static int64_t timers(struct worker *w)
{
    int64_t now = jobq_cli_now_ms(), next = INT64_MAX;

    for (struct child *c = w->children; c; c = c->next) {
        if (c->pid <= 0)
            continue;
        if (c->kill_at && !c->killed && now >= c->kill_at) {
            say(c, "command still running %d ms after SIGTERM, sending SIGKILL", KILL_GRACE_MS);
            kill(-c->pid, SIGKILL);
            c->killed = true;
        }
        if (c->deadline && c->stop == STOP_NONE && now >= c->deadline) {
            say(c, "timeout of %lld ms passed, stopping the command", (long long)c->timeout_ms);
            terminate(c, STOP_TIMEOUT);
        }
        if (c->stop != STOP_LEASE_LOST && now >= c->next_hb)
            heartbeat(w, c, NULL);
        if (c->logs_due && now >= c->logs_due)
            send_logs(w, c);

        if (c->kill_at && !c->killed && c->kill_at < next)
            next = c->kill_at;
        if (c->deadline && c->stop == STOP_NONE && c->deadline < next)
            next = c->deadline;
        if (c->stop != STOP_LEASE_LOST && c->next_hb < next)
            next = c->next_hb;
        if (c->logs_due && c->logs_due < next)
            next = c->logs_due;
    }
    return next;
}

static void on_term_signals(struct worker *w)
{
    int seen = got_term;

    for (; w->signals_seen < seen; w->signals_seen++) {
        if (w->signals_seen == 0) {
            say(NULL, "stopping: no new jobs; waiting for %d running (signal again to stop them)",
                w->running);
            w->stopping = true;
            jobq_fetch_stop(w->fetch);
        } else if (w->signals_seen == 1) {
            say(NULL, "stopping the running commands");
            for (struct child *c = w->children; c; c = c->next)
                terminate(c, STOP_SHUTDOWN);
        } else {
            for (struct child *c = w->children; c; c = c->next) {
                if (c->pid > 0)
                    kill(-c->pid, SIGKILL);
                c->killed = true;
            }
        }
    }
}

static int loop(struct worker *w)
{
    struct pollfd *pfd = NULL;
    struct child **owner = NULL;
    size_t cap = 0, n;
    int64_t next, now;
    bool fatal = false;
    int timeout, rc;

    for (;;) {
        if (jobq_fetch_over(w->fetch, &fatal) && !w->stopping) {
            say(NULL, "stopping: fetching failed for good; waiting for %d running", w->running);
            w->stopping = true;
        }
        if (w->stopping && !w->children && jobq_fetch_over(w->fetch, &fatal))
            break;

        if (cap < 2 + 3 * (size_t)w->running) {
            cap = 2 + 3 * (size_t)w->running + 16;
            free(pfd);
            free(owner);
            pfd = calloc(cap, sizeof(*pfd));
            owner = calloc(cap, sizeof(*owner));
            if (!pfd || !owner) {
                say(NULL, "out of memory");
                rc = JOBQ_CLI_EXIT_ERROR;
                goto out;
            }
        }
        n = 0;
        pfd[n++] = (struct pollfd){.fd = w->sig_r, .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = jobq_fetch_fd(w->fetch), .events = POLLIN};
        for (struct child *c = w->children; c; c = c->next) {
            if (c->io.in >= 0) {
                owner[n] = c;
                pfd[n++] = (struct pollfd){.fd = c->io.in, .events = POLLOUT};
            }
            if (c->io.out >= 0) {
                owner[n] = c;
                pfd[n++] = (struct pollfd){.fd = c->io.out, .events = POLLIN};
            }
            if (c->io.err >= 0) {
                owner[n] = c;
                pfd[n++] = (struct pollfd){.fd = c->io.err, .events = POLLIN};
            }
        }
        next = timers(w);
        now = jobq_cli_now_ms();
        if (next == INT64_MAX)
            timeout = -1;
        else
            timeout = next <= now ? 0 : (next - now > 60000 ? 60000 : (int)(next - now));
        if (got_chld || got_term != w->signals_seen)
            timeout = 0;

        if (poll(pfd, n, timeout) < 0 && errno != EINTR) {
            say(NULL, "poll: %s", strerror(errno));
            rc = JOBQ_CLI_EXIT_ERROR;
            goto out;
        }
        if (pfd[0].revents)
            drain_fd(w->sig_r);
        if (got_term != w->signals_seen)
            on_term_signals(w);
        if (pfd[1].revents)
            take_jobs(w);
        for (size_t i = 2; i < n; i++) {
            struct child *c = owner[i];

            if (!pfd[i].revents)
                continue;
            if (pfd[i].fd == c->io.in)
                write_input(c);
            else if (pfd[i].fd == c->io.out)
                read_pipe(w, c, &c->io.out, false);
            else if (pfd[i].fd == c->io.err)
                read_pipe(w, c, &c->io.err, true);
        }
        if (got_chld)
            reap(w);
    }
    rc = fatal ? JOBQ_CLI_EXIT_ERROR : JOBQ_CLI_EXIT_OK;
    say(NULL, "stopped");
out:
    free(pfd);
    free(owner);
    return rc;
}

/* Makes sure 0, 1 and 2 are open, so no pipe of ours lands on them. */
static void hold_std_fds(void)
{
    int fd;

    do {
        fd = open("/dev/null", O_RDWR);
    } while (fd >= 0 && fd <= 2);
    if (fd >= 0)
        close(fd);
}

static int setup_signals(struct worker *w)
{
    struct sigaction sa;
    int fds[2];

    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
        return -1;
    w->sig_r = fds[0];
    sig_w = fds[1];
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sa.sa_flags = 0;
    sigaction(SIGPIPE, &sa, NULL);
    return 0;
}

int jobq_cli_worker(const struct jobq_cli *cli, int argc, char **argv)
{
    enum { O_QUEUE = 256, O_CONC, O_LEASE, O_EXEC, O_CAP };
    static const struct option opts[] = {{"queue", required_argument, NULL, O_QUEUE},
                                         {"concurrency", required_argument, NULL, O_CONC},
                                         {"lease-ms", required_argument, NULL, O_LEASE},
                                         {"exec", required_argument, NULL, O_EXEC},
                                         {"capacity", required_argument, NULL, O_CAP},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct worker w = {0};
    const char **queues;
    size_t nqueues = 0;
    int64_t concurrency = 1, lease = 0;
    json_t *capacity = NULL;
    char host[256];
    int ch, rc = JOBQ_CLI_EXIT_USAGE;

    queues = calloc((size_t)argc + 1, sizeof(*queues));
    if (!queues) {
        fprintf(stderr, "jobq: out_of_memory: out of memory\n");
        return JOBQ_CLI_EXIT_ERROR;
    }
    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case O_QUEUE:
            queues[nqueues++] = optarg;
            break;
        case O_CONC:
            if (jobq_cli_parse_int(optarg, 1, 1000, &concurrency) < 0) {
                jobq_cli_usage("worker", "--concurrency needs 1..1000, not '%s'", optarg);
                goto out_queues;
            }
            break;
        case O_LEASE:
            if (jobq_cli_parse_int(optarg, 300, INT32_MAX, &lease) < 0) {
                jobq_cli_usage("worker", "--lease-ms needs an integer >= 300, not '%s'", optarg);
                goto out_queues;
            }
            break;
        case O_EXEC:
            w.command = optarg;
            break;
        case O_CAP:
            json_decref(capacity);
            capacity = json_loads(optarg, 0, NULL);
            if (!json_is_object(capacity)) {
                jobq_cli_usage("worker", "--capacity needs a JSON object, e.g. '{\"gpu\": 1}'");
                goto out_queues;
            }
            break;
        case 'h':
            rc = jobq_cli_help("worker");
            goto out_queues;
        default:
            jobq_cli_bad_option("worker", argv, ch);
            goto out_queues;
        }
    }
    if (optind < argc) {
        jobq_cli_usage("worker", "unexpected argument '%s'", argv[optind]);
        goto out_queues;
    }
    if (nqueues == 0 || !w.command) {
        jobq_cli_usage("worker", "worker needs --queue and --exec");
        goto out_queues;
    }

    rc = JOBQ_CLI_EXIT_ERROR;
    w.client = cli->client;
    w.url = cli->url;
    w.lease_ms = (long)lease;
    if (gethostname(host, sizeof(host)) < 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    snprintf(w.worker_id, sizeof(w.worker_id), "%s:%ld", host, (long)getpid());
    hold_std_fds();
    if (setup_signals(&w) < 0) {
        fprintf(stderr, "jobq: io: %s\n", strerror(errno));
        goto out_queues;
    }
    w.fetch =
        jobq_fetch_start(cli->url, cli->token, queues, nqueues, w.worker_id, (int)concurrency,
                         capacity);
    if (!w.fetch) {
        fprintf(stderr, "jobq: out_of_memory: could not start the fetch thread\n");
        goto out_signals;
    }
    say(NULL, "%s fetching from %zu queue(s) at %s, concurrency %lld", w.worker_id, nqueues,
        cli->url, (long long)concurrency);
    rc = loop(&w);
    jobq_fetch_free(w.fetch);
    while (w.children) {
        struct child *c = w.children;

        w.children = c->next;
        if (c->pid > 0)
            kill(-c->pid, SIGKILL);
        child_free(c);
    }

out_signals:
    signal(SIGCHLD, SIG_DFL);
    close(w.sig_r);
    close(sig_w);
    sig_w = -1;
out_queues:
    json_decref(capacity);
    free(queues);
    return rc;
}
