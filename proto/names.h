/* Names of the protocol's enums, one table each, shared by agent, library,
 * CLI and (later) the log tools. The numeric values are those of
 * proto/provsign.proto. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* proto_status_name: "OK", "PERMISSION_DENIED", ...; "UNKNOWN_STATUS" for a
 * value outside the enum. Static string. */
const char *proto_status_name(int status);
bool proto_status_known(int status);

/* Key algorithms: "ecdsa-p256", "ecdsa-p384", "rsa-3072" (config and CLI
 * spelling). _from_name returns the enum value or -EINVAL. */
const char *proto_key_algorithm_name(int alg);
int proto_key_algorithm_from_name(const char *name);
/* The digest a key algorithm signs (SHA256 for P-256 and RSA, SHA384 for P-384);
 * 0 for an unknown algorithm. */
int proto_key_algorithm_digest(int alg);

/* Digest algorithms: "sha256", "sha384". */
const char *proto_digest_name(int dalg);
int proto_digest_from_name(const char *name);
size_t proto_digest_length(int dalg); /* 0 when unknown */

/* proto_digest_spec_parse: parses "sha256:HEX" / "sha384:HEX" (lowercase or
 * uppercase hex, exact length). Writes the digest to out (>= 48 bytes) and
 * returns its length with *ret_alg set, or -EINVAL. */
int proto_digest_spec_parse(const char *spec, int *ret_alg, uint8_t out[48], size_t *ret_len);
/* The same for spec[0..len), not NUL-terminated (an annotation value read
 * off an entry's bytes). */
int proto_digest_spec_parse_n(const char *spec, size_t len, int *ret_alg, uint8_t out[48], size_t *ret_len);

const char *proto_key_state_name(int state); /* "active", "retired", ... */

/* proto_audit_event_name: "SIGN", "KEY_ROTATE", ...; NULL for 0 or a value
 * outside the enum. Static string. */
const char *proto_audit_event_name(int event);

/* proto_digest_spec: "sha256:HEX" of a digest (the inverse of
 * proto_digest_spec_parse), in a new string the caller frees; NULL when out
 * of memory or len > 64 KiB. */
char *proto_digest_spec(int digest_algorithm, const uint8_t *digest, size_t len);
