/* Webhook signatures (src/util/sign.c) and webhook descriptions (src/engine/webhook.c). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "util/sign.h"

static void expect_hmac(const char *key, size_t key_len, const char *data, size_t len,
                        const char *want)
{
    char got[JOBQ_SIGN_HEX];

    cr_assert_eq(jobq_hmac_sha256_hex(key, key_len, data, len, got), 0);
    cr_assert_str_eq(got, want);
}

/* RFC 4231, test cases 1, 2 and 6 (a key longer than the block size). */
Test(sign, rfc4231_vectors)
{
    char key1[20], key6[131];

    memset(key1, 0x0b, sizeof key1);
    expect_hmac(key1, sizeof key1, "Hi There", 8,
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    expect_hmac("Jefe", 4, "what do ya want for nothing?", 28,
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    memset(key6, 0xaa, sizeof key6);
    expect_hmac(key6, sizeof key6, "Test Using Larger Than Block-Size Key - Hash Key First", 54,
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

/* The webhook signature is HMAC-SHA256 over "<ts>.<body>". Expected values from Python:
 *   hmac.new(b"whsec-test", b'1700000000.{"seq":42,"type":"job.completed"}',
 *            hashlib.sha256).hexdigest() */
Test(sign, webhook_signature_over_timestamp_and_body)
{
    static const char body[] = "{\"seq\":42,\"type\":\"job.completed\"}";
    char got[JOBQ_SIGN_HEX];

    cr_assert_eq(jobq_sign_webhook("whsec-test", 1700000000, body, sizeof body - 1, got), 0);
    cr_assert_str_eq(got, "53b2c3227b9a2679aacb247a95da7d64965a6667acc0f29f62bc6ed074f39629");
    cr_assert_eq(jobq_sign_webhook("whsec-test", 1700000000, "", 0, got), 0);
    cr_assert_str_eq(got, "70b977d08298e622e7e76b0fe7fced4909b9d0a83ac8d75d8be1a428baa02352");
}

/* Parses text; *field is copied into fbuf (it may point into the parsed value). */
static int parse(const char *text, int registered, char **out, char fbuf[64])
{
    json_t *v = json_loads(text, 0, NULL);
    const char *why = NULL, *field = NULL;
    int rc;

    cr_assert_not_null(v, "test JSON %s", text);
    rc = jobq_webhook_parse(v, registered, out, &field, &why);
    snprintf(fbuf, 64, "%s", field ? field : "");
    json_decref(v);
    if (rc)
        cr_assert_not_null(why);
    return rc;
}

Test(webhook, registered_hook_is_normalised)
{
    char *out = NULL;
    char field[64];

    cr_assert_eq(
        parse("{\"url\":\"https://example.com/h\",\"events\":[\"job.completed\"],"
              "\"queues\":[\"render\"],\"project\":\"p1\",\"secret\":\"s\",\"token\":\"t\"}",
              1, &out, field),
        0);
    cr_assert_not_null(out);
    json_t *v = json_loads(out, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(v, "url")), "https://example.com/h");
    cr_assert_str_eq(json_string_value(json_object_get(v, "secret")), "s");
    json_decref(v);
    free(out);
}

Test(webhook, bad_fields_are_named)
{
    static const struct {
        const char *body;
        int registered;
        const char *field;
    } cases[] = {
        {"{\"events\":[\"*\"]}", 1, "url"},
        {"{\"url\":\"ftp://x/\",\"events\":[\"*\"]}", 1, "url"},
        {"{\"url\":\"http://\",\"events\":[\"*\"]}", 1, "url"},
        {"{\"url\":\"http://a b/\",\"events\":[\"*\"]}", 1, "url"},
        {"{\"url\":\"http://x/\"}", 1, "events"},
        {"{\"url\":\"http://x/\",\"events\":[]}", 1, "events"},
        {"{\"url\":\"http://x/\",\"events\":[\"job.exploded\"]}", 1, "events"},
        {"{\"url\":\"http://x/\",\"events\":[\"*\"],\"queues\":[\"a b\"]}", 1, "queues"},
        {"{\"url\":\"http://x/\",\"events\":[\"*\"],\"project\":\"\"}", 1, "project"},
        {"{\"url\":\"http://x/\",\"events\":[\"*\"],\"secret\":5}", 1, "secret"},
        {"{\"url\":\"http://x/\",\"events\":[\"*\"],\"token\":\"a\\nb\"}", 1, "token"},
        {"{\"url\":\"http://x/\",\"events\":[\"*\"],\"bogus\":1}", 1, "bogus"},
        {"{\"events\":[\"*\"]}", 0, "webhook.url"},
        {"{\"url\":\"http://x/\",\"queues\":[\"q\"]}", 0, "webhook"},
        {"{\"url\":\"http://x/\",\"events\":[\"nope\"]}", 0, "webhook.events"},
        {"[1]", 0, "webhook"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = NULL;
        char field[64];
        cr_assert_eq(parse(cases[i].body, cases[i].registered, &out, field), JOBQ_EINVAL, "%s",
                     cases[i].body);
        cr_assert_null(out);
        cr_assert_str_eq(field, cases[i].field, "%s", cases[i].body);
    }
}

Test(webhook, a_job_webhook_needs_only_a_url)
{
    char *out = NULL;
    char field[64];

    cr_assert_eq(parse("{\"url\":\"HTTP://127.0.0.1:9/x\"}", 0, &out, field), 0);
    cr_assert_str_eq(out, "{\"url\":\"HTTP://127.0.0.1:9/x\"}");
    free(out);
}

Test(webhook, type_patterns)
{
    cr_assert(jobq_webhook_type_match("*", "job.progress"));
    cr_assert(jobq_webhook_type_match("job.*", "job.progress"));
    cr_assert(!jobq_webhook_type_match("job.*", "queue.paused"));
    cr_assert(!jobq_webhook_type_match("job.*", "jobs.x"));
    cr_assert(jobq_webhook_type_match("job.completed", "job.completed"));
    cr_assert(!jobq_webhook_type_match("job.completed", "job.completed2"));
    cr_assert(jobq_webhook_type_known("queue.*"));
    cr_assert(!jobq_webhook_type_known("job"));
}
