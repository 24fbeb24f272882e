/*
 * jobs.c — the job commands of `jobq`: add, get, list, cancel, retry, delete, history, logs,
 * dead, stats, workers.
 *
 * Each is one request on /v1/jobs, /v1/dead-letter, /v1/stats or /v1/workers; add turns its
 * options into the enqueue body's top-level fields and its JSON argument into `data`.
 *
 * What it never does: check option values the server checks (priorities, ranges, names).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* Reads all of stdin (for `add QUEUE -`). Returns a new string or NULL. */
static char *read_stdin(void)
{
    size_t len = 0, cap = 0, n;
    char *buf = NULL, *t;

    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 65536;
            t = realloc(buf, cap);
            if (!t) {
                free(buf);
                return NULL;
            }
            buf = t;
        }
        n = fread(buf + len, 1, cap - len - 1, stdin);
        len += n;
        if (n == 0)
            break;
    }
    buf[len] = '\0';
    return buf;
}

/* `--tag K=V` into obj[K] = V. */
static int add_tag(const char *cmd, json_t *obj, char *kv)
{
    char *eq = strchr(kv, '=');

    if (!eq || eq == kv)
        return jobq_cli_usage(cmd, "--tag needs KEY=VALUE, not '%s'", kv);
    *eq = '\0';
    if (json_object_set_new(obj, kv, json_string(eq + 1)) < 0)
        return jobq_cli_out_of_memory();
    return 0;
}

int jobq_cli_add(const struct jobq_cli *cli, int argc, char **argv)
{
    enum {
        O_PRIO = 256,
        O_DELAY,
        O_ATTEMPTS,
        O_TIMEOUT,
        O_LEASE,
        O_GROUP,
        O_PROJECT,
        O_NAME,
        O_ID,
        O_TIER,
        O_TAG,
        O_OPTIONS,
        O_DEPENDS,
        O_REVIEW,
        O_UNIQUE,
        O_CACHE
    };
    static const struct option opts[] = {{"priority", required_argument, NULL, O_PRIO},
                                         {"delay", required_argument, NULL, O_DELAY},
                                         {"attempts", required_argument, NULL, O_ATTEMPTS},
                                         {"timeout", required_argument, NULL, O_TIMEOUT},
                                         {"lease-ms", required_argument, NULL, O_LEASE},
                                         {"group", required_argument, NULL, O_GROUP},
                                         {"project", required_argument, NULL, O_PROJECT},
                                         {"name", required_argument, NULL, O_NAME},
                                         {"id", required_argument, NULL, O_ID},
                                         {"tier", required_argument, NULL, O_TIER},
                                         {"tag", required_argument, NULL, O_TAG},
                                         {"options", required_argument, NULL, O_OPTIONS},
                                         {"depends-on", required_argument, NULL, O_DEPENDS},
                                         {"review", no_argument, NULL, O_REVIEW},
                                         {"unique-key", required_argument, NULL, O_UNIQUE},
                                         {"cache", required_argument, NULL, O_CACHE},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    static const struct {
        int opt;
        const char *key;
    } strings[] = {{O_GROUP, "group"},
                   {O_PROJECT, "project"},
                   {O_NAME, "name"},
                   {O_ID, "id"},
                   {O_TIER, "tier"}};
    const char *cmd = "add";
    json_t *body = json_object(), *tags = NULL, *data;
    json_error_t jerr;
    char *text = NULL;
    int ch, rc = 0;

    if (!body)
        return jobq_cli_out_of_memory();
    optind = 0;
    opterr = 0;
    while (rc == 0 && (ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case O_PRIO:
            if (jobq_cli_set_int_or_string(body, "priority", optarg) < 0)
                rc = jobq_cli_out_of_memory();
            break;
        case O_DELAY:
            rc = jobq_cli_set_int(cmd, body, "delay_ms", "--delay", optarg, 0);
            break;
        case O_ATTEMPTS:
            rc = jobq_cli_set_int(cmd, body, "max_attempts", "--attempts", optarg, 1);
            break;
        case O_TIMEOUT:
            rc = jobq_cli_set_int(cmd, body, "timeout_ms", "--timeout", optarg, 1);
            break;
        case O_LEASE:
            rc = jobq_cli_set_int(cmd, body, "lease_ms", "--lease-ms", optarg, 1);
            break;
        case O_TAG:
            if (!tags) {
                tags = json_object();
                if (json_object_set_new(body, "tags", tags) < 0) {
                    rc = jobq_cli_out_of_memory();
                    break;
                }
            }
            rc = add_tag(cmd, tags, optarg);
            break;
        case O_OPTIONS:
            rc = jobq_cli_merge_json(cmd, body, "--options", optarg);
            break;
        case O_DEPENDS: {
            json_t *deps = json_object_get(body, "depends_on");
            if (!deps) {
                deps = json_array();
                json_object_set_new(body, "depends_on", deps);
            }
            json_array_append_new(deps, json_string(optarg));
            break;
        }
        case O_REVIEW:
            json_object_set_new(body, "review", json_true());
            break;
        case O_UNIQUE:
            json_object_set_new(body, "unique_key", json_string(optarg));
            break;
        case O_CACHE: {
            /* KEY or KEY/TTL_MS: the key may hold slashes, the ttl is after the last one */
            const char *slash = strrchr(optarg, '/');
            int64_t ttl;
            json_t *c = json_object();
            if (slash && jobq_cli_parse_int(slash + 1, 0, INT64_MAX, &ttl) == 0) {
                json_object_set_new(c, "key", json_stringn(optarg, (size_t)(slash - optarg)));
                json_object_set_new(c, "ttl_ms", json_integer(ttl));
            } else {
                json_object_set_new(c, "key", json_string(optarg));
            }
            json_object_set_new(body, "cache", c);
            break;
        }
        case 'h':
            json_decref(body);
            return jobq_cli_help("add");
        case O_GROUP:
        case O_PROJECT:
        case O_NAME:
        case O_ID:
        case O_TIER:
            for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
                if (strings[i].opt == ch &&
                    json_object_set_new(body, strings[i].key, json_string(optarg)) < 0)
                    rc = jobq_cli_out_of_memory();
            break;
        default:
            rc = jobq_cli_bad_option(cmd, argv, ch);
        }
    }
    if (rc)
        goto out_body;
    if (argc - optind != 2) {
        rc = jobq_cli_usage(cmd, "add needs QUEUE and JSON data");
        goto out_body;
    }
    if (strcmp(argv[optind + 1], "-") == 0) {
        text = read_stdin();
        if (!text) {
            rc = jobq_cli_out_of_memory();
            goto out_body;
        }
    }
    data = json_loads(text ? text : argv[optind + 1], JSON_DECODE_ANY, &jerr);
    if (!data) {
        rc = jobq_cli_usage(cmd, "the job data is not JSON: %s (line %d, column %d)", jerr.text,
                            jerr.line, jerr.column);
        goto out_text;
    }
    if (json_object_set_new(body, "data", data) < 0) {
        rc = jobq_cli_out_of_memory();
        goto out_text;
    }
    rc = jobq_cli_call(cli, "POST", "/v1/queues/", argv[optind], "/jobs", json_incref(body));

out_text:
    free(text);
out_body:
    json_decref(body);
    return rc;
}

/* Commands of the shape `jobq CMD ID`. */
static int job_verb(const struct jobq_cli *cli, int argc, char **argv, const char *method,
                    const char *suffix)
{
    char cmd[32];
    int rc;

    snprintf(cmd, sizeof(cmd), "%s", argv[0]);
    rc = jobq_cli_only_help(argv[0], argc, argv);
    if (rc >= 0)
        return rc;
    if (argc - optind != 1)
        return jobq_cli_usage(cmd, "%s needs exactly one job id", argv[0]);
    return jobq_cli_call(cli, method, "/v1/jobs/", argv[optind], suffix, NULL);
}

int jobq_cli_get(const struct jobq_cli *cli, int argc, char **argv)
{
    return job_verb(cli, argc, argv, "GET", "");
}

int jobq_cli_cancel(const struct jobq_cli *cli, int argc, char **argv)
{
    return job_verb(cli, argc, argv, "POST", "/cancel");
}

int jobq_cli_retry(const struct jobq_cli *cli, int argc, char **argv)
{
    return job_verb(cli, argc, argv, "POST", "/retry");
}

int jobq_cli_delete(const struct jobq_cli *cli, int argc, char **argv)
{
    return job_verb(cli, argc, argv, "DELETE", "");
}

int jobq_cli_history(const struct jobq_cli *cli, int argc, char **argv)
{
    return job_verb(cli, argc, argv, "GET", "/history");
}

/* `list` and `dead`: filters as query parameters. */
static int list_like(const struct jobq_cli *cli, int argc, char **argv, const char *base)
{
    enum { O_QUEUE = 256, O_STATE, O_LIMIT, O_GROUP, O_PROJECT, O_TAG, O_CURSOR };
    static const struct option opts[] = {{"queue", required_argument, NULL, O_QUEUE},
                                         {"state", required_argument, NULL, O_STATE},
                                         {"limit", required_argument, NULL, O_LIMIT},
                                         {"group", required_argument, NULL, O_GROUP},
                                         {"project", required_argument, NULL, O_PROJECT},
                                         {"tag", required_argument, NULL, O_TAG},
                                         {"cursor", required_argument, NULL, O_CURSOR},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    char cmd[32], *eq, *key;
    struct jobq_cli_path p;
    int64_t n;
    int ch, rc;

    snprintf(cmd, sizeof(cmd), "%s", argv[0]);
    jobq_cli_path_init(&p, base, NULL, "");
    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case O_QUEUE:
            jobq_cli_path_query(&p, "queue", optarg);
            break;
        case O_STATE:
            jobq_cli_path_query(&p, "state", optarg);
            break;
        case O_LIMIT:
            if (jobq_cli_parse_int(optarg, 1, 1000, &n) < 0) {
                free(p.s);
                return jobq_cli_usage(cmd, "--limit needs an integer 1..1000, not '%s'", optarg);
            }
            jobq_cli_path_query(&p, "limit", optarg);
            break;
        case O_GROUP:
            jobq_cli_path_query(&p, "group", optarg);
            break;
        case O_PROJECT:
            jobq_cli_path_query(&p, "project", optarg);
            break;
        case O_CURSOR:
            jobq_cli_path_query(&p, "cursor", optarg);
            break;
        case O_TAG:
            eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                free(p.s);
                return jobq_cli_usage(cmd, "--tag needs KEY=VALUE, not '%s'", optarg);
            }
            *eq = '\0';
            if (asprintf(&key, "tag.%s", optarg) < 0) {
                free(p.s);
                return jobq_cli_out_of_memory();
            }
            jobq_cli_path_query(&p, key, eq + 1); /* the key is plain [A-Za-z0-9_.-] in practice */
            free(key);
            break;
        case 'h':
            free(p.s);
            return jobq_cli_help(argv[0]);
        default:
            free(p.s);
            return jobq_cli_bad_option(cmd, argv, ch);
        }
    }
    if (optind < argc) {
        free(p.s);
        return jobq_cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    }
    if (!p.s)
        return jobq_cli_out_of_memory();
    rc = jobq_cli_request(cli, "GET", p.s, NULL);
    free(p.s);
    return rc;
}

int jobq_cli_list(const struct jobq_cli *cli, int argc, char **argv)
{
    return list_like(cli, argc, argv, "/v1/jobs");
}

int jobq_cli_dead(const struct jobq_cli *cli, int argc, char **argv)
{
    return list_like(cli, argc, argv, "/v1/dead-letter");
}

int jobq_cli_logs(const struct jobq_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"attempt", required_argument, NULL, 'a'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *attempt = NULL;
    struct jobq_cli_path p;
    int64_t n;
    int ch, rc;

    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (ch == 'a') {
            if (jobq_cli_parse_int(optarg, 0, INT32_MAX, &n) < 0)
                return jobq_cli_usage("logs", "--attempt needs an integer, not '%s'", optarg);
            attempt = optarg;
        } else if (ch == 'h') {
            return jobq_cli_help("logs");
        } else {
            return jobq_cli_bad_option("logs", argv, ch);
        }
    }
    if (argc - optind != 1)
        return jobq_cli_usage("logs", "logs needs exactly one job id");
    jobq_cli_path_init(&p, "/v1/jobs/", argv[optind], "/logs");
    jobq_cli_path_query(&p, "attempt", attempt);
    if (!p.s)
        return jobq_cli_out_of_memory();
    rc = jobq_cli_request(cli, "GET", p.s, NULL);
    free(p.s);
    return rc;
}

int jobq_cli_stats(const struct jobq_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"queue", required_argument, NULL, 'q'},
                                         {"series", required_argument, NULL, 's'},
                                         {"minutes", required_argument, NULL, 'm'},
                                         {"daily", no_argument, NULL, 'd'},
                                         {"days", required_argument, NULL, 'D'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *queue = NULL, *series = NULL, *minutes = NULL, *days = NULL;
    struct jobq_cli_path p;
    int daily = 0, ch, rc;
    int64_t n;

    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case 'q':
            queue = optarg;
            break;
        case 's':
            series = optarg;
            break;
        case 'm':
            if (jobq_cli_parse_int(optarg, 1, 1440, &n) < 0)
                return jobq_cli_usage("stats", "--minutes needs 1..1440, not '%s'", optarg);
            minutes = optarg;
            break;
        case 'd':
            daily = 1;
            break;
        case 'D':
            if (jobq_cli_parse_int(optarg, 1, 366, &n) < 0)
                return jobq_cli_usage("stats", "--days needs 1..366, not '%s'", optarg);
            days = optarg;
            daily = 1;
            break;
        case 'h':
            return jobq_cli_help("stats");
        default:
            return jobq_cli_bad_option("stats", argv, ch);
        }
    }
    if (optind < argc)
        return jobq_cli_usage("stats", "unexpected argument '%s'", argv[optind]);
    if (series && daily)
        return jobq_cli_usage("stats", "--series and --daily are two different views");
    if (minutes && !series)
        return jobq_cli_usage("stats", "--minutes goes with --series");
    if (!series && !daily) {
        if (queue)
            return jobq_cli_call(cli, "GET", "/v1/queues/", queue, "/stats", NULL);
        return jobq_cli_request(cli, "GET", "/v1/stats", NULL);
    }
    jobq_cli_path_init(&p, series ? "/v1/stats/series" : "/v1/stats/daily", NULL, "");
    jobq_cli_path_query(&p, "queue", queue);
    jobq_cli_path_query(&p, "metric", series);
    jobq_cli_path_query(&p, "minutes", minutes);
    jobq_cli_path_query(&p, "days", days);
    if (!p.s)
        return jobq_cli_out_of_memory();
    rc = jobq_cli_request(cli, "GET", p.s, NULL);
    free(p.s);
    return rc;
}

int jobq_cli_health(const struct jobq_cli *cli, int argc, char **argv)
{
    int rc = jobq_cli_only_help("health", argc, argv);

    if (rc >= 0)
        return rc;
    if (optind < argc)
        return jobq_cli_usage("health", "unexpected argument '%s'", argv[optind]);
    return jobq_cli_request(cli, "GET", "/v1/health", NULL);
}

int jobq_cli_workers(const struct jobq_cli *cli, int argc, char **argv)
{
    int rc = jobq_cli_only_help("workers", argc, argv);

    if (rc >= 0)
        return rc;
    if (optind < argc)
        return jobq_cli_usage("workers", "unexpected argument '%s'", argv[optind]);
    return jobq_cli_request(cli, "GET", "/v1/workers", NULL);
}
