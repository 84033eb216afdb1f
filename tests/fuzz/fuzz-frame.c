/* Fuzzes the socket framing (proto/frame.h): the input is a receive buffer
 * as the agent (Requests) or the library (Responses) sees it.
 *
 * Invariants:
 *   - proto_frame_peek returns 0 exactly when fewer than 4 bytes are
 *     buffered, 1 with the big-endian length when that length is within the
 *     limit, -EMSGSIZE when it is over; it never reports a length beyond the
 *     limit and writes nothing unless it returns 1 (for several limits);
 *   - the proto_cursor getters either move by exactly what they return or
 *     fail with -EBADMSG and leave the cursor untouched; what they borrow
 *     lies inside the buffer;
 *   - walking the buffer frame by frame as the server does (peek, wait for
 *     the whole payload, unpack) never reads outside it, and every unpacked
 *     Request or Response is freed. */

#include <errno.h>
#include <string.h>

#include "frame.h"
#include "provsign.pb-c.h"

#include "fuzz.h"

static void check_peek(const uint8_t *data, size_t size, size_t max) {
        size_t len = (size_t) -1;
        int r = proto_frame_peek(data, size, max, &len);

        if (size < PROTO_FRAME_HEADER) {
                FUZZ_CHECK(r == 0);
                FUZZ_CHECK(len == (size_t) -1);
                return;
        }
        uint32_t announced = proto_get_u32be(data);
        if (announced > max) {
                FUZZ_CHECK(r == -EMSGSIZE);
                FUZZ_CHECK(len == (size_t) -1);
                return;
        }
        FUZZ_CHECK(r == 1);
        FUZZ_CHECK(len == announced);
        FUZZ_CHECK(len <= max);
}

/* The cursor's contract, driven by the input's own bytes: u32 lengths, each
 * followed by that many bytes (the shape of frames and records). */
static void check_cursor(const uint8_t *data, size_t size) {
        proto_cursor c = proto_cursor_make(data, size);

        for (;;) {
                proto_cursor before = c;
                const uint8_t *got = NULL;
                uint32_t n = 0;

                if (proto_cursor_get_u32(&c, &n) < 0) {
                        FUZZ_CHECK(before.len < 4);
                        FUZZ_CHECK(c.p == before.p && c.len == before.len);
                        break;
                }
                FUZZ_CHECK(c.p == before.p + 4 && c.len == before.len - 4);
                FUZZ_CHECK(n == proto_get_u32be(before.p));

                before = c;
                if (proto_cursor_get_bytes(&c, n, &got) < 0) {
                        FUZZ_CHECK(before.len < n);
                        FUZZ_CHECK(c.p == before.p && c.len == before.len);
                        FUZZ_CHECK(got == NULL);
                        break;
                }
                FUZZ_CHECK(got == before.p);
                FUZZ_CHECK(c.p == before.p + n && c.len == before.len - n);
                FUZZ_CHECK(got >= data && (size_t) (got - data) + n <= size);
        }
        FUZZ_CHECK(c.p >= data && (size_t) (c.p - data) + c.len == size);
}

/* server.c's loop: a frame is unpacked only once the whole payload is
 * buffered; an over-limit header ends the connection. */
static void walk_frames(const uint8_t *data, size_t size) {
        size_t off = 0;

        for (;;) {
                size_t len = 0;
                int r = proto_frame_peek(data + off, size - off, PROTO_FRAME_MAX, &len);

                if (r <= 0)
                        break;
                FUZZ_CHECK(len <= PROTO_FRAME_MAX);
                if (size - off - PROTO_FRAME_HEADER < len)
                        break; /* the rest has not arrived */

                const uint8_t *payload = data + off + PROTO_FRAME_HEADER;
                Provsign__Request *req = provsign__request__unpack(NULL, len, payload);
                if (req)
                        provsign__request__free_unpacked(req, NULL);
                Provsign__Response *resp = provsign__response__unpack(NULL, len, payload);
                if (resp)
                        provsign__response__free_unpacked(resp, NULL);

                off += PROTO_FRAME_HEADER + len;
        }
        FUZZ_CHECK(off <= size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const size_t limits[] = { 0, 1, 4096, PROTO_FRAME_MAX - 1, PROTO_FRAME_MAX, UINT32_MAX - 1,
                                         UINT32_MAX, (size_t) -1 };

        for (size_t i = 0; i < FUZZ_N_ELEMENTS(limits); i++)
                check_peek(data, size, limits[i]);
        check_cursor(data, size);
        walk_frames(data, size);
        return 0;
}
