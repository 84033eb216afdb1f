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
        const uint8_t *purged_leaf_hash; /* a stub's (ENTRY_PURGED) */
        size_t purged_leaf_hash_len;
} proto_entry_fields;

/* proto_entry_scan: fills f from an encoded AuditEntry (any field order,
 * protobuf wire format, bounds-checked). For each annotation, calls
 * on_annotation(ctx, value, len) with its value (borrowed, not
 * NUL-terminated) when on_annotation is not NULL. 0 or -EBADMSG (not
 * protobuf wire format). */
int proto_entry_scan(const uint8_t *p, size_t n, proto_entry_fields *f,
                     void (*on_annotation)(void *ctx, const char *value, size_t len), void *ctx);

/* ---- Retention: stubs of purged entries (docs/log-tiles.md "Retention") ---- */

#define PROTO_ENTRY_EVENT_PURGED 11 /* PROVSIGN__AUDIT_EVENT__ENTRY_PURGED */

/* proto_entry_purged_hash: 1 with out = the purged entry's leaf hash when
 * p[0..n) is a stub (event ENTRY_PURGED with a 32-byte purged_leaf_hash),
 * 0 when it is any other entry, -EBADMSG for a stub without its hash or
 * bytes that are not protobuf. Cheap for other entries (the head only). */
int proto_entry_purged_hash(const uint8_t *p, size_t n, uint8_t out[32]);

/* proto_entry_leaf_hash: the entry's Merkle leaf hash: a stub's
 * purged_leaf_hash, or SHA-256(0x00 ‖ p[0..n)) (proto_merkle_leaf_hash). */
int proto_entry_leaf_hash(const uint8_t *p, size_t n, uint8_t out[32]);

/* proto_entry_stub: writes into out[0..n) (n = the entry's own length;
 * out may be p) the stub of entry p[0..n): {seq, time_us, event =
 * ENTRY_PURGED, purged_leaf_hash = its leaf hash, purged_padding = zeros
 * so that the stub is exactly n bytes}. 0; -EMSGSIZE when the entry is too
 * short to hold its stub (it is then kept); -EBADMSG (not an entry). */
int proto_entry_stub(const uint8_t *p, size_t n, uint8_t *out);
