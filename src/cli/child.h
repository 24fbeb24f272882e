/*
 * child.h — process plumbing for `jobq worker`: start a shell command in its own process
 * group with pipes on stdin/stdout/stderr, build its environment, and split what it writes
 * into lines.
 *
 * What it never does: speak to the server or decide what a line means (worker.c does).
 */
#ifndef JOBQ_CLI_CHILD_H
#define JOBQ_CLI_CHILD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The parent's ends of a child's standard streams: non-blocking, close-on-exec. */
struct jobq_child_io {
    int in;  /* write end of the child's stdin */
    int out; /* read end of the child's stdout */
    int err; /* read end of the child's stderr */
};

/*
 * Starts `/bin/sh -c command` (borrowed) with environment `envp` (borrowed) as the leader of
 * a new process group (its pgid is its pid), with default signal dispositions and an empty
 * signal mask, and no file descriptor but 0, 1, 2 inherited. Fills *pid and *io.
 * Returns 0, or a negative errno value when it could not (nothing is left open then).
 */
int jobq_child_spawn(const char *command, char *const envp[], pid_t *pid, struct jobq_child_io *io);

/*
 * Returns a new NULL-terminated environment: this process's environment without any
 * variable named in `names`, plus "names[i]=values[i]" for each of the `n` pairs (all
 * borrowed). NULL when out of memory. Free with jobq_child_env_free().
 */
char **jobq_child_env(const char *const *names, const char *const *values, size_t n);

/* Frees an environment from jobq_child_env(). Takes NULL. */
void jobq_child_env_free(char **env);

/* Splits a byte stream into lines. */
struct jobq_lines {
    char *buf;  /* the line being read */
    size_t len; /* bytes in buf */
    size_t cap; /* bytes allocated */
    size_t max; /* longest line kept, bytes; the rest of a longer line is dropped */
    bool cut;   /* the line being read went past max */
};

/* Called per line: `line` (borrowed, NUL-terminated, without "\n" or a trailing "\r") of
 * `len` bytes, made valid UTF-8 (each stray byte and NUL becomes '?'); `cut` when the line
 * was longer than max and lost its tail. */
typedef void jobq_lines_fn(void *arg, const char *line, size_t len, bool cut);

/* Starts an empty splitter that keeps lines up to `max` bytes. */
void jobq_lines_init(struct jobq_lines *l, size_t max);

/* Frees what the splitter holds. */
void jobq_lines_fini(struct jobq_lines *l);

/* Feeds `n` bytes of `data` (borrowed), calling `fn` for each line they complete.
 * Returns 0, or -1 when out of memory (the partial line is then dropped). */
int jobq_lines_feed(struct jobq_lines *l, const char *data, size_t n, jobq_lines_fn *fn, void *arg);

/* At end of stream: calls `fn` for a last line that had no newline, if any. */
void jobq_lines_end(struct jobq_lines *l, jobq_lines_fn *fn, void *arg);

#endif
