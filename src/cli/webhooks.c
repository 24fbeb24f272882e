/*
 * webhooks.c — `jobq webhook add|list|get|rm|deliveries`: one request each on /v1/webhooks.
 *
 * What it never does: check what the server checks (URLs, event types, queue names).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* Appends `text` to the array body[key], made on first use. */
static int append_str(json_t *body, const char *key, const char *text)
{
    json_t *a = json_object_get(body, key);

    if (!a) {
        a = json_array();
        if (!a || json_object_set_new(body, key, a) < 0)
            return -1;
    }
    return json_array_append_new(a, json_string(text));
}

static int webhook_add(const struct jobq_cli *cli, int argc, char **argv)
{
    enum { O_EVENT = 256, O_QUEUE, O_PROJECT, O_SECRET, O_BEARER };
    static const struct option opts[] = {{"event", required_argument, NULL, O_EVENT},
                                         {"queue", required_argument, NULL, O_QUEUE},
                                         {"project", required_argument, NULL, O_PROJECT},
                                         {"secret", required_argument, NULL, O_SECRET},
                                         {"bearer", required_argument, NULL, O_BEARER},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    json_t *body = json_object();
    int ch, rc = 0;

    if (!body)
        return jobq_cli_out_of_memory();
    optind = 0;
    opterr = 0;
    while (rc == 0 && (ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case O_EVENT:
        case O_QUEUE:
            if (append_str(body, ch == O_EVENT ? "events" : "queues", optarg) < 0)
                rc = jobq_cli_out_of_memory();
            break;
        case O_PROJECT:
        case O_SECRET:
        case O_BEARER:
            if (json_object_set_new(body,
                                    ch == O_PROJECT  ? "project"
                                    : ch == O_SECRET ? "secret"
                                                     : "token",
                                    json_string(optarg)) < 0)
                rc = jobq_cli_out_of_memory();
            break;
        case 'h':
            rc = jobq_cli_help("webhook");
            json_decref(body);
            return rc;
        default:
            rc = jobq_cli_bad_option("webhook", argv, ch);
        }
    }
    if (rc == 0 && argc - optind != 1)
        rc = jobq_cli_usage("webhook", "webhook add needs exactly one URL");
    if (rc == 0 && !json_object_get(body, "events") && append_str(body, "events", "*") < 0)
        rc = jobq_cli_out_of_memory();
    if (rc == 0 && json_object_set_new(body, "url", json_string(argv[optind])) < 0)
        rc = jobq_cli_out_of_memory();
    if (rc) {
        json_decref(body);
        return rc;
    }
    return jobq_cli_request(cli, "POST", "/v1/webhooks", body);
}

static int webhook_deliveries(const struct jobq_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"limit", required_argument, NULL, 'l'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *limit = NULL;
    struct jobq_cli_path p;
    int64_t n;
    int ch, rc;

    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (ch == 'l') {
            if (jobq_cli_parse_int(optarg, 0, 1000, &n) < 0)
                return jobq_cli_usage("webhook", "--limit needs 0 to 1000, not '%s'", optarg);
            limit = optarg;
        } else if (ch == 'h') {
            return jobq_cli_help("webhook");
        } else {
            return jobq_cli_bad_option("webhook", argv, ch);
        }
    }
    if (argc - optind != 1)
        return jobq_cli_usage("webhook", "webhook deliveries needs exactly one webhook id");
    jobq_cli_path_init(&p, "/v1/webhooks/", argv[optind], "/deliveries");
    jobq_cli_path_query(&p, "limit", limit);
    if (!p.s)
        return jobq_cli_out_of_memory();
    rc = jobq_cli_request(cli, "GET", p.s, NULL);
    free(p.s);
    return rc;
}

int jobq_cli_webhook(const struct jobq_cli *cli, int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : NULL;
    int rc;

    if (!sub)
        return jobq_cli_usage("webhook", "missing subcommand (add, list, get, rm, deliveries)");
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h"))
        return jobq_cli_help("webhook");
    if (!strcmp(sub, "add"))
        return webhook_add(cli, argc - 1, argv + 1);
    if (!strcmp(sub, "deliveries"))
        return webhook_deliveries(cli, argc - 1, argv + 1);
    if (strcmp(sub, "list") && strcmp(sub, "get") && strcmp(sub, "rm"))
        return jobq_cli_usage("webhook", "unknown subcommand '%s'", sub);
    rc = jobq_cli_only_help("webhook", argc - 1, argv + 1);
    if (rc >= 0)
        return rc;
    argc--;
    argv++;
    if (!strcmp(sub, "list")) {
        if (optind < argc)
            return jobq_cli_usage("webhook", "unexpected argument '%s'", argv[optind]);
        return jobq_cli_request(cli, "GET", "/v1/webhooks", NULL);
    }
    if (argc - optind != 1)
        return jobq_cli_usage("webhook", "webhook %s needs exactly one webhook id", sub);
    return jobq_cli_call(cli, !strcmp(sub, "rm") ? "DELETE" : "GET", "/v1/webhooks/", argv[optind],
                         "", NULL);
}
