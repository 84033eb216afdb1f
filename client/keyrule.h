/* The verification rule of the key lifecycle (docs/runners.md "Verify";
 * the key bundle format is proto/keybundle.h), in one function:
 *
 *   a DSSE signature by key K for principal P is valid iff
 *     1. the key bundle envelope is signed by the trusted log key (and its
 *        signature's keyid, and the bundle's log_keyid, are that key's id);
 *     2. K is in the bundle and belongs to P;
 *     3. the signature verifies with K's public key over the DSSE PAE of
 *        the payload (SHA-256, SHA-384 for ecdsa-p384 keys);
 *     4. K is not revoked — or it is, and a receipt is given whose
 *        checkpoint the same log key signed (under the bundle's origin),
 *        whose inclusion proof holds, whose leaf is the SIGN entry of this
 *        very signature (K, P, the PAE digest), and whose log time is
 *        strictly before K's compromised_since.
 *   Retired and destroyed keys stay valid; a signature's own time does not
 *   matter for them. A receipt given for a key that is not revoked is
 *   checked all the same (a bad receipt is never passed over in silence).
 *
 * Used by `provsign verify`; the receipt checks are client/receipt.c's.
 * Internal to the CLI and its tests; nothing here prints. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsse.h"
#include "keybundle.h"
#include "receipt.h"

#define CLIENT_BUNDLE_MAX (PROTO_KEY_BUNDLE_MAX + 1) /* bytes of a bundle envelope file (+ its newline) */

/* Which rule failed; the CLI prints a message per value. */
enum client_keyrule {
        CLIENT_KEYRULE_VALID = 0,
        CLIENT_KEYRULE_BAD_LOG_KEY,          /* the trusted log key is not a PEM public key */
        CLIENT_KEYRULE_BUNDLE_MALFORMED,     /* the bundle is not a well-formed key bundle envelope */
        CLIENT_KEYRULE_BUNDLE_NOT_LOG_KEY,   /* the bundle is not signed by the trusted log key */
        CLIENT_KEYRULE_ENVELOPE_MALFORMED,   /* the envelope is not a DSSE envelope with one signature */
        CLIENT_KEYRULE_KEY_UNKNOWN,          /* the envelope's keyid is not in the bundle */
        CLIENT_KEYRULE_WRONG_PRINCIPAL,      /* the key belongs to another principal */
        CLIENT_KEYRULE_BAD_SIGNATURE,        /* the signature does not verify with the key */
        CLIENT_KEYRULE_REVOKED_NO_RECEIPT,   /* revoked key, no receipt given */
        CLIENT_KEYRULE_RECEIPT_INVALID,      /* the receipt fails a check of client/receipt.c, or another log */
        CLIENT_KEYRULE_AFTER_COMPROMISE,     /* revoked key, receipt's log time >= compromised_since */
};

/* client_keyrule_name: a short name of each value ("valid", "bundle not
 * signed by the log key", ...). Static. */
const char *client_keyrule_name(int rule);

/* What the rule looks at. Everything borrowed. */
struct client_keyrule_input {
        const char *bundle;          /* the key bundle envelope (JSON text) */
        size_t bundle_len;
        const char *log_key_pem;     /* the trusted log key, "PUBLIC KEY" PEM */
        const char *envelope;        /* the DSSE envelope to verify (JSON text) */
        size_t envelope_len;
        const char *principal;       /* the principal claimed; NULL: the bundle's for the key */
        const struct client_receipt *receipt; /* NULL: none */
};

/* What the rule found, as far as it got. Zero it before use; release with
 * client_keyrule_result_done(). */
struct client_keyrule_result {
        char detail[400];                     /* why the failing rule failed */
        struct proto_bundle *bundle;          /* once the bundle's signature held */
        const struct proto_bundle_key *key;   /* the envelope's key, once found */
        struct proto_dsse_envelope *envelope;  /* once parsed */
        int digest_algorithm;                  /* of the PAE digest, once computed */
        uint8_t digest[48];
        size_t digest_len;
        bool receipt_verified;                 /* a receipt was given and holds */
        struct client_receipt_result receipt;  /* client_receipt_verify()'s findings */
};

void client_keyrule_result_done(struct client_keyrule_result *res);

/* client_keyrule_check: the rule above. 0 (CLIENT_KEYRULE_VALID) when the
 * signature is valid, a positive enum client_keyrule for the first rule
 * that fails (res->detail says why), -ENOMEM, -EINVAL for NULL arguments. */
int client_keyrule_check(const struct client_keyrule_input *in, struct client_keyrule_result *res);
