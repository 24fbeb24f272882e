/*
 * sign.c — HMAC-SHA256 signatures for webhook deliveries, through OpenSSL's one-shot HMAC().
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "util/err.h"
#include "util/sign.h"

int jobq_hmac_sha256_hex(const void *key, size_t key_len, const void *data, size_t len,
                         char out[JOBQ_SIGN_HEX])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (!HMAC(EVP_sha256(), key, (int)key_len, data, len, mac, &n) || n != 32)
        return JOBQ_ENOMEM;
    for (unsigned int i = 0; i < n; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[2 * n] = '\0';
    return 0;
}

int jobq_sign_webhook(const char *secret, int64_t ts, const char *body, size_t len,
                      char out[JOBQ_SIGN_HEX])
{
    char prefix[32];
    int n = snprintf(prefix, sizeof prefix, "%" PRId64 ".", ts);
    char *msg = malloc((size_t)n + len);
    int rc;

    if (!msg)
        return JOBQ_ENOMEM;
    memcpy(msg, prefix, (size_t)n);
    memcpy(msg + n, body, len);
    rc = jobq_hmac_sha256_hex(secret, strlen(secret), msg, (size_t)n + len, out);
    free(msg);
    return rc;
}
