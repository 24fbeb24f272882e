/*
 * child.c — starting a job's command and reading what it writes (see child.h).
 *
 * posix_spawn() rather than fork(): the worker has a second thread (the fetch long-poll), and
 * posix_spawn sets up the process group, signal state and descriptors without running any
 * of our code in a half-copied multithreaded process.
 *
 * What it never does: wait for, signal or judge the child; worker.c owns its life.
 */
#include "cli/child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static void close_pair(int p[2])
{
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
    p[0] = p[1] = -1;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

int jobq_child_spawn(const char *command, char *const envp[], pid_t *pid, struct jobq_child_io *io)
{
    int inp[2] = {-1, -1}, outp[2] = {-1, -1}, errp[2] = {-1, -1};
    char *argv[] = {"sh", "-c", (char *)command, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t defaults, none;
    int rc;

    if (pipe2(inp, O_CLOEXEC) < 0 || pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
        rc = -errno;
        goto out_pipes;
    }
    rc = -posix_spawn_file_actions_init(&fa);
    if (rc)
        goto out_pipes;
    rc = -posix_spawnattr_init(&attr);
    if (rc)
        goto out_actions;

    if ((rc = -posix_spawn_file_actions_adddup2(&fa, inp[0], 0)) ||
        (rc = -posix_spawn_file_actions_adddup2(&fa, outp[1], 1)) ||
        (rc = -posix_spawn_file_actions_adddup2(&fa, errp[1], 2)) ||
        (rc = -posix_spawn_file_actions_addclosefrom_np(&fa, 3)))
        goto out_attr;

    /* The worker ignores SIGPIPE and handles the others; the command gets them plain. */
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGCHLD);
    sigaddset(&defaults, SIGHUP);
    sigemptyset(&none);
    if ((rc = -posix_spawnattr_setsigdefault(&attr, &defaults)) ||
        (rc = -posix_spawnattr_setsigmask(&attr, &none)) ||
        (rc = -posix_spawnattr_setpgroup(&attr, 0)) ||
        (rc = -posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF |
                                                   POSIX_SPAWN_SETSIGMASK)))
        goto out_attr;

    rc = -posix_spawn(pid, "/bin/sh", &fa, &attr, argv, envp);
    if (rc)
        goto out_attr;

    close(inp[0]);
    close(outp[1]);
    close(errp[1]);
    io->in = inp[1];
    io->out = outp[0];
    io->err = errp[0];
    /* Failing to make a pipe non-blocking only risks a stall, never a wrong result. */
    set_nonblock(io->in);
    set_nonblock(io->out);
    set_nonblock(io->err);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return 0;

out_attr:
    posix_spawnattr_destroy(&attr);
out_actions:
    posix_spawn_file_actions_destroy(&fa);
out_pipes:
    close_pair(inp);
    close_pair(outp);
    close_pair(errp);
    return rc ? rc : -EINVAL;
}

/* Whether `entry` ("NAME=value") names one of `names`. */
static bool named(const char *entry, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(names[i]);

        if (strncmp(entry, names[i], len) == 0 && entry[len] == '=')
            return true;
    }
    return false;
}

char **jobq_child_env(const char *const *names, const char *const *values, size_t n)
{
    size_t count = 0, k = 0;
    char **env;

    while (environ && environ[count])
        count++;
    env = calloc(count + n + 1, sizeof(*env));
    if (!env)
        return NULL;
    for (size_t i = 0; i < count; i++) {
        if (named(environ[i], names, n))
            continue;
        env[k] = strdup(environ[i]);
        if (!env[k])
            goto out_env;
        k++;
    }
    for (size_t i = 0; i < n; i++) {
        if (asprintf(&env[k], "%s=%s", names[i], values[i]) < 0) {
            env[k] = NULL;
            goto out_env;
        }
        k++;
    }
    return env;

out_env:
    jobq_child_env_free(env);
    return NULL;
}

void jobq_child_env_free(char **env)
{
    if (!env)
        return;
    for (char **p = env; *p; p++)
        free(*p);
    free(env);
}

void jobq_lines_init(struct jobq_lines *l, size_t max)
{
    memset(l, 0, sizeof(*l));
    l->max = max;
}

void jobq_lines_fini(struct jobq_lines *l)
{
    free(l->buf);
    memset(l, 0, sizeof(*l));
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;

    if (s[0] >= 0x01 && s[0] <= 0x7F)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        len = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        len = 3;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        len = 4;
    else
        return 0;
    if (s[0] == 0xE0)
        lo = 0xA0; /* overlong */
    else if (s[0] == 0xED)
        hi = 0x9F; /* surrogates */
    else if (s[0] == 0xF0)
        lo = 0x90; /* overlong */
    else if (s[0] == 0xF4)
        hi = 0x8F; /* past U+10FFFF */
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

/* Makes `s` valid UTF-8 without NUL bytes in place: every byte that starts no valid
 * sequence becomes '?'. JSON strings must be UTF-8, and a command may write anything. */
static void utf8_fix(char *s, size_t n)
{
    unsigned char *p = (unsigned char *)s;
    size_t i = 0, k;

    while (i < n) {
        k = utf8_seq(p + i, n - i);
        if (k == 0) {
            p[i] = '?';
            k = 1;
        }
        i += k;
    }
}

static void emit(struct jobq_lines *l, jobq_lines_fn *fn, void *arg)
{
    static char empty[] = "";
    char *line = l->buf ? l->buf : empty;

    if (l->len > 0 && line[l->len - 1] == '\r')
        l->len--;
    line[l->len] = '\0';
    utf8_fix(line, l->len);
    fn(arg, line, l->len, l->cut);
    l->len = 0;
    l->cut = false;
}

int jobq_lines_feed(struct jobq_lines *l, const char *data, size_t n, jobq_lines_fn *fn, void *arg)
{
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl ? (size_t)(nl - data) : n;
        size_t keep = take;

        if (l->len + keep > l->max) {
            keep = l->max > l->len ? l->max - l->len : 0;
            l->cut = true;
        }
        if (l->len + keep + 1 > l->cap) {
            size_t cap = l->cap ? l->cap : 256;
            char *buf;

            while (cap < l->len + keep + 1)
                cap *= 2;
            buf = realloc(l->buf, cap);
            if (!buf) {
                l->len = 0;
                l->cut = false;
                return -1;
            }
            l->buf = buf;
            l->cap = cap;
        }
        memcpy(l->buf + l->len, data, keep);
        l->len += keep;
        if (!nl)
            break;
        emit(l, fn, arg);
        data = nl + 1;
        n -= take + 1;
    }
    return 0;
}

void jobq_lines_end(struct jobq_lines *l, jobq_lines_fn *fn, void *arg)
{
    if (l->len > 0 || l->cut)
        emit(l, fn, arg);
}
