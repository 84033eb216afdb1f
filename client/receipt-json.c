/* Receipts as JSON; see receipt-json.h. The text comes from a file anyone
 * may have edited: every field is checked for presence, type, range and
 * canonical encoding before a byte of it reaches the checks. */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "hex.h"
#include "names.h"

#include "base64.h"
#include "receipt-json.h"
#include "sigverify.h"

__attribute__((format(printf, 3, 4)))
static int bad(char *detail, size_t size, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(detail, size, fmt, ap);
        va_end(ap);
        return -EBADMSG;
}


/* ---- Reading ------------------------------------------------------------- */

void client_receipt_doc_done(struct client_receipt_doc *doc) {
        if (!doc)
                return;
        free(doc->keyid);
        free(doc->principal);
        free(doc->leaf);
        free(doc->proof);
        free(doc->checkpoint);
        *doc = (struct client_receipt_doc) {};
}

/* A string field without NUL bytes (JSON may carry \u0000). NULL when
 * missing or not such a string. */
static const char *get_string(const json_t *obj, const char *key) {
        const json_t *v = json_object_get(obj, key);

        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
                return NULL;
        return json_string_value(v);
}

static int get_u64(const json_t *obj, const char *key, uint64_t *ret) {
        const json_t *v = json_object_get(obj, key);

        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return -EBADMSG;
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

static int get_b64(const json_t *obj, const char *key, uint8_t **ret, size_t *ret_len) {
        const json_t *v = json_object_get(obj, key);

        if (!json_is_string(v))
                return -EBADMSG;
        return proto_base64_decode(json_string_value(v), json_string_length(v), ret, ret_len);
}

static int parse_receipt(const json_t *o, const char *pfx, struct client_receipt_doc *doc, char *detail, size_t size) {
        const json_t *proof;
        const char *s;
        size_t n;
        int r;

        if (get_u64(o, "log_seq", &doc->rc.log_seq) < 0)
                return bad(detail, size, "%slog_seq: missing or not a non-negative integer", pfx);

        s = get_string(o, "log_time");
        if (!s)
                return bad(detail, size, "%slog_time: missing or not a string", pfx);
        if (proto_time_parse_us(s, &doc->rc.log_time_us) < 0)
                return bad(detail, size, "%slog_time: not an RFC 3339 UTC time with six fractional digits "
                           "(YYYY-MM-DDTHH:MM:SS.ffffffZ)", pfx);

        r = get_b64(o, "leaf", &doc->leaf, &doc->rc.leaf_len);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return bad(detail, size, "%sleaf: missing or not canonical base64", pfx);
        doc->rc.leaf = doc->leaf;

        if (get_u64(o, "tree_size", &doc->rc.tree_size) < 0)
                return bad(detail, size, "%stree_size: missing or not a non-negative integer", pfx);

        proof = json_object_get(o, "inclusion_proof");
        if (!json_is_array(proof))
                return bad(detail, size, "%sinclusion_proof: missing or not an array", pfx);
        n = json_array_size(proof);
        if (n > PROTO_MERKLE_MAX_PROOF)
                return bad(detail, size, "%sinclusion_proof: %zu hashes, more than the %u any tree needs",
                           pfx, n, PROTO_MERKLE_MAX_PROOF);
        if (n > 0) {
                doc->proof = calloc(n, sizeof *doc->proof);
                if (!doc->proof)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                const json_t *h = json_array_get(proof, i);
                uint8_t *raw = NULL;
                size_t raw_len = 0;

                r = json_is_string(h) ? proto_base64_decode(json_string_value(h), json_string_length(h), &raw, &raw_len) : -EBADMSG;
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return bad(detail, size, "%sinclusion_proof[%zu]: not canonical base64", pfx, i);
                if (raw_len != PROTO_MERKLE_HASH_LEN) {
                        free(raw);
                        return bad(detail, size, "%sinclusion_proof[%zu]: %zu bytes, not a %u-byte hash",
                                   pfx, i, raw_len, PROTO_MERKLE_HASH_LEN);
                }
                memcpy(doc->proof[i], raw, PROTO_MERKLE_HASH_LEN);
                free(raw);
        }
        doc->rc.proof = (const uint8_t (*)[PROTO_MERKLE_HASH_LEN]) doc->proof;
        doc->rc.n_proof = n;

        s = get_string(o, "checkpoint");
        if (!s)
                return bad(detail, size, "%scheckpoint: missing or not a string", pfx);
        doc->checkpoint = strdup(s);
        if (!doc->checkpoint)
                return -ENOMEM;
        doc->rc.checkpoint = doc->checkpoint;
        return 0;
}

int client_receipt_doc_parse(const char *text, size_t len, struct client_receipt_doc *doc,
                             char *detail, size_t detail_size) {
        const json_t *receipt;
        json_error_t jerr;
        json_t *root;
        const char *s;
        int r;

        client_receipt_doc_done(doc);

        /* Duplicate keys are refused: two "leaf"s would let two readers
         * see two receipts in one file. */
        root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                return bad(detail, detail_size, "not JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
        if (!json_is_object(root)) {
                r = bad(detail, detail_size, "not a JSON object");
                goto out;
        }

        receipt = json_object_get(root, "receipt");
        if (!receipt) {
                /* Just a receipt, as --receipt writes it. */
                r = parse_receipt(root, "", doc, detail, detail_size);
                goto out;
        }

        doc->whole = true;
        if (!json_is_object(receipt)) {
                r = bad(detail, detail_size, "receipt: not an object");
                goto out;
        }
        s = get_string(root, "keyid");
        if (!s) {
                r = bad(detail, detail_size, "keyid: missing or not a string");
                goto out;
        }
        doc->keyid = strdup(s);
        s = get_string(root, "principal");
        if (!s) {
                r = bad(detail, detail_size, "principal: missing or not a string");
                goto out;
        }
        doc->principal = strdup(s);
        if (!doc->keyid || !doc->principal) {
                r = -ENOMEM;
                goto out;
        }
        r = parse_receipt(receipt, "receipt.", doc, detail, detail_size);
out:
        json_decref(root);
        if (r == -ENOMEM)
                snprintf(detail, detail_size, "out of memory");
        return r;
}

/* ---- Writing ------------------------------------------------------------- */

/* json_object_set_new() that tolerates a NULL value (a failed build), so a
 * whole object can be assembled first and checked once. */
static bool set(json_t *o, const char *key, json_t *v) {
        return v && json_object_set_new(o, key, v) == 0;
}

static json_t *b64_json(const uint8_t *p, size_t n) {
        char *s = proto_base64_encode(p, n);
        json_t *j = s ? json_string(s) : NULL;

        free(s);
        return j;
}

json_t *client_receipt_to_json(const struct client_receipt *rc) {
        char when[PROTO_TIME_LEN + 1];
        json_t *o, *proof;
        bool ok;

        if (!proto_time_format_us(rc->log_time_us, when))
                return NULL;
        /* JSON integers are signed 64-bit in jansson. */
        if (rc->log_seq > INT64_MAX || rc->tree_size > INT64_MAX)
                return NULL;

        proof = json_array();
        for (size_t i = 0; proof && i < rc->n_proof; i++)
                if (json_array_append_new(proof, b64_json(rc->proof[i], PROTO_MERKLE_HASH_LEN)) < 0) {
                        json_decref(proof);
                        proof = NULL;
                }

        o = json_object();
        ok = o &&
             set(o, "log_seq", json_integer((json_int_t) rc->log_seq)) &&
             set(o, "log_time", json_string(when)) &&
             set(o, "leaf", b64_json(rc->leaf, rc->leaf_len)) &&
             set(o, "tree_size", json_integer((json_int_t) rc->tree_size)) &&
             set(o, "inclusion_proof", json_incref(proof)) &&
             set(o, "checkpoint", json_string(rc->checkpoint));
        json_decref(proof);
        if (!ok) {
                json_decref(o);
                return NULL;
        }
        return o;
}

json_t *client_receipt_verified_json(const struct client_receipt_doc *doc, const struct client_receipt_result *res) {
        const Provsign__AuditEntry *e = res->entry;
        char when[PROTO_TIME_LEN + 1], *digest;
        json_t *o;
        bool ok;

        if (!e || !proto_time_format_us(doc->rc.log_time_us, when))
                return NULL;
        digest = proto_digest_spec((int) e->digest_algorithm, e->digest.data, e->digest.len);
        if (!digest)
                return NULL;

        o = json_object();
        ok = o &&
             set(o, "verified", json_true()) &&
             set(o, "log_seq", json_integer((json_int_t) doc->rc.log_seq)) &&
             set(o, "log_time", json_string(when)) &&
             set(o, "principal", json_string(e->principal ? e->principal : "")) &&
             set(o, "keyid", json_string(e->keyid ? e->keyid : "")) &&
             set(o, "digest", json_string(digest)) &&
             set(o, "tree_size", json_integer((json_int_t) doc->rc.tree_size)) &&
             set(o, "origin", json_string(res->origin));
        free(digest);
        if (!ok) {
                json_decref(o);
                return NULL;
        }
        return o;
}

/* ---- The whole verification ---------------------------------------------- */

static bool pem_is_public_key(const char *pem) {
        EVP_PKEY *pkey = proto_pkey_from_pem(pem);

        EVP_PKEY_free(pkey);
        return pkey != NULL;
}

int client_receipt_verify_text(const char *text, size_t len, const char *log_key_pem,
                               struct client_receipt_doc *doc, struct client_receipt_result *res) {
        struct client_receipt_signer signer = {};
        int r;

        if (!text || !log_key_pem || !doc || !res)
                return -EINVAL;
        client_receipt_result_done(res);

        if (!pem_is_public_key(log_key_pem)) {
                snprintf(res->detail, sizeof res->detail, "the log key is not a PEM public key");
                return -ENOKEY;
        }

        r = client_receipt_doc_parse(text, len, doc, res->detail, sizeof res->detail);
        if (r < 0)
                return r;

        signer.keyid = doc->keyid;
        signer.principal = doc->principal;
        r = client_receipt_verify(&doc->rc, doc->whole ? &signer : NULL, log_key_pem, res);
        if (r == -ENOMEM)
                snprintf(res->detail, sizeof res->detail, "out of memory");
        return r;
}
