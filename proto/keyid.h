/* Key ids: lowercase hex SHA-256 of the public key's DER SubjectPublicKeyInfo
 * (docs/formats.md). The raw 32 bytes are the token object's CKA_ID. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_KEYID_LEN 32u
#define PROTO_KEYID_HEX_LEN 64u

void proto_keyid_compute(const uint8_t *spki_der, size_t len, uint8_t out[PROTO_KEYID_LEN]);
void proto_keyid_hex(const uint8_t *spki_der, size_t len, char out[PROTO_KEYID_HEX_LEN + 1]);

/* proto_keyid_hex_valid: exactly 64 lowercase hex digits. */
bool proto_keyid_hex_valid(const char *s);

/* The largest DER SPKI taken (a frame's worth). */
#define PROTO_SPKI_MAX (64u * 1024u)

/* proto_spki_pem_encode: the PEM text ("-----BEGIN PUBLIC KEY-----",
 * 64-column base64 lines, a trailing newline; the text of OpenSSL's
 * PEM_write_PUBKEY()) of the DER bytes, as they are. 0 with *ret (caller
 * frees), -EINVAL for len 0 or over PROTO_SPKI_MAX, -ENOMEM. */
int proto_spki_pem_encode(const uint8_t *der, size_t len, char **ret);

/* proto_spki_pem: proto_spki_pem_encode() of der after checking that it is
 * exactly one SPKI (-EINVAL otherwise). */
int proto_spki_pem(const uint8_t *der, size_t len, char **ret);
