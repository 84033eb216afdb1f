/* Audit log exports (docs/auditing.md): the JSON Lines
 * form of entries, and the offline verifier of an export.
 *
 * Export format, one JSON object per line:
 *
 *   {"seq", "time", "event", "uid", "gid", "pid", "exe", "principal",
 *    "keyid", "digest", "payload_type", "annotations", "status", "leaf"}
 *   ... one per entry, consecutive seqs ...
 *   {"checkpoint": NOTE, "tree_size": N, "left": [B64...], "right": [B64...],
 *    "consistency": {"from_size": M, "proof": [B64...]} | null}
 *
 * A filtered (sparse) export (docs/log-index.md) has the checkpoint object
 * first, with "sparse": true and no left/right; then its entries, ascending
 * but not consecutive, each with "inclusion_proof": [B64...] in the
 * checkpoint's tree (checked as it comes, in constant memory; key states
 * are not checked); then {"end": true, "entries": N}.
 *
 * Every field but "leaf" is derived from "leaf" (base64 of the exact
 * AuditEntry bytes) by client_audit_entry_json(); the verifier derives them
 * again and compares, so no readable field can be edited unnoticed.
 *
 * The verifier is fed one line at a time (it keeps 32 bytes per entry, the
 * leaf hashes, and the key states; never the export), then finished. It
 * stops at the first failure: fail_seq (when the failure belongs to an
 * entry) and reason say what. Nothing here prints. Internal to the CLI and
 * its tests and fuzz harness. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "provsign.pb-c.h"

/* client_audit_entry_json: the export object of the entry e whose exact
 * bytes are leaf[0..n): a new reference, or NULL when out of memory or when
 * a string of e is not valid UTF-8. */
json_t *client_audit_entry_json(const Provsign__AuditEntry *e, const uint8_t *leaf, size_t n);

/* The export's columns, in order (CSV header). */
extern const char *const client_audit_columns[];
#define CLIENT_AUDIT_N_COLUMNS 14u

/* client_audit_csv_row: the CSV row of an entry's export object o (from
 * client_audit_entry_json()), newline included, to f. Cells that a
 * spreadsheet would take for a formula are neutralised with a leading
 * single quote. 0, -ENOMEM, -EIO. */
int client_audit_csv_row(FILE *f, json_t *o);


typedef struct client_audit_verify client_audit_verify;

/* client_audit_verify_new: a verifier. log_key_pem: the log key (PEM
 * PUBLIC KEY), or NULL to skip signature checks (fuzzing only: the note
 * must still be well-formed). previous: a checkpoint note the auditor kept,
 * or NULL. 0 and *ret (free with client_audit_verify_free); -ENOMEM. */
int client_audit_verify_new(const char *log_key_pem, const char *previous, client_audit_verify **ret);
void client_audit_verify_free(client_audit_verify *v);

/* client_audit_verify_choose_key: the log key (and previous checkpoint)
 * chosen by the export's checkpoint instead of given up front (`audit
 * verify --trust`). choose is called once, before the checkpoint's
 * signature is checked, with its origin and note; it returns 0 with
 * *ret_pem (non-NULL) and *ret_previous (NULL: none), both copied; 1 to
 * fail the verification with why (e.g. an origin not trusted); or a
 * negative errno. */
typedef int (*client_audit_choose_key)(void *userdata, const char *origin, const char *note, const char **ret_pem,
                                       const char **ret_previous, char *why, size_t why_size);
void client_audit_verify_choose_key(client_audit_verify *v, client_audit_choose_key choose, void *userdata);

/* client_audit_verify_line: one line of the export (no newline; an empty
 * line is an error too). 0 when it holds so far, 1 when verification
 * failed (see client_audit_verify_failure; further calls return 1), or
 * -ENOMEM. */
int client_audit_verify_line(client_audit_verify *v, const char *line, size_t len);

/* client_audit_verify_finish: the checks of the whole export (final object
 * present, checkpoint signature, leaves hash to its root, previous
 * checkpoint consistent). 0 verified, 1 failed, -ENOMEM. */
int client_audit_verify_finish(client_audit_verify *v);

/* After a failure: *ret_seq the first entry that fails (has_seq false when
 * the failure is the checkpoint's or the export's as a whole) and why.
 * Strings borrowed from v. */
void client_audit_verify_failure(const client_audit_verify *v, bool *ret_has_seq, uint64_t *ret_seq,
                                 const char **ret_reason);

/* client_audit_verify_summary: after a successful finish, the summary
 * object {"verified": true, "entries", "first_seq", "last_seq",
 * "principals", "keys", "keys_unknown_before_range", "first_time",
 * "last_time", "checkpoint_size", "origin", "consistent_with_previous",
 * "sparse"} (first_seq/last_seq null for a filtered export without entries). A
 * new reference or NULL. */
json_t *client_audit_verify_summary(const client_audit_verify *v);
