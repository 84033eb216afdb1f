#include <errno.h>
#include <stdlib.h>

#include "frame.h"

void proto_put_u32be(uint8_t out[4], uint32_t v) {
        out[0] = (uint8_t) (v >> 24);
        out[1] = (uint8_t) (v >> 16);
        out[2] = (uint8_t) (v >> 8);
        out[3] = (uint8_t) v;
}

uint32_t proto_get_u32be(const uint8_t in[4]) {
        return (uint32_t) in[0] << 24 | (uint32_t) in[1] << 16 | (uint32_t) in[2] << 8 | in[3];
}

int proto_cursor_get_u32(proto_cursor *c, uint32_t *ret) {
        if (c->len < 4)
                return -EBADMSG;
        *ret = proto_get_u32be(c->p);
        c->p += 4;
        c->len -= 4;
        return 0;
}

int proto_cursor_get_bytes(proto_cursor *c, size_t n, const uint8_t **ret) {
        if (c->len < n)
                return -EBADMSG;
        *ret = c->p;
        c->p += n;
        c->len -= n;
        return 0;
}

int proto_frame_peek(const uint8_t *buf, size_t len, size_t max_payload, size_t *ret_payload_len) {
        if (len < PROTO_FRAME_HEADER)
                return 0;
        uint32_t n = proto_get_u32be(buf);
        if (n > max_payload)
                return -EMSGSIZE;
        *ret_payload_len = n;
        return 1;
}

int proto_frame_pack(const ProtobufCMessage *msg, uint8_t **ret_buf, size_t *ret_len) {
        size_t n = protobuf_c_message_get_packed_size(msg);
        if (n > PROTO_FRAME_MAX)
                return -EMSGSIZE;
        uint8_t *buf = malloc(PROTO_FRAME_HEADER + n);
        if (!buf)
                return -ENOMEM;
        proto_put_u32be(buf, (uint32_t) n);
        size_t packed = protobuf_c_message_pack(msg, buf + PROTO_FRAME_HEADER);
        if (packed != n) {
                free(buf);
                return -EPROTO;
        }
        *ret_buf = buf;
        *ret_len = PROTO_FRAME_HEADER + n;
        return 0;
}
