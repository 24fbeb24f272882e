/*
 * test_cron.c — the cron matcher (src/util/cron.c): every field form, names, macros, the
 * Vixie day-of-month/day-of-week rule, seconds, errors naming their field, dates that never
 * come, and next-fire times across DST changes in two zones.
 */
#include <criterion/criterion.h>
#include <glib.h>
#include <inttypes.h>
#include <string.h>

#include "util/cron.h"

/* ms since the epoch of an ISO 8601 UTC time. */
static int64_t at(const char *iso)
{
    GDateTime *d = g_date_time_new_from_iso8601(iso, NULL);
    int64_t t;

    cr_assert_not_null(d, "bad ISO time %s", iso);
    t = g_date_time_to_unix(d) * 1000;
    g_date_time_unref(d);
    return t;
}

static jobq_cron parse_ok(const char *text)
{
    jobq_cron c;
    char why[256] = "";

    cr_assert_eq(jobq_cron_parse(text, &c, why, sizeof why), 0, "parse(%s): %s", text, why);
    return c;
}

/* The next n fires of `text` in zone tz (NULL = UTC) after `from`, as ISO UTC times. */
static void expect_fires(const char *text, const char *tzname, const char *from,
                         const char *const *want, size_t n)
{
    jobq_cron c = parse_ok(text);
    GTimeZone *tz = tzname ? g_time_zone_new_identifier(tzname) : NULL;
    int64_t t = at(from);

    cr_assert(!tzname || tz, "no zone %s on this system", tzname);
    for (size_t i = 0; i < n; i++) {
        int64_t w = at(want[i]);
        t = jobq_cron_next(&c, tz, t);
        cr_assert_eq(t, w, "%s in %s: fire %zu is %" PRId64 ", want %s (%" PRId64 ")", text,
                     tzname ? tzname : "UTC", i, t, want[i], w);
    }
    if (tz)
        g_time_zone_unref(tz);
}

#define FIRES(text, tz, from, ...)                                                                 \
    do {                                                                                           \
        static const char *const w_[] = {__VA_ARGS__};                                             \
        expect_fires(text, tz, from, w_, G_N_ELEMENTS(w_));                                        \
    } while (0)

static void expect_error(const char *text, const char *needle)
{
    jobq_cron c;
    char why[256] = "";

    cr_assert_eq(jobq_cron_parse(text, &c, why, sizeof why), -1, "parse(%s) succeeded", text);
    cr_assert(strstr(why, needle), "parse(%s): '%s' lacks '%s'", text, why, needle);
}

Test(cron, field_forms)
{
    jobq_cron c = parse_ok("5,10-12,20-30/5,*/20,50/4 * * * *");

    cr_assert_eq(c.sec, 1); /* five fields: second 0 */
    cr_assert_eq(c.min, (UINT64_C(1) << 5) | (UINT64_C(7) << 10) | (UINT64_C(1) << 20) |
                            (UINT64_C(1) << 25) | (UINT64_C(1) << 30) | (UINT64_C(1) << 0) |
                            (UINT64_C(1) << 40) | (UINT64_C(1) << 50) | (UINT64_C(1) << 54) |
                            (UINT64_C(1) << 58));
    c = parse_ok("*/15 0 1 1 0");
    cr_assert_eq(c.min, (UINT64_C(1) << 0) | (UINT64_C(1) << 15) | (UINT64_C(1) << 30) |
                            (UINT64_C(1) << 45));
    cr_assert_eq(c.hour, 1u << 0);
    cr_assert_eq(c.dom, 1u << 1);
    cr_assert_eq(c.mon, 1u << 1);
    cr_assert_eq(c.dow, 1u << 0);
    cr_assert(!c.dom_star && !c.dow_star);
    c = parse_ok("0 0 1-31/2 2/3 *");
    cr_assert_eq(c.dom, 0xAAAAAAAAu); /* odd days 1..31 */
    cr_assert_eq(c.mon, (1u << 2) | (1u << 5) | (1u << 8) | (1u << 11));
    cr_assert(c.dow_star);
}

Test(cron, six_fields_put_seconds_first)
{
    jobq_cron c = parse_ok("30 15 10 * * *");

    cr_assert_eq(c.sec, UINT64_C(1) << 30);
    cr_assert_eq(c.min, UINT64_C(1) << 15);
    cr_assert_eq(c.hour, 1u << 10);
    FIRES("*/20 * * * * *", NULL, "2026-01-01T00:00:05Z", "2026-01-01T00:00:20Z",
          "2026-01-01T00:00:40Z", "2026-01-01T00:01:00Z");
}

Test(cron, names_any_case_and_sunday_seven)
{
    jobq_cron a = parse_ok("0 0 * JAN-mar,Dec sun,Tue-THU");
    jobq_cron b = parse_ok("0 0 * 1-3,12 0,2-4");
    jobq_cron c = parse_ok("0 0 * * 7");
    jobq_cron d = parse_ok("0 0 * * 0");
    jobq_cron e = parse_ok("0 0 * * 5-7");

    cr_assert_eq(a.mon, b.mon);
    cr_assert_eq(a.dow, b.dow);
    cr_assert_eq(c.dow, d.dow);
    cr_assert_eq(e.dow, (1u << 5) | (1u << 6) | 1u);
    /* 7/STEP starts past the last weekday 6: it is Sunday, not an empty set */
    cr_assert_eq(parse_ok("0 0 * * 7/2").dow, 1u);
    cr_assert_eq(parse_ok("0 0 * * sun/3").dow, (1u << 0) | (1u << 3) | (1u << 6));
}

Test(cron, macros)
{
    static const struct {
        const char *macro, *expr;
    } m[] = {{"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
             {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
             {"@hourly", "0 * * * *"}};

    for (size_t i = 0; i < G_N_ELEMENTS(m); i++) {
        jobq_cron x = parse_ok(m[i].macro), y = parse_ok(m[i].expr);
        cr_assert(memcmp(&x, &y, sizeof x) == 0, "%s differs from %s", m[i].macro, m[i].expr);
    }
    FIRES("@weekly", NULL, "2026-03-04T12:00:00Z", "2026-03-08T00:00:00Z", "2026-03-15T00:00:00Z");
    FIRES("@yearly", NULL, "2026-03-04T12:00:00Z", "2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z");
    expect_error("@reboot", "unknown macro");
    expect_error("@daily 5", "unknown macro");
}

Test(cron, day_of_month_or_day_of_week_as_vixie)
{
    /* both restricted: the 13th or any Friday */
    FIRES("0 0 13 * fri", NULL, "2026-02-01T00:00:00Z", "2026-02-06T00:00:00Z",
          "2026-02-13T00:00:00Z", "2026-02-20T00:00:00Z", "2026-02-27T00:00:00Z",
          "2026-03-06T00:00:00Z", "2026-03-13T00:00:00Z");
    /* day-of-week "*": the 13th only */
    FIRES("0 0 13 * *", NULL, "2026-02-01T00:00:00Z", "2026-02-13T00:00:00Z",
          "2026-03-13T00:00:00Z");
    /* day-of-month "*": Fridays only */
    FIRES("0 0 * * 5", NULL, "2026-02-01T00:00:00Z", "2026-02-06T00:00:00Z",
          "2026-02-13T00:00:00Z");
    /* a field starting with '*' counts as unrestricted for the rule (Vixie's DOM_STAR):
     * "every 10th day" is the 1st, 11th, 21st, 31st, and it must also be a Monday */
    FIRES("0 0 */10 * mon", NULL, "2026-01-01T00:00:00Z", "2026-05-11T00:00:00Z",
          "2026-06-01T00:00:00Z", "2026-08-31T00:00:00Z");
}

Test(cron, rare_and_impossible_dates)
{
    jobq_cron c = parse_ok("0 0 30 2 *");
    GTimeZone *ny = g_time_zone_new_identifier("America/New_York");

    FIRES("0 0 29 2 *", NULL, "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z",
          "2032-02-29T00:00:00Z");
    cr_assert_eq(jobq_cron_next(&c, NULL, at("2026-01-01T00:00:00Z")), -1);
    cr_assert_eq(jobq_cron_next(&c, ny, at("2026-01-01T00:00:00Z")), -1);
    c = parse_ok("0 0 31 4,6,9,11 *");
    cr_assert_eq(jobq_cron_next(&c, NULL, at("2026-01-01T00:00:00Z")), -1);
    g_time_zone_unref(ny);
}

Test(cron, errors_name_the_field)
{
    expect_error("61 * * * *", "minute: '61' is out of range 0-59");
    expect_error("* 24 * * *", "hour");
    expect_error("* * 0 * *", "day-of-month");
    expect_error("* * * 13 *", "month");
    expect_error("* * * * 8", "day-of-week");
    expect_error("60 * * * * *", "second");
    expect_error("* * * *", "want 5 fields");
    expect_error("* * * * * * *", "more than 6 fields");
    expect_error("", "want 5 fields");
    expect_error("5-1 * * * *", "goes backwards");
    expect_error("*/0 * * * *", "step of 1 or more");
    expect_error("*/ * * * *", "step of 1 or more");
    expect_error("1,,2 * * * *", "empty list item");
    expect_error("1, * * * *", "empty list item");
    expect_error("* * * foo *", "month name");
    expect_error("* * * * monday", "day name");
    expect_error("a * * * *", "not a number");
    expect_error("*-5 * * * *", "unexpected");
    expect_error("99999 * * * *", "not a number");
}

Test(cron, dst_new_york)
{
    /* spring forward 2026-03-08 02:00 EST → 03:00 EDT: 02:30 does not exist that day and
     * fires once, at 03:00 EDT (07:00Z) */
    FIRES("30 2 * * *", "America/New_York", "2026-03-05T00:00:00Z", "2026-03-05T07:30:00Z",
          "2026-03-06T07:30:00Z", "2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z",
          "2026-03-09T06:30:00Z", "2026-03-10T06:30:00Z", "2026-03-11T06:30:00Z");
    /* fall back 2026-11-01 02:00 EDT → 01:00 EST: 01:30 occurs twice and fires once, at the
     * first (EDT) */
    FIRES("30 1 * * *", "America/New_York", "2026-10-29T00:00:00Z", "2026-10-29T05:30:00Z",
          "2026-10-30T05:30:00Z", "2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z",
          "2026-11-02T06:30:00Z", "2026-11-03T06:30:00Z", "2026-11-04T06:30:00Z");
}

Test(cron, dst_berlin)
{
    /* 2026-03-29 02:00 CET → 03:00 CEST */
    FIRES("30 2 * * *", "Europe/Berlin", "2026-03-26T00:00:00Z", "2026-03-26T01:30:00Z",
          "2026-03-27T01:30:00Z", "2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z",
          "2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z", "2026-04-01T00:30:00Z");
    /* 2026-10-25 03:00 CEST → 02:00 CET: 02:30 once, in CEST */
    FIRES("30 2 * * *", "Europe/Berlin", "2026-10-22T00:00:00Z", "2026-10-22T00:30:00Z",
          "2026-10-23T00:30:00Z", "2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z",
          "2026-10-26T01:30:00Z", "2026-10-27T01:30:00Z", "2026-10-28T01:30:00Z");
    /* every 20 minutes through the repeated hour: each wall time once, so the second
     * 02:00-02:59 (CET) makes none */
    FIRES("*/20 * * * *", "Europe/Berlin", "2026-10-25T00:10:00Z", "2026-10-25T00:20:00Z",
          "2026-10-25T00:40:00Z", "2026-10-25T02:00:00Z", "2026-10-25T02:20:00Z");
    /* every 20 minutes through the gap: 02:00, 02:20, 02:40 collapse into one fire at 03:00 */
    FIRES("*/20 * * * *", "Europe/Berlin", "2026-03-29T00:30:00Z", "2026-03-29T00:40:00Z",
          "2026-03-29T01:00:00Z", "2026-03-29T01:20:00Z");
}

Test(cron, fires_strictly_after_on_whole_seconds)
{
    jobq_cron c = parse_ok("* * * * * *");
    int64_t t = at("2026-01-01T00:00:00Z");

    cr_assert_eq(jobq_cron_next(&c, NULL, t), t + 1000);
    cr_assert_eq(jobq_cron_next(&c, NULL, t + 1), t + 1000);
    cr_assert_eq(jobq_cron_next(&c, NULL, t + 999), t + 1000);
    cr_assert_eq(jobq_cron_next(&c, NULL, -5), -1);
}
