/* The trust file of a verifier that accepts several logs (docs/fleet.md
 * "Trust file"): one note verifier key per line, as `provsign audit
 * log-key` prints it (<origin>+<key hash>+base64(0x02 || SPKI)); '#'
 * comments and blank lines are ignored. Used by `provsign verify --trust`,
 * `provsign receipt verify --trust` and `provsign audit verify --trust`.
 * Nothing here prints or exits. */
#pragma once

#include <stddef.h>

#include "keyid.h"

#define CLIENT_TRUST_FILE_MAX (1024u * 1024u)

struct client_trust_entry {
        char *origin;                        /* the key name: the log's origin */
        char *pem;                           /* the log key, "PUBLIC KEY" PEM */
        char keyid[PROTO_KEYID_HEX_LEN + 1]; /* SHA-256 of the SPKI, as in bundles */
};

struct client_trust {
        struct client_trust_entry *e;
        size_t n;
};

/* client_trust_parse: 0 with t filled (at least one entry); -EBADMSG for a
 * malformed line (*ret_line its number, msg why), -ENOMEM. Two lines for
 * one origin are malformed. Release t with client_trust_done(). */
int client_trust_parse(const char *text, size_t len, struct client_trust *t, size_t *ret_line, char *msg,
                       size_t msg_size);
void client_trust_done(struct client_trust *t);

/* The entry for a log origin, or for a log key id; NULL when none. */
const struct client_trust_entry *client_trust_by_origin(const struct client_trust *t, const char *origin);
const struct client_trust_entry *client_trust_by_keyid(const struct client_trust *t, const char *keyid);

/* client_trust_for_checkpoint: the entry for the origin of the signed
 * checkpoint note (not verified here: the caller verifies it with the
 * entry's key, which also checks the key hash of its signature line).
 * 0 with *ret (NULL when the origin is not listed) and *ret_origin (caller
 * free()s); -EBADMSG for a malformed note, -ENOMEM. */
int client_trust_for_checkpoint(const struct client_trust *t, const char *note, const struct client_trust_entry **ret,
                                char **ret_origin);

/* client_trust_for_bundle: the entry whose key signed the key bundle
 * envelope, by the key ids of its signatures (not verified here). 0 with
 * *ret (NULL when no signature's key id is listed); -EBADMSG when the
 * bundle is not a DSSE envelope, -ENOMEM. */
int client_trust_for_bundle(const struct client_trust *t, const char *bundle, size_t len,
                            const struct client_trust_entry **ret);
