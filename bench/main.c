/*
 * main.c — jobq-bench: options, the event loop, the stall watchdog and the report.
 *
 *   jobq-bench --url URL --workload W [--jobs N] [--payload BYTES] [--queue NAME]
 *              [--conns K] [--batch B] [--park-ms MS] [--no-preload] [--stall-s S]
 *              [--sse N]
 *   jobq-bench --url URL --wait-ready [--t0-ns NS] [--stall-s S]
 *
 * Prints one JSON line on stdout and exits 0; everything else goes to stderr. The first
 * failed request (non-2xx, transport error, unexpected answer) is printed and the exit
 * status is 1; a run that gets no answer for --stall-s seconds fails the same way.
 */
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fputs("usage: jobq-bench --url http://HOST:PORT --workload "
          "w1-seq|w1-pipe|w1-bulk|w2|w2-single|w3\n"
          "                  [--jobs N] [--payload BYTES] [--queue NAME] [--conns K]\n"
          "                  [--batch B] [--park-ms MS] [--no-preload] [--stall-s S]\n"
          "                  [--sse N]\n"
          "       jobq-bench --url http://HOST:PORT --wait-ready [--t0-ns NS] [--stall-s S]\n"
          "Prints {\"workload\",\"jobs\",\"seconds\",\"jobs_per_s\",\"p50_us\",\"p99_us\"}; "
          "see bench/README.md.\n",
          f);
}

/* Parse "http://host:port[/...]" into b->addr and b->host. 0, or -1 after saying why. */
static int parse_url(struct bench *b, const char *url)
{
    char host[256], port[16] = "80";
    const char *p = url, *end, *colon;
    size_t n;
    struct addrinfo hints, *res = NULL;
    int rc;

    if (strncmp(p, "http://", 7) == 0) {
        p += 7;
    }
    end = p + strcspn(p, "/");
    if (*p == '[') { /* [v6]:port */
        const char *rb = memchr(p, ']', (size_t)(end - p));

        if (!rb) {
            goto bad;
        }
        n = (size_t)(rb - p - 1);
        if (n >= sizeof(host)) {
            goto bad;
        }
        memcpy(host, p + 1, n);
        host[n] = '\0';
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        n = (size_t)((colon ? colon : end) - p);
        if (n == 0 || n >= sizeof(host)) {
            goto bad;
        }
        memcpy(host, p, n);
        host[n] = '\0';
    }
    if (colon) {
        n = (size_t)(end - colon - 1);
        if (n == 0 || n >= sizeof(port)) {
            goto bad;
        }
        memcpy(port, colon + 1, n);
        port[n] = '\0';
    }
    snprintf(b->host, sizeof(b->host), "%.*s", (int)(end - p), p);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "jobq-bench: %s: %s\n", url, gai_strerror(rc));
        return -1;
    }
    memcpy(&b->addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
bad:
    fprintf(stderr, "jobq-bench: bad --url %s (want http://HOST:PORT)\n", url);
    return -1;
}

static int valid_queue(const char *q)
{
    size_t n = strlen(q);

    return n >= 1 && n <= 128 &&
           strspn(q, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789._-") == n;
}

/* {"p":"xxxx"} of `size` bytes (at least the 8 of {"p":""}); new. */
static char *make_data(int size, size_t *len)
{
    size_t fill = size > 8 ? (size_t)size - 8 : 0;
    char *s = malloc(fill + 9);

    if (!s) {
        return NULL;
    }
    memcpy(s, "{\"p\":\"", 6);
    memset(s + 6, 'x', fill);
    memcpy(s + 6 + fill, "\"}", 3);
    *len = fill + 8;
    return s;
}

void bench_sample(struct bench *b, uint64_t ns)
{
    if (b->nsamples == b->samples_cap) {
        size_t cap = b->samples_cap ? b->samples_cap * 2 : 4096;
        uint64_t *p = realloc(b->samples, cap * sizeof(*p));

        if (!p) {
            bench_fail(b, "out of memory recording samples");
            return;
        }
        b->samples = p;
        b->samples_cap = cap;
    }
    b->samples[b->nsamples++] = ns;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of the sorted samples, µs. */
static double percentile_us(const struct bench *b, double pct)
{
    size_t rank;

    if (!b->nsamples) {
        return 0;
    }
    rank = (size_t)(pct / 100.0 * (double)b->nsamples + 0.999999);
    if (rank < 1) {
        rank = 1;
    }
    if (rank > b->nsamples) {
        rank = b->nsamples;
    }
    return (double)b->samples[rank - 1] / 1e3;
}

/* List the requests still waiting for an answer on stderr: at most 5, then a count. */
static void print_waiting(struct bench *b)
{
    bench_conn *c;
    int n = 0;

    for (c = b->all_conns; c; c = bench_next_conn(c)) {
        if (bench_conn_busy(c) && n++ < 5) {
            fprintf(stderr, "  waiting: %s\n", bench_conn_describe(c));
        }
    }
    if (n > 5) {
        fprintf(stderr, "  waiting: ... %d more\n", n - 5);
    }
}

/* Every second: a progress line each 10 s, and give up after stall_s without an answer. */
static void on_watchdog(uv_timer_t *t)
{
    struct bench *b = t->data;

    b->tick_s++;
    if (b->answers != b->last_answers) {
        b->last_answers = b->answers;
        b->idle_s = 0;
    } else if (++b->idle_s >= b->stall_s) {
        fprintf(stderr, "jobq-bench: no answer for %d s\n", b->idle_s);
        print_waiting(b);
        bench_fail(b, "%s stalled after %ld of %ld jobs (%llu answers)", b->workload, b->done_jobs,
                   b->jobs, (unsigned long long)b->answers);
        return;
    }
    if (b->tick_s % 10 == 0) {
        fprintf(stderr, "jobq-bench: %s %d s: %ld of %ld jobs, %llu answers\n", b->workload,
                b->tick_s, b->done_jobs, b->jobs, (unsigned long long)b->answers);
    }
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

static double realtime_ms_since(uint64_t t0_ns)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return ((double)ts.tv_sec * 1e9 + (double)ts.tv_nsec - (double)t0_ns) / 1e6;
}

/* Status of GET path on a fresh blocking connection, or -1 when not reachable. */
static int probe(const struct bench *b, const char *path)
{
    char req[512], resp[64];
    struct timeval tv = {1, 0};
    size_t got = 0;
    int fd, n, status = -1;

    fd = socket(b->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (const struct sockaddr *)&b->addr, sizeof(b->addr)) < 0) {
        goto out;
    }
    n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path,
                 b->host);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        goto out;
    }
    while (got < 12) {
        ssize_t r = recv(fd, resp + got, sizeof(resp) - 1 - got, 0);

        if (r <= 0) {
            goto out;
        }
        got += (size_t)r;
    }
    resp[got] = '\0';
    if (strncmp(resp, "HTTP/1.", 7) == 0) {
        status = atoi(resp + 9);
    }
out:
    close(fd);
    return status;
}

int bench_wait_ready(const struct bench *b, uint64_t t0_ns, int timeout_s)
{
    static const char *const paths[] = {"/healthz", "/readyz"};
    double ms[2];
    int i, last = -1;

    if (!t0_ns) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        t0_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    }
    for (i = 0; i < 2; i++) {
        for (;;) {
            int st = probe(b, paths[i]);

            if (st >= 200 && st <= 299) {
                break;
            }
            if (st != last && st > 0) {
                fprintf(stderr, "jobq-bench: GET %s -> %d at %.0f ms\n", paths[i], st,
                        realtime_ms_since(t0_ns));
                last = st;
            }
            if (realtime_ms_since(t0_ns) > timeout_s * 1000.0) {
                fprintf(stderr, "jobq-bench: GET %s not 2xx after %d s (last status %d)\n",
                        paths[i], timeout_s, st);
                return -1;
            }
            usleep(1000);
        }
        ms[i] = realtime_ms_since(t0_ns);
    }
    printf("{\"healthz_ms\":%.1f,\"readyz_ms\":%.1f}\n", ms[0], ms[1]);
    return 0;
}

/* --sse: the subscribers are attached; the workload starts. */
static void start_after_sse(struct bench *b)
{
    if (bench_run_workload(b) < 0)
        bench_fail(b, "cannot start %s", b->workload);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},     {"workload", required_argument, NULL, 'w'},
        {"jobs", required_argument, NULL, 'n'},    {"payload", required_argument, NULL, 'p'},
        {"queue", required_argument, NULL, 'q'},   {"conns", required_argument, NULL, 'c'},
        {"batch", required_argument, NULL, 'b'},   {"park-ms", required_argument, NULL, 'k'},
        {"stall-s", required_argument, NULL, 's'}, {"no-preload", no_argument, NULL, 'P'},
        {"wait-ready", no_argument, NULL, 'R'},    {"t0-ns", required_argument, NULL, 't'},
        {"sse", required_argument, NULL, 'E'},     {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct bench b;
    const char *url = NULL;
    int opt, wait_ready = 0, rc = 1;
    unsigned long long t0_ns = 0;
    uv_loop_t loop;

    memset(&b, 0, sizeof(b));
    b.jobs = -1;
    b.payload = 200;
    b.stall_s = 60;
    b.park_ms = 2;
    b.preload = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'u':
            url = optarg;
            break;
        case 'w':
            b.workload = optarg;
            break;
        case 'n':
            b.jobs = atol(optarg);
            break;
        case 'p':
            b.payload = atoi(optarg);
            break;
        case 'q':
            snprintf(b.queue, sizeof(b.queue), "%s", optarg);
            break;
        case 'c':
            b.conns = atoi(optarg);
            break;
        case 'b':
            b.batch = atoi(optarg);
            break;
        case 'k':
            b.park_ms = atoi(optarg);
            break;
        case 's':
            b.stall_s = atoi(optarg);
            break;
        case 'P':
            b.preload = 0;
            break;
        case 'R':
            wait_ready = 1;
            break;
        case 'E':
            b.sse = atoi(optarg);
            break;
        case 't':
            t0_ns = strtoull(optarg, NULL, 10);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!url || (!b.workload && !wait_ready) || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (parse_url(&b, url) < 0) {
        return 2;
    }
    if (wait_ready) {
        return bench_wait_ready(&b, t0_ns, b.stall_s) < 0 ? 1 : 0;
    }
    if (b.jobs < 0) {
        b.jobs = strcmp(b.workload, "w3") == 0 ? 2000 : 100000;
    }
    if (b.payload < 0 || b.payload > 900000 || b.conns < 0 || b.conns > 10000 || b.batch < 0 ||
        b.batch > 10000 || b.park_ms < 0 || b.stall_s < 1 || b.sse < 0 || b.sse > 1000) {
        fputs("jobq-bench: an option is out of range\n", stderr);
        return 2;
    }
    if (!b.queue[0]) {
        snprintf(b.queue, sizeof(b.queue), "bench-%s-%ld", b.workload, (long)getpid());
    }
    if (!valid_queue(b.queue)) {
        fprintf(stderr, "jobq-bench: bad queue name %s ([A-Za-z0-9._-]{1,128})\n", b.queue);
        return 2;
    }
    b.data_json = make_data(b.payload, &b.data_len);
    if (!b.data_json || uv_loop_init(&loop) < 0) {
        fputs("jobq-bench: out of memory\n", stderr);
        return 1;
    }
    b.loop = &loop;
    uv_timer_init(&loop, &b.watchdog);
    b.watchdog.data = &b;
    uv_timer_start(&b.watchdog, on_watchdog, 1000, 1000);
    fprintf(stderr, "jobq-bench: %s, %ld jobs, payload %zu B, queue %s\n", b.workload, b.jobs,
            b.data_len, b.queue);
    if (b.sse ? bench_sse_start(&b, b.sse, start_after_sse) == 0 : bench_run_workload(&b) == 0) {
        uv_run(&loop, UV_RUN_DEFAULT);
        if (!b.failed && !b.finished) {
            bench_fail(&b, "internal: %s ran out of work after %ld of %ld jobs", b.workload,
                       b.done_jobs, b.jobs);
        }
    }
    if (b.finished && !b.failed) {
        double secs = (double)(b.t_end - b.t_start) / 1e9;

        qsort(b.samples, b.nsamples, sizeof(*b.samples), cmp_u64);
        printf("{\"workload\":\"%s\",\"jobs\":%ld,\"seconds\":%.3f,\"jobs_per_s\":%.0f,"
               "\"p50_us\":%.1f,\"p99_us\":%.1f",
               b.workload, b.done_jobs, secs, secs > 0 ? (double)b.done_jobs / secs : 0.0,
               percentile_us(&b, 50), percentile_us(&b, 99));
        if (b.sse)
            printf(",\"sse\":%d,\"sse_events\":%llu,\"sse_mb\":%.1f", b.sse,
                   (unsigned long long)bench_sse_events, (double)bench_sse_bytes / 1e6);
        printf("}\n");
        fflush(stdout);
        rc = 0;
    }
    if (b.reconnects) {
        fprintf(stderr,
                "jobq-bench: warning: %llu requests had to reopen a keep-alive connection "
                "the server had closed\n",
                (unsigned long long)b.reconnects);
    }
    bench_conn_free_all(&b);
    uv_walk(&loop, close_any, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        fputs("jobq-bench: warning: handles left open at exit\n", stderr);
    }
    bench_workload_fini();
    bench_sse_fini();
    free(b.samples);
    free(b.data_json);
    return rc;
}
