/* keys/: the only door to the token. PKCS#11 through libp11 (open, login,
 * find, sign) plus the raw module for key generation, which libp11 0.4.12
 * cannot do for EC keys. agent/ never includes libp11.h; this header is the
 * whole surface, narrow enough to move into a helper process.
 *
 * Threads: one keys_store per process (one libp11 context per module; a
 * context per thread crashes). keys_sign() may be called from any number of
 * threads at once. keys_generate() runs beside them (only the short insert
 * of the new key takes the store's write lock, which waits for signers to
 * drain); keys_destroy() and a re-open after an outage take the write lock
 * throughout. A keys_key handle a caller holds stays valid until
 * keys_store_free().
 *
 * Errors are negative errno values; keys_store_open and keys_generate can
 * also hand back one line of explanation (caller frees):
 *   -ENOENT   module file or token not found
 *   -EACCES   wrong PIN          -EPERM  PIN locked
 *   -ENOTSUP  the token holds a key libp11 cannot enumerate (Ed25519)
 *   -EIO      any other token failure (maps to HSM_UNAVAILABLE)
 *   -EINVAL   bad argument (digest length, algorithm)
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct keys_store keys_store;
typedef struct keys_key keys_key;

#define KEYS_LABEL_PREFIX "provsign/"
#define KEYS_NAMESPACE_MAX 64u  /* bytes of a key namespace */
#define KEYS_LABEL_MAX 160u     /* provsign/<namespace>/<owner>/<gen> and the NUL */
#define KEYS_MAX_SIGNATURE 512u /* RSA-3072: 384; ECDSA P-384 DER: <= 104 */

/* keys_store_open: loads module_path (resolved with realpath first), finds
 * the token labelled token_label (retrying briefly: SoftHSM slot ids change
 * as tokens appear), logs in with pin (pin_len bytes, not NUL-terminated;
 * the caller wipes its copy), and enumerates the keys whose CKA_LABEL starts
 * with KEYS_LABEL_PREFIX. On success the caller owns *ret (keys_store_free).
 * ret_error may be NULL. The store keeps its own copy of the PIN (locked,
 * excluded from dumps, wiped by keys_store_free) to log in again after a
 * token outage. */
int keys_store_open(const char *module_path, const char *token_label, const char *pin,
                    size_t pin_len, keys_store **ret, char **ret_error);

/* Key namespaces (docs/fleet.md): many agents share one token, each in its
 * own namespace. An agent's store sees only the objects labelled
 * provsign/<namespace>/...; objects of other namespaces are never loaded,
 * relabelled or destroyed. */
typedef struct keys_open_options {
        const char *ns;            /* required: 1..KEYS_NAMESPACE_MAX of A-Z a-z 0-9 . _ - */
        /* The namespace's owner marker: a CKO_DATA object labelled
         * provsign/<ns>/owner whose CKA_VALUE is owner (owner_len bytes).
         * Absent: created. Present with another value: the namespace belongs
         * to another agent's state and the open fails with -EEXIST (the
         * message quotes the marker). Two markers after creating ours (two
         * agents claimed it at once): ours is removed again, -EBUSY. NULL:
         * no claim (tools). */
        const uint8_t *owner;
        size_t owner_len;
        /* Objects of the first round, labelled provsign/<owner>/<gen>, are
         * relabelled provsign/<ns>/<owner>/<gen> (both halves, matched by
         * CKA_LABEL and CKA_ID) before the keys are enumerated; see
         * keys_store_relabelled(). */
        bool adopt_legacy;
} keys_open_options;

/* keys_store_open_ns: keys_store_open for one namespace (o->ns): claims
 * it when o->owner is set, adopts legacy objects when o->adopt_legacy, then
 * enumerates the keys of the namespace only. */
int keys_store_open_ns(const char *module_path, const char *token_label, const char *pin, size_t pin_len,
                       const keys_open_options *o, keys_store **ret, char **ret_error);

/* keys_store_namespace: the namespace the store was opened for; NULL for
 * keys_store_open (every provsign key). */
const char *keys_store_namespace(const keys_store *s);

/* keys_store_relabelled: the i-th key pair relabelled into the namespace by
 * keys_store_open_ns (adopt_legacy): its key id (64 hex) and old label, or
 * -ENOENT past the end. Strings borrowed from the store. */
int keys_store_relabelled(const keys_store *s, size_t i, const char **ret_keyid, const char **ret_old_label);

/* keys_store_health: 0 while the token answers, -EIO from a failed token
 * call until a re-open succeeds (keys_sign re-opens the token by itself;
 * see keystore.c). *ret_reopens (may be NULL): successful re-opens so far. */
int keys_store_health(keys_store *s, unsigned *ret_reopens);

/* keys_store_free: logs out, unloads the module, frees every keys_key.
 * Accepts NULL. No keys_sign() may be running. */
void keys_store_free(keys_store *s);

const char *keys_store_token_label(const keys_store *s);

/* keys_store_count / keys_store_get: the provsign keys found on the token,
 * in enumeration order. Borrowed; valid until keys_store_free. */
size_t keys_store_count(const keys_store *s);
keys_key *keys_store_get(const keys_store *s, size_t i);

/* keys_store_find_label: the key with exactly this CKA_LABEL, or NULL. */
keys_key *keys_store_find_label(const keys_store *s, const char *label);

/* keys_store_find_id: the key whose key id (SHA-256 of SPKI) is id, or NULL. */
keys_key *keys_store_find_id(const keys_store *s, const uint8_t id[32]);

/* keys_generate: creates a key pair inside the token (CKA_TOKEN, CKA_PRIVATE,
 * CKA_SENSITIVE, not CKA_EXTRACTABLE) with CKA_LABEL = label and CKA_ID = its
 * key id, then makes it visible. algorithm is a PROVSIGN__KEY_ALGORITHM__*
 * value. On success *ret borrows the new key (owned by the store). */
int keys_generate(keys_store *s, int algorithm, const char *label, keys_key **ret,
                  char **ret_error);

/* keys_generate in two steps, for a caller that generates on a thread of
 * low priority: keys_generate_pair makes the key pair in the token (the
 * slow part; takes no lock that keys_sign takes) and hands back its DER
 * SPKI (caller frees); keys_generate_insert then makes it visible (the
 * store's write lock, milliseconds) and borrows the new key into *ret.
 * label must be unused (keys_generate checks; these do not). */
int keys_generate_pair(keys_store *s, int algorithm, const char *label, uint8_t **ret_spki, size_t *ret_spki_len,
                       char **ret_error);
int keys_generate_insert(keys_store *s, const uint8_t *spki, size_t spki_len, keys_key **ret, char **ret_error);

/* keys_destroy: removes k's private key object(s) from the token
 * (C_DestroyObject); its public key stays readable through k. Waits for
 * running signatures; afterwards keys_sign(k) fails with -ENOENT. Returns
 * the number of objects destroyed (0: it was already gone) or -EIO. */
int keys_destroy(keys_store *s, keys_key *k, char **ret_error);

/* keys_sign: signs a precomputed digest with k. ECDSA: DER signature;
 * RSA-3072: RSASSA-PKCS1-v1_5 over the DigestInfo of the digest (SHA-256).
 * sig must hold KEYS_MAX_SIGNATURE bytes; *ret_len is written on success.
 * -EINVAL when digest_len does not match the key's digest, -ENOENT when
 * the key was destroyed, -EIO on token failure. Thread-safe. A failed token call re-opens the token (new
 * context, sessions, login, key objects) and signs once more; while the
 * token stays down, calls fail fast with -EIO and a re-open is retried at
 * most every 250 ms. */
int keys_sign(keys_store *s, keys_key *k, const uint8_t *digest, size_t digest_len,
              uint8_t *sig, size_t *ret_len);

/* Accessors; returned pointers are borrowed from k and live as long as the
 * store. */
const char *keys_key_label(const keys_key *k);
int keys_key_algorithm(const keys_key *k);        /* PROVSIGN__KEY_ALGORITHM__* */
const uint8_t *keys_key_id(const keys_key *k);    /* 32 bytes */
const char *keys_key_id_hex(const keys_key *k);   /* 64 lowercase hex */
const uint8_t *keys_key_spki(const keys_key *k, size_t *ret_len); /* DER SPKI */
const char *keys_key_pem(const keys_key *k);      /* PEM SPKI, NUL-terminated */

/* Labels. A namespace is 1..KEYS_NAMESPACE_MAX of A-Z a-z 0-9 . _ -; an
 * owner (a principal, or "log" for the log key) is non-empty without "/";
 * a generation is 1..999999999 without leading zeros. */
bool keys_namespace_valid(const char *ns);

/* keys_namespace_from_origin: the default namespace of a log origin, its
 * text up to the first "/" (all of it without one). 0, or -EINVAL when
 * that is not a valid namespace. out holds KEYS_NAMESPACE_MAX + 1 bytes. */
int keys_namespace_from_origin(const char *origin, char *out);

/* keys_label_format: "provsign/<ns>/<owner>/<gen>" into buf. 0, -EINVAL
 * (a bad part), -ENAMETOOLONG (buf too small). */
int keys_label_format(char *buf, size_t size, const char *ns, const char *owner, uint32_t gen);

/* keys_label_parse: a label of namespace ns, "provsign/<ns>/<owner>/<gen>":
 * owner copied into owner (at most owner_size-1 bytes), generation >= 1.
 * 0, or -EINVAL (malformed, or another namespace). */
int keys_label_parse(const char *label, const char *ns, char *owner, size_t owner_size, uint32_t *ret_gen);

/* keys_label_parse_legacy: a label of the first round, "provsign/<owner>/<gen>"
 * (no namespace). 0 or -EINVAL. */
int keys_label_parse_legacy(const char *label, char *owner, size_t owner_size, uint32_t *ret_gen);

/* keys_owner_label: "provsign/<ns>/owner", the owner marker's label. */
int keys_owner_label(char *buf, size_t size, const char *ns);
