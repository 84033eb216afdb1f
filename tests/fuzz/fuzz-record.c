/* Fuzzes the audit log's record parser (proto/record.h): the input is a
 * segment file, walked with proto_record_next() as agent/audit-replay.c replays it.
 *
 * Invariants, for every record:
 *   - success: the entry lies inside the buffer, right after its 4-byte
 *     length; its length is that length, 1..PROTO_RECORD_MAX_ENTRY; the
 *     stored CRC32C matches (both the fast and the portable CRC); the cursor
 *     moved by exactly proto_record_size(len); proto_record_encode of the
 *     entry reproduces the record's bytes;
 *   - failure: the cursor and the out-parameters are untouched, and the
 *     code is the documented one for what the bytes hold (-ENODATA empty,
 *     -EBADMSG truncated, so always at the tail, -EOVERFLOW impossible
 *     length, -EILSEQ CRC mismatch of a complete record);
 *   - CRC32C chains: crc(a ‖ b) == crc(crc(a), b), fast == portable.
 * Each good entry is also unpacked as an AuditEntry and freed. */

#include <errno.h>
#include <string.h>

#include "provsign.pb-c.h"
#include "record.h"

#include "fuzz.h"

static void check_crc(const uint8_t *data, size_t size) {
        size_t half = size / 2;
        uint32_t whole = proto_crc32c(0, data, size);

        FUZZ_CHECK(whole == proto_crc32c_portable(0, data, size));
        FUZZ_CHECK(whole == proto_crc32c(proto_crc32c(0, data, half), data + half, size - half));
        /* the fast path's unaligned head and tail */
        if (size > 1)
                FUZZ_CHECK(proto_crc32c(0, data + 1, size - 1) == proto_crc32c_portable(0, data + 1, size - 1));
}

static void check_good(const uint8_t *data, size_t size, proto_cursor before, proto_cursor after,
                       const uint8_t *entry, size_t len) {
        static uint8_t again[PROTO_RECORD_MAX_ENTRY + PROTO_RECORD_OVERHEAD];
        size_t rec = proto_record_size(len), again_len = 0;

        FUZZ_CHECK(len >= 1 && len <= PROTO_RECORD_MAX_ENTRY);
        FUZZ_CHECK(rec == len + PROTO_RECORD_OVERHEAD);
        FUZZ_CHECK(proto_get_u32be(before.p) == len);
        FUZZ_CHECK(entry == before.p + PROTO_RECORD_HEADER);
        FUZZ_CHECK(entry >= data && (size_t) (entry - data) + len <= size);
        FUZZ_CHECK(before.len >= rec);
        FUZZ_CHECK(after.p == before.p + rec && after.len == before.len - rec);

        uint32_t stored = proto_get_u32be(entry + len);
        FUZZ_CHECK(proto_crc32c(0, entry, len) == stored);
        FUZZ_CHECK(proto_crc32c_portable(0, entry, len) == stored);

        FUZZ_CHECK(proto_record_encode(entry, len, again, rec - 1, &again_len) == -ENOBUFS);
        FUZZ_CHECK(proto_record_encode(entry, len, again, sizeof again, &again_len) == 0);
        FUZZ_CHECK(again_len == rec);
        FUZZ_CHECK(memcmp(again, before.p, rec) == 0);

        Provsign__AuditEntry *e = provsign__audit_entry__unpack(NULL, len, entry);
        if (e)
                provsign__audit_entry__free_unpacked(e, NULL);
}

static void check_bad(int r, proto_cursor before, proto_cursor after, const uint8_t *entry, size_t len) {
        FUZZ_CHECK(after.p == before.p && after.len == before.len);
        FUZZ_CHECK(entry == NULL && len == (size_t) -1);

        switch (r) {
        case -ENODATA:
                FUZZ_CHECK(before.len == 0);
                return;
        case -EBADMSG: {
                FUZZ_CHECK(before.len > 0);
                if (before.len < PROTO_RECORD_HEADER)
                        return;
                uint32_t n = proto_get_u32be(before.p);
                FUZZ_CHECK(n >= 1 && n <= PROTO_RECORD_MAX_ENTRY);
                FUZZ_CHECK(before.len < proto_record_size(n)); /* runs to the end: a torn tail */
                return;
        }
        case -EOVERFLOW: {
                FUZZ_CHECK(before.len >= PROTO_RECORD_HEADER);
                uint32_t n = proto_get_u32be(before.p);
                FUZZ_CHECK(n == 0 || n > PROTO_RECORD_MAX_ENTRY);
                FUZZ_CHECK(proto_record_size(n) == 0);
                return;
        }
        case -EILSEQ: {
                FUZZ_CHECK(before.len >= PROTO_RECORD_HEADER);
                uint32_t n = proto_get_u32be(before.p);
                FUZZ_CHECK(proto_record_size(n) != 0 && before.len >= proto_record_size(n));
                FUZZ_CHECK(proto_crc32c(0, before.p + PROTO_RECORD_HEADER, n) !=
                           proto_get_u32be(before.p + PROTO_RECORD_HEADER + n));
                return;
        }
        default:
                FUZZ_CHECK(!"proto_record_next returned an undocumented code");
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        proto_cursor c = proto_cursor_make(data, size);

        check_crc(data, size);

        for (;;) {
                proto_cursor before = c;
                const uint8_t *entry = NULL;
                size_t len = (size_t) -1;
                int r = proto_record_next(&c, &entry, &len);

                if (r < 0) {
                        check_bad(r, before, c, entry, len);
                        break;
                }
                FUZZ_CHECK(r == 0);
                check_good(data, size, before, c, entry, len);
        }
        return 0;
}
