/*
 * cli.h — what the files of the `jobq` command-line tool share: exit statuses, output and
 * error printing, option-value parsing, and the entry points of the commands that live in
 * their own files (worker.c) or helpers (child.c).
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

/* `jobq worker …`: runs jobs with a shell command until SIGTERM/SIGINT. argv[0] is
 * "worker". Returns the process exit status. */
int jobq_cli_worker(const struct jobq_cli *cli, int argc, char **argv);

/* Monotonic clock, ms. */
int64_t jobq_cli_now_ms(void);

#endif
