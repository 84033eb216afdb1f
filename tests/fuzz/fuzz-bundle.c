/* Fuzzes key bundle payloads (client/keyrule.h proto_bundle_parse): the
 * JSON inside the agent's GetKeyBundle envelope, which `provsign verify`
 * and `provsign key bundle` read from a file (proto/keybundle.h).
 *
 * Invariants:
 *   - 0 or -EBADMSG (never -ENOMEM here); on failure *ret is untouched and
 *     detail names the problem;
 *   - on success: version 1 was given, a non-empty origin, a valid
 *     log_keyid; every key has a 64-hex key id that is the SHA-256 of the
 *     DER of its PEM public key (recomputed here with OpenSSL's PEM and
 *     DER calls and proto_keyid_hex, not keyrule.c's code path), a
 *     non-empty principal without NUL, generation >= 1, a known algorithm
 *     and state, a creation time; a revoked key has its revoked and
 *     compromised_since times; no key id twice;
 *   - every time formats back to RFC 3339 and parses to the same value.
 * Seeds: tests/fuzz/corpus/bundle/ (tests/fuzz/gen-corpus.py): the shape the
 * agent writes (active, retired, revoked, destroyed; P-256, P-384, RSA-3072)
 * and each way a bundle can be wrong. */

#include <errno.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "keyid.h"
#include "keyrule.h"
#include "names.h"
#include "provsign.pb-c.h"
#include "timefmt.h"

#include "fuzz.h"

static void check_time(int64_t us, bool nullable) {
        char buf[PROTO_TIME_LEN + 1];
        int64_t back;

        if (us == PROTO_BUNDLE_NO_TIME) {
                FUZZ_CHECK(nullable);
                return;
        }
        FUZZ_CHECK(proto_time_format_us(us, buf));
        FUZZ_CHECK(proto_time_parse_us(buf, &back) == 0 && back == us);
}

/* The key id of a PEM public key, independently of client/keyrule.c. */
static void check_keyid(const struct proto_bundle_key *k) {
        char id[PROTO_KEYID_HEX_LEN + 1];
        unsigned char *der = NULL;
        BIO *bio = BIO_new_mem_buf(k->pem, -1);
        EVP_PKEY *pkey;
        int n;

        FUZZ_CHECK(bio);
        pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        FUZZ_CHECK(pkey);
        n = i2d_PUBKEY(pkey, &der);
        FUZZ_CHECK(n > 0);
        proto_keyid_hex(der, (size_t) n, id);
        FUZZ_CHECK(strcmp(id, k->keyid) == 0);
        OPENSSL_free(der);
        EVP_PKEY_free(pkey);
        BIO_free(bio);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct proto_bundle *b = (struct proto_bundle *) 1;
        char detail[256] = "";
        int r = proto_bundle_parse(data, size, &b, detail, sizeof detail);

        if (r < 0) {
                FUZZ_CHECK(r == -EBADMSG);
                FUZZ_CHECK(b == (struct proto_bundle *) 1);
                FUZZ_CHECK(detail[0] != '\0');
                return 0;
        }
        FUZZ_CHECK(r == 0 && b);
        FUZZ_CHECK(b->origin && b->origin[0]);
        FUZZ_CHECK(proto_keyid_hex_valid(b->log_keyid));
        check_time(b->issued_us, false);
        FUZZ_CHECK(b->n_keys <= PROTO_BUNDLE_MAX_KEYS);
        for (size_t i = 0; i < b->n_keys; i++) {
                const struct proto_bundle_key *k = &b->keys[i];
                FUZZ_CHECK(proto_keyid_hex_valid(k->keyid));
                FUZZ_CHECK(k->principal && k->principal[0]);
                FUZZ_CHECK(k->generation >= 1);
                FUZZ_CHECK(proto_key_algorithm_from_name(proto_key_algorithm_name(k->algorithm)) == k->algorithm);
                FUZZ_CHECK(k->state >= PROVSIGN__KEY_STATE__ACTIVE && k->state <= PROVSIGN__KEY_STATE__DESTROYED);
                check_time(k->created_us, false);
                check_time(k->retired_us, true);
                check_time(k->revoked_us, true);
                check_time(k->compromised_since_us, true);
                check_time(k->destroyed_us, true);
                if (k->state == PROVSIGN__KEY_STATE__REVOKED)
                        FUZZ_CHECK(k->revoked_us != PROTO_BUNDLE_NO_TIME && k->compromised_since_us != PROTO_BUNDLE_NO_TIME);
                FUZZ_CHECK(!k->reason || k->reason[0]);
                FUZZ_CHECK(k->pem);
                check_keyid(k);
                for (size_t j = 0; j < i; j++)
                        FUZZ_CHECK(strcmp(b->keys[j].keyid, k->keyid) != 0);
        }
        proto_bundle_free(b);
        return 0;
}
