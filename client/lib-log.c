/* libprovsign: the audit log: checkpoints, the log key, streamed exports
 * and finds, inclusion proofs. */

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "keyid.h"
#include "merkle.h"
#include "note.h"
#include "provsign.pb-c.h"
#include "receipt.h"

#include "libprovsign-internal.h"
#include "provsign.h"

/* ---- The audit log: checkpoint and log key ------------------------------- */

/* GetCheckpoint, with a consistency proof when from_size > 0. The note must
 * be a checkpoint of the size the reply states (its signature needs the
 * log key, which the caller verifies with), the proof must answer the
 * question asked (from_size echoed, at most PROTO_MERKLE_MAX_PROOF hashes of
 * 32 bytes, from_size <= tree_size); anything else is -EPROTO. */
static int get_checkpoint(provsign_conn *conn, uint64_t from_size, char **ret_note, uint64_t *ret_size,
                          uint8_t **ret_proof, size_t *ret_n) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__GetCheckpointRequest cr = PROVSIGN__GET_CHECKPOINT_REQUEST__INIT;
        Provsign__Response *resp = NULL;
        const Provsign__GetCheckpointResponse *body;
        uint8_t root[PROTO_MERKLE_HASH_LEN], *proof = NULL;
        char *origin = NULL, *note = NULL;
        uint64_t size;
        size_t n;
        int r;

        cr.from_size = from_size;
        req.body_case = PROVSIGN__REQUEST__BODY_GET_CHECKPOINT;
        req.get_checkpoint = &cr;

        r = client_conn_transact(conn, &req, &resp);
        if (r != 0)
                return r;

        body = resp->checkpoint;
        if (resp->body_case != PROVSIGN__RESPONSE__BODY_CHECKPOINT || !body || !*str_or_empty(body->checkpoint)) {
                r = -EPROTO;
                goto out;
        }
        r = client_checkpoint_note_parse(body->checkpoint, strlen(body->checkpoint), &origin, &size, root);
        if (r == -ENOMEM)
                goto out;
        if (r < 0 || size != body->tree_size) {
                r = -EPROTO;
                goto out;
        }

        /* Without from_size no proof was asked for, and none is taken. */
        n = from_size > 0 ? body->n_consistency_proof : 0;
        if (from_size > 0 && (body->from_size != from_size || from_size > size))
                r = -EPROTO;
        if (n > PROTO_MERKLE_MAX_PROOF || (n > 0 && !body->consistency_proof))
                r = -EPROTO;
        for (size_t i = 0; r == 0 && i < n; i++)
                if (body->consistency_proof[i].len != PROTO_MERKLE_HASH_LEN || !body->consistency_proof[i].data)
                        r = -EPROTO;
        if (r < 0)
                goto out;

        note = strdup(body->checkpoint);
        proof = malloc(n > 0 ? n * PROTO_MERKLE_HASH_LEN : 1);
        if (!note || !proof) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n; i++)
                memcpy(proof + i * PROTO_MERKLE_HASH_LEN, body->consistency_proof[i].data, PROTO_MERKLE_HASH_LEN);

        *ret_note = note;
        note = NULL;
        if (ret_size)
                *ret_size = size;
        if (ret_proof) {
                *ret_proof = proof;
                proof = NULL;
        }
        if (ret_n)
                *ret_n = n;
        r = 0;
out:
        free(proof);
        free(note);
        free(origin);
        provsign__response__free_unpacked(resp, NULL);
        return r;
}

_public_ int provsign_get_checkpoint(provsign_conn *conn, char **ret_note, uint64_t *ret_size) {
        if (!conn || !ret_note)
                return -EINVAL;
        return get_checkpoint(conn, 0, ret_note, ret_size, NULL, NULL);
}

_public_ int provsign_get_checkpoint_consistency(provsign_conn *conn, uint64_t from_size, char **ret_note,
                                                 uint64_t *ret_size, uint8_t **ret_proof, size_t *ret_n) {
        if (!conn || !ret_note || !ret_proof || !ret_n || from_size == 0)
                return -EINVAL;
        return get_checkpoint(conn, from_size, ret_note, ret_size, ret_proof, ret_n);
}

_public_ int provsign_get_log_key(provsign_conn *conn, provsign_log_key **ret) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__GetLogKeyRequest lr = PROVSIGN__GET_LOG_KEY_REQUEST__INIT;
        Provsign__Response *resp = NULL;
        const Provsign__GetLogKeyResponse *body;
        provsign_log_key *k = NULL;
        char id[PROTO_KEYID_HEX_LEN + 1];
        int r;

        if (!conn || !ret)
                return -EINVAL;

        req.body_case = PROVSIGN__REQUEST__BODY_GET_LOG_KEY;
        req.get_log_key = &lr;

        r = client_conn_transact(conn, &req, &resp);
        if (r != 0)
                return r;

        body = resp->log_key;
        if (resp->body_case != PROVSIGN__RESPONSE__BODY_LOG_KEY || !body ||
            !*str_or_empty(body->origin) ||
            body->public_key_der.len == 0 || !body->public_key_der.data ||
            body->public_key_der.len > PROTO_FRAME_MAX ||
            !proto_keyid_hex_valid(str_or_empty(body->keyid))) {
                r = -EPROTO;
                goto out;
        }
        /* The key id is the SHA-256 of the DER, as for every key. */
        proto_keyid_hex(body->public_key_der.data, body->public_key_der.len, id);
        if (strcmp(id, body->keyid) != 0) {
                r = -EPROTO;
                goto out;
        }

        k = calloc(1, sizeof *k);
        if (!k) {
                r = -ENOMEM;
                goto out;
        }
        memcpy(k->keyid, id, sizeof k->keyid);
        k->origin = strdup(body->origin);
        k->der = malloc(body->public_key_der.len);
        if (!k->origin || !k->der) {
                r = -ENOMEM;
                goto out;
        }
        memcpy(k->der, body->public_key_der.data, body->public_key_der.len);
        k->der_len = body->public_key_der.len;

        r = client_pem_from_der(k->der, k->der_len, &k->pem);
        if (r < 0)
                goto out;

        /* Made here from what was checked, like the PEM; this also checks
         * that the origin is a key name and the key an ECDSA key that can
         * sign notes (-EINVAL). An agent that states another string
         * contradicts itself. */
        r = proto_note_verifier_key(k->origin, k->der, k->der_len, &k->verifier_key);
        if (r == -EINVAL)
                r = -EPROTO;
        if (r < 0)
                goto out;
        if (*str_or_empty(body->verifier_key) && strcmp(body->verifier_key, k->verifier_key) != 0) {
                r = -EPROTO;
                goto out;
        }

        *ret = k;
        k = NULL;
        r = 0;
out:
        provsign_log_key_free(k);
        provsign__response__free_unpacked(resp, NULL);
        return r;
}

_public_ const char *provsign_log_key_origin(const provsign_log_key *key) {
        return key->origin;
}

_public_ const char *provsign_log_key_keyid(const provsign_log_key *key) {
        return key->keyid;
}

_public_ const uint8_t *provsign_log_key_spki_der(const provsign_log_key *key, size_t *ret_len) {
        if (ret_len)
                *ret_len = key->der_len;
        return key->der;
}

_public_ const char *provsign_log_key_pem(const provsign_log_key *key) {
        return key->pem;
}

_public_ const char *provsign_log_key_verifier_key(const provsign_log_key *key) {
        return key->verifier_key;
}

_public_ void provsign_log_key_free(provsign_log_key *key) {
        if (!key)
                return;
        free(key->origin);
        free(key->der);
        free(key->pem);
        free(key->verifier_key);
        free(key);
}

