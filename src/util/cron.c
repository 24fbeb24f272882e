/*
 * cron.c — parsing cron expressions into bitsets, and finding the next fire time.
 *
 * The search walks local wall-clock time (seconds counted as if the zone were UTC) with
 * proleptic Gregorian date arithmetic, jumping from a failing field straight to the next
 * value its bitset allows (a wrong month skips the month, a wrong hour to the next allowed
 * hour), and stops at a horizon. Each matching wall time is then turned into an instant:
 * the earlier one when the wall time occurs twice (fall-back), the end of the gap when it
 * does not occur (spring-forward). Because that mapping never goes backwards, the first
 * matching wall time whose instant lies after `after` is the answer, and a wall time
 * repeated by a fall-back can never fire a second time.
 */
#include "util/cron.h"

#include <stdio.h>
#include <string.h>

enum { F_SEC, F_MIN, F_HOUR, F_DOM, F_MON, F_DOW };

static const struct {
    const char *name;
    int lo, hi;
} fields[] = {
    {"second", 0, 59},       {"minute", 0, 59}, {"hour", 0, 23},
    {"day-of-month", 1, 31}, {"month", 1, 12},  {"day-of-week", 0, 7},
};

static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                     "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const days[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static const struct {
    const char *name, *expr;
} macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

/* ---------------------------------------------------------------- parsing */

/* One value of field f at *p: digits or (month, weekday) a three-letter name. */
static int parse_value(int f, const char **p, int *out)
{
    const char *s = *p;

    if (*s >= '0' && *s <= '9') {
        int v = 0, n = 0;
        while (*s >= '0' && *s <= '9') {
            if (++n > 4)
                return -1;
            v = v * 10 + (*s++ - '0');
        }
        *out = v;
        *p = s;
        return 0;
    }
    if (f == F_MON || f == F_DOW) {
        const char *const *names = f == F_MON ? months : days;
        int n = f == F_MON ? 12 : 7;
        for (int i = 0; i < n; i++) {
            if (g_ascii_strncasecmp(s, names[i], 3) == 0 &&
                !g_ascii_isalpha(s[3])) { /* "mon" but not "monday" */
                *out = f == F_MON ? i + 1 : i;
                *p = s + 3;
                return 0;
            }
        }
    }
    return -1;
}

static void set_bit(jobq_cron *c, int f, int v)
{
    switch (f) {
    case F_SEC:
        c->sec |= UINT64_C(1) << v;
        break;
    case F_MIN:
        c->min |= UINT64_C(1) << v;
        break;
    case F_HOUR:
        c->hour |= UINT32_C(1) << v;
        break;
    case F_DOM:
        c->dom |= UINT32_C(1) << v;
        break;
    case F_MON:
        c->mon |= (uint16_t)(1u << v);
        break;
    default:
        c->dow |= (uint8_t)(1u << (v % 7)); /* 7 is Sunday too */
    }
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(why, whylen, __VA_ARGS__);                                                        \
        return -1;                                                                                 \
    } while (0)

/* One field's text s[0..len) into c. */
static int parse_field(int f, const char *s, size_t len, jobq_cron *c, char *why, size_t whylen)
{
    const char *name = fields[f].name, *end = s + len;
    int lo = fields[f].lo, hi = fields[f].hi;
    char item[JOBQ_CRON_MAX_TEXT + 1];

    while (s < end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        size_t n = (size_t)((comma ? comma : end) - s);
        const char *p = item;
        int a, b, step = 1, star = 0, range = 0;

        memcpy(item, s, n);
        item[n] = '\0';
        if (n == 0)
            FAIL("%s: empty list item", name);
        if (*p == '*') {
            a = lo;
            b = hi == 7 ? 6 : hi;
            p++;
            star = 1;
        } else {
            if (parse_value(f, &p, &a))
                FAIL("%s: '%s' is not a number%s", name, item,
                     f == F_MON   ? " or a month name (jan-dec)"
                     : f == F_DOW ? " or a day name (sun-sat)"
                                  : "");
            b = a;
            if (*p == '-') {
                p++;
                range = 1;
                if (parse_value(f, &p, &b))
                    FAIL("%s: '%s' has a bad range end", name, item);
            }
            if (a < lo || a > hi || b < lo || b > hi)
                FAIL("%s: '%s' is out of range %d-%d", name, item, lo, hi);
            if (a > b)
                FAIL("%s: range '%s' goes backwards", name, item);
        }
        if (*p == '/') {
            int n2 = 0;
            p++;
            step = 0;
            while (*p >= '0' && *p <= '9' && n2++ < 4)
                step = step * 10 + (*p++ - '0');
            if (n2 == 0 || step < 1)
                FAIL("%s: '%s' needs a step of 1 or more after '/'", name, item);
            if (!star && !range) /* N/STEP: from N to the field's maximum (7/S: Sunday) */
                b = MAX(a, hi == 7 ? 6 : hi);
        }
        if (*p)
            FAIL("%s: unexpected '%s' in '%s'", name, p, item);
        for (int v = a; v <= b; v += step)
            set_bit(c, f, v);
        s += n + (comma ? 1 : 0);
        if (comma && s == end)
            FAIL("%s: empty list item", name);
    }
    return 0;
}

int jobq_cron_parse(const char *text, jobq_cron *c, char *why, size_t whylen)
{
    const char *p = text, *start[7];
    size_t len[7], n = 0;

    memset(c, 0, sizeof *c);
    if (strlen(text) > JOBQ_CRON_MAX_TEXT)
        FAIL("expression: longer than %d bytes", JOBQ_CRON_MAX_TEXT);
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '@') {
        size_t ml = strcspn(p, " \t");
        const char *rest = p + ml;
        while (*rest == ' ' || *rest == '\t')
            rest++;
        for (size_t i = 0; i < G_N_ELEMENTS(macros); i++)
            if (!*rest && strlen(macros[i].name) == ml &&
                g_ascii_strncasecmp(p, macros[i].name, ml) == 0)
                return jobq_cron_parse(macros[i].expr, c, why, whylen);
        FAIL("expression: unknown macro (use @yearly, @annually, @monthly, @weekly, @daily, "
             "@midnight or @hourly)");
    }
    while (*p) {
        if (n == 6)
            FAIL("expression: more than 6 fields");
        start[n] = p;
        len[n] = strcspn(p, " \t");
        p += len[n++];
        while (*p == ' ' || *p == '\t')
            p++;
    }
    if (n != 5 && n != 6)
        FAIL("expression: want 5 fields (minute hour day-of-month month day-of-week) or 6 "
             "(with seconds first), got %zu",
             n);
    if (n == 5)
        c->sec = 1; /* second 0 */
    for (size_t i = 0; i < n; i++) {
        int f = (int)i + (n == 5 ? 1 : 0);
        if (parse_field(f, start[i], len[i], c, why, whylen))
            return -1;
        if (f == F_DOM)
            c->dom_star = start[i][0] == '*';
        else if (f == F_DOW)
            c->dow_star = start[i][0] == '*';
    }
    return 0;
}

/* ---------------------------------------------------------------- calendar
 * Days since 1970-01-01 ↔ proleptic Gregorian dates (the well-known era-based algorithm:
 * 400-year eras of 146097 days, years starting in March so leap days come last). */

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = floor_div(y, 400);
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = floor_div(z, 146097);
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int day_matches(const jobq_cron *c, int64_t day, unsigned dom)
{
    int wd = (int)(day + 4 - floor_div(day + 4, 7) * 7); /* 1970-01-01 was a Thursday */
    int a = (c->dom >> dom) & 1, b = (c->dow >> wd) & 1;

    return c->dom_star || c->dow_star ? a && b : a || b;
}

/* The lowest set bit of `bits` at or above `from`, or -1. */
static int next_bit(uint64_t bits, int from)
{
    if (from > 63)
        return -1;
    bits &= ~UINT64_C(0) << from;
    return bits ? __builtin_ctzll(bits) : -1;
}

int jobq_cron_matches(const jobq_cron *c, int64_t wall)
{
    int64_t day = floor_div(wall, 86400), sod = wall - day * 86400, y;
    unsigned m, d;

    civil_from_days(day, &y, &m, &d);
    return (c->mon >> m & 1) && day_matches(c, day, d) && (c->hour >> (sod / 3600) & 1) &&
           (c->min >> (sod % 3600 / 60) & 1) && (c->sec >> (sod % 60) & 1);
}

/* The first wall time >= w that matches c, or -1 past `limit`. Every step moves w forward
 * to the next value the failing field allows, so the walk is short even for rare dates. */
static int64_t next_wall(const jobq_cron *c, int64_t w, int64_t limit)
{
    while (w <= limit) {
        int64_t day = floor_div(w, 86400), base = day * 86400, sod = w - base, y;
        int h = (int)(sod / 3600), mi = (int)(sod % 3600 / 60), s = (int)(sod % 60), n;
        unsigned m, d;

        civil_from_days(day, &y, &m, &d);
        if (!(c->mon >> m & 1)) {
            w = 86400 * (m == 12 ? days_from_civil(y + 1, 1, 1) : days_from_civil(y, m + 1, 1));
        } else if (!day_matches(c, day, d)) {
            w = base + 86400;
        } else if (!(c->hour >> h & 1)) {
            n = next_bit(c->hour, h + 1);
            w = n < 0 ? base + 86400 : base + 3600 * n;
        } else if (!(c->min >> mi & 1)) {
            n = next_bit(c->min, mi + 1);
            w = n < 0 ? base + 3600 * (h + 1) : base + 3600 * h + 60 * n;
        } else if (!(c->sec >> s & 1)) {
            n = next_bit(c->sec, s + 1);
            w = n < 0 ? base + 3600 * h + 60 * (mi + 1) : base + 3600 * h + 60 * mi + n;
        } else {
            return w;
        }
    }
    return -1;
}

/* ---------------------------------------------------------------- time zones */

int32_t jobq_cron_offset(GTimeZone *tz, int64_t t)
{
    gint i;

    if (!tz)
        return 0;
    i = g_time_zone_find_interval(tz, G_TIME_TYPE_UNIVERSAL, t);
    return i < 0 ? 0 : g_time_zone_get_offset(tz, i);
}

/* The instant of wall time w: the earliest instant whose local time is w, or, when w falls
 * in a gap, the first instant after the gap. Offsets a day either side of w bound every
 * candidate (zones change their offset at most once in two days). */
static int64_t wall_to_instant(GTimeZone *tz, int64_t w)
{
    int64_t o[3], best = INT64_MAX, lo, hi, omin, omax;

    if (!tz)
        return w;
    o[0] = jobq_cron_offset(tz, w - 86400);
    o[1] = jobq_cron_offset(tz, w);
    o[2] = jobq_cron_offset(tz, w + 86400);
    omin = omax = o[0];
    for (int i = 0; i < 3; i++) {
        int64_t t = w - o[i];
        if (t + jobq_cron_offset(tz, t) == w && t < best)
            best = t;
        omin = MIN(omin, o[i]);
        omax = MAX(omax, o[i]);
    }
    if (best != INT64_MAX)
        return best;
    /* a gap: the first instant whose local time is past w */
    lo = w - omax;
    hi = w - omin;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (mid + jobq_cron_offset(tz, mid) > w)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* Years 1970..9999 in seconds: the range the search works in. */
#define MAX_SECONDS INT64_C(253402300799)

int64_t jobq_cron_next(const jobq_cron *c, GTimeZone *tz, int64_t after)
{
    int64_t a = floor_div(after, 1000), w, limit;

    if (a < 0 || a > MAX_SECONDS)
        return -1;
    w = a + jobq_cron_offset(tz, a) + 1;
    limit = MIN(MAX_SECONDS, w + INT64_C(86400) * 366 * JOBQ_CRON_HORIZON_YEARS);
    /* wall times already passed (those a fall-back repeats) map to instants <= a: skip
     * them; there are at most a day's worth, and next_wall always moves forward */
    while ((w = next_wall(c, w, limit)) >= 0) {
        int64_t t = wall_to_instant(tz, w);
        if (t > a)
            return t * 1000;
        w++;
    }
    return -1;
}
