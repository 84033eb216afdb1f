/* The key bundle's JSON payload: the one writer (the agent's GetKeyBundle)
 * and the one reader (`provsign verify`); see keybundle.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "jsonval.h"
#include "keybundle.h"
#include "keyid.h"
#include "names.h"
#include "provsign.pb-c.h"
#include "sigverify.h"
#include "timefmt.h"

__attribute__((format(printf, 4, 5)))
static int fail(char *detail, size_t size, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(detail, size, fmt, ap);
        va_end(ap);
        return r;
}

/* Whether pkey is a key of the named algorithm. */
static bool pkey_is(EVP_PKEY *pkey, int alg) {
        switch (alg) {
        case PROVSIGN__KEY_ALGORITHM__ECDSA_P256:
                return EVP_PKEY_is_a(pkey, "EC") && EVP_PKEY_get_bits(pkey) == 256;
        case PROVSIGN__KEY_ALGORITHM__ECDSA_P384:
                return EVP_PKEY_is_a(pkey, "EC") && EVP_PKEY_get_bits(pkey) == 384;
        case PROVSIGN__KEY_ALGORITHM__RSA_3072:
                return EVP_PKEY_is_a(pkey, "RSA") && EVP_PKEY_get_bits(pkey) == 3072;
        default:
                return false;
        }
}

/* ---- The reader ------------------------------------------------------------ */

void proto_bundle_free(struct proto_bundle *b) {
        if (!b)
                return;
        for (size_t i = 0; i < b->n_keys; i++) {
                free(b->keys[i].principal);
                free(b->keys[i].reason);
                free(b->keys[i].pem);
        }
        free(b->keys);
        free(b->origin);
        free(b->principal);
        free(b);
}

/* The string at key of o: without NUL bytes, 1..max bytes, or NULL. */
static const char *get_string(const json_t *o, const char *key, size_t max) {
        return proto_json_string(json_object_get(o, key), max);
}

/* A time or null (PROTO_BUNDLE_NO_TIME); nullable says whether null is allowed.
 * 0 or -EBADMSG. */
static int get_time(const json_t *o, const char *key, bool nullable, int64_t *ret) {
        const json_t *v = json_object_get(o, key);
        const char *s;

        if (nullable && json_is_null(v)) {
                *ret = PROTO_BUNDLE_NO_TIME;
                return 0;
        }
        s = get_string(o, key, PROTO_TIME_LEN);
        if (!s)
                return -EBADMSG;
        return proto_time_parse_us(s, ret) < 0 ? -EBADMSG : 0;
}

static int state_from_name(const char *s) {
        for (int st = PROVSIGN__KEY_STATE__ACTIVE; st <= PROVSIGN__KEY_STATE__DESTROYED; st++)
                if (strcmp(proto_key_state_name(st), s) == 0)
                        return st;
        return -EINVAL;
}

static int parse_key(const json_t *o, size_t i, struct proto_bundle_key *k, char *detail, size_t size) {
        const json_t *gen, *reason;
        EVP_PKEY *pkey = NULL;
        char id[PROTO_KEYID_HEX_LEN + 1];
        const char *s;
        int r;

#define BAD(...) fail(detail, size, -EBADMSG, __VA_ARGS__)
        if (!json_is_object(o))
                return BAD("keys[%zu]: not an object", i);
        s = get_string(o, "keyid", PROTO_KEYID_HEX_LEN);
        if (!s || !proto_keyid_hex_valid(s))
                return BAD("keys[%zu].keyid: not 64 lowercase hex digits", i);
        memcpy(k->keyid, s, sizeof k->keyid);
        s = get_string(o, "principal", 1024);
        if (!s)
                return BAD("keys[%zu].principal: missing or not a non-empty string", i);
        k->principal = strdup(s);
        if (!k->principal)
                return -ENOMEM;
        gen = json_object_get(o, "generation");
        if (!json_is_integer(gen) || json_integer_value(gen) < 1 || json_integer_value(gen) > UINT32_MAX)
                return BAD("keys[%zu].generation: not a positive integer", i);
        k->generation = (uint32_t) json_integer_value(gen);
        s = get_string(o, "algorithm", 64);
        if (!s || (k->algorithm = proto_key_algorithm_from_name(s)) < 0)
                return BAD("keys[%zu].algorithm: not ecdsa-p256, ecdsa-p384 or rsa-3072", i);
        s = get_string(o, "state", 64);
        if (!s || (k->state = state_from_name(s)) < 0)
                return BAD("keys[%zu].state: not active, retired, revoked or destroyed", i);
        if (get_time(o, "created", false, &k->created_us) < 0)
                return BAD("keys[%zu].created: not a time", i);
        if (get_time(o, "retired", true, &k->retired_us) < 0)
                return BAD("keys[%zu].retired: not a time or null", i);
        if (get_time(o, "revoked", true, &k->revoked_us) < 0)
                return BAD("keys[%zu].revoked: not a time or null", i);
        if (get_time(o, "compromised_since", true, &k->compromised_since_us) < 0)
                return BAD("keys[%zu].compromised_since: not a time or null", i);
        if (get_time(o, "destroyed", true, &k->destroyed_us) < 0)
                return BAD("keys[%zu].destroyed: not a time or null", i);
        /* A revoked key without a compromise time would leave the rule
         * nothing to compare with. */
        if (k->state == PROVSIGN__KEY_STATE__REVOKED &&
            (k->revoked_us == PROTO_BUNDLE_NO_TIME || k->compromised_since_us == PROTO_BUNDLE_NO_TIME))
                return BAD("keys[%zu]: revoked without revoked/compromised_since times", i);
        reason = json_object_get(o, "reason");
        if (reason && !json_is_null(reason)) {
                s = get_string(o, "reason", 4096);
                if (!s)
                        return BAD("keys[%zu].reason: not a string or null", i);
                k->reason = strdup(s);
                if (!k->reason)
                        return -ENOMEM;
        }
        s = get_string(o, "public_key_pem", 16384);
        if (!s)
                return BAD("keys[%zu].public_key_pem: missing or not a string", i);
        k->pem = strdup(s);
        if (!k->pem)
                return -ENOMEM;
        pkey = proto_pkey_from_pem(s);
        if (!pkey)
                return BAD("keys[%zu].public_key_pem: not a PEM public key", i);
        r = 0;
        if (!proto_pkey_keyid(pkey, id))
                r = -ENOMEM;
        else if (strcmp(id, k->keyid) != 0)
                r = BAD("keys[%zu]: keyid %s is not the SHA-256 of its public key", i, k->keyid);
        else if (!pkey_is(pkey, k->algorithm))
                r = BAD("keys[%zu]: the public key is not an %s key", i, proto_key_algorithm_name(k->algorithm));
        EVP_PKEY_free(pkey);
        return r;
#undef BAD
}

/* The bundle's top-level fields but its keys, into b. 0, -EBADMSG (detail
 * says which), -ENOMEM. */
static int parse_header(const json_t *root, struct proto_bundle *b, char *detail, size_t size) {
        const json_t *v;
        const char *s;

        if (!json_is_object(root))
                return fail(detail, size, -EBADMSG, "the bundle is not a JSON object");
        v = json_object_get(root, "version");
        if (!json_is_integer(v) || json_integer_value(v) != 1)
                return fail(detail, size, -EBADMSG, "version: not 1");
        s = get_string(root, "origin", 1024);
        if (!s)
                return fail(detail, size, -EBADMSG, "origin: missing or not a string");
        b->origin = strdup(s);
        if (!b->origin)
                return -ENOMEM;
        s = get_string(root, "log_keyid", PROTO_KEYID_HEX_LEN);
        if (!s || !proto_keyid_hex_valid(s))
                return fail(detail, size, -EBADMSG, "log_keyid: not 64 lowercase hex digits");
        memcpy(b->log_keyid, s, sizeof b->log_keyid);
        v = json_object_get(root, "log_size");
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return fail(detail, size, -EBADMSG, "log_size: not a non-negative integer");
        b->log_size = (uint64_t) json_integer_value(v);
        if (get_time(root, "issued", false, &b->issued_us) < 0)
                return fail(detail, size, -EBADMSG, "issued: not a time");
        v = json_object_get(root, "principal");
        if (v && !(s = get_string(root, "principal", 1024)))
                return fail(detail, size, -EBADMSG, "principal: not a non-empty string");
        if (v && !(b->principal = strdup(s)))
                return -ENOMEM;
        return 0;
}

/* The keys: each well-formed, no key id twice. */
static int parse_keys(const json_t *keys, struct proto_bundle *b, char *detail, size_t size) {
        if (!json_is_array(keys) || json_array_size(keys) > PROTO_BUNDLE_MAX_KEYS)
                return fail(detail, size, -EBADMSG, "keys: not an array of at most %u keys", PROTO_BUNDLE_MAX_KEYS);
        if (json_array_size(keys) > 0) {
                b->keys = calloc(json_array_size(keys), sizeof *b->keys);
                if (!b->keys)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < json_array_size(keys); i++) {
                int r;

                b->n_keys++;
                r = parse_key(json_array_get(keys, i), i, &b->keys[i], detail, size);
                if (r < 0)
                        return r;
                for (size_t j = 0; j < i; j++)
                        if (strcmp(b->keys[j].keyid, b->keys[i].keyid) == 0)
                                return fail(detail, size, -EBADMSG, "keys[%zu]: keyid %s listed twice", i,
                                            b->keys[i].keyid);
        }
        return 0;
}

int proto_bundle_parse(const uint8_t *text, size_t len, struct proto_bundle **ret, char *detail, size_t size) {
        struct proto_bundle *b;
        json_error_t jerr;
        json_t *root;
        int r;

        root = json_loadb((const char *) text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                return fail(detail, size, -EBADMSG, "the bundle is not JSON: %s", jerr.text);
        b = calloc(1, sizeof *b);
        r = b ? parse_header(root, b, detail, size) : -ENOMEM;
        if (r == 0)
                r = parse_keys(json_object_get(root, "keys"), b, detail, size);
        json_decref(root);
        if (r < 0) {
                proto_bundle_free(b);
                return r;
        }
        *ret = b;
        return 0;
}

/* ---- The writer ------------------------------------------------------------ */

static json_t *time_or_null(int64_t us) {
        char buf[PROTO_TIME_LEN + 1];

        return us != PROTO_BUNDLE_NO_TIME && proto_time_format_us(us, buf) ? json_string(buf) : json_null();
}

static json_t *key_json(const struct proto_bundle_key *k) {
        return json_pack("{s:s, s:s, s:I, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:s}",
                         "keyid", k->keyid,
                         "principal", k->principal,
                         "generation", (json_int_t) k->generation,
                         "algorithm", proto_key_algorithm_name(k->algorithm),
                         "state", proto_key_state_name(k->state),
                         "created", time_or_null(k->created_us),
                         "retired", time_or_null(k->retired_us),
                         "revoked", time_or_null(k->revoked_us),
                         "reason", k->reason ? json_string(k->reason) : json_null(),
                         "compromised_since", time_or_null(k->compromised_since_us),
                         "destroyed", time_or_null(k->destroyed_us),
                         "public_key_pem", k->pem);
}

int proto_bundle_format(const struct proto_bundle *b, char **ret, size_t *ret_len) {
        char issued[PROTO_TIME_LEN + 1];
        json_t *arr, *doc;
        char *text;

        if (!proto_time_format_us(b->issued_us, issued))
                return -ERANGE;
        arr = json_array();
        for (size_t i = 0; arr && i < b->n_keys; i++)
                if (json_array_append_new(arr, key_json(&b->keys[i])) < 0) {
                        json_decref(arr);
                        arr = NULL;
                }
        doc = arr ? json_pack("{s:i, s:s, s:s, s:I, s:s, s:o}", "version", 1, "origin", b->origin, "log_keyid",
                              b->log_keyid, "log_size", (json_int_t) b->log_size, "issued", issued, "keys", arr)
                  : NULL;
        /* a partial bundle says so */
        if (doc && b->principal && json_object_set_new(doc, "principal", json_string(b->principal)) < 0) {
                json_decref(doc);
                doc = NULL;
        }
        text = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(doc);
        if (!text)
                return -ENOMEM;
        *ret = text;
        *ret_len = strlen(text);
        return 0;
}
