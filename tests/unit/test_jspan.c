/* Spans of values in validated JSON text (src/util/jspan.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "util/jspan.h"

static void expect_member(const char *doc, const char *key, const char *want)
{
    jobq_jspan s = jobq_jspan_member(doc, doc + strlen(doc), key);

    if (!want) {
        cr_assert_null(s.p, "%s in %s: expected absent", key, doc);
        return;
    }
    cr_assert_not_null(s.p, "%s in %s: not found", key, doc);
    cr_assert_eq(s.len, strlen(want), "%s in %s: span of %zu bytes, want %zu", key, doc, s.len,
                 strlen(want));
    cr_assert(memcmp(s.p, want, s.len) == 0, "%s in %s: got %.*s", key, doc, (int)s.len, s.p);
}

Test(jspan, member_values_of_every_kind)
{
    expect_member("{\"data\":{\"a\":[1,{\"b\":\"}]\"}]},\"x\":1}", "data",
                  "{\"a\":[1,{\"b\":\"}]\"}]}");
    expect_member("{\"x\":\"data\",\"data\":\"q\\\"uo}te\"}", "data", "\"q\\\"uo}te\"");
    expect_member("{ \"data\" : -12.5e3 , \"y\" : null }", "data", "-12.5e3");
    expect_member("{\"data\":true}", "data", "true");
    expect_member("{\"data\":null}", "data", "null");
    expect_member("{\n  \"priority\": 3,\n  \"data\": [ 1, 2 ]\n}", "data", "[ 1, 2 ]");
    expect_member("{\"datum\":1,\"dat\":2}", "data", NULL);
    expect_member("{}", "data", NULL);
    expect_member("[1]", "data", NULL);
    /* an escaped key is not matched byte for byte: the caller falls back to the tree */
    expect_member("{\"d\\u0061ta\":1}", "data", NULL);
}

typedef struct seen {
    size_t n;
    char got[4][32];
} seen;

static void collect(void *ud, size_t i, jobq_jspan el)
{
    seen *s = ud;

    cr_assert_eq(i, s->n);
    cr_assert_lt(el.len, sizeof s->got[0]);
    memcpy(s->got[s->n], el.p, el.len);
    s->got[s->n][el.len] = '\0';
    s->n++;
}

Test(jspan, array_elements)
{
    const char *doc = "[ {\"data\":\"]\"} , 7,\"s\\\\\",[[]] ]";
    seen s = {0};

    jobq_jspan_each(doc, doc + strlen(doc), collect, &s);
    cr_assert_eq(s.n, 4);
    cr_assert_str_eq(s.got[0], "{\"data\":\"]\"}");
    cr_assert_str_eq(s.got[1], "7");
    cr_assert_str_eq(s.got[2], "\"s\\\\\"");
    cr_assert_str_eq(s.got[3], "[[]]");
    s.n = 0;
    jobq_jspan_each("[]", "[]" + 2, collect, &s);
    cr_assert_eq(s.n, 0);
}

typedef struct members {
    size_t n;
    char keys[4][16], vals[4][32];
} members;

static int collect_member(void *ud, jobq_jspan k, jobq_jspan v)
{
    members *m = ud;

    cr_assert_lt(m->n, 4);
    memcpy(m->keys[m->n], k.p, k.len);
    m->keys[m->n][k.len] = '\0';
    memcpy(m->vals[m->n], v.p, v.len);
    m->vals[m->n][v.len] = '\0';
    m->n++;
    return 0;
}

Test(jspan, object_members)
{
    const char *doc = "{ \"id\" : \"a\\\"b\", \"r\":{\"x\":[1,\"}\"]} ,\"k\\u0031\":null }";
    members m = {0};

    cr_assert_eq(jobq_jspan_members(doc, doc + strlen(doc), collect_member, &m), 0);
    cr_assert_eq(m.n, 3);
    cr_assert_str_eq(m.keys[0], "id");
    cr_assert_str_eq(m.vals[0], "\"a\\\"b\"");
    cr_assert_str_eq(m.keys[1], "r");
    cr_assert_str_eq(m.vals[1], "{\"x\":[1,\"}\"]}");
    cr_assert_str_eq(m.keys[2], "k\\u0031", "keys are raw text");
    cr_assert_str_eq(m.vals[2], "null");
    cr_assert_eq(jobq_jspan_members("[1]", "[1]" + 3, collect_member, &m), -1);
    m.n = 0;
    cr_assert_eq(jobq_jspan_members("{}", "{}" + 2, collect_member, &m), 0);
    cr_assert_eq(m.n, 0);
}
