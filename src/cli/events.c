/*
 * events.c — `jobq events`, `jobq wait` and `jobq top`: commands that follow the server's
 * event stream (/v1/events, docs/events.md).
 *
 * The stream is read with a libcurl easy handle of its own (libjobq answers whole JSON
 * bodies; a stream never ends): the write callback splits the Server-Sent Events text into
 * events and hands each one to the command. `events` prints them and reconnects from the
 * last seq when the stream drops; `wait` draws a progress bar for one job until it ends;
 * `top` keeps per-queue rates from the stream on a thread of its own and redraws a table
 * with the counts of /v1/stats.
 *
 * What it never does: retry a request other than the stream, or keep more than one event.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

#define MAX_EVENT (4u << 20) /* bytes of one event's data: more is a broken stream */

/* ---------------------------------------------------------------- the stream */

typedef struct stream {
    const struct jobq_cli *cli;
    /* called for each event (json: the data, NUL-terminated); non-zero stops the stream */
    int (*on_event)(void *ud, const char *json);
    /* called once the stream is open (the first bytes came), may be NULL; non-zero stops */
    int (*on_open)(void *ud);
    void *ud;
    char *line;   /* the line being read */
    size_t len, cap;
    char *data;   /* the event's data lines so far */
    size_t dlen, dcap;
    int opened;
    int stopped;  /* a callback asked to stop */
    long status;  /* HTTP status of the last attempt */
    char *err;    /* the error body of a non-200 answer */
    size_t elen;
    uint64_t last; /* the last seq seen, for a reconnect */
} stream;

static int add(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap * 2 : 256;
        char *b;
        while (c < *len + n + 1)
            c *= 2;
        b = realloc(*buf, c);
        if (!b)
            return -1;
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

/* One complete line of the SSE text. */
static int sse_line(stream *s, char *line, size_t n)
{
    if (n && line[n - 1] == '\r')
        line[--n] = '\0';
    if (n == 0) { /* end of an event */
        int rc = 0;
        if (s->dlen) {
            json_t *v = json_loads(s->data, 0, NULL);
            json_t *seq = json_object_get(v, "seq");
            if (json_is_integer(seq))
                s->last = (uint64_t)json_integer_value(seq);
            json_decref(v);
            rc = s->on_event(s->ud, s->data);
        }
        s->dlen = 0;
        return rc;
    }
    if (line[0] == ':')
        return 0;
    if (n >= 5 && strncmp(line, "data:", 5) == 0) {
        const char *v = line + 5 + (line[5] == ' ');
        if (s->dlen && add(&s->data, &s->dlen, &s->dcap, "\n", 1))
            return -1;
        if (s->dlen + strlen(v) > MAX_EVENT || add(&s->data, &s->dlen, &s->dcap, v, strlen(v)))
            return -1;
    }
    return 0;
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
    stream *s = ud;
    size_t n = size * nmemb;

    if (s->status != 200) { /* an error answer: keep it for the message */
        if (s->elen < 4096)
            add(&s->err, &s->elen, &(size_t){0}, p, n < 4096 ? n : 4096);
        return n;
    }
    if (!s->opened) {
        s->opened = 1;
        if (s->on_open && s->on_open(s->ud)) {
            s->stopped = 1;
            return 0;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n') {
            if (s->len > MAX_EVENT || add(&s->line, &s->len, &s->cap, p + i, 1))
                return 0;
            continue;
        }
        if (sse_line(s, s->line ? s->line : (char[]){0}, s->len)) {
            s->stopped = 1;
            return 0;
        }
        s->len = 0;
    }
    return n;
}

static volatile sig_atomic_t interrupted;

/* Called by libcurl about once a second and on progress: ends the transfer on a signal. */
static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)ud;
    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    return interrupted;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    stream *s = ud;
    long st;

    if (sscanf(p, "HTTP/%*s %ld", &st) == 1)
        s->status = st;
    return size * nmemb;
}

/* Runs the stream at `path` once, until it ends, fails or a callback stops it. 0 when it
 * ended or was stopped; 1 (reported) when it could not be opened. */
static int stream_run(stream *s, const char *path)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    char *url, *auth = NULL, lei[64];
    CURLcode rc;

    if (!h)
        return jobq_cli_out_of_memory();
    url = malloc(strlen(s->cli->url) + strlen(path) + 1);
    if (!url) {
        curl_easy_cleanup(h);
        return jobq_cli_out_of_memory();
    }
    strcpy(url, s->cli->url);
    if (url[0] && url[strlen(url) - 1] == '/')
        url[strlen(url) - 1] = '\0';
    strcat(url, path);
    hdrs = curl_slist_append(hdrs, "Accept: text/event-stream");
    if (s->last) {
        snprintf(lei, sizeof lei, "Last-Event-ID: %" PRIu64, s->last);
        hdrs = curl_slist_append(hdrs, lei);
    }
    if (s->cli->token && (auth = malloc(strlen(s->cli->token) + 32))) {
        sprintf(auth, "Authorization: Bearer %s", s->cli->token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    s->status = 0;
    s->opened = 0;
    s->len = s->dlen = s->elen = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    rc = curl_easy_perform(h);
    curl_slist_free_all(hdrs);
    free(auth);
    free(url);
    curl_easy_cleanup(h);
    if (s->stopped || interrupted)
        return 0;
    if (s->status && s->status != 200) {
        json_t *v = s->err ? json_loads(s->err, 0, NULL) : NULL;
        json_t *e = json_object_get(v, "error");
        fprintf(stderr, "jobq: %s: %s\n",
                json_string_value(json_object_get(e, "code")) ?: "http_error",
                json_string_value(json_object_get(e, "message")) ?: "the server refused");
        json_decref(v);
        return JOBQ_CLI_EXIT_ERROR;
    }
    if (rc != CURLE_OK && !s->opened) {
        fprintf(stderr, "jobq: transport: %s\n", curl_easy_strerror(rc));
        return JOBQ_CLI_EXIT_ERROR;
    }
    return 0;
}

static void stream_clear(stream *s)
{
    free(s->line);
    free(s->data);
    free(s->err);
}

/* ---------------------------------------------------------------- jobq events */

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static int print_event(void *ud, const char *json)
{
    long *left = ud;

    puts(json);
    fflush(stdout);
    if (*left > 0 && --*left == 0)
        return 1;
    return interrupted;
}

/* Appends "&key=v1,v2" built from a repeated option. */
static void list_query(struct jobq_cli_path *p, const char *key, char **vals, size_t n)
{
    size_t len = 0;
    char *joined;

    if (!n)
        return;
    for (size_t i = 0; i < n; i++)
        len += strlen(vals[i]) + 1;
    joined = malloc(len + 1);
    if (!joined) {
        free(p->s);
        p->s = NULL;
        return;
    }
    joined[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(joined, ",");
        strcat(joined, vals[i]);
    }
    jobq_cli_path_query(p, key, joined);
    free(joined);
}

int jobq_cli_events(const struct jobq_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"queue", required_argument, NULL, 'q'}, {"type", required_argument, NULL, 't'},
        {"job", required_argument, NULL, 'j'},   {"project", required_argument, NULL, 'p'},
        {"group", required_argument, NULL, 'g'}, {"since", required_argument, NULL, 's'},
        {"count", required_argument, NULL, 'n'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    char *queues[64], *types[64];
    size_t nq = 0, nt = 0;
    const char *job = NULL, *project = NULL, *group = NULL, *since = NULL;
    int64_t v;
    long count = 0;
    struct jobq_cli_path p;
    stream s = {0};
    int ch, rc = 0;

    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case 'q':
            if (nq == 64)
                return jobq_cli_usage("events", "at most 64 --queue");
            queues[nq++] = optarg;
            break;
        case 't':
            if (nt == 64)
                return jobq_cli_usage("events", "at most 64 --type");
            types[nt++] = optarg;
            break;
        case 'j':
            job = optarg;
            break;
        case 'p':
            project = optarg;
            break;
        case 'g':
            group = optarg;
            break;
        case 's':
            if (jobq_cli_parse_int(optarg, 0, INT64_MAX, &v))
                return jobq_cli_usage("events", "--since needs a seq, not '%s'", optarg);
            since = optarg;
            break;
        case 'n':
            if (jobq_cli_parse_int(optarg, 1, INT32_MAX, &v))
                return jobq_cli_usage("events", "--count needs a number >= 1, not '%s'", optarg);
            count = (long)v;
            break;
        case 'h':
            return jobq_cli_help("events");
        default:
            return jobq_cli_bad_option("events", argv, ch);
        }
    }
    if (optind < argc)
        return jobq_cli_usage("events", "unexpected argument '%s'", argv[optind]);
    jobq_cli_path_init(&p, "/v1/events", NULL, "");
    list_query(&p, "queues", queues, nq);
    list_query(&p, "types", types, nt);
    jobq_cli_path_query(&p, "job", job);
    jobq_cli_path_query(&p, "project", project);
    jobq_cli_path_query(&p, "group", group);
    jobq_cli_path_query(&p, "since", since);
    if (!p.s)
        return jobq_cli_out_of_memory();
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    s.cli = cli;
    s.on_event = print_event;
    s.ud = &count;
    /* a tail: when the stream drops, come back from the last event seen; once it has been
     * open, a server that cannot be reached (restarting) is tried again every second */
    while (!interrupted) {
        int ever = s.opened || s.last;
        rc = stream_run(&s, p.s);
        if (s.stopped || interrupted || (rc && !(ever && s.status == 0)))
            break;
        fprintf(stderr, "jobq: the event stream ended; reconnecting\n");
        sleep(1);
    }
    if (interrupted)
        rc = 0;
    stream_clear(&s);
    free(p.s);
    return rc;
}

/* ---------------------------------------------------------------- jobq wait */

static int is_final(const char *state)
{
    return !strcmp(state, "completed") || !strcmp(state, "failed") ||
           !strcmp(state, "cancelled");
}

typedef struct waiting {
    const struct jobq_cli *cli;
    const char *id;
    int tty;
    int final;      /* 0 running; else the exit status to give */
    json_t *last;   /* the job as last read */
    int64_t started; /* monotonic ms when the first progress came */
    double first_pc;
    int drawn;      /* a bar is on the terminal line */
} waiting;

static void fmt_dur(char *buf, size_t n, int64_t ms)
{
    int64_t s = (ms + 999) / 1000;

    if (s >= 3600)
        snprintf(buf, n, "%" PRId64 "h%02" PRId64 "m", s / 3600, s / 60 % 60);
    else if (s >= 60)
        snprintf(buf, n, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
    else
        snprintf(buf, n, "%" PRId64 "s", s);
}

/* Draws the bar (a terminal) or prints a line (anything else) for progress `pr`. */
static void draw(waiting *w, const char *state, json_t *pr)
{
    double pc = json_number_value(json_object_get(pr, "percent"));
    const char *stage = json_string_value(json_object_get(pr, "stage"));
    json_t *eta_v = json_object_get(pr, "eta_ms");
    char bar[31], eta[32] = "";
    int fill;
    int64_t now = jobq_cli_now_ms();

    if (!json_object_get(pr, "percent"))
        pc = 0;
    if (json_is_integer(eta_v)) {
        fmt_dur(eta, sizeof eta, json_integer_value(eta_v));
    } else if (pc > 0 && pc < 100) {
        if (!w->started) {
            w->started = now;
            w->first_pc = pc;
        } else if (pc > w->first_pc) {
            double rate = (pc - w->first_pc) / (double)(now - w->started); /* % per ms */
            fmt_dur(eta, sizeof eta, (int64_t)((100 - pc) / rate));
        }
    }
    fill = (int)(pc * 30 / 100);
    fill = fill < 0 ? 0 : fill > 30 ? 30 : fill;
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, '.', (size_t)(30 - fill));
    bar[30] = '\0';
    if (w->tty) {
        fprintf(stderr, "\r\033[K%s [%s] %5.1f%%  %s%s%s%s", w->id, bar, pc, state,
                stage ? "  " : "", stage ? stage : "", eta[0] ? "  ETA " : "");
        fprintf(stderr, "%s", eta);
        w->drawn = 1;
    } else {
        fprintf(stderr, "%s %s %.1f%%%s%s%s%s\n", w->id, state, pc, stage ? " " : "",
                stage ? stage : "", eta[0] ? " eta " : "", eta);
    }
}

static int wait_final(waiting *w, const char *state)
{
    if (w->drawn)
        fputc('\n', stderr);
    w->drawn = 0;
    if (!strcmp(state, "completed"))
        w->final = 1; /* + 1: 0 means "not yet" */
    else
        w->final = JOBQ_CLI_EXIT_ERROR + 1;
    return 1;
}

/* The job as it is now (the stream is open, so nothing after this read is missed). */
static int wait_open(void *ud)
{
    waiting *w = ud;
    struct jobq_cli_path p;
    json_t *job = NULL;
    const char *state;
    int rc;

    jobq_cli_path_init(&p, "/v1/jobs/", w->id, "");
    if (!p.s)
        return 1;
    rc = jobq_client_request(w->cli->client, "GET", p.s, NULL, NULL, &job);
    free(p.s);
    if (rc) {
        jobq_cli_fail(w->cli->client);
        json_decref(job);
        w->final = JOBQ_CLI_EXIT_ERROR + 1;
        return 1;
    }
    json_decref(w->last);
    w->last = job;
    state = json_string_value(json_object_get(job, "state"));
    if (state && is_final(state))
        return wait_final(w, state);
    draw(w, state ? state : "?", json_object_get(job, "progress"));
    return 0;
}

static int wait_event(void *ud, const char *json)
{
    waiting *w = ud;
    json_t *ev = json_loads(json, 0, NULL);
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *state = json_string_value(json_object_get(ev, "state"));
    int rc = 0;

    if (!type) {
    } else if (!strcmp(type, "overflow") || !strcmp(type, "gap")) {
        rc = wait_open(w); /* re-read the job: something may be missed */
    } else if (state && is_final(state)) {
        rc = wait_final(w, state);
    } else if (!strcmp(type, "job.progress")) {
        draw(w, state ? state : "active", json_object_get(ev, "progress"));
    } else if (state) {
        draw(w, state, json_object_get(w->last, "progress"));
    }
    json_decref(ev);
    return rc || interrupted;
}

int jobq_cli_wait(const struct jobq_cli *cli, int argc, char **argv)
{
    struct jobq_cli_path p;
    waiting w = {0};
    stream s = {0};
    int rc;

    rc = jobq_cli_only_help("wait", argc, argv);
    if (rc >= 0)
        return rc;
    if (optind + 1 != argc)
        return jobq_cli_usage("wait", "needs exactly one job ID");
    w.cli = cli;
    w.id = argv[optind];
    w.tty = isatty(2);
    jobq_cli_path_init(&p, "/v1/events", NULL, "");
    jobq_cli_path_query(&p, "job", w.id);
    if (!p.s)
        return jobq_cli_out_of_memory();
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    s.cli = cli;
    s.on_event = wait_event;
    s.on_open = wait_open;
    s.ud = &w;
    while (!w.final && !interrupted) {
        rc = stream_run(&s, p.s);
        if (rc)
            break;
        if (!w.final && !interrupted)
            sleep(1); /* the stream dropped: open it again and re-read the job */
    }
    stream_clear(&s);
    free(p.s);
    if (w.final == 1) { /* completed: the job's result on stdout */
        json_t *job = NULL;
        jobq_cli_path_init(&p, "/v1/jobs/", w.id, "");
        if (p.s && jobq_client_request(cli->client, "GET", p.s, NULL, NULL, &job) == 0) {
            json_decref(w.last);
            w.last = job;
        }
        free(p.s);
        jobq_cli_print(w.last);
    } else if (w.final) {
        jobq_cli_print(w.last);
    }
    json_decref(w.last);
    if (rc)
        return rc;
    if (interrupted)
        return JOBQ_CLI_EXIT_ERROR;
    return w.final - 1;
}

/* ---------------------------------------------------------------- jobq top */

#define TOP_QUEUES 256

typedef struct rates {
    pthread_mutex_t mu;
    char *names[TOP_QUEUES];
    int64_t created[TOP_QUEUES], completed[TOP_QUEUES], failed[TOP_QUEUES];
    size_t n;
    int done; /* the stream thread stopped */
} rates;

static size_t slot(rates *r, const char *q)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->names[i], q))
            return i;
    if (r->n == TOP_QUEUES)
        return TOP_QUEUES;
    r->names[r->n] = strdup(q);
    return r->names[r->n] ? r->n++ : TOP_QUEUES;
}

static int top_event(void *ud, const char *json)
{
    rates *r = ud;
    json_t *ev = json_loads(json, 0, NULL);
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *q = json_string_value(json_object_get(ev, "queue"));
    size_t i;

    if (type && q) {
        pthread_mutex_lock(&r->mu);
        i = slot(r, q);
        if (i < TOP_QUEUES) {
            if (!strcmp(type, "job.created"))
                r->created[i]++;
            else if (!strcmp(type, "job.completed"))
                r->completed[i]++;
            else if (!strcmp(type, "job.failed"))
                r->failed[i]++;
        }
        pthread_mutex_unlock(&r->mu);
    }
    json_decref(ev);
    return interrupted;
}

typedef struct top_thread {
    stream s;
    rates *r;
} top_thread;

static void *top_stream(void *ud)
{
    top_thread *t = ud;

    while (!interrupted) {
        if (stream_run(&t->s, "/v1/events?types=job.created,job.completed,job.failed"))
            break;
        if (!interrupted)
            sleep(1);
    }
    pthread_mutex_lock(&t->r->mu);
    t->r->done = 1;
    pthread_mutex_unlock(&t->r->mu);
    return NULL;
}

static int64_t count_of(json_t *qs, const char *state)
{
    return json_integer_value(json_object_get(json_object_get(qs, "counts"), state));
}

/* One table: the counts of /v1/stats and the rates the stream saw since the last one. */
static int top_draw(const struct jobq_cli *cli, rates *r, int64_t prev[][3], double secs,
                    int tty)
{
    json_t *st = NULL, *qs, *q;
    const char *name;
    int rc = jobq_client_request(cli->client, "GET", "/v1/stats", NULL, NULL, &st);

    if (rc)
        return jobq_cli_fail(cli->client);
    qs = json_object_get(st, "queues");
    if (tty)
        fputs("\033[H\033[2J", stdout);
    printf("%-24s %-9s %8s %8s %8s %10s %8s %9s %9s %9s\n", "QUEUE", "STATUS", "WAITING",
           "ACTIVE", "DELAYED", "COMPLETED", "FAILED", "ENQ/s", "DONE/s", "FAIL/s");
    pthread_mutex_lock(&r->mu);
    json_object_foreach(qs, name, q)
    {
        size_t i = slot(r, name);
        double enq = 0, done = 0, fail = 0;
        if (i < TOP_QUEUES && secs > 0) {
            enq = (double)(r->created[i] - prev[i][0]) / secs;
            done = (double)(r->completed[i] - prev[i][1]) / secs;
            fail = (double)(r->failed[i] - prev[i][2]) / secs;
        }
        printf("%-24.24s %-9.9s %8" PRId64 " %8" PRId64 " %8" PRId64 " %10" PRId64 " %8" PRId64
               " %9.1f %9.1f %9.1f\n",
               name, json_string_value(json_object_get(q, "status")) ?: "?",
               count_of(q, "waiting"), count_of(q, "active"),
               count_of(q, "scheduled") + count_of(q, "retrying"), count_of(q, "completed"),
               count_of(q, "failed"), enq, done, fail);
    }
    for (size_t i = 0; i < r->n; i++) {
        prev[i][0] = r->created[i];
        prev[i][1] = r->completed[i];
        prev[i][2] = r->failed[i];
    }
    pthread_mutex_unlock(&r->mu);
    fflush(stdout);
    json_decref(st);
    return 0;
}

int jobq_cli_top(const struct jobq_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"interval", required_argument, NULL, 'i'},
                                         {"iterations", required_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    static int64_t prev[TOP_QUEUES][3];
    rates r = {.mu = PTHREAD_MUTEX_INITIALIZER};
    top_thread t = {0};
    pthread_t th;
    int64_t interval = 2000, iterations = 0, v, last;
    int ch, rc = 0, tty = isatty(1);

    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case 'i':
            if (jobq_cli_parse_int(optarg, 100, 3600000, &v))
                return jobq_cli_usage("top", "--interval needs ms from 100 to 3600000");
            interval = v;
            break;
        case 'n':
            if (jobq_cli_parse_int(optarg, 1, INT32_MAX, &v))
                return jobq_cli_usage("top", "--iterations needs a number >= 1");
            iterations = v;
            break;
        case 'h':
            return jobq_cli_help("top");
        default:
            return jobq_cli_bad_option("top", argv, ch);
        }
    }
    if (optind < argc)
        return jobq_cli_usage("top", "unexpected argument '%s'", argv[optind]);
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    t.s.cli = cli;
    t.s.on_event = top_event;
    t.s.ud = &r;
    t.r = &r;
    if (pthread_create(&th, NULL, top_stream, &t) != 0)
        return jobq_cli_out_of_memory();
    last = jobq_cli_now_ms();
    for (int64_t it = 0; !interrupted; it++) {
        int64_t now = jobq_cli_now_ms();
        rc = top_draw(cli, &r, prev, (double)(now - last) / 1000.0, tty);
        last = now;
        if (rc || (iterations && it + 1 >= iterations))
            break;
        for (int64_t slept = 0; slept < interval && !interrupted; slept += 100)
            usleep(100000);
    }
    interrupted = 1; /* the stream's progress callback ends it within a second */
    pthread_join(th, NULL);
    stream_clear(&t.s);
    for (size_t i = 0; i < r.n; i++)
        free(r.names[i]);
    return rc;
}
