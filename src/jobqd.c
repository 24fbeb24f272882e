/*
 * jobqd.c — the server's main: flags → loop → serve → clean exit on SIGTERM/SIGINT.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: jobqd [--listen HOST:PORT] [--data DIR] [--strict-queues] [--max-body BYTES]\n"
            "             [--webhook-backoff-ms MS] [--webhook-progress-ms MS]\n"
            "             [--webhook-outbox-max N]\n"
            "             [--event-ring N] [--event-buffer BYTES] [--idempotency-ttl-ms MS]\n"
            "             [--idempotency-max-bytes BYTES]\n"
            "             [--config FILE] [--max-active-jobs N] [--tier NAME=LIMIT[/PRIORITY]]...\n"
            "             [--stats-flush-ms MS] [--health-interval-ms MS]\n"
            "  --listen HOST:PORT  address to serve HTTP on (default 127.0.0.1:7117;\n"
            "                      port 0 picks a free one)\n"
            "  --data DIR          data directory (default ./jobq-data)\n"
            "  --strict-queues     enqueue to an unknown queue is 404 instead of creating it\n"
            "  --max-body BYTES    request body limit (default 1048576)\n"
            "  --webhook-backoff-ms MS   first webhook retry after MS, then 4x longer each\n"
            "                      (default 30000: 30 s, 2 min, 8 min; tests use less)\n"
            "  --webhook-progress-ms MS  job.progress sent to a hook at most once per MS\n"
            "                      per job (default 30000)\n"
            "  --webhook-outbox-max N  unfinished webhook deliveries kept; past it new ones\n"
            "                      are dropped and counted (default 10000)\n"
            "  --event-ring N      events kept for subscribers that resume (default 10000)\n"
            "  --event-buffer BYTES  unsent events a subscriber may fall behind by before it\n"
            "                      is dropped (default 8388608)\n"
            "  --idempotency-ttl-ms MS  how long answers to POSTs with an Idempotency-Key are\n"
            "                      kept for replay (default 86400000, 24 h)\n"
            "  --idempotency-max-bytes BYTES  memory those answers may take; past it the\n"
            "                      oldest are forgotten early (default 67108864, 64 MiB)\n"
            "  --config FILE       settings file (JSON: max_active_jobs, tiers, queues;\n"
            "                      see docs/limits.md)\n"
            "  --max-active-jobs N most jobs active at once across all queues (0 = no cap)\n"
            "  --tier NAME=LIMIT[/PRIORITY]  a tier's group limit and default priority,\n"
            "                      e.g. pro=5/high (repeatable; over the file's)\n"
            "  --stats-flush-ms MS how often today's daily stats are saved (default 300000)\n"
            "  --health-interval-ms MS\n"
            "                      how often health is re-evaluated for health.changed\n"
            "                      (default 5000)\n"
            "Precedence: shipped defaults < --config file < flags < PATCH /v1/config.\n");
}

/* Splits "host:port" / "[v6]:port" / ":port" / "port". 0 or -1. */
static int parse_listen(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(s, ':');
    char *end;
    long p;

    if (!colon) {
        snprintf(host, hostlen, "127.0.0.1");
        colon = s - 1;
    } else if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close + 1 != colon || (size_t)(close - s - 1) >= hostlen)
            return -1;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
    } else {
        if ((size_t)(colon - s) >= hostlen)
            return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        if (!host[0])
            snprintf(host, hostlen, "127.0.0.1");
    }
    p = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

static jobq_app *app;

static void on_signal(uv_signal_t *h, int sig)
{
    (void)sig;
    fprintf(stderr, "jobqd: stopping\n");
    uv_close((uv_handle_t *)h, NULL);
    jobq_app_stop(app);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"data", required_argument, NULL, 'd'},
        {"strict-queues", no_argument, NULL, 's'},
        {"max-body", required_argument, NULL, 'b'},
        {"webhook-backoff-ms", required_argument, NULL, 'W'},
        {"webhook-progress-ms", required_argument, NULL, 'P'},
        {"webhook-outbox-max", required_argument, NULL, 'O'},
        {"event-ring", required_argument, NULL, 'R'},
        {"event-buffer", required_argument, NULL, 'B'},
        {"idempotency-ttl-ms", required_argument, NULL, 'I'},
        {"idempotency-max-bytes", required_argument, NULL, 'i'},
        {"config", required_argument, NULL, 'c'},
        {"max-active-jobs", required_argument, NULL, 'm'},
        {"tier", required_argument, NULL, 't'},
        {"stats-flush-ms", required_argument, NULL, 'F'},
        {"health-interval-ms", required_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    jobq_settings *settings = jobq_settings_new();
    const char *config_file = NULL;
    char *err = NULL;
    jobq_app_config cfg = {0};
    char host[256] = "127.0.0.1";
    uv_loop_t *loop = uv_default_loop();
    uv_signal_t sigterm, sigint;
    int c, code = 0;

    cfg.listen_port = 7117;
    cfg.data_dir = "./jobq-data";
    while ((c = getopt_long(argc, argv, "l:d:sb:R:B:I:F:H:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_file = optarg;
            break;
        case 'm':
            if (jobq_settings_flag_max_active(settings, optarg, &err))
                goto bad_setting;
            break;
        case 't':
            if (jobq_settings_flag_tier(settings, optarg, &err))
                goto bad_setting;
            break;
        case 'l':
            if (parse_listen(optarg, host, sizeof host, &cfg.listen_port)) {
                fprintf(stderr, "jobqd: bad --listen %s (want HOST:PORT)\n", optarg);
                return 1;
            }
            break;
        case 'd':
            cfg.data_dir = optarg;
            break;
        case 's':
            cfg.strict_queues = 1;
            break;
        case 'b':
            cfg.max_body = strtoul(optarg, NULL, 10);
            if (cfg.max_body < 1024) {
                fprintf(stderr, "jobqd: --max-body must be at least 1024\n");
                return 1;
            }
            break;
        case 'O': {
            char *end;
            long long n = strtoll(optarg, &end, 10);
            if (!*optarg || *end || n < 1 || n > 10000000) {
                fprintf(stderr, "jobqd: --webhook-outbox-max must be 1 to 10000000\n");
                return 1;
            }
            cfg.webhook_outbox_max = (size_t)n;
            break;
        }
        case 'W':
        case 'P': {
            char *end;
            long long ms = strtoll(optarg, &end, 10);
            if (!*optarg || *end || ms < 1 || ms > INT64_C(86400000)) {
                fprintf(stderr, "jobqd: --webhook-%s-ms must be 1 to 86400000\n",
                        c == 'W' ? "backoff" : "progress");
                return 1;
            }
            if (c == 'W')
                cfg.webhook_backoff_ms = ms;
            else
                cfg.webhook_progress_ms = ms;
            break;
        }
        case 'R':
            cfg.event_ring = strtoul(optarg, NULL, 10);
            if (cfg.event_ring < 1 || cfg.event_ring > 100000000) {
                fprintf(stderr, "jobqd: --event-ring must be 1..100000000\n");
                return 1;
            }
            break;
        case 'B':
            cfg.event_buffer = strtoul(optarg, NULL, 10);
            if (cfg.event_buffer < 4096) {
                fprintf(stderr, "jobqd: --event-buffer must be at least 4096\n");
                return 1;
            }
            break;
        case 'I': {
            char *end;
            long long ms = strtoll(optarg, &end, 10);
            if (!*optarg || *end || ms < 1 || ms > INT64_C(10) * 366 * 86400000) {
                fprintf(stderr, "jobqd: --idempotency-ttl-ms must be 1 ms to 10 years\n");
                return 1;
            }
            cfg.idempotency_ttl_ms = ms;
            break;
        }
        case 'i': {
            char *end;
            long long n = strtoll(optarg, &end, 10);
            if (!*optarg || *end || n < 4096 || n > (INT64_C(1) << 40)) {
                fprintf(stderr, "jobqd: --idempotency-max-bytes must be 4096 to 2^40\n");
                return 1;
            }
            cfg.idempotency_max_bytes = (size_t)n;
            break;
        }
        case 'F':
        case 'H': {
            char *end;
            long long ms = strtoll(optarg, &end, 10);
            if (!*optarg || *end || ms < 100 || ms > 86400000) {
                fprintf(stderr, "jobqd: --%s must be from 100 to 86400000 (ms)\n",
                        c == 'F' ? "stats-flush-ms" : "health-interval-ms");
                return 1;
            }
            if (c == 'F')
                cfg.stats_flush_ms = ms;
            else
                cfg.health_interval_ms = ms;
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 1;
    }
    /* the file is a lower layer than the flags, whatever their order */
    if (config_file && jobq_settings_load_file(settings, config_file, &err))
        goto bad_setting;
    cfg.settings = settings;
    cfg.listen_host = host;
    /* a write past a file-size limit must fail (and be answered 503), not kill the server */
    signal(SIGXFSZ, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);

    app = jobq_app_new(loop, &cfg, &code);
    if (!app)
        return code ? code : 1;
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_unref((uv_handle_t *)&sigterm);
    uv_unref((uv_handle_t *)&sigint);
    uv_run(loop, UV_RUN_DEFAULT);
    if (!uv_is_closing((uv_handle_t *)&sigterm))
        uv_close((uv_handle_t *)&sigterm, NULL);
    if (!uv_is_closing((uv_handle_t *)&sigint))
        uv_close((uv_handle_t *)&sigint, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    code = jobq_app_exit_code(app);
    jobq_app_free(app);
    uv_loop_close(loop);
    fprintf(stderr, "jobqd: stopped\n");
    return code;
bad_setting:
    fprintf(stderr, "jobqd: %s\n", err);
    g_free(err);
    jobq_settings_free(settings);
    return 1;
}
