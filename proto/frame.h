/* Framing of the provsign socket protocol and a bounds-checked byte cursor.
 *
 * Every message is a u32 big-endian length followed by that many bytes of a
 * protobuf Request or Response (proto/provsign.proto). Frames whose payload
 * exceeds PROTO_FRAME_MAX are refused before a byte of the payload is read
 * (frame first, parse second). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#define PROVSIGN_PROTOCOL_VERSION 1u

#define PROTO_FRAME_HEADER 4u
#define PROTO_FRAME_MAX (64u * 1024u)

/* A read-only view of untrusted bytes. Every getter checks bounds before it
 * moves and leaves the cursor untouched on failure. */
typedef struct proto_cursor {
        const uint8_t *p;
        size_t len;
} proto_cursor;

static inline proto_cursor proto_cursor_make(const void *p, size_t len) {
        return (proto_cursor){ .p = p, .len = len };
}

/* proto_cursor_get_u32: reads a big-endian u32. 0, or -EBADMSG if fewer than
 * 4 bytes remain. */
int proto_cursor_get_u32(proto_cursor *c, uint32_t *ret);

/* proto_cursor_get_bytes: borrows the next n bytes (valid while the
 * underlying buffer lives). 0, or -EBADMSG if fewer than n remain. */
int proto_cursor_get_bytes(proto_cursor *c, size_t n, const uint8_t **ret);

void proto_put_u32be(uint8_t out[4], uint32_t v);
uint32_t proto_get_u32be(const uint8_t in[4]);

/* proto_frame_peek: looks at the start of a receive buffer. Returns 1 and
 * sets *ret_payload_len when a header is present and acceptable, 0 when fewer
 * than PROTO_FRAME_HEADER bytes are buffered, -EMSGSIZE when the announced
 * payload exceeds max_payload. */
int proto_frame_peek(const uint8_t *buf, size_t len, size_t max_payload, size_t *ret_payload_len);

/* proto_frame_pack: serializes msg behind a frame header into a new buffer.
 * On success the caller owns *ret_buf (free()) of *ret_len bytes.
 * -EMSGSIZE if the payload would exceed PROTO_FRAME_MAX, -ENOMEM. */
int proto_frame_pack(const ProtobufCMessage *msg, uint8_t **ret_buf, size_t *ret_len);
