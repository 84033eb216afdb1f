/* keys/ against a real SoftHSM2 token through libp11: never mocked. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "keyid.h"
#include "keystore-internal.h" /* the module's function list, to pull the sessions away */
#include "keystore.h"
#include "provsign.pb-c.h"

#define MODULE "/usr/lib/softhsm/libsofthsm2.so"

static char tokdir[256];
static char pin[64];
static size_t pin_len;

static void make_token(const char *dir, const char *label) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "%s/tests/lib/make-token %s %s", getenv("SRCDIR") ? getenv("SRCDIR") : ".", dir,
                 label);
        assert_int_equal(system(cmd), 0);
}

/* use_token: a fresh token LABEL in dir (a mkdtemp template), made the
 * process's SoftHSM2 config; its PIN into pin_out (*ret_len bytes). Returns
 * the previous SOFTHSM2_CONF (NULL if none; caller frees and restores). */
static char *use_token(char *dir, const char *label, char *pin_out, size_t size, size_t *ret_len) {
        char p[300];
        assert_non_null(mkdtemp(dir));
        make_token(dir, label);
        const char *was = getenv("SOFTHSM2_CONF");
        char *old = was ? strdup(was) : NULL;
        snprintf(p, sizeof p, "%s/softhsm2.conf", dir);
        setenv("SOFTHSM2_CONF", p, 1);
        snprintf(p, sizeof p, "%s/pin", dir);
        FILE *f = fopen(p, "r");
        assert_non_null(f);
        memset(pin_out, 0, size);
        *ret_len = fread(pin_out, 1, size - 1, f);
        fclose(f);
        assert_true(*ret_len > 0);
        return old;
}

static void drop_token(const char *dir, char *old) {
        char cmd[300];
        setenv("SOFTHSM2_CONF", old, 1);
        free(old);
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        assert_int_equal(system(cmd), 0);
}

static int setup(void **state) {
        strcpy(tokdir, "/tmp/provsign-test-keys-XXXXXX");
        free(use_token(tokdir, "keys-test", pin, sizeof pin, &pin_len));
        return 0;
}

static int teardown(void **state) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tokdir);
        return system(cmd) == 0 ? 0 : -1;
}

/* Verifies sig over digest with the SPKI using plain OpenSSL (no token). */
static void verify(const keys_key *k, const uint8_t *digest, size_t dlen, const uint8_t *sig, size_t slen) {
        size_t spki_len;
        const uint8_t *spki = keys_key_spki(k, &spki_len);
        const uint8_t *p = spki;
        EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, (long) spki_len);
        assert_non_null(pub);
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);
        assert_non_null(ctx);
        assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
        if (keys_key_algorithm(k) == PROVSIGN__KEY_ALGORITHM__RSA_3072) {
                assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 1);
                assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()), 1);
        }
        assert_int_equal(EVP_PKEY_verify(ctx, sig, slen, digest, dlen), 1);
        EVP_PKEY_CTX_free(ctx);
        EVP_PKEY_free(pub);
}

static keys_store *open_store(void) {
        keys_store *s = NULL;
        char *err = NULL;
        int r = keys_store_open(MODULE, "keys-test", pin, pin_len, &s, &err);
        if (r < 0)
                fail_msg("open: %d %s", r, err ? err : "");
        free(err);
        return s;
}

static void test_wrong_pin(void **state) {
        keys_store *s = NULL;
        char *err = NULL;
        assert_int_equal(keys_store_open(MODULE, "keys-test", "nope", 4, &s, &err), -EACCES);
        assert_null(s);
        assert_string_equal(err, "wrong PIN for token \"keys-test\"");
        free(err);
}

static void test_missing_token(void **state) {
        keys_store *s = NULL;
        char *err = NULL;
        assert_int_equal(keys_store_open(MODULE, "no-such-token", pin, pin_len, &s, &err), -ENOENT);
        assert_non_null(strstr(err, "no token labelled \"no-such-token\""));
        free(err);
}

static void test_missing_module(void **state) {
        keys_store *s = NULL;
        char *err = NULL;
        assert_int_equal(keys_store_open("/nonexistent/libp11mod.so", "keys-test", pin, pin_len, &s, &err), -ENOENT);
        assert_non_null(strstr(err, "/nonexistent/libp11mod.so"));
        free(err);
}

/* keys_generate in its two steps (the agent's key generator): the pair
 * exists on the token but is no key of the store until it is inserted;
 * signing with the store's other keys goes on between the two. */
static void test_generate_two_steps(void **state) {
        keys_store *s = open_store();
        keys_key *other = NULL, *k = NULL;
        assert_int_equal(keys_generate(s, PROVSIGN__KEY_ALGORITHM__ECDSA_P256, "provsign/two/1", &other, NULL), 0);
        uint8_t *spki = NULL;
        size_t spki_len = 0;
        char *err = NULL;
        int r = keys_generate_pair(s, PROVSIGN__KEY_ALGORITHM__ECDSA_P384, "provsign/two/2", &spki, &spki_len, &err);
        if (r < 0)
                fail_msg("generate_pair: %d %s", r, err ? err : "");
        uint8_t id[32];
        proto_keyid_compute(spki, spki_len, id);
        assert_null(keys_store_find_id(s, id));
        assert_null(keys_store_find_label(s, "provsign/two/2"));
        uint8_t digest[48], sig[KEYS_MAX_SIGNATURE];
        size_t slen = 0;
        assert_int_equal(RAND_bytes(digest, sizeof digest), 1);
        assert_int_equal(keys_sign(s, other, digest, 32, sig, &slen), 0);
        assert_int_equal(keys_generate_insert(s, spki, spki_len, &k, &err), 0);
        assert_ptr_equal(keys_store_find_id(s, id), k);
        assert_string_equal(keys_key_label(k), "provsign/two/2");
        assert_int_equal(keys_key_algorithm(k), PROVSIGN__KEY_ALGORITHM__ECDSA_P384);
        assert_int_equal(keys_sign(s, k, digest, 48, sig, &slen), 0);
        verify(k, digest, 48, sig, slen);
        /* a label outside the store's is refused before the token is asked */
        assert_int_equal(keys_generate_pair(s, PROVSIGN__KEY_ALGORITHM__ECDSA_P256, "other/x/1", &spki, &spki_len, NULL),
                         -EINVAL);
        free(spki);
        keys_store_free(s);
}

static void generate_and_sign(int alg, const char *label, size_t dlen) {
        keys_store *s = open_store();
        keys_key *k = NULL;
        char *err = NULL;
        int r = keys_generate(s, alg, label, &k, &err);
        if (r < 0)
                fail_msg("generate: %d %s", r, err ? err : "");
        assert_string_equal(keys_key_label(k), label);
        assert_int_equal(keys_key_algorithm(k), alg);

        /* key id = SHA-256 of the DER SPKI, hex */
        size_t spki_len;
        const uint8_t *spki = keys_key_spki(k, &spki_len);
        char hex[65];
        proto_keyid_hex(spki, spki_len, hex);
        assert_string_equal(keys_key_id_hex(k), hex);
        assert_non_null(strstr(keys_key_pem(k), "-----BEGIN PUBLIC KEY-----"));

        uint8_t digest[48], sig[KEYS_MAX_SIGNATURE];
        size_t slen = 0;
        assert_int_equal(RAND_bytes(digest, sizeof digest), 1);
        assert_int_equal(keys_sign(s, k, digest, dlen, sig, &slen), 0);
        verify(k, digest, dlen, sig, slen);

        /* the wrong digest length is refused, not signed */
        assert_int_equal(keys_sign(s, k, digest, dlen == 32 ? 48 : 32, sig, &slen), -EINVAL);

        /* a duplicate label is refused */
        keys_key *k2 = NULL;
        assert_int_equal(keys_generate(s, alg, label, &k2, NULL), -EEXIST);

        char id[65];
        strcpy(id, keys_key_id_hex(k));
        keys_store_free(s);

        /* reopen: the key is found again by label and id, and still signs */
        s = open_store();
        k = keys_store_find_label(s, label);
        assert_non_null(k);
        assert_string_equal(keys_key_id_hex(k), id);
        assert_ptr_equal(keys_store_find_id(s, keys_key_id(k)), k);
        assert_int_equal(keys_sign(s, k, digest, dlen, sig, &slen), 0);
        verify(k, digest, dlen, sig, slen);
        keys_store_free(s);
        free(err);
}

static void test_p256(void **state) {
        generate_and_sign(PROVSIGN__KEY_ALGORITHM__ECDSA_P256, "provsign/test-p256/1", 32);
}
static void test_p384(void **state) {
        generate_and_sign(PROVSIGN__KEY_ALGORITHM__ECDSA_P384, "provsign/test-p384/1", 48);
}
static void test_rsa3072(void **state) {
        generate_and_sign(PROVSIGN__KEY_ALGORITHM__RSA_3072, "provsign/test-rsa/1", 32);
}

struct signer {
        keys_store *s;
        keys_key *k;
        int failures;
};

static void *sign_loop(void *arg) {
        struct signer *sg = arg;
        for (int i = 0; i < 200; i++) {
                uint8_t digest[32], sig[KEYS_MAX_SIGNATURE];
                size_t slen;
                RAND_bytes(digest, sizeof digest);
                if (keys_sign(sg->s, sg->k, digest, sizeof digest, sig, &slen) < 0) {
                        sg->failures++;
                        continue;
                }
                size_t spki_len;
                const uint8_t *spki = keys_key_spki(sg->k, &spki_len);
                const uint8_t *p = spki;
                EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, (long) spki_len);
                EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);
                if (EVP_PKEY_verify_init(ctx) != 1 || EVP_PKEY_verify(ctx, sig, slen, digest, sizeof digest) != 1)
                        sg->failures++;
                EVP_PKEY_CTX_free(ctx);
                EVP_PKEY_free(pub);
        }
        return NULL;
}

/* One store shared by 8 threads (one libp11 context per process), while a
 * ninth thread generates a key: handles stay valid, every signature verifies. */
static void test_concurrent(void **state) {
        keys_store *s = open_store();
        keys_key *k = NULL;
        assert_int_equal(keys_generate(s, PROVSIGN__KEY_ALGORITHM__ECDSA_P256, "provsign/conc/1", &k, NULL), 0);
        pthread_t t[8];
        struct signer sg[8];
        for (int i = 0; i < 8; i++) {
                sg[i] = (struct signer){ s, k, 0 };
                assert_int_equal(pthread_create(&t[i], NULL, sign_loop, &sg[i]), 0);
        }
        keys_key *k2 = NULL;
        assert_int_equal(keys_generate(s, PROVSIGN__KEY_ALGORITHM__ECDSA_P256, "provsign/conc/2", &k2, NULL), 0);
        for (int i = 0; i < 8; i++) {
                pthread_join(t[i], NULL);
                assert_int_equal(sg[i].failures, 0);
        }
        assert_ptr_not_equal(k, k2);
        keys_store_free(s);
}

/* An Ed25519 key anywhere on the token breaks libp11 0.4.12's enumeration:
 * the store says so instead of failing obscurely. */
static void test_eddsa_detected(void **state) {
        char dir[256] = "/tmp/provsign-test-ed-XXXXXX", cmd[1024], edpin[64];
        size_t n;
        char *old = use_token(dir, "ed-test", edpin, sizeof edpin, &n);
        snprintf(cmd, sizeof cmd,
                 "PROVSIGN_PIN=$(cat %s/pin) pkcs11-tool --module " MODULE " --token-label ed-test --login "
                 "--pin env:PROVSIGN_PIN --keypairgen --key-type EC:edwards25519 --label ed >/dev/null 2>&1",
                 dir);
        assert_int_equal(system(cmd), 0);
        keys_store *s = NULL;
        char *err = NULL;
        assert_int_equal(keys_store_open(MODULE, "ed-test", edpin, n, &s, &err), -ENOTSUP);
        assert_non_null(strstr(err, "Ed25519"));
        free(err);
        drop_token(dir, old);
}

/* Namespaces on a token of their own: the owner marker (created, matched,
 * refused), the first round's labels relabelled once into the namespace,
 * and a store that sees only its namespace. */
static keys_store *open_ns(const char *tok, const char *p, size_t plen, const char *ns, const char *owner, bool legacy,
                           int want, const char *want_msg) {
        keys_store *s = NULL;
        char *err = NULL;
        keys_open_options o = { .ns = ns, .owner = (const uint8_t *) owner, .owner_len = owner ? strlen(owner) : 0,
                                .adopt_legacy = legacy };
        int r = keys_store_open_ns(MODULE, tok, p, plen, &o, &s, &err);
        if (r != want)
                fail_msg("open_ns %s: %d (wanted %d) %s", ns, r, want, err ? err : "");
        if (want_msg)
                assert_non_null(err), assert_non_null(strstr(err, want_msg));
        free(err);
        return s;
}

static void test_namespaces(void **state) {
        char dir[256] = "/tmp/provsign-test-ns-XXXXXX", cmd[600], npin[64];
        size_t n;
        char *old = use_token(dir, "ns-test", npin, sizeof npin, &n);

        /* a first-round token: two keys and a log key without a namespace */
        keys_store *s = NULL;
        assert_int_equal(keys_store_open(MODULE, "ns-test", npin, n, &s, NULL), 0);
        keys_key *k1 = NULL, *k2 = NULL, *kl = NULL;
        assert_int_equal(keys_generate(s, PROVSIGN__KEY_ALGORITHM__ECDSA_P256, "provsign/rel/1", &k1, NULL), 0);
        assert_int_equal(keys_generate(s, PROVSIGN__KEY_ALGORITHM__ECDSA_P256, "provsign/rel/2", &k2, NULL), 0);
        assert_int_equal(keys_generate(s, PROVSIGN__KEY_ALGORITHM__ECDSA_P256, "provsign/log/1", &kl, NULL), 0);
        char id1[65], id2[65], idl[65];
        strcpy(id1, keys_key_id_hex(k1));
        strcpy(id2, keys_key_id_hex(k2));
        strcpy(idl, keys_key_id_hex(kl));
        keys_store_free(s);

        /* namespace A claims the token and adopts all three, once */
        s = open_ns("ns-test", npin, n, "host-a", "owner A", true, 0, NULL);
        assert_string_equal(keys_store_namespace(s), "host-a");
        assert_int_equal(keys_store_count(s), 3);
        assert_non_null(keys_store_find_label(s, "provsign/host-a/rel/1"));
        assert_non_null(keys_store_find_label(s, "provsign/host-a/rel/2"));
        assert_non_null(keys_store_find_label(s, "provsign/host-a/log/1"));
        assert_string_equal(keys_key_id_hex(keys_store_find_label(s, "provsign/host-a/rel/1")), id1);
        const char *rk, *rl;
        size_t relabelled = 0;
        for (; keys_store_relabelled(s, relabelled, &rk, &rl) == 0; relabelled++)
                assert_true(strcmp(rk, id1) == 0 ? strcmp(rl, "provsign/rel/1") == 0
                            : strcmp(rk, id2) == 0 ? strcmp(rl, "provsign/rel/2") == 0
                                                   : strcmp(rk, idl) == 0 && strcmp(rl, "provsign/log/1") == 0);
        assert_int_equal(relabelled, 3);
        /* its new keys: in its namespace; another namespace's label refused */
        keys_key *ka = NULL;
        assert_int_equal(keys_generate(s, PROVSIGN__KEY_ALGORITHM__ECDSA_P256, "provsign/host-a/rel/3", &ka, NULL), 0);
        assert_int_equal(keys_generate(s, PROVSIGN__KEY_ALGORITHM__ECDSA_P256, "provsign/host-b/rel/1", &ka, NULL),
                         -EINVAL);
        keys_store_free(s);

        /* the same owner again: accepted, nothing left to adopt */
        s = open_ns("ns-test", npin, n, "host-a", "owner A", true, 0, NULL);
        assert_int_equal(keys_store_count(s), 4);
        assert_int_equal(keys_store_relabelled(s, 0, &rk, &rl), -ENOENT);
        keys_store_free(s);
        /* another owner of namespace A: refused, quoting the marker */
        s = open_ns("ns-test", npin, n, "host-a", "owner X", true, -EEXIST, "provsign/host-a/owner says \"owner A\"");
        assert_null(s);

        /* namespace B sees none of A's keys, and its own only */
        s = open_ns("ns-test", npin, n, "host-b", "owner B", true, 0, NULL);
        assert_int_equal(keys_store_count(s), 0);
        keys_key *kb = NULL;
        assert_int_equal(keys_generate(s, PROVSIGN__KEY_ALGORITHM__ECDSA_P256, "provsign/host-b/rel/1", &kb, NULL), 0);
        assert_int_equal(keys_store_count(s), 1);
        /* B destroying its key leaves A's alone */
        assert_int_equal(keys_destroy(s, kb, NULL), 1);
        keys_store_free(s);
        s = open_ns("ns-test", npin, n, "host-a", "owner A", false, 0, NULL);
        assert_int_equal(keys_store_count(s), 4);
        keys_store_free(s);

        /* one marker per namespace, as pkcs11-tool sees it */
        snprintf(cmd, sizeof cmd,
                 "PROVSIGN_PIN=$(cat %s/pin) pkcs11-tool --module " MODULE " --token-label ns-test --login "
                 "--pin env:PROVSIGN_PIN --list-objects --type data 2>&1 | grep -c \"label: *'provsign/host-[ab]/owner'\" "
                 "| grep -qx 2",
                 dir);
        assert_int_equal(system(cmd), 0);
        drop_token(dir, old);
}

/* The token "goes away" under the store: every session of the process on
 * its slot closed behind libp11's back (C_CloseAllSessions, which also
 * ends the login). The next keys_sign re-opens the token, logs in again,
 * remaps the key and signs, with the same keys_key handle. */
static void test_recover_lost_sessions(void **state) {
        keys_store *s = open_store();
        keys_key *k = NULL;
        assert_int_equal(keys_generate(s, PROVSIGN__KEY_ALGORITHM__ECDSA_P256, "provsign/recover/1", &k, NULL), 0);
        uint8_t digest[32], sig[KEYS_MAX_SIGNATURE];
        size_t slen = 0;
        assert_int_equal(RAND_bytes(digest, sizeof digest), 1);
        assert_int_equal(keys_sign(s, k, digest, sizeof digest, sig, &slen), 0);
        unsigned reopens = 99;
        assert_int_equal(keys_store_health(s, &reopens), 0);
        assert_int_equal(reopens, 0);

        assert_int_equal(s->fn->C_CloseAllSessions(s->slot_id), CKR_OK);
        assert_int_equal(keys_sign(s, k, digest, sizeof digest, sig, &slen), 0);
        verify(k, digest, sizeof digest, sig, slen);
        assert_int_equal(keys_store_health(s, &reopens), 0);
        assert_int_equal(reopens, 1);
        assert_ptr_equal(keys_store_find_label(s, "provsign/recover/1"), k);

        /* and once more: a second outage is handled the same way */
        assert_int_equal(s->fn->C_CloseAllSessions(s->slot_id), CKR_OK);
        usleep(300 * 1000); /* past the re-open throttle */
        assert_int_equal(keys_sign(s, k, digest, sizeof digest, sig, &slen), 0);
        verify(k, digest, sizeof digest, sig, slen);
        assert_int_equal(keys_store_health(s, &reopens), 0);
        assert_int_equal(reopens, 2);
        keys_store_free(s);
}

/* Private keys whose public half the store cannot see: what another
 * agent's generation shows between C_GenerateKeyPair and setting CKA_ID
 * (the private half still has its temporary id), or a public object
 * deleted by hand. The store skips them and loads the others; libp11
 * 0.4.12's PKCS11_get_public_key crashed on them (NULL dereference),
 * which killed an agent starting while another generated keys. */
static void set_obj_id(keys_store *s, CK_OBJECT_CLASS cls, const char *label, const uint8_t *id, size_t id_len,
                       bool destroy_pub) {
        CK_SESSION_HANDLE sh;
        assert_int_equal(s->fn->C_OpenSession(s->slot_id, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &sh),
                         CKR_OK);
        CK_ATTRIBUTE tmpl[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_LABEL, (void *) label, strlen(label) } };
        CK_OBJECT_HANDLE obj;
        CK_ULONG found = 0;
        assert_int_equal(s->fn->C_FindObjectsInit(sh, tmpl, 2), CKR_OK);
        assert_int_equal(s->fn->C_FindObjects(sh, &obj, 1, &found), CKR_OK);
        assert_int_equal(s->fn->C_FindObjectsFinal(sh), CKR_OK);
        assert_int_equal(found, 1);
        if (destroy_pub) {
                assert_int_equal(s->fn->C_DestroyObject(sh, obj), CKR_OK);
        } else {
                CK_ATTRIBUTE set = { CKA_ID, (void *) id, id_len };
                assert_int_equal(s->fn->C_SetAttributeValue(sh, obj, &set, 1), CKR_OK);
        }
        assert_int_equal(s->fn->C_CloseSession(sh), CKR_OK);
}

static void set_priv_id(keys_store *s, const char *label, const uint8_t *id, size_t id_len, bool destroy_pub) {
        set_obj_id(s, destroy_pub ? CKO_PUBLIC_KEY : CKO_PRIVATE_KEY, label, id, id_len, destroy_pub);
}

/* The store of a token made by use_token (again: what an agent restarting
 * sees). */
static keys_store *store_again(const char *label, const char *hpin, size_t n) {
        keys_store *s = NULL;
        char *err = NULL;
        int r = keys_store_open(MODULE, label, hpin, n, &s, &err);
        if (r < 0)
                fail_msg("open: %d %s", r, err ? err : "");
        free(err);
        return s;
}

static void test_private_without_public(void **state) {
        char dir[256] = "/tmp/provsign-test-half-XXXXXX", hpin[64];
        size_t n;
        char *old = use_token(dir, "half-test", hpin, sizeof hpin, &n);
        keys_store *s = store_again("half-test", hpin, n);
        keys_key *k = NULL;
        assert_int_equal(keys_generate(s, PROVSIGN__KEY_ALGORITHM__ECDSA_P256, "provsign/whole/1", &k, NULL), 0);
        assert_int_equal(keys_generate(s, PROVSIGN__KEY_ALGORITHM__ECDSA_P256, "provsign/nopub/1", &k, NULL), 0);
        assert_int_equal(keys_generate(s, PROVSIGN__KEY_ALGORITHM__ECDSA_P384, "provsign/midgen/1", &k, NULL), 0);
        char whole_id[65];
        strcpy(whole_id, keys_key_id_hex(keys_store_find_label(s, "provsign/whole/1")));
        /* the public half of one deleted; another's private half given a
         * temporary id, as keys_raw_generate does before the key id */
        set_priv_id(s, "provsign/nopub/1", NULL, 0, true);
        uint8_t tmp_id[16];
        assert_int_equal(RAND_bytes(tmp_id, sizeof tmp_id), 1);
        set_priv_id(s, "provsign/midgen/1", tmp_id, sizeof tmp_id, false);
        keys_store_free(s);

        s = store_again("half-test", hpin, n);
        assert_int_equal(keys_store_count(s), 1);
        k = keys_store_find_label(s, "provsign/whole/1");
        assert_non_null(k);
        assert_string_equal(keys_key_id_hex(k), whole_id);
        assert_null(keys_store_find_label(s, "provsign/nopub/1"));
        assert_null(keys_store_find_label(s, "provsign/midgen/1"));
        uint8_t digest[32], sig[KEYS_MAX_SIGNATURE];
        size_t slen = 0;
        assert_int_equal(RAND_bytes(digest, sizeof digest), 1);
        assert_int_equal(keys_sign(s, k, digest, sizeof digest, sig, &slen), 0);
        verify(k, digest, sizeof digest, sig, slen);
        /* a generation refreshes the list the same way */
        keys_key *k2 = NULL;
        assert_int_equal(keys_generate(s, PROVSIGN__KEY_ALGORITHM__ECDSA_P256, "provsign/whole/2", &k2, NULL), 0);
        assert_int_equal(keys_store_count(s), 2);
        keys_store_free(s);
        drop_token(dir, old);
}

/* Other public objects carrying a key's CKA_ID (another namespace's
 * leftovers, a copy): the store still finds the key's own public half (the
 * one whose SHA-256 is the id), whichever the token lists first; it skipped
 * the key when a stranger came first. Eight strangers, so that one comes
 * before the key's own in any listing order but a rare one. */
#define STRANGERS 8
static void test_public_id_shared(void **state) {
        char dir[256] = "/tmp/provsign-test-dupid-XXXXXX", hpin[64];
        size_t n;
        char *old = use_token(dir, "dupid-test", hpin, sizeof hpin, &n);
        keys_store *s = store_again("dupid-test", hpin, n);
        keys_key *k = NULL;
        assert_int_equal(keys_generate(s, PROVSIGN__KEY_ALGORITHM__ECDSA_P256, "provsign/own/1", &k, NULL), 0);
        char own_id[65];
        strcpy(own_id, keys_key_id_hex(k));
        uint8_t id[32];
        for (size_t i = 0; i < sizeof id; i++)
                assert_int_equal(sscanf(own_id + 2 * i, "%2hhx", &id[i]), 1);
        for (int i = 0; i < STRANGERS; i++) {
                char label[32];
                snprintf(label, sizeof label, "provsign/stranger/%d", i + 1);
                assert_int_equal(keys_generate(s, PROVSIGN__KEY_ALGORITHM__ECDSA_P256, label, &k, NULL), 0);
                set_obj_id(s, CKO_PUBLIC_KEY, label, id, sizeof id, false);
        }
        keys_store_free(s);

        s = store_again("dupid-test", hpin, n);
        k = keys_store_find_label(s, "provsign/own/1");
        assert_non_null(k);
        assert_string_equal(keys_key_id_hex(k), own_id);
        /* the strangers' private halves have no public half of their own id */
        assert_int_equal(keys_store_count(s), 1);
        uint8_t digest[32], sig[KEYS_MAX_SIGNATURE];
        size_t slen = 0;
        assert_int_equal(RAND_bytes(digest, sizeof digest), 1);
        assert_int_equal(keys_sign(s, k, digest, sizeof digest, sig, &slen), 0);
        verify(k, digest, sizeof digest, sig, slen);
        keys_store_free(s);
        drop_token(dir, old);
}

static void test_label_parse(void **state) {
        char owner[65];
        uint32_t gen;
        assert_int_equal(keys_label_parse("provsign/ci-a/ci-release/12", "ci-a", owner, sizeof owner, &gen), 0);
        assert_string_equal(owner, "ci-release");
        assert_int_equal(gen, 12);
        assert_int_equal(keys_label_parse("provsign/host.example.com/log/1", "host.example.com", owner, sizeof owner,
                                          &gen), 0);
        assert_string_equal(owner, "log");
        assert_int_equal(gen, 1);
        static const char *const not_ours[] = {
                /* another namespace, a prefix of it, or one it is a prefix of */
                "provsign/ci-b/ci-release/1", "provsign/ci-ab/ci-release/1", "provsign/ci/ci-release/1",
                /* the owner marker; malformed generations and owners */
                "provsign/ci-a/owner", "provsign/ci-a/x/0", "provsign/ci-a/x/01", "provsign/ci-a/x/1a",
                "provsign/ci-a//1", "provsign/ci-a/x/", "provsign/ci-a/x/y/1", "other/ci-a/x/1",
                "provsign/ci-a/x/9999999999",
        };
        for (size_t i = 0; i < sizeof not_ours / sizeof not_ours[0]; i++)
                if (keys_label_parse(not_ours[i], "ci-a", owner, sizeof owner, &gen) != -EINVAL)
                        fail_msg("%s parsed as a label of ci-a", not_ours[i]);
        /* a first-round label is in no namespace, even one named like its principal */
        assert_int_equal(keys_label_parse("provsign/ci-release/1", "ci-release", owner, sizeof owner, &gen), -EINVAL);
        assert_int_equal(keys_label_parse("provsign/ci-a/x/999999999", "ci-a", owner, sizeof owner, &gen), 0);
        assert_int_equal(gen, 999999999u);
        /* a bad namespace matches nothing */
        assert_int_equal(keys_label_parse("provsign/a/b/x/1", "a/b", owner, sizeof owner, &gen), -EINVAL);
        assert_int_equal(keys_label_parse("provsign//x/1", "", owner, sizeof owner, &gen), -EINVAL);
        char small[3];
        assert_int_equal(keys_label_parse("provsign/n/abc/1", "n", small, sizeof small, &gen), -EINVAL);

        /* the first round's labels */
        assert_int_equal(keys_label_parse_legacy("provsign/ci-release/12", owner, sizeof owner, &gen), 0);
        assert_string_equal(owner, "ci-release");
        assert_int_equal(gen, 12);
        assert_int_equal(keys_label_parse_legacy("provsign/log/1", owner, sizeof owner, &gen), 0);
        assert_string_equal(owner, "log");
        assert_int_equal(keys_label_parse_legacy("provsign/ci-a/ci-release/1", owner, sizeof owner, &gen), -EINVAL);
        assert_int_equal(keys_label_parse_legacy("provsign/ci-a/owner", owner, sizeof owner, &gen), -EINVAL);
        assert_int_equal(keys_label_parse_legacy("provsign//1", owner, sizeof owner, &gen), -EINVAL);
        assert_int_equal(keys_label_parse_legacy("provsign/x/0", owner, sizeof owner, &gen), -EINVAL);
}

static void test_label_format(void **state) {
        char label[KEYS_LABEL_MAX], owner[65];
        uint32_t gen;
        assert_int_equal(keys_label_format(label, sizeof label, "ci-a", "ci-release", 3), 0);
        assert_string_equal(label, "provsign/ci-a/ci-release/3");
        assert_int_equal(keys_label_parse(label, "ci-a", owner, sizeof owner, &gen), 0);
        assert_string_equal(owner, "ci-release");
        assert_int_equal(gen, 3);
        /* the longest: a 64-byte namespace and a 64-byte principal fit */
        char ns[65], p[65];
        memset(ns, 'n', 64);
        ns[64] = '\0';
        memset(p, 'p', 64);
        p[64] = '\0';
        assert_int_equal(keys_label_format(label, sizeof label, ns, p, 999999999u), 0);
        assert_int_equal(keys_label_parse(label, ns, owner, sizeof owner, &gen), 0);
        assert_string_equal(owner, p);
        assert_int_equal(gen, 999999999u);
        assert_int_equal(keys_label_format(label, 20, "ci-a", "ci-release", 3), -ENAMETOOLONG);
        assert_int_equal(keys_label_format(label, sizeof label, "ci/a", "x", 1), -EINVAL);
        assert_int_equal(keys_label_format(label, sizeof label, "", "x", 1), -EINVAL);
        assert_int_equal(keys_label_format(label, sizeof label, "ci-a", "", 1), -EINVAL);
        assert_int_equal(keys_label_format(label, sizeof label, "ci-a", "a/b", 1), -EINVAL);
        assert_int_equal(keys_label_format(label, sizeof label, "ci-a", "x", 0), -EINVAL);
        assert_int_equal(keys_owner_label(label, sizeof label, "ci-a"), 0);
        assert_string_equal(label, "provsign/ci-a/owner");

        /* namespaces: 1..64 of A-Z a-z 0-9 . _ -; the default is the origin's host part */
        assert_true(keys_namespace_valid("Build-host_01.example.com"));
        assert_true(keys_namespace_valid(ns));
        memset(ns, 'n', 65);
        char longer[66];
        memcpy(longer, ns, 65);
        longer[65] = '\0';
        assert_false(keys_namespace_valid(longer));
        assert_false(keys_namespace_valid(""));
        assert_false(keys_namespace_valid("a b"));
        assert_false(keys_namespace_valid("a:1"));
        assert_false(keys_namespace_valid("a/b"));
        char d[KEYS_NAMESPACE_MAX + 1];
        assert_int_equal(keys_namespace_from_origin("ci1.example.com/provsign", d), 0);
        assert_string_equal(d, "ci1.example.com");
        assert_int_equal(keys_namespace_from_origin("ci1.example.com/a/b", d), 0);
        assert_string_equal(d, "ci1.example.com");
        assert_int_equal(keys_namespace_from_origin("bare", d), 0);
        assert_string_equal(d, "bare");
        assert_int_equal(keys_namespace_from_origin("/provsign", d), -EINVAL);
        assert_int_equal(keys_namespace_from_origin("host:8443/provsign", d), -EINVAL);
        assert_int_equal(keys_namespace_from_origin(longer, d), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_label_parse),   cmocka_unit_test(test_label_format),
                cmocka_unit_test(test_wrong_pin),
                cmocka_unit_test(test_missing_token), cmocka_unit_test(test_missing_module),
                cmocka_unit_test(test_p256),          cmocka_unit_test(test_p384),
                cmocka_unit_test(test_rsa3072),       cmocka_unit_test(test_concurrent),
                cmocka_unit_test(test_generate_two_steps),
                cmocka_unit_test(test_eddsa_detected), cmocka_unit_test(test_recover_lost_sessions),
                cmocka_unit_test(test_namespaces),    cmocka_unit_test(test_private_without_public), cmocka_unit_test(test_public_id_shared),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
