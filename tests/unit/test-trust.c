/* The trust file (client/trust.c, docs/fleet.md "Trust file"): keys made
 * here with OpenSSL and written as proto/note.c's verifier keys; comments,
 * blanks and CRLF accepted; every malformed line named by its number; the
 * lookups by origin, key id, checkpoint note and bundle signer. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "base64.h"
#include "keyid.h"
#include "note.h"
#include "trust.h"

/* A new key's DER SPKI: EC on curve (NULL: RSA-2048). */
static uint8_t *new_spki(const char *curve, size_t *len) {
        EVP_PKEY *k = curve ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve)
                            : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
        uint8_t *der = NULL;
        int n;

        assert_non_null(k);
        n = i2d_PUBKEY(k, &der);
        assert_true(n > 0);
        EVP_PKEY_free(k);
        *len = (size_t) n;
        return der;
}

__attribute__((noinline)) static char *verifier_key(const char *origin, const uint8_t *spki, size_t len) {
        char *s = NULL;

        assert_int_equal(proto_note_verifier_key(origin, spki, len, &s), 0);
        return s;
}

static void expect_bad(const char *text, size_t want_line, const char *want_msg) {
        struct client_trust t = {};
        char msg[256] = "";
        size_t line = 0;

        assert_int_equal(client_trust_parse(text, strlen(text), &t, &line, msg, sizeof msg), -EBADMSG);
        if (line != want_line || !strstr(msg, want_msg))
                fail_msg("line %zu \"%s\", wanted line %zu \"%s\" for:\n%s", line, msg, want_line, want_msg, text);
        assert_int_equal(t.n, 0);
        assert_null(t.e);
}

static void test_trust_parse(void **state) {
        size_t la, lb;
        uint8_t *a = new_spki("P-256", &la), *b = new_spki("P-384", &lb);
        char *ka = verifier_key("ci1.example.com/provsign", a, la),
             *kb = verifier_key("ci2.example.com/provsign", b, lb);
        char *text = NULL, msg[256] = "", id[PROTO_KEYID_HEX_LEN + 1];
        struct client_trust t = {};
        size_t line = 99;
        (void) state;

        assert_true(asprintf(&text, "# fleet\n\n  %s \r\n\t# another\n%s", ka, kb) > 0);
        assert_int_equal(client_trust_parse(text, strlen(text), &t, &line, msg, sizeof msg), 0);
        assert_int_equal(line, 0);
        assert_int_equal(t.n, 2);
        assert_string_equal(t.e[0].origin, "ci1.example.com/provsign");
        assert_string_equal(t.e[1].origin, "ci2.example.com/provsign");
        proto_keyid_hex(b, lb, id);
        assert_string_equal(t.e[1].keyid, id);
        assert_non_null(strstr(t.e[0].pem, "-----BEGIN PUBLIC KEY-----"));
        assert_ptr_equal(client_trust_by_origin(&t, "ci2.example.com/provsign"), &t.e[1]);
        assert_ptr_equal(client_trust_by_keyid(&t, id), &t.e[1]);
        assert_null(client_trust_by_origin(&t, "ci3.example.com/provsign"));
        assert_null(client_trust_by_origin(&t, "ci1.example.com"));
        assert_null(client_trust_by_keyid(&t, "00"));

        /* the checkpoint's first line chooses the entry */
        const struct client_trust_entry *e = NULL;
        char *origin = NULL;
        const char *note = "ci1.example.com/provsign\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n"
                           "\xe2\x80\x94 ci1.example.com/provsign AAAAAAAAAAA=\n";
        assert_int_equal(client_trust_for_checkpoint(&t, note, &e, &origin), 0);
        assert_ptr_equal(e, &t.e[0]);
        assert_string_equal(origin, "ci1.example.com/provsign");
        free(origin);
        assert_int_equal(client_trust_for_checkpoint(&t, "not a note", &e, &origin), -EBADMSG);
        assert_int_equal(client_trust_for_checkpoint(&t, NULL, &e, &origin), -EBADMSG);

        /* the bundle's signer chooses the entry */
        char *bundle = NULL;
        assert_true(asprintf(&bundle,
                             "{\"payloadType\":\"x\",\"payload\":\"e30=\",\"signatures\":["
                             "{\"keyid\":\"%064d\",\"sig\":\"AA==\"},{\"keyid\":\"%s\",\"sig\":\"AA==\"}]}",
                             0, id) > 0);
        assert_int_equal(client_trust_for_bundle(&t, bundle, strlen(bundle), &e), 0);
        assert_ptr_equal(e, &t.e[1]);
        assert_int_equal(client_trust_for_bundle(&t, "[]", 2, &e), -EBADMSG);
        free(bundle);

        client_trust_done(&t);
        assert_null(t.e);
        free(text);
        free(ka);
        free(kb);
        OPENSSL_free(a);
        OPENSSL_free(b);
}

static void test_trust_negative(void **state) {
        size_t la, lr;
        uint8_t *a = new_spki("P-256", &la), *rsa = new_spki(NULL, &lr);
        char *ka = verifier_key("ci1.example.com/provsign", a, la), *text = NULL;
        (void) state;

        expect_bad("", 0, "no log key listed");
        expect_bad("# only a comment\n\n", 2, "no log key listed");
        expect_bad("not-a-key\n", 1, "not a note verifier key");
        expect_bad("+abcd+AAAA\n", 1, "not a note verifier key");

        /* the second line malformed, the first good */
        assert_true(asprintf(&text, "%s\nci2+00+AgAA\n", ka) > 0);
        expect_bad(text, 2, "");
        free(text);

        /* a hash that does not match (a hex digit changed) */
        text = strdup(ka);
        char *h = strchr(text, '+') + 1;
        *h = *h == '0' ? '1' : '0';
        expect_bad(text, 1, "the key hash does not match the key");
        free(text);

        /* the same key under another origin is valid (the hash covers the
         * key only): the origin listed is the one it is trusted under */
        assert_true(asprintf(&text, "ci9.example.com/provsign%s", strchr(ka, '+')) > 0);
        {
                struct client_trust t = {};
                char msg[128];
                size_t line;
                assert_int_equal(client_trust_parse(text, strlen(text), &t, &line, msg, sizeof msg), 0);
                assert_string_equal(t.e[0].origin, "ci9.example.com/provsign");
                client_trust_done(&t);
        }
        free(text);

        /* the key as uppercase hex hash: not the canonical form */
        text = strdup(ka);
        for (char *p = strchr(text, '+') + 1; *p != '+'; p++)
                if (*p >= 'a' && *p <= 'f')
                        *p = (char) (*p - 'a' + 'A');
        if (strcmp(text, ka) != 0)
                expect_bad(text, 1, "");
        free(text);

        /* a key type byte other than 0x02 */
        {
                uint8_t typed[512];
                typed[0] = 0x01;
                memcpy(typed + 1, a, la);
                char *b64 = proto_base64_encode(typed, la + 1);
                assert_true(asprintf(&text, "o+%.8s+%s\n", strchr(ka, '+') + 1, b64) > 0);
                expect_bad(text, 1, "not base64 of an ECDSA (0x02) note key");
                free(text);
                free(b64);
        }
        /* an RSA key under type 0x02 */
        {
                uint8_t *typed = malloc(lr + 1);
                typed[0] = 0x02;
                memcpy(typed + 1, rsa, lr);
                char *b64 = proto_base64_encode(typed, lr + 1);
                assert_true(asprintf(&text, "o+00000000+%s\n", b64) > 0);
                expect_bad(text, 1, "not a valid origin and note key");
                free(text);
                free(b64);
                free(typed);
        }
        /* an origin listed twice */
        assert_true(asprintf(&text, "%s\n# again\n%s\n", ka, ka) > 0);
        expect_bad(text, 3, "listed twice");
        free(text);

        /* a NUL in a line, a line too long */
        {
                char nul[] = "abc+00000000+\0AAAA\n";
                struct client_trust t = {};
                char msg[128];
                size_t line;
                assert_int_equal(client_trust_parse(nul, sizeof nul - 1, &t, &line, msg, sizeof msg), -EBADMSG);
                assert_int_equal(line, 1);
                char *longl = malloc(10000);
                memset(longl, 'a', 9999);
                longl[9999] = '\0';
                expect_bad(longl, 1, "too long");
                free(longl);
        }
        free(ka);
        OPENSSL_free(a);
        OPENSSL_free(rsa);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_trust_parse),
                cmocka_unit_test(test_trust_negative),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
