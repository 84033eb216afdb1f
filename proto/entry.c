#include <errno.h>

#include "entry.h"
#include "frame.h"

static int get_varint(proto_cursor *c, uint64_t *ret) {
        uint64_t v = 0;
        for (size_t i = 0; i < 10; i++) {
                const uint8_t *b;
                if (proto_cursor_get_bytes(c, 1, &b) < 0)
                        return -EBADMSG;
                v |= (uint64_t) (*b & 0x7f) << (7 * i);
                if (!(*b & 0x80)) {
                        *ret = v;
                        return 0;
                }
        }
        return -EBADMSG;
}

int proto_entry_peek(const uint8_t *p, size_t n, proto_entry_head *ret) {
        proto_entry_head h = { 0 };
        proto_cursor c = proto_cursor_make(p, n);
        uint64_t last = 0;
        while (c.len > 0) {
                proto_cursor save = c;
                uint64_t tag, v;
                if (get_varint(&c, &tag) < 0)
                        return -EBADMSG;
                uint64_t field = tag >> 3;
                if (field > 3) {
                        c = save;
                        break;
                }
                /* Fields 1-3 are varints (wire type 0), once each, in order. */
                if ((tag & 7) != 0 || field == 0 || field <= last)
                        return -EBADMSG;
                if (get_varint(&c, &v) < 0)
                        return -EBADMSG;
                if (field == 1)
                        h.seq = v;
                else if (field == 2)
                        h.time_us = (int64_t) v;
                else
                        h.event = v > 0x7fffffff ? -1 : (int) v;
                last = field;
        }
        *ret = h;
        return 0;
}
