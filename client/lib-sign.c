/* libprovsign: Sign (a precomputed digest, its receipt checked on arrival)
 * and DSSE envelopes (the payload stays here; only the PAE digest is sent). */

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>


#include "dsse.h"
#include "frame.h"
#include "keyid.h"
#include "merkle.h"
#include "names.h"
#include "note.h"
#include "provsign.pb-c.h"
#include "receipt.h"
#include "sigverify.h"

#include "libprovsign-internal.h"
#include "provsign.h"

/* ---- Sign ---------------------------------------------------------------- */

/* Copies the receipt of a Sign reply into sig after checking it: the shape
 * (every proof entry one 32-byte hash, at most PROTO_MERKLE_MAX_PROOF of
 * them, a leaf, a note, a representable time) and then its meaning, with
 * the checks of `provsign receipt verify` that need no log key: the note
 * is a checkpoint of tree_size, leaf and proof reproduce its root at
 * log_seq, and the leaf is the SIGN entry of this very signature (key,
 * principal, digest). A receipt that fails is -EPROTO: it would prove
 * nothing to anyone, and the caller is better told now than at audit. */
static int receipt_from_reply(const Provsign__SignResponse *body, int digest_alg, const void *digest,
                              size_t digest_len, provsign_signature *sig) {
        const Provsign__Receipt *rr = body->receipt;
        struct client_receipt_result res = {};
        struct client_receipt rc = {};
        struct client_receipt_signer signer = {
                .keyid = body->keyid,
                .principal = body->principal,
                .digest_algorithm = digest_alg,
                .digest = digest,
                .digest_len = digest_len,
        };
        int r;

        if (!rr)
                return -EPROTO;
        if (rr->n_inclusion_proof > PROTO_MERKLE_MAX_PROOF || (rr->n_inclusion_proof > 0 && !rr->inclusion_proof))
                return -EPROTO;
        for (size_t i = 0; i < rr->n_inclusion_proof; i++)
                if (rr->inclusion_proof[i].len != PROTO_MERKLE_HASH_LEN || !rr->inclusion_proof[i].data)
                        return -EPROTO;
        if (rr->leaf.len == 0 || !rr->leaf.data)
                return -EPROTO;
        if (!*str_or_empty(rr->checkpoint) || strlen(rr->checkpoint) > PROTO_NOTE_MAX_SIZE)
                return -EPROTO;
        /* A time the CLI can write as RFC 3339; sizes JSON can carry. */
        if (rr->log_time_us < 0 || rr->log_time_us >= PROTO_TIME_US_END || rr->tree_size > INT64_MAX)
                return -EPROTO;

        if (rr->n_inclusion_proof > 0) {
                sig->proof = calloc(rr->n_inclusion_proof, sizeof *sig->proof);
                if (!sig->proof)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < rr->n_inclusion_proof; i++)
                memcpy(sig->proof[i], rr->inclusion_proof[i].data, PROTO_MERKLE_HASH_LEN);
        sig->n_proof = rr->n_inclusion_proof;
        sig->leaf = malloc(rr->leaf.len);
        sig->checkpoint = strdup(rr->checkpoint);
        if (!sig->leaf || !sig->checkpoint)
                return -ENOMEM;
        memcpy(sig->leaf, rr->leaf.data, rr->leaf.len);
        sig->leaf_len = rr->leaf.len;
        sig->log_seq = rr->log_seq;
        sig->log_time_us = rr->log_time_us;
        sig->tree_size = rr->tree_size;

        rc = (struct client_receipt) {
                .log_seq = sig->log_seq,
                .log_time_us = sig->log_time_us,
                .leaf = sig->leaf,
                .leaf_len = sig->leaf_len,
                .tree_size = sig->tree_size,
                .proof = (const uint8_t (*)[PROTO_MERKLE_HASH_LEN]) sig->proof,
                .n_proof = sig->n_proof,
                .checkpoint = sig->checkpoint,
        };
        r = client_receipt_verify(&rc, &signer, NULL, &res);
        client_receipt_result_done(&res);
        if (r < 0)
                return r;
        if (r > 0)
                return -EPROTO;

        sig->has_receipt = true;
        return 0;
}

/* The wire annotations of the caller's: *ret_ann and *ret_annp (free()
 * both) point into annotations. */
static int wire_annotations(const struct provsign_annotation *annotations, size_t n, Provsign__Annotation **ret_ann,
                            Provsign__Annotation ***ret_annp) {
        Provsign__Annotation *ann, **annp;

        if (n == 0)
                return 0;
        ann = calloc(n, sizeof *ann);
        annp = calloc(n, sizeof *annp);
        *ret_ann = ann;
        *ret_annp = annp;
        if (!ann || !annp)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (!annotations[i].key)
                        return -EINVAL;
                provsign__annotation__init(&ann[i]);
                ann[i].key = (char *) annotations[i].key;
                ann[i].value = (char *) (annotations[i].value ? annotations[i].value : "");
                annp[i] = &ann[i];
        }
        return 0;
}

/* The signature of an OK Sign reply, checked (the key id's shape, a
 * signature, the principal asked for, the receipt). */
static int signature_from_reply(const Provsign__Response *resp, const char *principal, int digest_alg,
                                const void *digest, size_t digest_len, provsign_signature **ret) {
        const Provsign__SignResponse *body = resp->sign;
        provsign_signature *sig;
        int r;

        if (resp->body_case != PROVSIGN__RESPONSE__BODY_SIGN || !body || !proto_keyid_hex_valid(str_or_empty(body->keyid)) ||
            body->signature.len == 0 || !body->signature.data || !*str_or_empty(body->principal) ||
            (principal && *principal && strcmp(body->principal, principal) != 0))
                return -EPROTO;
        sig = calloc(1, sizeof *sig);
        if (!sig)
                return -ENOMEM;
        memcpy(sig->keyid, body->keyid, sizeof sig->keyid);
        sig->algorithm = (int) body->algorithm;
        sig->generation = body->generation;
        sig->principal = strdup(body->principal);
        sig->der = malloc(body->signature.len);
        r = sig->principal && sig->der ? 0 : -ENOMEM;
        if (r == 0) {
                memcpy(sig->der, body->signature.data, body->signature.len);
                sig->der_len = body->signature.len;
                r = receipt_from_reply(body, digest_alg, digest, digest_len, sig);
        }
        if (r < 0) {
                provsign_signature_free(sig);
                return r;
        }
        *ret = sig;
        return 0;
}

/* A Sign request for principal, digest_alg and the options, without its
 * digest: checks the arguments as provsign_sign() documents them. On
 * success *sr points into *ann and *annp (the caller frees both). */
static int sign_request_make(const char *principal, enum provsign_digest_algorithm digest_alg, size_t digest_len,
                             const char *payload_type, const struct provsign_annotation *annotations,
                             size_t n_annotations, Provsign__SignRequest *sr, Provsign__Annotation **ann,
                             Provsign__Annotation ***annp) {
        size_t want;
        int r;

        want = proto_digest_length((int) digest_alg);
        if (want == 0 || digest_len != want)
                return -EINVAL;
        if (n_annotations > 0 && !annotations)
                return -EINVAL;
        /* Each annotation takes at least 2 bytes on the wire: more than this
         * can never fit a frame, and the bound keeps the allocations below
         * from overflowing. */
        if (n_annotations > PROTO_FRAME_MAX / 2)
                return -EMSGSIZE;
        r = wire_annotations(annotations, n_annotations, ann, annp);
        if (r < 0)
                return r;

        sr->principal = (char *) (principal ? principal : "");
        sr->digest_algorithm = (Provsign__DigestAlgorithm) digest_alg;
        sr->payload_type = (char *) (payload_type ? payload_type : "");
        sr->n_annotations = n_annotations;
        sr->annotations = *annp;
        return 0;
}

_public_ int provsign_sign(provsign_conn *conn,
                           const char *principal,
                           enum provsign_digest_algorithm digest_alg,
                           const void *digest,
                           size_t digest_len,
                           const char *payload_type,
                           const struct provsign_annotation *annotations,
                           size_t n_annotations,
                           provsign_signature **ret) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__SignRequest sr = PROVSIGN__SIGN_REQUEST__INIT;
        Provsign__Annotation *ann = NULL, **annp = NULL;
        Provsign__Response *resp = NULL;
        int r;

        if (!conn || !ret || !digest)
                return -EINVAL;
        r = sign_request_make(principal, digest_alg, digest_len, payload_type, annotations, n_annotations, &sr, &ann,
                              &annp);
        if (r < 0)
                goto out;
        sr.digest.data = (uint8_t *) digest;
        sr.digest.len = digest_len;
        req.body_case = PROVSIGN__REQUEST__BODY_SIGN;
        req.sign = &sr;

        r = client_conn_transact(conn, &req, &resp);
        if (r == 0)
                r = signature_from_reply(resp, principal, (int) digest_alg, digest, digest_len, ret);
out:
        if (resp)
                provsign__response__free_unpacked(resp, NULL);
        free(annp);
        free(ann);
        return r;
}

/* provsign_sign_many: the requests share sr (all but the digest). */
struct sign_many {
        Provsign__SignRequest sr;
        const char *principal;
        int digest_alg;
        const void *const *digests;
        size_t digest_len;
        provsign_signature **sigs;
};

static int sign_many_prepare(void *ud, size_t i, Provsign__Request *req) {
        struct sign_many *m = ud;

        m->sr.digest.data = (uint8_t *) m->digests[i];
        m->sr.digest.len = m->digest_len;
        req->body_case = PROVSIGN__REQUEST__BODY_SIGN;
        req->sign = &m->sr;
        return 0;
}

static int sign_many_ok(void *ud, size_t i, const Provsign__Response *resp) {
        struct sign_many *m = ud;

        return signature_from_reply(resp, m->principal, m->digest_alg, m->digests[i], m->digest_len, &m->sigs[i]);
}

_public_ int provsign_sign_many(provsign_conn *conn,
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
                                provsign_signature **sigs) {
        struct sign_many m = { .sr = PROVSIGN__SIGN_REQUEST__INIT };
        Provsign__Annotation *ann = NULL, **annp = NULL;
        int r;

        if (!results || !sigs)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                sigs[i] = NULL;
        r = !conn || (n > 0 && !digests) ? -EINVAL : 0;
        for (size_t i = 0; i < n && r == 0; i++)
                if (!digests[i])
                        r = -EINVAL;
        if (r == 0)
                r = sign_request_make(principal, digest_alg, digest_len, payload_type, annotations, n_annotations,
                                      &m.sr, &ann, &annp);
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        results[i] = r;
                goto out;
        }
        m.principal = principal;
        m.digest_alg = (int) digest_alg;
        m.digests = digests;
        m.digest_len = digest_len;
        m.sigs = sigs;
        r = client_conn_pipeline(conn, n, window ? window : PROVSIGN_SIGN_MANY_WINDOW, sign_many_prepare, sign_many_ok,
                                 &m, results);
out:
        free(annp);
        free(ann);
        return r;
}

_public_ const char *provsign_signature_keyid(const provsign_signature *sig) {
        return sig->keyid;
}

_public_ int provsign_signature_algorithm(const provsign_signature *sig) {
        return sig->algorithm;
}

_public_ const uint8_t *provsign_signature_der(const provsign_signature *sig, size_t *ret_len) {
        if (ret_len)
                *ret_len = sig->der_len;
        return sig->der;
}

_public_ const char *provsign_signature_principal(const provsign_signature *sig) {
        return sig->principal;
}

_public_ uint32_t provsign_signature_generation(const provsign_signature *sig) {
        return sig->generation;
}

_public_ int provsign_signature_has_receipt(const provsign_signature *sig) {
        return sig->has_receipt;
}

_public_ uint64_t provsign_signature_log_seq(const provsign_signature *sig) {
        return sig->log_seq;
}

_public_ int64_t provsign_signature_log_time_us(const provsign_signature *sig) {
        return sig->log_time_us;
}

_public_ const uint8_t *provsign_signature_leaf(const provsign_signature *sig, size_t *ret_len) {
        if (ret_len)
                *ret_len = sig->leaf_len;
        return sig->leaf;
}

_public_ uint64_t provsign_signature_tree_size(const provsign_signature *sig) {
        return sig->tree_size;
}

_public_ const uint8_t *provsign_signature_inclusion_proof(const provsign_signature *sig, size_t *ret_n) {
        if (ret_n)
                *ret_n = sig->n_proof;
        return sig->n_proof > 0 ? sig->proof[0] : NULL;
}

_public_ const char *provsign_signature_checkpoint(const provsign_signature *sig) {
        return sig->checkpoint;
}

_public_ void provsign_signature_free(provsign_signature *sig) {
        if (!sig)
                return;
        free(sig->principal);
        free(sig->der);
        free(sig->leaf);
        free(sig->proof);
        free(sig->checkpoint);
        free(sig);
}


/* ---- DSSE envelopes ------------------------------------------------------ */

/* DSSE (docs/formats.md): the payload never leaves the caller; the agent signs the
 * digest of its PAE (proto/dsse.h), with the digest its key algorithm
 * takes. */

/* The only principal this caller may sign for, as the agent says, or NULL
 * (none or several: the Sign request then omits it and the agent's answer,
 * refusal included, is the caller's). */
static int sole_principal(provsign_conn *conn, char **ret) {
        provsign_agent_status *st = NULL;
        const char *const *p;
        int r;

        *ret = NULL;
        r = provsign_status(conn, &st);
        if (r != 0)
                return r;
        p = provsign_agent_status_caller_principals(st);
        if (p[0] && !p[1]) {
                *ret = strdup(p[0]);
                if (!*ret)
                        r = -ENOMEM;
        }
        provsign_agent_status_free(st);
        return r;
}

/* The digest algorithm of principal's active key; on a refusal (no such
 * principal, no active key, ...) SHA-256, so that the Sign request is made
 * and the agent's refusal of it, logged there, is what the caller sees. */
static int active_digest(provsign_conn *conn, const char *principal, int *ret) {
        provsign_key *key = NULL;
        int r, d;

        *ret = PROVSIGN__DIGEST_ALGORITHM__SHA256;
        if (!principal)
                return 0;
        r = provsign_get_public_key(conn, principal, NULL, &key);
        if (r > 0)
                return 0;
        if (r < 0)
                return r;
        d = proto_key_algorithm_digest(key->algorithm);
        provsign_key_free(key);
        if (d == 0)
                return -EPROTO; /* an algorithm this library cannot hash for */
        *ret = d;
        return 0;
}

/* Signs the PAE digest of payload as who, with the digest of who's active
 * key. Two rounds at most: a rotation to another algorithm between the
 * key query and the Sign makes the agent refuse the digest
 * (INVALID_ARGUMENT); the second round asks again. On success *ret_dalg,
 * digest[0..*ret_n) and *ret_sig. */
static int sign_pae(provsign_conn *conn, const char *who, const char *payload_type, const void *payload,
                    size_t payload_len, const struct provsign_annotation *annotations, size_t n_annotations,
                    int *ret_dalg, uint8_t digest[PROTO_DSSE_MAX_DIGEST], int *ret_n, provsign_signature **ret_sig) {
        int r = 0, dalg, n;

        for (int round = 0; round < 2; round++) {
                int again;

                r = active_digest(conn, who, &dalg);
                if (r < 0)
                        return r;
                n = proto_dsse_pae_digest(dalg, payload_type, payload, payload_len, digest);
                if (n < 0)
                        return n == -ENOMEM ? -ENOMEM : -EINVAL;
                r = provsign_sign(conn, who, (enum provsign_digest_algorithm) dalg, digest, (size_t) n, payload_type,
                                  annotations, n_annotations, ret_sig);
                if (r != PROVSIGN_INVALID_ARGUMENT || round > 0 || !who)
                        break;
                /* Only worth a second round when the key's digest changed. */
                again = dalg;
                r = active_digest(conn, who, &again);
                if (r < 0)
                        return r;
                if (again == dalg) {
                        r = PROVSIGN_INVALID_ARGUMENT;
                        break;
                }
        }
        *ret_dalg = dalg;
        *ret_n = n;
        return r;
}

_public_ int provsign_sign_dsse(provsign_conn *conn,
                                const char *principal,
                                const char *payload_type,
                                const void *payload,
                                size_t payload_len,
                                const struct provsign_annotation *annotations,
                                size_t n_annotations,
                                char **ret_envelope,
                                provsign_signature **ret_sig) {
        provsign_signature *sig = NULL;
        provsign_key *key = NULL;
        uint8_t digest[PROTO_DSSE_MAX_DIGEST];
        char *who = NULL, *json = NULL;
        int r, dalg, n;

        if (!conn || !ret_envelope || !payload_type || !*payload_type || (!payload && payload_len > 0))
                return -EINVAL;
        if (strlen(payload_type) > PROTO_DSSE_MAX_TYPE)
                return -EINVAL;
        if (payload_len > PROVSIGN_DSSE_MAX_PAYLOAD)
                return -EMSGSIZE;

        if (principal && *principal) {
                who = strdup(principal);
                if (!who)
                        return -ENOMEM;
        } else {
                r = sole_principal(conn, &who);
                if (r != 0)
                        return r;
        }

        r = sign_pae(conn, who, payload_type, payload, payload_len, annotations, n_annotations, &dalg, digest, &n,
                     &sig);
        if (r != 0)
                goto out;
        if (proto_key_algorithm_digest(sig->algorithm) != dalg) {
                r = -EPROTO;
                goto out;
        }

        /* The envelope goes to verifiers nobody here controls: check the
         * signature now, with the key the agent names. */
        r = provsign_get_public_key(conn, NULL, sig->keyid, &key);
        if (r > 0)
                r = -EPROTO;
        if (r < 0)
                goto out;
        r = proto_verify_digest_spki(key->der, key->der_len, dalg, digest, (size_t) n, sig->der, sig->der_len);
        if (r <= 0) {
                r = r < 0 ? r : -EPROTO;
                goto out;
        }

        struct proto_dsse_sig ds = { .keyid = sig->keyid, .sig = sig->der, .sig_len = sig->der_len };
        r = proto_dsse_envelope_format(payload_type, payload, payload_len, &ds, 1, &json);
        if (r < 0) {
                r = r == -ENOMEM ? -ENOMEM : -EINVAL;
                goto out;
        }

        *ret_envelope = json;
        json = NULL;
        if (ret_sig) {
                *ret_sig = sig;
                sig = NULL;
        }
        r = 0;
out:
        free(json);
        free(who);
        provsign_key_free(key);
        provsign_signature_free(sig);
        return r;
}

