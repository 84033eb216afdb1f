/* proto/note: C2SP signed notes and tlog checkpoints.
 *
 * The independent vectors (tests/vectors/tlog.json, produced outside this
 * project) give a checkpoint for a 13-leaf tree signed with Ed25519 and with
 * ECDSA P-256 (type 0x02). Notes we assemble are also checked by the openssl
 * CLI from the note text alone, so the tests do not only agree with
 * themselves. Every parser gets its negative cases. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "hex.h"
#include "note.h"

#define VEC_ORIGIN "example.com/signing-agent/audit-log"

typedef struct vectors {
        char *note;
        char *pem;
        uint8_t *spki;
        size_t spki_len;
        uint8_t root13[32];
} vectors;

static vectors vec;

static int load_vectors(void **state) {
        const char *srcdir = getenv("SRCDIR");
        char path[4096];
        json_error_t err;
        json_t *j, *roots;
        const char *root13;
        size_t n;

        snprintf(path, sizeof path, "%s/tests/vectors/tlog.json", srcdir ? srcdir : ".");
        j = json_load_file(path, 0, &err);
        if (!j) {
                fprintf(stderr, "%s: %s\n", path, err.text);
                return -1;
        }
        vec.note = strdup(json_string_value(json_object_get(j, "checkpoint")));
        vec.pem = strdup(json_string_value(json_object_get(j, "ecdsa_public_key_pem")));
        roots = json_object_get(j, "roots_hex");
        root13 = json_string_value(json_object_get(roots, "13"));
        if (!vec.note || !vec.pem || !root13 || proto_hex_decode(root13, vec.root13, 32, &n) < 0 || n != 32) {
                json_decref(j);
                return -1;
        }
        json_decref(j);

        BIO *bio = BIO_new_mem_buf(vec.pem, -1);
        EVP_PKEY *pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        unsigned char *der = NULL;
        int der_len = pkey ? i2d_PUBKEY(pkey, &der) : -1;
        BIO_free(bio);
        EVP_PKEY_free(pkey);
        if (der_len <= 0)
                return -1;
        vec.spki = malloc((size_t) der_len);
        memcpy(vec.spki, der, (size_t) der_len);
        vec.spki_len = (size_t) der_len;
        OPENSSL_free(der);
        return 0;
}

static int free_vectors(void **state) {
        free(vec.note);
        free(vec.pem);
        free(vec.spki);
        return 0;
}

/* A fresh P-256 key and its DER SPKI (caller frees both). */
static EVP_PKEY *gen_p256(uint8_t **ret_spki, size_t *ret_len) {
        EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        unsigned char *der = NULL;
        int n;

        assert_non_null(k);
        n = i2d_PUBKEY(k, &der);
        assert_true(n > 0);
        *ret_spki = malloc((size_t) n);
        assert_non_null(*ret_spki);
        memcpy(*ret_spki, der, (size_t) n);
        *ret_len = (size_t) n;
        OPENSSL_free(der);
        return k;
}

/* What the agent does with the token: sign SHA-256(body), DER ECDSA. */
static void sign_body(EVP_PKEY *k, const char *body, uint8_t **ret_sig, size_t *ret_len) {
        uint8_t digest[SHA256_DIGEST_LENGTH];
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k, NULL);
        size_t n = 0;

        SHA256((const uint8_t *) body, strlen(body), digest);
        assert_non_null(ctx);
        assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
        assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()), 1);
        assert_int_equal(EVP_PKEY_sign(ctx, NULL, &n, digest, sizeof digest), 1);
        *ret_sig = malloc(n);
        assert_non_null(*ret_sig);
        assert_int_equal(EVP_PKEY_sign(ctx, *ret_sig, &n, digest, sizeof digest), 1);
        *ret_len = n;
        EVP_PKEY_CTX_free(ctx);
}

/* body signed by k, in a line carrying key hash kh_spki's hash. */
static char *make_note(EVP_PKEY *k, const uint8_t *kh_spki, size_t kh_len, const char *body, const char *name) {
        uint8_t kh[4], *sig;
        size_t sig_len;
        char *note = NULL;

        assert_int_equal(proto_note_key_hash(kh_spki, kh_len, kh), 0);
        sign_body(k, body, &sig, &sig_len);
        assert_int_equal(proto_note_assemble(body, name, kh, sig, sig_len, &note), 0);
        free(sig);
        return note;
}

/* s with the first occurrence of from replaced by to (caller frees). */
static char *replace(const char *s, const char *from, const char *to) {
        const char *at = strstr(s, from);
        size_t a, f = strlen(from), t = strlen(to);
        char *r;

        assert_non_null(at);
        a = (size_t) (at - s);
        r = malloc(strlen(s) - f + t + 1);
        assert_non_null(r);
        memcpy(r, s, a);
        memcpy(r + a, to, t);
        strcpy(r + a + t, at + f);
        return r;
}

static int verify_str(const char *note, const char *name, const uint8_t *spki, size_t spki_len) {
        char *body = NULL;
        int r = proto_note_verify(note, strlen(note), name, spki, spki_len, &body);

        assert_true(r == 0 ? body != NULL : body == NULL);
        free(body);
        return r;
}

static void test_vector_verifies(void **state) {
        char *body = NULL;
        proto_note *n = NULL;

        assert_int_equal(proto_note_verify(vec.note, strlen(vec.note), VEC_ORIGIN, vec.spki, vec.spki_len, &body), 0);
        assert_string_equal(body, VEC_ORIGIN "\n13\nlqWoftesYODBs9vY1oIn7jfilxqSadt+k6KgLO0/cWA=\n");
        free(body);
        body = NULL;
        assert_int_equal(proto_note_verify_pem(vec.note, strlen(vec.note), VEC_ORIGIN, vec.pem, &body), 0);
        assert_non_null(body);
        free(body);

        /* Two lines, same name: the Ed25519 one (68 bytes) and ours (4 + DER). */
        assert_int_equal(proto_note_split(vec.note, strlen(vec.note), &n), 0);
        assert_int_equal(n->n_sigs, 2);
        assert_int_equal(n->sigs[0].sig_len, 64);
        assert_int_equal(n->sigs[0].name_len, strlen(VEC_ORIGIN));
        assert_memory_equal(n->sigs[0].name, VEC_ORIGIN, strlen(VEC_ORIGIN));
        assert_memory_equal(n->sigs[0].key_hash, "\xb6\x69\x8a\x6f", 4);
        assert_memory_equal(n->sigs[1].key_hash, "\xd1\x43\x0e\x05", 4);
        assert_int_equal(n->sigs[1].sig[0], 0x30); /* DER SEQUENCE */
        assert_int_equal(n->text_len, strlen(VEC_ORIGIN) + 4 + 45);
        proto_note_free(n);
        proto_note_free(NULL);
}

static void test_vector_checkpoint(void **state) {
        char *body = NULL, *origin = NULL;
        uint64_t size = 0;
        uint8_t root[32];

        assert_int_equal(proto_note_verify(vec.note, strlen(vec.note), VEC_ORIGIN, vec.spki, vec.spki_len, &body), 0);
        assert_int_equal(proto_checkpoint_parse(body, strlen(body), &origin, &size, root), 0);
        assert_string_equal(origin, VEC_ORIGIN);
        assert_int_equal(size, 13);
        assert_memory_equal(root, vec.root13, 32);

        /* and formatting the same values gives the same text byte for byte */
        char *again = NULL;
        assert_int_equal(proto_checkpoint_format(origin, size, root, &again), 0);
        assert_string_equal(again, body);
        free(again);
        free(origin);
        free(body);
}

static void test_vector_key_hash_and_verifier_key(void **state) {
        uint8_t kh[4], *typed;
        char *vkey = NULL, *b64;
        proto_note *n = NULL;
        char hex[9], want[512];

        assert_int_equal(proto_note_key_hash(vec.spki, vec.spki_len, kh), 0);
        assert_int_equal(proto_note_split(vec.note, strlen(vec.note), &n), 0);
        /* the hash the independent signer put in its line */
        assert_memory_equal(kh, n->sigs[1].key_hash, 4);
        proto_hex_encode(n->sigs[1].key_hash, 4, hex);
        assert_string_equal(hex, "d1430e05");
        proto_note_free(n);

        assert_int_equal(proto_note_verifier_key(VEC_ORIGIN, vec.spki, vec.spki_len, &vkey), 0);
        typed = malloc(vec.spki_len + 1);
        b64 = malloc(2 * vec.spki_len + 8);
        typed[0] = 0x02;
        memcpy(typed + 1, vec.spki, vec.spki_len);
        EVP_EncodeBlock((unsigned char *) b64, typed, (int) vec.spki_len + 1);
        snprintf(want, sizeof want, "%s+%s+%s", VEC_ORIGIN, hex, b64);
        assert_string_equal(vkey, want);
        free(typed);
        free(b64);
        free(vkey);

        assert_int_equal(proto_note_verifier_key("", vec.spki, vec.spki_len, &vkey), -EINVAL);
        assert_int_equal(proto_note_verifier_key("a b", vec.spki, vec.spki_len, &vkey), -EINVAL);
        assert_int_equal(proto_note_verifier_key("a+b", vec.spki, vec.spki_len, &vkey), -EINVAL);
        assert_int_equal(proto_note_verifier_key(VEC_ORIGIN, vec.spki, vec.spki_len - 1, &vkey), -EINVAL);
        assert_int_equal(proto_note_key_hash(vec.spki, 0, kh), -EINVAL);
}

static void test_vector_unknown_keys(void **state) {
        uint8_t *other;
        size_t other_len;
        EVP_PKEY *k = gen_p256(&other, &other_len);

        /* a key whose hash matches no line (the Ed25519 line is ignored) */
        assert_int_equal(verify_str(vec.note, VEC_ORIGIN, other, other_len), -ENOKEY);
        /* the right key under another name */
        assert_int_equal(verify_str(vec.note, "example.com/other", vec.spki, vec.spki_len), -ENOKEY);
        /* an invalid key name is the caller's error */
        assert_int_equal(verify_str(vec.note, "bad name", vec.spki, vec.spki_len), -EINVAL);
        free(other);
        EVP_PKEY_free(k);
}

static void test_vector_tampered(void **state) {
        static const struct {
                const char *from, *to;
                int want;
        } cases[] = {
                { "13\n", "14\n", -EKEYREJECTED },                          /* size */
                { "example.com/signing", "example.org/signing", -EKEYREJECTED }, /* origin */
                { "lqWo", "lqWp", -EKEYREJECTED },                          /* one root byte */
                { "=\n\n", "=\n", -EBADMSG },                               /* no blank line */
                { "\n\xe2\x80\x94 example.com/signing-agent/audit-log 0UMO",
                  "\n- example.com/signing-agent/audit-log 0UMO", -EBADMSG }, /* em dash → "-" */
                { "M70=\n", "M70\n", -EBADMSG },                            /* base64 cut by one */
                { "VM70=\n", "\n", -EBADMSG },                              /* cut to a bad length */
                { "Eg7oVM70=\n", "EM70=\n", -EKEYREJECTED },                /* 3 bytes cut, canonical */
                { "M70=\n", "M71=\n", -EBADMSG },                           /* non-canonical base64 */
                { "audit-log 0UMO", "audit-log  0UMO", -EBADMSG },          /* two spaces */
                { "=\n\n", "=\n\r\n", -EBADMSG },                           /* a control character */
        };

        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                char *t = replace(vec.note, cases[i].from, cases[i].to);
                assert_int_equal(verify_str(t, VEC_ORIGIN, vec.spki, vec.spki_len), cases[i].want);
                free(t);
        }

        /* Lost final newline: the last line is incomplete. */
        assert_int_equal(proto_note_verify(vec.note, strlen(vec.note) - 1, VEC_ORIGIN, vec.spki, vec.spki_len,
                                           &(char *){ NULL }),
                         -EBADMSG);
}

/* Our own note: round trip, then the openssl CLI checks it from the note text
 * alone (its own base64 decoder, its own SHA-256 of the SPKI). */
static void test_own_note_openssl_cli(void **state) {
        uint8_t root[32], *spki, back_root[32];
        size_t spki_len;
        EVP_PKEY *k = gen_p256(&spki, &spki_len);
        char *body, *note, *got = NULL, *origin = NULL;
        uint64_t size = 0;
        char dir[] = "/tmp/test-note-XXXXXX", path[256], cmd[2048];

        for (size_t i = 0; i < sizeof root; i++)
                root[i] = (uint8_t) (0xa0 + i);
        assert_int_equal(proto_checkpoint_format("provsign.test/log", 18446744073709551615u, root, &body), 0);
        note = make_note(k, spki, spki_len, body, "provsign.test/log");

        assert_int_equal(proto_note_verify(note, strlen(note), "provsign.test/log", spki, spki_len, &got), 0);
        assert_string_equal(got, body);
        assert_int_equal(proto_checkpoint_parse(got, strlen(got), &origin, &size, back_root), 0);
        assert_string_equal(origin, "provsign.test/log");
        assert_true(size == UINT64_MAX);
        assert_memory_equal(back_root, root, 32);
        free(got);
        free(origin);

        /* Split the note text by hand: body up to the last blank line,
         * base64 after the last space of the last line. */
        size_t len = strlen(note), sep = 0;
        for (size_t i = len - 1; i > 0; i--)
                if (note[i - 1] == '\n' && note[i] == '\n') {
                        sep = i;
                        break;
                }
        assert_true(sep > 0);
        const char *b64 = strrchr(note, ' ') + 1;

        assert_non_null(mkdtemp(dir));
        FILE *f;
        snprintf(path, sizeof path, "%s/body.txt", dir);
        assert_non_null(f = fopen(path, "w"));
        assert_int_equal(fwrite(note, 1, sep, f), sep);
        fclose(f);
        snprintf(path, sizeof path, "%s/bad.txt", dir);
        assert_non_null(f = fopen(path, "w"));
        assert_int_equal(fwrite(note, 1, sep - 1, f), sep - 1); /* final newline lost */
        fclose(f);
        snprintf(path, sizeof path, "%s/sig.b64", dir);
        assert_non_null(f = fopen(path, "w"));
        assert_int_equal(fwrite(b64, 1, strlen(b64) - 1, f), strlen(b64) - 1);
        fclose(f);
        snprintf(path, sizeof path, "%s/pub.pem", dir);
        BIO *bio = BIO_new_file(path, "w");
        assert_non_null(bio);
        assert_int_equal(PEM_write_bio_PUBKEY(bio, k), 1);
        BIO_free(bio);

        snprintf(cmd, sizeof cmd,
                 "cd '%s' && openssl base64 -d -A -in sig.b64 -out sig.bin && tail -c +5 sig.bin > sig.der"
                 " && openssl dgst -sha256 -verify pub.pem -signature sig.der body.txt >/dev/null"
                 " && openssl pkey -pubin -in pub.pem -outform DER -out pub.der"
                 " && openssl dgst -sha256 -binary -out pub.sha pub.der"
                 " && head -c 4 pub.sha > kh.want && head -c 4 sig.bin > kh.got && cmp -s kh.want kh.got",
                 dir);
        assert_int_equal(system(cmd), 0);
        /* the check is not vacuous: the text without its final newline fails */
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && openssl dgst -sha256 -verify pub.pem -signature sig.der bad.txt >/dev/null 2>&1", dir);
        assert_true(system(cmd) != 0);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);

        free(note);
        free(body);
        free(spki);
        EVP_PKEY_free(k);
}

static void test_own_note_tampered(void **state) {
        uint8_t root[32] = { 1, 2, 3 }, *spki_a, *spki_b;
        size_t len_a, len_b;
        EVP_PKEY *a = gen_p256(&spki_a, &len_a), *b = gen_p256(&spki_b, &len_b);
        char *body, *note, *t;

        assert_int_equal(proto_checkpoint_format("o.example/log", 7, root, &body), 0);
        note = make_note(a, spki_a, len_a, body, "o.example/log");
        assert_int_equal(verify_str(note, "o.example/log", spki_a, len_a), 0);

        t = replace(note, "\n7\n", "\n8\n");
        assert_int_equal(verify_str(t, "o.example/log", spki_a, len_a), -EKEYREJECTED);
        free(t);
        t = replace(note, "o.example/log\n", "p.example/log\n");
        assert_int_equal(verify_str(t, "o.example/log", spki_a, len_a), -EKEYREJECTED);
        free(t);
        t = replace(note, "\n\n", "\n");
        assert_int_equal(verify_str(t, "o.example/log", spki_a, len_a), -EBADMSG);
        free(t);
        t = replace(note, "\xe2\x80\x94 ", "- ");
        assert_int_equal(verify_str(t, "o.example/log", spki_a, len_a), -EBADMSG);
        free(t);
        t = strdup(note);
        strcpy(t + strlen(t) - 3, "\n"); /* drop two base64 characters */
        assert_int_equal(verify_str(t, "o.example/log", spki_a, len_a), -EBADMSG);
        free(t);

        /* B's signature in a line claiming A's key hash: rejected. */
        char *swapped = make_note(b, spki_a, len_a, body, "o.example/log");
        assert_int_equal(verify_str(swapped, "o.example/log", spki_a, len_a), -EKEYREJECTED);
        /* B's signature under B's own hash: not A's line at all. */
        char *foreign = make_note(b, spki_b, len_b, body, "o.example/log");
        assert_int_equal(verify_str(foreign, "o.example/log", spki_a, len_a), -ENOKEY);
        assert_int_equal(verify_str(foreign, "o.example/log", spki_b, len_b), 0);

        /* Two lines for A, one good, one bad: a known key's bad signature
         * rejects the note (signed-note "Signatures"). Good + foreign: fine. */
        const char *good_line = strstr(note, "\n\n") + 2, *bad_line = strstr(swapped, "\n\n") + 2,
                   *foreign_line = strstr(foreign, "\n\n") + 2;
        char both[4096];
        snprintf(both, sizeof both, "%s\n%s%s", body, good_line, bad_line);
        assert_int_equal(verify_str(both, "o.example/log", spki_a, len_a), -EKEYREJECTED);
        snprintf(both, sizeof both, "%s\n%s%s", body, foreign_line, good_line);
        assert_int_equal(verify_str(both, "o.example/log", spki_a, len_a), 0);

        free(swapped);
        free(foreign);
        free(note);
        free(body);
        free(spki_a);
        free(spki_b);
        EVP_PKEY_free(a);
        EVP_PKEY_free(b);
}

static void test_verify_key_errors(void **state) {
        EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
        EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        EVP_PKEY *k256k1 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
        EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
        EVP_PKEY *keys[] = { rsa, ed, k256k1 };
        char *body = NULL;

        for (size_t i = 0; i < 3; i++) {
                unsigned char *der = NULL;
                int n;
                assert_non_null(keys[i]);
                n = i2d_PUBKEY(keys[i], &der);
                assert_true(n > 0);
                assert_int_equal(verify_str(vec.note, VEC_ORIGIN, der, (size_t) n), -EINVAL);
                OPENSSL_free(der);
                EVP_PKEY_free(keys[i]);
        }
        /* P-384 is allowed by signed-note; here it simply matches no line. */
        unsigned char *der = NULL;
        int n = i2d_PUBKEY(p384, &der);
        assert_int_equal(verify_str(vec.note, VEC_ORIGIN, der, (size_t) n), -ENOKEY);
        OPENSSL_free(der);
        EVP_PKEY_free(p384);

        assert_int_equal(proto_note_verify_pem(vec.note, strlen(vec.note), VEC_ORIGIN, "not a pem", &body), -EINVAL);
        assert_int_equal(verify_str(vec.note, VEC_ORIGIN, (const uint8_t *) "\x30\x00", 2), -EINVAL);
        /* trailing bytes after the SPKI */
        uint8_t *longer = malloc(vec.spki_len + 1);
        memcpy(longer, vec.spki, vec.spki_len);
        longer[vec.spki_len] = 0;
        assert_int_equal(verify_str(vec.note, VEC_ORIGIN, longer, vec.spki_len + 1), -EINVAL);
        free(longer);
        assert_null(body);
}

static void expect_split(const char *note, int want) {
        proto_note *n = NULL;
        int r = proto_note_split(note, strlen(note), &n);

        if (r != want)
                fail_msg("split of \"%s\": %d, want %d", note, r, want);
        assert_true(r == 0 ? n != NULL : n == NULL);
        proto_note_free(n);
}

#define EMDASH "\xe2\x80\x94"

static void test_split_format(void **state) {
        expect_split("a\n\n" EMDASH " k AAAAAAA=\n", 0);                       /* 5 bytes */
        expect_split("a\n\n" EMDASH " k AAAAAA==\n", -EBADMSG);                /* 4 bytes: no signature */
        expect_split("a\n\n\n" EMDASH " k AAAAAAA=\n", 0);                     /* text may end in a blank line */
        expect_split("a\n\nb\n\n" EMDASH " k AAAAAAA=\n", 0);                  /* and contain one */
        expect_split("", -EBADMSG);
        expect_split("\n", -EBADMSG);
        expect_split("\n\n", -EBADMSG);
        expect_split("a\n\n", -EBADMSG);                                       /* no signature lines */
        expect_split("a\n" EMDASH " k AAAAAAA=\n", -EBADMSG);                  /* no blank line */
        expect_split("a\n\n" EMDASH " k AAAAAAA=", -EBADMSG);                  /* no final newline */
        expect_split("a\n\n- k AAAAAAA=\n", -EBADMSG);                         /* hyphen */
        expect_split("a\n\n" EMDASH "k AAAAAAA=\n", -EBADMSG);                 /* no space */
        expect_split("a\n\n" EMDASH "  AAAAAAA=\n", -EBADMSG);                 /* empty name */
        expect_split("a\n\n" EMDASH " k+1 AAAAAAA=\n", -EBADMSG);              /* '+' in name */
        expect_split("a\n\n" EMDASH " k\xc2\xa0x AAAAAAA=\n", -EBADMSG);       /* NBSP in name */
        expect_split("a\n\n" EMDASH " k\n", -EBADMSG);                         /* no signature */
        expect_split("a\n\n" EMDASH " k \n", -EBADMSG);                        /* empty base64 */
        expect_split("a\n\n" EMDASH " k AAAAAAA= \n", -EBADMSG);               /* trailing space */
        expect_split("a\n\n" EMDASH " k AAAAAAA\n", -EBADMSG);                 /* unpadded */
        expect_split("a\n\n" EMDASH " k AAAAAAB=\n", -EBADMSG);                /* non-zero pad bits */
        expect_split("a\n\n" EMDASH " k AAAA=AA=\n", -EBADMSG);                /* '=' inside */
        expect_split("a\n\n" EMDASH " k AAAAAA-_\n", -EBADMSG);                /* URL alphabet */
        expect_split("a\n\n" EMDASH " k A===\n", -EBADMSG);
        expect_split("a\n\n" EMDASH " k AAAAAAA=\n\n", -EBADMSG);              /* blank after */
        expect_split("a\n\n" EMDASH " k AAAAAAA=\n" EMDASH " k\n", -EBADMSG);  /* second line bad */
        expect_split("a\tb\n\n" EMDASH " k AAAAAAA=\n", -EBADMSG);             /* control character */
        expect_split("a\xff\n\n" EMDASH " k AAAAAAA=\n", -EBADMSG);            /* not UTF-8 */
        expect_split("a\xc0\xa0\n\n" EMDASH " k AAAAAAA=\n", -EBADMSG);        /* overlong */
        expect_split("a\xed\xa0\x80\n\n" EMDASH " k AAAAAAA=\n", -EBADMSG);    /* surrogate */
        expect_split("a\xe2\x80\n\n" EMDASH " k AAAAAAA=\n", -EBADMSG);        /* cut sequence */
        expect_split("\xc3\xa8\n\n" EMDASH " \xc3\xa8 AAAAAAA=\n", 0);         /* UTF-8 is fine */

        /* an embedded NUL is a control character */
        const char nul[] = "a\0b\n\n" EMDASH " k AAAAAAA=\n";
        proto_note *n = NULL;
        assert_int_equal(proto_note_split(nul, sizeof nul - 1, &n), -EBADMSG);
}

static void test_split_limits(void **state) {
        static const char line[] = EMDASH " k AAAAAAA=\n";
        char *note = malloc(PROTO_NOTE_MAX_SIZE + 2);
        proto_note *n = NULL;

        strcpy(note, "a\n\n");
        for (size_t i = 0; i < PROTO_NOTE_MAX_SIGS; i++)
                strcat(note, line);
        assert_int_equal(proto_note_split(note, strlen(note), &n), 0);
        assert_int_equal(n->n_sigs, PROTO_NOTE_MAX_SIGS);
        proto_note_free(n);
        n = NULL;
        strcat(note, line);
        assert_int_equal(proto_note_split(note, strlen(note), &n), -EMSGSIZE);

        /* exactly the size limit is accepted, one more byte is not */
        size_t tail = strlen("\n\n") + sizeof line - 1;
        memset(note, 'x', PROTO_NOTE_MAX_SIZE - tail);
        strcpy(note + PROTO_NOTE_MAX_SIZE - tail, "\n\n");
        strcat(note, line);
        assert_int_equal(strlen(note), PROTO_NOTE_MAX_SIZE);
        assert_int_equal(proto_note_split(note, strlen(note), &n), 0);
        proto_note_free(n);
        n = NULL;
        memset(note, 'x', PROTO_NOTE_MAX_SIZE + 1 - tail);
        strcpy(note + PROTO_NOTE_MAX_SIZE + 1 - tail, "\n\n");
        strcat(note, line);
        assert_int_equal(proto_note_split(note, strlen(note), &n), -EMSGSIZE);
        assert_null(n);
        free(note);
}

static void expect_parse(const char *body, int want) {
        char *origin = NULL;
        uint64_t size = 0;
        uint8_t root[32];
        int r = proto_checkpoint_parse(body, strlen(body), &origin, &size, root);

        if (r != want)
                fail_msg("parse of \"%s\": %d, want %d", body, r, want);
        assert_true(r == 0 ? origin != NULL : origin == NULL);
        free(origin);
}

#define H32 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

static void test_checkpoint_parse(void **state) {
        char *origin = NULL;
        uint64_t size = 0;
        uint8_t root[32];

        expect_parse("o\n0\n" H32 "\n", 0);
        expect_parse("o\n1\n" H32 "\n", 0);
        expect_parse("o\n18446744073709551615\n" H32 "\n", 0);
        expect_parse("o\n1\n" H32 "\next one\next two\n", 0);            /* extensions ignored */
        expect_parse("o\n1\n" H32 "\n\n", -EBADMSG);                      /* empty extension line */
        expect_parse("o\n1\n" H32 "\nx\n\n", -EBADMSG);
        expect_parse("o\n1\n" H32, -EBADMSG);                             /* no final newline */
        expect_parse("o\n1\n", -EBADMSG);                                 /* two lines */
        expect_parse("", -EBADMSG);
        expect_parse("\n1\n" H32 "\n", -EBADMSG);                         /* empty origin */
        expect_parse("o\n\n" H32 "\n", -EBADMSG);                         /* empty size */
        expect_parse("o\n00\n" H32 "\n", -EBADMSG);                       /* leading zero */
        expect_parse("o\n013\n" H32 "\n", -EBADMSG);
        expect_parse("o\n+1\n" H32 "\n", -EBADMSG);
        expect_parse("o\n-1\n" H32 "\n", -EBADMSG);
        expect_parse("o\n 1\n" H32 "\n", -EBADMSG);
        expect_parse("o\n1 \n" H32 "\n", -EBADMSG);
        expect_parse("o\n0x1\n" H32 "\n", -EBADMSG);
        expect_parse("o\n18446744073709551616\n" H32 "\n", -EBADMSG);     /* u64 overflow */
        expect_parse("o\n99999999999999999999\n" H32 "\n", -EBADMSG);
        expect_parse("o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n", -EBADMSG); /* 31 bytes */
        expect_parse("o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", -EBADMSG); /* 33 bytes */
        expect_parse("o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", -EBADMSG); /* 35 */
        expect_parse("o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=\n", -EBADMSG); /* pad bits */
        expect_parse("o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", -EBADMSG);  /* unpadded */
        expect_parse("o\n1\n" H32 " \n", -EBADMSG);
        expect_parse("o\r\n1\n" H32 "\n", -EBADMSG);                      /* control character */

        /* The parser reads exactly len bytes: no NUL needed, none looked for. */
        const char *b = "o\n5\n" H32 "\ntrailing junk not passed";
        assert_int_equal(proto_checkpoint_parse(b, strlen(b) - strlen("trailing junk not passed"), &origin, &size,
                                                root),
                         0);
        assert_string_equal(origin, "o");
        assert_int_equal(size, 5);
        free(origin);

        char *big = malloc(PROTO_NOTE_MAX_SIZE + 2);
        memset(big, 'o', PROTO_NOTE_MAX_SIZE + 1);
        big[PROTO_NOTE_MAX_SIZE + 1] = '\0';
        origin = NULL;
        assert_int_equal(proto_checkpoint_parse(big, PROTO_NOTE_MAX_SIZE + 1, &origin, &size, root), -EMSGSIZE);
        assert_null(origin);
        free(big);
}

static void test_checkpoint_format(void **state) {
        uint8_t root[32] = { 0 };
        char *body = (char *) "untouched";

        assert_int_equal(proto_checkpoint_format("example.com/log", 0, root, &body), 0);
        assert_string_equal(body, "example.com/log\n0\n" H32 "\n");
        free(body);
        body = (char *) "untouched";
        assert_int_equal(proto_checkpoint_format("", 1, root, &body), -EINVAL);
        assert_int_equal(proto_checkpoint_format("a\nb", 1, root, &body), -EINVAL);
        assert_int_equal(proto_checkpoint_format("a\tb", 1, root, &body), -EINVAL);
        assert_int_equal(proto_checkpoint_format("a\xff", 1, root, &body), -EINVAL);
        assert_string_equal(body, "untouched");
}

static void test_assemble_errors(void **state) {
        const uint8_t kh[4] = { 1, 2, 3, 4 }, sig[] = { 0x30, 0x00 };
        char *note = NULL;
        uint8_t *huge = calloc(1, PROTO_NOTE_MAX_SIZE);

        assert_int_equal(proto_note_assemble("b\n", "k", kh, sig, sizeof sig, &note), 0);
        assert_string_equal(note, "b\n\n" EMDASH " k AQIDBDAA\n");
        free(note);
        note = NULL;
        assert_int_equal(proto_note_assemble("", "k", kh, sig, sizeof sig, &note), -EINVAL);
        assert_int_equal(proto_note_assemble("b", "k", kh, sig, sizeof sig, &note), -EINVAL);
        assert_int_equal(proto_note_assemble("b\x01\n", "k", kh, sig, sizeof sig, &note), -EINVAL);
        assert_int_equal(proto_note_assemble("b\n", "", kh, sig, sizeof sig, &note), -EINVAL);
        assert_int_equal(proto_note_assemble("b\n", "k k", kh, sig, sizeof sig, &note), -EINVAL);
        assert_int_equal(proto_note_assemble("b\n", "k+", kh, sig, sizeof sig, &note), -EINVAL);
        assert_int_equal(proto_note_assemble("b\n", "k\n", kh, sig, sizeof sig, &note), -EINVAL);
        assert_int_equal(proto_note_assemble("b\n", "k", kh, sig, 0, &note), -EINVAL);
        assert_int_equal(proto_note_assemble("b\n", "k", kh, huge, PROTO_NOTE_MAX_SIZE, &note), -EMSGSIZE);
        assert_null(note);
        free(huge);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_vector_verifies),
                cmocka_unit_test(test_vector_checkpoint),
                cmocka_unit_test(test_vector_key_hash_and_verifier_key),
                cmocka_unit_test(test_vector_unknown_keys),
                cmocka_unit_test(test_vector_tampered),
                cmocka_unit_test(test_own_note_openssl_cli),
                cmocka_unit_test(test_own_note_tampered),
                cmocka_unit_test(test_verify_key_errors),
                cmocka_unit_test(test_split_format),
                cmocka_unit_test(test_split_limits),
                cmocka_unit_test(test_checkpoint_parse),
                cmocka_unit_test(test_checkpoint_format),
                cmocka_unit_test(test_assemble_errors),
        };
        return cmocka_run_group_tests(tests, load_vectors, free_vectors);
}
