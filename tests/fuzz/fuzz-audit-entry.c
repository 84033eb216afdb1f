/* Fuzzes the decoding of audit log entries: the input is the entry bytes of
 * one record (or a receipt's leaf), decoded with
 * provsign__audit_entry__unpack() as the log replay, the receipt checks and
 * the auditor tools do.
 *
 * Invariants:
 *   - every string of a decoded entry is non-NULL and NUL-terminated, every
 *     bytes field readable, annotations has n_annotations non-NULL elements
 *     with non-NULL strings; caller may be NULL (agent events);
 *   - the enum name tables (proto/names.h) answer for any value;
 *   - re-packing: pack() writes get_packed_size() bytes, which unpack again
 *     to the same seq and pack to the same bytes (a fixed point; not for an
 *     entry with an unknown field 0, see fuzz-pb.h); when they fit a record, proto_record_encode() of them is read back by
 *     proto_record_next() unchanged, the path of an entry through the log. */

#include <errno.h>
#include <string.h>

#include "names.h"
#include "provsign.pb-c.h"
#include "record.h"

#include "fuzz-pb.h"
#include "fuzz.h"

static void check_string(const char *s) {
        FUZZ_CHECK(s);
        (void) strlen(s);
}

static void check_bytes(const ProtobufCBinaryData *b) {
        volatile uint8_t x = 0;

        FUZZ_CHECK(b->len == 0 || b->data);
        for (size_t i = 0; i < b->len; i++)
                x ^= b->data[i];
        (void) x;
}

static void check_fields(const Provsign__AuditEntry *e) {
        if (e->caller)
                check_string(e->caller->exe);
        check_string(e->principal);
        check_string(e->keyid);
        check_bytes(&e->digest);
        check_string(e->payload_type);
        FUZZ_CHECK(e->n_annotations == 0 || e->annotations);
        for (size_t i = 0; i < e->n_annotations; i++) {
                FUZZ_CHECK(e->annotations[i]);
                check_string(e->annotations[i]->key);
                check_string(e->annotations[i]->value);
        }
        check_string(e->message);
        check_string(e->request);
        check_bytes(&e->public_key_der);
        check_string(e->reason);

        FUZZ_CHECK(proto_status_name((int) e->status));
        FUZZ_CHECK(proto_status_known((int) e->status) == (strcmp(proto_status_name((int) e->status),
                                                                  "UNKNOWN_STATUS") != 0));
        FUZZ_CHECK(proto_digest_name((int) e->digest_algorithm));
        FUZZ_CHECK(proto_key_algorithm_name((int) e->algorithm));
}

static uint8_t *pack(const Provsign__AuditEntry *e, size_t *ret_len) {
        size_t n = provsign__audit_entry__get_packed_size(e);
        uint8_t *buf = malloc(n ? n : 1);

        FUZZ_CHECK(buf);
        FUZZ_CHECK(provsign__audit_entry__pack(e, buf) == n);
        *ret_len = n;
        return buf;
}

static void check_record(const uint8_t *entry, size_t len) {
        static uint8_t rec[PROTO_RECORD_MAX_ENTRY + PROTO_RECORD_OVERHEAD];
        const uint8_t *got = NULL;
        size_t rec_len = 0, got_len = 0;
        proto_cursor c;
        int r;

        r = proto_record_encode(entry, len, rec, sizeof rec, &rec_len);
        if (len == 0 || len > PROTO_RECORD_MAX_ENTRY) {
                FUZZ_CHECK(r == -EOVERFLOW);
                return;
        }
        FUZZ_CHECK(r == 0 && rec_len == proto_record_size(len));
        c = proto_cursor_make(rec, rec_len);
        FUZZ_CHECK(proto_record_next(&c, &got, &got_len) == 0);
        FUZZ_CHECK(got_len == len && memcmp(got, entry, len) == 0);
        FUZZ_CHECK(c.len == 0);
        FUZZ_CHECK(proto_record_next(&c, &got, &got_len) == -ENODATA);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Provsign__AuditEntry *e, *again;
        size_t n1, n2;
        uint8_t *p1, *p2;

        if (size > PROTO_RECORD_MAX_ENTRY)
                return 0;
        e = provsign__audit_entry__unpack(NULL, size, data);
        if (!e)
                return 0;
        check_fields(e);

        p1 = pack(e, &n1);
        check_record(p1, n1);
        again = provsign__audit_entry__unpack(NULL, n1, p1);
        if (fuzz_pb_has_field0(&e->base)) {
                /* protobuf-c refuses what it wrote; nothing to compare */
                if (again)
                        provsign__audit_entry__free_unpacked(again, NULL);
                goto out;
        }
        FUZZ_CHECK(again);
        FUZZ_CHECK(again->seq == e->seq && again->time_us == e->time_us && again->event == e->event);
        check_fields(again);
        p2 = pack(again, &n2);
        FUZZ_CHECK(n2 == n1 && memcmp(p1, p2, n1) == 0);
        free(p2);
        provsign__audit_entry__free_unpacked(again, NULL);
out:
        free(p1);
        provsign__audit_entry__free_unpacked(e, NULL);
        return 0;
}
