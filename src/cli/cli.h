/*
 * cli.h — what the files of the `jobq` command-line tool share: exit statuses, output and
 * error printing, request and option-value helpers (main.c), and the entry point of every
 * command (queues.c, jobs.c, worker.c). Each command takes argv[0] = its own name and
 * returns the process exit status.
 *
 * What it never does: speak HTTP itself; that is libjobq's (include/jobq/jobq.h).
 */
#ifndef JOBQ_CLI_H
#define JOBQ_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "jobq/jobq.h"

enum {
    JOBQ_CLI_EXIT_OK = 0,
    JOBQ_CLI_EXIT_ERROR = 1, /* the server said no, or could not be reached */
    JOBQ_CLI_EXIT_USAGE = 2, /* bad command line */
};

/* What every command gets. */
struct jobq_cli {
    jobq_client *client; /* borrowed */
    const char *url;     /* server base URL, borrowed */
    const char *token;   /* bearer token or NULL, borrowed */
};

/* Prints `value` (borrowed, may be NULL = nothing) pretty to stdout, with a newline. */
void jobq_cli_print(json_t *value);

/* Prints the client's last error to stderr as "jobq: <code>: <message>". Returns
 * JOBQ_CLI_EXIT_ERROR. */
int jobq_cli_fail(const jobq_client *c);

/* Prints "jobq: usage: <message>" and a hint to read `cmd --help` to stderr. Returns
 * JOBQ_CLI_EXIT_USAGE. */
__attribute__((format(printf, 2, 3))) int jobq_cli_usage(const char *cmd, const char *fmt, ...);

/* Reports what getopt_long() refused (`ch` is its ':' or '?') for command `cmd`. Returns
 * JOBQ_CLI_EXIT_USAGE. */
int jobq_cli_bad_option(const char *cmd, char **argv, int ch);

/* Prints the help text of command `name` to stdout. Returns JOBQ_CLI_EXIT_OK. */
int jobq_cli_help(const char *name);

/* Parses a whole decimal integer in [min, max] from `s` (borrowed) into *out. Returns 0, or
 * -1 when `s` is not one. */
int jobq_cli_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);

/* Prints "jobq: out_of_memory: …" to stderr. Returns JOBQ_CLI_EXIT_ERROR. */
int jobq_cli_out_of_memory(void);

/* Monotonic clock, ms. */
int64_t jobq_cli_now_ms(void);

/* Sends one request (`path` borrowed, already escaped; `body` stolen, may be NULL) and
 * prints the answer, or the error. Returns the exit status. */
int jobq_cli_request(const struct jobq_cli *cli, const char *method, const char *path,
                     json_t *body);

/* As jobq_cli_request() on the path prefix + escaped `arg` + suffix (all borrowed). */
int jobq_cli_call(const struct jobq_cli *cli, const char *method, const char *prefix,
                  const char *arg, const char *suffix, json_t *body);

/* A request path with a query string under construction. */
struct jobq_cli_path {
    char *s;        /* new string (free() it); NULL after running out of memory */
    bool has_query; /* a '?' is in s */
};

/* Starts `p` as prefix + escaped `arg` (NULL = none) + suffix (all borrowed). */
void jobq_cli_path_init(struct jobq_cli_path *p, const char *prefix, const char *arg,
                        const char *suffix);

/* Appends key=value to `p`, value escaped; a NULL value appends nothing. */
void jobq_cli_path_query(struct jobq_cli_path *p, const char *key, const char *value);

/* For commands whose only option is --help: parses argv. Returns -1 to go on (optind at the
 * first positional argument), or an exit status. */
int jobq_cli_only_help(const char *cmd, int argc, char **argv);

/* For commands made of subcommands: with none, a usage error saying `missing`; with
 * --help or -h in its place, the help. Returns -1 to go on with argv[1] as the subcommand,
 * or an exit status. */
int jobq_cli_subcommand(const char *cmd, const char *missing, int argc, char **argv);

/* Option parser of a create/update subcommand: fills body from the options; sets
 * *want_help on --help. Returns 0 or an exit status. */
typedef int jobq_cli_body_options(int argc, char **argv, json_t *body, bool *want_help);

/* For `cmd sub [options] <name>`: a new object *body filled by `parse`, and *name, the one
 * positional argument (`what` names it in the usage error). Returns -1 to go on, or an exit
 * status (help shown, or a usage error; nothing to free then). */
int jobq_cli_body_and_name(const char *cmd, const char *sub, const char *what, int argc,
                           char **argv, jobq_cli_body_options *parse, json_t **body,
                           const char **name);

/* Sets o[key] from option text: an integer if it is one, else a string. Returns 0 or -1
 * when out of memory. */
int jobq_cli_set_int_or_string(json_t *o, const char *key, const char *text);

/* Sets o[key] to the integer `text` >= min. Returns 0, or the exit status after reporting a
 * usage error for option `opt` of command `cmd`. */
int jobq_cli_set_int(const char *cmd, json_t *o, const char *key, const char *opt, const char *text,
                     int64_t min);

/* Merges the JSON object `text` into `o` (--options). Returns 0 or an exit status. */
int jobq_cli_merge_json(const char *cmd, json_t *o, const char *opt, const char *text);

/* The commands. */
int jobq_cli_queues(const struct jobq_cli *cli, int argc, char **argv);
int jobq_cli_queue(const struct jobq_cli *cli, int argc, char **argv);
int jobq_cli_add(const struct jobq_cli *cli, int argc, char **argv);
int jobq_cli_get(const struct jobq_cli *cli, int argc, char **argv);
int jobq_cli_list(const struct jobq_cli *cli, int argc, char **argv);
int jobq_cli_cancel(const struct jobq_cli *cli, int argc, char **argv);
int jobq_cli_retry(const struct jobq_cli *cli, int argc, char **argv);
int jobq_cli_delete(const struct jobq_cli *cli, int argc, char **argv);
int jobq_cli_history(const struct jobq_cli *cli, int argc, char **argv);
int jobq_cli_logs(const struct jobq_cli *cli, int argc, char **argv);
int jobq_cli_dead(const struct jobq_cli *cli, int argc, char **argv);
int jobq_cli_stats(const struct jobq_cli *cli, int argc, char **argv);
int jobq_cli_workers(const struct jobq_cli *cli, int argc, char **argv);
int jobq_cli_health(const struct jobq_cli *cli, int argc, char **argv);
int jobq_cli_schedule(const struct jobq_cli *cli, int argc, char **argv); /* schedules.c */
int jobq_cli_webhook(const struct jobq_cli *cli, int argc, char **argv); /* webhooks.c */
int jobq_cli_config(const struct jobq_cli *cli, int argc, char **argv);

/* Commands that follow the event stream (events.c). */
int jobq_cli_events(const struct jobq_cli *cli, int argc, char **argv);
int jobq_cli_wait(const struct jobq_cli *cli, int argc, char **argv);
int jobq_cli_top(const struct jobq_cli *cli, int argc, char **argv);

/* Orchestration (flows.c). */
int jobq_cli_flow(const struct jobq_cli *cli, int argc, char **argv);
int jobq_cli_pipeline(const struct jobq_cli *cli, int argc, char **argv);
int jobq_cli_approve(const struct jobq_cli *cli, int argc, char **argv);
int jobq_cli_reject(const struct jobq_cli *cli, int argc, char **argv);

/* `jobq worker …`: runs jobs with a shell command until SIGTERM/SIGINT (worker.c). */
int jobq_cli_worker(const struct jobq_cli *cli, int argc, char **argv);

#endif
