/* Receipts as JSON, the form `provsign sign --json` / `--receipt` write and
 * `provsign receipt verify` reads:
 *
 *   {"log_seq": N, "log_time": "2026-11-25T18:20:01.123456Z", "leaf": B64,
 *    "tree_size": N, "inclusion_proof": [B64, ...], "checkpoint": NOTE}
 *
 * B64 is standard base64 with padding; each proof entry is one 32-byte
 * hash, leaf-to-root order; NOTE is the signed checkpoint note verbatim. A
 * whole `sign --json` output holds this object under "receipt", beside the
 * signature's "keyid" and "principal". Internal to the CLI (and its
 * tests); nothing here prints. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "receipt.h"

/* The largest receipt file read: a receipt fits a 64 KiB reply, and its
 * JSON adds a third for base64 and some escaping. */
#define CLIENT_RECEIPT_FILE_MAX (1024u * 1024u)

/* A receipt read from JSON. It owns the buffers rc points into. Zero it
 * before use; release with client_receipt_doc_done(). */
struct client_receipt_doc {
        struct client_receipt rc;
        bool whole;                 /* the JSON was a whole sign output ... */
        char *keyid;                /* ... with these (NULL otherwise) */
        char *principal;
        uint8_t *leaf;
        uint8_t (*proof)[PROTO_MERKLE_HASH_LEN];
        char *checkpoint;
};

void client_receipt_doc_done(struct client_receipt_doc *doc);

/* client_receipt_doc_parse: parses text[0..len) (a receipt object, or a
 * whole sign output holding one). 0 with doc filled; -EBADMSG when it is
 * not JSON, not an object, or a field is missing, of the wrong type, not
 * canonical base64, not a 32-byte hash, not a log time, or out of range
 * (detail, of detail_size bytes, names the field); -ENOMEM. */
int client_receipt_doc_parse(const char *text, size_t len, struct client_receipt_doc *doc,
                             char *detail, size_t detail_size);

/* client_receipt_to_json: the receipt object above, a new reference, or
 * NULL when out of memory, when log_time_us is outside the range of
 * proto_time_format_us() or when the note is not UTF-8. */
json_t *client_receipt_to_json(const struct client_receipt *rc);

/* client_receipt_verify_text: all of `receipt verify` but the printing:
 * parses text as above and runs client_receipt_verify() with log_key_pem
 * (which must parse as a PEM public key), checking the signer (check 5)
 * when the text is a whole sign output. doc and res must be zeroed; the
 * caller releases both whatever the outcome.
 * Returns 0 when the receipt verifies; a positive enum client_receipt_check
 * for the first check that failed (res->detail says why); -EBADMSG for a
 * malformed text and -ENOKEY for a log key that is not a PEM public key
 * (res->detail says which field or what); -ENOMEM. */
int client_receipt_verify_text(const char *text, size_t len, const char *log_key_pem,
                               struct client_receipt_doc *doc, struct client_receipt_result *res);

/* client_receipt_verified_json: the JSON report of a verified receipt:
 * {"verified": true, "log_seq", "log_time", "principal", "keyid",
 * "digest": "sha256:HEX", "tree_size", "origin"}. NULL on out of memory or
 * invalid UTF-8. */
json_t *client_receipt_verified_json(const struct client_receipt_doc *doc, const struct client_receipt_result *res);

