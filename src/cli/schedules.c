/*
 * schedules.c — `jobq schedule add|update|list|get|rm|pause|resume|trigger`.
 *
 * Each subcommand is one request on /v1/schedules; add and update turn their options into
 * the schedule object's fields (docs/schedules.md).
 *
 * What it never does: check a cron expression or a zone; the server does, and says which
 * field is wrong.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* body.job, made empty when missing (borrowed); NULL when out of memory. */
static json_t *job_of(json_t *body)
{
    json_t *job = json_object_get(body, "job");

    if (!job) {
        job = json_object();
        if (!job || json_object_set_new(body, "job", job) < 0)
            return NULL;
    }
    return job;
}

/* Sets body.job[key] from JSON text (--data) or a string/integer (--priority); v is stolen. */
static int job_field(json_t *body, const char *key, json_t *v)
{
    json_t *job;

    if (!v)
        return jobq_cli_usage("schedule", "--data needs JSON");
    if (!(job = job_of(body))) {
        json_decref(v);
        return jobq_cli_out_of_memory();
    }
    if (json_object_set_new(job, key, v) < 0)
        return jobq_cli_out_of_memory();
    return 0;
}

/* Options of `schedule add` and `schedule update`, into `body`. Returns 0 or an exit status;
 * *want_help when --help was given. */
static int schedule_options(int argc, char **argv, json_t *body, bool *want_help)
{
    enum {
        O_QUEUE = 256,
        O_CRON,
        O_EVERY,
        O_TZ,
        O_DATA,
        O_PRIO,
        O_JOB,
        O_START,
        O_END,
        O_LIMIT,
        O_NO_OVERLAP,
        O_OVERLAP,
        O_PAUSED,
        O_OPTIONS
    };
    static const struct option opts[] = {{"queue", required_argument, NULL, O_QUEUE},
                                         {"cron", required_argument, NULL, O_CRON},
                                         {"every", required_argument, NULL, O_EVERY},
                                         {"tz", required_argument, NULL, O_TZ},
                                         {"data", required_argument, NULL, O_DATA},
                                         {"priority", required_argument, NULL, O_PRIO},
                                         {"job", required_argument, NULL, O_JOB},
                                         {"start-at", required_argument, NULL, O_START},
                                         {"end-at", required_argument, NULL, O_END},
                                         {"limit", required_argument, NULL, O_LIMIT},
                                         {"no-overlap", no_argument, NULL, O_NO_OVERLAP},
                                         {"overlap", no_argument, NULL, O_OVERLAP},
                                         {"paused", no_argument, NULL, O_PAUSED},
                                         {"options", required_argument, NULL, O_OPTIONS},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *cmd = "schedule";
    json_t *job;
    int ch, rc = 0;

    optind = 0;
    opterr = 0;
    while (rc == 0 && (ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case O_QUEUE:
        case O_CRON:
        case O_TZ:
            if (json_object_set_new(body,
                                    ch == O_QUEUE  ? "queue"
                                    : ch == O_CRON ? "cron"
                                                   : "tz",
                                    json_string(optarg)) < 0)
                rc = jobq_cli_out_of_memory();
            break;
        case O_EVERY:
            rc = jobq_cli_set_int(cmd, body, "every_ms", "--every", optarg, 1);
            break;
        case O_START:
            rc = jobq_cli_set_int(cmd, body, "start_at", "--start-at", optarg, 0);
            break;
        case O_END:
            rc = jobq_cli_set_int(cmd, body, "end_at", "--end-at", optarg, 0);
            break;
        case O_LIMIT:
            rc = jobq_cli_set_int(cmd, body, "limit", "--limit", optarg, 1);
            break;
        case O_NO_OVERLAP:
        case O_OVERLAP:
        case O_PAUSED:
            if (json_object_set_new(body, ch == O_PAUSED ? "paused" : "overlap",
                                    json_boolean(ch != O_NO_OVERLAP)) < 0)
                rc = jobq_cli_out_of_memory();
            break;
        case O_DATA:
            rc = job_field(body, "data", json_loads(optarg, JSON_DECODE_ANY, NULL));
            break;
        case O_PRIO: {
            json_t *p = json_object();
            if (!p || jobq_cli_set_int_or_string(p, "priority", optarg) < 0) {
                json_decref(p);
                rc = jobq_cli_out_of_memory();
                break;
            }
            rc = job_field(body, "priority", json_incref(json_object_get(p, "priority")));
            json_decref(p);
            break;
        }
        case O_JOB:
            job = job_of(body);
            rc = job ? jobq_cli_merge_json(cmd, job, "--job", optarg) : jobq_cli_out_of_memory();
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

/* `update` with job options (--data, --priority, --job): the server replaces `job` whole,
 * so they are merged into the schedule's current template first, read with a GET (a change
 * made between the two requests is overwritten). 0 or an exit status. */
static int merge_current_job(const struct jobq_cli *cli, const char *name, json_t *body)
{
    json_t *job = json_object_get(body, "job"), *cur = NULL, *merged;
    struct jobq_cli_path p;
    int rc;

    if (!json_is_object(job))
        return 0;
    jobq_cli_path_init(&p, "/v1/schedules/", name, "");
    if (!p.s)
        return jobq_cli_out_of_memory();
    rc = jobq_client_request(cli->client, "GET", p.s, NULL, NULL, &cur);
    free(p.s);
    if (rc < 0) {
        json_decref(cur);
        return jobq_cli_fail(cli->client);
    }
    merged = json_deep_copy(json_object_get(cur, "job"));
    json_decref(cur);
    if (!json_is_object(merged)) {
        json_decref(merged);
        merged = json_object();
    }
    if (!merged || json_object_update(merged, job) < 0 ||
        json_object_set_new(body, "job", merged) < 0)
        return jobq_cli_out_of_memory();
    return 0;
}

int jobq_cli_schedule(const struct jobq_cli *cli, int argc, char **argv)
{
    static const char *const one[] = {"get", "rm", "pause", "resume", "trigger", NULL};
    const char *sub, *name;
    json_t *body;
    int rc;

    if ((rc = jobq_cli_subcommand("schedule", "missing subcommand", argc, argv)) >= 0)
        return rc;
    sub = argv[1];
    argc--, argv++; /* getopt sees the subcommand as argv[0] */

    if (strcmp(sub, "add") == 0 || strcmp(sub, "update") == 0) {
        rc = jobq_cli_body_and_name("schedule", sub, "name", argc, argv, schedule_options, &body,
                                    &name);
        if (rc >= 0)
            return rc;
        if (strcmp(sub, "update") == 0) {
            if ((rc = merge_current_job(cli, name, body))) {
                json_decref(body);
                return rc;
            }
            return jobq_cli_call(cli, "PATCH", "/v1/schedules/", name, "", body);
        }
        if (json_object_set_new(body, "name", json_string(name)) < 0) {
            json_decref(body);
            return jobq_cli_out_of_memory();
        }
        return jobq_cli_request(cli, "POST", "/v1/schedules", body);
    }

    if (strcmp(sub, "list") == 0) {
        static const struct option opts[] = {{"queue", required_argument, NULL, 'q'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
        const char *queue = NULL;
        struct jobq_cli_path p;
        int ch;

        optind = 0;
        opterr = 0;
        while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
            if (ch == 'q')
                queue = optarg;
            else if (ch == 'h')
                return jobq_cli_help("schedule");
            else
                return jobq_cli_bad_option("schedule", argv, ch);
        }
        if (optind < argc)
            return jobq_cli_usage("schedule", "unexpected argument '%s'", argv[optind]);
        jobq_cli_path_init(&p, "/v1/schedules", NULL, "");
        jobq_cli_path_query(&p, "queue", queue);
        if (!p.s)
            return jobq_cli_out_of_memory();
        rc = jobq_cli_request(cli, "GET", p.s, NULL);
        free(p.s);
        return rc;
    }

    for (size_t i = 0; one[i]; i++) {
        if (strcmp(sub, one[i]) != 0)
            continue;
        rc = jobq_cli_only_help("schedule", argc, argv);
        if (rc >= 0)
            return rc;
        if (argc - optind != 1)
            return jobq_cli_usage("schedule", "schedule %s needs exactly one name or id", sub);
        name = argv[optind];
        if (strcmp(sub, "get") == 0)
            return jobq_cli_call(cli, "GET", "/v1/schedules/", name, "", NULL);
        if (strcmp(sub, "rm") == 0)
            return jobq_cli_call(cli, "DELETE", "/v1/schedules/", name, "", NULL);
        return jobq_cli_call(cli, "POST", "/v1/schedules/", name,
                             strcmp(sub, "pause") == 0    ? "/pause"
                             : strcmp(sub, "resume") == 0 ? "/resume"
                                                          : "/trigger",
                             NULL);
    }
    return jobq_cli_usage("schedule", "unknown subcommand '%s'", sub);
}
