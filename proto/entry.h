/* Cheap reads of an AuditEntry's leading fields without the full protobuf
 * decoder: what a replay of millions of entries needs (sequence number,
 * time, event) to decide whether an entry deserves a full decode. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct proto_entry_head {
        uint64_t seq;
        int64_t time_us;
        int event;      /* PROVSIGN__AUDIT_EVENT__* */
} proto_entry_head;

/* proto_entry_peek: reads fields 1 (seq), 2 (time_us) and 3 (event) of an
 * encoded AuditEntry, which protobuf-c writes first and in number order
 * (absent fields are zero). Stops at the first field numbered above 3.
 * 0 with *ret, or -EBADMSG when the bytes do not have that shape (another
 * encoder's field order, a truncated varint): the caller then falls back
 * to provsign__audit_entry__unpack(). */
int proto_entry_peek(const uint8_t *p, size_t n, proto_entry_head *ret);

/* What the log's index and its queries read out of an entry without
 * unpacking it. Pointers borrow the entry bytes; strings are NOT
 * NUL-terminated. Absent fields are zero / NULL with length 0. */
typedef struct proto_entry_fields {
        uint64_t seq;
        int64_t time_us;
        int event;                  /* PROVSIGN__AUDIT_EVENT__* */
        const char *principal;
        size_t principal_len;
        const char *keyid;
        size_t keyid_len;
        const uint8_t *digest;
        size_t digest_len;
} proto_entry_fields;

/* proto_entry_scan: fills f from an encoded AuditEntry (any field order,
 * protobuf wire format, bounds-checked). For each annotation, calls
 * on_annotation(ctx, value, len) with its value (borrowed, not
 * NUL-terminated) when on_annotation is not NULL. 0 or -EBADMSG (not
 * protobuf wire format). */
int proto_entry_scan(const uint8_t *p, size_t n, proto_entry_fields *f,
                     void (*on_annotation)(void *ctx, const char *value, size_t len), void *ctx);
