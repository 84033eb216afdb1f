/* The checks of an audit-log receipt; see receipt.h.
 *
 * Order matters and follows the chain of trust: nothing in a receipt means
 * anything until the checkpoint's signature holds (1); the signed
 * checkpoint then fixes the tree size (2) and root, the root fixes the leaf
 * bytes at log_seq (3), and only bytes proven that way are decoded and
 * believed (4, 5). */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hex.h"
#include "entry.h"
#include "merkle.h"
#include "names.h"
#include "note.h"
#include "provsign.pb-c.h"

#include "receipt.h"

static const char *const check_names[] = {
        [CLIENT_RECEIPT_VERIFIED] = "verified",
        [CLIENT_RECEIPT_CHECKPOINT] = "checkpoint signature",
        [CLIENT_RECEIPT_TREE_SIZE] = "tree size",
        [CLIENT_RECEIPT_INCLUSION] = "inclusion proof",
        [CLIENT_RECEIPT_ENTRY] = "log entry",
        [CLIENT_RECEIPT_SIGNER] = "signer",
};

const char *client_receipt_check_name(int check) {
        if (check < 0 || (size_t) check >= sizeof check_names / sizeof check_names[0])
                return "unknown check";
        return check_names[check];
}

void client_receipt_result_done(struct client_receipt_result *res) {
        if (!res)
                return;
        free(res->origin);
        if (res->entry)
                provsign__audit_entry__free_unpacked(res->entry, NULL);
        *res = (struct client_receipt_result) {};
}

/* Records why check failed; returns check, for `return fail(...)`. */
__attribute__((format(printf, 3, 4)))
static int fail(struct client_receipt_result *res, int check, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(res->detail, sizeof res->detail, fmt, ap);
        va_end(ap);
        return check;
}

/* ---- Times --------------------------------------------------------------- */

/* ---- Checkpoints --------------------------------------------------------- */

int client_checkpoint_note_parse(const char *note, size_t len, char **ret_origin, uint64_t *ret_size,
                                 uint8_t ret_root[PROTO_MERKLE_HASH_LEN]) {
        proto_note *n = NULL;
        int r;

        r = proto_note_split(note, len, &n);
        if (r < 0)
                return r;
        r = proto_checkpoint_parse(n->text, n->text_len, ret_origin, ret_size, ret_root);
        proto_note_free(n);
        return r;
}

/* ---- Verification -------------------------------------------------------- */

static const char *enum_name(const ProtobufCEnumDescriptor *d, int value) {
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);

        return v ? v->name : "unknown";
}

/* Check 1: the note is a checkpoint, signed by the log key under the name
 * that is the checkpoint's own origin. Signing under the origin is what
 * ties the key to this log: a note signed by the same key for another
 * log's name proves nothing here. */
static int check_checkpoint(const struct client_receipt *rc, const char *log_key_pem, struct client_receipt_result *res) {
        size_t len = strlen(rc->checkpoint);
        char *body = NULL, *origin2 = NULL;
        uint8_t root2[PROTO_MERKLE_HASH_LEN];
        uint64_t size2;
        int r;

        r = client_checkpoint_note_parse(rc->checkpoint, len, &res->origin, &res->checkpoint_size, res->root);
        if (r == -ENOMEM)
                return r;
        if (r == -EMSGSIZE)
                return fail(res, CLIENT_RECEIPT_CHECKPOINT, "the checkpoint note exceeds %u bytes", PROTO_NOTE_MAX_SIZE);
        if (r < 0)
                return fail(res, CLIENT_RECEIPT_CHECKPOINT,
                            "the checkpoint is not a signed note of a checkpoint (origin, tree size, root hash)");
        if (!log_key_pem)
                return 0;

        r = proto_note_verify_pem(rc->checkpoint, len, res->origin, log_key_pem, &body);
        switch (r) {
        case 0:
                break;
        case -ENOMEM:
                return r;
        case -ENOKEY:
                return fail(res, CLIENT_RECEIPT_CHECKPOINT,
                            "no signature by the log key under the checkpoint's origin '%s'", res->origin);
        case -EKEYREJECTED:
                return fail(res, CLIENT_RECEIPT_CHECKPOINT,
                            "the signature by '%s' does not verify with the log key", res->origin);
        case -EINVAL:
                return fail(res, CLIENT_RECEIPT_CHECKPOINT,
                            "the log key is not an ECDSA key, or the origin '%s' is not a valid key name", res->origin);
        default:
                return fail(res, CLIENT_RECEIPT_CHECKPOINT, "the checkpoint note is malformed");
        }

        /* The verified text is the text parsed above; parse what was
         * verified all the same, so nothing unverified is ever used. */
        r = proto_checkpoint_parse(body, strlen(body), &origin2, &size2, root2);
        if (r == 0 && (strcmp(origin2, res->origin) != 0 || size2 != res->checkpoint_size ||
                       memcmp(root2, res->root, sizeof root2) != 0))
                r = -EBADMSG;
        free(body);
        free(origin2);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fail(res, CLIENT_RECEIPT_CHECKPOINT, "the signed text is not the checkpoint");
        return 0;
}

static int check_entry(const struct client_receipt *rc, struct client_receipt_result *res) {
        const Provsign__AuditEntry *e;
        char a[PROTO_TIME_LEN + 1], b[PROTO_TIME_LEN + 1];

        res->entry = provsign__audit_entry__unpack(NULL, rc->leaf_len, rc->leaf);
        if (!res->entry)
                return fail(res, CLIENT_RECEIPT_ENTRY, "the leaf does not decode as an AuditEntry");
        e = res->entry;

        if (e->seq != rc->log_seq)
                return fail(res, CLIENT_RECEIPT_ENTRY, "the entry's seq %" PRIu64 " is not log_seq %" PRIu64,
                            e->seq, rc->log_seq);
        if (e->time_us != rc->log_time_us) {
                if (!proto_time_format_us(e->time_us, a))
                        snprintf(a, sizeof a, "%" PRId64 "us", e->time_us);
                if (!proto_time_format_us(rc->log_time_us, b))
                        snprintf(b, sizeof b, "%" PRId64 "us", rc->log_time_us);
                return fail(res, CLIENT_RECEIPT_ENTRY, "the entry's time %s is not log_time %s", a, b);
        }
        if (e->event != PROVSIGN__AUDIT_EVENT__SIGN)
                return fail(res, CLIENT_RECEIPT_ENTRY, "the entry is a %s event, not SIGN",
                            enum_name(&provsign__audit_event__descriptor, (int) e->event));
        return 0;
}

static int check_signer(const struct client_receipt_signer *s, struct client_receipt_result *res) {
        const Provsign__AuditEntry *e = res->entry;
        const char *keyid = e->keyid ? e->keyid : "", *principal = e->principal ? e->principal : "";

        /* The strings are safe to quote: the CLI escapes what it prints. */
        if (s->keyid && strcmp(keyid, s->keyid) != 0)
                return fail(res, CLIENT_RECEIPT_SIGNER, "the entry's keyid %.64s is not the signature's keyid %.64s",
                            keyid, s->keyid);
        if (s->principal && strcmp(principal, s->principal) != 0)
                return fail(res, CLIENT_RECEIPT_SIGNER, "the entry's principal '%.64s' is not the signature's principal '%.64s'",
                            principal, s->principal);
        if (s->digest_len > 0 &&
            ((int) e->digest_algorithm != s->digest_algorithm || e->digest.len != s->digest_len ||
             memcmp(e->digest.data, s->digest, s->digest_len) != 0))
                return fail(res, CLIENT_RECEIPT_SIGNER, "the entry's digest is not the digest that was signed");
        return 0;
}

int client_checkpoint_verify(const char *note, const char *log_key_pem, struct client_receipt_result *res) {
        struct client_receipt rc = { .checkpoint = note };

        if (!note || !res)
                return -EINVAL;
        return check_checkpoint(&rc, log_key_pem, res);
}

int client_checkpoint_verify_previous(const char *previous, const char *log_key_pem, const char *origin,
                                      uint64_t size, struct client_receipt_result *prev) {
        char why[sizeof prev->detail];
        int r = client_checkpoint_verify(previous, log_key_pem, prev);

        if (r > 0) {
                memcpy(why, prev->detail, sizeof why);
                return fail(prev, CLIENT_RECEIPT_CHECKPOINT, "previous checkpoint: %s", why);
        }
        if (r < 0)
                return r;
        if (!origin || strcmp(prev->origin, origin) != 0)
                return fail(prev, CLIENT_RECEIPT_CHECKPOINT, "previous checkpoint is of log '%s', not '%s'",
                            prev->origin, origin ? origin : "");
        if (prev->checkpoint_size > size)
                return fail(prev, CLIENT_RECEIPT_CHECKPOINT,
                            "previous checkpoint has %" PRIu64 " entries, more than this one's %" PRIu64 ": the log shrank",
                            prev->checkpoint_size, size);
        return 0;
}

int client_receipt_verify(const struct client_receipt *rc,
                          const struct client_receipt_signer *signer,
                          const char *log_key_pem,
                          struct client_receipt_result *res) {
        uint8_t leaf_hash[PROTO_MERKLE_HASH_LEN];
        int r;

        if (!rc || !res || !rc->checkpoint || (rc->leaf_len > 0 && !rc->leaf) || (rc->n_proof > 0 && !rc->proof))
                return -EINVAL;
        client_receipt_result_done(res);

        r = check_checkpoint(rc, log_key_pem, res);
        if (r != 0)
                return r;

        if (rc->tree_size != res->checkpoint_size)
                return fail(res, CLIENT_RECEIPT_TREE_SIZE, "tree_size %" PRIu64 " is not the checkpoint's size %" PRIu64,
                            rc->tree_size, res->checkpoint_size);

        /* A purged entry's stub stands for its leaf hash (audit proof of a
         * purged entry); bytes that are no well-formed entry are hashed as
         * they are, and the entry check below refuses them. */
        r = proto_entry_leaf_hash(rc->leaf, rc->leaf_len, leaf_hash);
        if (r == -EBADMSG)
                r = proto_merkle_leaf_hash(rc->leaf, rc->leaf_len, leaf_hash);
        if (r < 0)
                return -ENOMEM;
        if (rc->n_proof > PROTO_MERKLE_MAX_PROOF)
                return fail(res, CLIENT_RECEIPT_INCLUSION, "the proof has %zu hashes, more than any tree needs",
                            rc->n_proof);
        r = proto_merkle_verify_inclusion(leaf_hash, rc->log_seq, rc->tree_size, rc->proof, rc->n_proof, res->root);
        if (r == -EINVAL)
                return fail(res, CLIENT_RECEIPT_INCLUSION, "log_seq %" PRIu64 " is outside the tree of size %" PRIu64,
                            rc->log_seq, rc->tree_size);
        if (r == -EBADMSG)
                return fail(res, CLIENT_RECEIPT_INCLUSION,
                            "the leaf and the %zu-hash proof at index %" PRIu64 " do not reproduce the root of the tree of size %" PRIu64,
                            rc->n_proof, rc->log_seq, rc->tree_size);
        if (r < 0)
                return -ENOMEM;

        r = check_entry(rc, res);
        if (r != 0)
                return r;

        if (signer) {
                r = check_signer(signer, res);
                if (r != 0)
                        return r;
        }

        res->detail[0] = '\0';
        return CLIENT_RECEIPT_VERIFIED;
}
