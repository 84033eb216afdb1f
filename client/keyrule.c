/* The key lifecycle's verification rule; see keyrule.h. The rule's steps
 * run in the order of the chain of trust: nothing in the bundle is looked
 * at before the trusted log key's signature over it holds, nothing in the
 * envelope is believed before its key is found in that bundle. Every
 * allocation belongs to the result (client_keyrule_result_done) or to the
 * bundle (client_bundle_free). */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "dsse.h"
#include "keyid.h"
#include "names.h"
#include "provsign.pb-c.h"
#include "timefmt.h"

#include "keyrule.h"
#include "sigverify.h"

static const char *const rule_names[] = {
        [CLIENT_KEYRULE_VALID] = "valid",
        [CLIENT_KEYRULE_BAD_LOG_KEY] = "bad log key",
        [CLIENT_KEYRULE_BUNDLE_MALFORMED] = "malformed key bundle",
        [CLIENT_KEYRULE_BUNDLE_NOT_LOG_KEY] = "key bundle not signed by the log key",
        [CLIENT_KEYRULE_ENVELOPE_MALFORMED] = "malformed envelope",
        [CLIENT_KEYRULE_KEY_UNKNOWN] = "key not in the bundle",
        [CLIENT_KEYRULE_WRONG_PRINCIPAL] = "key of another principal",
        [CLIENT_KEYRULE_BAD_SIGNATURE] = "bad signature",
        [CLIENT_KEYRULE_REVOKED_NO_RECEIPT] = "revoked key without receipt",
        [CLIENT_KEYRULE_RECEIPT_INVALID] = "invalid receipt",
        [CLIENT_KEYRULE_AFTER_COMPROMISE] = "signed after the key's compromise",
};

const char *client_keyrule_name(int rule) {
        if (rule < 0 || (size_t) rule >= sizeof rule_names / sizeof rule_names[0])
                return "unknown";
        return rule_names[rule];
}

__attribute__((format(printf, 4, 5)))
static int fail(char *detail, size_t size, int rule, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(detail, size, fmt, ap);
        va_end(ap);
        return rule;
}

/* ---- Keys ------------------------------------------------------------------ */

/* The key id of pkey (SHA-256 of its DER SPKI); false on failure. */
static bool pkey_keyid(EVP_PKEY *pkey, char out[PROTO_KEYID_HEX_LEN + 1]) {
        unsigned char *der = NULL;
        int len = i2d_PUBKEY(pkey, &der);

        if (len <= 0)
                return false;
        proto_keyid_hex(der, (size_t) len, out);
        OPENSSL_free(der);
        return true;
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

/* ---- The bundle ------------------------------------------------------------ */

void client_bundle_free(struct client_bundle *b) {
        if (!b)
                return;
        for (size_t i = 0; i < b->n_keys; i++) {
                free(b->keys[i].principal);
                free(b->keys[i].reason);
                free(b->keys[i].pem);
        }
        free(b->keys);
        free(b->origin);
        free(b);
}

/* A string without NUL bytes, 1..max bytes, or NULL. */
static const char *get_string(const json_t *o, const char *key, size_t max) {
        const json_t *v = json_object_get(o, key);
        size_t n;

        if (!json_is_string(v))
                return NULL;
        n = json_string_length(v);
        if (n == 0 || n > max || strlen(json_string_value(v)) != n)
                return NULL;
        return json_string_value(v);
}

/* A time or null (CLIENT_NO_TIME); nullable says whether null is allowed.
 * 0 or -EBADMSG. */
static int get_time(const json_t *o, const char *key, bool nullable, int64_t *ret) {
        const json_t *v = json_object_get(o, key);
        const char *s;

        if (nullable && json_is_null(v)) {
                *ret = CLIENT_NO_TIME;
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

static int parse_key(const json_t *o, size_t i, struct client_bundle_key *k, char *detail, size_t size) {
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
            (k->revoked_us == CLIENT_NO_TIME || k->compromised_since_us == CLIENT_NO_TIME))
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
        if (!pkey_keyid(pkey, id))
                r = -ENOMEM;
        else if (strcmp(id, k->keyid) != 0)
                r = BAD("keys[%zu]: keyid %s is not the SHA-256 of its public key", i, k->keyid);
        else if (!pkey_is(pkey, k->algorithm))
                r = BAD("keys[%zu]: the public key is not an %s key", i, proto_key_algorithm_name(k->algorithm));
        EVP_PKEY_free(pkey);
        return r;
#undef BAD
}

int client_bundle_parse(const uint8_t *text, size_t len, struct client_bundle **ret, char *detail, size_t size) {
        struct client_bundle *b = NULL;
        const json_t *v, *keys;
        json_error_t jerr;
        json_t *root;
        const char *s;
        int r;

        root = json_loadb((const char *) text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                return fail(detail, size, -EBADMSG, "the bundle is not JSON: %s", jerr.text);
        r = -ENOMEM;
        b = calloc(1, sizeof *b);
        if (!b)
                goto out;
        r = -EBADMSG;
        if (!json_is_object(root)) {
                fail(detail, size, r, "the bundle is not a JSON object");
                goto out;
        }
        v = json_object_get(root, "version");
        if (!json_is_integer(v) || json_integer_value(v) != 1) {
                fail(detail, size, r, "version: not 1");
                goto out;
        }
        s = get_string(root, "origin", 1024);
        if (!s) {
                fail(detail, size, r, "origin: missing or not a string");
                goto out;
        }
        b->origin = strdup(s);
        s = get_string(root, "log_keyid", PROTO_KEYID_HEX_LEN);
        if (!s || !proto_keyid_hex_valid(s)) {
                fail(detail, size, r, "log_keyid: not 64 lowercase hex digits");
                goto out;
        }
        memcpy(b->log_keyid, s, sizeof b->log_keyid);
        v = json_object_get(root, "log_size");
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
                fail(detail, size, r, "log_size: not a non-negative integer");
                goto out;
        }
        b->log_size = (uint64_t) json_integer_value(v);
        if (get_time(root, "issued", false, &b->issued_us) < 0) {
                fail(detail, size, r, "issued: not a time");
                goto out;
        }
        keys = json_object_get(root, "keys");
        if (!json_is_array(keys) || json_array_size(keys) > CLIENT_BUNDLE_MAX_KEYS) {
                fail(detail, size, r, "keys: not an array of at most %u keys", CLIENT_BUNDLE_MAX_KEYS);
                goto out;
        }
        if (!b->origin) {
                r = -ENOMEM;
                goto out;
        }
        if (json_array_size(keys) > 0) {
                b->keys = calloc(json_array_size(keys), sizeof *b->keys);
                if (!b->keys) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        for (size_t i = 0; i < json_array_size(keys); i++) {
                b->n_keys++;
                r = parse_key(json_array_get(keys, i), i, &b->keys[i], detail, size);
                if (r < 0)
                        goto out;
                for (size_t j = 0; j < i; j++)
                        if (strcmp(b->keys[j].keyid, b->keys[i].keyid) == 0) {
                                r = fail(detail, size, -EBADMSG, "keys[%zu]: keyid %s listed twice", i, b->keys[i].keyid);
                                goto out;
                        }
        }
        *ret = b;
        b = NULL;
        r = 0;
out:
        client_bundle_free(b);
        json_decref(root);
        return r;
}

/* ---- The rule ---------------------------------------------------------------- */

void client_keyrule_result_done(struct client_keyrule_result *res) {
        if (!res)
                return;
        client_bundle_free(res->bundle);
        proto_dsse_envelope_free(res->envelope);
        client_receipt_result_done(&res->receipt);
        *res = (struct client_keyrule_result) {};
}

/* Step 1: the bundle, signed by the trusted log key. */
static int check_bundle(const struct client_keyrule_input *in, EVP_PKEY *log_key, const char *log_keyid,
                        struct client_keyrule_result *res) {
        struct proto_dsse_envelope *env = NULL;
        const struct proto_dsse_sig *sig = NULL;
        uint8_t digest[PROTO_DSSE_MAX_DIGEST];
        char *d = res->detail;
        size_t ds = sizeof res->detail;
        int r, n;

        r = proto_dsse_envelope_parse(in->bundle, in->bundle_len, &env);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fail(d, ds, CLIENT_KEYRULE_BUNDLE_MALFORMED, "the key bundle is not a DSSE envelope");
        if (strcmp(env->payload_type, CLIENT_BUNDLE_TYPE) != 0) {
                r = fail(d, ds, CLIENT_KEYRULE_BUNDLE_MALFORMED, "the envelope's payloadType is not %s",
                         CLIENT_BUNDLE_TYPE);
                goto out;
        }
        for (size_t i = 0; i < env->n_sigs; i++)
                if (env->sigs[i].keyid && strcmp(env->sigs[i].keyid, log_keyid) == 0)
                        sig = &env->sigs[i];
        if (!sig) {
                r = fail(d, ds, CLIENT_KEYRULE_BUNDLE_NOT_LOG_KEY,
                         "the key bundle has no signature by the trusted log key %s", log_keyid);
                goto out;
        }
        n = proto_dsse_pae_digest(PROVSIGN__DIGEST_ALGORITHM__SHA256, env->payload_type, env->payload,
                                  env->payload_len, digest);
        if (n < 0) {
                r = n;
                goto out;
        }
        r = proto_verify_digest(log_key, PROVSIGN__DIGEST_ALGORITHM__SHA256, digest, (size_t) n, sig->sig, sig->sig_len);
        if (r < 0)
                goto out;
        if (r == 0) {
                r = fail(d, ds, CLIENT_KEYRULE_BUNDLE_NOT_LOG_KEY,
                         "the key bundle's signature does not verify with the trusted log key %s", log_keyid);
                goto out;
        }
        r = client_bundle_parse(env->payload, env->payload_len, &res->bundle, d, ds);
        if (r == -ENOMEM)
                goto out;
        if (r < 0) {
                r = CLIENT_KEYRULE_BUNDLE_MALFORMED; /* detail set by the parser */
                goto out;
        }
        if (strcmp(res->bundle->log_keyid, log_keyid) != 0) {
                r = fail(d, ds, CLIENT_KEYRULE_BUNDLE_MALFORMED, "the bundle names log key %s, not the one that signed it",
                         res->bundle->log_keyid);
                goto out;
        }
        r = 0;
out:
        proto_dsse_envelope_free(env);
        return r;
}

/* Step 3 failed. Without a receipt all that can be said is that the
 * signature does not hold; with one that holds on its own (checkpoint by
 * the log key, inclusion, a SIGN entry), the log's record of the signature
 * says which part of the envelope was changed. */
static int bad_signature(const struct client_keyrule_input *in, struct client_keyrule_result *res) {
        const struct proto_dsse_envelope *env = res->envelope;
        const struct client_bundle_key *k = res->key;
        struct client_receipt_result rr = {};
        const Provsign__AuditEntry *e;
        char *d = res->detail;
        size_t ds = sizeof res->detail;
        int r = CLIENT_KEYRULE_BAD_SIGNATURE;

        fail(d, ds, r, "the signature does not verify with key %s over this payloadType and payload", k->keyid);
        if (!in->receipt || client_receipt_verify(in->receipt, NULL, in->log_key_pem, &rr) != 0 || !rr.entry)
                goto out;
        e = rr.entry;
        if (strcmp(e->keyid ? e->keyid : "", k->keyid) != 0)
                fail(d, ds, r, "wrong key: the log recorded this signature by key %.64s, the envelope names key %s",
                     e->keyid ? e->keyid : "", k->keyid);
        else if (strcmp(e->payload_type ? e->payload_type : "", env->payload_type) != 0)
                fail(d, ds, r, "the payloadType was changed: the log recorded '%.128s', the envelope says '%.128s'",
                     e->payload_type ? e->payload_type : "", env->payload_type);
        else
                fail(d, ds, r, "the payload was changed: its digest is not the one the log recorded for this signature");
out:
        client_receipt_result_done(&rr);
        return r;
}

int client_keyrule_check(const struct client_keyrule_input *in, struct client_keyrule_result *res) {
        char *d, log_keyid[PROTO_KEYID_HEX_LEN + 1];
        const struct client_bundle_key *k = NULL;
        const struct proto_dsse_sig *sig;
        EVP_PKEY *log_key = NULL, *pkey = NULL;
        size_t ds;
        int r;

        if (!in || !res || !in->bundle || !in->log_key_pem || !in->envelope)
                return -EINVAL;
        client_keyrule_result_done(res);
        d = res->detail;
        ds = sizeof res->detail;

        log_key = proto_pkey_from_pem(in->log_key_pem);
        if (!log_key)
                return fail(d, ds, CLIENT_KEYRULE_BAD_LOG_KEY, "the log key is not a PEM public key");
        if (!pkey_keyid(log_key, log_keyid)) {
                r = -ENOMEM;
                goto out;
        }

        /* 1. The bundle. */
        r = check_bundle(in, log_key, log_keyid, res);
        if (r != 0)
                goto out;

        /* 2. The envelope's key, in the bundle, of the principal. */
        r = proto_dsse_envelope_parse(in->envelope, in->envelope_len, &res->envelope);
        if (r == -ENOMEM)
                goto out;
        if (r < 0) {
                r = fail(d, ds, CLIENT_KEYRULE_ENVELOPE_MALFORMED, "the envelope is not a DSSE envelope (%s)",
                         r == -EMSGSIZE ? "over a size limit" : "malformed JSON or field");
                goto out;
        }
        if (res->envelope->n_sigs != 1 || !res->envelope->sigs[0].keyid) {
                r = fail(d, ds, CLIENT_KEYRULE_ENVELOPE_MALFORMED,
                         "the envelope has %zu signatures; provsign envelopes have one, with a keyid",
                         res->envelope->n_sigs);
                goto out;
        }
        sig = &res->envelope->sigs[0];
        for (size_t i = 0; i < res->bundle->n_keys; i++)
                if (strcmp(res->bundle->keys[i].keyid, sig->keyid) == 0)
                        k = &res->bundle->keys[i];
        if (!k) {
                r = fail(d, ds, CLIENT_KEYRULE_KEY_UNKNOWN, "key %.64s is not in the key bundle", sig->keyid);
                goto out;
        }
        res->key = k;
        if (in->principal && strcmp(in->principal, k->principal) != 0) {
                r = fail(d, ds, CLIENT_KEYRULE_WRONG_PRINCIPAL, "key %s belongs to principal '%.64s', not '%.64s'",
                         k->keyid, k->principal, in->principal);
                goto out;
        }

        /* 3. The signature over the PAE, with the key's digest. */
        res->digest_algorithm = proto_key_algorithm_digest(k->algorithm);
        r = proto_dsse_pae_digest(res->digest_algorithm, res->envelope->payload_type, res->envelope->payload,
                                  res->envelope->payload_len, res->digest);
        if (r < 0)
                goto out;
        res->digest_len = (size_t) r;
        pkey = proto_pkey_from_pem(k->pem);
        if (!pkey) {
                r = -ENOMEM; /* parsed once already in client_bundle_parse */
                goto out;
        }
        r = proto_verify_digest(pkey, res->digest_algorithm, res->digest, res->digest_len, sig->sig, sig->sig_len);
        if (r < 0)
                goto out;
        if (r == 0) {
                r = bad_signature(in, res);
                goto out;
        }

        /* 4. The receipt, and the revocation rule. */
        if (in->receipt) {
                struct client_receipt_signer signer = {
                        .keyid = k->keyid,
                        .principal = k->principal,
                        .digest_algorithm = res->digest_algorithm,
                        .digest = res->digest,
                        .digest_len = res->digest_len,
                };

                r = client_receipt_verify(in->receipt, &signer, in->log_key_pem, &res->receipt);
                if (r < 0)
                        goto out;
                if (r > 0) {
                        r = fail(d, ds, CLIENT_KEYRULE_RECEIPT_INVALID, "the receipt fails its %s check: %s",
                                 client_receipt_check_name(r), res->receipt.detail);
                        goto out;
                }
                if (strcmp(res->receipt.origin, res->bundle->origin) != 0) {
                        r = fail(d, ds, CLIENT_KEYRULE_RECEIPT_INVALID,
                                 "the receipt is from log '%.128s', the key bundle from log '%.128s'",
                                 res->receipt.origin, res->bundle->origin);
                        goto out;
                }
                res->receipt_verified = true;
        }
        if (k->state == PROVSIGN__KEY_STATE__REVOKED) {
                char cs[PROTO_TIME_LEN + 1], lt[PROTO_TIME_LEN + 1];

                if (!proto_time_format_us(k->compromised_since_us, cs))
                        snprintf(cs, sizeof cs, "?");
                if (!in->receipt) {
                        r = fail(d, ds, CLIENT_KEYRULE_REVOKED_NO_RECEIPT,
                                 "key %s is revoked (compromised since %s) and no receipt proves the signature older",
                                 k->keyid, cs);
                        goto out;
                }
                if (in->receipt->log_time_us >= k->compromised_since_us) {
                        if (!proto_time_format_us(in->receipt->log_time_us, lt))
                                snprintf(lt, sizeof lt, "?");
                        r = fail(d, ds, CLIENT_KEYRULE_AFTER_COMPROMISE,
                                 "key %s is revoked, compromised since %s; the receipt's log time %s is not before it",
                                 k->keyid, cs, lt);
                        goto out;
                }
        }
        d[0] = '\0';
        r = CLIENT_KEYRULE_VALID;
out:
        EVP_PKEY_free(pkey);
        EVP_PKEY_free(log_key);
        return r;
}
