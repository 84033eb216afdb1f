/* Checkpoints: a C2SP signed note over the tree's size and root, signed with
 * the log key in the token. */

#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "audit-int.h"
#include "note.h"

int audit_sign_checkpoint(agent_audit *a, uint64_t size, const uint8_t root[32], char **ret_note) {
        char *body = NULL;
        int r = proto_checkpoint_format(a->origin, size, root, &body);
        if (r < 0)
                return r;
        uint8_t digest[32], sig[KEYS_MAX_SIGNATURE];
        size_t sig_len;
        SHA256((const uint8_t *) body, strlen(body), digest);
        r = keys_sign(a->store, a->log_key, digest, sizeof digest, sig, &sig_len);
        if (r >= 0)
                r = proto_note_assemble(body, a->origin, a->log_key_hash, sig, sig_len, ret_note);
        free(body);
        return r;
}
