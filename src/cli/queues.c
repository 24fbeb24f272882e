/*
 * queues.c — `jobq queues` and `jobq queue create|update|get|pause|resume|drain|clear|delete`.
 *
 * Each subcommand is one request on /v1/queues; create and update turn their options into
 * the queue object's fields.
 *
 * What it never does: check option values the server checks (names, ranges of its own).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

int jobq_cli_queues(const struct jobq_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"type", required_argument, NULL, 't'},  {"status", required_argument, NULL, 's'},
        {"limit", required_argument, NULL, 'l'}, {"offset", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0}};
    const char *type = NULL, *status = NULL, *limit = NULL, *offset = NULL;
    struct jobq_cli_path p;
    int ch, rc;

    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case 't':
            type = optarg;
            break;
        case 's':
            status = optarg;
            break;
        case 'l':
            limit = optarg;
            break;
        case 'o':
            offset = optarg;
            break;
        case 'h':
            return jobq_cli_help("queues");
        default:
            return jobq_cli_bad_option("queues", argv, ch);
        }
    }
    if (optind < argc)
        return jobq_cli_usage("queues", "unexpected argument '%s'", argv[optind]);
    jobq_cli_path_init(&p, "/v1/queues", NULL, "");
    jobq_cli_path_query(&p, "type", type);
    jobq_cli_path_query(&p, "status", status);
    jobq_cli_path_query(&p, "limit", limit);
    jobq_cli_path_query(&p, "offset", offset);
    if (!p.s)
        return jobq_cli_out_of_memory();
    rc = jobq_cli_request(cli, "GET", p.s, NULL);
    free(p.s);
    return rc;
}

/* Options of `queue create` and `queue update`, into `body`. Returns 0 or an exit status. */
static int queue_options(int argc, char **argv, json_t *body, bool *want_help)
{
    enum {
        O_TYPE = 256,
        O_DESC,
        O_CONC,
        O_GCONC,
        O_MAXSIZE,
        O_STALLS,
        O_RATE,
        O_ATTEMPTS,
        O_TIMEOUT,
        O_LEASE,
        O_PRIO,
        O_STATUS,
        O_OPTIONS,
        O_FAIR,
        O_CB
    };
    static const struct option opts[] = {{"type", required_argument, NULL, O_TYPE},
                                         {"description", required_argument, NULL, O_DESC},
                                         {"concurrency", required_argument, NULL, O_CONC},
                                         {"group-concurrency", required_argument, NULL, O_GCONC},
                                         {"max-size", required_argument, NULL, O_MAXSIZE},
                                         {"max-stalls", required_argument, NULL, O_STALLS},
                                         {"rate-limit", required_argument, NULL, O_RATE},
                                         {"attempts", required_argument, NULL, O_ATTEMPTS},
                                         {"timeout", required_argument, NULL, O_TIMEOUT},
                                         {"lease-ms", required_argument, NULL, O_LEASE},
                                         {"priority", required_argument, NULL, O_PRIO},
                                         {"status", required_argument, NULL, O_STATUS},
                                         {"options", required_argument, NULL, O_OPTIONS},
                                         {"fairness", required_argument, NULL, O_FAIR},
                                         {"circuit-breaker", required_argument, NULL, O_CB},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *cmd = "queue";
    json_t *defaults = json_object_get(body, "defaults");
    int64_t max, per;
    char *slash;
    int ch, rc = 0;

    optind = 0;
    opterr = 0;
    while (rc == 0 && (ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case O_TYPE:
        case O_DESC:
        case O_STATUS:
            if (json_object_set_new(body,
                                    ch == O_TYPE   ? "type"
                                    : ch == O_DESC ? "description"
                                                   : "status",
                                    json_string(optarg)) < 0)
                rc = jobq_cli_out_of_memory();
            break;
        case O_CONC:
            rc = jobq_cli_set_int(cmd, body, "concurrency", "--concurrency", optarg, 0);
            break;
        case O_GCONC:
            rc = jobq_cli_set_int(cmd, body, "group_concurrency", "--group-concurrency", optarg, 0);
            break;
        case O_MAXSIZE:
            rc = jobq_cli_set_int(cmd, body, "max_size", "--max-size", optarg, 0);
            break;
        case O_STALLS:
            rc = jobq_cli_set_int(cmd, body, "max_stalls", "--max-stalls", optarg, 0);
            break;
        case O_RATE:
            slash = strchr(optarg, '/');
            if (!slash)
                return jobq_cli_usage(cmd, "--rate-limit needs MAX/PER_MS, e.g. 100/60000");
            *slash = '\0';
            if (jobq_cli_parse_int(optarg, 1, INT32_MAX, &max) < 0 ||
                jobq_cli_parse_int(slash + 1, 1, INT64_MAX, &per) < 0)
                return jobq_cli_usage(cmd, "--rate-limit needs MAX/PER_MS, e.g. 100/60000");
            if (json_object_set_new(
                    body, "rate_limit",
                    json_pack("{sIsI}", "max", (json_int_t)max, "per_ms", (json_int_t)per)) < 0)
                rc = jobq_cli_out_of_memory();
            break;
        case O_FAIR:
            if (json_object_set_new(body, "fairness", json_string(optarg)) < 0)
                rc = jobq_cli_out_of_memory();
            break;
        case O_CB:
            slash = strchr(optarg, '/');
            if (!slash)
                return jobq_cli_usage(cmd, "--circuit-breaker needs FAILURES/COOLDOWN_MS");
            *slash = '\0';
            if (jobq_cli_parse_int(optarg, 1, INT32_MAX, &max) < 0 ||
                jobq_cli_parse_int(slash + 1, 0, INT64_MAX, &per) < 0)
                return jobq_cli_usage(cmd, "--circuit-breaker needs FAILURES/COOLDOWN_MS");
            if (json_object_set_new(body, "circuit_breaker",
                                    json_pack("{sIsI}", "failures", (json_int_t)max,
                                              "cooldown_ms", (json_int_t)per)) < 0)
                rc = jobq_cli_out_of_memory();
            break;
        case O_ATTEMPTS:
        case O_TIMEOUT:
        case O_LEASE:
        case O_PRIO:
            /* looked up each time: --options may have replaced the object */
            defaults = json_object_get(body, "defaults");
            if (!json_is_object(defaults)) {
                defaults = json_object();
                if (json_object_set_new(body, "defaults", defaults) < 0)
                    return jobq_cli_out_of_memory();
            }
            if (ch == O_ATTEMPTS)
                rc = jobq_cli_set_int(cmd, defaults, "max_attempts", "--attempts", optarg, 1);
            else if (ch == O_TIMEOUT)
                rc = jobq_cli_set_int(cmd, defaults, "timeout_ms", "--timeout", optarg, 1);
            else if (ch == O_LEASE)
                rc = jobq_cli_set_int(cmd, defaults, "lease_ms", "--lease-ms", optarg, 1);
            else if (jobq_cli_set_int_or_string(defaults, "priority", optarg) < 0)
                rc = jobq_cli_out_of_memory();
            break;
        case O_OPTIONS:
            rc = jobq_cli_merge_json(cmd, body, "--options", optarg);
            break;
        case 'h':
            *want_help = true;
            return 0;
        default:
            return jobq_cli_bad_option(cmd, argv, ch);
        }
    }
    return rc;
}

int jobq_cli_queue(const struct jobq_cli *cli, int argc, char **argv)
{
    static const char *const posts[] = {"pause", "resume", "drain", "clear", NULL};
    const char *sub, *name;
    bool force = false;
    json_t *body;
    int rc;

    if ((rc = jobq_cli_subcommand("queue", "missing subcommand", argc, argv)) >= 0)
        return rc;
    sub = argv[1];
    argc--, argv++; /* getopt sees the subcommand as argv[0] */

    if (strcmp(sub, "create") == 0 || strcmp(sub, "update") == 0) {
        rc = jobq_cli_body_and_name("queue", sub, "queue name", argc, argv, queue_options, &body,
                                    &name);
        if (rc >= 0)
            return rc;
        if (strcmp(sub, "update") == 0)
            return jobq_cli_call(cli, "PATCH", "/v1/queues/", name, "", body);
        if (json_object_set_new(body, "name", json_string(name)) < 0) {
            json_decref(body);
            return jobq_cli_out_of_memory();
        }
        return jobq_cli_request(cli, "POST", "/v1/queues", body);
    }

    if (strcmp(sub, "delete") == 0) {
        static const struct option opts[] = {{"force", no_argument, NULL, 'f'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
        int ch;

        optind = 0;
        opterr = 0;
        while ((ch = getopt_long(argc, argv, ":fh", opts, NULL)) != -1) {
            if (ch == 'f')
                force = true;
            else if (ch == 'h')
                return jobq_cli_help("queue");
            else
                return jobq_cli_bad_option("queue", argv, ch);
        }
        if (argc - optind != 1)
            return jobq_cli_usage("queue", "queue delete needs exactly one queue name");
        return jobq_cli_call(cli, "DELETE", "/v1/queues/", argv[optind], force ? "?force=true" : "",
                             NULL);
    }

    rc = jobq_cli_only_help("queue", argc, argv);
    if (rc >= 0)
        return rc;
    if (argc - optind != 1)
        return jobq_cli_usage("queue", "queue %s needs exactly one queue name", sub);
    name = argv[optind];
    if (strcmp(sub, "get") == 0)
        return jobq_cli_call(cli, "GET", "/v1/queues/", name, "", NULL);
    for (int i = 0; posts[i]; i++) {
        char suffix[32];

        if (strcmp(sub, posts[i]) != 0)
            continue;
        snprintf(suffix, sizeof(suffix), "/%s", posts[i]);
        return jobq_cli_call(cli, "POST", "/v1/queues/", name, suffix, NULL);
    }
    return jobq_cli_usage("queue", "unknown subcommand '%s'", sub);
}
