/* DSSE (Dead Simple Signing Envelope, https://github.com/secure-systems-lab/dsse,
 * protocol.md and envelope.md v1.0): the pre-authentication encoding that is
 * signed, and the JSON envelope that carries payload and signatures.
 *
 *     PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
 *
 * SP is one 0x20 byte, LEN the byte length as ASCII decimal without leading
 * zeros. provsign signs the digest of the PAE bytes (SHA-256, or SHA-384 for
 * P-384 keys): the agent never sees the payload.
 *
 * Envelope (JSON, keys in this order when written):
 *
 *     {"payloadType": TYPE, "payload": base64(BODY),
 *      "signatures": [{"keyid": KEYID, "sig": base64(SIGNATURE)}, ...]}
 *
 * base64 is standard, padded (proto/base64.h). The parser is strict: the
 * text is untrusted (a file, a reply), so it takes the canonical encoding
 * only, rejects duplicate and unknown keys, NUL bytes inside strings, an
 * empty or over-long signature list, and everything over the limits below.
 *
 * Errors: -EINVAL for bad caller arguments, -EBADMSG for malformed untrusted
 * text, -EMSGSIZE over a limit, -ENOMEM. Out-parameters are written only on
 * success. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "base64.h"

/* Limits. A payload is at most PROTO_BASE64_MAX_INPUT (1 MiB) bytes; the
 * envelope text at most PROTO_DSSE_MAX_ENVELOPE bytes. */
#define PROTO_DSSE_MAX_PAYLOAD PROTO_BASE64_MAX_INPUT
#define PROTO_DSSE_MAX_ENVELOPE (PROTO_BASE64_LEN(PROTO_DSSE_MAX_PAYLOAD) + 64u * 1024u)
#define PROTO_DSSE_MAX_TYPE 256u      /* payloadType bytes */
#define PROTO_DSSE_MAX_SIGS 16u       /* signatures per envelope */
#define PROTO_DSSE_MAX_SIG 1024u      /* bytes of one decoded signature (RSA-3072: 384) */
#define PROTO_DSSE_MAX_KEYID 256u     /* keyid bytes */
#define PROTO_DSSE_MAX_DIGEST 48u     /* SHA-384 */
/* The largest key bundle envelope (GetKeyBundle, `provsign verify --bundle`):
 * about 1,400 P-256 or 700 RSA-3072 keys. */
#define PROTO_KEY_BUNDLE_MAX (1024u * 1024u)

#define PROTO_DSSE_PREFIX "DSSEv1"

struct proto_dsse_sig {
        char *keyid;   /* NUL-terminated; NULL when the envelope had no keyid */
        uint8_t *sig;  /* raw signature bytes */
        size_t sig_len;
};

struct proto_dsse_envelope {
        char *payload_type; /* NUL-terminated */
        uint8_t *payload;   /* decoded; non-NULL even when empty */
        size_t payload_len;
        struct proto_dsse_sig *sigs;
        size_t n_sigs;      /* 1 .. PROTO_DSSE_MAX_SIGS */
};

/* proto_dsse_pae: the PAE bytes of (type, body[0..len)). type is a
 * NUL-terminated string of at most PROTO_DSSE_MAX_TYPE bytes; body may be
 * NULL when len is 0. 0 with *ret (caller free()s) and *ret_len; -EINVAL,
 * -EMSGSIZE (len > PROTO_DSSE_MAX_PAYLOAD), -ENOMEM. */
int proto_dsse_pae(const char *type, const uint8_t *body, size_t len, uint8_t **ret, size_t *ret_len);

/* proto_dsse_pae_digest: the digest of the PAE bytes, streamed (no copy of
 * the body). dalg is a DigestAlgorithm of proto/provsign.proto (SHA256 or
 * SHA384). Writes the digest to out and returns its length (32 or 48);
 * -EINVAL for an unknown algorithm or bad type, -EMSGSIZE, -ENOMEM. */
int proto_dsse_pae_digest(int dalg, const char *type, const uint8_t *body, size_t len,
                          uint8_t out[PROTO_DSSE_MAX_DIGEST]);

/* proto_dsse_envelope_format: the envelope JSON (compact, one line, no
 * trailing newline) for type, body[0..len) and n signatures (1 ..
 * PROTO_DSSE_MAX_SIGS; a NULL keyid is written as no "keyid" key). 0 with
 * *ret_json (NUL-terminated, caller free()s); -EINVAL, -EMSGSIZE, -ENOMEM. */
int proto_dsse_envelope_format(const char *type, const uint8_t *body, size_t len, const struct proto_dsse_sig *sigs,
                               size_t n, char **ret_json);

/* proto_dsse_envelope_parse: parses untrusted envelope text[0..len) (no NUL
 * needed). 0 with *ret (free with proto_dsse_envelope_free); -EBADMSG,
 * -EMSGSIZE, -ENOMEM. Nothing is verified here: the caller computes the PAE
 * digest of (payload_type, payload) and checks a signature. */
int proto_dsse_envelope_parse(const char *text, size_t len, struct proto_dsse_envelope **ret);

/* proto_dsse_envelope_free: frees e and everything it owns; accepts NULL. */
void proto_dsse_envelope_free(struct proto_dsse_envelope *e);
