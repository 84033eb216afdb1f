/* proto/dsse: PAE bytes against vectors written by hand from the DSSE spec
 * (protocol.md), PAE digests (computed with coreutils sha256sum/sha384sum),
 * envelope build/parse round trip with a real ECDSA signature, and the
 * parser's negative cases. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "dsse.h"
#include "hex.h"
#include "provsign.pb-c.h"

/* The example of DSSE protocol.md: "http://example.com/HelloWorld" is 29
 * bytes, "hello world" 11. */
static const char hello_type[] = "http://example.com/HelloWorld";
static const char hello_pae[] = "DSSEv1 29 http://example.com/HelloWorld 11 hello world";

static void test_pae_vector(void **state) {
        uint8_t *pae;
        size_t len;

        assert_int_equal(proto_dsse_pae(hello_type, (const uint8_t *) "hello world", 11, &pae, &len), 0);
        assert_int_equal(len, strlen(hello_pae));
        assert_memory_equal(pae, hello_pae, len);
        free(pae);

        /* in-toto's media type is 28 bytes; an empty body gives "0 " and
         * nothing after the last space */
        assert_int_equal(proto_dsse_pae("application/vnd.in-toto+json", NULL, 0, &pae, &len), 0);
        assert_int_equal(len, strlen("DSSEv1 28 application/vnd.in-toto+json 0 "));
        assert_memory_equal(pae, "DSSEv1 28 application/vnd.in-toto+json 0 ", len);
        free(pae);

        /* body bytes are copied as they are, NUL and spaces included */
        assert_int_equal(proto_dsse_pae("t", (const uint8_t *) "a\0 b", 4, &pae, &len), 0);
        assert_int_equal(len, 17);
        assert_memory_equal(pae, "DSSEv1 1 t 4 a\0 b", 17);
        free(pae);
}

static void test_pae_errors(void **state) {
        char big[PROTO_DSSE_MAX_TYPE + 2];
        uint8_t *pae = NULL, d[PROTO_DSSE_MAX_DIGEST];
        size_t len;

        memset(big, 'x', sizeof big - 1);
        big[sizeof big - 1] = '\0';
        assert_int_equal(proto_dsse_pae(big, NULL, 0, &pae, &len), -EINVAL);
        assert_int_equal(proto_dsse_pae(NULL, NULL, 0, &pae, &len), -EINVAL);
        assert_int_equal(proto_dsse_pae("t", NULL, 3, &pae, &len), -EINVAL);
        assert_int_equal(proto_dsse_pae("t", (const uint8_t *) "", PROTO_DSSE_MAX_PAYLOAD + 1, &pae, &len),
                         -EMSGSIZE);
        assert_null(pae);
        big[PROTO_DSSE_MAX_TYPE] = '\0'; /* exactly the limit is fine */
        assert_int_equal(proto_dsse_pae(big, NULL, 0, &pae, &len), 0);
        free(pae);
        assert_int_equal(proto_dsse_pae_digest(0, "t", NULL, 0, d), -EINVAL);
        assert_int_equal(proto_dsse_pae_digest(99, "t", NULL, 0, d), -EINVAL);
}

static void check_digest(int dalg, const char *type, const char *body, const char *want_hex) {
        uint8_t d[PROTO_DSSE_MAX_DIGEST];
        char hex[2 * PROTO_DSSE_MAX_DIGEST + 1];
        int n;

        n = proto_dsse_pae_digest(dalg, type, (const uint8_t *) body, strlen(body), d);
        assert_int_equal(n, (int) strlen(want_hex) / 2);
        proto_hex_encode(d, (size_t) n, hex);
        assert_string_equal(hex, want_hex);
}

static void test_pae_digest(void **state) {
        /* printf '%s' 'DSSEv1 29 http://example.com/HelloWorld 11 hello world' | sha256sum (and sha384sum) */
        check_digest(PROVSIGN__DIGEST_ALGORITHM__SHA256, hello_type, "hello world",
                     "217751fac2c4f14edb2c9297fbc34abcb016ba88e74757e875ec4ac16fb6b6a1");
        check_digest(PROVSIGN__DIGEST_ALGORITHM__SHA384, hello_type, "hello world",
                     "ab123a541ded5841f9159586b002c4413378e4a32b387dcfb0e968c3f94ffa06"
                     "760ec721f6e969c5b6dc15e8adcaacaa");
        /* printf '%s' 'DSSEv1 28 application/vnd.in-toto+json 0 ' | sha256sum */
        check_digest(PROVSIGN__DIGEST_ALGORITHM__SHA256, "application/vnd.in-toto+json", "",
                     "15db12ed81f5bfe1644f170893d0110a8f3a51c25951fc491a0c5e660a1a333b");
}

/* Format an envelope signed by a fresh P-256 key, parse it back, verify
 * the signature over the PAE digest with OpenSSL. */
static void test_envelope_roundtrip(void **state) {
        const char *type = "application/vnd.in-toto+json";
        const char *body = "{\"_type\":\"https://in-toto.io/Statement/v1\"}";
        uint8_t digest[PROTO_DSSE_MAX_DIGEST], sig[256];
        struct proto_dsse_envelope *e = NULL;
        EVP_PKEY *key = EVP_EC_gen("P-256");
        EVP_PKEY_CTX *ctx;
        size_t sig_len = sizeof sig;
        char *json;
        int n;

        assert_non_null(key);
        n = proto_dsse_pae_digest(PROVSIGN__DIGEST_ALGORITHM__SHA256, type, (const uint8_t *) body, strlen(body),
                                  digest);
        assert_int_equal(n, 32);
        ctx = EVP_PKEY_CTX_new(key, NULL);
        assert_non_null(ctx);
        assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
        assert_int_equal(EVP_PKEY_sign(ctx, sig, &sig_len, digest, 32), 1);
        EVP_PKEY_CTX_free(ctx);

        struct proto_dsse_sig s = { .keyid = (char *) "abc123", .sig = sig, .sig_len = sig_len };
        assert_int_equal(
                proto_dsse_envelope_format(type, (const uint8_t *) body, strlen(body), &s, 1, &json), 0);
        /* key order as written: payloadType, payload, signatures */
        assert_true(strncmp(json, "{\"payloadType\":\"application/vnd.in-toto+json\",\"payload\":\"", 56) == 0);
        assert_non_null(strstr(json, "\"signatures\":[{\"keyid\":\"abc123\",\"sig\":\""));

        assert_int_equal(proto_dsse_envelope_parse(json, strlen(json), &e), 0);
        assert_string_equal(e->payload_type, type);
        assert_int_equal(e->payload_len, strlen(body));
        assert_memory_equal(e->payload, body, e->payload_len);
        assert_int_equal(e->n_sigs, 1);
        assert_string_equal(e->sigs[0].keyid, "abc123");
        assert_int_equal(e->sigs[0].sig_len, sig_len);

        uint8_t d2[PROTO_DSSE_MAX_DIGEST];
        assert_int_equal(proto_dsse_pae_digest(PROVSIGN__DIGEST_ALGORITHM__SHA256, e->payload_type, e->payload,
                                               e->payload_len, d2),
                         32);
        ctx = EVP_PKEY_CTX_new(key, NULL);
        assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
        assert_int_equal(EVP_PKEY_verify(ctx, e->sigs[0].sig, e->sigs[0].sig_len, d2, 32), 1);
        /* the signature does not hold for another type with the same body */
        assert_int_equal(proto_dsse_pae_digest(PROVSIGN__DIGEST_ALGORITHM__SHA256, "application/json", e->payload,
                                               e->payload_len, d2),
                         32);
        assert_int_not_equal(EVP_PKEY_verify(ctx, e->sigs[0].sig, e->sigs[0].sig_len, d2, 32), 1);
        EVP_PKEY_CTX_free(ctx);
        EVP_PKEY_free(key);
        proto_dsse_envelope_free(e);
        free(json);
}

static void test_envelope_format_errors(void **state) {
        uint8_t sig[2] = { 1, 2 };
        struct proto_dsse_sig s = { .keyid = NULL, .sig = sig, .sig_len = 2 };
        char *json = NULL;

        assert_int_equal(proto_dsse_envelope_format("", (const uint8_t *) "x", 1, &s, 1, &json), -EINVAL);
        assert_int_equal(proto_dsse_envelope_format("t", (const uint8_t *) "x", 1, &s, 0, &json), -EINVAL);
        assert_int_equal(proto_dsse_envelope_format("t", (const uint8_t *) "x", 1, NULL, 1, &json), -EINVAL);
        assert_int_equal(proto_dsse_envelope_format("t", (const uint8_t *) "x", 1, &s, PROTO_DSSE_MAX_SIGS + 1, &json),
                         -EINVAL);
        s.sig_len = 0;
        assert_int_equal(proto_dsse_envelope_format("t", (const uint8_t *) "x", 1, &s, 1, &json), -EINVAL);
        s.sig_len = 2;
        s.keyid = (char *) "\xff\xfe"; /* not UTF-8 */
        assert_int_equal(proto_dsse_envelope_format("t", (const uint8_t *) "x", 1, &s, 1, &json), -EINVAL);
        assert_int_equal(proto_dsse_envelope_format("\xff", (const uint8_t *) "x", 1, &s, 1, &json), -EINVAL);
        assert_null(json);
        /* without keyid, empty payload */
        s.keyid = NULL;
        assert_int_equal(proto_dsse_envelope_format("t", NULL, 0, &s, 1, &json), 0);
        assert_string_equal(json, "{\"payloadType\":\"t\",\"payload\":\"\",\"signatures\":[{\"sig\":\"AQI=\"}]}");
        struct proto_dsse_envelope *e;
        assert_int_equal(proto_dsse_envelope_parse(json, strlen(json), &e), 0);
        assert_null(e->sigs[0].keyid);
        assert_int_equal(e->payload_len, 0);
        assert_non_null(e->payload);
        proto_dsse_envelope_free(e);
        free(json);
}

static int parse(const char *text) {
        struct proto_dsse_envelope *e = NULL;
        int r = proto_dsse_envelope_parse(text, strlen(text), &e);

        if (r == 0) {
                assert_non_null(e);
                proto_dsse_envelope_free(e);
        }
        return r;
}

static void test_envelope_parse_negative(void **state) {
        /* the good one, then each defect alone */
        assert_int_equal(parse("{\"payloadType\":\"t\",\"payload\":\"aGk=\",\"signatures\":[{\"keyid\":\"k\",\"sig\":\"AQI=\"}]}"), 0);
        assert_int_equal(parse("{\"payloadType\":\"t\",\"payload\":\"aGk=\",\"signatures\":[{\"keyid\":\"k\",\"sig\":\"AQI=\"}]"), -EBADMSG);
        assert_int_equal(parse(""), -EBADMSG);
        assert_int_equal(parse("[]"), -EBADMSG);
        assert_int_equal(parse("{\"payloadType\":\"t\",\"payload\":\"aGk=\"}"), -EBADMSG);
        assert_int_equal(parse("{\"payloadType\":\"t\",\"signatures\":[{\"sig\":\"AQI=\"}]}"), -EBADMSG);
        assert_int_equal(parse("{\"payload\":\"aGk=\",\"signatures\":[{\"sig\":\"AQI=\"}]}"), -EBADMSG);
        /* unknown key, duplicate key */
        assert_int_equal(parse("{\"payloadType\":\"t\",\"payload\":\"aGk=\",\"signatures\":[{\"sig\":\"AQI=\"}],\"x\":1}"), -EBADMSG);
        assert_int_equal(parse("{\"payloadType\":\"t\",\"payloadType\":\"u\",\"payload\":\"aGk=\",\"signatures\":[{\"sig\":\"AQI=\"}]}"), -EBADMSG);
        assert_int_equal(parse("{\"payloadType\":\"t\",\"payload\":\"aGk=\",\"signatures\":[{\"sig\":\"AQI=\",\"cert\":\"\"}]}"), -EBADMSG);
        /* wrong types, empty or NUL-bearing strings */
        assert_int_equal(parse("{\"payloadType\":1,\"payload\":\"aGk=\",\"signatures\":[{\"sig\":\"AQI=\"}]}"), -EBADMSG);
        assert_int_equal(parse("{\"payloadType\":\"\",\"payload\":\"aGk=\",\"signatures\":[{\"sig\":\"AQI=\"}]}"), -EBADMSG);
        assert_int_equal(parse("{\"payloadType\":\"t\\u0000x\",\"payload\":\"aGk=\",\"signatures\":[{\"sig\":\"AQI=\"}]}"), -EBADMSG);
        assert_int_equal(parse("{\"payloadType\":\"t\",\"payload\":null,\"signatures\":[{\"sig\":\"AQI=\"}]}"), -EBADMSG);
        assert_int_equal(parse("{\"payloadType\":\"t\",\"payload\":\"aGk=\",\"signatures\":{}}"), -EBADMSG);
        assert_int_equal(parse("{\"payloadType\":\"t\",\"payload\":\"aGk=\",\"signatures\":[]}"), -EBADMSG);
        assert_int_equal(parse("{\"payloadType\":\"t\",\"payload\":\"aGk=\",\"signatures\":[1]}"), -EBADMSG);
        assert_int_equal(parse("{\"payloadType\":\"t\",\"payload\":\"aGk=\",\"signatures\":[{\"keyid\":\"\",\"sig\":\"AQI=\"}]}"), -EBADMSG);
        assert_int_equal(parse("{\"payloadType\":\"t\",\"payload\":\"aGk=\",\"signatures\":[{\"keyid\":7,\"sig\":\"AQI=\"}]}"), -EBADMSG);
        assert_int_equal(parse("{\"payloadType\":\"t\",\"payload\":\"aGk=\",\"signatures\":[{\"keyid\":\"k\"}]}"), -EBADMSG);
        assert_int_equal(parse("{\"payloadType\":\"t\",\"payload\":\"aGk=\",\"signatures\":[{\"sig\":\"\"}]}"), -EBADMSG);
        /* non-canonical base64: missing padding, URL-safe alphabet, whitespace, non-zero unused bits */
        assert_int_equal(parse("{\"payloadType\":\"t\",\"payload\":\"aGk\",\"signatures\":[{\"sig\":\"AQI=\"}]}"), -EBADMSG);
        assert_int_equal(parse("{\"payloadType\":\"t\",\"payload\":\"aGk=\",\"signatures\":[{\"sig\":\"-_8=\"}]}"), -EBADMSG);
        assert_int_equal(parse("{\"payloadType\":\"t\",\"payload\":\"aG k=\",\"signatures\":[{\"sig\":\"AQI=\"}]}"), -EBADMSG);
        assert_int_equal(parse("{\"payloadType\":\"t\",\"payload\":\"aGl=\",\"signatures\":[{\"sig\":\"AQI=\"}]}"), -EBADMSG);
        /* trailing bytes after the object */
        assert_int_equal(parse("{\"payloadType\":\"t\",\"payload\":\"aGk=\",\"signatures\":[{\"sig\":\"AQI=\"}]} x"), -EBADMSG);
}

static void test_envelope_parse_limits(void **state) {
        char *text;
        size_t cap = 64 * 1024;
        int off;

        /* PROTO_DSSE_MAX_SIGS + 1 signatures */
        text = malloc(cap);
        assert_non_null(text);
        off = snprintf(text, cap, "{\"payloadType\":\"t\",\"payload\":\"aGk=\",\"signatures\":[");
        for (unsigned i = 0; i <= PROTO_DSSE_MAX_SIGS; i++)
                off += snprintf(text + off, cap - (size_t) off, "%s{\"sig\":\"AQI=\"}", i ? "," : "");
        snprintf(text + off, cap - (size_t) off, "]}");
        assert_int_equal(parse(text), -EMSGSIZE);

        /* a signature over PROTO_DSSE_MAX_SIG bytes */
        size_t b64 = PROTO_BASE64_LEN(PROTO_DSSE_MAX_SIG + 3);
        off = snprintf(text, cap, "{\"payloadType\":\"t\",\"payload\":\"aGk=\",\"signatures\":[{\"sig\":\"");
        memset(text + off, 'A', b64);
        snprintf(text + off + b64, cap - (size_t) off - b64, "\"}]}");
        assert_int_equal(parse(text), -EMSGSIZE);

        /* a payloadType over PROTO_DSSE_MAX_TYPE bytes */
        off = snprintf(text, cap, "{\"payloadType\":\"");
        memset(text + off, 't', PROTO_DSSE_MAX_TYPE + 1);
        snprintf(text + off + PROTO_DSSE_MAX_TYPE + 1, cap - (size_t) off - PROTO_DSSE_MAX_TYPE - 1,
                 "\",\"payload\":\"aGk=\",\"signatures\":[{\"sig\":\"AQI=\"}]}");
        assert_int_equal(parse(text), -EBADMSG);
        free(text);

        /* the whole text over the limit is refused before it is parsed */
        struct proto_dsse_envelope *e = NULL;
        assert_int_equal(proto_dsse_envelope_parse("{}", PROTO_DSSE_MAX_ENVELOPE + 1, &e), -EMSGSIZE);
        assert_null(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_pae_vector),
                cmocka_unit_test(test_pae_errors),
                cmocka_unit_test(test_pae_digest),
                cmocka_unit_test(test_envelope_roundtrip),
                cmocka_unit_test(test_envelope_format_errors),
                cmocka_unit_test(test_envelope_parse_negative),
                cmocka_unit_test(test_envelope_parse_limits),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
