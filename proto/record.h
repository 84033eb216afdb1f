/* Audit log records on disk (docs/formats.md "Log records and segments").
 *
 *     record = u32 BE length ‖ entry bytes ‖ u32 BE CRC32C(entry bytes)
 *
 * The entry is a serialized AuditEntry; its length is 1..PROTO_RECORD_MAX_ENTRY.
 * CRC32C is the Castagnoli CRC of RFC 3720 §12.1 / appendix B.4 (reflected
 * polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF).
 *
 * Log files are untrusted bytes: proto_record_next() walks them with a
 * proto_cursor and never reads outside it. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

#define PROTO_RECORD_MAX_ENTRY (64u * 1024u)
#define PROTO_RECORD_HEADER 4u  /* the length */
#define PROTO_RECORD_TRAILER 4u /* the CRC32C */
#define PROTO_RECORD_OVERHEAD (PROTO_RECORD_HEADER + PROTO_RECORD_TRAILER)

/* proto_crc32c: CRC32C of n bytes at p, continuing from crc. Start with 0:
 * proto_crc32c(0, "123456789", 9) == 0xE3069283, and
 * proto_crc32c(proto_crc32c(0, a, na), b, nb) == the CRC of a ‖ b.
 * The pre- and post-inversion of RFC 3720 B.4 happen inside, so the value
 * passed in and returned is always a finished CRC. */
uint32_t proto_crc32c(uint32_t crc, const void *p, size_t n);
/* proto_crc32c_portable: the same function without the SSE4.2 fast path
 * (tests check both agree). */
uint32_t proto_crc32c_portable(uint32_t crc, const void *p, size_t n);

/* proto_record_size: bytes a record holding an entry of entry_len bytes
 * takes on disk (entry_len + 8), or 0 if entry_len is 0 or over
 * PROTO_RECORD_MAX_ENTRY, i.e. not encodable. */
size_t proto_record_size(size_t entry_len);

/* proto_record_encode: writes the record for entry[0..len) to out.
 * 0 with *ret_len = proto_record_size(len); -EOVERFLOW if len is 0 or over
 * PROTO_RECORD_MAX_ENTRY (the lengths proto_record_next refuses); -ENOBUFS if
 * out_size is too small. Nothing is written to out on failure. */
int proto_record_encode(const uint8_t *entry, size_t len, uint8_t *out, size_t out_size, size_t *ret_len);

/* proto_record_next: parses one record at the cursor.
 *
 *   0          a good record: *ret_entry borrows the entry bytes (valid while
 *              the buffer under the cursor lives), *ret_len is their length,
 *              the cursor has moved past the record.
 *   -ENODATA   clean end: the cursor is empty.
 *   -EBADMSG   truncated: fewer than 4 bytes of length, or fewer bytes than
 *              the length announces (entry plus CRC). Such a record always
 *              runs to the end of the buffer: there are no bytes after it.
 *              When the buffer is a whole file this is a torn final write.
 *   -EOVERFLOW the length is 0 or over PROTO_RECORD_MAX_ENTRY (checked before
 *              truncation, so a huge length is never waited for).
 *   -EILSEQ    the CRC32C does not match the entry.
 *
 * On any failure the cursor and the out-parameters are untouched, so the bad
 * record starts at offset = original length − c->len.
 *
 * The caller tells a torn tail from corruption (docs/formats.md: cut the first,
 * refuse to start on the second): -EBADMSG is by construction at the tail.
 * For -EILSEQ the record's extent is known from its length field,
 * proto_record_size(proto_get_u32be(c->p)); it is the final record iff that
 * equals c->len. -EOVERFLOW (e.g. a zero-filled tail, length 0) gives no
 * extent; whether it may be cut is the caller's policy. */
int proto_record_next(proto_cursor *c, const uint8_t **ret_entry, size_t *ret_len);
