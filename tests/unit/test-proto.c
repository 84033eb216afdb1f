/* proto/: framing, cursor, names, hex, key ids. Negative cases for every
 * parser: truncated, over-long, wrong length prefix, trailing bytes,
 * unknown enum. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base64.h"
#include "entry.h"
#include "frame.h"
#include "hex.h"
#include "keyid.h"
#include "merkle.h"
#include "names.h"
#include "provsign.pb-c.h"
#include "timefmt.h"

static void test_u32(void **state) {
        uint8_t b[4];
        proto_put_u32be(b, 0x01020304u);
        assert_memory_equal(b, "\x01\x02\x03\x04", 4);
        assert_int_equal(proto_get_u32be(b), 0x01020304u);
}

static void test_cursor(void **state) {
        const uint8_t data[] = { 0, 0, 0, 3, 'a', 'b', 'c', 'd' };
        proto_cursor c = proto_cursor_make(data, sizeof data);
        uint32_t v;
        const uint8_t *p;
        assert_int_equal(proto_cursor_get_u32(&c, &v), 0);
        assert_int_equal(v, 3);
        assert_int_equal(proto_cursor_get_bytes(&c, v, &p), 0);
        assert_memory_equal(p, "abc", 3);
        assert_int_equal(c.len, 1);
        /* truncated: the cursor does not move on failure */
        assert_int_equal(proto_cursor_get_u32(&c, &v), -EBADMSG);
        assert_int_equal(proto_cursor_get_bytes(&c, 2, &p), -EBADMSG);
        assert_int_equal(c.len, 1);
        assert_int_equal(proto_cursor_get_bytes(&c, SIZE_MAX, &p), -EBADMSG);
}

static void test_frame_peek(void **state) {
        uint8_t b[8] = { 0 };
        size_t n = 99;
        assert_int_equal(proto_frame_peek(b, 3, PROTO_FRAME_MAX, &n), 0);
        assert_int_equal(n, 99);
        proto_put_u32be(b, PROTO_FRAME_MAX);
        assert_int_equal(proto_frame_peek(b, 4, PROTO_FRAME_MAX, &n), 1);
        assert_int_equal(n, PROTO_FRAME_MAX);
        proto_put_u32be(b, PROTO_FRAME_MAX + 1);
        assert_int_equal(proto_frame_peek(b, 4, PROTO_FRAME_MAX, &n), -EMSGSIZE);
        proto_put_u32be(b, UINT32_MAX);
        assert_int_equal(proto_frame_peek(b, 8, PROTO_FRAME_MAX, &n), -EMSGSIZE);
        proto_put_u32be(b, 0);
        assert_int_equal(proto_frame_peek(b, 4, PROTO_FRAME_MAX, &n), 1);
        assert_int_equal(n, 0);
}

static void test_frame_pack_roundtrip(void **state) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__SignRequest s = PROVSIGN__SIGN_REQUEST__INIT;
        uint8_t digest[32] = { 1, 2, 3 };
        req.protocol_version = PROVSIGN_PROTOCOL_VERSION;
        req.body_case = PROVSIGN__REQUEST__BODY_SIGN;
        req.sign = &s;
        s.principal = (char *) "ci";
        s.digest_algorithm = PROVSIGN__DIGEST_ALGORITHM__SHA256;
        s.digest.data = digest;
        s.digest.len = sizeof digest;
        uint8_t *buf;
        size_t len;
        assert_int_equal(proto_frame_pack(&req.base, &buf, &len), 0);
        size_t plen;
        assert_int_equal(proto_frame_peek(buf, len, PROTO_FRAME_MAX, &plen), 1);
        assert_int_equal(plen + PROTO_FRAME_HEADER, len);
        Provsign__Request *back = provsign__request__unpack(NULL, plen, buf + PROTO_FRAME_HEADER);
        assert_non_null(back);
        assert_int_equal(back->body_case, PROVSIGN__REQUEST__BODY_SIGN);
        assert_string_equal(back->sign->principal, "ci");
        assert_memory_equal(back->sign->digest.data, digest, 32);
        provsign__request__free_unpacked(back, NULL);
        /* truncated payload does not decode */
        assert_null(provsign__request__unpack(NULL, plen - 1, buf + PROTO_FRAME_HEADER));
        free(buf);

        /* a message over the frame limit is refused, not truncated */
        static uint8_t big[PROTO_FRAME_MAX];
        s.digest.data = big;
        s.digest.len = sizeof big;
        assert_int_equal(proto_frame_pack(&req.base, &buf, &len), -EMSGSIZE);
}

static void test_status_names(void **state) {
        assert_string_equal(proto_status_name(PROVSIGN__STATUS__OK), "OK");
        assert_string_equal(proto_status_name(PROVSIGN__STATUS__PERMISSION_DENIED), "PERMISSION_DENIED");
        assert_string_equal(proto_status_name(PROVSIGN__STATUS__INTERNAL), "INTERNAL");
        assert_string_equal(proto_status_name(10), "UNKNOWN_STATUS");
        assert_string_equal(proto_status_name(-1), "UNKNOWN_STATUS");
        for (int i = 0; i <= 9; i++)
                assert_true(proto_status_known(i));
        assert_false(proto_status_known(10));
}

static void test_event_names(void **state) {
        assert_string_equal(proto_audit_event_name(PROVSIGN__AUDIT_EVENT__SIGN), "SIGN");
        assert_string_equal(proto_audit_event_name(PROVSIGN__AUDIT_EVENT__KEY_ROTATE), "KEY_ROTATE");
        assert_null(proto_audit_event_name(0));
        assert_null(proto_audit_event_name(9999));
        assert_null(proto_audit_event_name(-1));
}

/* proto_digest_spec is the inverse of proto_digest_spec_parse */
static void test_digest_spec_format(void **state) {
        uint8_t d[48], back[48];
        size_t n;
        int alg;
        for (size_t i = 0; i < sizeof d; i++)
                d[i] = (uint8_t) (i * 37 + 1);
        char *s = proto_digest_spec(PROVSIGN__DIGEST_ALGORITHM__SHA384, d, 48);
        assert_non_null(s);
        assert_int_equal(strlen(s), 7 + 96);
        assert_memory_equal(s, "sha384:01", 9);
        assert_int_equal(proto_digest_spec_parse(s, &alg, back, &n), 0);
        assert_int_equal(alg, PROVSIGN__DIGEST_ALGORITHM__SHA384);
        assert_int_equal(n, 48);
        assert_memory_equal(back, d, 48);
        free(s);
        s = proto_digest_spec(PROVSIGN__DIGEST_ALGORITHM__SHA256, d, 32);
        assert_non_null(s);
        assert_int_equal(proto_digest_spec_parse(s, &alg, back, &n), 0);
        assert_int_equal(n, 32);
        free(s);
        assert_null(proto_digest_spec(PROVSIGN__DIGEST_ALGORITHM__SHA256, d, 65537));
}

static void test_algorithm_names(void **state) {
        assert_int_equal(proto_key_algorithm_from_name("ecdsa-p256"), PROVSIGN__KEY_ALGORITHM__ECDSA_P256);
        assert_int_equal(proto_key_algorithm_from_name("ecdsa-p384"), PROVSIGN__KEY_ALGORITHM__ECDSA_P384);
        assert_int_equal(proto_key_algorithm_from_name("rsa-3072"), PROVSIGN__KEY_ALGORITHM__RSA_3072);
        assert_int_equal(proto_key_algorithm_from_name("rsa"), -EINVAL);
        assert_int_equal(proto_key_algorithm_digest(PROVSIGN__KEY_ALGORITHM__ECDSA_P384),
                         PROVSIGN__DIGEST_ALGORITHM__SHA384);
        assert_int_equal(proto_key_algorithm_digest(PROVSIGN__KEY_ALGORITHM__RSA_3072),
                         PROVSIGN__DIGEST_ALGORITHM__SHA256);
        assert_int_equal(proto_key_algorithm_digest(99), 0);
        assert_string_equal(proto_key_algorithm_name(99), "unknown");
        assert_int_equal(proto_digest_length(PROVSIGN__DIGEST_ALGORITHM__SHA256), 32);
        assert_int_equal(proto_digest_length(PROVSIGN__DIGEST_ALGORITHM__SHA384), 48);
        assert_int_equal(proto_digest_length(0), 0);
        assert_string_equal(proto_key_state_name(PROVSIGN__KEY_STATE__REVOKED), "revoked");
        assert_string_equal(proto_key_state_name(77), "unknown");
}

static void test_digest_spec(void **state) {
        uint8_t d[48];
        size_t n;
        int alg;
        const char *ok = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_int_equal(proto_digest_spec_parse(ok, &alg, d, &n), 0);
        assert_int_equal(alg, PROVSIGN__DIGEST_ALGORITHM__SHA256);
        assert_int_equal(n, 32);
        assert_int_equal(d[0], 0xe3);
        assert_int_equal(d[31], 0x55);
        /* wrong length, bad hex, unknown algorithm, missing colon, too long name */
        assert_int_equal(proto_digest_spec_parse("sha256:e3b0", &alg, d, &n), -EINVAL);
        assert_int_equal(proto_digest_spec_parse(
                                 "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", &alg, d, &n),
                         -EINVAL);
        assert_int_equal(proto_digest_spec_parse(
                                 "md5:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", &alg, d, &n),
                         -EINVAL);
        assert_int_equal(proto_digest_spec_parse("e3b0c442", &alg, d, &n), -EINVAL);
        assert_int_equal(proto_digest_spec_parse("sha256sha256:00", &alg, d, &n), -EINVAL);
        assert_int_equal(proto_digest_spec_parse(
                                 "sha384:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", &alg, d, &n),
                         -EINVAL);
}

static void test_hex_and_keyid(void **state) {
        uint8_t out[4];
        size_t n;
        char hex[9];
        proto_hex_encode((const uint8_t *) "\x00\xab\xff\x10", 4, hex);
        assert_string_equal(hex, "00abff10");
        assert_int_equal(proto_hex_decode("00ABff10", out, sizeof out, &n), 0);
        assert_int_equal(n, 4);
        assert_memory_equal(out, "\x00\xab\xff\x10", 4);
        assert_int_equal(proto_hex_decode("abc", out, sizeof out, &n), -EINVAL);
        assert_int_equal(proto_hex_decode("0011223344", out, sizeof out, &n), -EINVAL);
        assert_int_equal(proto_hex_decode("zz", out, sizeof out, &n), -EINVAL);

        /* key id = SHA-256 of the bytes given: "abc" has a well-known hash */
        char id[65];
        proto_keyid_hex((const uint8_t *) "abc", 3, id);
        assert_string_equal(id, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_true(proto_keyid_hex_valid(id));
        id[0] = 'B';
        assert_false(proto_keyid_hex_valid(id));
        assert_false(proto_keyid_hex_valid("ba78"));
}

/* One spelling per byte string: padding exact, no whitespace, unused bits
 * zero (RFC 4648 §3.5), so equal readable text means equal bytes. */
static void test_base64(void **state) {
        char *e = proto_base64_encode((const uint8_t *) "hello", 5);
        assert_string_equal(e, "aGVsbG8=");
        free(e);
        uint8_t *d = NULL;
        size_t n;
        assert_int_equal(proto_base64_decode("aGVsbG8=", 8, &d, &n), 0);
        assert_int_equal(n, 5);
        assert_memory_equal(d, "hello", 5);
        free(d);
        assert_int_equal(proto_base64_decode("", 0, &d, &n), 0);
        assert_int_equal(n, 0);
        free(d);
        const char *bad[] = { "aGVsbG8", "aGVsbG9=", "aGVs bG8=", "aGVsbG8==", "=GVsbG8=", "aGVs\nbG8=", "aGVsbG-=" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                assert_int_equal(proto_base64_decode(bad[i], strlen(bad[i]), &d, &n), -EBADMSG);
        uint8_t small[2];
        assert_int_equal(proto_base64_decode_to("aGVsbG8=", 8, small, sizeof small, &n), -EBADMSG);
}

/* The cheap header read agrees with the full decoder, including absent
 * (zero) fields, and refuses shapes it cannot read. */
static void test_entry_peek(void **state) {
        const uint64_t seqs[] = { 0, 1, 127, 128, 300, UINT64_C(1) << 40 };
        const int events[] = { 0, PROVSIGN__AUDIT_EVENT__SIGN, PROVSIGN__AUDIT_EVENT__KEY_ROTATE };
        for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++)
                for (size_t j = 0; j < sizeof events / sizeof events[0]; j++) {
                        Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
                        e.seq = seqs[i];
                        e.time_us = (int64_t) (i * 1000003);
                        e.event = events[j];
                        e.principal = (char *) "ci";
                        uint8_t buf[256];
                        size_t n = provsign__audit_entry__pack(&e, buf);
                        proto_entry_head h;
                        assert_int_equal(proto_entry_peek(buf, n, &h), 0);
                        assert_true(h.seq == e.seq);
                        assert_true(h.time_us == e.time_us);
                        assert_int_equal(h.event, e.event);
                }
        const uint8_t out_of_order[] = { 0x18, 0x01, 0x08, 0x05 };   /* event, then seq */
        const uint8_t truncated[] = { 0x08, 0x80 };                  /* varint cut short */
        const uint8_t wrong_type[] = { 0x0a, 0x01, 0x00 };           /* seq as bytes */
        proto_entry_head h;
        assert_int_equal(proto_entry_peek(out_of_order, sizeof out_of_order, &h), -EBADMSG);
        assert_int_equal(proto_entry_peek(truncated, sizeof truncated, &h), -EBADMSG);
        assert_int_equal(proto_entry_peek(wrong_type, sizeof wrong_type, &h), -EBADMSG);
}

/* Retention: a stub has exactly the entry's length (at every length, the
 * padding's varint lengths included), decodes as ENTRY_PURGED with the
 * same seq and time, and hashes to the entry's leaf hash; an entry too
 * short for its stub is refused; other entries are not stubs. */
static void test_entry_stub(void **state) {
        static char msg[20000];
        static uint8_t buf[21000], stub[21000];
        memset(msg, 'm', sizeof msg - 1);
        size_t refused = 0, made = 0;
        for (size_t len = 0; len < sizeof msg - 1; len += len < 600 ? 1 : 97) {
                Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
                e.seq = 1234567;
                e.time_us = INT64_C(1767323045123456);
                e.event = PROVSIGN__AUDIT_EVENT__SIGN;
                msg[len] = '\0';
                e.message = msg;
                size_t n = provsign__audit_entry__pack(&e, buf);
                msg[len] = 'm';
                uint8_t want[32], got[32];
                assert_int_equal(proto_merkle_leaf_hash(buf, n, want), 0);
                assert_int_equal(proto_entry_purged_hash(buf, n, got), 0);
                memcpy(stub, buf, n);
                int r = proto_entry_stub(stub, n, stub);
                if (r == -EMSGSIZE) {
                        refused++;
                        assert_true(n < 80);
                        continue;
                }
                assert_int_equal(r, 0);
                made++;
                Provsign__AuditEntry *d = provsign__audit_entry__unpack(NULL, n, stub);
                assert_non_null(d);
                assert_int_equal(d->event, PROVSIGN__AUDIT_EVENT__ENTRY_PURGED);
                assert_true(d->seq == e.seq && d->time_us == e.time_us);
                assert_int_equal(d->purged_leaf_hash.len, 32);
                assert_memory_equal(d->purged_leaf_hash.data, want, 32);
                assert_true(d->message == NULL || d->message[0] == '\0');
                provsign__audit_entry__free_unpacked(d, NULL);
                assert_int_equal(proto_entry_purged_hash(stub, n, got), 1);
                assert_memory_equal(got, want, 32);
                assert_int_equal(proto_entry_leaf_hash(stub, n, got), 0);
                assert_memory_equal(got, want, 32);
                assert_int_equal(proto_entry_leaf_hash(buf, n, got), 0);
                assert_memory_equal(got, want, 32);
        }
        assert_true(refused > 0 && made > 500);
        /* A stub without its hash is damage, not an entry. */
        const uint8_t bad[] = { 0x08, 0x01, 0x18, 0x0b };
        uint8_t h[32];
        assert_int_equal(proto_entry_purged_hash(bad, sizeof bad, h), -EBADMSG);
}

static void test_time_parse_rfc3339(void **state) {
        int64_t us;
        assert_int_equal(proto_time_parse_rfc3339_us("2026-01-02T03:04:05Z", &us), 0);
        assert_true(us == INT64_C(1767323045000000));
        assert_int_equal(proto_time_parse_rfc3339_us("2026-01-02T04:04:05.5+01:00", &us), 0);
        assert_true(us == INT64_C(1767323045500000));
        assert_int_equal(proto_time_parse_rfc3339_us("2026-01-02t03:04:05.123456789z", &us), 0);
        assert_true(us == INT64_C(1767323045123456));
        assert_int_equal(proto_time_parse_rfc3339_us("2026-01-01T20:04:05-07:00", &us), 0);
        assert_true(us == INT64_C(1767323045000000));
        const char *bad[] = { "2026-01-02", "2026-01-02T03:04:05", "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z",
                              "2026-01-02T03:04:05.Z", "2026-01-02T03:04:05.1234567890Z", "2026-01-02T03:04:05+0100",
                              "1969-12-31T23:59:59Z", "2026-01-02T03:04:05Zjunk", "yesterday", "" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                assert_int_equal(proto_time_parse_rfc3339_us(bad[i], &us), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_u32),           cmocka_unit_test(test_cursor),
                cmocka_unit_test(test_frame_peek),    cmocka_unit_test(test_frame_pack_roundtrip),
                cmocka_unit_test(test_status_names),  cmocka_unit_test(test_algorithm_names),
                cmocka_unit_test(test_event_names),   cmocka_unit_test(test_digest_spec_format),
                cmocka_unit_test(test_digest_spec),   cmocka_unit_test(test_hex_and_keyid), cmocka_unit_test(test_base64),
                cmocka_unit_test(test_entry_peek),    cmocka_unit_test(test_time_parse_rfc3339),
                cmocka_unit_test(test_entry_stub),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
