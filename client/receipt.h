/* Receipts of the audit log (docs/formats.md "Receipts"): the checks that
 * prove, offline, that a signature's log entry is in a tree whose
 * checkpoint the log key signed.
 *
 * Shared by libprovsign, which runs them on every Sign reply without the
 * log key (a receipt that contradicts itself or the signature is -EPROTO,
 * never handed to the caller), and by `provsign receipt verify`, which runs
 * them with the log key. The formats are proto/'s (merkle.h, note.h); this
 * file only orders the checks and says which one failed. Nothing here
 * prints or exits. Internal: not installed, not exported. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "merkle.h"
#include "note.h"
#include "provsign.pb-c.h"

/* The checks of a receipt, in the order they run; a verification stops at
 * the first that fails. The numbers are those of the CLI contract. */
enum client_receipt_check {
        CLIENT_RECEIPT_VERIFIED = 0,
        CLIENT_RECEIPT_CHECKPOINT = 1, /* the note is a checkpoint signed by the log key under its origin */
        CLIENT_RECEIPT_TREE_SIZE = 2,  /* tree_size is the checkpoint's size */
        CLIENT_RECEIPT_INCLUSION = 3,  /* leaf + proof at log_seq reproduce the checkpoint's root */
        CLIENT_RECEIPT_ENTRY = 4,      /* the leaf is a SIGN AuditEntry at log_seq, log_time */
        CLIENT_RECEIPT_SIGNER = 5,     /* the entry names the signature's key, principal (and digest) */
};

/* client_receipt_check_name: "checkpoint signature", "tree size",
 * "inclusion proof", "log entry", "signer"; "verified" for 0. Static. */
const char *client_receipt_check_name(int check);

/* A receipt as plain data. Every pointer is borrowed. */
struct client_receipt {
        uint64_t log_seq;
        int64_t log_time_us;
        const uint8_t *leaf;                         /* the exact AuditEntry bytes */
        size_t leaf_len;
        uint64_t tree_size;
        const uint8_t (*proof)[PROTO_MERKLE_HASH_LEN]; /* leaf-to-root; NULL when n_proof is 0 */
        size_t n_proof;                              /* at most PROTO_MERKLE_MAX_PROOF */
        const char *checkpoint;                      /* signed note, NUL-terminated */
};

/* What the signature that carries the receipt claims (check 5). NULL
 * strings and a digest_len of 0 are not checked. */
struct client_receipt_signer {
        const char *keyid;
        const char *principal;
        int digest_algorithm;
        const uint8_t *digest;
        size_t digest_len;
};

/* What a verification found. Zero-initialize before use; release with
 * client_receipt_result_done() whatever the outcome. */
struct client_receipt_result {
        char detail[320];              /* why the failed check failed ("" when none did) */
        char *origin;                  /* the checkpoint's origin, once parsed */
        uint64_t checkpoint_size;
        uint8_t root[PROTO_MERKLE_HASH_LEN];
        Provsign__AuditEntry *entry;   /* the decoded leaf, once check 4 ran */
};

void client_receipt_result_done(struct client_receipt_result *res);

/* client_receipt_verify: runs checks 1-5 in order and stops at the first
 * that fails.
 *   log_key_pem  a "PUBLIC KEY" PEM of the log key; NULL skips the
 *                signature of check 1 (the note must still be a well-formed
 *                signed checkpoint): the library's check of a fresh reply,
 *                which has no log key to hand;
 *   signer       NULL skips check 5.
 * Returns 0 when every check holds, a positive enum client_receipt_check
 * naming the first check that failed (res->detail says why), or -ENOMEM
 * (-EINVAL for a NULL rc or res). res is filled as far as the checks got. */
int client_receipt_verify(const struct client_receipt *rc,
                          const struct client_receipt_signer *signer,
                          const char *log_key_pem,
                          struct client_receipt_result *res);

/* client_checkpoint_verify: check 1 alone, for a checkpoint without a
 * receipt (the last object of an audit export, a kept checkpoint): the
 * note is a checkpoint signed by log_key_pem (NULL: only well-formed)
 * under its own origin. 0 with res->origin, checkpoint_size and root set;
 * CLIENT_RECEIPT_CHECKPOINT with res->detail; -ENOMEM, -EINVAL. */
int client_checkpoint_verify(const char *note, const char *log_key_pem, struct client_receipt_result *res);

/* client_checkpoint_verify_previous: an older checkpoint note an auditor
 * kept (previous) against the verified checkpoint of origin and size:
 * signed by log_key_pem under the same origin, no larger (the consistency
 * proof between the two is the caller's). 0 with prev's origin,
 * checkpoint_size and root set; CLIENT_RECEIPT_CHECKPOINT with
 * prev->detail ("previous checkpoint ..."); -ENOMEM, -EINVAL. */
int client_checkpoint_verify_previous(const char *previous, const char *log_key_pem, const char *origin,
                                      uint64_t size, struct client_receipt_result *prev);

/* client_checkpoint_note_parse: splits a signed checkpoint note (without
 * verifying its signature) and parses its text (proto_checkpoint_parse).
 * 0 with *ret_origin (caller free()s), *ret_size and ret_root; -EBADMSG
 * for a malformed note or checkpoint, -EMSGSIZE, -ENOMEM. */
int client_checkpoint_note_parse(const char *note, size_t len, char **ret_origin, uint64_t *ret_size,
                                 uint8_t ret_root[PROTO_MERKLE_HASH_LEN]);

/* Times: proto/timefmt.h (proto_time_format_us, proto_time_parse_us). */
#include "timefmt.h"
