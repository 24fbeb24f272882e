/*
 * sign.h — webhook signatures: HMAC-SHA256 (OpenSSL) as lowercase hex.
 *
 * A delivery is signed over "<timestamp>.<body>" with the hook's secret, so a receiver can
 * check both that the body is ours and that it is recent (docs/webhooks.md shows how).
 */
#ifndef JOBQ_SIGN_H
#define JOBQ_SIGN_H

#include <stddef.h>
#include <stdint.h>

#define JOBQ_SIGN_HEX 65 /* 64 hex digits and a NUL */

/* HMAC-SHA256 of data under key, as 64 lowercase hex digits into out. 0 or JOBQ_ENOMEM. */
int jobq_hmac_sha256_hex(const void *key, size_t key_len, const void *data, size_t len,
                         char out[JOBQ_SIGN_HEX]);
/* The webhook signature: HMAC-SHA256 over "<ts>.<body>" under secret (ts in unix seconds).
 * 0 or JOBQ_ENOMEM. */
int jobq_sign_webhook(const char *secret, int64_t ts, const char *body, size_t len,
                      char out[JOBQ_SIGN_HEX]);

#endif
