/*
 * config.c — `jobq config get` and `jobq config set`: the server's runtime settings
 * (GET/PATCH /v1/config).
 *
 * What it never does: check values the server checks (ranges, priority names).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* --tier NAME=LIMIT[/PRIORITY] into tiers. Returns 0 or an exit status. */
static int tier_option(json_t *tiers, const char *arg)
{
    const char *eq = strchr(arg, '='), *slash;
    char *name;
    int64_t limit;
    json_t *t;

    if (!eq || eq == arg)
        return jobq_cli_usage("config", "--tier needs NAME=LIMIT[/PRIORITY], e.g. pro=5/high");
    slash = strchr(eq + 1, '/');
    {
        char *num = slash ? strndup(eq + 1, (size_t)(slash - eq - 1)) : strdup(eq + 1);
        int bad = !num || jobq_cli_parse_int(num, 0, 1000000000, &limit) < 0;
        free(num);
        if (bad)
            return jobq_cli_usage("config", "--tier needs NAME=LIMIT[/PRIORITY], e.g. pro=5/high");
    }
    t = json_pack("{sI}", "group_concurrency", (json_int_t)limit);
    if (!t || (slash && jobq_cli_set_int_or_string(t, "priority", slash + 1) < 0)) {
        json_decref(t);
        return jobq_cli_out_of_memory();
    }
    name = strndup(arg, (size_t)(eq - arg));
    if (!name || json_object_set_new(tiers, name, t) < 0) {
        free(name);
        return jobq_cli_out_of_memory();
    }
    free(name);
    return 0;
}

int jobq_cli_config(const struct jobq_cli *cli, int argc, char **argv)
{
    enum { O_MAX = 256, O_TIER, O_DROP };
    static const struct option opts[] = {{"max-active-jobs", required_argument, NULL, O_MAX},
                                         {"tier", required_argument, NULL, O_TIER},
                                         {"drop-tier", required_argument, NULL, O_DROP},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *sub;
    json_t *body, *tiers;
    int ch, rc = 0;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        if (argc >= 2)
            return jobq_cli_help("config");
        return jobq_cli_usage("config", "missing subcommand (get or set)");
    }
    sub = argv[1];
    argc--, argv++;
    if (strcmp(sub, "get") == 0) {
        rc = jobq_cli_only_help("config", argc, argv);
        if (rc >= 0)
            return rc;
        if (optind < argc)
            return jobq_cli_usage("config", "unexpected argument '%s'", argv[optind]);
        return jobq_cli_request(cli, "GET", "/v1/config", NULL);
    }
    if (strcmp(sub, "set") != 0)
        return jobq_cli_usage("config", "unknown subcommand '%s' (get or set)", sub);
    body = json_object();
    tiers = json_object();
    if (!body || !tiers || json_object_set(body, "tiers", tiers) < 0) {
        json_decref(body);
        json_decref(tiers);
        return jobq_cli_out_of_memory();
    }
    optind = 0;
    opterr = 0;
    while (rc == 0 && (ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case O_MAX:
            if (strcmp(optarg, "none") == 0) /* drop the runtime value: the file's applies */
                rc = json_object_set_new(body, "max_active_jobs", json_null()) < 0
                         ? jobq_cli_out_of_memory()
                         : 0;
            else
                rc = jobq_cli_set_int("config", body, "max_active_jobs", "--max-active-jobs",
                                      optarg, 0);
            break;
        case O_TIER:
            rc = tier_option(tiers, optarg);
            break;
        case O_DROP:
            rc = json_object_set_new(tiers, optarg, json_null()) < 0 ? jobq_cli_out_of_memory() : 0;
            break;
        case 'h':
            rc = jobq_cli_help("config");
            json_decref(tiers);
            json_decref(body);
            return rc;
        default:
            rc = jobq_cli_bad_option("config", argv, ch);
        }
    }
    if (rc == 0 && optind < argc)
        rc = jobq_cli_usage("config", "unexpected argument '%s'", argv[optind]);
    if (rc == 0 && json_object_size(body) == 1 && json_object_size(tiers) == 0)
        rc = jobq_cli_usage("config", "set needs --max-active-jobs, --tier or --drop-tier");
    if (json_object_size(tiers) == 0)
        json_object_del(body, "tiers");
    json_decref(tiers);
    if (rc) {
        json_decref(body);
        return rc;
    }
    return jobq_cli_request(cli, "PATCH", "/v1/config", body);
}
