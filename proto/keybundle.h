/* The key bundle: every key an agent ever had, with its state and times,
 * as a JSON document the log key signs in a DSSE envelope of payloadType
 * PROTO_KEY_BUNDLE_TYPE (docs/formats.md, "Key bundle"). One writer (the
 * agent's GetKeyBundle) and one reader (`provsign verify`), both here.
 *
 *   {"version": 1, "origin": LOG, "log_keyid": HEX, "log_size": N,
 *    "issued": TIME, ["principal": P,] "keys": [
 *      {"keyid", "principal", "generation", "algorithm", "state", "created",
 *       "retired", "revoked", "reason", "compromised_since", "destroyed",
 *       "public_key_pem"}, ...]}
 *
 * Times are proto/timefmt.h's RFC 3339 UTC with microseconds, or null. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "dsse.h"

#define PROTO_KEY_BUNDLE_TYPE "application/vnd.provsign.keybundle.v1+json"
#define PROTO_BUNDLE_MAX_KEYS 100000u

/* "no time" in the int64 fields below (JSON null) */
#define PROTO_BUNDLE_NO_TIME INT64_C(-1)

/* One key of a bundle. */
struct proto_bundle_key {
        char keyid[65];
        char *principal;
        uint32_t generation;
        int algorithm;                /* enum KeyAlgorithm */
        int state;                    /* enum KeyState */
        int64_t created_us, retired_us, revoked_us, compromised_since_us, destroyed_us; /* or PROTO_BUNDLE_NO_TIME */
        char *reason;                 /* NULL when null */
        char *pem;                    /* the public key ("PUBLIC KEY" PEM) */
};

/* A bundle's payload. */
struct proto_bundle {
        char *origin;
        char log_keyid[65];
        uint64_t log_size;
        int64_t issued_us;
        char *principal;              /* a bundle of one principal's keys; else NULL */
        struct proto_bundle_key *keys;
        size_t n_keys;
};

/* proto_bundle_free: frees b and every string in it (as the reader made
 * them). NULL is a no-op. */
void proto_bundle_free(struct proto_bundle *b);

/* proto_bundle_parse: the bundle JSON payload (untrusted text, not the
 * envelope): every field checked for type and range, times in the format of
 * proto/timefmt.h, key ids the SHA-256 of their PEM public keys of the
 * algorithm stated, no key id twice, a revoked key with its revoked and
 * compromised_since times, at most PROTO_BUNDLE_MAX_KEYS keys. 0 and *ret
 * (free with proto_bundle_free), -EBADMSG (detail says which field),
 * -ENOMEM. */
int proto_bundle_parse(const uint8_t *json, size_t len, struct proto_bundle **ret, char *detail, size_t size);

/* proto_bundle_format: the JSON payload of b (compact, keys sorted), which
 * proto_bundle_parse() reads back. Borrowed strings only. 0 with *ret (a
 * new string, free()) and *ret_len; -ERANGE for an issued time that cannot
 * be written, -ENOMEM. */
int proto_bundle_format(const struct proto_bundle *b, char **ret, size_t *ret_len);
