/* The JSON validator (src/util/jvalid.c): fixed cases, and a differential test against
 * jansson on mutated documents. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "util/jvalid.h"

static int ok(const char *s)
{
    return jobq_json_valid(s, strlen(s), 64);
}

Test(jvalid, accepts)
{
    const char *good[] = {
        "null",
        "true",
        "false",
        "0",
        "-0",
        "12",
        "-1.5e+10",
        "1E-3",
        "0.25",
        "\"\"",
        "\"a\\\"b\\\\c\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00\"",
        "\"\\u0000\"",
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
        "[]",
        "{}",
        " [1, [2, {\"a\": []}]] ",
        "{\"a\":1,\"b\":[true,false,null],\"c\":{\"d\":\"e\"}}",
        "123456789012345678901234567890",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_assert(ok(good[i]), "refused: %s", good[i]);
}

Test(jvalid, refuses)
{
    const char *bad[] = {
        "",
        " ",
        "nul",
        "tru",
        "01",
        "-",
        "1.",
        ".5",
        "1e",
        "+1",
        "0x1",
        "NaN",
        "[1,]",
        "[,1]",
        "{\"a\"}",
        "{\"a\":}",
        "{a:1}",
        "{\"a\":1,}",
        "[1 2]",
        "\"unterminated",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\uDE00\"",
        "\"\\uD83D\"",
        "\"\\uD83Dx\"",
        "\"tab\there\"",
        "\"\xc0\xaf\"",
        "\"\xed\xa0\x80\"",
        "\"\xf4\x90\x80\x80\"",
        "\"\x80\"",
        "\"\xe2\x82\"",
        "[1]]",
        "{} {}",
        "[",
        "{",
        "\"a\" 1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert(!ok(bad[i]), "accepted: %s", bad[i]);
    cr_assert(!jobq_json_valid("[[[[]]]]", 8, 3), "depth limit not applied");
    cr_assert(jobq_json_valid("[[[]]]", 6, 3));
}

static uint64_t rng = 0x1234567;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

Test(jvalid, agrees_with_jansson)
{
    static const char *seeds[] = {
        "{\"data\":{\"chunk\":\"c-1\",\"n\":[1,2.5,null,true],\"s\":\"\\u00e9\\n\"}}",
        "[{\"a\":\"\xc3\xa9\"},-0.5e3,\"x\\\"y\",[],{}]",
        "{\"p\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\",\"q\":false}",
    };
    static const char alphabet[] = "{}[]\":,\\ 0123456789-+.eEtrufalsn\x80\xc3\xa9\xed\xf0u";
    char buf[256];
    int agree = 0;

    for (int iter = 0; iter < 200000; iter++) {
        const char *seed = seeds[rnd() % 3];
        size_t n = strlen(seed), edits = 1 + rnd() % 3;
        json_error_t err;
        json_t *v;
        int mine, theirs;

        memcpy(buf, seed, n);
        for (size_t k = 0; k < edits; k++) {
            size_t at = rnd() % n;
            switch (rnd() % 3) {
            case 0: /* replace */
                buf[at] = alphabet[rnd() % (sizeof alphabet - 1)];
                break;
            case 1: /* delete */
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            default: /* insert */
                if (n + 1 < sizeof buf) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = alphabet[rnd() % (sizeof alphabet - 1)];
                    n++;
                }
            }
            if (!n)
                break;
        }
        mine = jobq_json_valid(buf, n, 64);
        v = json_loadb(buf, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        theirs = v != NULL;
        json_decref(v);
        if (!theirs && (strstr(err.text, "too big") || strstr(err.text, "overflow")))
            continue; /* jansson's number-size limits: wider on purpose here */
        cr_assert_eq(mine, theirs, "validator says %d, jansson %d (%s) on: %.*s", mine, theirs,
                     theirs ? "" : err.text, (int)n, buf);
        agree++;
    }
    cr_assert_gt(agree, 150000);
}
