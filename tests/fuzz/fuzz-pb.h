/* protobuf-c helpers for the harnesses that decode messages. */
#pragma once

#include <stdbool.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

/* fuzz_pb_has_field0: whether m, or a message inside it, kept an unknown
 * field numbered 0.
 *
 * protobuf-c 1.4.1 refuses field number 0 only in a one-byte tag
 * (parse_tag_and_wiretype tests (data[0] & 0xf8) == 0): an over-long tag
 * such as 82 00 passes as field 0 and is kept among the unknown fields.
 * pack() writes it back canonically (02), which unpack() then refuses, so
 * such a message does not survive a pack/unpack round trip. provsign never
 * re-packs a message it decoded, so this is a protobuf-c quirk to step
 * around, not a provsign bug. */
static inline bool fuzz_pb_has_field0(const ProtobufCMessage *m) {
        const ProtobufCMessageDescriptor *d = m->descriptor;

        for (unsigned i = 0; i < m->n_unknown_fields; i++)
                if (m->unknown_fields[i].tag == 0)
                        return true;
        for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];
                const char *base = (const char *) m;

                if (f->type != PROTOBUF_C_TYPE_MESSAGE)
                        continue;
                /* memcpy: the offsets come from the descriptor, not a type */
                if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
                        uint32_t which;
                        memcpy(&which, base + f->quantifier_offset, sizeof which);
                        if (which != f->id)
                                continue;
                }
                if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                        ProtobufCMessage **sub;
                        size_t n;
                        memcpy(&n, base + f->quantifier_offset, sizeof n);
                        memcpy(&sub, base + f->offset, sizeof sub);
                        for (size_t k = 0; k < n; k++)
                                if (sub[k] && fuzz_pb_has_field0(sub[k]))
                                        return true;
                } else {
                        const ProtobufCMessage *sub;
                        memcpy(&sub, base + f->offset, sizeof sub);
                        if (sub && fuzz_pb_has_field0(sub))
                                return true;
                }
        }
        return false;
}
