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
