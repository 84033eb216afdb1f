/* proto/record: CRC32C against RFC 3720 B.4 and the usual check value, the
 * record encoder, and the parser on truncated, flipped, zero-length,
 * oversized and trailing bytes. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"
#include "record.h"

/* RFC 3720 appendix B.4 "CRC Examples". */
static void test_crc32c_rfc3720(void **state) {
        uint8_t b[32];

        memset(b, 0x00, sizeof b);
        assert_int_equal(proto_crc32c(0, b, sizeof b), 0x8a9136aau);
        memset(b, 0xff, sizeof b);
        assert_int_equal(proto_crc32c(0, b, sizeof b), 0x62a8ab43u);
        for (size_t i = 0; i < sizeof b; i++)
                b[i] = (uint8_t) i;
        assert_int_equal(proto_crc32c(0, b, sizeof b), 0x46dd794eu);
        for (size_t i = 0; i < sizeof b; i++)
                b[i] = (uint8_t) (31 - i);
        assert_int_equal(proto_crc32c(0, b, sizeof b), 0x113fdb5cu);
}

/* RFC 3720 B.4, the 48-byte iSCSI Read (10) command PDU. */
static void test_crc32c_rfc3720_pdu(void **state) {
        static const uint8_t pdu[48] = {
                0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
                0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        };

        assert_int_equal(proto_crc32c(0, pdu, sizeof pdu), 0xd9963a56u);
}

/* Bit-at-a-time CRC32C straight from the definition (RFC 3720 §12.1:
 * reflected 0x82F63B78, preset and final complement), to check every entry
 * of the table: a single byte b indexes entry ~b & 0xff. */
static uint32_t crc32c_bitwise(const uint8_t *p, size_t n) {
        uint32_t crc = 0xffffffffu;

        for (size_t i = 0; i < n; i++) {
                crc ^= p[i];
                for (int k = 0; k < 8; k++)
                        crc = (crc & 1u) ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
        }
        return ~crc;
}

static void test_crc32c_every_table_entry(void **state) {
        uint8_t b[4096];
        uint32_t x = 1;

        for (unsigned v = 0; v < 256; v++) {
                uint8_t one = (uint8_t) v;
                assert_int_equal(proto_crc32c(0, &one, 1), crc32c_bitwise(&one, 1));
        }
        for (size_t i = 0; i < sizeof b; i++) {
                x = x * 1103515245u + 12345u;
                b[i] = (uint8_t) (x >> 16);
        }
        assert_int_equal(proto_crc32c(0, b, sizeof b), crc32c_bitwise(b, sizeof b));
}

static void test_crc32c_check_and_chain(void **state) {
        const char *s = "123456789";

        /* The catalogue "check" value of CRC-32C. */
        assert_int_equal(proto_crc32c(0, s, 9), 0xe3069283u);
        assert_int_equal(proto_crc32c(0, s, 0), 0);
        /* Chainable at every split point. */
        for (size_t i = 0; i <= 9; i++)
                assert_int_equal(proto_crc32c(proto_crc32c(0, s, i), s + i, 9 - i), 0xe3069283u);
}

static void test_record_size(void **state) {
        assert_int_equal(proto_record_size(0), 0);
        assert_int_equal(proto_record_size(1), 9);
        assert_int_equal(proto_record_size(PROTO_RECORD_MAX_ENTRY), PROTO_RECORD_MAX_ENTRY + 8);
        assert_int_equal(proto_record_size(PROTO_RECORD_MAX_ENTRY + 1), 0);
        assert_int_equal(proto_record_size(SIZE_MAX), 0);
}

static void test_encode_known_answer(void **state) {
        static const uint8_t want[] = { 0, 0, 0, 9, '1', '2', '3', '4', '5', '6', '7', '8', '9', 0xe3, 0x06, 0x92, 0x83 };
        uint8_t out[sizeof want + 3];
        size_t n = 0;

        assert_int_equal(proto_record_encode((const uint8_t *) "123456789", 9, out, sizeof out, &n), 0);
        assert_int_equal(n, sizeof want);
        assert_memory_equal(out, want, sizeof want);
}

static void test_encode_errors(void **state) {
        uint8_t entry[16] = { 1 }, out[32];
        size_t n = 99;

        memset(out, 0xaa, sizeof out);
        assert_int_equal(proto_record_encode(entry, sizeof entry, out, sizeof entry + 7, &n), -ENOBUFS);
        assert_int_equal(proto_record_encode(entry, 0, out, sizeof out, &n), -EOVERFLOW);
        assert_int_equal(proto_record_encode(entry, PROTO_RECORD_MAX_ENTRY + 1, out, sizeof out, &n), -EOVERFLOW);
        assert_int_equal(n, 99);
        for (size_t i = 0; i < sizeof out; i++)
                assert_int_equal(out[i], 0xaa);
        assert_int_equal(proto_record_encode(entry, sizeof entry, out, sizeof entry + 8, &n), 0);
        assert_int_equal(n, sizeof entry + 8);
}

static void test_roundtrip_max(void **state) {
        size_t elen = PROTO_RECORD_MAX_ENTRY, n;
        uint8_t *entry = malloc(elen), *buf = malloc(elen + 8);
        const uint8_t *got;
        size_t got_len;

        assert_non_null(entry);
        assert_non_null(buf);
        for (size_t i = 0; i < elen; i++)
                entry[i] = (uint8_t) (i * 7 + 3);
        assert_int_equal(proto_record_encode(entry, elen, buf, elen + 8, &n), 0);
        proto_cursor c = proto_cursor_make(buf, n);
        assert_int_equal(proto_record_next(&c, &got, &got_len), 0);
        assert_int_equal(got_len, elen);
        assert_ptr_equal(got, buf + 4);
        assert_memory_equal(got, entry, elen);
        assert_int_equal(proto_record_next(&c, &got, &got_len), -ENODATA);
        free(entry);
        free(buf);
}

/* Three records of different sizes; bounds[k] is where record k starts and
 * bounds[3] the total. */
typedef struct three {
        uint8_t buf[600];
        size_t bounds[4];
        const char *entries[3];
        size_t lens[3];
} three;

static void three_make(three *t) {
        static const char big[] = "an AuditEntry stand-in of a few hundred bytes. "
                                  "an AuditEntry stand-in of a few hundred bytes. "
                                  "an AuditEntry stand-in of a few hundred bytes. "
                                  "an AuditEntry stand-in of a few hundred bytes. "
                                  "an AuditEntry stand-in of a few hundred bytes. "
                                  "an AuditEntry stand-in of a few hundred bytes.";
        size_t off = 0, n;

        t->entries[0] = "x";
        t->entries[1] = "sign ci key 1";
        t->entries[2] = big;
        for (size_t k = 0; k < 3; k++) {
                t->lens[k] = strlen(t->entries[k]);
                t->bounds[k] = off;
                assert_int_equal(proto_record_encode((const uint8_t *) t->entries[k], t->lens[k], t->buf + off,
                                                     sizeof t->buf - off, &n),
                                 0);
                off += n;
        }
        t->bounds[3] = off;
}

static void test_roundtrip_three(void **state) {
        three t;
        const uint8_t *e;
        size_t n;

        three_make(&t);
        proto_cursor c = proto_cursor_make(t.buf, t.bounds[3]);
        for (size_t k = 0; k < 3; k++) {
                assert_int_equal(t.bounds[3] - c.len, t.bounds[k]);
                assert_int_equal(proto_record_next(&c, &e, &n), 0);
                assert_int_equal(n, t.lens[k]);
                assert_memory_equal(e, t.entries[k], n);
        }
        assert_int_equal(proto_record_next(&c, &e, &n), -ENODATA);
        assert_int_equal(c.len, 0);
}

/* Cut the buffer at every offset: every whole record before the cut parses,
 * then -ENODATA on a boundary or -EBADMSG exactly at the cut record, with the
 * cursor (and so the reported offset) on that record's first byte. */
static void test_truncation_every_offset(void **state) {
        three t;

        three_make(&t);
        for (size_t cut = 0; cut <= t.bounds[3]; cut++) {
                proto_cursor c = proto_cursor_make(t.buf, cut);
                const uint8_t *e = NULL;
                size_t n = 12345, k = 0;
                int r;

                while ((r = proto_record_next(&c, &e, &n)) == 0) {
                        assert_true(k < 3);
                        assert_int_equal(n, t.lens[k]);
                        k++;
                }
                assert_true(k < 4);
                /* the cut is in record k, or exactly at its start */
                assert_true(cut >= t.bounds[k]);
                assert_true(k == 3 || cut < t.bounds[k + 1]);
                assert_int_equal(cut - c.len, t.bounds[k]);
                if (cut == t.bounds[k]) {
                        assert_int_equal(r, -ENODATA);
                } else {
                        assert_int_equal(r, -EBADMSG);
                        /* a torn tail: the bad record runs to the end */
                        assert_true(c.len > 0);
                }
        }
}

static void test_flipped_bits(void **state) {
        three t;

        three_make(&t);
        for (size_t pos = 0; pos < t.bounds[3]; pos++)
                for (unsigned bit = 0; bit < 8; bit++) {
                        uint8_t b[sizeof t.buf];
                        size_t k = 0, rec, n = 0;
                        const uint8_t *e;
                        int r;

                        memcpy(b, t.buf, t.bounds[3]);
                        b[pos] ^= (uint8_t) (1u << bit);
                        for (rec = 0; pos >= t.bounds[rec + 1]; rec++)
                                ;
                        proto_cursor c = proto_cursor_make(b, t.bounds[3]);
                        while ((r = proto_record_next(&c, &e, &n)) == 0)
                                k++;
                        /* the records before the damage are intact; the damaged one fails */
                        assert_int_equal(k, rec);
                        assert_int_equal(t.bounds[3] - c.len, t.bounds[rec]);

                        size_t in_rec = pos - t.bounds[rec];
                        if (in_rec >= 4) {
                                /* entry or CRC: CRC32C catches every single-bit error */
                                assert_int_equal(r, -EILSEQ);
                                /* and the extent is known: the last record ends the buffer */
                                assert_int_equal(proto_record_size(proto_get_u32be(c.p)) == c.len, rec == 2);
                                continue;
                        }
                        uint32_t len = proto_get_u32be(b + t.bounds[rec]);
                        if (len == 0 || len > PROTO_RECORD_MAX_ENTRY)
                                assert_int_equal(r, -EOVERFLOW);
                        else if ((size_t) len + 8 > c.len)
                                assert_int_equal(r, -EBADMSG);
                        else
                                assert_int_equal(r, -EILSEQ);
                }
}

static void test_zero_and_oversized(void **state) {
        uint8_t zero[8] = { 0 };
        const uint8_t *e = (const uint8_t *) "untouched";
        size_t n = 77;

        /* length 0 with a valid CRC of nothing (0) is still refused */
        proto_cursor c = proto_cursor_make(zero, sizeof zero);
        assert_int_equal(proto_record_next(&c, &e, &n), -EOVERFLOW);
        assert_int_equal(c.len, sizeof zero);
        assert_ptr_equal(c.p, zero);
        assert_int_equal(n, 77);
        assert_memory_equal(e, "untouched", 9);

        /* one over the limit, with every byte and a correct CRC present */
        size_t big = PROTO_RECORD_MAX_ENTRY + 1;
        uint8_t *b = calloc(1, big + 8);
        assert_non_null(b);
        proto_put_u32be(b, (uint32_t) big);
        proto_put_u32be(b + 4 + big, proto_crc32c(0, b + 4, big));
        c = proto_cursor_make(b, big + 8);
        assert_int_equal(proto_record_next(&c, &e, &n), -EOVERFLOW);
        assert_int_equal(c.len, big + 8);
        free(b);

        /* a huge length is refused before waiting for its bytes */
        uint8_t huge[4] = { 0xff, 0xff, 0xff, 0xff };
        c = proto_cursor_make(huge, sizeof huge);
        assert_int_equal(proto_record_next(&c, &e, &n), -EOVERFLOW);
        assert_int_equal(c.len, 4);
}

static void test_trailing_garbage(void **state) {
        static const struct {
                const char *bytes;
                size_t len;
                int want;
        } tails[] = {
                { "\x00", 1, -EBADMSG },                            /* partial header */
                { "xyz", 3, -EBADMSG },                             /* partial header */
                { "garbage!", 8, -EOVERFLOW },                      /* "garb" as a length */
                { "\x00\x00\x00\x05" "ab", 6, -EBADMSG },           /* plausible length, cut */
                { "\x00\x00\x00\x02" "ab" "\x00\x00\x00\x00", 10, -EILSEQ }, /* whole, bad CRC */
                { "\x00\x00\x00\x00\x00\x00\x00\x00", 8, -EOVERFLOW }, /* zero fill */
        };
        three t;

        three_make(&t);
        for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
                uint8_t b[sizeof t.buf + 16];
                const uint8_t *e;
                size_t n, k = 0;
                int r;

                memcpy(b, t.buf, t.bounds[3]);
                memcpy(b + t.bounds[3], tails[i].bytes, tails[i].len);
                proto_cursor c = proto_cursor_make(b, t.bounds[3] + tails[i].len);
                while ((r = proto_record_next(&c, &e, &n)) == 0)
                        k++;
                assert_int_equal(k, 3);
                assert_int_equal(r, tails[i].want);
                assert_int_equal(c.len, tails[i].len);
                assert_ptr_equal(c.p, b + t.bounds[3]);
        }
}

/* The SSE4.2 path and the table agree on every length and alignment, and
 * both chain. */
static void test_crc32c_paths_agree(void **state) {
        uint8_t buf[300];
        uint32_t x = 12345;
        for (size_t i = 0; i < sizeof buf; i++) {
                x = x * 1103515245u + 12345u;
                buf[i] = (uint8_t) (x >> 16);
        }
        for (size_t off = 0; off < 9; off++)
                for (size_t n = 0; n + off <= sizeof buf; n++)
                        assert_int_equal(proto_crc32c(0, buf + off, n), proto_crc32c_portable(0, buf + off, n));
        uint32_t whole = proto_crc32c(0, buf, sizeof buf);
        assert_int_equal(proto_crc32c(proto_crc32c(0, buf, 13), buf + 13, sizeof buf - 13), whole);
        assert_int_equal(proto_crc32c_portable(proto_crc32c_portable(0, buf, 13), buf + 13, sizeof buf - 13), whole);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_crc32c_paths_agree),
                cmocka_unit_test(test_crc32c_rfc3720),
                cmocka_unit_test(test_crc32c_rfc3720_pdu),
                cmocka_unit_test(test_crc32c_every_table_entry),
                cmocka_unit_test(test_crc32c_check_and_chain),
                cmocka_unit_test(test_record_size),
                cmocka_unit_test(test_encode_known_answer),
                cmocka_unit_test(test_encode_errors),
                cmocka_unit_test(test_roundtrip_max),
                cmocka_unit_test(test_roundtrip_three),
                cmocka_unit_test(test_truncation_every_offset),
                cmocka_unit_test(test_flipped_bits),
                cmocka_unit_test(test_zero_and_oversized),
                cmocka_unit_test(test_trailing_garbage),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
