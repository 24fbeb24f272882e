/*
 * cron.h — cron expressions: parsed into bitsets, matched on local wall-clock fields.
 *
 * Syntax (docs/schedules.md): 5 fields "minute hour day-of-month month day-of-week", or 6
 * with a leading "second"; each field a comma list of `*`, `N`, `N-M`, with an optional
 * `/STEP` (`N/STEP` means N to the field's maximum); month and weekday names (jan…dec,
 * sun…sat, any case); weekday 7 is Sunday; the macros @yearly @annually @monthly @weekly
 * @daily @midnight @hourly. Day-of-month and day-of-week follow Vixie cron: when both are
 * restricted (neither starts with `*`) a day matches if either does, otherwise both must.
 *
 * Times are local wall-clock times in a GTimeZone (GLib reads the system's IANA tz
 * database), so DST is handled the way cron users expect: a time that does not exist on a
 * spring-forward day fires once, at the first instant after the gap; a time that occurs
 * twice on a fall-back day fires once, at its first occurrence.
 *
 * Why written here: Debian packages no C library that parses and iterates cron expressions
 * (only Go, Perl and Python ones). The parser is fuzzed (tests/fuzz/fuzz_cron.c).
 * What it never does: allocate, read a clock, or loop without a bound.
 */
#ifndef JOBQ_CRON_H
#define JOBQ_CRON_H

#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#define JOBQ_CRON_MAX_TEXT 256 /* longest expression accepted, in bytes */

typedef struct jobq_cron {
    uint64_t sec;               /* bit n: second n (0..59) */
    uint64_t min;               /* bit n: minute n (0..59) */
    uint32_t hour;              /* bit n: hour n (0..23) */
    uint32_t dom;               /* bit n: day of month n (1..31) */
    uint16_t mon;               /* bit n: month n (1..12) */
    uint8_t dow;                /* bit n: weekday n (0..6, Sunday 0) */
    uint8_t dom_star, dow_star; /* the field starts with '*': the OR rule does not apply */
} jobq_cron;

/* Parses `text` into c. 0, or -1 with why[] (whylen bytes) saying which field is wrong and
 * how, e.g. "minute: 61 is out of range 0-59". */
int jobq_cron_parse(const char *text, jobq_cron *c, char *why, size_t whylen);

/* The first fire time strictly after `after` (ms since the epoch), in ms since the epoch,
 * always on a whole second; tz NULL means UTC (tz is borrowed). -1 when there is none
 * within JOBQ_CRON_HORIZON_YEARS (an expression such as "0 0 30 2 *" never fires). */
#define JOBQ_CRON_HORIZON_YEARS 30
int64_t jobq_cron_next(const jobq_cron *c, GTimeZone *tz, int64_t after);

/* 1 when the local wall-clock time `wall` (seconds since the epoch as if the zone were UTC)
 * matches c. For tests and the fuzzer's cross-check. */
int jobq_cron_matches(const jobq_cron *c, int64_t wall);

/* The zone's offset from UTC in seconds at instant t (seconds since the epoch). */
int32_t jobq_cron_offset(GTimeZone *tz, int64_t t);

#endif
