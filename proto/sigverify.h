/* Public keys and signatures over a digest: how a verifier reads a key
 * ("PUBLIC KEY" PEM or DER SPKI) and checks a signature of the agent's
 * keys over a precomputed digest (ECDSA with a DER ECDSA-Sig-Value;
 * RSASSA-PKCS1-v1_5 with the digest's hash). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "keyid.h"

/* proto_pkey_from_pem: the key of a "PUBLIC KEY" PEM, or NULL (not one,
 * or out of memory). The caller frees it with EVP_PKEY_free(). */
EVP_PKEY *proto_pkey_from_pem(const char *pem);

/* proto_pkey_keyid: the key id of pkey (lowercase hex SHA-256 of its DER
 * SPKI); false when it cannot be encoded. */
bool proto_pkey_keyid(EVP_PKEY *pkey, char out[PROTO_KEYID_HEX_LEN + 1]);

/* proto_verify_digest: whether sig verifies with pkey over digest (len
 * bytes of digest_alg, a PROVSIGN__DIGEST_ALGORITHM__*). 1 it does, 0 it
 * does not (any reason), -ENOMEM. Leaves no OpenSSL error queued. */
int proto_verify_digest(EVP_PKEY *pkey, int digest_alg, const uint8_t *digest, size_t len, const uint8_t *sig,
                        size_t sig_len);

/* proto_verify_digest_spki: proto_verify_digest() with the key given as
 * exactly one DER SPKI (0 when it is not one). */
int proto_verify_digest_spki(const uint8_t *der, size_t der_len, int digest_alg, const uint8_t *digest, size_t len,
                             const uint8_t *sig, size_t sig_len);
