/* client/keyrule: every branch of the verification rule. Bundles, envelopes
 * and receipts are made here the agent's way with OpenSSL keys (the log key
 * signs the bundle envelope and the checkpoints; principal keys sign DSSE
 * envelopes), then changed one thing at a time. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dsse.h"
#include "keyid.h"
#include "keyrule.h"
#include "merkle.h"
#include "note.h"
#include "provsign.pb-c.h"
#include "timefmt.h"

#define ORIGIN "provsign.test/keyrule"
#define INTOTO "application/vnd.in-toto+json"
#define T0 INT64_C(1795630801123456) /* 2026-11-25T18:20:01.123456Z */

struct key {
        EVP_PKEY *pkey;
        char keyid[PROTO_KEYID_HEX_LEN + 1];
        char *pem;
        uint8_t *der;
        size_t der_len;
};

static struct key log_key, other_log_key, k_active, k_retired, k_revoked, k_destroyed, k_p384, k_other;

static void key_make(struct key *k, const char *curve) {
        unsigned char *p = NULL;
        BIO *bio;
        char *data;
        long n;
        int len;

        k->pkey = EVP_EC_gen(curve);
        assert_non_null(k->pkey);
        len = i2d_PUBKEY(k->pkey, &p);
        assert_true(len > 0);
        k->der = p;
        k->der_len = (size_t) len;
        proto_keyid_hex(k->der, k->der_len, k->keyid);
        bio = BIO_new(BIO_s_mem());
        assert_int_equal(PEM_write_bio_PUBKEY(bio, k->pkey), 1);
        n = BIO_get_mem_data(bio, &data);
        k->pem = strndup(data, (size_t) n);
        BIO_free(bio);
}

static void key_done(struct key *k) {
        EVP_PKEY_free(k->pkey);
        OPENSSL_free(k->der);
        free(k->pem);
}

static void sign_digest(const struct key *k, const uint8_t *d, size_t n, uint8_t *sig, size_t *sig_len) {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k->pkey, NULL);

        assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
        assert_int_equal(EVP_PKEY_sign(ctx, sig, sig_len, d, n), 1);
        EVP_PKEY_CTX_free(ctx);
}

/* A DSSE envelope of payload, signed by k with the digest dalg, under keyid. */
static char *envelope(const struct key *k, const char *keyid, int dalg, const char *type, const char *payload) {
        uint8_t d[PROTO_DSSE_MAX_DIGEST], sig[256];
        size_t sig_len = sizeof sig;
        char *json;
        int n;

        n = proto_dsse_pae_digest(dalg, type, (const uint8_t *) payload, strlen(payload), d);
        assert_true(n > 0);
        sign_digest(k, d, (size_t) n, sig, &sig_len);
        struct proto_dsse_sig s = { .keyid = (char *) keyid, .sig = sig, .sig_len = sig_len };
        assert_int_equal(proto_dsse_envelope_format(type, (const uint8_t *) payload, strlen(payload), &s, 1, &json), 0);
        return json;
}

static json_t *tm(int64_t us) {
        char buf[PROTO_TIME_LEN + 1];

        if (us < 0)
                return json_null();
        assert_true(proto_time_format_us(us, buf));
        return json_string(buf);
}

static json_t *bundle_key(const struct key *k, const char *principal, int gen, const char *alg, const char *state,
                          int64_t revoked, int64_t compromised) {
        return json_pack("{s:s, s:s, s:i, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:s}", "keyid", k->keyid, "principal",
                         principal, "generation", gen, "algorithm", alg, "state", state, "created", tm(T0 - 1000000),
                         "retired", tm(strcmp(state, "retired") == 0 ? T0 : -1), "revoked", tm(revoked), "reason",
                         revoked >= 0 ? json_string("key leaked") : json_null(), "compromised_since", tm(compromised),
                         "destroyed", tm(strcmp(state, "destroyed") == 0 ? T0 : -1), "public_key_pem", k->pem);
}

/* The normal bundle: ci has an active key (gen 4), a retired (1), a revoked
 * one compromised since T0 (2), a destroyed one (3); big has a P-384 key. */
static json_t *bundle_json(void) {
        json_t *keys = json_array();

        json_array_append_new(keys, bundle_key(&k_retired, "ci", 1, "ecdsa-p256", "retired", -1, -1));
        json_array_append_new(keys, bundle_key(&k_revoked, "ci", 2, "ecdsa-p256", "revoked", T0 + 5000000, T0));
        json_array_append_new(keys, bundle_key(&k_destroyed, "ci", 3, "ecdsa-p256", "destroyed", -1, -1));
        json_array_append_new(keys, bundle_key(&k_active, "ci", 4, "ecdsa-p256", "active", -1, -1));
        json_array_append_new(keys, bundle_key(&k_p384, "big", 1, "ecdsa-p384", "active", -1, -1));
        return json_pack("{s:i, s:s, s:s, s:i, s:o, s:o}", "version", 1, "origin", ORIGIN, "log_keyid", log_key.keyid,
                         "log_size", 10, "issued", tm(T0 + 9000000), "keys", keys);
}

/* The bundle envelope of j (reference taken), signed by signer under keyid. */
static char *bundle_envelope(json_t *j, const struct key *signer, const char *keyid) {
        char *payload = json_dumps(j, JSON_COMPACT);
        char *env;

        json_decref(j);
        env = envelope(signer, keyid, PROVSIGN__DIGEST_ALGORITHM__SHA256, PROTO_KEY_BUNDLE_TYPE, payload);
        free(payload);
        return env;
}

/* A receipt for a SIGN entry (keyid, principal, digest) at log time t,
 * index 1 in a tree of 3, checkpoint signed by lk under origin. */
struct receipt {
        uint8_t *leaf;
        size_t leaf_len;
        uint8_t proof[PROTO_MERKLE_MAX_PROOF][PROTO_MERKLE_HASH_LEN];
        size_t n_proof;
        char *checkpoint;
        struct client_receipt rc;
};

static void receipt_make(struct receipt *r, const struct key *lk, const char *origin, const char *keyid,
                         const char *principal, int dalg, const uint8_t *digest, size_t dlen, int64_t t) {
        Provsign__AuditEntry ae = PROVSIGN__AUDIT_ENTRY__INIT;
        proto_merkle_tree *tree = NULL;
        uint8_t h[PROTO_MERKLE_HASH_LEN], root[PROTO_MERKLE_HASH_LEN], key_hash[PROTO_NOTE_KEY_HASH_LEN], sig[128];
        size_t sig_len = sizeof sig;
        char *body = NULL;

        memset(r, 0, sizeof *r);
        ae.seq = 1;
        ae.time_us = t;
        ae.event = PROVSIGN__AUDIT_EVENT__SIGN;
        ae.principal = (char *) principal;
        ae.keyid = (char *) keyid;
        ae.digest_algorithm = (Provsign__DigestAlgorithm) dalg;
        ae.digest.data = (uint8_t *) digest;
        ae.digest.len = dlen;
        ae.payload_type = (char *) INTOTO;
        r->leaf_len = protobuf_c_message_get_packed_size(&ae.base);
        r->leaf = malloc(r->leaf_len);
        assert_int_equal(protobuf_c_message_pack(&ae.base, r->leaf), r->leaf_len);

        assert_int_equal(proto_merkle_tree_new(&tree), 0);
        for (int i = 0; i < 3; i++) {
                if (i == 1)
                        assert_int_equal(proto_merkle_leaf_hash(r->leaf, r->leaf_len, h), 0);
                else
                        assert_int_equal(proto_merkle_leaf_hash((const uint8_t *) "other", 5, h), 0);
                assert_int_equal(proto_merkle_tree_append(tree, h), 0);
        }
        assert_int_equal(proto_merkle_tree_root(tree, root), 0);
        assert_int_equal(proto_merkle_tree_inclusion_proof(tree, 1, 3, r->proof, &r->n_proof), 0);
        proto_merkle_tree_free(tree);

        assert_int_equal(proto_checkpoint_format(origin, 3, root, &body), 0);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, lk->pkey), 1);
        assert_int_equal(EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *) body, strlen(body)), 1);
        EVP_MD_CTX_free(ctx);
        assert_int_equal(proto_note_key_hash(lk->der, lk->der_len, key_hash), 0);
        assert_int_equal(proto_note_assemble(body, origin, key_hash, sig, sig_len, &r->checkpoint), 0);
        free(body);
        r->rc = (struct client_receipt) {
                .log_seq = 1,
                .log_time_us = t,
                .leaf = r->leaf,
                .leaf_len = r->leaf_len,
                .tree_size = 3,
                .proof = (const uint8_t (*)[PROTO_MERKLE_HASH_LEN]) r->proof,
                .n_proof = r->n_proof,
                .checkpoint = r->checkpoint,
        };
}

static void receipt_done(struct receipt *r) {
        free(r->leaf);
        free(r->checkpoint);
}

/* The PAE digest of the standard payload for dalg. */
static const char statement[] = "{\"_type\":\"https://in-toto.io/Statement/v1\"}";

static size_t pae_digest(int dalg, uint8_t d[PROTO_DSSE_MAX_DIGEST]) {
        int n = proto_dsse_pae_digest(dalg, INTOTO, (const uint8_t *) statement, strlen(statement), d);
        assert_true(n > 0);
        return (size_t) n;
}

static char *good_bundle;

static int setup(void **state) {
        key_make(&log_key, "P-256");
        key_make(&other_log_key, "P-256");
        key_make(&k_active, "P-256");
        key_make(&k_retired, "P-256");
        key_make(&k_revoked, "P-256");
        key_make(&k_destroyed, "P-256");
        key_make(&k_p384, "P-384");
        key_make(&k_other, "P-256");
        good_bundle = bundle_envelope(bundle_json(), &log_key, log_key.keyid);
        return 0;
}

static int teardown(void **state) {
        key_done(&log_key);
        key_done(&other_log_key);
        key_done(&k_active);
        key_done(&k_retired);
        key_done(&k_revoked);
        key_done(&k_destroyed);
        key_done(&k_p384);
        key_done(&k_other);
        free(good_bundle);
        return 0;
}

/* Runs the rule; prints the detail when it is not the expected result. */
static int run(const char *bundle, const char *log_pem, const char *env, const char *principal,
               const struct client_receipt *rc, struct client_keyrule_result *res) {
        struct client_keyrule_input in = {
                .bundle = bundle,
                .bundle_len = strlen(bundle),
                .log_key_pem = log_pem,
                .envelope = env,
                .envelope_len = strlen(env),
                .principal = principal,
                .receipt = rc,
        };
        return client_keyrule_check(&in, res);
}

static void expect(int want, const char *bundle, const char *env, const char *principal,
                   const struct client_receipt *rc, const char *detail_has) {
        struct client_keyrule_result res = {};
        int r = run(bundle, log_key.pem, env, principal, rc, &res);

        if (r != want)
                print_error("want %s, got %s: %s\n", client_keyrule_name(want), client_keyrule_name(r), res.detail);
        assert_int_equal(r, want);
        if (detail_has && !strstr(res.detail, detail_has))
                print_error("detail: %s\n", res.detail);
        if (detail_has)
                assert_non_null(strstr(res.detail, detail_has));
        client_keyrule_result_done(&res);
}

static char *signed_by(const struct key *k) {
        return envelope(k, k->keyid, PROVSIGN__DIGEST_ALGORITHM__SHA256, INTOTO, statement);
}

static void test_valid_states(void **state) {
        struct client_keyrule_result res = {};
        char *env = signed_by(&k_active);

        assert_int_equal(run(good_bundle, log_key.pem, env, "ci", NULL, &res), CLIENT_KEYRULE_VALID);
        assert_string_equal(res.key->keyid, k_active.keyid);
        assert_string_equal(res.key->principal, "ci");
        assert_string_equal(res.bundle->origin, ORIGIN);
        assert_false(res.receipt_verified);
        client_keyrule_result_done(&res);
        /* no principal claimed: the bundle's */
        expect(CLIENT_KEYRULE_VALID, good_bundle, env, NULL, NULL, NULL);
        free(env);

        /* retired and destroyed keys stay valid, without a receipt */
        env = signed_by(&k_retired);
        expect(CLIENT_KEYRULE_VALID, good_bundle, env, "ci", NULL, NULL);
        free(env);
        env = signed_by(&k_destroyed);
        expect(CLIENT_KEYRULE_VALID, good_bundle, env, "ci", NULL, NULL);
        free(env);

        /* a P-384 key signs the SHA-384 digest of the PAE */
        env = envelope(&k_p384, k_p384.keyid, PROVSIGN__DIGEST_ALGORITHM__SHA384, INTOTO, statement);
        assert_int_equal(run(good_bundle, log_key.pem, env, "big", NULL, &res), CLIENT_KEYRULE_VALID);
        assert_int_equal(res.digest_algorithm, PROVSIGN__DIGEST_ALGORITHM__SHA384);
        assert_int_equal(res.digest_len, 48);
        client_keyrule_result_done(&res);
        free(env);
        /* ... and a SHA-256 one by that key is refused */
        env = envelope(&k_p384, k_p384.keyid, PROVSIGN__DIGEST_ALGORITHM__SHA256, INTOTO, statement);
        expect(CLIENT_KEYRULE_BAD_SIGNATURE, good_bundle, env, "big", NULL, "does not verify");
        free(env);
}

static void test_receipts(void **state) {
        struct client_keyrule_result res = {};
        uint8_t d[PROTO_DSSE_MAX_DIGEST];
        size_t n = pae_digest(PROVSIGN__DIGEST_ALGORITHM__SHA256, d);
        struct receipt r;
        char *env;

        /* active key with a good receipt */
        env = signed_by(&k_active);
        receipt_make(&r, &log_key, ORIGIN, k_active.keyid, "ci", PROVSIGN__DIGEST_ALGORITHM__SHA256, d, n, T0 + 1);
        assert_int_equal(run(good_bundle, log_key.pem, env, "ci", &r.rc, &res), CLIENT_KEYRULE_VALID);
        assert_true(res.receipt_verified);
        client_keyrule_result_done(&res);
        receipt_done(&r);
        free(env);

        /* revoked key: no receipt, receipt before, at and after compromised_since */
        env = signed_by(&k_revoked);
        expect(CLIENT_KEYRULE_REVOKED_NO_RECEIPT, good_bundle, env, "ci", NULL, "is revoked");
        receipt_make(&r, &log_key, ORIGIN, k_revoked.keyid, "ci", PROVSIGN__DIGEST_ALGORITHM__SHA256, d, n, T0 - 1);
        expect(CLIENT_KEYRULE_VALID, good_bundle, env, "ci", &r.rc, NULL);
        receipt_done(&r);
        receipt_make(&r, &log_key, ORIGIN, k_revoked.keyid, "ci", PROVSIGN__DIGEST_ALGORITHM__SHA256, d, n, T0);
        expect(CLIENT_KEYRULE_AFTER_COMPROMISE, good_bundle, env, "ci", &r.rc, "not before it");
        receipt_done(&r);
        receipt_make(&r, &log_key, ORIGIN, k_revoked.keyid, "ci", PROVSIGN__DIGEST_ALGORITHM__SHA256, d, n, T0 + 3600000000);
        expect(CLIENT_KEYRULE_AFTER_COMPROMISE, good_bundle, env, "ci", &r.rc, "compromised since 2026-11-25T18:20:01.123456Z");
        receipt_done(&r);

        /* receipts that do not prove this signature's entry */
        uint8_t other[32] = { 1 };
        receipt_make(&r, &log_key, ORIGIN, k_revoked.keyid, "ci", PROVSIGN__DIGEST_ALGORITHM__SHA256, other, 32, T0 - 1);
        expect(CLIENT_KEYRULE_RECEIPT_INVALID, good_bundle, env, "ci", &r.rc, "signer");
        receipt_done(&r);
        receipt_make(&r, &log_key, ORIGIN, k_active.keyid, "ci", PROVSIGN__DIGEST_ALGORITHM__SHA256, d, n, T0 - 1);
        expect(CLIENT_KEYRULE_RECEIPT_INVALID, good_bundle, env, "ci", &r.rc, "keyid");
        receipt_done(&r);
        /* checkpoint signed by another key */
        receipt_make(&r, &other_log_key, ORIGIN, k_revoked.keyid, "ci", PROVSIGN__DIGEST_ALGORITHM__SHA256, d, n, T0 - 1);
        expect(CLIENT_KEYRULE_RECEIPT_INVALID, good_bundle, env, "ci", &r.rc, "checkpoint signature");
        receipt_done(&r);
        /* same log key, another log's origin */
        receipt_make(&r, &log_key, "provsign.test/elsewhere", k_revoked.keyid, "ci", PROVSIGN__DIGEST_ALGORITHM__SHA256,
                     d, n, T0 - 1);
        expect(CLIENT_KEYRULE_RECEIPT_INVALID, good_bundle, env, "ci", &r.rc, "from log");
        receipt_done(&r);
        /* a broken inclusion proof */
        receipt_make(&r, &log_key, ORIGIN, k_revoked.keyid, "ci", PROVSIGN__DIGEST_ALGORITHM__SHA256, d, n, T0 - 1);
        r.proof[0][0] ^= 1;
        expect(CLIENT_KEYRULE_RECEIPT_INVALID, good_bundle, env, "ci", &r.rc, "inclusion proof");
        receipt_done(&r);
        free(env);

        /* a bad receipt is not passed over for a key that needs none */
        env = signed_by(&k_active);
        receipt_make(&r, &log_key, ORIGIN, k_active.keyid, "ci", PROVSIGN__DIGEST_ALGORITHM__SHA256, other, 32, T0);
        expect(CLIENT_KEYRULE_RECEIPT_INVALID, good_bundle, env, "ci", &r.rc, "digest");
        receipt_done(&r);
        free(env);
}

static void test_bundle_trust(void **state) {
        char *env = signed_by(&k_active), *b;
        struct client_keyrule_result res = {};

        /* the log key given is not a key */
        assert_int_equal(run(good_bundle, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", env, "ci", NULL,
                             &res),
                         CLIENT_KEYRULE_BAD_LOG_KEY);
        client_keyrule_result_done(&res);

        /* verified against another log key: no signature by it */
        assert_int_equal(run(good_bundle, other_log_key.pem, env, "ci", NULL, &res), CLIENT_KEYRULE_BUNDLE_NOT_LOG_KEY);
        assert_non_null(strstr(res.detail, "no signature by the trusted log key"));
        client_keyrule_result_done(&res);

        /* signed by another key under the log key's id: a forgery */
        b = bundle_envelope(bundle_json(), &other_log_key, log_key.keyid);
        expect(CLIENT_KEYRULE_BUNDLE_NOT_LOG_KEY, b, env, "ci", NULL, "does not verify with the trusted log key");
        free(b);

        /* a tampered bundle: payload changed after signing (a key's principal) */
        json_t *j = bundle_json();
        char *payload = json_dumps(j, JSON_COMPACT), *p2;
        json_decref(j);
        b = envelope(&log_key, log_key.keyid, PROVSIGN__DIGEST_ALGORITHM__SHA256, PROTO_KEY_BUNDLE_TYPE, payload);
        struct proto_dsse_envelope *e;
        assert_int_equal(proto_dsse_envelope_parse(b, strlen(b), &e), 0);
        p2 = strstr((char *) e->payload, "\"big\"");
        assert_non_null(p2);
        memcpy(p2, "\"bog\"", 5);
        struct proto_dsse_sig s = e->sigs[0];
        char *tampered;
        assert_int_equal(proto_dsse_envelope_format(e->payload_type, e->payload, e->payload_len, &s, 1, &tampered), 0);
        expect(CLIENT_KEYRULE_BUNDLE_NOT_LOG_KEY, tampered, env, "ci", NULL, "does not verify");
        free(tampered);
        proto_dsse_envelope_free(e);
        free(payload);
        free(b);
        free(env);
}

static void test_bundle_malformed(void **state) {
        char *env = signed_by(&k_active), *b;
        json_t *j, *k;

        expect(CLIENT_KEYRULE_BUNDLE_MALFORMED, "not json", env, "ci", NULL, "not a DSSE envelope");

        /* right signature, wrong payloadType */
        char *payload = json_dumps((j = bundle_json()), JSON_COMPACT);
        json_decref(j);
        b = envelope(&log_key, log_key.keyid, PROVSIGN__DIGEST_ALGORITHM__SHA256, INTOTO, payload);
        expect(CLIENT_KEYRULE_BUNDLE_MALFORMED, b, env, "ci", NULL, "payloadType");
        free(b);
        free(payload);

        /* signed payload that is not a bundle */
        b = envelope(&log_key, log_key.keyid, PROVSIGN__DIGEST_ALGORITHM__SHA256, PROTO_KEY_BUNDLE_TYPE, "[1,2]");
        expect(CLIENT_KEYRULE_BUNDLE_MALFORMED, b, env, "ci", NULL, "not a JSON object");
        free(b);

        /* version 2 */
        j = bundle_json();
        json_object_set_new(j, "version", json_integer(2));
        b = bundle_envelope(j, &log_key, log_key.keyid);
        expect(CLIENT_KEYRULE_BUNDLE_MALFORMED, b, env, "ci", NULL, "version");
        free(b);

        /* names another log key */
        j = bundle_json();
        json_object_set_new(j, "log_keyid", json_string(other_log_key.keyid));
        b = bundle_envelope(j, &log_key, log_key.keyid);
        expect(CLIENT_KEYRULE_BUNDLE_MALFORMED, b, env, "ci", NULL, "names log key");
        free(b);

        /* a key id that is not its key's */
        j = bundle_json();
        k = json_array_get(json_object_get(j, "keys"), 0);
        json_object_set_new(k, "public_key_pem", json_string(k_other.pem));
        b = bundle_envelope(j, &log_key, log_key.keyid);
        expect(CLIENT_KEYRULE_BUNDLE_MALFORMED, b, env, "ci", NULL, "is not the SHA-256 of its public key");
        free(b);

        /* a P-256 key listed as ecdsa-p384 */
        j = bundle_json();
        k = json_array_get(json_object_get(j, "keys"), 3);
        json_object_set_new(k, "algorithm", json_string("ecdsa-p384"));
        b = bundle_envelope(j, &log_key, log_key.keyid);
        expect(CLIENT_KEYRULE_BUNDLE_MALFORMED, b, env, "ci", NULL, "not an ecdsa-p384 key");
        free(b);

        /* revoked without compromised_since */
        j = bundle_json();
        k = json_array_get(json_object_get(j, "keys"), 1);
        json_object_set_new(k, "compromised_since", json_null());
        b = bundle_envelope(j, &log_key, log_key.keyid);
        expect(CLIENT_KEYRULE_BUNDLE_MALFORMED, b, env, "ci", NULL, "revoked without");
        free(b);

        /* a key twice */
        j = bundle_json();
        json_array_append(json_object_get(j, "keys"), json_array_get(json_object_get(j, "keys"), 0));
        b = bundle_envelope(j, &log_key, log_key.keyid);
        expect(CLIENT_KEYRULE_BUNDLE_MALFORMED, b, env, "ci", NULL, "listed twice");
        free(b);

        /* bad times, states, missing fields */
        static const struct { int key; const char *field; json_t *(*value)(void); const char *msg; } cases[] = {
                { 0, "created", json_null, "created" },
                { 0, "state", json_null, "state" },
                { 0, "principal", json_null, "principal" },
                { 0, "generation", json_null, "generation" },
                { 0, "reason", json_true, "reason" },
                { 0, "revoked", json_true, "revoked" },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                j = bundle_json();
                k = json_array_get(json_object_get(j, "keys"), (size_t) cases[i].key);
                json_object_set_new(k, cases[i].field, cases[i].value());
                b = bundle_envelope(j, &log_key, log_key.keyid);
                expect(CLIENT_KEYRULE_BUNDLE_MALFORMED, b, env, "ci", NULL, cases[i].msg);
                free(b);
        }
        j = bundle_json();
        json_object_set_new(json_array_get(json_object_get(j, "keys"), 0), "created",
                            json_string("2026-11-25T18:20:01Z"));
        b = bundle_envelope(j, &log_key, log_key.keyid);
        expect(CLIENT_KEYRULE_BUNDLE_MALFORMED, b, env, "ci", NULL, "created");
        free(b);
        free(env);
}

static void test_envelope_and_key(void **state) {
        char *env;

        expect(CLIENT_KEYRULE_ENVELOPE_MALFORMED, good_bundle, "{}", "ci", NULL, "not a DSSE envelope");
        /* two signatures */
        uint8_t sig[2] = { 1, 2 };
        struct proto_dsse_sig s[2] = { { .keyid = k_active.keyid, .sig = sig, .sig_len = 2 },
                                       { .keyid = k_retired.keyid, .sig = sig, .sig_len = 2 } };
        assert_int_equal(proto_dsse_envelope_format(INTOTO, (const uint8_t *) "x", 1, s, 2, &env), 0);
        expect(CLIENT_KEYRULE_ENVELOPE_MALFORMED, good_bundle, env, "ci", NULL, "2 signatures");
        free(env);
        /* no keyid */
        assert_int_equal(proto_dsse_envelope_format(INTOTO, (const uint8_t *) "x", 1, s, 1, &env), 0);
        s[0].keyid = NULL;
        free(env);
        assert_int_equal(proto_dsse_envelope_format(INTOTO, (const uint8_t *) "x", 1, s, 1, &env), 0);
        expect(CLIENT_KEYRULE_ENVELOPE_MALFORMED, good_bundle, env, "ci", NULL, "with a keyid");
        free(env);

        /* a key the bundle does not list */
        env = signed_by(&k_other);
        expect(CLIENT_KEYRULE_KEY_UNKNOWN, good_bundle, env, "ci", NULL, "not in the key bundle");
        free(env);

        /* another principal's key */
        env = signed_by(&k_active);
        expect(CLIENT_KEYRULE_WRONG_PRINCIPAL, good_bundle, env, "big", NULL, "belongs to principal 'ci'");
        free(env);

        /* signed by another key under the active key's id */
        env = envelope(&k_other, k_active.keyid, PROVSIGN__DIGEST_ALGORITHM__SHA256, INTOTO, statement);
        expect(CLIENT_KEYRULE_BAD_SIGNATURE, good_bundle, env, "ci", NULL, "does not verify");
        free(env);
}

/* Tampered payload and changed payloadType: the signature no longer holds. */
static void test_tampered(void **state) {
        char *env = signed_by(&k_active), *bad;
        struct proto_dsse_envelope *e;

        assert_int_equal(proto_dsse_envelope_parse(env, strlen(env), &e), 0);
        e->payload[2] ^= 1;
        assert_int_equal(proto_dsse_envelope_format(e->payload_type, e->payload, e->payload_len, e->sigs, 1, &bad), 0);
        expect(CLIENT_KEYRULE_BAD_SIGNATURE, good_bundle, bad, "ci", NULL, "does not verify");
        free(bad);
        e->payload[2] ^= 1;
        assert_int_equal(proto_dsse_envelope_format("application/json", e->payload, e->payload_len, e->sigs, 1, &bad), 0);
        expect(CLIENT_KEYRULE_BAD_SIGNATURE, good_bundle, bad, "ci", NULL, "does not verify");
        free(bad);
        /* with the receipt, the log's record says what was changed */
        uint8_t d[PROTO_DSSE_MAX_DIGEST];
        size_t n = pae_digest(PROVSIGN__DIGEST_ALGORITHM__SHA256, d);
        struct receipt r;
        receipt_make(&r, &log_key, ORIGIN, k_active.keyid, "ci", PROVSIGN__DIGEST_ALGORITHM__SHA256, d, n, T0);
        e->payload[2] ^= 1;
        assert_int_equal(proto_dsse_envelope_format(e->payload_type, e->payload, e->payload_len, e->sigs, 1, &bad), 0);
        expect(CLIENT_KEYRULE_BAD_SIGNATURE, good_bundle, bad, "ci", &r.rc, "the payload was changed");
        free(bad);
        e->payload[2] ^= 1;
        assert_int_equal(proto_dsse_envelope_format("application/json", e->payload, e->payload_len, e->sigs, 1, &bad), 0);
        expect(CLIENT_KEYRULE_BAD_SIGNATURE, good_bundle, bad, "ci", &r.rc, "the payloadType was changed");
        free(bad);
        /* the keyid swapped for another key of the principal */
        struct proto_dsse_sig swapped = e->sigs[0];
        swapped.keyid = k_retired.keyid;
        assert_int_equal(proto_dsse_envelope_format(e->payload_type, e->payload, e->payload_len, &swapped, 1, &bad), 0);
        expect(CLIENT_KEYRULE_BAD_SIGNATURE, good_bundle, bad, "ci", &r.rc, "wrong key");
        expect(CLIENT_KEYRULE_BAD_SIGNATURE, good_bundle, bad, "ci", NULL, "does not verify with key");
        free(bad);
        /* a receipt that does not hold explains nothing */
        r.proof[0][0] ^= 1;
        assert_int_equal(proto_dsse_envelope_format("application/json", e->payload, e->payload_len, e->sigs, 1, &bad), 0);
        expect(CLIENT_KEYRULE_BAD_SIGNATURE, good_bundle, bad, "ci", &r.rc, "does not verify with key");
        free(bad);
        receipt_done(&r);
        /* unchanged, re-encoded: still valid */
        assert_int_equal(proto_dsse_envelope_format(e->payload_type, e->payload, e->payload_len, e->sigs, 1, &bad), 0);
        expect(CLIENT_KEYRULE_VALID, good_bundle, bad, "ci", NULL, NULL);
        free(bad);
        proto_dsse_envelope_free(e);
        free(env);
}

static void test_names_and_args(void **state) {
        struct client_keyrule_result res = {};
        struct client_keyrule_input in = {};

        assert_string_equal(client_keyrule_name(CLIENT_KEYRULE_VALID), "valid");
        assert_string_equal(client_keyrule_name(CLIENT_KEYRULE_AFTER_COMPROMISE), "signed after the key's compromise");
        assert_string_equal(client_keyrule_name(99), "unknown");
        assert_string_equal(client_keyrule_name(-1), "unknown");
        assert_int_equal(client_keyrule_check(NULL, &res), -EINVAL);
        assert_int_equal(client_keyrule_check(&in, &res), -EINVAL);
        assert_int_equal(client_keyrule_check(&in, NULL), -EINVAL);
}

/* The one writer and the one reader of the bundle payload agree: what
 * proto_bundle_format() writes, proto_bundle_parse() reads back the same,
 * partial bundles' principal included. */
static void test_bundle_format_round_trip(void **state) {
        json_t *j = bundle_json();
        char *text = json_dumps(j, JSON_COMPACT), *again = NULL, detail[256];
        struct proto_bundle *a = NULL, *b = NULL;
        size_t len;
        (void) state;

        json_decref(j);
        assert_int_equal(proto_bundle_parse((const uint8_t *) text, strlen(text), &a, detail, sizeof detail), 0);
        a->principal = strdup("ci");
        assert_int_equal(proto_bundle_format(a, &again, &len), 0);
        assert_int_equal(strlen(again), len);
        assert_int_equal(proto_bundle_parse((const uint8_t *) again, len, &b, detail, sizeof detail), 0);
        assert_string_equal(b->origin, a->origin);
        assert_string_equal(b->log_keyid, a->log_keyid);
        assert_string_equal(b->principal, "ci");
        assert_int_equal(b->log_size, a->log_size);
        assert_int_equal(b->issued_us, a->issued_us);
        assert_int_equal(b->n_keys, a->n_keys);
        for (size_t i = 0; i < a->n_keys; i++) {
                const struct proto_bundle_key *x = &a->keys[i], *y = &b->keys[i];

                assert_string_equal(x->keyid, y->keyid);
                assert_string_equal(x->principal, y->principal);
                assert_int_equal(x->generation, y->generation);
                assert_int_equal(x->algorithm, y->algorithm);
                assert_int_equal(x->state, y->state);
                assert_int_equal(x->created_us, y->created_us);
                assert_int_equal(x->retired_us, y->retired_us);
                assert_int_equal(x->revoked_us, y->revoked_us);
                assert_int_equal(x->compromised_since_us, y->compromised_since_us);
                assert_int_equal(x->destroyed_us, y->destroyed_us);
                assert_true((!x->reason && !y->reason) || strcmp(x->reason, y->reason) == 0);
                assert_string_equal(x->pem, y->pem);
        }
        proto_bundle_free(a);
        proto_bundle_free(b);
        free(text);
        free(again);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_bundle_format_round_trip),
                cmocka_unit_test(test_valid_states),
                cmocka_unit_test(test_receipts),
                cmocka_unit_test(test_bundle_trust),
                cmocka_unit_test(test_bundle_malformed),
                cmocka_unit_test(test_envelope_and_key),
                cmocka_unit_test(test_tampered),
                cmocka_unit_test(test_names_and_args),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
