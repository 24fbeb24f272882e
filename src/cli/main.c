/*
 * main.c — `jobq`, the command-line client of a jobq server.
 *
 * Parses the global options (--url / $JOBQ_URL, --token / $JOBQ_TOKEN), looks the command up
 * in a table and runs it, and holds the helpers every command shares (cli.h). Every command
 * but `worker` is one request: build a path and maybe a JSON body from the arguments, send
 * it with libjobq, print the server's JSON answer pretty on stdout. Errors go to stderr as
 * "jobq: <code>: <message>" with exit status 1; a bad command line exits 2.
 * The commands live in queues.c, jobs.c and worker.c.
 *
 * What it never does: change or reinterpret the server's answers; the output is the API's.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

#define DEFAULT_URL "http://127.0.0.1:7117"

struct command {
    const char *name;
    int (*run)(const struct jobq_cli *cli, int argc, char **argv);
    const char *usage; /* full help text of the command */
};

static const struct command *find_command(const char *name);

/* ---- shared helpers ---------------------------------------------------------------------- */

int64_t jobq_cli_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whether every real number in `v` survives printing with `digits` significant digits. */
static bool reals_fit(json_t *v, int digits)
{
    char buf[64];
    const char *key;
    json_t *item;
    size_t i;

    switch (json_typeof(v)) {
    case JSON_REAL:
        snprintf(buf, sizeof(buf), "%.*g", digits, json_real_value(v));
        return strtod(buf, NULL) == json_real_value(v);
    case JSON_ARRAY:
        json_array_foreach(v, i, item)
        {
            if (!reals_fit(item, digits))
                return false;
        }
        return true;
    case JSON_OBJECT:
        json_object_foreach(v, key, item)
        {
            if (!reals_fit(item, digits))
                return false;
        }
        return true;
    default:
        return true;
    }
}

void jobq_cli_print(json_t *value)
{
    char *text;
    int digits = 15;

    if (!value)
        return;
    /* As few digits as keep every number exact: 0.1 rather than 0.10000000000000001. */
    while (digits < 17 && !reals_fit(value, digits))
        digits++;
    text = json_dumps(value, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_REAL_PRECISION(digits));
    if (!text) {
        fprintf(stderr, "jobq: out_of_memory: could not print the answer\n");
        return;
    }
    fputs(text, stdout);
    fputc('\n', stdout);
    free(text);
}

int jobq_cli_fail(const jobq_client *c)
{
    fprintf(stderr, "jobq: %s: %s\n", jobq_client_error_code(c), jobq_client_error_message(c));
    return JOBQ_CLI_EXIT_ERROR;
}

int jobq_cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fputs("jobq: usage: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'jobq %s%s--help')\n", cmd ? cmd : "", cmd ? " " : "");
    return JOBQ_CLI_EXIT_USAGE;
}

int jobq_cli_parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    long long v;

    if (!s || !*s)
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int jobq_cli_bad_option(const char *cmd, char **argv, int ch)
{
    const char *arg = argv[optind - 1];

    if (ch == ':')
        return jobq_cli_usage(cmd, "option '%s' needs a value", arg);
    if (optopt && !(arg[0] == '-' && arg[1] == '-'))
        return jobq_cli_usage(cmd, "unknown option '-%c'", optopt);
    return jobq_cli_usage(cmd, "unknown option '%s'", arg);
}

int jobq_cli_help(const char *name)
{
    const struct command *cmd = find_command(name);

    fputs(cmd->usage, stdout);
    return JOBQ_CLI_EXIT_OK;
}

/* Sends one request and prints its answer. Steals `body` (may be NULL). */
int jobq_cli_request(const struct jobq_cli *cli, const char *method, const char *path, json_t *body)
{
    json_t *answer = NULL;
    int rc;

    rc = jobq_client_request(cli->client, method, path, body, NULL, &answer);
    json_decref(body);
    if (rc < 0) {
        json_decref(answer);
        return jobq_cli_fail(cli->client);
    }
    jobq_cli_print(answer);
    json_decref(answer);
    return JOBQ_CLI_EXIT_OK;
}

/* Starts `p` as prefix + escaped `arg` (NULL = none) + suffix. */
void jobq_cli_path_init(struct jobq_cli_path *p, const char *prefix, const char *arg,
                        const char *suffix)
{
    char *esc = arg ? jobq_client_escape(arg) : NULL;

    p->has_query = strchr(suffix, '?') != NULL;
    if ((arg && !esc) || asprintf(&p->s, "%s%s%s", prefix, esc ? esc : "", suffix) < 0)
        p->s = NULL;
    free(esc);
}

/* Appends key=value (value escaped here; NULL value = nothing). */
void jobq_cli_path_query(struct jobq_cli_path *p, const char *key, const char *value)
{
    char *esc, *s;

    if (!p->s || !value)
        return;
    esc = jobq_client_escape(value);
    if (!esc || asprintf(&s, "%s%c%s=%s", p->s, p->has_query ? '&' : '?', key, esc) < 0)
        s = NULL;
    free(esc);
    free(p->s);
    p->s = s;
    p->has_query = true;
}

int jobq_cli_out_of_memory(void)
{
    fprintf(stderr, "jobq: out_of_memory: out of memory\n");
    return JOBQ_CLI_EXIT_ERROR;
}

/* Runs `method` on prefix + escaped `arg` + suffix with `body` (stolen, may be NULL),
 * printing the answer. */
int jobq_cli_call(const struct jobq_cli *cli, const char *method, const char *prefix,
                  const char *arg, const char *suffix, json_t *body)
{
    struct jobq_cli_path p;
    int rc;

    jobq_cli_path_init(&p, prefix, arg, suffix);
    if (!p.s) {
        json_decref(body);
        return jobq_cli_out_of_memory();
    }
    rc = jobq_cli_request(cli, method, p.s, body);
    free(p.s);
    return rc;
}

/* Parses only --help for commands with positional arguments alone; returns -1 to go on, or
 * an exit status. Leaves optind at the first positional argument. */
int jobq_cli_only_help(const char *cmd, int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int ch;

    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (ch == 'h')
            return jobq_cli_help(cmd);
        return jobq_cli_bad_option(cmd, argv, ch);
    }
    return -1;
}

int jobq_cli_subcommand(const char *cmd, const char *missing, int argc, char **argv)
{
    if (argc < 2)
        return jobq_cli_usage(cmd, "%s", missing);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return jobq_cli_help(cmd);
    return -1;
}

int jobq_cli_body_and_name(const char *cmd, const char *sub, const char *what, int argc,
                           char **argv, jobq_cli_body_options *parse, json_t **body,
                           const char **name)
{
    bool want_help = false;
    int rc;

    *body = json_object();
    if (!*body)
        return jobq_cli_out_of_memory();
    rc = parse(argc, argv, *body, &want_help);
    if (rc || want_help) {
        json_decref(*body);
        return want_help ? jobq_cli_help(cmd) : rc;
    }
    if (argc - optind != 1) {
        json_decref(*body);
        return jobq_cli_usage(cmd, "%s %s needs exactly one %s", cmd, sub, what);
    }
    *name = argv[optind];
    return -1;
}

/* Sets key to a JSON value parsed from `text`: an integer if it is one, else a string. */
int jobq_cli_set_int_or_string(json_t *o, const char *key, const char *text)
{
    int64_t v;

    if (jobq_cli_parse_int(text, INT64_MIN, INT64_MAX, &v) == 0)
        return json_object_set_new(o, key, json_integer(v));
    return json_object_set_new(o, key, json_string(text));
}

/* Sets `key` in `o` to the integer `text`, or reports a usage error for `opt`. */
int jobq_cli_set_int(const char *cmd, json_t *o, const char *key, const char *opt, const char *text,
                     int64_t min)
{
    int64_t v;

    if (jobq_cli_parse_int(text, min, INT64_MAX, &v) < 0)
        return jobq_cli_usage(cmd, "%s needs an integer >= %lld, not '%s'", opt, (long long)min,
                              text);
    if (json_object_set_new(o, key, json_integer(v)) < 0)
        return jobq_cli_out_of_memory();
    return 0;
}

/* Parses `text` as a JSON object and merges it into `o` (--options). */
int jobq_cli_merge_json(const char *cmd, json_t *o, const char *opt, const char *text)
{
    json_error_t err;
    json_t *extra = json_loads(text, 0, &err);
    int rc = 0;

    if (!json_is_object(extra))
        rc = jobq_cli_usage(cmd, "%s needs a JSON object: %s", opt,
                            extra ? "not an object" : err.text);
    else if (json_object_update(o, extra) < 0)
        rc = jobq_cli_out_of_memory();
    json_decref(extra);
    return rc;
}

/* ---- the command table and main ---------------------------------------------------------- */

static const char main_usage[] =
    "Usage: jobq [--url URL] [--token TOKEN] COMMAND [ARGS]\n"
    "\n"
    "Command-line client of a jobq server. Prints the server's JSON answers.\n"
    "\n"
    "Commands:\n"
    "  queues                          list queues\n"
    "  queue create NAME [OPTIONS]     create a queue (see 'jobq queue --help')\n"
    "  queue update NAME [OPTIONS]     change a queue's options\n"
    "  queue get|pause|resume|drain|clear NAME\n"
    "  queue delete NAME [--force]     delete a queue\n"
    "  add QUEUE JSON [OPTIONS]        enqueue a job whose data is JSON ('-': read stdin)\n"
    "  get ID                          show a job\n"
    "  list [--queue Q --state S ...]  list jobs, newest first\n"
    "  cancel ID                       cancel a job\n"
    "  retry ID                        retry a failed or cancelled job\n"
    "  delete ID                       remove a job that is not active\n"
    "  history ID                      a job's state changes\n"
    "  logs ID [--attempt N]           a job's log lines\n"
    "  dead [--queue Q]                failed jobs (the dead-letter set)\n"
    "  stats [--queue Q]               counts, totals and rates\n"
    "  workers                         workers seen in the last minute\n"
    "  schedule add NAME --queue Q (--cron EXPR | --every MS) [OPTIONS]\n"
    "  schedule update NAME [OPTIONS]  change a schedule\n"
    "  schedule list [--queue Q]       recurring jobs, with next_run_at\n"
    "  schedule get|rm|pause|resume|trigger NAME\n"
    "  webhook add|list|get|rm|deliveries  webhooks (see 'jobq webhook --help')\n"
    "  config get|set [OPTIONS]        server settings: max_active_jobs, tiers\n"
    "  worker --queue Q --exec CMD     run jobs with a shell command\n"
    "  events [--queue Q --type T ...] follow the event stream\n"
    "  wait ID                         a progress bar until the job ends\n"
    "  top                             a live per-queue table\n"
    "\n"
    "Global options:\n"
    "  --url URL       server address (default $JOBQ_URL, else " DEFAULT_URL ")\n"
    "  --token TOKEN   bearer token (default $JOBQ_TOKEN)\n"
    "  -h, --help      this help; 'jobq COMMAND --help' for one command\n"
    "\n"
    "Exit status: 0 success, 1 error from or reaching the server, 2 bad command line.\n";

static const struct command commands[] = {
    {"queues", jobq_cli_queues,
     "Usage: jobq queues [--type T] [--status S] [--limit N] [--offset N]\n"
     "\n"
     "Lists queues (GET /v1/queues).\n"},
    {"queue", jobq_cli_queue,
     "Usage: jobq queue create NAME [OPTIONS]\n"
     "       jobq queue update NAME [OPTIONS]\n"
     "       jobq queue get|pause|resume|drain|clear NAME\n"
     "       jobq queue delete NAME [--force]\n"
     "\n"
     "Options of create and update:\n"
     "  --type T                 free label, e.g. INGEST\n"
     "  --description TEXT\n"
     "  --concurrency N          max active jobs across all workers (0 = unlimited)\n"
     "  --group-concurrency N    max active jobs per group (0 = unlimited; a tier's limit\n"
     "                           applies too: the smaller wins)\n"
     "  --fairness F             fifo or round_robin across groups within a priority\n"
     "                           (default: round_robin when groups are limited)\n"
     "  --circuit-breaker N/MS   open after N consecutive provider errors, probe every MS\n"
     "  --max-size N             waiting+scheduled cap\n"
     "  --max-stalls N           stalls before a job fails\n"
     "  --rate-limit MAX/PER_MS  at most MAX jobs started per PER_MS window, e.g. 100/60000\n"
     "  --attempts N             default max_attempts of its jobs\n"
     "  --timeout MS             default timeout_ms of its jobs\n"
     "  --lease-ms MS            default lease_ms of its jobs\n"
     "  --priority P             default priority (-1000..1000 or low|normal|high|urgent)\n"
     "  --status S               (update) active, paused or draining\n"
     "  --options JSON           further fields, merged into the request body (a key it\n"
     "                           gives replaces the one the flags built)\n"
     "\n"
     "delete --force deletes a queue even while it has active jobs.\n"},
    {"add", jobq_cli_add,
     "Usage: jobq add QUEUE JSON [OPTIONS]\n"
     "\n"
     "Enqueues a job whose data is JSON ('-' reads it from stdin); prints the job.\n"
     "\n"
     "Options:\n"
     "  --priority P      -1000..1000 or low|normal|high|urgent\n"
     "  --delay MS        run no earlier than MS from now\n"
     "  --attempts N      max_attempts\n"
     "  --timeout MS      wall time one attempt may take\n"
     "  --lease-ms MS     lease length of a fetch\n"
     "  --group G         fairness / per-group concurrency key\n"
     "  --project P\n"
     "  --tier T\n"
     "  --name N          label\n"
     "  --id ID           the job's id (default: the server makes one)\n"
     "  --tag KEY=VALUE   (repeatable)\n"
     "  --depends-on ID   wait for that job to complete first (repeatable)\n"
     "  --review          a completion waits for approve/reject\n"
     "  --unique-key K    a live job with key K in the queue is returned instead\n"
     "  --cache KEY[/MS]  reuse the result of a job completed with KEY within MS (24 h)\n"
     "  --options JSON    further options, merged into the request body\n"},
    {"get", jobq_cli_get, "Usage: jobq get ID\n\nShows a job.\n"},
    {"list", jobq_cli_list,
     "Usage: jobq list [--queue Q] [--state S[,S…]] [--limit N] [--group G] [--project P]\n"
     "                 [--tag KEY=VALUE] [--cursor C]\n"
     "\n"
     "Lists jobs, newest first; next_cursor in the answer pages on with --cursor.\n"},
    {"cancel", jobq_cli_cancel,
     "Usage: jobq cancel ID\n\nCancels a job; an active one is asked to stop by its worker.\n"},
    {"retry", jobq_cli_retry,
     "Usage: jobq retry ID\n\nPuts a failed or cancelled job back to waiting.\n"},
    {"delete", jobq_cli_delete, "Usage: jobq delete ID\n\nRemoves a job that is not active.\n"},
    {"history", jobq_cli_history, "Usage: jobq history ID\n\nShows every state change of a job.\n"},
    {"logs", jobq_cli_logs,
     "Usage: jobq logs ID [--attempt N]\n\nShows a job's log lines (default: latest attempt).\n"},
    {"dead", jobq_cli_dead,
     "Usage: jobq dead [--queue Q] [--limit N] [--cursor C]\n\nLists failed jobs.\n"},
    {"stats", jobq_cli_stats,
     "Usage: jobq stats [--queue Q]\n"
     "       jobq stats --series METRIC [--queue Q] [--minutes N]\n"
     "       jobq stats --daily [--queue Q] [--days N]\n"
     "\n"
     "Shows counts, totals, rates and 15-minute timings, overall or of one queue; or one\n"
     "point per minute of METRIC (completed, failed, enqueued, processing_p95, waiting) for\n"
     "the last N minutes (default 60, at most 1440); or one line per day and queue for the\n"
     "last N days (default 30). See docs/metrics.md.\n"},
    {"health", jobq_cli_health,
     "Usage: jobq health\n\nShows the health of every queue and the reasons of those not "
     "healthy.\n"},
    {"config", jobq_cli_config,
     "Usage: jobq config get\n"
     "       jobq config set [--max-active-jobs N|none] [--tier NAME=LIMIT[/PRIORITY]]...\n"
     "                       [--drop-tier NAME]...\n"
     "\n"
     "Shows or changes the server's runtime settings (GET/PATCH /v1/config). A value set\n"
     "here is kept across restarts and wins over the config file until dropped: 'none'\n"
     "drops max_active_jobs, --drop-tier a tier (the file's or shipped value applies again).\n"
     "\n"
     "  --max-active-jobs N   most jobs active at once across all queues (0 = no cap)\n"
     "  --tier NAME=L[/P]     tier NAME: at most L active jobs per group, default priority P\n"
     "                        (-1000..1000 or low|normal|high|urgent)\n"
     "  --drop-tier NAME      drop the runtime setting of tier NAME\n"},
    {"events", jobq_cli_events,
     "Usage: jobq events [--queue Q …] [--type T …] [--job ID] [--project P] [--group G]\n"
     "                   [--since SEQ] [--count N]\n"
     "\n"
     "Prints events as they happen, one JSON object per line (docs/events.md). When the\n"
     "stream drops it reconnects and resumes after the last event printed. Ends on SIGINT\n"
     "or SIGTERM, or after --count events.\n"
     "\n"
     "  --queue Q     events of queue Q (repeatable)\n"
     "  --type T      events of type T, e.g. job.completed, or job.* (repeatable)\n"
     "  --job ID      events of one job\n"
     "  --project P, --group G   events of jobs with this project / group\n"
     "  --since SEQ   first replay the kept events after SEQ\n"
     "  --count N     stop after N events\n"},
    {"wait", jobq_cli_wait,
     "Usage: jobq wait ID\n"
     "\n"
     "Follows job ID until it ends, drawing its progress (percent, stage, ETA) on stderr: a\n"
     "bar on a terminal, a line per change otherwise. Then prints the job. The ETA is the\n"
     "job's eta_ms when it reports one, else estimated from how fast its percent moves.\n"
     "\n"
     "Exit status: 0 completed; 1 failed, cancelled, or an error.\n"},
    {"top", jobq_cli_top,
     "Usage: jobq top [--interval MS] [--iterations N]\n"
     "\n"
     "A per-queue table, redrawn every interval: counts from /v1/stats, and enqueued,\n"
     "completed and failed jobs per second counted from the event stream.\n"
     "\n"
     "  --interval MS    redraw period (default 2000)\n"
     "  --iterations N   stop after N tables (default: until SIGINT)\n"},
    {"flow", jobq_cli_flow,
     "Usage: jobq flow create JSON|-|@FILE\n"
     "       jobq flow get ID\n"
     "       jobq flow list [--project P] [--limit N]\n"
     "       jobq flow cancel ID\n"
     "\n"
     "Submits a DAG of jobs by ref in one atomic request (POST /v1/flows), shows one, lists\n"
     "them newest first, or cancels every live job of one (active ones are asked to stop).\n"
     "The body: {\"name\"?, \"project\"?, \"on_parent_failure\"?: \"cancel\"|\"continue\",\n"
     "\"jobs\": [{\"ref\", \"queue\", \"data\"?, \"depends_on\"?: [refs], \"review\"?, …}]}.\n"},
    {"pipeline", jobq_cli_pipeline,
     "Usage: jobq pipeline create JSON|-|@FILE [--replace]\n"
     "       jobq pipeline list\n"
     "       jobq pipeline get|rm NAME\n"
     "       jobq pipeline run NAME [--project P] [--data JSON] [--flag F]... [--no-flag F]...\n"
     "                         [--group G] [--priority P]\n"
     "\n"
     "Stores a named template of stages ({\"name\", \"stages\": [{\"name\", \"queue\",\n"
     "\"review\"?, \"when\"?: FLAG, \"after\"?: [stages], job options…}]}), lists, shows or\n"
     "removes templates, or runs one: a flow whose stages with a `when` run only when\n"
     "--flag names it. --replace changes an existing template.\n"},
    {"approve", jobq_cli_approve,
     "Usage: jobq approve ID [--result JSON]\n"
     "\n"
     "Approves a job waiting in review: it completes (with JSON as its result, if given)\n"
     "and the jobs that depend on it run.\n"},
    {"reject", jobq_cli_reject,
     "Usage: jobq reject ID --reason TEXT [--notes JSON|TEXT] [--rerun]\n"
     "\n"
     "Rejects a job waiting in review: with --rerun it runs again and its worker sees the\n"
     "reason and notes in review_feedback; without, it fails (its dependants follow their\n"
     "on_parent_failure).\n"},
    {"workers", jobq_cli_workers,
     "Usage: jobq workers\n\nLists workers seen in the last minute.\n"},
    {"schedule", jobq_cli_schedule,
     "Usage: jobq schedule add NAME --queue Q (--cron EXPR | --every MS) [OPTIONS]\n"
     "       jobq schedule update NAME [OPTIONS]\n"
     "       jobq schedule list [--queue Q]\n"
     "       jobq schedule get|rm|pause|resume|trigger NAME\n"
     "\n"
     "Recurring jobs (docs/schedules.md). NAME may also be the schedule's id. trigger fires\n"
     "one run now and prints its job.\n"
     "\n"
     "Options of add and update:\n"
     "  --queue Q         the queue each run's job goes to\n"
     "  --cron EXPR       5 fields (minute hour day-of-month month day-of-week) or 6 with\n"
     "                    seconds first; names and @daily-style macros allowed\n"
     "  --every MS        instead of --cron: every MS milliseconds (at least 100)\n"
     "  --tz ZONE         IANA time zone of the cron fields (default UTC)\n"
     "  --data JSON       the job's data\n"
     "  --priority P      the job's priority (-1000..1000 or low|normal|high|urgent)\n"
     "  --job JSON        further job options (as for 'jobq add --options')\n"
     "  --start-at MS     no run before this time (ms since the epoch)\n"
     "  --end-at MS       no run after this time\n"
     "  --limit N         at most N runs\n"
     "  --no-overlap      skip a run while the previous run's job is still live\n"
     "  --overlap         (update) allow overlapping runs again\n"
     "  --paused          create it paused\n"
     "  --options JSON    further fields, merged into the request body\n"},
    {"webhook", jobq_cli_webhook,
     "Usage: jobq webhook add URL [--event TYPE …] [--queue Q …] [--project P]\n"
     "                            [--secret S] [--bearer TOKEN]\n"
     "       jobq webhook list\n"
     "       jobq webhook get|rm ID\n"
     "       jobq webhook deliveries ID [--limit N]\n"
     "\n"
     "Registers, lists, shows and deletes webhooks, and shows a webhook's recent deliveries\n"
     "(ID job:JOB_ID for the deliveries of a job's own webhook). See docs/webhooks.md.\n"
     "\n"
     "Options of add:\n"
     "  --event TYPE      an event type, job.* or * (repeatable; default *)\n"
     "  --queue Q         only events of this queue (repeatable)\n"
     "  --project P       only events of this project\n"
     "  --secret S        sign deliveries (X-Jobq-Signature: HMAC-SHA256)\n"
     "  --bearer TOKEN    send Authorization: Bearer TOKEN with each delivery\n"},
    {"worker", jobq_cli_worker,
     "Usage: jobq worker --queue Q [--queue Q2 …] [--concurrency N] [--lease-ms MS]\n"
     "                   [--capacity JSON] --exec CMD\n"
     "\n"
     "Fetches jobs and runs each with /bin/sh -c CMD in its own process group, the job's JSON\n"
     "on stdin and JOBQ_JOB_ID, JOBQ_ATTEMPT, JOBQ_QUEUE, JOBQ_URL in the environment.\n"
     "\n"
     "The command's stdout may carry:\n"
     "  PROGRESS <percent> [stage words]   reports progress\n"
     "  CHECKPOINT <json>                  saves a checkpoint for the next attempt\n"
     "  <json> as the last line            the job's result\n"
     "Its stderr lines become the job's log.\n"
     "\n"
     "Exit 0 completes the job; exit 75 (EX_TEMPFAIL) fails it for a retry; any other exit\n"
     "status or a signal fails it for good. A cancelled, timed-out or lost job's command gets\n"
     "SIGTERM, then SIGKILL after 5 s.\n"
     "\n"
     "Options:\n"
     "  --queue Q         queue to take jobs from (repeatable)\n"
     "  --concurrency N   jobs run at once (default 1)\n"
     "  --lease-ms MS     lease to keep per job (default: the job's lease_ms); heartbeats\n"
     "                    go every third of it\n"
     "  --capacity JSON   what this worker has, e.g. '{\"gpu\": 1, \"vram_mb\": 24000}':\n"
     "                    it gets only jobs whose requires fit in what is free\n"
     "  --exec CMD        the shell command\n"
     "\n"
     "SIGTERM or SIGINT stops fetching and waits for running commands; a second one\n"
     "terminates them.\n"},
};

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"url", required_argument, NULL, 'u'},
                                         {"token", required_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const struct command *cmd;
    struct jobq_cli cli = {0};
    int ch, rc;

    cli.url = getenv("JOBQ_URL");
    if (!cli.url || !*cli.url)
        cli.url = DEFAULT_URL;
    cli.token = getenv("JOBQ_TOKEN");
    if (cli.token && !*cli.token)
        cli.token = NULL;

    opterr = 0;
    /* '+': global options end at the command name; the command parses the rest. */
    while ((ch = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'u':
            cli.url = optarg;
            break;
        case 't':
            cli.token = optarg;
            break;
        case 'h':
            fputs(main_usage, stdout);
            return JOBQ_CLI_EXIT_OK;
        default:
            return jobq_cli_bad_option(NULL, argv, ch);
        }
    }
    if (optind >= argc)
        return jobq_cli_usage(NULL, "missing command");
    cmd = find_command(argv[optind]);
    if (!cmd)
        return jobq_cli_usage(NULL, "unknown command '%s'", argv[optind]);

    cli.client = jobq_client_new(cli.url);
    if (!cli.client) {
        if (strncmp(cli.url, "http://", 7) != 0 && strncmp(cli.url, "https://", 8) != 0)
            return jobq_cli_usage(NULL, "--url must start with http:// or https://, not '%s'",
                                  cli.url);
        return jobq_cli_out_of_memory();
    }
    if (cli.token && jobq_client_set_token(cli.client, cli.token) < 0) {
        jobq_client_free(cli.client);
        return jobq_cli_out_of_memory();
    }
    rc = cmd->run(&cli, argc - optind, argv + optind);
    if (fflush(stdout) != 0 && rc == JOBQ_CLI_EXIT_OK) {
        fprintf(stderr, "jobq: io: could not write the output\n");
        rc = JOBQ_CLI_EXIT_ERROR;
    }
    jobq_client_free(cli.client);
    return rc;
}
