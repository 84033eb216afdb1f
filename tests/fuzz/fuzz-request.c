/* Fuzzes the agent's request decoding: the input is the payload of one
 * frame, decoded with provsign__request__unpack() as dispatch_frame() does.
 *
 * It checks what the agent's validators rely on (protobuf-c guarantees
 * wire validity, the validators check meaning), reading every field they
 * read:
 *   - body_case is NOT_SET or one of the oneof's cases, and the case's
 *     submessage is non-NULL;
 *   - every string is non-NULL and NUL-terminated (proto3 "" default), every
 *     repeated field's array has its n_ elements, each non-NULL;
 *   - the proto/ helpers the validator calls keep their contracts on
 *     untrusted values: proto_digest_length() is 0, 32 or 48 and agrees with
 *     proto_digest_name(); proto_keyid_hex_valid() accepts exactly 64
 *     lowercase hex digits;
 *   - re-packing: pack() writes get_packed_size() bytes; the packed bytes
 *     unpack again and pack to the same bytes (a fixed point; not for a
 *     message with an unknown field 0, see fuzz-pb.h); when they fit a
 *     frame, proto_frame_pack() frames them and proto_frame_peek() reads the
 *     same length back;
 *   - requests_validate(), the agent's own (agent/requests.c: the validator
 *     of the request's row in the handler table), under the default limits and
 *     under tight ones (2 annotations of at most 16 bytes), so small inputs
 *     reach every limit: it answers OK or INVALID_ARGUMENT with a message;
 *     what it accepts meets the limits of docs/operations.md "Config",
 *     restated here independently (digest length of its algorithm,
 *     payload_type <= 256 printable bytes, at most max_annotations, each with
 *     a non-empty key and key + value <= max_annotation_bytes, all printable,
 *     24 KiB in all; exactly one of principal and keyid; a revocation's 64-hex
 *     keyid and 1..1024-byte reason); what the tight limits accept the default
 *     ones accept too; no body is refused. */

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "frame.h"
#include "keyid.h"
#include "names.h"
#include "provsign.pb-c.h"

#include "fuzz-pb.h"
#include "fuzz.h"

/* The validators the agent runs, not copies (from the agent's testable
 * library). */
#include "dispatch.h"
#include "requests.h"

static size_t check_string(const char *s) {
        FUZZ_CHECK(s);
        return strlen(s);
}

static void check_bytes(const ProtobufCBinaryData *b) {
        volatile uint8_t x = 0;

        FUZZ_CHECK(b->len == 0 || b->data);
        for (size_t i = 0; i < b->len; i++) /* every byte readable (ASan) */
                x ^= b->data[i];
        (void) x;
}

static bool lower_hex64(const char *s) {
        if (strlen(s) != PROTO_KEYID_HEX_LEN)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

static void check_keyid(const char *s) {
        check_string(s);
        FUZZ_CHECK(proto_keyid_hex_valid(s) == lower_hex64(s));
}

static void check_digest_alg(int alg) {
        size_t n = proto_digest_length(alg);

        FUZZ_CHECK(n == 0 || n == 32 || n == 48);
        FUZZ_CHECK(proto_digest_name(alg));
        FUZZ_CHECK(n == 0 || proto_digest_from_name(proto_digest_name(alg)) == alg);
}

static void check_sign(const Provsign__SignRequest *s) {
        check_string(s->principal);
        check_digest_alg((int) s->digest_algorithm);
        check_bytes(&s->digest);
        check_string(s->payload_type);
        FUZZ_CHECK(s->n_annotations == 0 || s->annotations);
        for (size_t i = 0; i < s->n_annotations; i++) {
                FUZZ_CHECK(s->annotations[i]);
                check_string(s->annotations[i]->key);
                check_string(s->annotations[i]->value);
        }
}

static void check_fields(const Provsign__Request *req) {
        switch (req->body_case) {
        case PROVSIGN__REQUEST__BODY__NOT_SET:
                return;
        case PROVSIGN__REQUEST__BODY_SIGN:
                FUZZ_CHECK(req->sign);
                check_sign(req->sign);
                return;
        case PROVSIGN__REQUEST__BODY_GET_PUBLIC_KEY:
                FUZZ_CHECK(req->get_public_key);
                check_string(req->get_public_key->principal);
                check_keyid(req->get_public_key->keyid);
                return;
        case PROVSIGN__REQUEST__BODY_STATUS:
                FUZZ_CHECK(req->status);
                return;
        case PROVSIGN__REQUEST__BODY_LIST_KEYS:
                FUZZ_CHECK(req->list_keys);
                check_string(req->list_keys->principal);
                return;
        case PROVSIGN__REQUEST__BODY_GET_KEY_BUNDLE:
                FUZZ_CHECK(req->get_key_bundle);
                return;
        case PROVSIGN__REQUEST__BODY_GET_CHECKPOINT:
                FUZZ_CHECK(req->get_checkpoint);
                return;
        case PROVSIGN__REQUEST__BODY_GET_LOG_KEY:
                FUZZ_CHECK(req->get_log_key);
                return;
        case PROVSIGN__REQUEST__BODY_ROTATE_KEY:
                FUZZ_CHECK(req->rotate_key);
                check_string(req->rotate_key->principal);
                FUZZ_CHECK(proto_key_algorithm_name((int) req->rotate_key->algorithm));
                return;
        case PROVSIGN__REQUEST__BODY_REVOKE_KEY:
                FUZZ_CHECK(req->revoke_key);
                check_keyid(req->revoke_key->keyid);
                check_string(req->revoke_key->reason);
                return;
        case PROVSIGN__REQUEST__BODY_DESTROY_KEY:
                FUZZ_CHECK(req->destroy_key);
                check_keyid(req->destroy_key->keyid);
                return;
        case PROVSIGN__REQUEST__BODY_EXPORT:
                FUZZ_CHECK(req->export);
                return;
        case PROVSIGN__REQUEST__BODY_FIND:
                FUZZ_CHECK(req->find);
                check_bytes(&req->find->digest);
                check_string(req->find->principal);
                return;
        case PROVSIGN__REQUEST__BODY_PROOF:
                FUZZ_CHECK(req->proof);
                return;
        case PROVSIGN__REQUEST__BODY_GET_METRICS:
                FUZZ_CHECK(req->get_metrics);
                return;
        case PROVSIGN__REQUEST__BODY_PURGE:
                FUZZ_CHECK(req->purge);
                return;
        default:
                FUZZ_CHECK(!"body_case outside the oneof");
        }
}

/* pack() into an exact buffer; caller frees. */
static uint8_t *pack(const Provsign__Request *req, size_t *ret_len) {
        size_t n = provsign__request__get_packed_size(req);
        uint8_t *buf = malloc(n ? n : 1);

        FUZZ_CHECK(buf);
        FUZZ_CHECK(provsign__request__pack(req, buf) == n);
        *ret_len = n;
        return buf;
}

static void check_repack(const Provsign__Request *req) {
        size_t n1, n2, framed_len = 0, peeked = 0;
        uint8_t *p1, *p2, *framed = NULL;
        Provsign__Request *again;
        int r;

        p1 = pack(req, &n1);
        again = provsign__request__unpack(NULL, n1, p1);
        if (fuzz_pb_has_field0(&req->base)) {
                /* protobuf-c refuses what it wrote; nothing to compare */
                if (again)
                        provsign__request__free_unpacked(again, NULL);
                again = NULL;
                p2 = NULL;
        } else {
                FUZZ_CHECK(again);
                FUZZ_CHECK(again->body_case == req->body_case && again->protocol_version == req->protocol_version);
                check_fields(again);
                p2 = pack(again, &n2);
                FUZZ_CHECK(n2 == n1 && memcmp(p1, p2, n1) == 0);
        }

        r = proto_frame_pack(&req->base, &framed, &framed_len);
        if (n1 > PROTO_FRAME_MAX)
                FUZZ_CHECK(r == -EMSGSIZE);
        else {
                FUZZ_CHECK(r == 0);
                FUZZ_CHECK(framed_len == PROTO_FRAME_HEADER + n1);
                FUZZ_CHECK(proto_frame_peek(framed, framed_len, PROTO_FRAME_MAX, &peeked) == 1 && peeked == n1);
                FUZZ_CHECK(memcmp(framed + PROTO_FRAME_HEADER, p1, n1) == 0);
        }

        free(framed);
        free(p2);
        free(p1);
        if (again)
                provsign__request__free_unpacked(again, NULL);
}

static bool printable(const char *s) {
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return false;
        return true;
}

/* What an accepted request must be (docs/operations.md "Config", agent/requests.c). */
static void check_accepted(const Provsign__Request *req, const agent_config *cfg) {
        switch (req->body_case) {
        case PROVSIGN__REQUEST__BODY_SIGN: {
                const Provsign__SignRequest *s = req->sign;
                size_t want = s->digest_algorithm == PROVSIGN__DIGEST_ALGORITHM__SHA256   ? 32
                              : s->digest_algorithm == PROVSIGN__DIGEST_ALGORITHM__SHA384 ? 48
                                                                                          : 0;
                FUZZ_CHECK(want && s->digest.len == want);
                FUZZ_CHECK(!s->principal[0] || dispatch_name_valid(s->principal));
                FUZZ_CHECK(strlen(s->payload_type) <= 256 && printable(s->payload_type));
                FUZZ_CHECK(s->n_annotations <= cfg->max_annotations);
                /* the whole must fit a reply: 24 KiB, counting 8 bytes of
                 * framing per annotation */
                size_t total = strlen(s->payload_type);
                for (size_t i = 0; i < s->n_annotations; i++) {
                        const Provsign__Annotation *an = s->annotations[i];
                        FUZZ_CHECK(an->key[0] && printable(an->key) && printable(an->value));
                        FUZZ_CHECK(strlen(an->key) + strlen(an->value) <= cfg->max_annotation_bytes);
                        total += strlen(an->key) + strlen(an->value) + 8;
                }
                FUZZ_CHECK(total <= 24 * 1024);
                return;
        }
        case PROVSIGN__REQUEST__BODY_GET_PUBLIC_KEY: {
                const Provsign__GetPublicKeyRequest *g = req->get_public_key;
                FUZZ_CHECK(!g->principal[0] != !g->keyid[0]);
                FUZZ_CHECK(!g->keyid[0] || lower_hex64(g->keyid));
                FUZZ_CHECK(!g->principal[0] || dispatch_name_valid(g->principal));
                return;
        }
        case PROVSIGN__REQUEST__BODY_REVOKE_KEY: {
                const Provsign__RevokeKeyRequest *r = req->revoke_key;
                FUZZ_CHECK(lower_hex64(r->keyid));
                FUZZ_CHECK(r->reason[0] && strlen(r->reason) <= 1024 && printable(r->reason));
                FUZZ_CHECK(r->compromised_since_us >= 0);
                return;
        }
        case PROVSIGN__REQUEST__BODY_DESTROY_KEY:
                FUZZ_CHECK(lower_hex64(req->destroy_key->keyid));
                return;
        case PROVSIGN__REQUEST__BODY_ROTATE_KEY:
                FUZZ_CHECK(dispatch_name_valid(req->rotate_key->principal));
                return;
        case PROVSIGN__REQUEST__BODY__NOT_SET:
                FUZZ_CHECK(!"a request without a body was accepted");
                return;
        default:
                return;
        }
}

/* requests_validate under one config: returns whether it accepted. */
static bool check_validate(const Provsign__Request *req, agent_config *cfg) {
        char msg[256];

        memset(msg, 0, sizeof msg);
        int st = requests_validate(cfg, req, msg, sizeof msg);
        FUZZ_CHECK(st == PROVSIGN__STATUS__OK || st == PROVSIGN__STATUS__INVALID_ARGUMENT);
        if (st != PROVSIGN__STATUS__OK) {
                FUZZ_CHECK(msg[0] && memchr(msg, 0, sizeof msg));
                return false;
        }
        check_accepted(req, cfg);
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Provsign__Request *req;

        /* dispatch_frame only ever sees one frame's payload */
        if (size > PROTO_FRAME_MAX)
                return 0;
        req = provsign__request__unpack(NULL, size, data);
        if (!req)
                return 0;
        check_fields(req);
        check_repack(req);
        {
                agent_config defaults = { .max_annotations = 32, .max_annotation_bytes = 4096 };
                agent_config tight = { .max_annotations = 2, .max_annotation_bytes = 16 };
                bool tight_ok = check_validate(req, &tight);
                bool default_ok = check_validate(req, &defaults);
                FUZZ_CHECK(!tight_ok || default_ok);
        }
        provsign__request__free_unpacked(req, NULL);
        return 0;
}
