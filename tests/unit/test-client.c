/* Unit tests for libprovsign: names and errors, socket selection, and the
 * reply parser against a scripted fake agent on the other end of a
 * socketpair (or a listening socket). The fake sends exactly the bytes a
 * test gives it — oversized headers, torn frames, garbage, refusals, replies
 * without a body — and the library must answer with -EPROTO or the status,
 * never crash, never leak (the suite runs clean under ASan/UBSan). */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "names.h"
#include "dsse.h"
#include "frame.h"
#include "hex.h"
#include "keyid.h"
#include "keybundle.h"
#include "merkle.h"
#include "note.h"
#include "provsign.pb-c.h"

#include "fake-agent.h"
#include "libprovsign-internal.h"
#include "provsign.h"
#include "receipt-json.h"
#include "receipt.h"

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

/* ---- Fixtures ------------------------------------------------------------ */

static const uint8_t digest32[32] = {
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10,
        0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20,
};

static const uint8_t fake_der_sig[] = { 0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02 };

static const char keyid_a[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/* A real P-256 public key, its DER SPKI, key id and OpenSSL's PEM. */
struct test_key {
        uint8_t *der;
        size_t der_len;
        char keyid[PROTO_KEYID_HEX_LEN + 1];
        char *pem;
};

static void test_key_make(struct test_key *k) {
        EVP_PKEY *pkey = EVP_EC_gen("P-256");
        unsigned char *p = NULL;
        BIO *bio;
        char *data;
        long n;
        int len;

        assert_non_null(pkey);
        len = i2d_PUBKEY(pkey, &p);
        assert_true(len > 0);
        k->der = p;
        k->der_len = (size_t) len;
        proto_keyid_hex(k->der, k->der_len, k->keyid);

        bio = BIO_new(BIO_s_mem());
        assert_non_null(bio);
        assert_int_equal(PEM_write_bio_PUBKEY(bio, pkey), 1);
        n = BIO_get_mem_data(bio, &data);
        k->pem = strndup(data, (size_t) n);
        assert_non_null(k->pem);
        BIO_free(bio);
        EVP_PKEY_free(pkey);
}

static void test_key_done(struct test_key *k) {
        OPENSSL_free(k->der);
        free(k->pem);
}

static void key_info_set(Provsign__KeyInfo *ki, const struct test_key *k, const char *principal) {
        provsign__key_info__init(ki);
        ki->keyid = (char *) k->keyid;
        ki->principal = (char *) principal;
        ki->generation = 3;
        ki->algorithm = PROVSIGN__KEY_ALGORITHM__ECDSA_P256;
        ki->state = PROVSIGN__KEY_STATE__ACTIVE;
        ki->created_us = INT64_C(1764092040000000);
        ki->public_key_der.data = k->der;
        ki->public_key_der.len = k->der_len;
}

/* ---- Receipts ------------------------------------------------------------ */

/* A log key: a P-256 key made here, as the agent's token would. */
struct test_log_key {
        EVP_PKEY *pkey;
        uint8_t *der;
        size_t der_len;
        char keyid[PROTO_KEYID_HEX_LEN + 1];
        char *pem;
};

static void test_log_key_make(struct test_log_key *k) {
        unsigned char *p = NULL;
        BIO *bio;
        char *data;
        long n;
        int len;

        k->pkey = EVP_EC_gen("P-256");
        assert_non_null(k->pkey);
        len = i2d_PUBKEY(k->pkey, &p);
        assert_true(len > 0);
        k->der = p;
        k->der_len = (size_t) len;
        proto_keyid_hex(k->der, k->der_len, k->keyid);
        bio = BIO_new(BIO_s_mem());
        assert_non_null(bio);
        assert_int_equal(PEM_write_bio_PUBKEY(bio, k->pkey), 1);
        n = BIO_get_mem_data(bio, &data);
        k->pem = strndup(data, (size_t) n);
        assert_non_null(k->pem);
        BIO_free(bio);
}

static void test_log_key_done(struct test_log_key *k) {
        EVP_PKEY_free(k->pkey);
        OPENSSL_free(k->der);
        free(k->pem);
}

/* What the entry at the receipt's position says. */
struct test_entry {
        uint64_t seq;
        int64_t time_us;
        int event;
        const char *keyid;
        const char *principal;
        int digest_alg;
        const uint8_t *digest;
        size_t digest_len;
};

/* A receipt made the agent's way: an AuditEntry packed with protobuf-c at
 * index `index` of a tree of `size` leaves (the others are filler bytes),
 * its inclusion proof from proto/merkle.h, and a checkpoint formatted and
 * assembled with proto/note.h, signed over SHA-256 of its text with the log
 * key under key_name (normally the origin). */
struct test_receipt {
        uint8_t *leaf;
        size_t leaf_len;
        uint64_t index;
        uint64_t size;
        int64_t time_us;
        uint8_t proof[PROTO_MERKLE_MAX_PROOF][PROTO_MERKLE_HASH_LEN];
        size_t n_proof;
        char *checkpoint;
        /* The wire form, pointing into the above. */
        ProtobufCBinaryData proof_bd[PROTO_MERKLE_MAX_PROOF];
        Provsign__Receipt wire;
};

#define TEST_ORIGIN "provsign.test/unit"
#define TEST_TIME_US INT64_C(1795630801123456)    /* 2026-11-25T18:20:01.123456Z */

static void test_entry_default(struct test_entry *e, uint64_t seq, const char *keyid, const char *principal) {
        *e = (struct test_entry) {
                .seq = seq,
                .time_us = TEST_TIME_US,
                .event = PROVSIGN__AUDIT_EVENT__SIGN,
                .keyid = keyid,
                .principal = principal,
                .digest_alg = PROVSIGN__DIGEST_ALGORITHM__SHA256,
                .digest = digest32,
                .digest_len = sizeof digest32,
        };
}

static char *note_sign(const struct test_log_key *k, const char *body, const char *key_name) {
        uint8_t key_hash[PROTO_NOTE_KEY_HASH_LEN], *sig;
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        char *note = NULL;
        size_t sig_len = 0;

        assert_non_null(ctx);
        assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k->pkey), 1);
        assert_int_equal(EVP_DigestSign(ctx, NULL, &sig_len, (const unsigned char *) body, strlen(body)), 1);
        sig = malloc(sig_len);
        assert_non_null(sig);
        assert_int_equal(EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *) body, strlen(body)), 1);
        assert_int_equal(proto_note_key_hash(k->der, k->der_len, key_hash), 0);
        assert_int_equal(proto_note_assemble(body, key_name, key_hash, sig, sig_len, &note), 0);
        free(sig);
        EVP_MD_CTX_free(ctx);
        return note;
}

static void test_receipt_make_named(struct test_receipt *r, const struct test_log_key *k, const char *key_name,
                                    uint64_t index, uint64_t size, const struct test_entry *e) {
        Provsign__AuditEntry ae = PROVSIGN__AUDIT_ENTRY__INIT;
        Provsign__Caller caller = PROVSIGN__CALLER__INIT;
        proto_merkle_tree *tree = NULL;
        uint8_t hash[PROTO_MERKLE_HASH_LEN], root[PROTO_MERKLE_HASH_LEN];
        char *body = NULL;

        memset(r, 0, sizeof *r);
        caller.uid = 64911;
        caller.gid = 64911;
        caller.pid = 4242;
        caller.exe = (char *) "/usr/bin/provsign";
        ae.seq = e->seq;
        ae.time_us = e->time_us;
        ae.event = (Provsign__AuditEvent) e->event;
        ae.caller = &caller;
        ae.principal = (char *) e->principal;
        ae.keyid = (char *) e->keyid;
        ae.digest_algorithm = (Provsign__DigestAlgorithm) e->digest_alg;
        ae.digest.data = (uint8_t *) e->digest;
        ae.digest.len = e->digest_len;
        ae.payload_type = (char *) "application/vnd.in-toto+json";
        ae.generation = 1;
        r->leaf_len = protobuf_c_message_get_packed_size(&ae.base);
        r->leaf = malloc(r->leaf_len);
        assert_non_null(r->leaf);
        assert_int_equal(protobuf_c_message_pack(&ae.base, r->leaf), r->leaf_len);
        r->index = index;
        r->size = size;
        r->time_us = e->time_us;

        assert_int_equal(proto_merkle_tree_new(&tree), 0);
        for (uint64_t i = 0; i < size; i++) {
                char filler[48];

                if (i == index)
                        assert_int_equal(proto_merkle_leaf_hash(r->leaf, r->leaf_len, hash), 0);
                else {
                        snprintf(filler, sizeof filler, "other entry %" PRIu64, i);
                        assert_int_equal(proto_merkle_leaf_hash((const uint8_t *) filler, strlen(filler), hash), 0);
                }
                assert_int_equal(proto_merkle_tree_append(tree, hash), 0);
        }
        assert_int_equal(proto_merkle_tree_root(tree, root), 0);
        assert_int_equal(proto_merkle_tree_inclusion_proof(tree, index, size, r->proof, &r->n_proof), 0);
        proto_merkle_tree_free(tree);

        assert_int_equal(proto_checkpoint_format(TEST_ORIGIN, size, root, &body), 0);
        r->checkpoint = note_sign(k, body, key_name);
        free(body);

        provsign__receipt__init(&r->wire);
        r->wire.log_seq = index;
        r->wire.log_time_us = e->time_us;
        r->wire.leaf.data = r->leaf;
        r->wire.leaf.len = r->leaf_len;
        r->wire.tree_size = size;
        for (size_t i = 0; i < r->n_proof; i++)
                r->proof_bd[i] = (ProtobufCBinaryData) { .len = PROTO_MERKLE_HASH_LEN, .data = r->proof[i] };
        r->wire.n_inclusion_proof = r->n_proof;
        r->wire.inclusion_proof = r->proof_bd;
        r->wire.checkpoint = r->checkpoint;
}

static void test_receipt_make(struct test_receipt *r, const struct test_log_key *k, uint64_t index, uint64_t size,
                              const struct test_entry *e) {
        test_receipt_make_named(r, k, TEST_ORIGIN, index, size, e);
}

static void test_receipt_done(struct test_receipt *r) {
        free(r->leaf);
        free(r->checkpoint);
        memset(r, 0, sizeof *r);
}

static struct client_receipt test_receipt_view(const struct test_receipt *r) {
        return (struct client_receipt) {
                .log_seq = r->index,
                .log_time_us = r->time_us,
                .leaf = r->leaf,
                .leaf_len = r->leaf_len,
                .tree_size = r->size,
                .proof = (const uint8_t (*)[PROTO_MERKLE_HASH_LEN]) r->proof,
                .n_proof = r->n_proof,
                .checkpoint = r->checkpoint,
        };
}

/* Receipts the fake agent's Sign replies carry, made on demand with one
 * log key and freed after the whole group (a reply struct may be packed
 * long after it was set up). */
static struct test_log_key fixture_log_key;
static struct test_receipt *fixture_receipts[64];
static size_t n_fixture_receipts;

static Provsign__Receipt *fixture_receipt(const char *keyid, const char *principal) {
        struct test_receipt *r = calloc(1, sizeof *r);
        struct test_entry e;

        assert_non_null(r);
        assert_true(n_fixture_receipts < ELEMENTSOF(fixture_receipts));
        test_entry_default(&e, 5, keyid, principal);
        test_receipt_make(r, &fixture_log_key, 5, 7, &e);
        fixture_receipts[n_fixture_receipts++] = r;
        return &r->wire;
}

static int group_setup(void **state) {
        test_log_key_make(&fixture_log_key);
        return 0;
}

static int group_teardown(void **state) {
        for (size_t i = 0; i < n_fixture_receipts; i++) {
                test_receipt_done(fixture_receipts[i]);
                free(fixture_receipts[i]);
        }
        n_fixture_receipts = 0;
        test_log_key_done(&fixture_log_key);
        return 0;
}

static void sign_response_set(Provsign__Response *resp, Provsign__SignResponse *sr, const char *keyid, const char *principal) {
        provsign__response__init(resp);
        provsign__sign_response__init(sr);
        sr->keyid = (char *) keyid;
        sr->algorithm = PROVSIGN__KEY_ALGORITHM__ECDSA_P256;
        sr->signature.data = (uint8_t *) fake_der_sig;
        sr->signature.len = sizeof fake_der_sig;
        sr->principal = (char *) principal;
        sr->generation = 7;
        sr->receipt = fixture_receipt(keyid, principal);
        resp->protocol_version = PROVSIGN_PROTOCOL_VERSION;
        resp->status = PROVSIGN__STATUS__OK;
        resp->body_case = PROVSIGN__RESPONSE__BODY_SIGN;
        resp->sign = sr;
}

static int do_sign(provsign_conn *conn, provsign_signature **sig) {
        return provsign_sign(conn, "ci-release", PROVSIGN_DIGEST_SHA256, digest32, sizeof digest32,
                             NULL, NULL, 0, sig);
}

/* ---- Names and errors ---------------------------------------------------- */

static void test_status_names(void **state) {
        static const char *const names[] = {
                "OK", "INVALID_ARGUMENT", "PERMISSION_DENIED", "NOT_FOUND", "KEY_REVOKED",
                "NO_ACTIVE_KEY", "RATE_LIMITED", "HSM_UNAVAILABLE", "UNAVAILABLE", "INTERNAL",
        };

        for (int i = 0; i < (int) ELEMENTSOF(names); i++)
                assert_string_equal(provsign_status_name(i), names[i]);
        assert_string_equal(provsign_status_name(PROVSIGN_PERMISSION_DENIED), "PERMISSION_DENIED");
        assert_string_equal(provsign_status_name(PROVSIGN_INTERNAL), "INTERNAL");
        assert_string_equal(provsign_status_name(10), "UNKNOWN_STATUS");
        assert_string_equal(provsign_status_name(-1), "UNKNOWN_STATUS");
        assert_string_equal(provsign_status_name(-EPROTO), "UNKNOWN_STATUS");
        assert_string_equal(provsign_status_name(INT_MAX), "UNKNOWN_STATUS");
        assert_string_equal(provsign_status_name(INT_MIN), "UNKNOWN_STATUS");
}

static void test_strerror(void **state) {
        const char *seen[PROVSIGN_INTERNAL + 1];

        assert_string_equal(provsign_strerror(0), "Success");
        for (int i = PROVSIGN_OK; i <= PROVSIGN_INTERNAL; i++) {
                const char *s = provsign_strerror(i);

                assert_non_null(s);
                assert_true(strlen(s) > 0);
                assert_string_not_equal(s, "Unknown agent status");
                for (int j = 0; j < i; j++)
                        assert_string_not_equal(s, seen[j]);
                seen[i] = s;
        }
        assert_string_equal(provsign_strerror(PROVSIGN_PERMISSION_DENIED), "Permission denied by agent policy");
        assert_string_equal(provsign_strerror(10), "Unknown agent status");
        assert_string_equal(provsign_strerror(INT_MAX), "Unknown agent status");

        assert_string_equal(provsign_strerror(-ENOENT), strerror(ENOENT));
        assert_string_equal(provsign_strerror(-ECONNREFUSED), strerror(ECONNREFUSED));
        assert_string_equal(provsign_strerror(-EACCES), strerror(EACCES));
        assert_string_equal(provsign_strerror(-EMSGSIZE), strerror(EMSGSIZE));
        assert_string_equal(provsign_strerror(-EPROTO), "Malformed or oversized reply from agent");
        assert_non_null(provsign_strerror(-ENOTCONN));
        assert_string_equal(provsign_strerror(-100000), "Unknown error");
        assert_string_equal(provsign_strerror(INT_MIN), "Unknown error");
}

static void test_enum_names(void **state) {
        assert_string_equal(provsign_key_algorithm_to_string(PROVSIGN_KEY_ECDSA_P256), "ecdsa-p256");
        assert_string_equal(provsign_key_algorithm_to_string(PROVSIGN_KEY_ECDSA_P384), "ecdsa-p384");
        assert_string_equal(provsign_key_algorithm_to_string(PROVSIGN_KEY_RSA_3072), "rsa-3072");
        assert_string_equal(provsign_key_algorithm_to_string(0), "unknown");
        assert_string_equal(provsign_key_algorithm_to_string(99), "unknown");
        assert_string_equal(provsign_key_state_to_string(PROVSIGN_KEY_STATE_ACTIVE), "active");
        assert_string_equal(provsign_key_state_to_string(PROVSIGN_KEY_STATE_RETIRED), "retired");
        assert_string_equal(provsign_key_state_to_string(PROVSIGN_KEY_STATE_REVOKED), "revoked");
        assert_string_equal(provsign_key_state_to_string(PROVSIGN_KEY_STATE_DESTROYED), "destroyed");
        assert_string_equal(provsign_key_state_to_string(0), "unknown");
        assert_string_equal(provsign_key_state_to_string(-3), "unknown");
        assert_string_equal(provsign_digest_algorithm_to_string(PROVSIGN_DIGEST_SHA256), "sha256");
        assert_string_equal(provsign_digest_algorithm_to_string(PROVSIGN_DIGEST_SHA384), "sha384");
        assert_string_equal(provsign_digest_algorithm_to_string(3), "unknown");
}

/* ---- Connecting ---------------------------------------------------------- */

static void test_default_socket(void **state) {
        assert_int_equal(unsetenv("PROVSIGN_AGENT_SOCK"), 0);
        assert_string_equal(provsign_default_socket(), "/run/provsign/agent.sock");

        assert_int_equal(setenv("PROVSIGN_AGENT_SOCK", "/tmp/elsewhere.sock", 1), 0);
        assert_string_equal(provsign_default_socket(), "/tmp/elsewhere.sock");

        /* Set but empty is unset, not the empty path. */
        assert_int_equal(setenv("PROVSIGN_AGENT_SOCK", "", 1), 0);
        assert_string_equal(provsign_default_socket(), "/run/provsign/agent.sock");

        assert_int_equal(unsetenv("PROVSIGN_AGENT_SOCK"), 0);
}

static void test_connect_errors(void **state) {
        char dir[] = "/tmp/test-client-XXXXXX", path[PATH_MAX], longpath[200];
        provsign_conn *sentinel = (provsign_conn *) (uintptr_t) 0x1, *c = sentinel;
        int fd;

        assert_non_null(mkdtemp(dir));

        snprintf(path, sizeof path, "%s/missing.sock", dir);
        assert_int_equal(provsign_connect(path, &c), -ENOENT);
        assert_ptr_equal(c, sentinel);   /* out-parameter untouched on failure */

        /* NULL: the environment, then the default. */
        assert_int_equal(setenv("PROVSIGN_AGENT_SOCK", path, 1), 0);
        assert_int_equal(provsign_connect(NULL, &c), -ENOENT);
        assert_int_equal(unsetenv("PROVSIGN_AGENT_SOCK"), 0);

        /* A file that is not a socket. */
        snprintf(path, sizeof path, "%s/file", dir);
        fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(provsign_connect(path, &c), -ECONNREFUSED);
        assert_int_equal(unlink(path), 0);

        memset(longpath, 'x', sizeof longpath - 1);
        longpath[0] = '/';
        longpath[sizeof longpath - 1] = '\0';
        assert_int_equal(provsign_connect(longpath, &c), -ENAMETOOLONG);
        assert_int_equal(provsign_connect("", &c), -EINVAL);
        assert_int_equal(provsign_connect(path, NULL), -EINVAL);
        assert_ptr_equal(c, sentinel);

        assert_int_equal(rmdir(dir), 0);

        /* NULL handles are harmless. */
        provsign_close(NULL);
        provsign_signature_free(NULL);
        provsign_key_free(NULL);
        provsign_key_list_free(NULL);
        provsign_agent_status_free(NULL);
        assert_string_equal(provsign_last_message(NULL), "");
        assert_int_equal(provsign_key_list_count(NULL), 0);
        assert_null(provsign_key_list_get(NULL, 0));
        assert_int_equal(client_conn_from_fd(-1, &c), -EBADF);
}

static void status_response_set(Provsign__Response *resp, Provsign__StatusResponse *st) {
        static char *principals[] = { (char *) "ci-release", (char *) "ci-nightly" };
        static char *roles[] = { (char *) "operator" };

        provsign__response__init(resp);
        provsign__status_response__init(st);
        st->agent_version = (char *) "0.1.0";
        st->protocol_version = 1;
        st->token_label = (char *) "provsign";
        st->n_principals = 2;
        st->principals = principals;
        st->uptime_seconds = 12345;
        st->n_caller_principals = 1;
        st->caller_principals = principals;
        st->n_caller_roles = 1;
        st->caller_roles = roles;
        resp->body_case = PROVSIGN__RESPONSE__BODY_STATUS_INFO;
        resp->status_info = st;
}

/* The whole path through provsign_connect() and a listening socket, via
 * $PROVSIGN_AGENT_SOCK. */
static void test_connect_listener(void **state) {
        char dir[] = "/tmp/test-client-XXXXXX", path[PATH_MAX];
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        Provsign__Response resp;
        Provsign__StatusResponse body;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_agent_status *st = NULL;
        int r;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/agent.sock", dir);
        assert_true(strlen(path) < sizeof sa.sun_path);
        strcpy(sa.sun_path, path);

        fake_init(&fa);
        fa.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fa.listen_fd >= 0);
        assert_int_equal(bind(fa.listen_fd, (struct sockaddr *) &sa, sizeof sa), 0);
        assert_int_equal(listen(fa.listen_fd, 1), 0);
        status_response_set(&resp, &body);
        fake_add(&fa, &resp);
        assert_int_equal(pthread_create(&fa.thread, NULL, fake_thread, &fa), 0);

        assert_int_equal(setenv("PROVSIGN_AGENT_SOCK", path, 1), 0);
        assert_int_equal(provsign_connect(NULL, &conn), 0);
        assert_int_equal(unsetenv("PROVSIGN_AGENT_SOCK"), 0);

        assert_int_equal(provsign_status(conn, &st), 0);
        assert_string_equal(provsign_agent_status_agent_version(st), "0.1.0");
        provsign_agent_status_free(st);
        st = NULL;

        /* The fake hung up after one round: the next call fails to write
         * (-EPIPE) or reads EOF (-ECONNRESET), depending on timing. */
        r = provsign_status(conn, &st);
        assert_true(r == -EPIPE || r == -ECONNRESET);
        assert_null(st);
        /* ...and the connection is now unusable, without blocking. */
        assert_int_equal(provsign_status(conn, &st), -ENOTCONN);

        fake_join(&fa);
        assert_int_equal(fa.n_requests, 1);
        assert_int_equal(fa.requests[0]->protocol_version, PROVSIGN_PROTOCOL_VERSION);
        assert_int_equal(fa.requests[0]->body_case, PROVSIGN__REQUEST__BODY_STATUS);

        provsign_close(conn);
        fake_done(&fa);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
}

/* ---- Malformed replies --------------------------------------------------- */

/* Runs one Sign against a fake scripted with raw bytes; returns the result. */
static int sign_against_raw(const void *bytes, size_t n, bool skip_request) {
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;
        int r;

        fake_init(&fa);
        fa.skip_request = skip_request;
        fake_add_raw(&fa, bytes, n);
        fake_start(&fa, &conn);

        r = do_sign(conn, &sig);
        assert_null(sig);
        assert_string_equal(provsign_last_message(conn), "");
        if (r < 0 && r != -EMSGSIZE)
                /* Framing failures leave the stream unusable. */
                assert_int_equal(do_sign(conn, &sig), -ENOTCONN);

        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
        return r;
}

static void test_oversized_header(void **state) {
        static const uint8_t just_over[] = { 0x00, 0x01, 0x00, 0x01, 'x', 'y', 'z' };  /* 65537 */
        static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff };

        assert_int_equal(sign_against_raw(just_over, sizeof just_over, false), -EPROTO);
        assert_int_equal(sign_against_raw(huge, sizeof huge, false), -EPROTO);
        /* Even before the request was read. */
        assert_int_equal(sign_against_raw(huge, sizeof huge, true), -EPROTO);
}

static void test_truncated(void **state) {
        static const uint8_t torn_frame[] = { 0x00, 0x00, 0x00, 100, 0x10, 0x02, 0x1a, 0x03, 'a', 'b' };
        static const uint8_t torn_header[] = { 0x00, 0x00 };

        assert_int_equal(sign_against_raw(torn_frame, sizeof torn_frame, false), -EPROTO);
        assert_int_equal(sign_against_raw(torn_header, sizeof torn_header, false), -EPROTO);
        /* Hung up without a byte of reply. */
        assert_int_equal(sign_against_raw(NULL, 0, false), -ECONNRESET);
}

static void test_garbage(void **state) {
        static const uint8_t garbage[][12] = {
                { 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff },
                { 0, 0, 0, 2, 0x0f, 0x00 },                            /* wire type 7 */
                { 0, 0, 0, 3, 0x10, 0xff, 0xff },                      /* torn varint */
                { 0, 0, 0, 4, 0x1a, 0x7f, 'h', 'i' },                  /* string past the end */
                { 0, 0, 0, 4, 0x52, 0x05, 0x0a, 0x01 },                /* torn sign body */
                { 'H', 'T', 'T', 'P', '/', '1', '.', '1', ' ', '2', '0', '0' },
        };
        static const uint8_t garbage_sizes[] = { 12, 6, 7, 8, 8, 12 };

        for (size_t i = 0; i < ELEMENTSOF(garbage); i++)
                assert_int_equal(sign_against_raw(garbage[i], garbage_sizes[i], false), -EPROTO);
}

static void test_unknown_status(void **state) {
        static const int bad[] = { 10, 42, -1, INT_MAX };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
                struct fake_agent fa;
                provsign_conn *conn = NULL;
                provsign_signature *sig = NULL;

                resp.status = (Provsign__Status) bad[i];
                resp.message = (char *) "from the future";
                fake_init(&fa);
                fake_add(&fa, &resp);
                fake_start(&fa, &conn);
                assert_int_equal(do_sign(conn, &sig), -EPROTO);
                assert_null(sig);
                provsign_close(conn);
                fake_join(&fa);
                fake_done(&fa);
        }
}

/* An OK reply must carry the body that answers the request. */
static void test_ok_without_body(void **state) {
        Provsign__Response empty = PROVSIGN__RESPONSE__INIT;
        Provsign__Response wrong;
        Provsign__StatusResponse st;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;
        provsign_key *key = NULL;
        provsign_key_list *list = NULL;
        provsign_agent_status *ast = NULL;

        status_response_set(&wrong, &st);

        fake_init(&fa);
        fake_add(&fa, &empty);  /* sign */
        fake_add(&fa, &empty);  /* get_public_key */
        fake_add(&fa, &empty);  /* status */
        fake_add(&fa, &empty);  /* list_keys */
        fake_start(&fa, &conn);
        assert_int_equal(do_sign(conn, &sig), -EPROTO);
        assert_int_equal(provsign_get_public_key(conn, "ci-release", NULL, &key), -EPROTO);
        assert_int_equal(provsign_status(conn, &ast), -EPROTO);
        assert_int_equal(provsign_list_keys(conn, NULL, &list), -EPROTO);
        assert_null(sig);
        assert_null(key);
        assert_null(ast);
        assert_null(list);
        provsign_close(conn);
        fake_join(&fa);
        /* A complete frame with the wrong meaning does not desynchronize
         * the stream: all four requests were answered on one connection. */
        assert_int_equal(fa.n_requests, 4);
        fake_done(&fa);

        /* The wrong body. */
        fake_init(&fa);
        fake_add(&fa, &wrong);
        fake_add(&fa, &wrong);
        fake_add(&fa, &wrong);
        fake_start(&fa, &conn);
        assert_int_equal(do_sign(conn, &sig), -EPROTO);
        assert_int_equal(provsign_get_public_key(conn, "ci-release", NULL, &key), -EPROTO);
        assert_int_equal(provsign_list_keys(conn, NULL, &list), -EPROTO);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
}

/* ---- Refusals ------------------------------------------------------------ */

static void test_refusal(void **state) {
        static const char msg[] = "uid 1002 may not sign for principal \"ci-release\"";
        provsign_signature *sentinel = (provsign_signature *) (uintptr_t) 0x1, *sig = sentinel;
        Provsign__Response ok;
        Provsign__SignResponse sr;
        struct fake_agent fa;
        provsign_conn *conn = NULL;

        sign_response_set(&ok, &sr, keyid_a, "ci-release");

        fake_init(&fa);
        fake_add_refusal(&fa, PROVSIGN__STATUS__PERMISSION_DENIED, msg);
        fake_add_refusal(&fa, PROVSIGN__STATUS__NO_ACTIVE_KEY, "");
        fake_add(&fa, &ok);
        fake_start(&fa, &conn);

        assert_int_equal(do_sign(conn, &sig), PROVSIGN_PERMISSION_DENIED);
        assert_string_equal(provsign_last_message(conn), msg);
        assert_ptr_equal(sig, sentinel);
        assert_string_equal(provsign_status_name(PROVSIGN_PERMISSION_DENIED), "PERMISSION_DENIED");

        /* No message from the agent: the status's description. */
        assert_int_equal(do_sign(conn, &sig), PROVSIGN_NO_ACTIVE_KEY);
        assert_string_equal(provsign_last_message(conn), provsign_strerror(PROVSIGN_NO_ACTIVE_KEY));

        /* A refusal does not spoil the connection; the message is cleared. */
        assert_int_equal(do_sign(conn, &sig), 0);
        assert_string_equal(provsign_last_message(conn), "");
        assert_ptr_not_equal(sig, sentinel);
        provsign_signature_free(sig);

        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
}

/* Every status the agent may send is reported as itself. */
static void test_every_refusal(void **state) {
        for (int s = PROVSIGN_INVALID_ARGUMENT; s <= PROVSIGN_INTERNAL; s++) {
                struct fake_agent fa;
                provsign_conn *conn = NULL;
                provsign_agent_status *st = NULL;

                fake_init(&fa);
                fake_add_refusal(&fa, s, provsign_status_name(s));
                fake_start(&fa, &conn);
                assert_int_equal(provsign_status(conn, &st), s);
                assert_string_equal(provsign_last_message(conn), provsign_status_name(s));
                assert_null(st);
                provsign_close(conn);
                fake_join(&fa);
                fake_done(&fa);
        }
}

/* A reply of exactly PROTO_FRAME_MAX bytes is accepted. */
static void test_max_frame(void **state) {
        Provsign__Response resp = PROVSIGN__RESPONSE__INIT;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;
        size_t n;
        char *msg;

        /* status (2 bytes) + message tag, 3-byte length, text = 65536. */
        n = PROTO_FRAME_MAX - 2 - 1 - 3;
        msg = malloc(n + 1);
        assert_non_null(msg);
        memset(msg, 'm', n);
        msg[n] = '\0';
        resp.status = PROVSIGN__STATUS__RATE_LIMITED;
        resp.message = msg;
        assert_int_equal(protobuf_c_message_get_packed_size(&resp.base), PROTO_FRAME_MAX);

        fake_init(&fa);
        fake_add(&fa, &resp);
        fake_start(&fa, &conn);
        assert_int_equal(do_sign(conn, &sig), PROVSIGN_RATE_LIMITED);
        assert_string_equal(provsign_last_message(conn), msg);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
        free(msg);
}

/* ---- Sign ---------------------------------------------------------------- */

static void test_sign_ok(void **state) {
        static const uint8_t unknown_field[] = { 0xf8, 0x06, 0x01 };  /* field 111, varint 1 */
        const struct provsign_annotation ann[] = {
                { "repo", "example/provsign" },
                { "run", NULL },
        };
        Provsign__Response resp;
        Provsign__SignResponse sr;
        const Provsign__SignRequest *req;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;
        const uint8_t *der;
        uint8_t *packed;
        size_t len, n;

        sign_response_set(&resp, &sr, keyid_a, "ci-release");

        fake_init(&fa);
        fa.dribble = true;      /* short reads everywhere */
        fake_add(&fa, &resp);
        /* The same reply with a field this client does not know. */
        n = protobuf_c_message_get_packed_size(&resp.base);
        packed = malloc(n + sizeof unknown_field);
        assert_non_null(packed);
        assert_int_equal(protobuf_c_message_pack(&resp.base, packed), n);
        memcpy(packed + n, unknown_field, sizeof unknown_field);
        fake_add_payload(&fa, packed, n + sizeof unknown_field);
        free(packed);
        fake_start(&fa, &conn);

        assert_int_equal(provsign_sign(conn, "ci-release", PROVSIGN_DIGEST_SHA256, digest32, sizeof digest32,
                                       "application/vnd.in-toto+json", ann, ELEMENTSOF(ann), &sig), 0);
        assert_string_equal(provsign_signature_keyid(sig), keyid_a);
        assert_int_equal(provsign_signature_algorithm(sig), PROVSIGN_KEY_ECDSA_P256);
        assert_string_equal(provsign_signature_principal(sig), "ci-release");
        assert_int_equal(provsign_signature_generation(sig), 7);
        der = provsign_signature_der(sig, &len);
        assert_int_equal(len, sizeof fake_der_sig);
        assert_memory_equal(der, fake_der_sig, len);
        assert_ptr_equal(provsign_signature_der(sig, NULL), der);
        provsign_signature_free(sig);
        sig = NULL;

        /* Principal omitted: the agent picks; unknown fields are ignored. */
        assert_int_equal(provsign_sign(conn, NULL, PROVSIGN_DIGEST_SHA256, digest32, sizeof digest32,
                                       NULL, NULL, 0, &sig), 0);
        assert_string_equal(provsign_signature_principal(sig), "ci-release");
        provsign_signature_free(sig);

        provsign_close(conn);
        fake_join(&fa);

        /* What the agent saw. */
        assert_int_equal(fa.n_requests, 2);
        assert_int_equal(fa.requests[0]->protocol_version, PROVSIGN_PROTOCOL_VERSION);
        assert_int_equal(fa.requests[0]->body_case, PROVSIGN__REQUEST__BODY_SIGN);
        req = fa.requests[0]->sign;
        assert_string_equal(req->principal, "ci-release");
        assert_int_equal(req->digest_algorithm, PROVSIGN__DIGEST_ALGORITHM__SHA256);
        assert_int_equal(req->digest.len, sizeof digest32);
        assert_memory_equal(req->digest.data, digest32, sizeof digest32);
        assert_string_equal(req->payload_type, "application/vnd.in-toto+json");
        assert_int_equal(req->n_annotations, 2);
        assert_string_equal(req->annotations[0]->key, "repo");
        assert_string_equal(req->annotations[0]->value, "example/provsign");
        assert_string_equal(req->annotations[1]->key, "run");
        assert_string_equal(req->annotations[1]->value, "");
        assert_string_equal(fa.requests[1]->sign->principal, "");
        assert_string_equal(fa.requests[1]->sign->payload_type, "");
        fake_done(&fa);
}

static void test_sign_bad_replies(void **state) {
        Provsign__Response resp[4];
        Provsign__SignResponse sr[4];
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;

        sign_response_set(&resp[0], &sr[0], "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "ci-release");
        sign_response_set(&resp[1], &sr[1], keyid_a, "ci-release");
        sr[1].signature.len = 0;                         /* no signature */
        sign_response_set(&resp[2], &sr[2], keyid_a, "someone-else");
        sign_response_set(&resp[3], &sr[3], keyid_a, "");

        fake_init(&fa);
        for (size_t i = 0; i < ELEMENTSOF(resp); i++)
                fake_add(&fa, &resp[i]);
        fake_start(&fa, &conn);
        for (size_t i = 0; i < ELEMENTSOF(resp); i++) {
                assert_int_equal(do_sign(conn, &sig), -EPROTO);
                assert_null(sig);
        }
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
}

static void test_sign_args(void **state) {
        static const uint8_t digest48[48] = {};
        const struct provsign_annotation no_key[] = { { NULL, "v" } };
        provsign_signature *sig = NULL;
        provsign_conn *conn = NULL;
        int sv[2];

        /* Nobody listens: argument errors must be caught before any I/O. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        close(sv[1]);
        assert_int_equal(client_conn_from_fd(sv[0], &conn), 0);

        assert_int_equal(provsign_sign(conn, NULL, PROVSIGN_DIGEST_SHA256, NULL, 32, NULL, NULL, 0, &sig), -EINVAL);
        assert_int_equal(provsign_sign(conn, NULL, PROVSIGN_DIGEST_SHA256, digest48, 48, NULL, NULL, 0, &sig), -EINVAL);
        assert_int_equal(provsign_sign(conn, NULL, PROVSIGN_DIGEST_SHA384, digest32, 32, NULL, NULL, 0, &sig), -EINVAL);
        assert_int_equal(provsign_sign(conn, NULL, (enum provsign_digest_algorithm) 0, digest32, 32, NULL, NULL, 0, &sig), -EINVAL);
        assert_int_equal(provsign_sign(conn, NULL, (enum provsign_digest_algorithm) 3, digest48, 48, NULL, NULL, 0, &sig), -EINVAL);
        assert_int_equal(provsign_sign(conn, NULL, PROVSIGN_DIGEST_SHA256, digest32, 32, NULL, NULL, 1, &sig), -EINVAL);
        assert_int_equal(provsign_sign(conn, NULL, PROVSIGN_DIGEST_SHA256, digest32, 32, NULL, no_key, 1, &sig), -EINVAL);
        assert_int_equal(provsign_sign(conn, NULL, PROVSIGN_DIGEST_SHA256, digest32, 32, NULL, NULL, 0, NULL), -EINVAL);
        assert_int_equal(provsign_sign(NULL, NULL, PROVSIGN_DIGEST_SHA256, digest32, 32, NULL, NULL, 0, &sig), -EINVAL);
        assert_int_equal(provsign_sign(conn, NULL, PROVSIGN_DIGEST_SHA256, digest32, 32, NULL, no_key, SIZE_MAX, &sig), -EMSGSIZE);
        assert_null(sig);

        /* With a well-formed request, the closed peer shows as a transport error. */
        assert_int_equal(do_sign(conn, &sig), -EPIPE);
        assert_int_equal(do_sign(conn, &sig), -ENOTCONN);
        provsign_close(conn);
}

/* provsign_sign_many: NDIG digests (all digest32: the fixture receipts
 * are of it), replies told apart by their generation, i + 1 for item i. */
#define NDIG 3

static int do_sign_many(provsign_conn *conn, size_t n, size_t window, int *results, provsign_signature **sigs) {
        const void *digests[8];

        assert_true(n <= ELEMENTSOF(digests));
        for (size_t i = 0; i < n; i++)
                digests[i] = digest32;
        return provsign_sign_many(conn, "ci-release", PROVSIGN_DIGEST_SHA256, digests, sizeof digest32, n, NULL, NULL,
                                  0, window, results, sigs);
}

/* A pipelining agent answers in any order, by request id: the fake reads
 * all three requests, then answers 3, 1, 2 in one write. */
static void test_sign_many_out_of_order(void **state) {
        static const uint32_t order[NDIG] = { 2, 0, 1 };
        Provsign__Response resp[NDIG];
        Provsign__SignResponse sr[NDIG];
        provsign_signature *sigs[NDIG];
        int results[NDIG];
        struct fake_agent fa;
        provsign_conn *conn = NULL;

        for (size_t k = 0; k < NDIG; k++) {
                sign_response_set(&resp[k], &sr[k], keyid_a, "ci-release");
                sr[k].generation = order[k] + 1;
                resp[k].request_id = order[k] + 1;      /* a fresh connection's ids: 1, 2, 3 */
        }
        fake_init(&fa);
        fa.dribble = true;
        fake_add_raw(&fa, NULL, 0);
        fake_add_raw(&fa, NULL, 0);
        fake_add_frames(&fa, resp, NDIG);
        fake_start(&fa, &conn);

        assert_int_equal(do_sign_many(conn, NDIG, 0, results, sigs), 0);
        for (size_t i = 0; i < NDIG; i++) {
                assert_int_equal(results[i], 0);
                assert_non_null(sigs[i]);
                assert_int_equal(provsign_signature_generation(sigs[i]), i + 1);
                assert_true(provsign_signature_has_receipt(sigs[i]));
                provsign_signature_free(sigs[i]);
        }
        provsign_close(conn);
        fake_join(&fa);
        /* Each request carried its own id. */
        assert_int_equal(fa.n_requests, NDIG);
        for (size_t i = 0; i < NDIG; i++) {
                assert_int_equal(fa.requests[i]->request_id, i + 1);
                assert_int_equal(fa.requests[i]->body_case, PROVSIGN__REQUEST__BODY_SIGN);
                assert_memory_equal(fa.requests[i]->sign->digest.data, digest32, sizeof digest32);
        }
        fake_done(&fa);
}

/* An agent from before request ids answers each request in turn and
 * echoes no id: matched by order. Then a second call on the same
 * connection uses new ids. */
static void test_sign_many_in_order(void **state) {
        Provsign__Response resp[NDIG + 1];
        Provsign__SignResponse sr[NDIG + 1];
        provsign_signature *sigs[NDIG];
        int results[NDIG];
        struct fake_agent fa;
        provsign_conn *conn = NULL;

        fake_init(&fa);
        for (size_t k = 0; k < NDIG + 1; k++) {
                sign_response_set(&resp[k], &sr[k], keyid_a, "ci-release");
                sr[k].generation = (uint32_t) k + 1;
                fake_add(&fa, &resp[k]);
        }
        fake_start(&fa, &conn);
        assert_int_equal(do_sign_many(conn, NDIG, 2, results, sigs), 0);
        for (size_t i = 0; i < NDIG; i++) {
                assert_int_equal(results[i], 0);
                assert_int_equal(provsign_signature_generation(sigs[i]), i + 1);
                provsign_signature_free(sigs[i]);
        }
        assert_int_equal(do_sign_many(conn, 1, 0, results, sigs), 0);
        assert_int_equal(provsign_signature_generation(sigs[0]), NDIG + 1);
        provsign_signature_free(sigs[0]);
        provsign_close(conn);
        fake_join(&fa);
        assert_int_equal(fa.n_requests, NDIG + 1);
        assert_int_equal(fa.requests[NDIG]->request_id, NDIG + 1);
        fake_done(&fa);
}

/* One item refused, then the connection goes: the signature already in
 * is kept, the refusal is that item's, the rest are transport failures,
 * and the connection is unusable afterwards. */
static void test_sign_many_partial(void **state) {
        Provsign__Response ok, refused = PROVSIGN__RESPONSE__INIT;
        Provsign__SignResponse sr;
        provsign_signature *sigs[4];
        int results[4];
        struct fake_agent fa;
        provsign_conn *conn = NULL;

        sign_response_set(&ok, &sr, keyid_a, "ci-release");
        ok.request_id = 1;
        refused.protocol_version = PROVSIGN_PROTOCOL_VERSION;
        refused.status = PROVSIGN__STATUS__RATE_LIMITED;
        refused.message = (char *) "slow down";
        refused.request_id = 2;
        fake_init(&fa);
        fake_add(&fa, &ok);
        fake_add(&fa, &refused);
        fake_start(&fa, &conn);

        assert_int_equal(do_sign_many(conn, 4, 4, results, sigs), PROVSIGN_RATE_LIMITED);
        assert_int_equal(results[0], 0);
        assert_non_null(sigs[0]);
        assert_true(provsign_signature_has_receipt(sigs[0]));
        assert_int_equal(results[1], PROVSIGN_RATE_LIMITED);
        assert_null(sigs[1]);
        assert_string_equal(provsign_last_message(conn), "slow down");
        for (size_t i = 2; i < 4; i++) {
                assert_true(results[i] == -ECONNRESET || results[i] == -EPIPE);
                assert_null(sigs[i]);
        }
        provsign_signature_free(sigs[0]);
        assert_int_equal(do_sign_many(conn, 2, 0, results, sigs), -ENOTCONN);
        assert_int_equal(results[1], -ENOTCONN);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
}

/* A reply whose id answers nothing in flight, and a reply to the
 * connection (id 0) from an agent that echoes ids, followed by its close. */
static void test_sign_many_bad_ids(void **state) {
        Provsign__Response resp[2], closing = PROVSIGN__RESPONSE__INIT;
        Provsign__SignResponse sr[2];
        provsign_signature *sigs[2];
        int results[2];
        struct fake_agent fa;
        provsign_conn *conn = NULL;

        sign_response_set(&resp[0], &sr[0], keyid_a, "ci-release");
        resp[0].request_id = 99;
        fake_init(&fa);
        fake_add(&fa, &resp[0]);
        fake_start(&fa, &conn);
        assert_int_equal(do_sign_many(conn, 2, 2, results, sigs), -EPROTO);
        assert_int_equal(results[0], -EPROTO);
        assert_int_equal(results[1], -EPROTO);
        assert_null(sigs[0]);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);

        /* The first item answered (id 1), then "shutting down" with id 0
         * and the close: the second gets the agent's refusal. */
        sign_response_set(&resp[1], &sr[1], keyid_a, "ci-release");
        resp[1].request_id = 1;
        closing.protocol_version = PROVSIGN_PROTOCOL_VERSION;
        closing.status = PROVSIGN__STATUS__UNAVAILABLE;
        closing.message = (char *) "agent is shutting down";
        Provsign__Response last[2] = { resp[1], closing };
        fake_init(&fa);
        fake_add_raw(&fa, NULL, 0);
        fake_add_frames(&fa, last, 2);
        fake_start(&fa, &conn);
        assert_int_equal(do_sign_many(conn, 2, 2, results, sigs), PROVSIGN_UNAVAILABLE);
        assert_int_equal(results[0], 0);
        assert_int_equal(results[1], PROVSIGN_UNAVAILABLE);
        assert_string_equal(provsign_last_message(conn), "agent is shutting down");
        provsign_signature_free(sigs[0]);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
}

/* A refusal with id 0 before any reply told whether the agent echoes ids
 * (an agent shutting down, refusing the second request while the first is
 * in flight): it is not the first request's, whose signature comes next
 * with id 1; it refuses the connection, so the second request gets it. */
static void test_sign_many_refusal_before_ids(void **state) {
        Provsign__Response ok[3], closing = PROVSIGN__RESPONSE__INIT, refused = PROVSIGN__RESPONSE__INIT;
        Provsign__SignResponse sr[3];
        provsign_signature *sigs[3];
        int results[3];
        struct fake_agent fa;
        provsign_conn *conn = NULL;

        closing.protocol_version = PROVSIGN_PROTOCOL_VERSION;
        closing.status = PROVSIGN__STATUS__UNAVAILABLE;
        closing.message = (char *) "agent is shutting down";
        sign_response_set(&ok[0], &sr[0], keyid_a, "ci-release");
        ok[0].request_id = 1;
        Provsign__Response last[2] = { closing, ok[0] };
        fake_init(&fa);
        fake_add_raw(&fa, NULL, 0);
        fake_add_frames(&fa, last, 2);
        fake_start(&fa, &conn);
        assert_int_equal(do_sign_many(conn, 2, 2, results, sigs), PROVSIGN_UNAVAILABLE);
        assert_int_equal(results[0], 0);
        assert_non_null(sigs[0]);
        assert_true(provsign_signature_has_receipt(sigs[0]));
        assert_int_equal(results[1], PROVSIGN_UNAVAILABLE);
        assert_null(sigs[1]);
        assert_string_equal(provsign_last_message(conn), "agent is shutting down");
        provsign_signature_free(sigs[0]);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);

        /* The same refusal, then the close: every request gets it. */
        fake_init(&fa);
        fake_add_raw(&fa, NULL, 0);
        fake_add(&fa, &closing);
        fake_start(&fa, &conn);
        assert_int_equal(do_sign_many(conn, 2, 2, results, sigs), PROVSIGN_UNAVAILABLE);
        assert_int_equal(results[0], PROVSIGN_UNAVAILABLE);
        assert_int_equal(results[1], PROVSIGN_UNAVAILABLE);
        assert_null(sigs[0]);
        assert_null(sigs[1]);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);

        /* An agent from before request ids refuses the first request and
         * answers the next two, in order and without ids: the refusal is
         * the first's. */
        refused.protocol_version = PROVSIGN_PROTOCOL_VERSION;
        refused.status = PROVSIGN__STATUS__RATE_LIMITED;
        refused.message = (char *) "slow down";
        fake_init(&fa);
        fake_add(&fa, &refused);
        for (size_t k = 1; k < 3; k++) {
                sign_response_set(&ok[k], &sr[k], keyid_a, "ci-release");
                sr[k].generation = (uint32_t) k + 1;
                fake_add(&fa, &ok[k]);
        }
        fake_start(&fa, &conn);
        assert_int_equal(do_sign_many(conn, 3, 2, results, sigs), PROVSIGN_RATE_LIMITED);
        assert_int_equal(results[0], PROVSIGN_RATE_LIMITED);
        assert_null(sigs[0]);
        assert_string_equal(provsign_last_message(conn), "slow down");
        for (size_t i = 1; i < 3; i++) {
                assert_int_equal(results[i], 0);
                assert_int_equal(provsign_signature_generation(sigs[i]), i + 1);
                provsign_signature_free(sigs[i]);
        }
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
}

/* A refusal of the connection (id 0 from an agent that echoes ids) is sent
 * once, before the close: a stream of them answers nothing, and would keep
 * the call waiting as long as the agent likes (each frame restarted the
 * deadline). The second is a protocol error. */
static void test_sign_many_refusal_stream(void **state) {
        Provsign__Response ok, closing = PROVSIGN__RESPONSE__INIT;
        Provsign__SignResponse sr;
        provsign_signature *sigs[2];
        int results[2];
        struct fake_agent fa;
        provsign_conn *conn = NULL;

        sign_response_set(&ok, &sr, keyid_a, "ci-release");
        ok.request_id = 1;
        closing.protocol_version = PROVSIGN_PROTOCOL_VERSION;
        closing.status = PROVSIGN__STATUS__UNAVAILABLE;
        closing.message = (char *) "agent is shutting down";
        Provsign__Response frames[4] = { ok, closing, closing, closing };
        fake_init(&fa);
        fake_add_raw(&fa, NULL, 0);
        fake_add_frames(&fa, frames, ELEMENTSOF(frames));
        fake_start(&fa, &conn);
        assert_int_equal(do_sign_many(conn, 2, 2, results, sigs), -EPROTO);
        assert_int_equal(results[0], 0);
        assert_non_null(sigs[0]);
        assert_int_equal(results[1], -EPROTO);
        assert_null(sigs[1]);
        provsign_signature_free(sigs[0]);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
}

/* A reply to a request whose frame is not yet out whole (the socket is
 * full: nobody reads) answers nothing the agent can have read: -EPROTO,
 * not a signature. The reply is in the socket before the call starts, the
 * call writes what fits first. */
static void test_sign_many_reply_before_written(void **state) {
        static char big[16384];
        const struct provsign_annotation ann[] = { { "big", big } };
        const void *digests[2] = { digest32, digest32 };
        Provsign__Response ok;
        Provsign__SignResponse sr;
        provsign_signature *sigs[2];
        provsign_conn *conn = NULL;
        int results[2], sv[2], sndbuf = 4096;
        uint8_t *buf = NULL, got[32768];
        size_t len = 0, frame_len;
        ssize_t k;

        memset(big, 'a', sizeof big - 1);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
        sign_response_set(&ok, &sr, keyid_a, "ci-release");
        ok.request_id = 1;
        assert_int_equal(proto_frame_pack(&ok.base, &buf, &len), 0);
        assert_int_equal(write(sv[1], buf, len), (ssize_t) len);
        free(buf);
        assert_int_equal(shutdown(sv[1], SHUT_WR), 0);
        assert_int_equal(client_conn_from_fd(sv[0], &conn), 0);

        assert_int_equal(provsign_sign_many(conn, "ci-release", PROVSIGN_DIGEST_SHA256, digests, sizeof digest32, 2,
                                            NULL, ann, 1, 2, results, sigs),
                         -EPROTO);
        assert_int_equal(results[0], -EPROTO);
        assert_null(sigs[0]);
        assert_null(sigs[1]);
        /* The premise: the first request did not get out whole. */
        k = recv(sv[1], got, sizeof got, MSG_DONTWAIT);
        assert_true(k >= 4);
        assert_int_equal(proto_frame_peek(got, (size_t) k, PROTO_FRAME_MAX, &frame_len), 1);
        assert_true((size_t) k < PROTO_FRAME_HEADER + frame_len);
        provsign_close(conn);
        close(sv[1]);
}

/* An agent that reads and never answers: the deadline fails every item. */
static void test_sign_many_timeout(void **state) {
        provsign_signature *sigs[2];
        provsign_conn *conn = NULL;
        int results[2], sv[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(client_conn_from_fd(sv[0], &conn), 0);
        assert_int_equal(provsign_set_timeout(conn, 100), 0);
        assert_int_equal(do_sign_many(conn, 2, 0, results, sigs), -ETIMEDOUT);
        assert_int_equal(results[0], -ETIMEDOUT);
        assert_int_equal(results[1], -ETIMEDOUT);
        assert_null(sigs[0]);
        assert_null(sigs[1]);
        assert_int_equal(do_sign_many(conn, 1, 0, results, sigs), -ENOTCONN);
        provsign_close(conn);
        close(sv[1]);
}

/* Arguments are checked before any I/O; both arrays are written. */
static void test_sign_many_args(void **state) {
        static const uint8_t digest48[48] = {};
        const void *digests[2] = { digest32, NULL };
        provsign_signature *sigs[2] = { (provsign_signature *) 1, (provsign_signature *) 1 };
        provsign_conn *conn = NULL;
        int results[2] = { 7, 7 }, sv[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        close(sv[1]);
        assert_int_equal(client_conn_from_fd(sv[0], &conn), 0);
        assert_int_equal(provsign_sign_many(conn, NULL, PROVSIGN_DIGEST_SHA256, digests, 32, 2, NULL, NULL, 0, 0,
                                            results, sigs), -EINVAL);
        assert_int_equal(results[0], -EINVAL);
        assert_int_equal(results[1], -EINVAL);
        assert_null(sigs[0]);
        assert_null(sigs[1]);
        digests[1] = digest48;
        assert_int_equal(provsign_sign_many(conn, NULL, PROVSIGN_DIGEST_SHA384, digests, 32, 2, NULL, NULL, 0, 0,
                                            results, sigs), -EINVAL);
        assert_int_equal(provsign_sign_many(conn, NULL, (enum provsign_digest_algorithm) 0, digests, 48, 2, NULL,
                                            NULL, 0, 0, results, sigs), -EINVAL);
        assert_int_equal(provsign_sign_many(conn, NULL, PROVSIGN_DIGEST_SHA256, digests, 32, 2, NULL, NULL, 0, 0,
                                            NULL, sigs), -EINVAL);
        assert_int_equal(provsign_sign_many(NULL, NULL, PROVSIGN_DIGEST_SHA256, digests, 32, 2, NULL, NULL, 0, 0,
                                            results, sigs), -EINVAL);
        /* Nothing to sign: nothing sent. */
        assert_int_equal(provsign_sign_many(conn, NULL, PROVSIGN_DIGEST_SHA256, digests, 32, 0, NULL, NULL, 0, 0,
                                            results, sigs), 0);
        /* A well-formed batch to a closed peer: transport errors. */
        digests[1] = digest32;
        assert_true(provsign_sign_many(conn, NULL, PROVSIGN_DIGEST_SHA256, digests, 32, 2, NULL, NULL, 0, 0, results,
                                       sigs) < 0);
        assert_true(results[0] == -EPIPE || results[0] == -ECONNRESET);
        provsign_close(conn);
}

static void test_sign_too_big(void **state) {
        Provsign__Response resp;
        Provsign__SignResponse sr;
        struct provsign_annotation ann;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;
        char *big;

        big = malloc(PROTO_FRAME_MAX + 1);
        assert_non_null(big);
        memset(big, 'v', PROTO_FRAME_MAX);
        big[PROTO_FRAME_MAX] = '\0';
        ann = (struct provsign_annotation) { "k", big };

        sign_response_set(&resp, &sr, keyid_a, "ci-release");
        fake_init(&fa);
        fake_add(&fa, &resp);
        fake_start(&fa, &conn);

        assert_int_equal(provsign_sign(conn, NULL, PROVSIGN_DIGEST_SHA256, digest32, 32, NULL, &ann, 1, &sig), -EMSGSIZE);
        assert_null(sig);
        /* Nothing was sent: the connection is still good. */
        assert_int_equal(do_sign(conn, &sig), 0);
        provsign_signature_free(sig);

        provsign_close(conn);
        fake_join(&fa);
        assert_int_equal(fa.n_requests, 1);
        fake_done(&fa);
        free(big);
}

/* ---- Public keys --------------------------------------------------------- */

static void pubkey_response_set(Provsign__Response *resp, Provsign__GetPublicKeyResponse *gr, Provsign__KeyInfo *ki) {
        provsign__response__init(resp);
        provsign__get_public_key_response__init(gr);
        gr->key = ki;
        gr->public_key_pem = (char *) "ignored: the library derives the PEM from the DER";
        resp->body_case = PROVSIGN__RESPONSE__BODY_GET_PUBLIC_KEY;
        resp->get_public_key = gr;
}

static void test_get_public_key(void **state) {
        Provsign__Response resp;
        Provsign__GetPublicKeyResponse gr;
        Provsign__KeyInfo ki;
        struct test_key tk;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_key *key = NULL;
        const uint8_t *der;
        size_t len;

        test_key_make(&tk);
        key_info_set(&ki, &tk, "ci-release");
        pubkey_response_set(&resp, &gr, &ki);

        fake_init(&fa);
        fake_add(&fa, &resp);
        fake_add(&fa, &resp);
        fake_start(&fa, &conn);

        assert_int_equal(provsign_get_public_key(conn, "ci-release", NULL, &key), 0);
        assert_string_equal(provsign_key_keyid(key), tk.keyid);
        assert_string_equal(provsign_key_principal(key), "ci-release");
        assert_int_equal(provsign_key_generation(key), 3);
        assert_int_equal(provsign_key_algorithm(key), PROVSIGN_KEY_ECDSA_P256);
        assert_int_equal(provsign_key_state(key), PROVSIGN_KEY_STATE_ACTIVE);
        assert_true(provsign_key_created_us(key) == INT64_C(1764092040000000));
        der = provsign_key_spki_der(key, &len);
        assert_int_equal(len, tk.der_len);
        assert_memory_equal(der, tk.der, len);
        assert_string_equal(provsign_key_pem(key), tk.pem);   /* byte for byte OpenSSL's */
        provsign_key_free(key);
        key = NULL;

        assert_int_equal(provsign_get_public_key(conn, NULL, tk.keyid, &key), 0);
        assert_string_equal(provsign_key_keyid(key), tk.keyid);
        provsign_key_free(key);

        provsign_close(conn);
        fake_join(&fa);
        assert_int_equal(fa.requests[0]->body_case, PROVSIGN__REQUEST__BODY_GET_PUBLIC_KEY);
        assert_string_equal(fa.requests[0]->get_public_key->principal, "ci-release");
        assert_string_equal(fa.requests[0]->get_public_key->keyid, "");
        assert_string_equal(fa.requests[1]->get_public_key->principal, "");
        assert_string_equal(fa.requests[1]->get_public_key->keyid, tk.keyid);
        fake_done(&fa);
        test_key_done(&tk);
}

static void test_get_public_key_bad_replies(void **state) {
        Provsign__Response resp[4];
        Provsign__GetPublicKeyResponse gr[4];
        Provsign__KeyInfo ki[4];
        struct test_key tk, other;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_key *key = NULL;

        test_key_make(&tk);
        test_key_make(&other);

        /* 0: the key id is not the SHA-256 of the DER. */
        key_info_set(&ki[0], &tk, "ci-release");
        ki[0].keyid = other.keyid;
        pubkey_response_set(&resp[0], &gr[0], &ki[0]);
        /* 1: no public key. */
        key_info_set(&ki[1], &tk, "ci-release");
        ki[1].public_key_der.len = 0;
        ki[1].public_key_der.data = NULL;
        pubkey_response_set(&resp[1], &gr[1], &ki[1]);
        /* 2: no KeyInfo at all. */
        pubkey_response_set(&resp[2], &gr[2], NULL);
        /* 3: another principal's key. */
        key_info_set(&ki[3], &tk, "ci-nightly");
        pubkey_response_set(&resp[3], &gr[3], &ki[3]);

        fake_init(&fa);
        for (size_t i = 0; i < ELEMENTSOF(resp); i++)
                fake_add(&fa, &resp[i]);
        fake_start(&fa, &conn);
        for (size_t i = 0; i < ELEMENTSOF(resp); i++) {
                assert_int_equal(provsign_get_public_key(conn, "ci-release", NULL, &key), -EPROTO);
                assert_null(key);
        }
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);

        /* Asked by id, answered with another (self-consistent) key. */
        key_info_set(&ki[0], &other, "ci-release");
        pubkey_response_set(&resp[0], &gr[0], &ki[0]);
        fake_init(&fa);
        fake_add(&fa, &resp[0]);
        fake_start(&fa, &conn);
        assert_int_equal(provsign_get_public_key(conn, NULL, tk.keyid, &key), -EPROTO);
        assert_null(key);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);

        test_key_done(&tk);
        test_key_done(&other);
}

static void test_get_public_key_args(void **state) {
        provsign_conn *conn = NULL;
        provsign_key *key = NULL;
        int sv[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        close(sv[1]);
        assert_int_equal(client_conn_from_fd(sv[0], &conn), 0);

        assert_int_equal(provsign_get_public_key(conn, NULL, NULL, &key), -EINVAL);
        assert_int_equal(provsign_get_public_key(conn, "", "", &key), -EINVAL);
        assert_int_equal(provsign_get_public_key(conn, "p", keyid_a, &key), -EINVAL);
        assert_int_equal(provsign_get_public_key(conn, NULL, "abc", &key), -EINVAL);
        assert_int_equal(provsign_get_public_key(conn, NULL,
                                                 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &key), -EINVAL);
        assert_int_equal(provsign_get_public_key(conn, "p", NULL, NULL), -EINVAL);
        assert_null(key);
        provsign_close(conn);
}

/* ---- Key list and status ------------------------------------------------- */

static void test_list_keys(void **state) {
        Provsign__Response resp, bad;
        Provsign__ListKeysResponse lr, lbad;
        Provsign__KeyInfo ki[3], *kp[3];
        struct test_key tk[3];
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_key_list *list = NULL;
        const provsign_key *k;
        size_t len;

        for (size_t i = 0; i < 3; i++) {
                test_key_make(&tk[i]);
                key_info_set(&ki[i], &tk[i], i == 2 ? "ci-nightly" : "ci-release");
                ki[i].generation = (uint32_t) i + 1;
                kp[i] = &ki[i];
        }
        ki[0].state = PROVSIGN__KEY_STATE__RETIRED;
        ki[1].created_us = 0;
        /* Lists may leave out the public key. */
        ki[2].public_key_der.len = 0;
        ki[2].public_key_der.data = NULL;

        provsign__response__init(&resp);
        provsign__list_keys_response__init(&lr);
        lr.n_keys = 3;
        lr.keys = kp;
        resp.body_case = PROVSIGN__RESPONSE__BODY_LIST_KEYS;
        resp.list_keys = &lr;

        bad = resp;
        lbad = lr;
        lbad.n_keys = 3;
        bad.list_keys = &lbad;

        fake_init(&fa);
        fake_add(&fa, &resp);
        fake_add(&fa, &bad);    /* answers a filter with another principal's key */
        fake_start(&fa, &conn);

        assert_int_equal(provsign_list_keys(conn, NULL, &list), 0);
        assert_int_equal(provsign_key_list_count(list), 3);
        k = provsign_key_list_get(list, 0);
        assert_string_equal(provsign_key_keyid(k), tk[0].keyid);
        assert_int_equal(provsign_key_state(k), PROVSIGN_KEY_STATE_RETIRED);
        assert_int_equal(provsign_key_generation(k), 1);
        assert_string_equal(provsign_key_pem(k), tk[0].pem);
        k = provsign_key_list_get(list, 1);
        assert_true(provsign_key_created_us(k) == 0);
        k = provsign_key_list_get(list, 2);
        assert_string_equal(provsign_key_principal(k), "ci-nightly");
        assert_null(provsign_key_spki_der(k, &len));
        assert_int_equal(len, 0);
        assert_null(provsign_key_pem(k));
        assert_null(provsign_key_list_get(list, 3));
        assert_null(provsign_key_list_get(list, SIZE_MAX));
        provsign_key_list_free(list);
        list = NULL;

        assert_int_equal(provsign_list_keys(conn, "ci-release", &list), -EPROTO);
        assert_null(list);

        provsign_close(conn);
        fake_join(&fa);
        assert_int_equal(fa.requests[0]->body_case, PROVSIGN__REQUEST__BODY_LIST_KEYS);
        assert_string_equal(fa.requests[0]->list_keys->principal, "");
        assert_string_equal(fa.requests[1]->list_keys->principal, "ci-release");
        fake_done(&fa);

        /* An empty list is a list. */
        lr.n_keys = 0;
        lr.keys = NULL;
        fake_init(&fa);
        fake_add(&fa, &resp);
        fake_start(&fa, &conn);
        assert_int_equal(provsign_list_keys(conn, NULL, &list), 0);
        assert_int_equal(provsign_key_list_count(list), 0);
        assert_null(provsign_key_list_get(list, 0));
        provsign_key_list_free(list);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);

        for (size_t i = 0; i < 3; i++)
                test_key_done(&tk[i]);
}

static void test_status(void **state) {
        Provsign__Response resp, empty;
        Provsign__StatusResponse body, empty_body;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_agent_status *st = NULL;
        const char *const *v;

        status_response_set(&resp, &body);
        provsign__response__init(&empty);
        provsign__status_response__init(&empty_body);
        empty.body_case = PROVSIGN__RESPONSE__BODY_STATUS_INFO;
        empty.status_info = &empty_body;

        fake_init(&fa);
        fake_add(&fa, &resp);
        fake_add(&fa, &empty);
        fake_start(&fa, &conn);

        assert_int_equal(provsign_status(conn, &st), 0);
        assert_string_equal(provsign_agent_status_agent_version(st), "0.1.0");
        assert_int_equal(provsign_agent_status_protocol_version(st), 1);
        assert_string_equal(provsign_agent_status_token_label(st), "provsign");
        assert_int_equal(provsign_agent_status_uptime_seconds(st), 12345);
        v = provsign_agent_status_principals(st);
        assert_string_equal(v[0], "ci-release");
        assert_string_equal(v[1], "ci-nightly");
        assert_null(v[2]);
        v = provsign_agent_status_caller_principals(st);
        assert_string_equal(v[0], "ci-release");
        assert_null(v[1]);
        v = provsign_agent_status_caller_roles(st);
        assert_string_equal(v[0], "operator");
        assert_null(v[1]);
        provsign_agent_status_free(st);
        st = NULL;

        /* An agent that knows nothing yet: empty strings, empty arrays. */
        assert_int_equal(provsign_status(conn, &st), 0);
        assert_string_equal(provsign_agent_status_agent_version(st), "");
        assert_non_null(provsign_agent_status_principals(st));
        assert_null(provsign_agent_status_principals(st)[0]);
        assert_null(provsign_agent_status_caller_principals(st)[0]);
        assert_null(provsign_agent_status_caller_roles(st)[0]);
        provsign_agent_status_free(st);

        provsign_close(conn);
        fake_join(&fa);
        assert_int_equal(fa.requests[1]->protocol_version, PROVSIGN_PROTOCOL_VERSION);
        assert_int_equal(fa.requests[1]->body_case, PROVSIGN__REQUEST__BODY_STATUS);
        fake_done(&fa);
}

/* ---- Sign: receipts ------------------------------------------------------ */

/* One Sign against a fake that answers with resp; returns the result. */
static int sign_with_reply(const Provsign__Response *resp) {
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;
        int r;

        fake_init(&fa);
        fake_add(&fa, resp);
        fake_start(&fa, &conn);
        r = do_sign(conn, &sig);
        if (r == 0)
                provsign_signature_free(sig);
        else
                assert_null(sig);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
        return r;
}

static void test_sign_receipt(void **state) {
        Provsign__Response resp;
        Provsign__SignResponse sr;
        struct test_receipt tr;
        struct test_entry e;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;
        const uint8_t *p;
        size_t n;

        sign_response_set(&resp, &sr, keyid_a, "ci-release");
        test_entry_default(&e, 2, keyid_a, "ci-release");
        test_receipt_make(&tr, &fixture_log_key, 2, 5, &e);
        sr.receipt = &tr.wire;

        fake_init(&fa);
        fake_add(&fa, &resp);
        fake_start(&fa, &conn);
        assert_int_equal(do_sign(conn, &sig), 0);

        assert_int_equal(provsign_signature_has_receipt(sig), 1);
        assert_int_equal(provsign_signature_log_seq(sig), 2);
        assert_true(provsign_signature_log_time_us(sig) == TEST_TIME_US);
        p = provsign_signature_leaf(sig, &n);
        assert_int_equal(n, tr.leaf_len);
        assert_memory_equal(p, tr.leaf, n);
        assert_int_equal(provsign_signature_tree_size(sig), 5);
        p = provsign_signature_inclusion_proof(sig, &n);
        assert_int_equal(n, tr.n_proof);
        assert_true(n >= 2);
        for (size_t i = 0; i < n; i++)
                assert_memory_equal(p + i * PROVSIGN_HASH_LEN, tr.proof[i], PROVSIGN_HASH_LEN);
        assert_ptr_equal(provsign_signature_inclusion_proof(sig, NULL), p);
        assert_string_equal(provsign_signature_checkpoint(sig), tr.checkpoint);
        provsign_signature_free(sig);

        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
        test_receipt_done(&tr);

        /* A tree of one entry: an empty proof. */
        test_entry_default(&e, 0, keyid_a, "ci-release");
        test_receipt_make(&tr, &fixture_log_key, 0, 1, &e);
        assert_int_equal(tr.n_proof, 0);
        sr.receipt = &tr.wire;
        fake_init(&fa);
        fake_add(&fa, &resp);
        fake_start(&fa, &conn);
        assert_int_equal(do_sign(conn, &sig), 0);
        assert_null(provsign_signature_inclusion_proof(sig, &n));
        assert_int_equal(n, 0);
        assert_int_equal(provsign_signature_tree_size(sig), 1);
        provsign_signature_free(sig);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
        test_receipt_done(&tr);
}

/* Every way a Sign reply's receipt can be missing, misshapen or at odds
 * with itself or the signature is -EPROTO. */
static void test_sign_receipt_bad(void **state) {
        static const uint8_t other_digest[32] = { 0xff };
        ProtobufCBinaryData many[PROTO_MERKLE_MAX_PROOF + 1];
        uint8_t zeros[PROTO_MERKLE_HASH_LEN] = {};
        Provsign__Response resp;
        Provsign__SignResponse sr;
        Provsign__Receipt w;
        struct test_receipt tr, other;
        struct test_log_key k2;
        struct test_entry e;
        char *garbled;

        sign_response_set(&resp, &sr, keyid_a, "ci-release");
        test_entry_default(&e, 2, keyid_a, "ci-release");
        test_receipt_make(&tr, &fixture_log_key, 2, 5, &e);
        sr.receipt = &tr.wire;
        assert_int_equal(sign_with_reply(&resp), 0);

        /* No receipt at all. */
        sr.receipt = NULL;
        assert_int_equal(sign_with_reply(&resp), -EPROTO);
        sr.receipt = &w;

        /* A proof hash of 31 bytes; of 33. */
        w = tr.wire;
        assert_true(tr.n_proof >= 2);
        w.inclusion_proof = many;
        memcpy(many, tr.proof_bd, tr.n_proof * sizeof many[0]);
        many[1].len = 31;
        assert_int_equal(sign_with_reply(&resp), -EPROTO);
        many[1].len = 33;
        assert_int_equal(sign_with_reply(&resp), -EPROTO);

        /* More hashes than any tree needs. */
        for (size_t i = 0; i < ELEMENTSOF(many); i++)
                many[i] = (ProtobufCBinaryData) { .len = sizeof zeros, .data = zeros };
        w.n_inclusion_proof = ELEMENTSOF(many);
        assert_int_equal(sign_with_reply(&resp), -EPROTO);

        /* No leaf; no checkpoint; a checkpoint that is not a note. */
        w = tr.wire;
        w.leaf.len = 0;
        w.leaf.data = NULL;
        assert_int_equal(sign_with_reply(&resp), -EPROTO);
        w = tr.wire;
        w.checkpoint = (char *) "";
        assert_int_equal(sign_with_reply(&resp), -EPROTO);
        w.checkpoint = (char *) "provsign.test/unit\n5\nnot a root\n";
        assert_int_equal(sign_with_reply(&resp), -EPROTO);

        /* A time no RFC 3339 string can carry. */
        w = tr.wire;
        w.log_time_us = -1;
        assert_int_equal(sign_with_reply(&resp), -EPROTO);

        /* Inconsistent: tree size, position, proof, leaf bytes, time. */
        w = tr.wire;
        w.tree_size = 6;
        assert_int_equal(sign_with_reply(&resp), -EPROTO);
        w = tr.wire;
        w.log_seq = 3;
        assert_int_equal(sign_with_reply(&resp), -EPROTO);
        w = tr.wire;
        w.log_seq = 5;
        assert_int_equal(sign_with_reply(&resp), -EPROTO);
        w = tr.wire;
        tr.proof[0][0] ^= 1;
        assert_int_equal(sign_with_reply(&resp), -EPROTO);
        tr.proof[0][0] ^= 1;
        w.n_inclusion_proof--;
        assert_int_equal(sign_with_reply(&resp), -EPROTO);
        w = tr.wire;
        tr.leaf[tr.leaf_len - 1] ^= 1;
        assert_int_equal(sign_with_reply(&resp), -EPROTO);
        tr.leaf[tr.leaf_len - 1] ^= 1;
        w = tr.wire;
        w.log_time_us++;
        assert_int_equal(sign_with_reply(&resp), -EPROTO);
        test_receipt_done(&tr);

        /* Self-consistent receipts of another event, another signature. */
        e.event = PROVSIGN__AUDIT_EVENT__KEY_ROTATE;
        test_receipt_make(&other, &fixture_log_key, 2, 5, &e);
        sr.receipt = &other.wire;
        assert_int_equal(sign_with_reply(&resp), -EPROTO);
        test_receipt_done(&other);

        test_entry_default(&e, 2, keyid_a, "ci-release");
        e.digest = other_digest;
        test_receipt_make(&other, &fixture_log_key, 2, 5, &e);
        assert_int_equal(sign_with_reply(&resp), -EPROTO);
        test_receipt_done(&other);

        test_entry_default(&e, 2, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "ci-release");
        test_receipt_make(&other, &fixture_log_key, 2, 5, &e);
        assert_int_equal(sign_with_reply(&resp), -EPROTO);
        test_receipt_done(&other);

        test_entry_default(&e, 2, keyid_a, "ci-nightly");
        test_receipt_make(&other, &fixture_log_key, 2, 5, &e);
        assert_int_equal(sign_with_reply(&resp), -EPROTO);
        test_receipt_done(&other);

        /* The entry's seq is not its position. */
        test_entry_default(&e, 3, keyid_a, "ci-release");
        test_receipt_make(&other, &fixture_log_key, 2, 5, &e);
        assert_int_equal(sign_with_reply(&resp), -EPROTO);
        test_receipt_done(&other);

        /* The library cannot check the signature (no log key): a receipt
         * signed by another key is still well-formed; receipt verify
         * catches it. */
        test_log_key_make(&k2);
        test_entry_default(&e, 2, keyid_a, "ci-release");
        test_receipt_make(&other, &k2, 2, 5, &e);
        assert_int_equal(sign_with_reply(&resp), 0);
        /* ...but a garbled signature line is not a note. */
        garbled = strdup(other.checkpoint);
        assert_non_null(garbled);
        strcpy(strstr(garbled, "\n\n") + 2, "-- not a signature line\n");
        other.wire.checkpoint = garbled;
        assert_int_equal(sign_with_reply(&resp), -EPROTO);
        free(garbled);
        test_receipt_done(&other);
        test_log_key_done(&k2);
}

/* ---- The audit log: checkpoint and log key ------------------------------- */

static void checkpoint_response_set(Provsign__Response *resp, Provsign__GetCheckpointResponse *cr, const char *note,
                                    uint64_t size) {
        provsign__response__init(resp);
        provsign__get_checkpoint_response__init(cr);
        cr->checkpoint = (char *) note;
        cr->tree_size = size;
        resp->body_case = PROVSIGN__RESPONSE__BODY_CHECKPOINT;
        resp->checkpoint = cr;
}

static void test_get_checkpoint(void **state) {
        Provsign__Response resp, bad[4];
        Provsign__GetCheckpointResponse cr, cbad[4];
        struct test_receipt tr;
        struct test_entry e;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        char *sentinel = (char *) (uintptr_t) 0x1, *note = sentinel;
        uint64_t size = 0;

        test_entry_default(&e, 2, keyid_a, "ci-release");
        test_receipt_make(&tr, &fixture_log_key, 2, 5, &e);
        checkpoint_response_set(&resp, &cr, tr.checkpoint, 5);

        fake_init(&fa);
        fake_add(&fa, &resp);
        fake_add(&fa, &resp);
        fake_add_refusal(&fa, PROVSIGN__STATUS__UNAVAILABLE, "the log is not open yet");
        fake_start(&fa, &conn);
        assert_int_equal(provsign_get_checkpoint(conn, &note, &size), 0);
        assert_string_equal(note, tr.checkpoint);   /* verbatim */
        assert_int_equal(size, 5);
        free(note);
        note = sentinel;
        /* The size is optional. */
        assert_int_equal(provsign_get_checkpoint(conn, &note, NULL), 0);
        assert_string_equal(note, tr.checkpoint);
        free(note);
        note = sentinel;
        assert_int_equal(provsign_get_checkpoint(conn, &note, &size), PROVSIGN_UNAVAILABLE);
        assert_string_equal(provsign_last_message(conn), "the log is not open yet");
        assert_ptr_equal(note, sentinel);
        provsign_close(conn);
        fake_join(&fa);
        assert_int_equal(fa.requests[0]->body_case, PROVSIGN__REQUEST__BODY_GET_CHECKPOINT);
        fake_done(&fa);

        /* The size stated is not the note's; no note; not a note; no body. */
        checkpoint_response_set(&bad[0], &cbad[0], tr.checkpoint, 6);
        checkpoint_response_set(&bad[1], &cbad[1], "", 5);
        checkpoint_response_set(&bad[2], &cbad[2], "provsign.test/unit\n5\n", 5);
        checkpoint_response_set(&bad[3], &cbad[3], NULL, 0);
        bad[3].body_case = PROVSIGN__RESPONSE__BODY__NOT_SET;
        bad[3].checkpoint = NULL;
        fake_init(&fa);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                fake_add(&fa, &bad[i]);
        fake_start(&fa, &conn);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                assert_int_equal(provsign_get_checkpoint(conn, &note, &size), -EPROTO);
                assert_ptr_equal(note, sentinel);
        }
        assert_int_equal(provsign_get_checkpoint(conn, NULL, &size), -EINVAL);
        assert_int_equal(provsign_get_checkpoint(NULL, &note, &size), -EINVAL);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
        test_receipt_done(&tr);
}

/* GetCheckpoint with a consistency proof from an older size. */
static void test_get_checkpoint_consistency(void **state) {
        uint8_t proof[PROTO_MERKLE_MAX_PROOF][PROTO_MERKLE_HASH_LEN], root3[PROTO_MERKLE_HASH_LEN],
                root5[PROTO_MERKLE_HASH_LEN], leaf[PROTO_MERKLE_HASH_LEN];
        ProtobufCBinaryData bd[PROTO_MERKLE_MAX_PROOF];
        Provsign__Response resp, bad[4];
        Provsign__GetCheckpointResponse cr, cbad[4];
        struct fake_agent fa;
        proto_merkle_tree *tree = NULL;
        provsign_conn *conn = NULL;
        char *body = NULL, *cp, *note = NULL;
        uint8_t *got = NULL;
        uint64_t size = 0;
        size_t n = 0, got_n = 99;

        assert_int_equal(proto_merkle_tree_new(&tree), 0);
        for (int i = 0; i < 5; i++) {
                uint8_t b = (uint8_t) i;

                assert_int_equal(proto_merkle_leaf_hash(&b, 1, leaf), 0);
                assert_int_equal(proto_merkle_tree_append(tree, leaf), 0);
        }
        assert_int_equal(proto_merkle_tree_root_at(tree, 3, root3), 0);
        assert_int_equal(proto_merkle_tree_root(tree, root5), 0);
        assert_int_equal(proto_merkle_tree_consistency_proof(tree, 3, 5, proof, &n), 0);
        assert_true(n > 0);
        proto_merkle_tree_free(tree);
        assert_int_equal(proto_checkpoint_format(TEST_ORIGIN, 5, root5, &body), 0);
        cp = note_sign(&fixture_log_key, body, TEST_ORIGIN);
        free(body);
        for (size_t i = 0; i < n; i++)
                bd[i] = (ProtobufCBinaryData) { .len = PROTO_MERKLE_HASH_LEN, .data = proof[i] };

        checkpoint_response_set(&resp, &cr, cp, 5);
        cr.from_size = 3;
        cr.consistency_proof = bd;
        cr.n_consistency_proof = n;

        fake_init(&fa);
        fake_add(&fa, &resp);
        fake_add(&fa, &resp);   /* a proof nobody asked for is dropped */
        fake_start(&fa, &conn);
        assert_int_equal(provsign_get_checkpoint_consistency(conn, 3, &note, &size, &got, &got_n), 0);
        assert_string_equal(note, cp);
        assert_int_equal(size, 5);
        assert_int_equal(got_n, n);
        assert_memory_equal(got, proof, n * PROTO_MERKLE_HASH_LEN);
        assert_int_equal(proto_merkle_verify_consistency(3, 5, root3, root5, (const uint8_t (*)[PROTO_MERKLE_HASH_LEN]) got,
                                                         got_n), 0);
        free(note);
        free(got);
        note = NULL;
        assert_int_equal(provsign_get_checkpoint(conn, &note, &size), 0);
        free(note);
        note = NULL;
        provsign_close(conn);
        fake_join(&fa);
        assert_int_equal(fa.requests[0]->get_checkpoint->from_size, 3);
        assert_int_equal(fa.requests[1]->get_checkpoint->from_size, 0);
        fake_done(&fa);

        /* 0: from_size not the one asked; 1: a hash of 31 bytes; 2: from a
         * size beyond the tree; 3: more hashes than any tree needs. */
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                bad[i] = resp;
                cbad[i] = cr;
                bad[i].checkpoint = &cbad[i];
        }
        cbad[0].from_size = 2;
        cbad[1].consistency_proof = malloc(n * sizeof *bd);
        assert_non_null(cbad[1].consistency_proof);
        memcpy(cbad[1].consistency_proof, bd, n * sizeof *bd);
        cbad[1].consistency_proof[n - 1].len = 31;
        cbad[2].from_size = 6;
        cbad[3].n_consistency_proof = PROTO_MERKLE_MAX_PROOF + 1;
        cbad[3].consistency_proof = calloc(PROTO_MERKLE_MAX_PROOF + 1, sizeof *bd);
        assert_non_null(cbad[3].consistency_proof);
        for (size_t i = 0; i <= PROTO_MERKLE_MAX_PROOF; i++)
                cbad[3].consistency_proof[i] = bd[0];
        fake_init(&fa);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                fake_add(&fa, &bad[i]);
        fake_start(&fa, &conn);
        assert_int_equal(provsign_get_checkpoint_consistency(conn, 3, &note, &size, &got, &got_n), -EPROTO);
        assert_int_equal(provsign_get_checkpoint_consistency(conn, 3, &note, &size, &got, &got_n), -EPROTO);
        assert_int_equal(provsign_get_checkpoint_consistency(conn, 6, &note, &size, &got, &got_n), -EPROTO);
        assert_int_equal(provsign_get_checkpoint_consistency(conn, 3, &note, &size, &got, &got_n), -EPROTO);
        assert_null(note);
        assert_int_equal(provsign_get_checkpoint_consistency(conn, 0, &note, &size, &got, &got_n), -EINVAL);
        assert_int_equal(provsign_get_checkpoint_consistency(conn, 3, &note, &size, NULL, &got_n), -EINVAL);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
        free(cbad[1].consistency_proof);
        free(cbad[3].consistency_proof);
        free(cp);
}

static void log_key_response_set(Provsign__Response *resp, Provsign__GetLogKeyResponse *lr, const struct test_log_key *k,
                                 const char *origin, const char *verifier_key) {
        provsign__response__init(resp);
        provsign__get_log_key_response__init(lr);
        lr->origin = (char *) origin;
        lr->public_key_der.data = k->der;
        lr->public_key_der.len = k->der_len;
        lr->public_key_pem = (char *) "ignored: the library derives the PEM from the DER";
        lr->verifier_key = (char *) verifier_key;
        lr->keyid = (char *) k->keyid;
        resp->body_case = PROVSIGN__RESPONSE__BODY_LOG_KEY;
        resp->log_key = lr;
}

static void test_get_log_key(void **state) {
        Provsign__Response resp, resp2, bad[4];
        Provsign__GetLogKeyResponse lr, lr2, lbad[4];
        const struct test_log_key *k = &fixture_log_key;
        struct test_key rsa = {};
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_log_key *key = NULL;
        char *vkey = NULL, *wrong = NULL;
        const uint8_t *der;
        size_t len;

        assert_int_equal(proto_note_verifier_key(TEST_ORIGIN, k->der, k->der_len, &vkey), 0);
        log_key_response_set(&resp, &lr, k, TEST_ORIGIN, vkey);
        log_key_response_set(&resp2, &lr2, k, TEST_ORIGIN, "");     /* the agent left it out */

        fake_init(&fa);
        fake_add(&fa, &resp);
        fake_add(&fa, &resp2);
        fake_start(&fa, &conn);
        for (int round = 0; round < 2; round++) {
                assert_int_equal(provsign_get_log_key(conn, &key), 0);
                assert_string_equal(provsign_log_key_origin(key), TEST_ORIGIN);
                assert_string_equal(provsign_log_key_keyid(key), k->keyid);
                der = provsign_log_key_spki_der(key, &len);
                assert_int_equal(len, k->der_len);
                assert_memory_equal(der, k->der, len);
                assert_ptr_equal(provsign_log_key_spki_der(key, NULL), der);
                assert_string_equal(provsign_log_key_pem(key), k->pem);       /* byte for byte OpenSSL's */
                assert_string_equal(provsign_log_key_verifier_key(key), vkey);
                assert_true(strncmp(vkey, TEST_ORIGIN "+", strlen(TEST_ORIGIN) + 1) == 0);
                provsign_log_key_free(key);
                key = NULL;
        }
        provsign_close(conn);
        fake_join(&fa);
        assert_int_equal(fa.requests[0]->body_case, PROVSIGN__REQUEST__BODY_GET_LOG_KEY);
        fake_done(&fa);

        /* 0: a key id that is not the key's; 1: a verifier key that is not
         * the key's; 2: an origin that cannot name a note key; 3: no key. */
        log_key_response_set(&bad[0], &lbad[0], k, TEST_ORIGIN, vkey);
        lbad[0].keyid = (char *) keyid_a;
        wrong = strdup(vkey);
        assert_non_null(wrong);
        wrong[strlen(TEST_ORIGIN) + 1] ^= 1;    /* a digit of the key hash */
        log_key_response_set(&bad[1], &lbad[1], k, TEST_ORIGIN, wrong);
        log_key_response_set(&bad[2], &lbad[2], k, "provsign test", "");
        log_key_response_set(&bad[3], &lbad[3], k, TEST_ORIGIN, "");
        lbad[3].public_key_der.len = 0;
        lbad[3].public_key_der.data = NULL;
        fake_init(&fa);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                fake_add(&fa, &bad[i]);
        fake_start(&fa, &conn);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                assert_int_equal(provsign_get_log_key(conn, &key), -EPROTO);
                assert_null(key);
        }
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);

        /* Empty origin; an RSA key (no ECDSA note signatures). */
        log_key_response_set(&bad[0], &lbad[0], k, "", "");
        {
                EVP_PKEY *pkey = EVP_RSA_gen(2048);
                unsigned char *p = NULL;
                int n;

                assert_non_null(pkey);
                n = i2d_PUBKEY(pkey, &p);
                assert_true(n > 0);
                rsa.der = p;
                rsa.der_len = (size_t) n;
                proto_keyid_hex(rsa.der, rsa.der_len, rsa.keyid);
                EVP_PKEY_free(pkey);
        }
        log_key_response_set(&bad[1], &lbad[1], k, TEST_ORIGIN, "");
        lbad[1].public_key_der.data = rsa.der;
        lbad[1].public_key_der.len = rsa.der_len;
        lbad[1].keyid = rsa.keyid;
        fake_init(&fa);
        fake_add(&fa, &bad[0]);
        fake_add(&fa, &bad[1]);
        fake_start(&fa, &conn);
        assert_int_equal(provsign_get_log_key(conn, &key), -EPROTO);
        assert_int_equal(provsign_get_log_key(conn, &key), -EPROTO);
        assert_null(key);
        assert_int_equal(provsign_get_log_key(conn, NULL), -EINVAL);
        assert_int_equal(provsign_get_log_key(NULL, &key), -EINVAL);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);

        provsign_log_key_free(NULL);
        OPENSSL_free(rsa.der);
        free(wrong);
        free(vkey);
}

/* ---- Receipt verification (offline, as `provsign receipt verify`) -------- */

static void test_receipt_time(void **state) {
        static const char *const bad[] = {
                "2026-11-25T18:20:01Z",                 /* no fraction */
                "2026-11-25T18:20:01.123Z",             /* three digits */
                "2026-11-25T18:20:01.1234567Z",         /* seven */
                "2026-11-25T18:20:01.123456+00:00",     /* an offset */
                "2026-11-25t18:20:01.123456z",          /* lower case */
                "2026-11-25 18:20:01.123456Z",
                "2026-02-30T18:20:01.123456Z",          /* no such day */
                "2026-11-25T24:00:00.000000Z",
                "2026-11-25T18:60:01.123456Z",
                "2026-11-25T18:20:60.000000Z",          /* leap seconds are not logged */
                "1969-12-31T23:59:59.999999Z",          /* before the epoch */
                "+026-11-25T18:20:01.123456Z",
                "2026-11-25T18:20:01.12345 Z",
                "",
        };
        char buf[PROTO_TIME_LEN + 1];
        int64_t us;

        assert_true(proto_time_format_us(TEST_TIME_US, buf));
        assert_string_equal(buf, "2026-11-25T18:20:01.123456Z");
        assert_int_equal(proto_time_parse_us(buf, &us), 0);
        assert_true(us == TEST_TIME_US);

        assert_true(proto_time_format_us(0, buf));
        assert_string_equal(buf, "1970-01-01T00:00:00.000000Z");
        assert_true(proto_time_format_us(PROTO_TIME_US_END - 1, buf));
        assert_string_equal(buf, "9999-12-31T23:59:59.999999Z");
        assert_int_equal(proto_time_parse_us(buf, &us), 0);
        assert_true(us == PROTO_TIME_US_END - 1);
        assert_true(proto_time_format_us(1000000, buf));
        assert_string_equal(buf, "1970-01-01T00:00:01.000000Z");
        assert_false(proto_time_format_us(-1, buf));
        assert_false(proto_time_format_us(PROTO_TIME_US_END, buf));
        assert_false(proto_time_format_us(INT64_MAX, buf));
        assert_int_equal(proto_time_parse_us("2024-02-29T00:00:00.000001Z", &us), 0);
        assert_true(us == INT64_C(1709164800000001));

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(proto_time_parse_us(bad[i], &us), -EINVAL);
        assert_int_equal(proto_time_parse_us(NULL, &us), -EINVAL);
}

#define SIGNER_KEYID "6bf8573bf56520baa4055d8b149b5112ccd2819692fd1ac56ac426287d0368f1"

/* A whole `sign --json` output around a receipt object (stolen). */
static json_t *whole_output(json_t *receipt, const char *keyid, const char *principal) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:o}",
                              "keyid", keyid,
                              "algorithm", "ecdsa-p256",
                              "sig", "MEUCIQDVaJaav8UV2YwzjFP9Jgwb0gA+vNzutsyNbCZe4sG6sgIgTEF48LlFTBdfGgtBA9Hgbl9Ak6QwBn/ugqyfEyjXIEc=",
                              "principal", principal,
                              "generation", 1,
                              "receipt", receipt);

        assert_non_null(o);
        return o;
}

/* Runs client_receipt_verify_text() on j (a reference is dropped) with pem;
 * returns its result, and the detail in detail (when not NULL). */
static int verify_json(json_t *j, const char *pem, char detail[static 320]) {
        struct client_receipt_doc doc = {};
        struct client_receipt_result res = {};
        char *text;
        int r;

        assert_non_null(j);
        text = json_dumps(j, JSON_COMPACT);
        assert_non_null(text);
        json_decref(j);
        r = client_receipt_verify_text(text, strlen(text), pem, &doc, &res);
        if (r != 0)
                assert_true(strlen(res.detail) > 0);
        else {
                assert_string_equal(res.detail, "");
                assert_non_null(res.entry);
                assert_string_equal(res.origin, TEST_ORIGIN);
        }
        strcpy(detail, res.detail);
        client_receipt_result_done(&res);
        client_receipt_doc_done(&doc);
        free(text);
        return r;
}

static int verify_view(const struct client_receipt *rc, bool whole, const char *keyid, const char *principal,
                       const char *pem, char detail[static 320]) {
        json_t *j = client_receipt_to_json(rc);

        assert_non_null(j);
        if (whole)
                j = whole_output(j, keyid, principal);
        return verify_json(j, pem, detail);
}

static void test_receipt_verify_ok(void **state) {
        const struct test_log_key *k = &fixture_log_key;
        struct client_receipt_doc doc = {};
        struct client_receipt_result res = {};
        struct test_receipt tr;
        struct client_receipt rc;
        struct test_entry e;
        char detail[320], *text, *hex;
        json_t *j, *v;

        test_entry_default(&e, 2, SIGNER_KEYID, "ci-release");
        test_receipt_make(&tr, k, 2, 5, &e);
        rc = test_receipt_view(&tr);

        /* Without the log key, as the library checks a reply. */
        assert_int_equal(client_receipt_verify(&rc, NULL, NULL, &res), CLIENT_RECEIPT_VERIFIED);
        client_receipt_result_done(&res);

        /* A bare receipt and a whole sign output. */
        assert_int_equal(verify_view(&rc, false, NULL, NULL, k->pem, detail), 0);
        assert_int_equal(verify_view(&rc, true, SIGNER_KEYID, "ci-release", k->pem, detail), 0);

        /* What the CLI prints. */
        j = whole_output(client_receipt_to_json(&rc), SIGNER_KEYID, "ci-release");
        text = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        assert_int_equal(client_receipt_verify_text(text, strlen(text), k->pem, &doc, &res), 0);
        assert_true(doc.whole);
        assert_string_equal(doc.keyid, SIGNER_KEYID);
        v = client_receipt_verified_json(&doc, &res);
        assert_non_null(v);
        hex = proto_digest_spec(PROVSIGN__DIGEST_ALGORITHM__SHA256, digest32, sizeof digest32);
        assert_non_null(hex);
        assert_string_equal(hex, "sha256:0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20");
        assert_true(json_is_true(json_object_get(v, "verified")));
        assert_int_equal(json_integer_value(json_object_get(v, "log_seq")), 2);
        assert_string_equal(json_string_value(json_object_get(v, "log_time")), "2026-11-25T18:20:01.123456Z");
        assert_string_equal(json_string_value(json_object_get(v, "principal")), "ci-release");
        assert_string_equal(json_string_value(json_object_get(v, "keyid")), SIGNER_KEYID);
        assert_string_equal(json_string_value(json_object_get(v, "digest")), hex);
        assert_int_equal(json_integer_value(json_object_get(v, "tree_size")), 5);
        assert_string_equal(json_string_value(json_object_get(v, "origin")), TEST_ORIGIN);
        assert_int_equal(json_object_size(v), 8);
        json_decref(v);
        free(hex);
        free(text);
        client_receipt_result_done(&res);
        client_receipt_doc_done(&doc);
        test_receipt_done(&tr);

        /* Every position of a few tree sizes, the edges included. */
        for (uint64_t size = 1; size <= 9; size += 4)
                for (uint64_t i = 0; i < size; i++) {
                        test_entry_default(&e, i, SIGNER_KEYID, "ci-release");
                        test_receipt_make(&tr, k, i, size, &e);
                        rc = test_receipt_view(&tr);
                        assert_int_equal(verify_view(&rc, true, SIGNER_KEYID, "ci-release", k->pem, detail), 0);
                        test_receipt_done(&tr);
                }
}

/* The receipt JSON, pinned: field names, order, encodings. */
static void test_receipt_json_format(void **state) {
        static const uint8_t leaf[] = { 0x08, 0x00 };
        uint8_t proof[2][PROTO_MERKLE_HASH_LEN];
        struct client_receipt rc = {
                .log_seq = 0,
                .log_time_us = TEST_TIME_US,
                .leaf = leaf,
                .leaf_len = sizeof leaf,
                .tree_size = 3,
                .proof = (const uint8_t (*)[PROTO_MERKLE_HASH_LEN]) proof,
                .n_proof = 2,
                .checkpoint = "o\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\xe2\x80\x94 o AAAAAAAA\n",
        };
        json_t *j;
        char *text;

        memset(proof[0], 0x00, sizeof proof[0]);
        memset(proof[1], 0xff, sizeof proof[1]);
        j = client_receipt_to_json(&rc);
        assert_non_null(j);
        text = json_dumps(j, JSON_COMPACT);
        assert_string_equal(text,
                            "{\"log_seq\":0,\"log_time\":\"2026-11-25T18:20:01.123456Z\",\"leaf\":\"CAA=\","
                            "\"tree_size\":3,\"inclusion_proof\":[\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\","
                            "\"//////////////////////////////////////////8=\"],"
                            "\"checkpoint\":\"o\\n3\\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\\n\\n\xe2\x80\x94 o AAAAAAAA\\n\"}");
        free(text);
        json_decref(j);

        /* Nothing to write for a time outside RFC 3339's years. */
        rc.log_time_us = -1;
        assert_null(client_receipt_to_json(&rc));
        /* An empty proof is an empty array. */
        rc.log_time_us = 0;
        rc.n_proof = 0;
        rc.proof = NULL;
        j = client_receipt_to_json(&rc);
        assert_non_null(j);
        assert_true(json_is_array(json_object_get(j, "inclusion_proof")));
        assert_int_equal(json_array_size(json_object_get(j, "inclusion_proof")), 0);
        json_decref(j);
}

/* Each tampering fails at its own check, in the documented order. */
static void test_receipt_verify_tampered(void **state) {
        const struct test_log_key *k = &fixture_log_key;
        struct test_receipt tr, other;
        struct test_log_key k2;
        struct client_receipt rc;
        struct test_entry e;
        struct test_key rsa = {};
        char detail[320], *note, *nl;
        uint8_t *leaf;

        test_entry_default(&e, 2, SIGNER_KEYID, "ci-release");
        test_receipt_make(&tr, k, 2, 5, &e);

        /* 3: a leaf byte flipped. */
        rc = test_receipt_view(&tr);
        leaf = malloc(tr.leaf_len);
        assert_non_null(leaf);
        memcpy(leaf, tr.leaf, tr.leaf_len);
        leaf[tr.leaf_len / 2] ^= 0x01;
        rc.leaf = leaf;
        assert_int_equal(verify_view(&rc, true, SIGNER_KEYID, "ci-release", k->pem, detail), CLIENT_RECEIPT_INCLUSION);
        assert_non_null(strstr(detail, "root"));
        free(leaf);

        /* 3: the wrong log_seq, beside and beyond the tree. */
        rc = test_receipt_view(&tr);
        rc.log_seq = 3;
        assert_int_equal(verify_view(&rc, false, NULL, NULL, k->pem, detail), CLIENT_RECEIPT_INCLUSION);
        rc.log_seq = 5;
        assert_int_equal(verify_view(&rc, false, NULL, NULL, k->pem, detail), CLIENT_RECEIPT_INCLUSION);
        assert_non_null(strstr(detail, "outside"));

        /* 3: a proof hash changed; a hash missing; one too many. */
        rc = test_receipt_view(&tr);
        tr.proof[1][7] ^= 0x80;
        assert_int_equal(verify_view(&rc, false, NULL, NULL, k->pem, detail), CLIENT_RECEIPT_INCLUSION);
        tr.proof[1][7] ^= 0x80;
        rc.n_proof--;
        assert_int_equal(verify_view(&rc, false, NULL, NULL, k->pem, detail), CLIENT_RECEIPT_INCLUSION);
        rc.n_proof += 2;
        assert_int_equal(verify_view(&rc, false, NULL, NULL, k->pem, detail), CLIENT_RECEIPT_INCLUSION);

        /* 2: tree_size changed. */
        rc = test_receipt_view(&tr);
        rc.tree_size = 6;
        assert_int_equal(verify_view(&rc, true, SIGNER_KEYID, "ci-release", k->pem, detail), CLIENT_RECEIPT_TREE_SIZE);
        assert_non_null(strstr(detail, "6"));

        /* 1: the checkpoint body edited (its size, to match a larger
         * tree_size), the signature left as it was. */
        note = strdup(tr.checkpoint);
        assert_non_null(note);
        nl = strchr(note, '\n');
        assert_int_equal(nl[1], '5');
        nl[1] = '6';
        rc = test_receipt_view(&tr);
        rc.checkpoint = note;
        rc.tree_size = 6;
        assert_int_equal(verify_view(&rc, true, SIGNER_KEYID, "ci-release", k->pem, detail), CLIENT_RECEIPT_CHECKPOINT);
        assert_non_null(strstr(detail, "does not verify"));
        /* Why check 1 comes first: without the key (the library's check of
         * a reply), the edited size goes unnoticed, as the proof for index
         * 2 of 5 leaves also reproduces the same root as a tree of "6"
         * (RFC 9162 proofs bind the root, not the size). */
        {
                struct client_receipt_result res = {};

                assert_int_equal(client_receipt_verify(&rc, NULL, NULL, &res), CLIENT_RECEIPT_VERIFIED);
                client_receipt_result_done(&res);
        }
        free(note);

        /* 1: a checkpoint that is not a note at all. */
        rc = test_receipt_view(&tr);
        rc.checkpoint = "hello\n";
        assert_int_equal(verify_view(&rc, false, NULL, NULL, k->pem, detail), CLIENT_RECEIPT_CHECKPOINT);

        /* 1: signed by another key. */
        test_log_key_make(&k2);
        test_receipt_make(&other, &k2, 2, 5, &e);
        rc = test_receipt_view(&other);
        assert_int_equal(verify_view(&rc, true, SIGNER_KEYID, "ci-release", k->pem, detail), CLIENT_RECEIPT_CHECKPOINT);
        assert_non_null(strstr(detail, "no signature"));
        assert_int_equal(verify_view(&rc, true, SIGNER_KEYID, "ci-release", k2.pem, detail), 0);
        test_receipt_done(&other);
        test_log_key_done(&k2);

        /* 1: the log key's signature, but under another name than the
         * checkpoint's origin. */
        test_receipt_make_named(&other, k, "another.origin/log", 2, 5, &e);
        rc = test_receipt_view(&other);
        assert_int_equal(verify_view(&rc, false, NULL, NULL, k->pem, detail), CLIENT_RECEIPT_CHECKPOINT);
        assert_non_null(strstr(detail, TEST_ORIGIN));
        test_receipt_done(&other);

        /* 1: a log key that cannot verify notes (RSA). */
        {
                EVP_PKEY *pkey = EVP_RSA_gen(2048);
                BIO *bio = BIO_new(BIO_s_mem());
                char *data;
                long n;

                assert_non_null(pkey);
                assert_non_null(bio);
                assert_int_equal(PEM_write_bio_PUBKEY(bio, pkey), 1);
                n = BIO_get_mem_data(bio, &data);
                rsa.pem = strndup(data, (size_t) n);
                assert_non_null(rsa.pem);
                BIO_free(bio);
                EVP_PKEY_free(pkey);
        }
        rc = test_receipt_view(&tr);
        assert_int_equal(verify_view(&rc, false, NULL, NULL, rsa.pem, detail), CLIENT_RECEIPT_CHECKPOINT);
        free(rsa.pem);

        /* 5: the output's keyid or principal is not the entry's. */
        rc = test_receipt_view(&tr);
        assert_int_equal(verify_view(&rc, true, keyid_a, "ci-release", k->pem, detail), CLIENT_RECEIPT_SIGNER);
        assert_non_null(strstr(detail, "keyid"));
        assert_int_equal(verify_view(&rc, true, SIGNER_KEYID, "ci-nightly", k->pem, detail), CLIENT_RECEIPT_SIGNER);
        assert_non_null(strstr(detail, "principal"));
        /* A bare receipt has nothing to compare with. */
        assert_int_equal(verify_view(&rc, false, NULL, NULL, k->pem, detail), 0);
        test_receipt_done(&tr);

        /* 4: an entry of another event. */
        e.event = PROVSIGN__AUDIT_EVENT__KEY_ROTATE;
        test_receipt_make(&tr, k, 2, 5, &e);
        rc = test_receipt_view(&tr);
        assert_int_equal(verify_view(&rc, true, SIGNER_KEYID, "ci-release", k->pem, detail), CLIENT_RECEIPT_ENTRY);
        assert_non_null(strstr(detail, "KEY_ROTATE"));
        test_receipt_done(&tr);

        /* 4: an entry whose seq is not its position. */
        test_entry_default(&e, 3, SIGNER_KEYID, "ci-release");
        test_receipt_make(&tr, k, 2, 5, &e);
        rc = test_receipt_view(&tr);
        assert_int_equal(verify_view(&rc, false, NULL, NULL, k->pem, detail), CLIENT_RECEIPT_ENTRY);
        assert_non_null(strstr(detail, "seq"));
        test_receipt_done(&tr);

        /* 4: log_time is not the entry's time. */
        test_entry_default(&e, 2, SIGNER_KEYID, "ci-release");
        test_receipt_make(&tr, k, 2, 5, &e);
        rc = test_receipt_view(&tr);
        rc.log_time_us += 1;
        assert_int_equal(verify_view(&rc, false, NULL, NULL, k->pem, detail), CLIENT_RECEIPT_ENTRY);
        assert_non_null(strstr(detail, "2026-11-25T18:20:01.123457Z"));
        test_receipt_done(&tr);

        assert_string_equal(client_receipt_check_name(CLIENT_RECEIPT_CHECKPOINT), "checkpoint signature");
        assert_string_equal(client_receipt_check_name(CLIENT_RECEIPT_SIGNER), "signer");
        assert_string_equal(client_receipt_check_name(99), "unknown check");
}

/* Malformed input is a local error naming the field, never a check. */
static void test_receipt_verify_malformed(void **state) {
        static const struct {
                const char *path;       /* field to change in the whole output ("" = root) */
                const char *key;
                const char *json;       /* new value as JSON; NULL: delete the key */
                const char *named;      /* expected in the detail */
        } cases[] = {
                { "",        "keyid",           NULL,                 "keyid" },
                { "",        "principal",       "7",                  "principal" },
                { "",        "receipt",         "[]",                 "receipt: not an object" },
                { "receipt", "log_seq",         NULL,                 "receipt.log_seq" },
                { "receipt", "log_seq",         "-1",                 "receipt.log_seq" },
                { "receipt", "log_seq",         "\"2\"",              "receipt.log_seq" },
                { "receipt", "log_time",        "\"2026-11-25T18:20:01Z\"", "receipt.log_time" },
                { "receipt", "log_time",        "1795630801",         "receipt.log_time" },
                { "receipt", "leaf",            "\"not base64!\"",    "receipt.leaf" },
                { "receipt", "leaf",            "\"CAA\"",            "receipt.leaf" },       /* unpadded */
                { "receipt", "leaf",            "\"CAB=\"",           "receipt.leaf" },       /* not canonical */
                { "receipt", "leaf",            "\"CA A=\"",          "receipt.leaf" },
                { "receipt", "leaf",            "null",               "receipt.leaf" },
                { "receipt", "tree_size",       "5.0",                "receipt.tree_size" },
                { "receipt", "inclusion_proof", "{}",                 "receipt.inclusion_proof" },
                { "receipt", "inclusion_proof", "[\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\"]",
                                                                      "receipt.inclusion_proof[0]" }, /* 31 bytes */
                { "receipt", "inclusion_proof", "[7]",                "receipt.inclusion_proof[0]" },
                { "receipt", "checkpoint",      "\"a\\u0000b\"",      "u0000" },      /* refused by the JSON parser */
                { "receipt", "checkpoint",      NULL,                 "receipt.checkpoint" },
        };
        static const char *const not_json[] = {
                "",
                "{",
                "[1, 2]",
                "\"receipt\"",
                "{\"log_seq\": 1, \"log_seq\": 2}",     /* duplicate keys */
        };
        const struct test_log_key *k = &fixture_log_key;
        struct client_receipt_doc doc = {};
        struct client_receipt_result res = {};
        struct test_receipt tr;
        struct client_receipt rc;
        struct test_entry e;
        char detail[320];
        json_t *base, *j, *many;

        test_entry_default(&e, 2, SIGNER_KEYID, "ci-release");
        test_receipt_make(&tr, k, 2, 5, &e);
        rc = test_receipt_view(&tr);
        base = whole_output(client_receipt_to_json(&rc), SIGNER_KEYID, "ci-release");

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                json_t *target;

                j = json_deep_copy(base);
                assert_non_null(j);
                target = *cases[i].path ? json_object_get(j, cases[i].path) : j;
                if (cases[i].json)
                        assert_int_equal(json_object_set_new(target, cases[i].key,
                                                             json_loads(cases[i].json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL)), 0);
                else
                        assert_int_equal(json_object_del(target, cases[i].key), 0);
                assert_int_equal(verify_json(j, k->pem, detail), -EBADMSG);
                if (!strstr(detail, cases[i].named))
                        fail_msg("case %zu: detail '%s' does not name '%s'", i, detail, cases[i].named);
        }

        /* More proof hashes than any tree has levels. */
        j = json_deep_copy(base);
        many = json_array();
        for (size_t i = 0; i <= PROTO_MERKLE_MAX_PROOF; i++)
                json_array_append_new(many, json_string("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
        json_object_set_new(json_object_get(j, "receipt"), "inclusion_proof", many);
        assert_int_equal(verify_json(j, k->pem, detail), -EBADMSG);
        assert_non_null(strstr(detail, "inclusion_proof"));

        /* A bare receipt names its fields without a prefix. */
        j = json_deep_copy(json_object_get(base, "receipt"));
        json_object_del(j, "leaf");
        assert_int_equal(verify_json(j, k->pem, detail), -EBADMSG);
        assert_string_equal(detail, "leaf: missing or not canonical base64");

        for (size_t i = 0; i < ELEMENTSOF(not_json); i++) {
                assert_int_equal(client_receipt_verify_text(not_json[i], strlen(not_json[i]), k->pem, &doc, &res),
                                 -EBADMSG);
                assert_true(strlen(res.detail) > 0);
                client_receipt_result_done(&res);
                client_receipt_doc_done(&doc);
        }

        /* A log key that is not a PEM public key. */
        j = json_deep_copy(base);
        assert_int_equal(verify_json(j, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", detail), -ENOKEY);
        assert_non_null(strstr(detail, "PEM"));

        json_decref(base);
        test_receipt_done(&tr);
}

/* The independent vectors (golang.org/x/mod/sumdb tlog and note): checks 1-3
 * pass on a checkpoint, proof and leaf this code did not make, so the
 * verification fails only at 4 (the leaf "entry-5" is no AuditEntry). */
static void test_receipt_vectors(void **state) {
        const char *srcdir = getenv("SRCDIR");
        struct client_receipt_result res = {};
        uint8_t proof[PROTO_MERKLE_MAX_PROOF][PROTO_MERKLE_HASH_LEN];
        struct client_receipt rc = {};
        char path[PATH_MAX];
        const char *pem;
        json_t *v, *incl;
        size_t n = 0, len;

        snprintf(path, sizeof path, "%s/tests/vectors/tlog.json", srcdir ? srcdir : "../..");
        v = json_load_file(path, 0, NULL);
        if (!v)
                fail_msg("cannot read %s: the vectors are part of the tree", path);
        pem = json_string_value(json_object_get(v, "ecdsa_public_key_pem"));
        incl = json_object_get(json_array_get(json_object_get(v, "inclusion_size_13"), 5), "proof");
        assert_non_null(pem);
        assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(v, "inclusion_size_13"), 5), "index")), 5);
        for (n = 0; n < json_array_size(incl); n++) {
                assert_int_equal(proto_hex_decode(json_string_value(json_array_get(incl, n)), proof[n], PROTO_MERKLE_HASH_LEN, &len), 0);
                assert_int_equal(len, PROTO_MERKLE_HASH_LEN);
        }

        rc.log_seq = 5;
        rc.log_time_us = TEST_TIME_US;
        rc.leaf = (const uint8_t *) "entry-5";
        rc.leaf_len = strlen("entry-5");
        rc.tree_size = 13;
        rc.proof = (const uint8_t (*)[PROTO_MERKLE_HASH_LEN]) proof;
        rc.n_proof = n;
        rc.checkpoint = json_string_value(json_object_get(v, "checkpoint"));
        assert_non_null(rc.checkpoint);

        assert_int_equal(client_receipt_verify(&rc, NULL, pem, &res), CLIENT_RECEIPT_ENTRY);
        assert_string_equal(res.origin, "example.com/signing-agent/audit-log");
        assert_int_equal(res.checkpoint_size, 13);

        rc.leaf = (const uint8_t *) "entry-6";
        assert_int_equal(client_receipt_verify(&rc, NULL, pem, &res), CLIENT_RECEIPT_INCLUSION);
        rc.leaf = (const uint8_t *) "entry-5";
        rc.tree_size = 12;
        assert_int_equal(client_receipt_verify(&rc, NULL, pem, &res), CLIENT_RECEIPT_TREE_SIZE);
        rc.tree_size = 13;
        assert_int_equal(client_receipt_verify(&rc, NULL, fixture_log_key.pem, &res), CLIENT_RECEIPT_CHECKPOINT);

        client_receipt_result_done(&res);
        json_decref(v);
}

/* ---- Export, find, proof ------------------------------------------------- */

/* An AuditEntry of seq, packed; *ret_len its length. */
static uint8_t *entry_bytes(uint64_t seq, size_t *ret_len) {
        Provsign__AuditEntry ae = PROVSIGN__AUDIT_ENTRY__INIT;
        uint8_t *b;

        ae.seq = seq;
        ae.time_us = INT64_C(1764092040000000) + (int64_t) seq;
        ae.event = PROVSIGN__AUDIT_EVENT__AGENT_START;
        *ret_len = protobuf_c_message_get_packed_size(&ae.base);
        b = malloc(*ret_len);
        assert_non_null(b);
        protobuf_c_message_pack(&ae.base, b);
        return b;
}

struct export_case {
        uint64_t from, to, size;        /* entries [from, to) of a tree of size */
        bool forge_right;               /* one right hash changed */
        bool skip_entry;                /* entry from + 1 left out */
};

struct export_seen {
        uint64_t next, n;
        bool out_of_order;
};

static int seen_entry(uint64_t seq, const uint8_t *leaf, size_t len, void *userdata) {
        struct export_seen *s = userdata;

        (void) leaf, (void) len;
        if (s->n > 0 && seq != s->next)
                s->out_of_order = true;
        s->next = seq + 1;
        s->n++;
        return 0;
}

/* Runs an export of c against the fake: the entries in two frames, then
 * the done frame with the checkpoint and the compact range. */
static int run_export(const struct export_case *c, struct export_seen *seen, provsign_log_export **ret) {
        struct test_log_key lk;
        proto_merkle_tree *tree = NULL;
        uint8_t root[PROTO_MERKLE_HASH_LEN], left[64][PROTO_MERKLE_HASH_LEN], right[64][PROTO_MERKLE_HASH_LEN];
        uint8_t *leaves[64] = {};
        size_t lens[64], nl, nr;
        ProtobufCBinaryData bd[64], lbd[64], rbd[64];
        Provsign__ExportResponse x[3];
        Provsign__Response resp[3];
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_log_query *q = NULL;
        char *body = NULL, *note;
        size_t k = 0;
        int r;

        assert_true(c->size <= 64);
        test_log_key_make(&lk);
        assert_int_equal(proto_merkle_tree_new(&tree), 0);
        for (uint64_t i = 0; i < c->size; i++) {
                uint8_t h[PROTO_MERKLE_HASH_LEN];

                leaves[i] = entry_bytes(i, &lens[i]);
                assert_int_equal(proto_merkle_leaf_hash(leaves[i], lens[i], h), 0);
                assert_int_equal(proto_merkle_tree_append(tree, h), 0);
        }
        assert_int_equal(proto_merkle_tree_root(tree, root), 0);
        assert_int_equal(proto_merkle_tree_range_proof(tree, c->from, c->to, c->size, left, &nl, right, &nr), 0);
        proto_merkle_tree_free(tree);
        if (c->forge_right) {
                assert_true(nr > 0);
                right[0][0] ^= 1;
        }
        assert_int_equal(proto_checkpoint_format(TEST_ORIGIN, c->size, root, &body), 0);
        note = note_sign(&lk, body, TEST_ORIGIN);
        for (uint64_t i = c->from; i < c->to; i++)
                if (!(c->skip_entry && i == c->from + 1))
                        bd[k++] = (ProtobufCBinaryData) { .len = lens[i], .data = leaves[i] };
        for (size_t i = 0; i < nl; i++)
                lbd[i] = (ProtobufCBinaryData) { .len = PROTO_MERKLE_HASH_LEN, .data = left[i] };
        for (size_t i = 0; i < nr; i++)
                rbd[i] = (ProtobufCBinaryData) { .len = PROTO_MERKLE_HASH_LEN, .data = right[i] };

        fake_init(&fa);
        for (int f = 0; f < 3; f++) {
                provsign__response__init(&resp[f]);
                provsign__export_response__init(&x[f]);
                resp[f].protocol_version = PROVSIGN_PROTOCOL_VERSION;
                resp[f].body_case = PROVSIGN__RESPONSE__BODY_EXPORT;
                resp[f].export = &x[f];
        }
        x[0].first_seq = c->from;
        x[0].n_leaves = k / 2;
        x[0].leaves = bd;
        x[1].first_seq = c->from + k / 2 + (c->skip_entry ? 1 : 0);
        x[1].n_leaves = k - k / 2;
        x[1].leaves = bd + k / 2;
        x[2].done = true;
        x[2].checkpoint = note;
        x[2].tree_size = c->size;
        x[2].n_left = nl;
        x[2].left = lbd;
        x[2].n_right = nr;
        x[2].right = rbd;
        /* One reply of three frames: the fake reads the one request first. */
        fake_add_frames(&fa, resp, 3);
        fake_start(&fa, &conn);
        assert_int_equal(provsign_log_query_new(&q), 0);
        assert_int_equal(provsign_log_query_set_range(q, c->from, c->to - 1), 0);
        r = provsign_export_log(conn, q, seen_entry, seen, ret);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
        provsign_log_query_free(q);
        for (uint64_t i = 0; i < c->size; i++)
                free(leaves[i]);
        free(body);
        free(note);
        test_log_key_done(&lk);
        return r;
}

/* A filtered export against the fake: the checkpoint frame, one frame of
 * the entries of seqs with their inclusion proofs, the done frame. forge:
 * a hash of the second entry's proof changed. */
struct filtered_seen {
        uint64_t seqs[8];
        size_t n;
        uint64_t tree_size;
};

static int seen_proven(const provsign_log_export *head, uint64_t seq, const uint8_t *leaf, size_t len,
                       const uint8_t *proof, size_t n_proof, void *userdata) {
        struct filtered_seen *s = userdata;

        (void) leaf, (void) len, (void) proof, (void) n_proof;
        s->tree_size = provsign_log_export_tree_size(head);
        if (s->n < 8)
                s->seqs[s->n++] = seq;
        return 0;
}

static int run_filtered(const uint64_t *seqs, size_t n, bool forge, struct filtered_seen *seen,
                        provsign_log_export **ret) {
        enum { SIZE = 13 };
        struct test_log_key lk;
        proto_merkle_tree *tree = NULL;
        uint8_t root[PROTO_MERKLE_HASH_LEN], proofs[8][PROTO_MERKLE_MAX_PROOF][PROTO_MERKLE_HASH_LEN];
        uint8_t *leaves[SIZE];
        size_t lens[SIZE], np[8];
        ProtobufCBinaryData bd[8], hb[8][PROTO_MERKLE_MAX_PROOF];
        Provsign__InclusionProof ip[8], *ipp[8];
        Provsign__ExportResponse x[3];
        Provsign__Response resp[3];
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_log_query *q = NULL;
        char *body = NULL, *note;
        int r;

        test_log_key_make(&lk);
        assert_int_equal(proto_merkle_tree_new(&tree), 0);
        for (uint64_t i = 0; i < SIZE; i++) {
                uint8_t h[PROTO_MERKLE_HASH_LEN];

                leaves[i] = entry_bytes(i, &lens[i]);
                assert_int_equal(proto_merkle_leaf_hash(leaves[i], lens[i], h), 0);
                assert_int_equal(proto_merkle_tree_append(tree, h), 0);
        }
        assert_int_equal(proto_merkle_tree_root(tree, root), 0);
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(proto_merkle_tree_inclusion_proof(tree, seqs[i], SIZE, proofs[i], &np[i]), 0);
                bd[i] = (ProtobufCBinaryData) { .len = lens[seqs[i]], .data = leaves[seqs[i]] };
                for (size_t k = 0; k < np[i]; k++)
                        hb[i][k] = (ProtobufCBinaryData) { .len = PROTO_MERKLE_HASH_LEN, .data = proofs[i][k] };
                provsign__inclusion_proof__init(&ip[i]);
                ip[i].hashes = hb[i];
                ip[i].n_hashes = np[i];
                ipp[i] = &ip[i];
        }
        proto_merkle_tree_free(tree);
        if (forge)
                proofs[1][0][0] ^= 1;
        assert_int_equal(proto_checkpoint_format(TEST_ORIGIN, SIZE, root, &body), 0);
        note = note_sign(&lk, body, TEST_ORIGIN);
        fake_init(&fa);
        for (int f = 0; f < 3; f++) {
                provsign__response__init(&resp[f]);
                provsign__export_response__init(&x[f]);
                resp[f].protocol_version = PROVSIGN_PROTOCOL_VERSION;
                resp[f].body_case = PROVSIGN__RESPONSE__BODY_EXPORT;
                resp[f].export = &x[f];
                x[f].sparse = true;
        }
        x[0].checkpoint = note;
        x[0].tree_size = SIZE;
        x[1].leaves = bd;
        x[1].n_leaves = n;
        x[1].proofs = ipp;
        x[1].n_proofs = n;
        x[2].done = true;
        fake_add_frames(&fa, resp, 3);
        fake_start(&fa, &conn);
        assert_int_equal(provsign_log_query_new(&q), 0);
        assert_int_equal(provsign_log_query_set_keyid(q, "k"), 0);
        r = provsign_export_log_filtered(conn, q, seen_proven, seen, ret);
        provsign_close(conn);
        fake_join(&fa);
        /* The filter went out in the request. */
        assert_int_equal(fa.n_requests, 1);
        assert_string_equal(fa.requests[0]->export->keyid, "k");
        fake_done(&fa);
        provsign_log_query_free(q);
        for (uint64_t i = 0; i < SIZE; i++)
                free(leaves[i]);
        free(body);
        free(note);
        test_log_key_done(&lk);
        return r;
}

/* A filtered export: the entries reach the callback once their proofs lead
 * to the checkpoint's root; a forged proof or a seq out of order is
 * -EPROTO before that entry is seen; no filter is -EINVAL. */
static void test_export_filtered(void **state) {
        const uint64_t good[] = { 2, 5, 11 }, back[] = { 5, 2 };
        struct filtered_seen seen = {};
        provsign_log_export *x = NULL;
        provsign_log_query *q = NULL;
        (void) state;

        assert_int_equal(run_filtered(good, 3, false, &seen, &x), 0);
        assert_int_equal(seen.n, 3);
        assert_int_equal(seen.seqs[2], 11);
        assert_int_equal(seen.tree_size, 13);
        assert_int_equal(provsign_log_export_entries(x, NULL), 3);
        provsign_log_export_free(x);
        x = NULL;
        seen = (struct filtered_seen) {};
        assert_int_equal(run_filtered(good, 3, true, &seen, &x), -EPROTO);
        assert_null(x);
        assert_int_equal(seen.n, 1);
        seen = (struct filtered_seen) {};
        assert_int_equal(run_filtered(back, 2, false, &seen, &x), -EPROTO);
        assert_null(x);
        assert_int_equal(seen.n, 1);
        assert_int_equal(provsign_log_query_new(&q), 0);
        /* No filter: refused before conn is used (any non-NULL pointer does). */
        assert_int_equal(provsign_export_log_filtered((provsign_conn *) q, q, seen_proven, &seen, &x), -EINVAL);
        provsign_log_query_free(q);
}

/* The streamed compact range (bounded memory) against proto/merkle's range
 * proof: every (from, to, size) of small trees reproduces the root. */
static void test_export_ranges(void **state) {
        (void) state;
        for (uint64_t size = 1; size <= 13; size++)
                for (uint64_t from = 0; from < size; from++)
                        for (uint64_t to = from + 1; to <= size; to++) {
                                struct export_case c = { .from = from, .to = to, .size = size };
                                struct export_seen seen = {};
                                provsign_log_export *x = NULL;
                                uint64_t first;

                                assert_int_equal(run_export(&c, &seen, &x), 0);
                                assert_int_equal(seen.n, to - from);
                                assert_false(seen.out_of_order);
                                assert_int_equal(provsign_log_export_entries(x, &first), to - from);
                                assert_int_equal(first, from);
                                assert_int_equal(provsign_log_export_tree_size(x), size);
                                provsign_log_export_free(x);
                        }
}

/* A forged range hash, or an entry left out, is -EPROTO; the entry after
 * the gap never reaches the callback. */
static void test_export_forged(void **state) {
        struct export_case forged = { .from = 5, .to = 9, .size = 13, .forge_right = true };
        struct export_case gap = { .from = 2, .to = 8, .size = 13, .skip_entry = true };
        struct export_seen seen = {};
        provsign_log_export *x = NULL;
        (void) state;

        assert_int_equal(run_export(&forged, &seen, &x), -EPROTO);
        assert_null(x);
        seen = (struct export_seen) {};
        assert_int_equal(run_export(&gap, &seen, &x), -EPROTO);
        assert_null(x);
        assert_false(seen.out_of_order);
        assert_int_equal(seen.n, 1);
}

/* ---- PEM ----------------------------------------------------------------- */

/* The public header's media type of the key bundle is proto/'s. */
static void test_key_bundle_type(void **state) {
        (void) state;
        assert_string_equal(PROVSIGN_KEY_BUNDLE_TYPE, PROTO_KEY_BUNDLE_TYPE);
}

static void test_pem_from_der(void **state) {
        static const size_t lengths[] = { 1, 2, 3, 47, 48, 49, 95, 96, 97, 422 };
        uint8_t data[422];
        char *pem = NULL;

        for (size_t i = 0; i < sizeof data; i++)
                data[i] = (uint8_t) (i * 7 + 3);

        for (size_t i = 0; i < ELEMENTSOF(lengths); i++) {
                BIO *bio = BIO_new(BIO_s_mem());
                char *expected;
                long n;

                assert_non_null(bio);
                assert_true(PEM_write_bio(bio, "PUBLIC KEY", "", data, (long) lengths[i]) > 0);
                n = BIO_get_mem_data(bio, &expected);

                assert_int_equal(client_pem_from_der(data, lengths[i], &pem), 0);
                assert_int_equal(strlen(pem), (size_t) n);
                assert_memory_equal(pem, expected, (size_t) n);
                free(pem);
                BIO_free(bio);
        }

        pem = NULL;
        assert_int_equal(client_pem_from_der(data, 0, &pem), -EINVAL);
        assert_int_equal(client_pem_from_der(NULL, 3, &pem), -EINVAL);
        assert_null(pem);
}

/* ---- DSSE ---------------------------------------------------------------- */

/* A signing key the fake agent holds: its private key, DER SPKI, key id. */
struct dsse_key {
        EVP_PKEY *pkey;
        uint8_t *der;
        size_t der_len;
        char keyid[PROTO_KEYID_HEX_LEN + 1];
        int algorithm;
        int dalg;
};

static void dsse_key_make(struct dsse_key *k, const char *curve) {
        unsigned char *p = NULL;
        int len;

        k->pkey = EVP_EC_gen(curve);
        assert_non_null(k->pkey);
        len = i2d_PUBKEY(k->pkey, &p);
        assert_true(len > 0);
        k->der = p;
        k->der_len = (size_t) len;
        proto_keyid_hex(k->der, k->der_len, k->keyid);
        k->algorithm = strcmp(curve, "P-384") == 0 ? PROVSIGN__KEY_ALGORITHM__ECDSA_P384 : PROVSIGN__KEY_ALGORITHM__ECDSA_P256;
        k->dalg = strcmp(curve, "P-384") == 0 ? PROVSIGN__DIGEST_ALGORITHM__SHA384 : PROVSIGN__DIGEST_ALGORITHM__SHA256;
}

static void dsse_key_done(struct dsse_key *k) {
        EVP_PKEY_free(k->pkey);
        OPENSSL_free(k->der);
}

static void dsse_key_info(Provsign__KeyInfo *ki, const struct dsse_key *k) {
        provsign__key_info__init(ki);
        ki->keyid = (char *) k->keyid;
        ki->principal = (char *) "ci-release";
        ki->generation = 2;
        ki->algorithm = (Provsign__KeyAlgorithm) k->algorithm;
        ki->state = PROVSIGN__KEY_STATE__ACTIVE;
        ki->public_key_der.data = k->der;
        ki->public_key_der.len = k->der_len;
}

/* The replies of one provsign_sign_dsse() call: the key by principal, the
 * signature (by signer, over digest) with a receipt of that digest, the
 * key by id. */
struct dsse_replies {
        Provsign__KeyInfo ki;
        Provsign__GetPublicKeyResponse gr;
        Provsign__Response key_resp;
        Provsign__SignResponse sr;
        Provsign__Response sign_resp;
        struct test_receipt receipt;
        uint8_t sig[256];
};

static void dsse_replies_set(struct dsse_replies *d, const struct dsse_key *k, const struct dsse_key *signer,
                             const uint8_t *digest, size_t digest_len) {
        struct test_entry e;
        size_t sig_len = sizeof d->sig;
        EVP_PKEY_CTX *ctx;

        dsse_key_info(&d->ki, k);
        pubkey_response_set(&d->key_resp, &d->gr, &d->ki);
        ctx = EVP_PKEY_CTX_new(signer->pkey, NULL);
        assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
        assert_int_equal(EVP_PKEY_sign(ctx, d->sig, &sig_len, digest, digest_len), 1);
        EVP_PKEY_CTX_free(ctx);
        sign_response_set(&d->sign_resp, &d->sr, k->keyid, "ci-release");
        d->sr.algorithm = (Provsign__KeyAlgorithm) k->algorithm;
        d->sr.signature.data = d->sig;
        d->sr.signature.len = sig_len;
        test_entry_default(&e, 5, k->keyid, "ci-release");
        e.digest_alg = k->dalg;
        e.digest = digest;
        e.digest_len = digest_len;
        test_receipt_make(&d->receipt, &fixture_log_key, 5, 7, &e);
        d->sr.receipt = &d->receipt.wire;
}

static void test_sign_dsse(void **state) {
        static const char type[] = "application/vnd.in-toto+json";
        static const char payload[] = "{\"_type\":\"https://in-toto.io/Statement/v1\",\"secret-ish\":\"stays here\"}";
        const struct provsign_annotation ann[] = { { "artifact:dist/a.tar", "sha256:00" } };
        uint8_t digest[PROTO_DSSE_MAX_DIGEST];
        struct proto_dsse_envelope *env = NULL;
        static struct dsse_replies d;
        struct dsse_key k;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;
        char *json = NULL;
        int n;

        for (int round = 0; round < 2; round++) {
                dsse_key_make(&k, round == 0 ? "P-256" : "P-384");
                n = proto_dsse_pae_digest(k.dalg, type, (const uint8_t *) payload, strlen(payload), digest);
                assert_int_equal(n, round == 0 ? 32 : 48);
                dsse_replies_set(&d, &k, &k, digest, (size_t) n);
                fake_init(&fa);
                fake_add(&fa, &d.key_resp);
                fake_add(&fa, &d.sign_resp);
                fake_add(&fa, &d.key_resp);
                fake_start(&fa, &conn);

                assert_int_equal(provsign_sign_dsse(conn, "ci-release", type, payload, strlen(payload), ann, 1, &json,
                                                    &sig),
                                 0);
                provsign_close(conn);
                fake_join(&fa);

                /* the agent saw a key query, a Sign of the PAE digest (with the
                 * key's digest algorithm, the type, the annotation, not the
                 * payload), a key query by id */
                assert_int_equal(fa.n_requests, 3);
                assert_string_equal(fa.requests[0]->get_public_key->principal, "ci-release");
                assert_int_equal(fa.requests[1]->body_case, PROVSIGN__REQUEST__BODY_SIGN);
                assert_int_equal(fa.requests[1]->sign->digest_algorithm, k.dalg);
                assert_int_equal(fa.requests[1]->sign->digest.len, (size_t) n);
                assert_memory_equal(fa.requests[1]->sign->digest.data, digest, (size_t) n);
                assert_string_equal(fa.requests[1]->sign->payload_type, type);
                assert_string_equal(fa.requests[1]->sign->annotations[0]->key, "artifact:dist/a.tar");
                assert_string_equal(fa.requests[2]->get_public_key->keyid, k.keyid);

                /* the envelope */
                assert_int_equal(proto_dsse_envelope_parse(json, strlen(json), &env), 0);
                assert_string_equal(env->payload_type, type);
                assert_int_equal(env->payload_len, strlen(payload));
                assert_memory_equal(env->payload, payload, env->payload_len);
                assert_int_equal(env->n_sigs, 1);
                assert_string_equal(env->sigs[0].keyid, k.keyid);
                assert_int_equal(env->sigs[0].sig_len, d.sr.signature.len);
                assert_memory_equal(env->sigs[0].sig, d.sig, d.sr.signature.len);
                assert_true(provsign_signature_has_receipt(sig));
                assert_string_equal(provsign_signature_keyid(sig), k.keyid);

                proto_dsse_envelope_free(env);
                provsign_signature_free(sig);
                free(json);
                fake_done(&fa);
                test_receipt_done(&d.receipt);
                dsse_key_done(&k);
        }
}

static void test_sign_dsse_bad(void **state) {
        static const char type[] = "text/plain";
        uint8_t digest[PROTO_DSSE_MAX_DIGEST];
        static struct dsse_replies d;
        struct dsse_key k, other;
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        provsign_signature *sig = NULL;
        char *json = NULL;
        int n;

        dsse_key_make(&k, "P-256");
        dsse_key_make(&other, "P-256");
        n = proto_dsse_pae_digest(k.dalg, type, (const uint8_t *) "x", 1, digest);

        /* a signature by another key than the one the agent names */
        dsse_replies_set(&d, &k, &other, digest, (size_t) n);
        fake_init(&fa);
        fake_add(&fa, &d.key_resp);
        fake_add(&fa, &d.sign_resp);
        fake_add(&fa, &d.key_resp);
        fake_start(&fa, &conn);
        assert_int_equal(provsign_sign_dsse(conn, "ci-release", type, "x", 1, NULL, 0, &json, &sig), -EPROTO);
        assert_null(json);
        assert_null(sig);
        provsign_close(conn);
        fake_join(&fa);
        fake_done(&fa);
        test_receipt_done(&d.receipt);

        /* a refusal of the key query still makes the Sign, whose refusal is
         * what the caller sees */
        fake_init(&fa);
        fake_add_refusal(&fa, PROVSIGN__STATUS__NOT_FOUND, "no such principal");
        fake_add_refusal(&fa, PROVSIGN__STATUS__PERMISSION_DENIED, "uid 1 may not sign for \"nope\"");
        fake_start(&fa, &conn);
        assert_int_equal(provsign_sign_dsse(conn, "nope", type, "x", 1, NULL, 0, &json, NULL),
                         PROVSIGN_PERMISSION_DENIED);
        assert_string_equal(provsign_last_message(conn), "uid 1 may not sign for \"nope\"");
        provsign_close(conn);
        fake_join(&fa);
        assert_int_equal(fa.n_requests, 2);
        assert_int_equal(fa.requests[1]->sign->digest_algorithm, PROVSIGN__DIGEST_ALGORITHM__SHA256);
        fake_done(&fa);

        /* arguments */
        struct fake_agent idle;
        fake_init(&idle);
        fake_start(&idle, &conn);
        assert_int_equal(provsign_sign_dsse(conn, "p", NULL, "x", 1, NULL, 0, &json, NULL), -EINVAL);
        assert_int_equal(provsign_sign_dsse(conn, "p", "", "x", 1, NULL, 0, &json, NULL), -EINVAL);
        assert_int_equal(provsign_sign_dsse(conn, "p", type, NULL, 1, NULL, 0, &json, NULL), -EINVAL);
        assert_int_equal(provsign_sign_dsse(conn, "p", type, "x", 1, NULL, 0, NULL, NULL), -EINVAL);
        assert_int_equal(provsign_sign_dsse(conn, "p", type, "x", PROVSIGN_DSSE_MAX_PAYLOAD + 1, NULL, 0, &json, NULL),
                         -EMSGSIZE);
        assert_int_equal(provsign_sign_dsse(NULL, "p", type, "x", 1, NULL, 0, &json, NULL), -EINVAL);
        provsign_close(conn);
        fake_join(&idle);
        assert_int_equal(idle.n_requests, 0);
        fake_done(&idle);

        dsse_key_done(&k);
        dsse_key_done(&other);
}

static void test_get_key_bundle(void **state) {
        static const char good[] = "{\"payloadType\":\"" PROVSIGN_KEY_BUNDLE_TYPE "\",\"payload\":\"e30=\","
                                   "\"signatures\":[{\"keyid\":\"00\",\"sig\":\"AQI=\"}]}";
        static const char *const bad[] = {
                "not json",
                "{\"payloadType\":\"text/plain\",\"payload\":\"e30=\",\"signatures\":[{\"sig\":\"AQI=\"}]}",
                "{\"payloadType\":\"" PROVSIGN_KEY_BUNDLE_TYPE "\",\"payload\":\"e30=\",\"signatures\":[]}",
        };
        Provsign__Response resp[1 + ELEMENTSOF(bad)];
        Provsign__GetKeyBundleResponse br[1 + ELEMENTSOF(bad)];
        struct fake_agent fa;
        provsign_conn *conn = NULL;
        char *env = NULL;

        fake_init(&fa);
        for (size_t i = 0; i <= ELEMENTSOF(bad); i++) {
                provsign__response__init(&resp[i]);
                provsign__get_key_bundle_response__init(&br[i]);
                br[i].envelope = (char *) (i == 0 ? good : bad[i - 1]);
                resp[i].body_case = PROVSIGN__RESPONSE__BODY_KEY_BUNDLE;
                resp[i].key_bundle = &br[i];
                fake_add(&fa, &resp[i]);
        }
        fake_start(&fa, &conn);
        assert_int_equal(provsign_get_key_bundle(conn, &env), 0);
        assert_string_equal(env, good);
        free(env);
        env = NULL;
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                assert_int_equal(provsign_get_key_bundle(conn, &env), -EPROTO);
                assert_null(env);
        }
        assert_int_equal(provsign_get_key_bundle(conn, NULL), -EINVAL);
        provsign_close(conn);
        fake_join(&fa);
        assert_int_equal(fa.requests[0]->body_case, PROVSIGN__REQUEST__BODY_GET_KEY_BUNDLE);
        fake_done(&fa);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_status_names),
                cmocka_unit_test(test_strerror),
                cmocka_unit_test(test_enum_names),
                cmocka_unit_test(test_default_socket),
                cmocka_unit_test(test_connect_errors),
                cmocka_unit_test(test_connect_listener),
                cmocka_unit_test(test_oversized_header),
                cmocka_unit_test(test_truncated),
                cmocka_unit_test(test_garbage),
                cmocka_unit_test(test_unknown_status),
                cmocka_unit_test(test_ok_without_body),
                cmocka_unit_test(test_refusal),
                cmocka_unit_test(test_every_refusal),
                cmocka_unit_test(test_max_frame),
                cmocka_unit_test(test_sign_ok),
                cmocka_unit_test(test_sign_bad_replies),
                cmocka_unit_test(test_sign_args),
                cmocka_unit_test(test_sign_too_big),
                cmocka_unit_test(test_sign_many_out_of_order),
                cmocka_unit_test(test_sign_many_in_order),
                cmocka_unit_test(test_sign_many_partial),
                cmocka_unit_test(test_sign_many_bad_ids),
                cmocka_unit_test(test_sign_many_refusal_before_ids),
                cmocka_unit_test(test_sign_many_refusal_stream),
                cmocka_unit_test(test_sign_many_reply_before_written),
                cmocka_unit_test(test_sign_many_timeout),
                cmocka_unit_test(test_sign_many_args),
                cmocka_unit_test(test_get_public_key),
                cmocka_unit_test(test_get_public_key_bad_replies),
                cmocka_unit_test(test_get_public_key_args),
                cmocka_unit_test(test_list_keys),
                cmocka_unit_test(test_status),
                cmocka_unit_test(test_pem_from_der),
                cmocka_unit_test(test_key_bundle_type),
                cmocka_unit_test(test_export_ranges),
                cmocka_unit_test(test_export_forged),
                cmocka_unit_test(test_export_filtered),
                cmocka_unit_test(test_sign_receipt),
                cmocka_unit_test(test_sign_receipt_bad),
                cmocka_unit_test(test_get_checkpoint),
                cmocka_unit_test(test_get_checkpoint_consistency),
                cmocka_unit_test(test_get_log_key),
                cmocka_unit_test(test_receipt_time),
                cmocka_unit_test(test_receipt_verify_ok),
                cmocka_unit_test(test_receipt_json_format),
                cmocka_unit_test(test_receipt_verify_tampered),
                cmocka_unit_test(test_receipt_verify_malformed),
                cmocka_unit_test(test_receipt_vectors),
                cmocka_unit_test(test_sign_dsse),
                cmocka_unit_test(test_sign_dsse_bad),
                cmocka_unit_test(test_get_key_bundle),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
