/*
 * jvalid.c — is this text exactly one JSON value (RFC 8259)? Nothing is built.
 *
 * Written by hand because it runs on every enqueued payload: jansson, which jobq uses for
 * everything else, spends about 100 instructions per byte building a tree the server then
 * throws away (it keeps payloads as text); this check takes a few per byte. It accepts what
 * jansson accepts, with two differences that only widen what is stored faithfully: numbers
 * of any size or precision (jansson refuses integers past 64 bits), and \u0000 (jansson
 * needs a flag for it). Strings must be valid UTF-8 (no overlong forms, no surrogates, no
 * code point past U+10FFFF), and \u escapes must pair surrogates.
 */
#include <stdint.h>

#include "util/jvalid.h"

typedef struct cur {
    const unsigned char *p, *end;
    int depth, max_depth;
} cur;

static void ws(cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int lit(cur *c, const char *s)
{
    for (; *s; s++, c->p++)
        if (c->p >= c->end || *c->p != (unsigned char)*s)
            return -1;
    return 0;
}

static int hex4(cur *c, unsigned *out)
{
    unsigned v = 0;

    if (c->end - c->p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        unsigned char h = *c->p++;
        v <<= 4;
        if (h >= '0' && h <= '9')
            v |= h - '0';
        else if (h >= 'a' && h <= 'f')
            v |= h - 'a' + 10;
        else if (h >= 'A' && h <= 'F')
            v |= h - 'A' + 10;
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* One UTF-8 sequence starting with lead byte b (>= 0x80), c->p just past b. */
static int utf8(cur *c, unsigned char b)
{
    int n;
    uint32_t cp;

    if (b >= 0xC2 && b <= 0xDF) {
        n = 1;
        cp = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        n = 2;
        cp = b & 0x0F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        n = 3;
        cp = b & 0x07;
    } else {
        return -1;
    }
    if (c->end - c->p < n)
        return -1;
    for (int i = 0; i < n; i++) {
        unsigned char x = *c->p++;
        if ((x & 0xC0) != 0x80)
            return -1;
        cp = (cp << 6) | (x & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return -1;
    return 0;
}

static int string(cur *c)
{
    c->p++; /* the opening quote */
    while (c->p < c->end) {
        unsigned char b = *c->p++;
        if (b == '"')
            return 0;
        if (b < 0x20)
            return -1;
        if (b == '\\') {
            unsigned u, lo;
            if (c->p >= c->end)
                return -1;
            b = *c->p++;
            switch (b) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                break;
            case 'u':
                if (hex4(c, &u))
                    return -1;
                if (u >= 0xDC00 && u <= 0xDFFF)
                    return -1; /* a low surrogate alone */
                if (u >= 0xD800 && u <= 0xDBFF) {
                    if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u')
                        return -1;
                    c->p += 2;
                    if (hex4(c, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                        return -1;
                }
                break;
            default:
                return -1;
            }
        } else if (b >= 0x80 && utf8(c, b)) {
            return -1;
        }
    }
    return -1;
}

static int digits(cur *c)
{
    const unsigned char *s = c->p;

    while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
        c->p++;
    return c->p > s ? 0 : -1;
}

static int number(cur *c)
{
    if (*c->p == '-')
        c->p++;
    if (c->p >= c->end)
        return -1;
    if (*c->p == '0')
        c->p++;
    else if (digits(c))
        return -1;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (digits(c))
            return -1;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            c->p++;
        if (digits(c))
            return -1;
    }
    return 0;
}

static int value(cur *c);

static int object(cur *c)
{
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return 0;
    }
    for (;;) {
        if (c->p >= c->end || *c->p != '"' || string(c))
            return -1;
        ws(c);
        if (c->p >= c->end || *c->p++ != ':')
            return -1;
        if (value(c))
            return -1;
        ws(c);
        if (c->p >= c->end)
            return -1;
        if (*c->p == '}') {
            c->p++;
            return 0;
        }
        if (*c->p++ != ',')
            return -1;
        ws(c);
    }
}

static int array(cur *c)
{
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        return 0;
    }
    for (;;) {
        if (value(c))
            return -1;
        ws(c);
        if (c->p >= c->end)
            return -1;
        if (*c->p == ']') {
            c->p++;
            return 0;
        }
        if (*c->p++ != ',')
            return -1;
    }
}

/* Whitespace, then one value. */
static int value(cur *c)
{
    int rc;

    ws(c);
    if (c->p >= c->end)
        return -1;
    switch (*c->p) {
    case '{':
    case '[':
        if (++c->depth > c->max_depth)
            return -1;
        rc = *c->p == '{' ? object(c) : array(c);
        c->depth--;
        return rc;
    case '"':
        return string(c);
    case 't':
        return lit(c, "true");
    case 'f':
        return lit(c, "false");
    case 'n':
        return lit(c, "null");
    default:
        if (*c->p == '-' || (*c->p >= '0' && *c->p <= '9'))
            return number(c);
        return -1;
    }
}

int jobq_json_valid(const char *s, size_t len, int max_depth)
{
    cur c = {(const unsigned char *)s, (const unsigned char *)s + len, 0, max_depth};

    if (value(&c))
        return 0;
    ws(&c);
    return c.p == c.end;
}
