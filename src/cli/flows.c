/*
 * flows.c — `jobq flow`, `jobq pipeline`, `jobq approve` and `jobq reject`: the
 * orchestration commands (docs/orchestration.md). Each is one request whose answer is
 * printed as the server sent it.
 *
 * A flow or pipeline body is given as JSON text, '-' (read from stdin) or @FILE.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* The JSON body named by `arg`: text, '-' for stdin, or @FILE. NULL after reporting. */
static json_t *read_body(const char *cmd, const char *arg, int *rc)
{
    json_error_t err;
    json_t *v;

    if (strcmp(arg, "-") == 0)
        v = json_loadf(stdin, 0, &err);
    else if (arg[0] == '@')
        v = json_load_file(arg + 1, 0, &err);
    else
        v = json_loads(arg, 0, &err);
    if (!v || !json_is_object(v)) {
        json_decref(v);
        *rc = v ? jobq_cli_usage(cmd, "the body must be a JSON object")
                : jobq_cli_usage(cmd, "bad JSON (%s at line %d): %s", err.text, err.line, arg);
        return NULL;
    }
    return v;
}

/* Parses `text` as any JSON value (a --result, --notes, --data). NULL after reporting. */
static json_t *json_arg(const char *cmd, const char *opt, const char *text, int *rc)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &err);

    if (!v)
        *rc = jobq_cli_usage(cmd, "%s: bad JSON (%s): %s", opt, err.text, text);
    return v;
}

/* ---------------------------------------------------------------- jobq flow */

/* The end of a command that takes one positional argument after its options: unless the
 * options failed (rc) or the count is wrong (usage `why`), POSTs body (stolen) to
 * prefix ARG suffix. */
static int post_one(const struct jobq_cli *cli, int rc, int argc, char **argv, const char *cmd,
                    const char *why, const char *prefix, const char *suffix, json_t *body)
{
    if (rc == 0 && argc - optind != 1)
        rc = jobq_cli_usage(cmd, "%s", why);
    if (rc) {
        json_decref(body);
        return rc;
    }
    return jobq_cli_call(cli, "POST", prefix, argv[optind], suffix, body);
}

int jobq_cli_flow(const struct jobq_cli *cli, int argc, char **argv)
{
    const char *sub;
    int rc = 0;

    if ((rc = jobq_cli_subcommand("flow", "missing subcommand", argc, argv)) >= 0)
        return rc;
    sub = argv[1];
    argc--, argv++;
    if (strcmp(sub, "list") == 0) {
        enum { O_PROJECT = 256, O_LIMIT };
        static const struct option opts[] = {{"project", required_argument, NULL, O_PROJECT},
                                             {"limit", required_argument, NULL, O_LIMIT},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
        struct jobq_cli_path p;
        int ch;

        jobq_cli_path_init(&p, "/v1/flows", NULL, "");
        optind = 0;
        opterr = 0;
        while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
            if (ch == O_PROJECT)
                jobq_cli_path_query(&p, "project", optarg);
            else if (ch == O_LIMIT)
                jobq_cli_path_query(&p, "limit", optarg);
            else {
                free(p.s);
                return ch == 'h' ? jobq_cli_help("flow") : jobq_cli_bad_option("flow", argv, ch);
            }
        }
        if (!p.s)
            return jobq_cli_out_of_memory();
        rc = jobq_cli_request(cli, "GET", p.s, NULL);
        free(p.s);
        return rc;
    }
    if ((rc = jobq_cli_only_help("flow", argc, argv)) >= 0)
        return rc;
    if (argc - optind != 1)
        return jobq_cli_usage("flow", "flow %s needs one argument", sub);
    if (strcmp(sub, "create") == 0) {
        json_t *body = read_body("flow", argv[optind], &rc);
        return body ? jobq_cli_request(cli, "POST", "/v1/flows", body) : rc;
    }
    if (strcmp(sub, "get") == 0)
        return jobq_cli_call(cli, "GET", "/v1/flows/", argv[optind], "", NULL);
    if (strcmp(sub, "cancel") == 0)
        return jobq_cli_call(cli, "POST", "/v1/flows/", argv[optind], "/cancel", json_object());
    return jobq_cli_usage("flow", "unknown subcommand %s", sub);
}

/* ---------------------------------------------------------------- jobq pipeline */

static int pipeline_run(const struct jobq_cli *cli, int argc, char **argv)
{
    enum { O_PROJECT = 256, O_DATA, O_FLAG, O_NO_FLAG, O_GROUP, O_PRIO };
    static const struct option opts[] = {{"project", required_argument, NULL, O_PROJECT},
                                         {"data", required_argument, NULL, O_DATA},
                                         {"flag", required_argument, NULL, O_FLAG},
                                         {"no-flag", required_argument, NULL, O_NO_FLAG},
                                         {"group", required_argument, NULL, O_GROUP},
                                         {"priority", required_argument, NULL, O_PRIO},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    json_t *body = json_object(), *flags = json_object(), *v;
    int ch, rc = 0;

    json_object_set_new(body, "flags", flags);
    optind = 0;
    opterr = 0;
    while (rc == 0 && (ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case O_PROJECT:
            json_object_set_new(body, "project", json_string(optarg));
            break;
        case O_GROUP:
            json_object_set_new(body, "group", json_string(optarg));
            break;
        case O_PRIO:
            jobq_cli_set_int_or_string(body, "priority", optarg);
            break;
        case O_DATA:
            if ((v = json_arg("pipeline", "--data", optarg, &rc)))
                json_object_set_new(body, "data", v);
            break;
        case O_FLAG:
        case O_NO_FLAG:
            json_object_set_new(flags, optarg, json_boolean(ch == O_FLAG));
            break;
        case 'h':
            json_decref(body);
            return jobq_cli_help("pipeline");
        default:
            json_decref(body);
            return jobq_cli_bad_option("pipeline", argv, ch);
        }
    }
    return post_one(cli, rc, argc, argv, "pipeline", "pipeline run needs the pipeline's name", "/v1/pipelines/", "/runs", body);
}

int jobq_cli_pipeline(const struct jobq_cli *cli, int argc, char **argv)
{
    const char *sub;
    int rc = 0;

    if ((rc = jobq_cli_subcommand("pipeline", "missing subcommand", argc, argv)) >= 0)
        return rc;
    sub = argv[1];
    argc--, argv++;
    if (strcmp(sub, "run") == 0)
        return pipeline_run(cli, argc, argv);
    if (strcmp(sub, "create") == 0) {
        static const struct option opts[] = {{"replace", no_argument, NULL, 'r'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
        int ch, replace = 0;
        json_t *body;

        optind = 0;
        opterr = 0;
        while ((ch = getopt_long(argc, argv, ":rh", opts, NULL)) != -1) {
            if (ch == 'r')
                replace = 1;
            else
                return ch == 'h' ? jobq_cli_help("pipeline")
                                 : jobq_cli_bad_option("pipeline", argv, ch);
        }
        if (argc - optind != 1)
            return jobq_cli_usage("pipeline", "pipeline create needs the template");
        body = read_body("pipeline", argv[optind], &rc);
        if (!body)
            return rc;
        return jobq_cli_request(cli, "POST",
                                replace ? "/v1/pipelines?replace=true" : "/v1/pipelines", body);
    }
    if ((rc = jobq_cli_only_help("pipeline", argc, argv)) >= 0)
        return rc;
    if (strcmp(sub, "list") == 0) {
        if (argc - optind != 0)
            return jobq_cli_usage("pipeline", "pipeline list takes no argument");
        return jobq_cli_request(cli, "GET", "/v1/pipelines", NULL);
    }
    if (argc - optind != 1)
        return jobq_cli_usage("pipeline", "pipeline %s needs the pipeline's name", sub);
    if (strcmp(sub, "get") == 0)
        return jobq_cli_call(cli, "GET", "/v1/pipelines/", argv[optind], "", NULL);
    if (strcmp(sub, "rm") == 0 || strcmp(sub, "delete") == 0)
        return jobq_cli_call(cli, "DELETE", "/v1/pipelines/", argv[optind], "", NULL);
    return jobq_cli_usage("pipeline", "unknown subcommand %s", sub);
}

/* ---------------------------------------------------------------- review */

int jobq_cli_approve(const struct jobq_cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"result", required_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    json_t *body = json_object(), *v;
    int ch, rc = 0;

    optind = 0;
    opterr = 0;
    while (rc == 0 && (ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (ch == 'r') {
            if ((v = json_arg("approve", "--result", optarg, &rc)))
                json_object_set_new(body, "result", v);
        } else {
            json_decref(body);
            return ch == 'h' ? jobq_cli_help("approve") : jobq_cli_bad_option("approve", argv, ch);
        }
    }
    return post_one(cli, rc, argc, argv, "approve", "approve needs one job id", "/v1/jobs/", "/approve", body);
}

int jobq_cli_reject(const struct jobq_cli *cli, int argc, char **argv)
{
    enum { O_REASON = 256, O_NOTES, O_RERUN };
    static const struct option opts[] = {{"reason", required_argument, NULL, O_REASON},
                                         {"notes", required_argument, NULL, O_NOTES},
                                         {"rerun", no_argument, NULL, O_RERUN},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    json_t *body = json_object(), *v;
    int ch, rc = 0;

    optind = 0;
    opterr = 0;
    while (rc == 0 && (ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case O_REASON:
            json_object_set_new(body, "reason", json_string(optarg));
            break;
        case O_NOTES:
            /* notes are JSON when they parse as JSON, else the text itself */
            v = json_loads(optarg, JSON_DECODE_ANY, NULL);
            json_object_set_new(body, "notes", v ? v : json_string(optarg));
            break;
        case O_RERUN:
            json_object_set_new(body, "rerun", json_true());
            break;
        case 'h':
            json_decref(body);
            return jobq_cli_help("reject");
        default:
            json_decref(body);
            return jobq_cli_bad_option("reject", argv, ch);
        }
    }
    if (rc == 0 && !json_object_get(body, "reason"))
        rc = jobq_cli_usage("reject", "reject needs --reason TEXT");
    return post_one(cli, rc, argc, argv, "reject", "reject needs one job id", "/v1/jobs/", "/reject", body);
}
