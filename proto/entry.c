#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "entry.h"
#include "frame.h"
#include "merkle.h"

/* Field numbers of AuditEntry and Annotation (proto/provsign.proto). */
enum {
        ENTRY_SEQ = 1,
        ENTRY_TIME_US = 2,
        ENTRY_EVENT = 3,
        ENTRY_PRINCIPAL = 5,
        ENTRY_KEYID = 6,
        ENTRY_DIGEST = 8,
        ENTRY_ANNOTATIONS = 10,
        ENTRY_PURGED_LEAF_HASH = 21,
        ENTRY_PURGED_PADDING = 24,
        ANNOTATION_VALUE = 2,
};
enum { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_I32 = 5 };

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
                if (field == ENTRY_SEQ)
                        h.seq = v;
                else if (field == ENTRY_TIME_US)
                        h.time_us = (int64_t) v;
                else
                        h.event = v > 0x7fffffff ? -1 : (int) v;
                last = field;
        }
        *ret = h;
        return 0;
}

/* The next field: *field, *wire; a varint's value in *v, a LEN field's
 * bytes in *data / *len; 64- and 32-bit fields are skipped. */
static int next_field(proto_cursor *c, uint32_t *field, uint32_t *wire, uint64_t *v, const uint8_t **data,
                      size_t *len) {
        uint64_t tag, l;
        if (get_varint(c, &tag) < 0 || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX)
                return -EBADMSG;
        *field = (uint32_t) (tag >> 3);
        *wire = (uint32_t) (tag & 7);
        switch (*wire) {
        case WIRE_VARINT:
                return get_varint(c, v);
        case WIRE_I64:
                return proto_cursor_get_bytes(c, 8, data);
        case WIRE_I32:
                return proto_cursor_get_bytes(c, 4, data);
        case WIRE_LEN:
                if (get_varint(c, &l) < 0 || l > c->len)
                        return -EBADMSG;
                *len = (size_t) l;
                return proto_cursor_get_bytes(c, (size_t) l, data);
        default:
                return -EBADMSG;
        }
}

static int scan_annotation(const uint8_t *p, size_t n, void (*on_annotation)(void *ctx, const char *value, size_t len),
                           void *ctx) {
        proto_cursor c = proto_cursor_make(p, n);
        while (c.len > 0) {
                uint32_t field, wire;
                uint64_t v;
                const uint8_t *d = NULL;
                size_t l = 0;
                if (next_field(&c, &field, &wire, &v, &d, &l) < 0)
                        return -EBADMSG;
                if (field == ANNOTATION_VALUE && wire == WIRE_LEN)
                        on_annotation(ctx, (const char *) d, l);
        }
        return 0;
}

int proto_entry_scan(const uint8_t *p, size_t n, proto_entry_fields *f,
                     void (*on_annotation)(void *ctx, const char *value, size_t len), void *ctx) {
        proto_cursor c = proto_cursor_make(p, n);
        memset(f, 0, sizeof *f);
        while (c.len > 0) {
                uint32_t field, wire;
                uint64_t v = 0;
                const uint8_t *d = NULL;
                size_t l = 0;
                if (next_field(&c, &field, &wire, &v, &d, &l) < 0)
                        return -EBADMSG;
                if (wire == WIRE_VARINT) {
                        if (field == ENTRY_SEQ)
                                f->seq = v;
                        else if (field == ENTRY_TIME_US)
                                f->time_us = (int64_t) v;
                        else if (field == ENTRY_EVENT)
                                f->event = v > 0x7fffffff ? -1 : (int) v;
                        continue;
                }
                if (wire != WIRE_LEN)
                        continue;
                if (field == ENTRY_PRINCIPAL) {
                        f->principal = (const char *) d;
                        f->principal_len = l;
                } else if (field == ENTRY_KEYID) {
                        f->keyid = (const char *) d;
                        f->keyid_len = l;
                } else if (field == ENTRY_DIGEST) {
                        f->digest = d;
                        f->digest_len = l;
                } else if (field == ENTRY_PURGED_LEAF_HASH) {
                        f->purged_leaf_hash = d;
                        f->purged_leaf_hash_len = l;
                } else if (field == ENTRY_ANNOTATIONS && on_annotation &&
                           scan_annotation(d, l, on_annotation, ctx) < 0)
                        return -EBADMSG;
        }
        return 0;
}

/* ---- Retention: stubs ---- */


int proto_entry_purged_hash(const uint8_t *p, size_t n, uint8_t out[32]) {
        proto_entry_head h;
        proto_entry_fields f;
        if (proto_entry_peek(p, n, &h) == 0 && h.event != PROTO_ENTRY_EVENT_PURGED)
                return 0;
        if (proto_entry_scan(p, n, &f, NULL, NULL) < 0)
                return -EBADMSG;
        if (f.event != PROTO_ENTRY_EVENT_PURGED)
                return 0;
        if (f.purged_leaf_hash_len != 32)
                return -EBADMSG;
        memcpy(out, f.purged_leaf_hash, 32);
        return 1;
}

int proto_entry_leaf_hash(const uint8_t *p, size_t n, uint8_t out[32]) {
        int r = proto_entry_purged_hash(p, n, out);
        if (r != 0)
                return r < 0 ? r : 0;
        return proto_merkle_leaf_hash(p, n, out);
}

static size_t put_varint(uint8_t *o, uint64_t v) {
        size_t i = 0;
        while (v >= 0x80) {
                o[i++] = (uint8_t) (v | 0x80);
                v >>= 7;
        }
        o[i++] = (uint8_t) v;
        return i;
}

static size_t varint_len(uint64_t v) {
        uint8_t tmp[10];
        return put_varint(tmp, v);
}

int proto_entry_stub(const uint8_t *p, size_t n, uint8_t *out) {
        proto_entry_head h;
        uint8_t hash[32], s[64];
        if (proto_entry_peek(p, n, &h) < 0)
                return -EBADMSG;
        int r = proto_merkle_leaf_hash(p, n, hash);
        if (r < 0)
                return r;
        size_t k = 0;
        s[k++] = ENTRY_SEQ << 3 | WIRE_VARINT;
        k += put_varint(s + k, h.seq);
        s[k++] = ENTRY_TIME_US << 3 | WIRE_VARINT;
        k += put_varint(s + k, (uint64_t) h.time_us);
        s[k++] = ENTRY_EVENT << 3 | WIRE_VARINT;
        k += put_varint(s + k, PROTO_ENTRY_EVENT_PURGED);
        k += put_varint(s + k, ENTRY_PURGED_LEAF_HASH << 3 | WIRE_LEN);
        s[k++] = 32;
        memcpy(s + k, hash, 32);
        k += 32;
        /* The padding: empty fields of 3 bytes until one field (tag,
         * length, zeros) fills the rest exactly. */
        size_t tag = varint_len(ENTRY_PURGED_PADDING << 3 | WIRE_LEN);
        if (n < k || (n > k && n - k < tag + 1))
                return -EMSGSIZE;
        size_t rest = n - k, empties = 0, len = 0;
        for (;;) {
                bool fit = false;
                for (size_t vl = 1; vl <= 3 && !fit; vl++)
                        if (rest == 0 || (rest >= tag + vl && varint_len(rest - tag - vl) == vl)) {
                                len = rest ? rest - tag - vl : 0;
                                fit = true;
                        }
                if (fit)
                        break;
                if (rest < 2 * (tag + 1))
                        return -EMSGSIZE;
                rest -= tag + 1;
                empties++;
        }
        memcpy(out, s, k);
        for (size_t i = 0; i < empties; i++) {
                k += put_varint(out + k, ENTRY_PURGED_PADDING << 3 | WIRE_LEN);
                out[k++] = 0;
        }
        if (k < n) {
                k += put_varint(out + k, ENTRY_PURGED_PADDING << 3 | WIRE_LEN);
                k += put_varint(out + k, len);
                memset(out + k, 0, len);
                k += len;
        }
        return k == n ? 0 : -EMSGSIZE;
}
