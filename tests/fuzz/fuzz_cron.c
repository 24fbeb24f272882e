/*
 * fuzz_cron.c — libFuzzer target for the cron matcher (src/util/cron.c).
 *
 * Input: byte 0 picks a zone, byte 1 a start time near a DST change (or an odd one), the
 * rest is the expression. Whatever parses must select some value in every field, and is
 * iterated a few fires, each checked: it is after the previous one, on a whole second, and
 * its local wall-clock time matches the expression, unless it is the first instant after a
 * spring-forward gap. In UTC (no gaps, no repeats) every second between two fires is also
 * checked not to match when they are less than two hours apart. A violation aborts. The
 * sanitizers catch the rest; the search's own bound keeps every input finite.
 *
 *   make fuzz FUZZ_TIME=300        a long run (corpus in build-fuzz/corpus-cron)
 *   make fuzz-smoke                what `make test` runs: the seed corpus and a short run
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cron.h"

static const char *const zones[] = {
    NULL,           "America/New_York", "Europe/Berlin",    "Australia/Lord_Howe",
    "Pacific/Apia", "Asia/Kathmandu",   "America/Sao_Paulo"};

/* ms since the epoch: around DST changes and calendar edges */
static const int64_t starts[] = {
    INT64_C(1772938800000),   /* 2026-03-08T03:00Z: before New York springs forward */
    INT64_C(1793500000000),   /* 2026-11-01: New York falls back */
    INT64_C(1774746000000),   /* 2026-03-29: Berlin springs forward */
    INT64_C(1792880000000),   /* 2026-10-25: Berlin falls back */
    INT64_C(1325160000000),   /* 2011-12-29: Apia skips a day */
    INT64_C(1709164800000),   /* 2024-02-29 */
    INT64_C(0),               /* the epoch */
    INT64_C(253402200000000), /* late 9999 */
};

static GTimeZone *zone(unsigned i)
{
    static GTimeZone *tz[sizeof zones / sizeof zones[0]];
    static int made[sizeof zones / sizeof zones[0]];

    i %= sizeof zones / sizeof zones[0];
    if (!made[i]) {
        tz[i] = zones[i] ? g_time_zone_new_identifier(zones[i]) : NULL;
        made[i] = 1;
    }
    return tz[i];
}

static void check(int ok, const char *what, const char *text, int64_t t)
{
    if (!ok) {
        fprintf(stderr, "fuzz_cron: %s: '%s' at %lld\n", what, text, (long long)t);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[JOBQ_CRON_MAX_TEXT + 2], why[256];
    jobq_cron c;
    GTimeZone *tz;
    int64_t t, prev;
    size_t n;

    if (size < 2)
        return 0;
    tz = zone(data[0]);
    prev = t = starts[data[1] % (sizeof starts / sizeof starts[0])] + (data[1] >> 3) * 7919;
    n = size - 2 < sizeof text - 1 ? size - 2 : sizeof text - 1;
    memcpy(text, data + 2, n);
    text[n] = '\0';
    if (jobq_cron_parse(text, &c, why, sizeof why)) {
        check(why[0] != '\0', "refused without a reason", text, 0);
        return 0;
    }
    /* an expression that parses selects at least one value in every field */
    check(c.sec && c.min && c.hour && c.dom && c.mon && c.dow, "a field selects nothing", text, 0);
    for (int i = 0; i < 4; i++) {
        int64_t s, wall;
        t = jobq_cron_next(&c, tz, prev);
        if (t < 0)
            break;
        check(t > prev, "fire not after the previous", text, t);
        check(t % 1000 == 0, "fire not on a whole second", text, t);
        s = t / 1000;
        wall = s + jobq_cron_offset(tz, s);
        check(jobq_cron_matches(&c, wall) || jobq_cron_offset(tz, s - 1) < jobq_cron_offset(tz, s),
              "fire at a wall time that does not match", text, t);
        if (!tz && t - prev < 7200000)
            for (int64_t x = prev / 1000 + 1; x < s; x++)
                check(!jobq_cron_matches(&c, x), "a matching second was skipped", text, x);
        prev = t;
    }
    return 0;
}
