/* libprovsign: public keys, key lists, the key lifecycle (operator role)
 * and the key bundle. */

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "dsse.h"
#include "frame.h"
#include "keybundle.h"
#include "keyid.h"
#include "provsign.pb-c.h"

#include "libprovsign-internal.h"
#include "provsign.h"

/* ---- Keys ---------------------------------------------------------------- */

void client_key_done(struct provsign_key *k) {
        free(k->principal);
        free(k->reason);
        free(k->der);
        free(k->pem);
}

/* Copies a KeyInfo from the wire into k, checking what can be checked: the
 * key id format and, when the public key is present, that the id is its
 * SHA-256 (docs/formats.md). need_der: the reply must include it. */
int client_key_from_info(const Provsign__KeyInfo *ki, bool need_der, struct provsign_key *k) {
        struct provsign_key t = {};
        int r;

        if (!ki || !proto_keyid_hex_valid(str_or_empty(ki->keyid)))
                return -EPROTO;

        if (ki->public_key_der.len > 0) {
                char id[PROTO_KEYID_HEX_LEN + 1];

                if (!ki->public_key_der.data || ki->public_key_der.len > PROTO_FRAME_MAX)
                        return -EPROTO;
                proto_keyid_hex(ki->public_key_der.data, ki->public_key_der.len, id);
                if (strcmp(id, ki->keyid) != 0)
                        return -EPROTO;
        } else if (need_der)
                return -EPROTO;

        memcpy(t.keyid, ki->keyid, sizeof t.keyid);
        t.generation = ki->generation;
        t.algorithm = (int) ki->algorithm;
        t.state = (int) ki->state;
        t.created_us = ki->created_us;
        t.retired_us = ki->retired_us;
        t.revoked_us = ki->revoked_us;
        t.compromised_since_us = ki->compromised_since_us;
        t.destroyed_us = ki->destroyed_us;
        t.in_token = ki->in_token;

        t.principal = strdup(str_or_empty(ki->principal));
        if (!t.principal) {
                r = -ENOMEM;
                goto fail;
        }
        if (ki->reason && ki->reason[0] && !(t.reason = strdup(ki->reason))) {
                r = -ENOMEM;
                goto fail;
        }

        if (ki->public_key_der.len > 0) {
                t.der = malloc(ki->public_key_der.len);
                if (!t.der) {
                        r = -ENOMEM;
                        goto fail;
                }
                memcpy(t.der, ki->public_key_der.data, ki->public_key_der.len);
                t.der_len = ki->public_key_der.len;

                r = client_pem_from_der(t.der, t.der_len, &t.pem);
                if (r < 0)
                        goto fail;
        }

        *k = t;
        return 0;
fail:
        client_key_done(&t);
        return r;
}

_public_ int provsign_get_public_key(provsign_conn *conn, const char *principal, const char *keyid, provsign_key **ret) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__GetPublicKeyRequest gr = PROVSIGN__GET_PUBLIC_KEY_REQUEST__INIT;
        Provsign__Response *resp = NULL;
        struct provsign_key *k = NULL;
        bool by_principal = principal && *principal, by_keyid = keyid && *keyid;
        int r;

        if (!conn || !ret || by_principal == by_keyid)
                return -EINVAL;
        if (by_keyid && !proto_keyid_hex_valid(keyid))
                return -EINVAL;

        gr.principal = (char *) (by_principal ? principal : "");
        gr.keyid = (char *) (by_keyid ? keyid : "");
        req.body_case = PROVSIGN__REQUEST__BODY_GET_PUBLIC_KEY;
        req.get_public_key = &gr;

        r = client_conn_transact(conn, &req, &resp);
        if (r != 0)
                return r;

        if (resp->body_case != PROVSIGN__RESPONSE__BODY_GET_PUBLIC_KEY || !resp->get_public_key) {
                r = -EPROTO;
                goto out;
        }

        k = calloc(1, sizeof *k);
        if (!k) {
                r = -ENOMEM;
                goto out;
        }
        r = client_key_from_info(resp->get_public_key->key, true, k);
        if (r < 0) {
                free(k);
                k = NULL;
                goto out;
        }

        /* The key must be the one asked for. */
        if ((by_keyid && strcmp(k->keyid, keyid) != 0) ||
            (by_principal && strcmp(k->principal, principal) != 0)) {
                r = -EPROTO;
                goto out;
        }

        *ret = k;
        k = NULL;
        r = 0;
out:
        provsign_key_free(k);
        provsign__response__free_unpacked(resp, NULL);
        return r;
}

_public_ const char *provsign_key_keyid(const provsign_key *key) {
        return key->keyid;
}

_public_ const char *provsign_key_principal(const provsign_key *key) {
        return key->principal;
}

_public_ uint32_t provsign_key_generation(const provsign_key *key) {
        return key->generation;
}

_public_ int provsign_key_algorithm(const provsign_key *key) {
        return key->algorithm;
}

_public_ int provsign_key_state(const provsign_key *key) {
        return key->state;
}

_public_ int64_t provsign_key_created_us(const provsign_key *key) {
        return key->created_us;
}

_public_ int64_t provsign_key_retired_us(const provsign_key *key) {
        return key->retired_us;
}

_public_ int64_t provsign_key_revoked_us(const provsign_key *key) {
        return key->revoked_us;
}

_public_ int64_t provsign_key_compromised_since_us(const provsign_key *key) {
        return key->compromised_since_us;
}

_public_ int64_t provsign_key_destroyed_us(const provsign_key *key) {
        return key->destroyed_us;
}

_public_ const char *provsign_key_reason(const provsign_key *key) {
        return key->reason;
}

_public_ int provsign_key_in_token(const provsign_key *key) {
        return key->in_token;
}

_public_ const uint8_t *provsign_key_spki_der(const provsign_key *key, size_t *ret_len) {
        if (ret_len)
                *ret_len = key->der_len;
        return key->der;
}

_public_ const char *provsign_key_pem(const provsign_key *key) {
        return key->pem;
}

_public_ void provsign_key_free(provsign_key *key) {
        if (!key)
                return;
        client_key_done(key);
        free(key);
}

_public_ int provsign_list_keys(provsign_conn *conn, const char *principal, provsign_key_list **ret) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__ListKeysRequest lr = PROVSIGN__LIST_KEYS_REQUEST__INIT;
        Provsign__Response *resp = NULL;
        const Provsign__ListKeysResponse *body;
        provsign_key_list *list = NULL;
        int r;

        if (!conn || !ret)
                return -EINVAL;

        lr.principal = (char *) (principal ? principal : "");
        req.body_case = PROVSIGN__REQUEST__BODY_LIST_KEYS;
        req.list_keys = &lr;

        r = client_conn_transact(conn, &req, &resp);
        if (r != 0)
                return r;

        body = resp->list_keys;
        if (resp->body_case != PROVSIGN__RESPONSE__BODY_LIST_KEYS || !body ||
            (body->n_keys > 0 && !body->keys)) {
                r = -EPROTO;
                goto out;
        }

        list = calloc(1, sizeof *list);
        if (!list) {
                r = -ENOMEM;
                goto out;
        }
        if (body->n_keys > 0) {
                /* n_keys is bounded by the 64 KiB frame. */
                list->keys = calloc(body->n_keys, sizeof *list->keys);
                if (!list->keys) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        for (size_t i = 0; i < body->n_keys; i++) {
                r = client_key_from_info(body->keys[i], false, &list->keys[i]);
                if (r < 0)
                        goto out;
                list->n++;

                /* A filtered list holds only that principal's keys. */
                if (principal && *principal && strcmp(list->keys[i].principal, principal) != 0) {
                        r = -EPROTO;
                        goto out;
                }
        }

        *ret = list;
        list = NULL;
        r = 0;
out:
        provsign_key_list_free(list);
        provsign__response__free_unpacked(resp, NULL);
        return r;
}

_public_ size_t provsign_key_list_count(const provsign_key_list *list) {
        return list ? list->n : 0;
}

_public_ const provsign_key *provsign_key_list_get(const provsign_key_list *list, size_t i) {
        if (!list || i >= list->n)
                return NULL;
        return &list->keys[i];
}

_public_ void provsign_key_list_free(provsign_key_list *list) {
        if (!list)
                return;
        for (size_t i = 0; i < list->n; i++)
                client_key_done(&list->keys[i]);
        free(list->keys);
        free(list);
}


/* ---- Key lifecycle (operator role) -------------------------------------- */

struct provsign_key_change {
        struct provsign_key *key;       /* NULL when the agent named none */
        struct provsign_key *active;
        uint64_t log_seq;
};

_public_ void provsign_key_change_free(provsign_key_change *kc) {
        if (!kc)
                return;
        provsign_key_free(kc->key);
        provsign_key_free(kc->active);
        free(kc);
}

static int key_change_copy(const Provsign__KeyInfo *ki, struct provsign_key **ret) {
        if (!ki)
                return 0;
        struct provsign_key *k = calloc(1, sizeof *k);
        if (!k)
                return -ENOMEM;
        int r = client_key_from_info(ki, false, k);
        if (r < 0) {
                free(k);
                return r;
        }
        *ret = k;
        return 0;
}

static int key_change_transact(provsign_conn *conn, Provsign__Request *req, provsign_key_change **ret) {
        Provsign__Response *resp = NULL;
        provsign_key_change *kc = NULL;
        int r = client_conn_transact(conn, req, &resp);
        if (r != 0)
                return r;
        const Provsign__KeyChangeResponse *body = resp->key_change;
        if (resp->body_case != PROVSIGN__RESPONSE__BODY_KEY_CHANGE || !body) {
                r = -EPROTO;
                goto out;
        }
        kc = calloc(1, sizeof *kc);
        if (!kc) {
                r = -ENOMEM;
                goto out;
        }
        kc->log_seq = body->log_seq;
        r = key_change_copy(body->key, &kc->key);
        if (r >= 0)
                r = key_change_copy(body->active, &kc->active);
        if (r < 0)
                goto out;
        if (ret) {
                *ret = kc;
                kc = NULL;
        }
        r = 0;
out:
        provsign_key_change_free(kc);
        provsign__response__free_unpacked(resp, NULL);
        return r;
}

_public_ int provsign_rotate_key(provsign_conn *conn, const char *principal, int algorithm, provsign_key_change **ret) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__RotateKeyRequest rr = PROVSIGN__ROTATE_KEY_REQUEST__INIT;
        if (!conn || !principal || !*principal || algorithm < 0)
                return -EINVAL;
        rr.principal = (char *) principal;
        rr.algorithm = (Provsign__KeyAlgorithm) algorithm;
        req.body_case = PROVSIGN__REQUEST__BODY_ROTATE_KEY;
        req.rotate_key = &rr;
        return key_change_transact(conn, &req, ret);
}

_public_ int provsign_revoke_key(provsign_conn *conn, const char *keyid, const char *reason,
                                 int64_t compromised_since_us, provsign_key_change **ret) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__RevokeKeyRequest rr = PROVSIGN__REVOKE_KEY_REQUEST__INIT;
        if (!conn || !keyid || !proto_keyid_hex_valid(keyid) || !reason || !*reason || compromised_since_us < 0)
                return -EINVAL;
        rr.keyid = (char *) keyid;
        rr.reason = (char *) reason;
        rr.compromised_since_us = compromised_since_us;
        req.body_case = PROVSIGN__REQUEST__BODY_REVOKE_KEY;
        req.revoke_key = &rr;
        return key_change_transact(conn, &req, ret);
}

_public_ int provsign_destroy_key(provsign_conn *conn, const char *keyid, provsign_key_change **ret) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__DestroyKeyRequest dr = PROVSIGN__DESTROY_KEY_REQUEST__INIT;
        if (!conn || !keyid || !proto_keyid_hex_valid(keyid))
                return -EINVAL;
        dr.keyid = (char *) keyid;
        req.body_case = PROVSIGN__REQUEST__BODY_DESTROY_KEY;
        req.destroy_key = &dr;
        return key_change_transact(conn, &req, ret);
}

_public_ const provsign_key *provsign_key_change_key(const provsign_key_change *kc) {
        return kc->key;
}

_public_ const provsign_key *provsign_key_change_active(const provsign_key_change *kc) {
        return kc->active;
}

_public_ uint64_t provsign_key_change_log_seq(const provsign_key_change *kc) {
        return kc->log_seq;
}


/* ---- The key bundle ------------------------------------------------------- */

/* The public header spells the media type out (it includes nothing of
 * proto/); test-client checks the two strings are equal. */
static_assert(sizeof PROVSIGN_KEY_BUNDLE_TYPE == sizeof PROTO_KEY_BUNDLE_TYPE, "PROVSIGN_KEY_BUNDLE_TYPE");

_public_ int provsign_get_key_bundle(provsign_conn *conn, char **ret_envelope) {
        return provsign_get_key_bundle_for(conn, NULL, ret_envelope);
}

_public_ int provsign_get_key_bundle_for(provsign_conn *conn, const char *principal, char **ret_envelope) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__GetKeyBundleRequest br = PROVSIGN__GET_KEY_BUNDLE_REQUEST__INIT;
        Provsign__Response *resp = NULL;
        struct proto_dsse_envelope *env = NULL;
        char *text = NULL;
        size_t len = 0;
        bool more = false;      /* parts still to come: leaving now desynchronizes conn */
        int r;

        if (!conn || !ret_envelope)
                return -EINVAL;

        br.principal = (char *) (principal ? principal : "");
        br.in_parts = true;
        req.body_case = PROVSIGN__REQUEST__BODY_GET_KEY_BUNDLE;
        req.get_key_bundle = &br;

        r = client_conn_transact(conn, &req, &resp);
        if (r != 0)
                return r;
        /* The envelope's parts, one per frame, until more is false. */
        for (;;) {
                const char *part;
                size_t n;
                char *grown;

                if (resp->status != PROVSIGN__STATUS__OK || resp->body_case != PROVSIGN__RESPONSE__BODY_KEY_BUNDLE ||
                    !resp->key_bundle) {
                        r = -EPROTO;
                        goto out;
                }
                more = resp->key_bundle->more;
                part = str_or_empty(resp->key_bundle->envelope);
                n = strlen(part);
                if (n == 0 && more) {
                        r = -EPROTO;    /* an empty part that is not the last: no progress */
                        goto out;
                }
                if (n > PROTO_KEY_BUNDLE_MAX - len) {
                        r = -EMSGSIZE;
                        goto out;
                }
                grown = realloc(text, len + n + 1);
                if (!grown) {
                        r = -ENOMEM;
                        goto out;
                }
                text = grown;
                memcpy(text + len, part, n + 1);
                len += n;
                if (!more)
                        break;
                provsign__response__free_unpacked(resp, NULL);
                resp = NULL;
                r = client_conn_next(conn, &resp);
                if (r != 0) {
                        more = false;   /* a refusal ends the stream; a failure marked conn */
                        goto out;
                }
        }
        r = proto_dsse_envelope_parse(text ? text : "", len, &env);
        if (r == -ENOMEM)
                goto out;
        if (r < 0 || strcmp(env->payload_type, PROTO_KEY_BUNDLE_TYPE) != 0) {
                r = -EPROTO;
                goto out;
        }
        *ret_envelope = text;
        text = NULL;
        r = 0;
out:
        if (r < 0 && more)
                conn->broken = true;
        free(text);
        proto_dsse_envelope_free(env);
        if (resp)
                provsign__response__free_unpacked(resp, NULL);
        return r;
}
