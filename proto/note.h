/* C2SP signed notes (https://c2sp.org/signed-note) carrying tlog checkpoints
 * (https://c2sp.org/tlog-checkpoint), signed by the log key with the ECDSA
 * note signature, type 0x02 (docs/formats.md "Checkpoints").
 *
 * Checkpoint body (the note text):
 *
 *     <origin>\n<tree size, decimal>\n<base64 std of the 32-byte root hash>\n
 *
 * Signed note = note text ‖ "\n" ‖ one or more signature lines
 *
 *     — <key name> <base64(4-byte key hash ‖ DER ECDSA signature)>\n
 *
 * ("—" is U+2014, UTF-8 E2 80 94, followed by one space.) For type 0x02 the
 * key hash is SHA-256(DER SubjectPublicKeyInfo)[:4] (signed-note "Signature
 * types": "the key ID for these signatures is the truncated SHA-256 hash of
 * the DER encoded public key in SPKI format"), and the signature is DER ECDSA
 * over SHA-256 of the note text, its final newline included and the blank
 * separator line excluded. The type byte 0x02 appears only in the verifier
 * key, never in a signature line.
 *
 * Limits: a note (or a body) is at most PROTO_NOTE_MAX_SIZE bytes and has at
 * most PROTO_NOTE_MAX_SIGS signature lines (signed-note: verifiers SHOULD
 * limit, MUST accept 16).
 *
 * Errors: -EINVAL for bad arguments the caller controls (key name, origin,
 * key), -EBADMSG for malformed untrusted text, -EMSGSIZE over a limit,
 * -ENOMEM. Out-parameters are written only on success. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define PROTO_NOTE_MAX_SIZE (16u * 1024u)
#define PROTO_NOTE_MAX_SIGS 100u
#define PROTO_NOTE_KEY_HASH_LEN 4u
#define PROTO_NOTE_SIG_TYPE_ECDSA 0x02u
#define PROTO_CHECKPOINT_HASH_LEN 32u

/* proto_checkpoint_format: the checkpoint note text for (origin, size, root),
 * without extension lines. origin must be non-empty UTF-8 without control
 * characters (no newline). 0 and *ret_body (NUL-terminated, caller free()s);
 * -EINVAL for a bad origin, -EMSGSIZE, -ENOMEM. */
int proto_checkpoint_format(const char *origin, uint64_t size, const uint8_t root[PROTO_CHECKPOINT_HASH_LEN],
                            char **ret_body);

/* proto_checkpoint_parse: parses untrusted checkpoint text body[0..len) (as
 * returned by proto_note_verify; no NUL needed). Enforces tlog-checkpoint "Note
 * text": the text ends in a newline; origin non-empty; tree size canonical
 * decimal (no sign, no leading zeros except "0" itself, fits in u64); root
 * hash canonical base64 of exactly 32 bytes; extension lines after the third
 * are allowed (non-empty) and ignored. 0 with *ret_origin (caller free()s),
 * *ret_size and ret_root; -EBADMSG, -EMSGSIZE, -ENOMEM. */
int proto_checkpoint_parse(const char *body, size_t len, char **ret_origin, uint64_t *ret_size,
                           uint8_t ret_root[PROTO_CHECKPOINT_HASH_LEN]);

/* proto_note_key_hash: the type-0x02 key hash, SHA-256(spki_der)[:4].
 * 0, or -EINVAL if len is 0. The SPKI itself is not parsed here. */
int proto_note_key_hash(const uint8_t *spki_der, size_t len, uint8_t out[PROTO_NOTE_KEY_HASH_LEN]);

/* proto_note_verifier_key: the verifier key string
 *     <origin>+<8 lowercase hex of the key hash>+<base64(0x02 ‖ DER SPKI)>
 * origin is a key name (non-empty, no spaces, no '+', no control characters);
 * spki must be a DER SubjectPublicKeyInfo of an EC key on P-256, P-384 or
 * P-521 (signed-note "0x02"). 0 and *ret (caller free()s); -EINVAL, -ENOMEM. */
int proto_note_verifier_key(const char *origin, const uint8_t *spki, size_t len, char **ret);

/* proto_note_assemble: body ‖ "\n" ‖ "— <key_name> <base64(key_hash ‖
 * der_sig)>\n". body is the note text (non-empty, ends in "\n", valid note
 * text); der_sig is the DER ECDSA signature the token made over SHA-256(body).
 * 0 and *ret_note (NUL-terminated, caller free()s); -EINVAL for a bad body,
 * key name or empty signature, -EMSGSIZE if the note would exceed
 * PROTO_NOTE_MAX_SIZE, -ENOMEM. */
int proto_note_assemble(const char *body, const char *key_name, const uint8_t key_hash[PROTO_NOTE_KEY_HASH_LEN],
                        const uint8_t *der_sig, size_t sig_len, char **ret_note);

typedef struct proto_note_sig {
        const char *name; /* borrowed from the note buffer, NOT NUL-terminated */
        size_t name_len;
        uint8_t key_hash[PROTO_NOTE_KEY_HASH_LEN];
        const uint8_t *sig; /* owned by the proto_note; the bytes after the key hash */
        size_t sig_len;
} proto_note_sig;

typedef struct proto_note {
        const char *text; /* borrowed from the note buffer: the note text, final newline included */
        size_t text_len;
        uint8_t *sig_data; /* backing store of every sigs[i].sig */
        size_t n_sigs;     /* 1..PROTO_NOTE_MAX_SIGS */
        proto_note_sig sigs[];
} proto_note;

/* proto_note_split: splits an untrusted signed note note[0..len) (no NUL
 * needed) into its text and signature lines (signed-note "Format"): valid
 * UTF-8 without control characters other than newline; the text ends at the
 * last blank line; then one or more lines of U+2014, space, key name (non-
 * empty, no spaces, no '+'), space, canonical standard base64 of at least 5
 * bytes, newline. It checks no signature.
 * 0 and *ret_note, freed with proto_note_free(); its borrowed pointers are
 * valid while the note buffer lives. -EBADMSG on any format error, -EMSGSIZE
 * over PROTO_NOTE_MAX_SIZE bytes or PROTO_NOTE_MAX_SIGS lines, -ENOMEM. */
int proto_note_split(const char *note, size_t len, proto_note **ret_note);
void proto_note_free(proto_note *n);

/* proto_note_verify: verifies note[0..len) with the ECDSA (type 0x02) key
 * spki_der named key_name. Lines from other keys (another name or another key
 * hash, e.g. an Ed25519 line) are ignored; every line matching both name and
 * key hash must verify (signed-note "Signatures": a known key's bad signature
 * rejects the note), and at least one must exist.
 * 0 and *ret_body = a NUL-terminated copy of the note text (caller free()s);
 * -EBADMSG/-EMSGSIZE as proto_note_split, -ENOKEY when no line matches,
 * -EKEYREJECTED when a matching signature does not verify, -EINVAL for a bad
 * key_name or a key that is not an EC key on P-256/P-384/P-521, -ENOMEM. */
int proto_note_verify(const char *note, size_t len, const char *key_name, const uint8_t *spki_der, size_t spki_len,
                      char **ret_body);

/* proto_note_verify_pem: proto_note_verify with the key given as a
 * NUL-terminated PEM "PUBLIC KEY" string (for the CLI). -EINVAL if it does
 * not parse; otherwise as proto_note_verify. */
int proto_note_verify_pem(const char *note, size_t len, const char *key_name, const char *pem, char **ret_body);
