/* libprovsign — client library for the provsign signing agent.
 *
 * A CI runner asks the agent (provsign-agent) over its Unix socket to sign
 * the digest of a provenance statement with a key held in an HSM; the key
 * never leaves the token. This header is the whole public API: flat
 * provsign_* functions over opaque handles. It does not expose protobuf-c.
 *
 * Return convention of every int-returning call:
 *
 *   0            success; out-parameters (ret, last in the list) are
 *                written only on success.
 *   negative     -errno for a local or transport failure. The agent was not
 *                reached or did not answer properly:
 *                  the connect(2) errno (-ENOENT, -ECONNREFUSED, -EACCES, ...)
 *                      when the agent is unreachable;
 *                  -ECONNRESET / -EPIPE when the agent closed the connection
 *                      without answering;
 *                  -EPROTO for a reply that is malformed, oversized (over
 *                      64 KiB), undecodable, or inconsistent with the request;
 *                  -EMSGSIZE when the request would exceed 64 KiB;
 *                  -EINVAL for invalid arguments caught locally;
 *                  -ETIMEDOUT when the call's deadline passed (60 s unless
 *                      set, provsign_connect_timeout());
 *                  -ENOTCONN when an earlier transport failure on this
 *                      connection left it unusable (close it, connect again);
 *                  -ENOMEM.
 *   positive     an enum provsign_status: the agent answered and refused.
 *                provsign_last_message() then returns the agent's message.
 *
 * provsign_strerror() describes both signs. A provsign_conn is not
 * thread-safe: use one connection per thread (they are cheap), or serialize.
 * Calls block, each at most until its deadline; the library installs no
 * signal handlers and never writes to stdout/stderr, exits or aborts on
 * bad input. SIGPIPE is never raised. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The agent's refusal codes. Same numbers as Status in
 * proto/provsign.proto (checked at build time). */
enum provsign_status {
        PROVSIGN_OK = 0,
        PROVSIGN_INVALID_ARGUMENT = 1,
        PROVSIGN_PERMISSION_DENIED = 2,
        PROVSIGN_NOT_FOUND = 3,
        PROVSIGN_KEY_REVOKED = 4,
        PROVSIGN_NO_ACTIVE_KEY = 5,
        PROVSIGN_RATE_LIMITED = 6,
        PROVSIGN_HSM_UNAVAILABLE = 7,
        PROVSIGN_UNAVAILABLE = 8,
        PROVSIGN_INTERNAL = 9,
};

/* Digest algorithms of the precomputed digest handed to provsign_sign(). */
enum provsign_digest_algorithm {
        PROVSIGN_DIGEST_SHA256 = 1, /* 32 bytes */
        PROVSIGN_DIGEST_SHA384 = 2, /* 48 bytes */
};

/* Key algorithms. A newer agent may report values not listed here;
 * provsign_key_algorithm_to_string() then returns "unknown". */
enum provsign_key_algorithm {
        PROVSIGN_KEY_ECDSA_P256 = 1, /* signs SHA-256 digests, DER ECDSA signature */
        PROVSIGN_KEY_ECDSA_P384 = 2, /* signs SHA-384 digests, DER ECDSA signature */
        PROVSIGN_KEY_RSA_3072 = 3,   /* signs SHA-256 digests, RSASSA-PKCS1-v1_5 */
};

enum provsign_key_state {
        PROVSIGN_KEY_STATE_ACTIVE = 1,    /* the one key a principal signs with */
        PROVSIGN_KEY_STATE_RETIRED = 2,   /* replaced by rotation; still verifies */
        PROVSIGN_KEY_STATE_REVOKED = 3,   /* compromised or withdrawn */
        PROVSIGN_KEY_STATE_DESTROYED = 4, /* private key gone, public key kept */
};

/* Key=value pair logged with a signature. Both strings are borrowed for the
 * duration of the call. */
struct provsign_annotation {
        const char *key;
        const char *value;
};

typedef struct provsign_conn provsign_conn;
typedef struct provsign_signature provsign_signature;
typedef struct provsign_key provsign_key;
typedef struct provsign_key_list provsign_key_list;
typedef struct provsign_agent_status provsign_agent_status;
typedef struct provsign_log_key provsign_log_key;

/* Size of a Merkle tree hash of the audit log (SHA-256, RFC 9162). */
#define PROVSIGN_HASH_LEN 32
/* The most hashes an inclusion or consistency proof can have; longer ones
 * are -EPROTO. */
#define PROVSIGN_MAX_INCLUSION_PROOF 64

/* ---- Names and errors ---------------------------------------------------- */

/* provsign_status_name: the protocol name of a status ("OK",
 * "PERMISSION_DENIED", ...), or "UNKNOWN_STATUS" for a value outside the
 * enum (negative values included). Never NULL; static string. */
const char *provsign_status_name(int status);

/* provsign_strerror: a one-line description of any return value of this
 * library: 0, a positive enum provsign_status, or a negative errno. Unknown
 * values get a generic text. Never NULL; static string, thread-safe. */
const char *provsign_strerror(int r);

/* provsign_key_algorithm_to_string: "ecdsa-p256", "ecdsa-p384", "rsa-3072",
 * or "unknown". Never NULL; static string. */
const char *provsign_key_algorithm_to_string(int algorithm);

/* provsign_key_state_to_string: "active", "retired", "revoked",
 * "destroyed", or "unknown". Never NULL; static string. */
const char *provsign_key_state_to_string(int state);

/* provsign_digest_algorithm_to_string: "sha256", "sha384", or "unknown".
 * Never NULL; static string. */
const char *provsign_digest_algorithm_to_string(int digest_algorithm);

/* ---- Connections --------------------------------------------------------- */

/* provsign_default_socket: the socket path used when provsign_connect() is
 * given NULL: $PROVSIGN_AGENT_SOCK if set and non-empty (ignored in setuid
 * or otherwise privileged processes, see secure_getenv(3)), else
 * "/run/provsign/agent.sock". Never NULL; the string is borrowed from the
 * environment or static, valid until the environment changes. */
const char *provsign_default_socket(void);

/* provsign_connect: connects to the agent at path (NULL: see
 * provsign_default_socket()). On success returns 0 and *ret is a new
 * connection the caller closes with provsign_close(). Several requests may
 * be made on one connection. On failure returns the connect(2) errno
 * negated (-ENOENT, -ECONNREFUSED, -EACCES, ...), -ENAMETOOLONG for a path
 * that does not fit a sockaddr_un, -EINVAL for an empty path or NULL ret,
 * or -ENOMEM; *ret is untouched. */
int provsign_connect(const char *path, provsign_conn **ret);

/* The deadline of every call unless changed (60 s), and the longest one
 * accepted (one day). */
#define PROVSIGN_DEFAULT_TIMEOUT_MS 60000u
#define PROVSIGN_MAX_TIMEOUT_MS (24u * 3600u * 1000u)

/* provsign_connect_timeout (LIBPROVSIGN_0.6): provsign_connect() with a
 * deadline of timeout_ms milliseconds (0: none) for the connect itself
 * (an agent whose listen queue is full) and then for every call on the
 * connection: a request and its reply (each frame of a streamed reply)
 * must go through within it, else the call returns -ETIMEDOUT and the
 * connection is unusable (-ENOTCONN after). provsign_connect() is this
 * with PROVSIGN_DEFAULT_TIMEOUT_MS. -EINVAL for a timeout over
 * PROVSIGN_MAX_TIMEOUT_MS; other failures as provsign_connect(). */
int provsign_connect_timeout(const char *path, uint64_t timeout_ms, provsign_conn **ret);

/* provsign_set_timeout (LIBPROVSIGN_0.6): changes conn's deadline for the
 * calls that follow (0: none). 0, or -EINVAL for NULL conn or a timeout
 * over PROVSIGN_MAX_TIMEOUT_MS. */
int provsign_set_timeout(provsign_conn *conn, uint64_t timeout_ms);

/* provsign_close: closes the connection and frees it, with the message
 * returned by provsign_last_message(). NULL is a no-op. */
void provsign_close(provsign_conn *conn);

/* provsign_last_message: after a call on conn returned a positive status,
 * the agent's human-readable message (the status's description if the agent
 * sent none); "" after any other result. Never NULL for a non-NULL conn
 * (NULL conn: ""). Borrowed: valid until the next call on conn or
 * provsign_close(). The text comes from the agent and may contain any
 * bytes: escape it before writing it to a terminal. */
const char *provsign_last_message(const provsign_conn *conn);

/* ---- Sign ---------------------------------------------------------------- */

/* provsign_sign: asks the agent to sign a precomputed digest.
 *   principal     the signer principal, or NULL to let the agent pick the
 *                 only one this caller may sign for;
 *   digest_alg    PROVSIGN_DIGEST_SHA256 or _SHA384, digest_len 32 or 48;
 *   payload_type  media type of what was hashed, logged by the agent; NULL
 *                 for none;
 *   annotations   n_annotations key=value pairs logged with the signature
 *                 (NULL when n_annotations is 0; each key non-NULL, value
 *                 NULL means "").
 * On success returns 0 and *ret is a new signature the caller frees with
 * provsign_signature_free(); it always carries a receipt from the audit
 * log (see provsign_signature_has_receipt()). -EINVAL for a bad argument
 * (unknown digest algorithm, digest length not matching it, NULL key),
 * -EMSGSIZE when the request exceeds 64 KiB, a positive status when refused
 * (PERMISSION_DENIED, NO_ACTIVE_KEY, RATE_LIMITED, ...), or another
 * negative errno as described at the top of this header. A reply without a
 * receipt, or whose receipt does not hold together, is -EPROTO: the
 * library checks every check of `provsign receipt verify` that needs no log
 * key (the checkpoint is well-formed and of tree_size, leaf and inclusion
 * proof reproduce its root at log_seq, the leaf is the SIGN entry of this
 * signature's key, principal and digest, at log_seq and log_time). Only
 * the checkpoint's signature is left to verify, with the log key
 * (provsign_get_log_key() or, better, a copy obtained out of band). */
int provsign_sign(provsign_conn *conn,
                  const char *principal,
                  enum provsign_digest_algorithm digest_alg,
                  const void *digest,
                  size_t digest_len,
                  const char *payload_type,
                  const struct provsign_annotation *annotations,
                  size_t n_annotations,
                  provsign_signature **ret);

/* Requests provsign_sign_many() keeps unanswered on its connection when
 * its window is 0. */
#define PROVSIGN_SIGN_MANY_WINDOW 32u

/* provsign_sign_many: signs n digests (digests[i], each digest_len bytes)
 * with the same principal, digest algorithm, payload type and annotations
 * (as provsign_sign()), pipelined on one connection: up to window requests
 * (0: PROVSIGN_SIGN_MANY_WINDOW) are written before their replies are
 * read, and each reply is matched to its digest by the request id it
 * carries (by order from an agent that answers one request at a time and
 * echoes no ids). Each reply is checked exactly as provsign_sign() checks
 * its reply, receipt included.
 *
 * Per item, results[i] (n entries) is 0 with sigs[i] (n entries) a new
 * signature the caller frees with provsign_signature_free(), or sigs[i] is
 * NULL and results[i] says why: a positive status (the agent refused that
 * digest; provsign_last_message() gives the message of the lowest such
 * i), -EPROTO (its reply or receipt did not hold), or the transport error
 * that cut the connection before its reply came (-ECONNRESET, -EPIPE,
 * -ETIMEDOUT, ...: the connection is then unusable, -ENOTCONN for later
 * calls). One failed item never loses the others' signatures. Both arrays
 * are always written, also when the arguments are refused (-EINVAL,
 * -EMSGSIZE: every results[i] is that code, nothing is sent); only NULL
 * results or sigs leaves them alone (-EINVAL).
 *
 * The deadline (provsign_connect_timeout(), provsign_set_timeout()) bounds
 * each wait: the first reply must come within it of the call's start,
 * every later one within it of the reply before; a missed deadline fails
 * the items still unanswered with -ETIMEDOUT.
 *
 * Returns 0 when every digest was signed, else the result of the lowest
 * failed i. */
int provsign_sign_many(provsign_conn *conn,
                       const char *principal,
                       enum provsign_digest_algorithm digest_alg,
                       const void *const *digests,
                       size_t digest_len,
                       size_t n,
                       const char *payload_type,
                       const struct provsign_annotation *annotations,
                       size_t n_annotations,
                       size_t window,
                       int *results,
                       provsign_signature **sigs);

/* provsign_signature_keyid: lowercase hex SHA-256 of the signing key's DER
 * SubjectPublicKeyInfo (64 characters). Borrowed from sig. */
const char *provsign_signature_keyid(const provsign_signature *sig);

/* provsign_signature_algorithm: the signing key's enum
 * provsign_key_algorithm (possibly a value newer than this header). */
int provsign_signature_algorithm(const provsign_signature *sig);

/* provsign_signature_der: the signature bytes — DER ECDSA-Sig-Value for
 * ECDSA keys, PKCS#1 v1.5 for RSA — and their length in *ret_len (may be
 * NULL). Borrowed from sig; never NULL (the library refuses empty
 * signatures as -EPROTO). */
const uint8_t *provsign_signature_der(const provsign_signature *sig, size_t *ret_len);

/* provsign_signature_principal: the principal whose key signed. Borrowed
 * from sig. */
const char *provsign_signature_principal(const provsign_signature *sig);

/* provsign_signature_generation: the signing key's generation number within
 * its principal. */
uint32_t provsign_signature_generation(const provsign_signature *sig);

/* ---- Receipts ------------------------------------------------------------ */

/* A receipt proves that the signature was written to the agent's audit log
 * before it left the agent (docs/auditing.md): the log entry's
 * bytes, its position, an RFC 9162 inclusion proof and a C2SP checkpoint
 * signed by the log key. Accessors below borrow from sig (valid until
 * provsign_signature_free()); without a receipt they return 0 / NULL. */

/* provsign_signature_has_receipt: 1 when sig carries a receipt, else 0.
 * Every signature from provsign_sign() does (a reply without one is
 * -EPROTO). */
int provsign_signature_has_receipt(const provsign_signature *sig);

/* provsign_signature_log_seq: the log sequence number of the signature's
 * entry, which is also its leaf index in the log's Merkle tree. */
uint64_t provsign_signature_log_seq(const provsign_signature *sig);

/* provsign_signature_log_time_us: the entry's time, microseconds since the
 * epoch (UTC); 0 <= time < year 10000. */
int64_t provsign_signature_log_time_us(const provsign_signature *sig);

/* provsign_signature_leaf: the exact bytes of the entry (a protobuf
 * AuditEntry, proto/provsign.proto), and their length in *ret_len (may be
 * NULL); its Merkle leaf hash is SHA-256(0x00 || bytes). Borrowed. */
const uint8_t *provsign_signature_leaf(const provsign_signature *sig, size_t *ret_len);

/* provsign_signature_tree_size: the size of the tree that the checkpoint
 * signs and the inclusion proof is for; always > log_seq. */
uint64_t provsign_signature_tree_size(const provsign_signature *sig);

/* provsign_signature_inclusion_proof: the inclusion proof of RFC 9162
 * §2.1.3, leaf-to-root order: *ret_n (may be NULL; at most
 * PROVSIGN_MAX_INCLUSION_PROOF) hashes of PROVSIGN_HASH_LEN bytes each,
 * back to back (hash i starts at byte i * PROVSIGN_HASH_LEN). NULL when
 * *ret_n is 0 (a tree of one entry). Borrowed. */
const uint8_t *provsign_signature_inclusion_proof(const provsign_signature *sig, size_t *ret_n);

/* provsign_signature_checkpoint: the signed checkpoint note (C2SP
 * tlog-checkpoint: origin, tree size, base64 root, a blank line, signature
 * lines), verbatim as the agent sent it; valid UTF-8 without control
 * characters but newlines. Borrowed. */
const char *provsign_signature_checkpoint(const provsign_signature *sig);

/* provsign_signature_free: frees sig and every string it lent. NULL is a
 * no-op. */
void provsign_signature_free(provsign_signature *sig);

/* ---- Public keys --------------------------------------------------------- */

/* provsign_get_public_key: fetches a public key, by principal (its active
 * key) or by key id (64 lowercase hex digits); exactly one of principal and
 * keyid is non-NULL and non-empty, else -EINVAL. On success returns 0 and
 * *ret is a new key the caller frees with provsign_key_free(). The library
 * checks that the key id is the SHA-256 of the returned public key and that
 * the key is the one asked for (-EPROTO otherwise). Refusals: NOT_FOUND,
 * NO_ACTIVE_KEY, ...; other negative errnos as at the top of this header. */
int provsign_get_public_key(provsign_conn *conn, const char *principal, const char *keyid, provsign_key **ret);

/* Key accessors. Strings and bytes are borrowed from key (for a key
 * obtained from a list: from the list) and live until it is freed. */

/* provsign_key_keyid: 64 lowercase hex digits. */
const char *provsign_key_keyid(const provsign_key *key);
/* provsign_key_principal: the principal the key belongs to. */
const char *provsign_key_principal(const provsign_key *key);
/* provsign_key_generation: the key's generation within its principal. */
uint32_t provsign_key_generation(const provsign_key *key);
/* provsign_key_algorithm: an enum provsign_key_algorithm value. */
int provsign_key_algorithm(const provsign_key *key);
/* provsign_key_state: an enum provsign_key_state value. */
int provsign_key_state(const provsign_key *key);
/* provsign_key_created_us: creation time, microseconds since the epoch
 * (UTC); 0 when the agent does not know it. */
int64_t provsign_key_created_us(const provsign_key *key);
/* Lifecycle times (microseconds since the epoch, UTC; 0 = not so):
 * retired (a rotation replaced it), revoked (the revocation was logged),
 * compromised_since (signatures logged at or after it are invalid) and
 * destroyed (its private object was removed from the token; the public
 * key stays known). A revoked key that was also destroyed keeps the state
 * "revoked". */
int64_t provsign_key_retired_us(const provsign_key *key);
int64_t provsign_key_revoked_us(const provsign_key *key);
int64_t provsign_key_compromised_since_us(const provsign_key *key);
int64_t provsign_key_destroyed_us(const provsign_key *key);
/* provsign_key_reason: the revocation reason, or NULL. */
const char *provsign_key_reason(const provsign_key *key);
/* provsign_key_in_token: 1 when the private key object is on the token. */
int provsign_key_in_token(const provsign_key *key);

/* provsign_key_spki_der: the DER SubjectPublicKeyInfo and its length in
 * *ret_len (may be NULL). NULL with *ret_len = 0 when the agent did not
 * include the public key (key lists may omit it); a key from
 * provsign_get_public_key() always has it. */
const uint8_t *provsign_key_spki_der(const provsign_key *key, size_t *ret_len);
/* provsign_key_pem: the public key as PEM ("-----BEGIN PUBLIC KEY-----",
 * 64-column base64, trailing newline), made by the library from the SPKI
 * DER that the key id was checked against. NULL when there is no DER. */
const char *provsign_key_pem(const provsign_key *key);

/* provsign_key_free: frees a key from provsign_get_public_key(). NULL is a
 * no-op. Never call it on a key borrowed from a provsign_key_list. */
void provsign_key_free(provsign_key *key);

/* ---- Key list (operator role) -------------------------------------------- */

/* provsign_list_keys: lists every key of principal (NULL: of all
 * principals), in the agent's order. Needs the operator role, else
 * PERMISSION_DENIED. On success returns 0 and *ret is a new list the caller
 * frees with provsign_key_list_free(). */
int provsign_list_keys(provsign_conn *conn, const char *principal, provsign_key_list **ret);

/* provsign_key_list_count: number of keys in list (0 for NULL). */
size_t provsign_key_list_count(const provsign_key_list *list);

/* provsign_key_list_get: the i-th key, borrowed from list (valid until
 * provsign_key_list_free()), or NULL when i is out of range. */
const provsign_key *provsign_key_list_get(const provsign_key_list *list, size_t i);

/* provsign_key_list_free: frees list and all its keys. NULL is a no-op. */
void provsign_key_list_free(provsign_key_list *list);

/* ---- Key lifecycle (operator role) -------------------------------------- */

/* What a rotate, revoke or destroy changed, once its key event is durable
 * in the audit log. */
typedef struct provsign_key_change provsign_key_change;

/* provsign_rotate_key: makes a new key for principal inside the token (of
 * algorithm, an enum provsign_key_algorithm value, or 0 for the
 * principal's configured one), makes it active and retires the old one.
 * Signers never see an error during a rotation. provsign_revoke_key:
 * revokes keyid (reason required; compromised_since_us 0 means now): it
 * never signs again, and its signatures logged at or after
 * compromised_since_us are invalid; with auto_rotate_on_revoke the agent
 * makes a successor at once. provsign_destroy_key: removes a retired or
 * revoked key's private object from the token (refused for the active
 * key). Each needs the operator role (PERMISSION_DENIED otherwise); other
 * refusals: NOT_FOUND, INVALID_ARGUMENT, UNAVAILABLE (another operation on
 * the same principal is under way), HSM_UNAVAILABLE. On success *ret (may
 * be NULL) is a new provsign_key_change (provsign_key_change_free()). */
int provsign_rotate_key(provsign_conn *conn, const char *principal, int algorithm, provsign_key_change **ret);
int provsign_revoke_key(provsign_conn *conn, const char *keyid, const char *reason, int64_t compromised_since_us,
                        provsign_key_change **ret);
int provsign_destroy_key(provsign_conn *conn, const char *keyid, provsign_key_change **ret);

/* provsign_key_change_key: the key the request changed (rotate: the key
 * that was active before; may be NULL when there was none).
 * provsign_key_change_active: the principal's active key afterwards, or
 * NULL (NO_ACTIVE_KEY). Borrowed from kc. Neither carries the public key
 * (use provsign_get_public_key()). */
const provsign_key *provsign_key_change_key(const provsign_key_change *kc);
const provsign_key *provsign_key_change_active(const provsign_key_change *kc);
/* provsign_key_change_log_seq: the audit log entry of the (last) key event. */
uint64_t provsign_key_change_log_seq(const provsign_key_change *kc);
void provsign_key_change_free(provsign_key_change *kc);

/* ---- The audit log ------------------------------------------------------- */

/* provsign_get_checkpoint: the latest checkpoint of the agent's audit log.
 * Any connected caller may ask. On success returns 0, *ret_note is a new
 * NUL-terminated copy of the signed note as the agent sent it (the caller
 * frees it with free()) and *ret_size (may be NULL) its tree size. The
 * library checks that the note is a well-formed checkpoint of that size
 * (-EPROTO otherwise), not its signature: verify that with the log key.
 * Other failures as at the top of this header. */
int provsign_get_checkpoint(provsign_conn *conn, char **ret_note, uint64_t *ret_size);

/* provsign_get_checkpoint_consistency: provsign_get_checkpoint(), plus the
 * RFC 9162 §2.1.4 consistency proof from the tree of from_size entries (an
 * older checkpoint's size, from_size >= 1) to the returned checkpoint's
 * tree: how an auditor or a receipt holder links an older checkpoint to the
 * latest. On success also *ret_proof, *ret_n hashes of PROVSIGN_HASH_LEN
 * bytes back to back (hash i at byte i * PROVSIGN_HASH_LEN; the caller
 * frees it with free(); a valid pointer even when *ret_n is 0, which is
 * the case when from_size is the tree size). The library checks the shape
 * (at most PROVSIGN_MAX_INCLUSION_PROOF 32-byte hashes, from_size <= tree
 * size; -EPROTO otherwise); the proof itself is checked against the older
 * checkpoint's root, which the caller holds. -EINVAL for from_size 0 or a
 * NULL out-parameter (ret_size may be NULL); INVALID_ARGUMENT from the
 * agent when from_size exceeds the log. */
int provsign_get_checkpoint_consistency(provsign_conn *conn, uint64_t from_size, char **ret_note,
                                        uint64_t *ret_size, uint8_t **ret_proof, size_t *ret_n);

/* provsign_audit_purge: retention by hand (operator role): the agent
 * replaces the bodies of the log's entries older than before_us (µs since
 * the epoch, not in the future) by stubs that keep their leaf hashes
 * (whole closed segments only; key events and purges are kept) and logs a
 * PURGE entry. On success 0 with *ret_purged entries purged by this call
 * (0: nothing was old enough), the last in *ret_through_seq and the PURGE
 * entry's seq in *ret_log_seq (any of them may be NULL). PERMISSION_DENIED
 * for a caller without the operator role; others as at the top. */
int provsign_audit_purge(provsign_conn *conn, int64_t before_us, uint64_t *ret_purged, uint64_t *ret_through_seq,
                         uint64_t *ret_log_seq);

/* provsign_get_log_key: the public key that signs the log's checkpoints and
 * the origin (the log's name) it signs them under. Any connected caller
 * may ask. On success returns 0 and *ret is a new object the caller frees
 * with provsign_log_key_free(). The library checks that the key id is the
 * SHA-256 of the key and that the key and origin can make a note verifier
 * key (an ECDSA key; an origin without spaces or '+'); -EPROTO otherwise.
 * Trust: this is the agent's word on its own key. A verifier that fetches
 * the log key from the agent it is auditing proves only consistency; pin a
 * copy taken out of band. */
int provsign_get_log_key(provsign_conn *conn, provsign_log_key **ret);

/* Log key accessors. Strings and bytes are borrowed from key and live until
 * provsign_log_key_free(). */

/* provsign_log_key_origin: the log's origin, the first line of its
 * checkpoints and the key name of their signature lines. */
const char *provsign_log_key_origin(const provsign_log_key *key);
/* provsign_log_key_keyid: 64 lowercase hex digits, SHA-256 of the DER SPKI. */
const char *provsign_log_key_keyid(const provsign_log_key *key);
/* provsign_log_key_spki_der: the DER SubjectPublicKeyInfo and its length
 * in *ret_len (may be NULL). Never NULL. */
const uint8_t *provsign_log_key_spki_der(const provsign_log_key *key, size_t *ret_len);
/* provsign_log_key_pem: the key as PEM, made by the library from the DER
 * (as provsign_key_pem()). */
const char *provsign_log_key_pem(const provsign_log_key *key);
/* provsign_log_key_verifier_key: the C2SP note verifier key,
 * "<origin>+<8 hex digits of the key hash>+<base64(0x02 || DER SPKI)>",
 * made by the library. */
const char *provsign_log_key_verifier_key(const provsign_log_key *key);

/* provsign_log_key_free: frees key and everything it lent. NULL is a
 * no-op. */
void provsign_log_key_free(provsign_log_key *key);

/* ---- DSSE envelopes (LIBPROVSIGN_0.4) ------------------------------------- */

/* The largest payload provsign_sign_dsse() takes (1 MiB). */
#define PROVSIGN_DSSE_MAX_PAYLOAD (1024u * 1024u)
/* The payloadType of the key bundle (provsign_get_key_bundle()). */
#define PROVSIGN_KEY_BUNDLE_TYPE "application/vnd.provsign.keybundle.v1+json"

/* provsign_sign_dsse: signs payload as a DSSE envelope
 * (https://github.com/secure-systems-lab/dsse, v1). The payload stays here:
 * the library computes the digest of
 *     PAE = "DSSEv1" SP len(type) SP type SP len(payload) SP payload
 * (byte lengths in decimal) with the digest of the principal's active key
 * (SHA-256; SHA-384 for ecdsa-p384 keys, learned with GetPublicKey) and
 * sends only that digest in a Sign request, with payload_type and the
 * annotations logged beside it. The signature in the reply is checked
 * against the signing key before it is used.
 *   principal     as provsign_sign() (NULL: the only one this caller may
 *                 sign for);
 *   payload_type  the envelope's payloadType, non-empty, at most 256
 *                 printable characters (e.g. "application/vnd.in-toto+json");
 *   payload       payload_len bytes (at most PROVSIGN_DSSE_MAX_PAYLOAD;
 *                 NULL when 0);
 *   annotations   as provsign_sign().
 * On success returns 0, *ret_envelope is a new NUL-terminated string (free()
 * it), the envelope JSON on one line, no trailing newline:
 *     {"payloadType":TYPE,"payload":BASE64,"signatures":[{"keyid":ID,"sig":BASE64}]}
 * with keyid the signing key's id and sig the base64 of its signature (DER
 * for ECDSA); and, when ret_sig is non-NULL, *ret_sig is the signature with
 * its receipt (as from provsign_sign(); free with provsign_signature_free()).
 * Failures as provsign_sign(), plus -EMSGSIZE for a payload over the limit
 * and -EINVAL for a bad payload_type. A signature that does not verify with
 * the key the agent names is -EPROTO. */
int provsign_sign_dsse(provsign_conn *conn,
                       const char *principal,
                       const char *payload_type,
                       const void *payload,
                       size_t payload_len,
                       const struct provsign_annotation *annotations,
                       size_t n_annotations,
                       char **ret_envelope,
                       provsign_signature **ret_sig);

/* provsign_get_key_bundle: the agent's key bundle, every key it ever had
 * with its state, as a DSSE envelope (payloadType PROVSIGN_KEY_BUNDLE_TYPE)
 * signed by the log key. Any connected caller may ask. On success returns
 * 0 and *ret_envelope is a new NUL-terminated copy of the envelope JSON as
 * the agent sent it (free() it). The library checks that it is a
 * well-formed DSSE envelope of that type (-EPROTO otherwise), not its
 * signature: a verifier checks that with a copy of the log key it trusts
 * (`provsign verify --bundle`). The agent sends the envelope in parts, one
 * per frame; this reads them all (-EMSGSIZE past 1 MiB). */
int provsign_get_key_bundle(provsign_conn *conn, char **ret_envelope);

/* provsign_get_key_bundle_for (LIBPROVSIGN_0.5): the same, with only the
 * keys of principal (NULL or "": every key), for verifiers of one
 * principal's signatures; such a bundle names the principal in its
 * "principal" field. A positive PROVSIGN_NOT_FOUND for a principal the
 * agent does not know. An agent older than 0.5 ignores the principal and
 * sends every key (no "principal" field). */
int provsign_get_key_bundle_for(provsign_conn *conn, const char *principal, char **ret_envelope);

/* ---- Reading the audit log (LIBPROVSIGN_0.6) ------------------------------ */

/* Which entries an export or a find asks for. A new query asks for
 * everything; the setters narrow it. Strings are copied. */
typedef struct provsign_log_query provsign_log_query;

/* provsign_log_query_new: a new query (provsign_log_query_free()). 0, or
 * -EINVAL for NULL ret, -ENOMEM. */
int provsign_log_query_new(provsign_log_query **ret);
/* provsign_log_query_free: frees q. NULL is a no-op. */
void provsign_log_query_free(provsign_log_query *q);
/* provsign_log_query_set_range: (export) entries from_seq to to_seq
 * inclusive; to_seq 0 means up to the newest entry. -EINVAL when to_seq is
 * before from_seq. */
int provsign_log_query_set_range(provsign_log_query *q, uint64_t from_seq, uint64_t to_seq);
/* provsign_log_query_set_previous_size: (export) also ask for the
 * consistency proof from the tree of size entries (a checkpoint the caller
 * kept); 0: none. */
int provsign_log_query_set_previous_size(provsign_log_query *q, uint64_t size);
/* provsign_log_query_set_digest: (find) entries whose digest, or an
 * annotation value "sha256:HEX", is digest (digest_len bytes of
 * digest_alg, an enum provsign_digest_algorithm); digest_len 0 clears it.
 * -EINVAL for a length that does not match the algorithm. */
int provsign_log_query_set_digest(provsign_log_query *q, int digest_alg, const void *digest, size_t digest_len);
/* provsign_log_query_set_principal: (find) entries naming principal; NULL
 * or "" clears it. -ENOMEM. */
int provsign_log_query_set_principal(provsign_log_query *q, const char *principal);
/* provsign_log_query_set_time: (find) entries logged at or after since_us
 * and at or before until_us (microseconds since the epoch, UTC; 0: open).
 * -EINVAL for a negative time or since after until. */
int provsign_log_query_set_time(provsign_log_query *q, int64_t since_us, int64_t until_us);

/* A streamed entry: its sequence number and its exact bytes (a protobuf
 * AuditEntry, proto/provsign.proto), borrowed for the duration of the call
 * only. Return 0 to go on; anything else stops the stream: the call then
 * returns it (a positive value becomes -ECANCELED) and the connection is
 * unusable (its later calls return -ENOTCONN). */
typedef int (*provsign_log_entry_fn)(uint64_t seq, const uint8_t *leaf, size_t leaf_len, void *userdata);

/* What an export ends with: the checkpoint covering every exported entry
 * and the hashes tying them to its root. */
typedef struct provsign_log_export provsign_log_export;

/* provsign_export_log: streams the log's entries of q (NULL: all of them)
 * to fn, one at a time in sequence order, then makes *ret (free with
 * provsign_log_export_free()). Needs the auditor role (PERMISSION_DENIED
 * otherwise). Memory stays bounded whatever the log's size: one frame of
 * the reply and a compact range (a few KiB) at a time. The library checks
 * as the entries arrive that they are consecutive from the first asked,
 * and at the end that the checkpoint is well-formed and that the entries,
 * with the range hashes, reproduce its root (-EPROTO otherwise; the
 * entries already handed to fn are then not to be trusted). The
 * checkpoint's signature is the caller's to check with a log key it trusts
 * (provsign_log_export_verify()). -EINVAL for NULL conn, fn or ret; a
 * refusal (positive) or a transport error as at the top of this header. */
int provsign_export_log(provsign_conn *conn, const provsign_log_query *q, provsign_log_entry_fn fn, void *userdata,
                        provsign_log_export **ret);

/* Export accessors; borrowed from x. */
/* provsign_log_export_checkpoint: the signed checkpoint note, verbatim. */
const char *provsign_log_export_checkpoint(const provsign_log_export *x);
/* provsign_log_export_tree_size: the checkpoint's tree size. */
uint64_t provsign_log_export_tree_size(const provsign_log_export *x);
/* provsign_log_export_entries: how many entries were streamed, and the
 * first one's seq in *ret_first_seq (may be NULL). */
uint64_t provsign_log_export_entries(const provsign_log_export *x, uint64_t *ret_first_seq);
/* provsign_log_export_left, _right: the compact range hashes
 * (PROVSIGN_HASH_LEN bytes each, back to back, *ret_n of them) that tie
 * the entries to the root; never NULL. */
const uint8_t *provsign_log_export_left(const provsign_log_export *x, size_t *ret_n);
const uint8_t *provsign_log_export_right(const provsign_log_export *x, size_t *ret_n);
/* provsign_log_export_consistency: the consistency proof asked for with
 * provsign_log_query_set_previous_size(), from *ret_from_size (0: none
 * asked) to the checkpoint's tree; never NULL. */
const uint8_t *provsign_log_export_consistency(const provsign_log_export *x, uint64_t *ret_from_size, size_t *ret_n);

/* provsign_log_export_verify: the checks of an export that need the log
 * key (a "PUBLIC KEY" PEM the caller trusts): the checkpoint is signed by
 * it; with previous_note (a checkpoint the caller kept, or NULL), that one
 * is signed by it too, names the same log, and the export's consistency
 * proof (asked from its size) shows the log only grew since. 0 verified,
 * -EBADMSG when a check fails, -EINVAL, -ENOMEM. */
int provsign_log_export_verify(const provsign_log_export *x, const char *log_key_pem, const char *previous_note);

/* provsign_log_export_free: frees x. NULL is a no-op. */
void provsign_log_export_free(provsign_log_export *x);

/* provsign_find_log: streams to fn the entries matching q's digest and/or
 * principal (at least one set, else -EINVAL), within its time window, as
 * the agent's index finds them. Needs the auditor role. Memory stays
 * bounded: one frame at a time. Failures as provsign_export_log(). */
int provsign_find_log(provsign_conn *conn, const provsign_log_query *q, provsign_log_entry_fn fn, void *userdata);

/* An entry's inclusion proof, in the shape of a receipt. */
typedef struct provsign_log_proof provsign_log_proof;

/* ---- Filtered exports (LIBPROVSIGN_0.8) ----------------------------------- */

/* provsign_log_query_set_keyid: (find, filtered export) entries naming key
 * id keyid (lowercase hex: signatures and key events); NULL or "" clears
 * it. -EINVAL for NULL q, -ENOMEM. */
int provsign_log_query_set_keyid(provsign_log_query *q, const char *keyid);

/* An entry of a filtered export: as provsign_log_entry_fn, with its RFC
 * 9162 inclusion proof in the tree of the export's checkpoint (n_proof
 * hashes of 32 bytes, leaf to root; borrowed for the call) and the export's
 * head (checkpoint, tree size, consistency proof; no left/right), which is
 * known before the first entry and is the object *ret of
 * provsign_export_log_filtered() gets at the end. */
typedef int (*provsign_log_proven_entry_fn)(const provsign_log_export *head, uint64_t seq, const uint8_t *leaf,
                                            size_t leaf_len, const uint8_t *proof, size_t n_proof, void *userdata);

/* provsign_export_log_filtered: an export of only the entries of q's range
 * that match its digest, principal, key id and time window (at least one
 * of them: -EINVAL otherwise), found through the agent's index. The agent
 * sends the checkpoint first and each entry with its inclusion proof: the
 * library checks, before fn sees an entry, that the entries come in
 * ascending seq order inside the range and that each proof leads from the
 * entry's leaf hash to the checkpoint's root (-EPROTO otherwise); the
 * checkpoint's signature is the caller's to check
 * (provsign_log_export_verify()). Bounded memory. Needs the auditor role.
 * On success *ret (provsign_log_export_free()) holds the head, and
 * provsign_log_export_entries() the number of entries. An agent older than
 * 0.8 ignores the filters and answers with a full export: -EPROTO. */
int provsign_export_log_filtered(provsign_conn *conn, const provsign_log_query *q, provsign_log_proven_entry_fn fn,
                                 void *userdata, provsign_log_export **ret);

/* provsign_get_log_proof: the inclusion proof of entry seq in the tree of
 * the latest checkpoint. Needs the auditor role. The library checks that
 * the checkpoint is well-formed and of the tree size stated and that the
 * entry and the proof reproduce its root at seq (-EPROTO otherwise), not
 * the checkpoint's signature (provsign_verify_checkpoint()). On success
 * *ret is new (provsign_log_proof_free()); NOT_FOUND past the log's end. */
int provsign_get_log_proof(provsign_conn *conn, uint64_t seq, provsign_log_proof **ret);
/* Proof accessors, borrowed from p, as the receipt accessors of a
 * signature: the entry's seq, time (microseconds, UTC) and exact bytes,
 * the tree size, the leaf-to-root hashes (NULL when *ret_n is 0), the
 * signed checkpoint note. */
uint64_t provsign_log_proof_seq(const provsign_log_proof *p);
int64_t provsign_log_proof_time_us(const provsign_log_proof *p);
const uint8_t *provsign_log_proof_leaf(const provsign_log_proof *p, size_t *ret_len);
uint64_t provsign_log_proof_tree_size(const provsign_log_proof *p);
const uint8_t *provsign_log_proof_inclusion_proof(const provsign_log_proof *p, size_t *ret_n);
const char *provsign_log_proof_checkpoint(const provsign_log_proof *p);
/* provsign_log_proof_free: frees p. NULL is a no-op. */
void provsign_log_proof_free(provsign_log_proof *p);

/* provsign_verify_checkpoint: checks that note is a checkpoint signed by
 * the log key log_key_pem (a "PUBLIC KEY" PEM) under its own origin; no
 * connection needed. 0 with *ret_size (may be NULL) its tree size;
 * -EBADMSG when it is malformed or the signature does not verify; -EINVAL,
 * -ENOMEM. */
int provsign_verify_checkpoint(const char *note, const char *log_key_pem, uint64_t *ret_size);

/* ---- Agent status -------------------------------------------------------- */

/* provsign_get_metrics: the agent's counters, histograms and gauges as text:
 * OpenMetrics 1.0, or with prometheus_text non-zero the Prometheus 0.0.4 text format
 * (node_exporter's textfile collector). Any connected caller may ask. On
 * success returns 0 and *ret is a new NUL-terminated string the caller
 * frees with free(). */
int provsign_get_metrics(provsign_conn *conn, int prometheus_text, char **ret);

/* provsign_status: asks the agent about itself and about what this caller
 * may do. Any connected caller may ask. On success returns 0 and *ret is a
 * new object the caller frees with provsign_agent_status_free(). */
int provsign_status(provsign_conn *conn, provsign_agent_status **ret);

/* Status accessors. Strings and arrays are borrowed from st. Arrays are
 * NULL-terminated and never NULL themselves (possibly empty). */

/* provsign_agent_status_agent_version: the agent's version string. */
const char *provsign_agent_status_agent_version(const provsign_agent_status *st);
/* provsign_agent_status_protocol_version: the agent's wire protocol version. */
uint32_t provsign_agent_status_protocol_version(const provsign_agent_status *st);
/* provsign_agent_status_token_label: label of the PKCS#11 token in use. */
const char *provsign_agent_status_token_label(const provsign_agent_status *st);
/* provsign_agent_status_uptime_seconds: seconds since the agent started. */
uint64_t provsign_agent_status_uptime_seconds(const provsign_agent_status *st);
/* provsign_agent_status_log_origin: the audit log's origin (checkpoint
 * name); "" from an agent without one. Borrowed from st. */
const char *provsign_agent_status_log_origin(const provsign_agent_status *st);
/* provsign_agent_status_log_size: entries durable and checkpointed. */
uint64_t provsign_agent_status_log_size(const provsign_agent_status *st);
/* provsign_agent_status_log_syncs: group commits (fdatasyncs) since start. */
uint64_t provsign_agent_status_log_syncs(const provsign_agent_status *st);
/* provsign_agent_status_log_failed: 1 when the agent's audit log has
 * failed (every Sign and key operation is refused UNAVAILABLE until the
 * agent is restarted), else 0 (also from an agent too old to say). */
int provsign_agent_status_log_failed(const provsign_agent_status *st);
/* provsign_agent_status_principals: every configured signer principal. */
const char *const *provsign_agent_status_principals(const provsign_agent_status *st);
/* provsign_agent_status_caller_principals: principals this caller may sign for. */
const char *const *provsign_agent_status_caller_principals(const provsign_agent_status *st);
/* provsign_agent_status_caller_roles: this caller's roles ("operator", "auditor"). */
const char *const *provsign_agent_status_caller_roles(const provsign_agent_status *st);

/* provsign_agent_status_free: frees st and everything it lent. NULL is a
 * no-op. */
void provsign_agent_status_free(provsign_agent_status *st);

#ifdef __cplusplus
}
#endif
