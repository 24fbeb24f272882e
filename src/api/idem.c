/*
 * idem.c — the Idempotency-Key header: a POST repeated with the same key gets the first
 * answer again (status and body) instead of running twice.
 *
 * A key is scoped to its method and path. The first request with a key is marked in
 * progress and runs as usual; its answer is caught on the way out (jobq_req_hook_answer).
 * A 2xx answer is recorded: the record (kind "idem", id = SHA-256 of method, path and key)
 * goes into the engine's next batch, and the answer is sent only once that batch is durable,
 * so a client that saw an answer can always have it again. The record is written after the
 * original change committed (answers to changes are given only then), so a crash between
 * the two commits leaves the change without its record: a retry then runs again. Other
 * answers are not kept: the request changed nothing, and a retry may succeed.
 *
 * While the first request runs (or its record is being made durable) the same key answers
 * 409; the same key with a different body answers 422 (the key was reused for another
 * request). Records live `ttl_ms` (24 h unless jobqd's --idempotency-ttl-ms says otherwise)
 * and are deleted from memory and store in the order they were made. Clients choose the keys,
 * so what the records take is bounded too: every entry counts its answer, its strings and
 * itself in x->bytes, and while that is over `max_bytes` (64 MiB unless
 * --idempotency-max-bytes says otherwise) the oldest kept answers are deleted early. An
 * entry still waiting for its answer is never deleted; there are at most as many as
 * requests in progress.
 *
 * What it never does: touch SQLite, or look inside the requests and answers it keeps.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/idem.h"

#define MAX_KEY 255

enum { PENDING, HOLDING, DONE };

typedef struct entry {
    char id[65];     /* hex SHA-256 of method, path and key: the document id */
    char hash[65];   /* hex SHA-256 of the request body */
    int phase;       /* PENDING, HOLDING, DONE */
    unsigned status; /* the kept answer */
    char *body;      /* NULL: no body */
    size_t len;
    int64_t at; /* ms since epoch the answer was kept */
    char *method, *path, *key;
    size_t cost; /* bytes counted in x->bytes */
    GList link;  /* in x->order once DONE; data = this */
} entry;

struct jobq_idem {
    jobq_app *a;
    int64_t ttl_ms;
    size_t max_bytes;    /* the kept answers' memory before the oldest go early */
    size_t bytes;        /* what every entry's cost adds up to */
    GHashTable *by_id;   /* id → entry (owned) */
    GHashTable *holding; /* jobq_req* → entry whose answer waits for its record */
    GQueue order;        /* DONE entries, oldest first */
};

static void entry_free(gpointer p)
{
    entry *en = p;

    g_free(en->body);
    g_free(en->method);
    g_free(en->path);
    g_free(en->key);
    g_free(en);
}

jobq_idem *jobq_idem_new(jobq_app *a, int64_t ttl_ms, size_t max_bytes)
{
    jobq_idem *x = g_new0(jobq_idem, 1);

    x->a = a;
    x->ttl_ms = ttl_ms > 0 ? ttl_ms : JOBQ_IDEM_TTL_MS;
    x->max_bytes = max_bytes ? max_bytes : JOBQ_IDEM_MAX_BYTES;
    x->by_id = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, entry_free);
    x->holding = g_hash_table_new(g_direct_hash, g_direct_equal);
    g_queue_init(&x->order);
    return x;
}

void jobq_idem_free(jobq_idem *x)
{
    if (!x)
        return;
    g_queue_clear(&x->order);
    g_hash_table_destroy(x->holding);
    g_hash_table_destroy(x->by_id);
    g_free(x);
}

static void sha256_hex(const char *const *parts, const size_t *lens, size_t n, char out[65])
{
    GChecksum *c = g_checksum_new(G_CHECKSUM_SHA256);

    for (size_t i = 0; i < n; i++) {
        g_checksum_update(c, (const guchar *)parts[i], (gssize)lens[i]);
        g_checksum_update(c, (const guchar *)"\n", 1); /* parts cannot run into each other */
    }
    snprintf(out, 65, "%s", g_checksum_get_string(c));
    g_checksum_free(c);
}

/* An entry's memory: itself, its strings and its answer (a close estimate; the hash
 * table's own node is left out). */
static size_t cost_of(const entry *en)
{
    return sizeof *en + strlen(en->method) + strlen(en->path) + strlen(en->key) + 3 +
           (en->body ? en->len + 1 : 0);
}

/* Takes en into the table and the byte count. */
static void keep(jobq_idem *x, entry *en)
{
    en->link.data = en;
    en->cost = cost_of(en);
    x->bytes += en->cost;
    g_hash_table_insert(x->by_id, en->id, en);
}

static void forget(jobq_idem *x, entry *en)
{
    if (en->phase == DONE)
        g_queue_unlink(&x->order, &en->link);
    x->bytes -= en->cost;
    g_hash_table_remove(x->by_id, en->id); /* frees en */
}

/* Deletes a kept answer from memory and store. */
static void expire(jobq_idem *x, entry *en)
{
    jobq_engine_doc_delete(jobq_app_engine(x->a), "idem", en->id);
    forget(x, en);
}

void jobq_idem_sweep(jobq_idem *x, int64_t now)
{
    GList *l;

    while ((l = x->order.head) &&
           (((entry *)l->data)->at + x->ttl_ms <= now || x->bytes > x->max_bytes))
        expire(x, l->data);
}

/* ---------------------------------------------------------------- recording */

static void answer(jobq_req *rq, unsigned status, const char *body, size_t len)
{
    if (body)
        jobq_req_reply(rq, status, body, len);
    else
        jobq_req_reply_empty(rq, status);
}

/* The record is durable: the kept answer goes out (through on_held_answer). */
static void finish_held(jobq_app *a, jobq_req *rq)
{
    jobq_idem *x = jobq_app_idem(a);
    entry *en = g_hash_table_lookup(x->holding, rq);

    if (!en) { /* cannot happen: every held request is in the table */
        jobq_req_error(rq, 500, "internal", "idempotency record lost", NULL);
        return;
    }
    en->phase = DONE;
    g_queue_push_tail_link(&x->order, &en->link);
    answer(rq, en->status, en->body, en->len);
}

/* Every answer of a held request passes here: the kept one once its record is durable, or
 * a 503 when the store failed to take the record; then the key is freed, since whether
 * the record lands is unknown (the batch is retried; a 503 may still take effect). */
static void on_held_answer(jobq_req *rq, unsigned status, const char *body, size_t len, void *ud)
{
    entry *en = ud;
    jobq_idem *x = jobq_app_idem(jobq_req_app(rq));

    g_hash_table_remove(x->holding, rq);
    if (en->phase != DONE)
        forget(x, en);
    if (status)
        answer(rq, status, body, len);
}

/* The record's document, or NULL when it cannot be written as JSON (a path or body that is
 * not UTF-8): a record with a part missing would make the next start refuse the store. */
static char *record_text(const entry *en)
{
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:i, s:I}", "method", en->method, "path", en->path, "key",
                  en->key, "hash", en->hash, "status", (int)en->status, "at", (json_int_t)en->at);
    char *t = NULL;

    if (o && !json_object_set_new(o, "body",
                                  en->body ? json_stringn(en->body, en->len) : json_null()))
        t = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return t;
}

/* The first request's answer: kept (2xx) and sent once its record is durable, or sent as
 * it is and the key freed. status 0: the request ended unanswered. */
static void on_answer(jobq_req *rq, unsigned status, const char *body, size_t len, void *ud)
{
    entry *en = ud;
    jobq_app *a = jobq_req_app(rq);
    jobq_idem *x = jobq_app_idem(a);
    char *text;

    if (status < 200 || status > 299) {
        forget(x, en);
        if (status)
            answer(rq, status, len ? body : NULL, len);
        return;
    }
    en->status = status;
    en->body = len || body ? g_strndup(body ? body : "", len) : NULL;
    en->len = len;
    x->bytes -= en->cost;
    en->cost = cost_of(en);
    x->bytes += en->cost;
    en->at = jobq_app_now();
    en->phase = HOLDING;
    text = record_text(en);
    if (!text) { /* not kept: sent as it is, as an error would be */
        forget(x, en);
        answer(rq, status, len ? body : NULL, len);
        return;
    }
    jobq_engine_doc_put(jobq_app_engine(a), "idem", en->id, text);
    free(text);
    g_hash_table_insert(x->holding, rq, en);
    jobq_req_hook_answer(rq, on_held_answer, en);
    jobq_app_after_commit(a, rq, finish_held);
}

/* ---------------------------------------------------------------- the gate */

static int valid_key(const char *k)
{
    size_t n = strlen(k);

    if (n == 0 || n > MAX_KEY)
        return 0;
    for (const char *p = k; *p; p++)
        if (*p < 0x21 || *p > 0x7e)
            return 0;
    return 1;
}

static void replay(jobq_req *rq, const entry *en)
{
    jobq_req_add_header(rq, "Idempotent-Replayed", "true");
    answer(rq, en->status, en->body, en->len);
}

int jobq_idem_gate(jobq_idem *x, jobq_req *rq)
{
    const char *key = jobq_req_header(rq, "Idempotency-Key");
    const char *method = jobq_req_method(rq), *path = jobq_req_path(rq);
    const char *parts[3];
    size_t lens[3], blen;
    const char *body;
    char id[65], hash[65];
    entry *en;

    if (!key || strcmp(method, "POST") != 0)
        return 0;
    if (!valid_key(key)) {
        jobq_req_error(rq, 400, "invalid_argument",
                       "Idempotency-Key: must be 1 to 255 visible ASCII characters",
                       "{\"field\":\"Idempotency-Key\"}");
        return 1;
    }
    parts[0] = method, lens[0] = strlen(method);
    parts[1] = path, lens[1] = strlen(path);
    parts[2] = key, lens[2] = strlen(key);
    sha256_hex(parts, lens, 3, id);
    body = jobq_req_body(rq, &blen);
    sha256_hex(&body, &blen, 1, hash);
    jobq_idem_sweep(x, jobq_app_now());
    en = g_hash_table_lookup(x->by_id, id);
    if (en && strcmp(en->hash, hash) != 0) {
        jobq_req_error(rq, 422, "idempotency_key_reused",
                       "Idempotency-Key: this key was used for a request with another body",
                       "{\"field\":\"Idempotency-Key\"}");
        return 1;
    }
    if (en && en->phase != DONE) {
        jobq_req_add_header(rq, "Retry-After", "1");
        jobq_req_error(rq, 409, "conflict",
                       "Idempotency-Key: the first request with this key is still running",
                       "{\"field\":\"Idempotency-Key\"}");
        return 1;
    }
    if (en) {
        replay(rq, en);
        return 1;
    }
    if (!jobq_app_writable(jobq_req_app(rq), rq))
        return 1;
    en = g_new0(entry, 1);
    memcpy(en->id, id, sizeof id);
    memcpy(en->hash, hash, sizeof hash);
    en->phase = PENDING;
    en->method = g_strdup(method);
    en->path = g_strdup(path);
    en->key = g_strdup(key);
    keep(x, en);
    jobq_req_hook_answer(rq, on_answer, en);
    return 0;
}

/* ---------------------------------------------------------------- loading */

int jobq_idem_load(jobq_idem *x, const char *id, const char *body)
{
    json_t *o = json_loads(body, 0, NULL), *b;
    const char *hash, *method, *path, *key;
    entry *en, *old;

    if (!o || strlen(id) != 64)
        goto bad;
    hash = json_string_value(json_object_get(o, "hash"));
    method = json_string_value(json_object_get(o, "method"));
    path = json_string_value(json_object_get(o, "path"));
    key = json_string_value(json_object_get(o, "key"));
    b = json_object_get(o, "body");
    if (!hash || strlen(hash) != 64 || !method || !path || !key ||
        !json_is_integer(json_object_get(o, "status")) || !(json_is_string(b) || json_is_null(b)))
        goto bad;
    en = g_new0(entry, 1);
    memcpy(en->id, id, 65);
    memcpy(en->hash, hash, 65);
    en->phase = DONE;
    en->status = (unsigned)json_integer_value(json_object_get(o, "status"));
    if (json_is_string(b)) {
        en->len = json_string_length(b);
        en->body = g_strndup(json_string_value(b), en->len);
    }
    en->at = json_integer_value(json_object_get(o, "at"));
    en->method = g_strdup(method);
    en->path = g_strdup(path);
    en->key = g_strdup(key);
    if ((old = g_hash_table_lookup(x->by_id, en->id)))
        forget(x, old); /* the store holds one document per id: cannot happen */
    keep(x, en);
    g_queue_push_tail_link(&x->order, &en->link);
    json_decref(o);
    return 0;
bad:
    json_decref(o);
    return JOBQ_ECORRUPT;
}

static gint at_cmp(gconstpointer a, gconstpointer b, gpointer ud)
{
    const entry *x = a, *y = b;

    (void)ud;
    return x->at < y->at ? -1 : x->at > y->at;
}

void jobq_idem_load_done(jobq_idem *x)
{
    /* the store hands them over by id: expiry wants them by age (the sort relinks the
     * entries' own list nodes) */
    g_queue_sort(&x->order, at_cmp, NULL);
}
