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
#include "entry.h"
#include "names.h"
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

_public_ int provsign_audit_purge(provsign_conn *conn, int64_t before_us, uint64_t *ret_purged,
                                  uint64_t *ret_through_seq, uint64_t *ret_log_seq) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__PurgeRequest pr = PROVSIGN__PURGE_REQUEST__INIT;
        Provsign__Response *resp = NULL;
        if (!conn || before_us <= 0)
                return -EINVAL;
        pr.before_us = before_us;
        req.body_case = PROVSIGN__REQUEST__BODY_PURGE;
        req.purge = &pr;
        int r = client_conn_transact(conn, &req, &resp);
        if (r != 0)
                return r;
        if (resp->body_case != PROVSIGN__RESPONSE__BODY_PURGE || !resp->purge) {
                provsign__response__free_unpacked(resp, NULL);
                return -EPROTO;
        }
        if (ret_purged)
                *ret_purged = resp->purge->purged;
        if (ret_through_seq)
                *ret_through_seq = resp->purge->through_seq;
        if (ret_log_seq)
                *ret_log_seq = resp->purge->log_seq;
        provsign__response__free_unpacked(resp, NULL);
        return 0;
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


/* ---- Queries of the log -------------------------------------------------- */

struct provsign_log_query {
        uint64_t from_seq, to_seq, previous_size;
        uint8_t digest[48];
        size_t digest_len;
        char *principal;
        char *keyid;
        int64_t since_us, until_us;
};

_public_ int provsign_log_query_new(provsign_log_query **ret) {
        if (!ret)
                return -EINVAL;
        *ret = calloc(1, sizeof **ret);
        return *ret ? 0 : -ENOMEM;
}

_public_ void provsign_log_query_free(provsign_log_query *q) {
        if (!q)
                return;
        free(q->principal);
        free(q->keyid);
        free(q);
}

_public_ int provsign_log_query_set_range(provsign_log_query *q, uint64_t from_seq, uint64_t to_seq) {
        if (!q || (to_seq != 0 && to_seq < from_seq))
                return -EINVAL;
        q->from_seq = from_seq;
        q->to_seq = to_seq;
        return 0;
}

_public_ int provsign_log_query_set_previous_size(provsign_log_query *q, uint64_t size) {
        if (!q)
                return -EINVAL;
        q->previous_size = size;
        return 0;
}

_public_ int provsign_log_query_set_digest(provsign_log_query *q, int digest_alg, const void *digest,
                                           size_t digest_len) {
        if (!q || (digest_len > 0 && !digest) || digest_len > sizeof q->digest)
                return -EINVAL;
        if (digest_len > 0 && proto_digest_length(digest_alg) != digest_len)
                return -EINVAL;
        if (digest_len > 0)
                memcpy(q->digest, digest, digest_len);
        q->digest_len = digest_len;
        return 0;
}

/* A query's string field: a copy of s, or NULL for NULL or "". */
static int set_string(char **field, const char *s) {
        char *copy = NULL;

        if (s && *s && !(copy = strdup(s)))
                return -ENOMEM;
        free(*field);
        *field = copy;
        return 0;
}

_public_ int provsign_log_query_set_principal(provsign_log_query *q, const char *principal) {
        return q ? set_string(&q->principal, principal) : -EINVAL;
}

_public_ int provsign_log_query_set_keyid(provsign_log_query *q, const char *keyid) {
        return q ? set_string(&q->keyid, keyid) : -EINVAL;
}

_public_ int provsign_log_query_set_time(provsign_log_query *q, int64_t since_us, int64_t until_us) {
        if (!q || since_us < 0 || until_us < 0 || (until_us > 0 && since_us > until_us))
                return -EINVAL;
        q->since_us = since_us;
        q->until_us = until_us;
        return 0;
}

/* ---- Streamed entries ---------------------------------------------------- */

/* The sequence number of an entry's exact bytes: the cheap read of its
 * leading fields, else the full decoder. -EPROTO when neither reads it. */
static int entry_seq(const uint8_t *leaf, size_t n, uint64_t *ret) {
        proto_entry_head h;
        Provsign__AuditEntry *e;

        if (proto_entry_peek(leaf, n, &h) == 0) {
                *ret = h.seq;
                return 0;
        }
        e = provsign__audit_entry__unpack(NULL, n, leaf);
        if (!e)
                return -EPROTO;
        *ret = e->seq;
        provsign__audit_entry__free_unpacked(e, NULL);
        return 0;
}

/* Hands one entry to the caller, after checking its seq when expect is
 * given (an export's entries are consecutive). A callback that stops
 * leaves the rest of the stream unread: the connection is then out of
 * step. */
static int deliver(provsign_conn *conn, provsign_log_entry_fn fn, void *userdata, const ProtobufCBinaryData *leaf,
                   const uint64_t *expect) {
        uint64_t seq;
        int r;

        if (!leaf->data || leaf->len == 0 || leaf->len > PROTO_FRAME_MAX)
                return -EPROTO;
        r = entry_seq(leaf->data, leaf->len, &seq);
        if (r < 0)
                return r;
        if (expect && seq != *expect)
                return -EPROTO;
        r = fn(seq, leaf->data, leaf->len, userdata);
        if (r != 0) {
                conn->broken = true;
                return r < 0 ? r : -ECANCELED;
        }
        return 0;
}

/* A compact range being built from streamed leaves, in bounded memory:
 * the maximal aligned subtrees of [from, next), left to right (at most two
 * per height). Combined with the export's left and right hashes it gives
 * the root of the checkpoint's tree (proto/merkle.h, "Compact range
 * proof"); no leaf hash is kept. */
struct range_node {
        uint64_t start, size;
        uint8_t hash[PROTO_MERKLE_HASH_LEN];
};

struct range {
        uint64_t from, next;
        size_t n;
        struct range_node st[2 * 64 + 2];
};

static int range_merge_top(struct range_node *st, size_t *n, bool aligned_only) {
        while (*n >= 2) {
                struct range_node *a = &st[*n - 2], *b = &st[*n - 1];
                int r;

                if (a->size != b->size || (aligned_only && a->start % (2 * a->size) != 0))
                        break;
                r = proto_merkle_node_hash(a->hash, b->hash, a->hash);
                if (r < 0)
                        return r;
                a->size *= 2;
                (*n)--;
        }
        return 0;
}

static int range_push(struct range *g, const uint8_t *leaf, size_t len) {
        struct range_node *t;
        int r;

        if (g->n >= sizeof g->st / sizeof g->st[0])
                return -EPROTO;
        t = &g->st[g->n++];
        t->start = g->next++;
        t->size = 1;
        r = proto_entry_leaf_hash(leaf, len, t->hash);
        if (r < 0)
                return r;
        return range_merge_top(g->st, &g->n, true);
}

static int stack_push(struct range_node *st, size_t *n, uint64_t size, const uint8_t *hash) {
        if (*n >= 2 * 64 + 2)
                return -EPROTO;
        st[*n] = (struct range_node) { .size = size };
        memcpy(st[*n].hash, hash, PROTO_MERKLE_HASH_LEN);
        (*n)++;
        return range_merge_top(st, n, false);
}

static const uint8_t *bin_hash(const ProtobufCBinaryData *b) {
        return b->len == PROTO_MERKLE_HASH_LEN && b->data ? b->data : NULL;
}

/* The root of the tree of m leaves from the range and the left/right
 * hashes of the export's last frame, compared with root: 0, -EPROTO when
 * it differs or the counts are not those (from, to, m) implies. */
static int range_check(const struct range *g, uint64_t m, const Provsign__ExportResponse *x,
                       const uint8_t root[PROTO_MERKLE_HASH_LEN]) {
        struct range_node st[2 * 64 + 2];
        uint8_t acc[PROTO_MERKLE_HASH_LEN];
        size_t n = 0, k = 0;
        uint64_t p;
        int r = 0;

        if (g->next > m || x->n_left != (size_t) __builtin_popcountll(g->from) || x->n_right > PROTO_MERKLE_MAX_PROOF)
                return -EPROTO;
        for (int bit = 63; bit >= 0 && r == 0; bit--)
                if (g->from & (UINT64_C(1) << bit))
                        r = bin_hash(&x->left[k]) ? stack_push(st, &n, UINT64_C(1) << bit, x->left[k++].data) : -EPROTO;
        for (size_t i = 0; i < g->n && r == 0; i++)
                r = stack_push(st, &n, g->st[i].size, g->st[i].hash);
        k = 0;
        for (p = g->next; r == 0 && p < m && p + (p & -p) <= m; p += p & -p)
                r = k < x->n_right && bin_hash(&x->right[k]) ? stack_push(st, &n, p & -p, x->right[k++].data) : -EPROTO;
        if (r < 0)
                return r;
        if (p < m) {    /* the right edge MTH(D[p:m]) */
                if (k >= x->n_right || !bin_hash(&x->right[k]))
                        return -EPROTO;
                memcpy(acc, x->right[k++].data, sizeof acc);
        } else if (n > 0)
                memcpy(acc, st[--n].hash, sizeof acc);
        else
                return -EPROTO;
        if (k != x->n_right)
                return -EPROTO;
        while (n > 0 && r == 0)
                r = proto_merkle_node_hash(st[--n].hash, acc, acc);
        if (r < 0)
                return r;
        return memcmp(acc, root, sizeof acc) == 0 ? 0 : -EPROTO;
}

/* ---- Export -------------------------------------------------------------- */

struct provsign_log_export {
        char *checkpoint;
        uint64_t tree_size, first_seq, n_entries;
        uint8_t (*left)[PROTO_MERKLE_HASH_LEN], (*right)[PROTO_MERKLE_HASH_LEN], (*consistency)[PROTO_MERKLE_HASH_LEN];
        size_t n_left, n_right, n_consistency;
        uint64_t from_size;
};

_public_ void provsign_log_export_free(provsign_log_export *x) {
        if (!x)
                return;
        free(x->checkpoint);
        free(x->left);
        free(x->right);
        free(x->consistency);
        free(x);
}

static int hashes_copy(ProtobufCBinaryData *h, size_t n, uint8_t (**ret)[PROTO_MERKLE_HASH_LEN]) {
        if (n > PROTO_MERKLE_MAX_PROOF || (n > 0 && !h))
                return -EPROTO;
        *ret = calloc(n ? n : 1, sizeof **ret);
        if (!*ret)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (!bin_hash(&h[i]))
                        return -EPROTO;
                memcpy((*ret)[i], h[i].data, PROTO_MERKLE_HASH_LEN);
        }
        return 0;
}

/* The export's last frame: a checkpoint of the size it states that covers
 * every entry (the range reproduces its root), the consistency proof
 * asked for. */
static int export_end(const struct range *g, uint64_t previous_size, const Provsign__ExportResponse *x,
                      provsign_log_export **ret) {
        provsign_log_export *e = NULL;
        uint8_t root[PROTO_MERKLE_HASH_LEN];
        char *origin = NULL;
        uint64_t size;
        int r;

        if (!*str_or_empty(x->checkpoint))
                return -EPROTO;
        r = client_checkpoint_note_parse(x->checkpoint, strlen(x->checkpoint), &origin, &size, root);
        free(origin);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || size != x->tree_size || (previous_size > 0 && (x->from_size != previous_size || previous_size > size)))
                return -EPROTO;
        if (g->next > g->from) {
                r = range_check(g, size, x, root);
                if (r < 0)
                        return r;
        }
        e = calloc(1, sizeof *e);
        if (!e)
                return -ENOMEM;
        e->tree_size = size;
        e->first_seq = g->from;
        e->n_entries = g->next - g->from;
        e->from_size = previous_size > 0 ? x->from_size : 0;
        e->n_left = x->n_left;
        e->n_right = x->n_right;
        e->n_consistency = previous_size > 0 ? x->n_consistency_proof : 0;
        e->checkpoint = strdup(x->checkpoint);
        if (!e->checkpoint)
                r = -ENOMEM;
        if (r == 0)
                r = hashes_copy(x->left, x->n_left, &e->left);
        if (r == 0)
                r = hashes_copy(x->right, x->n_right, &e->right);
        if (r == 0)
                r = hashes_copy(x->consistency_proof, e->n_consistency, &e->consistency);
        if (r < 0) {
                provsign_log_export_free(e);
                return r;
        }
        *ret = e;
        return 0;
}

/* One frame of an export: its leaves, in order from g->next. */
static int export_frame(provsign_conn *conn, const Provsign__ExportResponse *x, struct range *g,
                        provsign_log_entry_fn fn, void *userdata) {
        if (!x->done && x->first_seq != g->next)
                return -EPROTO;
        if (x->n_leaves > 0 && !x->leaves)
                return -EPROTO;
        for (size_t i = 0; i < x->n_leaves; i++) {
                int r = deliver(conn, fn, userdata, &x->leaves[i], &g->next);

                if (r < 0)
                        return r;
                r = range_push(g, x->leaves[i].data, x->leaves[i].len);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Reads the frames of a streamed reply to the last one (done): a failure
 * in the middle leaves frames unread, so it marks conn out of step. */
static void stream_abandon(provsign_conn *conn, int r, bool done) {
        if (r < 0 && !done)
                conn->broken = true;
}

/* One frame of a streamed reply; sets *done on the last. 0 to go on. */
typedef int (*stream_frame_fn)(provsign_conn *conn, const Provsign__Response *resp, bool *done, void *ctx);

/* Sends req and hands each frame of the reply to frame, to the last one
 * or the first failure (the connection is then out of step). */
static int stream_frames(provsign_conn *conn, Provsign__Request *req, stream_frame_fn frame, void *ctx) {
        Provsign__Response *resp = NULL;
        bool done = false;
        int r = client_conn_transact(conn, req, &resp);

        while (r == 0) {
                r = frame(conn, resp, &done, ctx);
                provsign__response__free_unpacked(resp, NULL);
                resp = NULL;
                if (r != 0 || done)
                        break;
                r = client_conn_next(conn, &resp);
        }
        stream_abandon(conn, r, done);
        return r;
}

struct export_ctx {
        const provsign_log_query *q;
        struct range *g;
        provsign_log_entry_fn fn;
        void *userdata;
        provsign_log_export **ret;
};

static int export_stream_frame(provsign_conn *conn, const Provsign__Response *resp, bool *done, void *ctx) {
        struct export_ctx *c = ctx;
        const Provsign__ExportResponse *x = resp->body_case == PROVSIGN__RESPONSE__BODY_EXPORT ? resp->export : NULL;
        int r = x ? export_frame(conn, x, c->g, c->fn, c->userdata) : -EPROTO;

        *done = x && x->done;
        if (r == 0 && *done)
                r = export_end(c->g, c->q->previous_size, x, c->ret);
        return r;
}

_public_ int provsign_export_log(provsign_conn *conn, const provsign_log_query *q, provsign_log_entry_fn fn,
                                 void *userdata, provsign_log_export **ret) {
        static const provsign_log_query everything = {};
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__ExportRequest er = PROVSIGN__EXPORT_REQUEST__INIT;
        struct range *g;
        int r;

        if (!conn || !fn || !ret)
                return -EINVAL;
        if (!q)
                q = &everything;
        er.from_seq = q->from_seq;
        er.to_seq = q->to_seq;
        er.previous_size = q->previous_size;
        req.body_case = PROVSIGN__REQUEST__BODY_EXPORT;
        req.export = &er;

        g = calloc(1, sizeof *g);
        if (!g)
                return -ENOMEM;
        g->from = g->next = q->from_seq;
        struct export_ctx c = { .q = q, .g = g, .fn = fn, .userdata = userdata, .ret = ret };
        r = stream_frames(conn, &req, export_stream_frame, &c);
        free(g);
        return r;
}

_public_ const char *provsign_log_export_checkpoint(const provsign_log_export *x) {
        return x->checkpoint;
}

_public_ uint64_t provsign_log_export_tree_size(const provsign_log_export *x) {
        return x->tree_size;
}

_public_ uint64_t provsign_log_export_entries(const provsign_log_export *x, uint64_t *ret_first_seq) {
        if (ret_first_seq)
                *ret_first_seq = x->first_seq;
        return x->n_entries;
}

_public_ const uint8_t *provsign_log_export_left(const provsign_log_export *x, size_t *ret_n) {
        if (ret_n)
                *ret_n = x->n_left;
        return x->left[0];
}

_public_ const uint8_t *provsign_log_export_right(const provsign_log_export *x, size_t *ret_n) {
        if (ret_n)
                *ret_n = x->n_right;
        return x->right[0];
}

_public_ const uint8_t *provsign_log_export_consistency(const provsign_log_export *x, uint64_t *ret_from_size,
                                                        size_t *ret_n) {
        if (ret_from_size)
                *ret_from_size = x->from_size;
        if (ret_n)
                *ret_n = x->n_consistency;
        return x->consistency[0];
}

/* ---- Filtered exports ---------------------------------------------------- */

/* q's filter into an ExportRequest or a FindRequest m (the same field names). */
#define QUERY_FILTER(m, q)                                                              \
        do {                                                                            \
                (m).digest.data = (uint8_t *) (q)->digest;                              \
                (m).digest.len = (q)->digest_len;                                       \
                (m).principal = (q)->principal ? (q)->principal : (char *) "";          \
                (m).keyid = (q)->keyid ? (q)->keyid : (char *) "";                      \
                (m).since_us = (q)->since_us;                                           \
                (m).until_us = (q)->until_us;                                           \
        } while (0)

/* The state of a filtered export being read. */
struct sparse {
        provsign_log_export *head;   /* from the first frame */
        uint8_t root[PROTO_MERKLE_HASH_LEN];
        uint64_t from, to, next;     /* the range [from, to]; the lowest seq still allowed */
        uint64_t previous_size;
        provsign_log_proven_entry_fn fn;
        void *userdata;
};

/* The first frame: the checkpoint (well-formed, of the size it states) and
 * the consistency proof asked for; no entries. */
static int sparse_head(struct sparse *sp, uint64_t previous_size, const Provsign__ExportResponse *x) {
        provsign_log_export *e;
        char *origin = NULL;
        uint64_t size;
        int r;

        if (!x->sparse || x->done || x->n_leaves || !*str_or_empty(x->checkpoint))
                return -EPROTO;
        r = client_checkpoint_note_parse(x->checkpoint, strlen(x->checkpoint), &origin, &size, sp->root);
        free(origin);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || size != x->tree_size || (previous_size > 0 && (x->from_size != previous_size || previous_size > size)))
                return -EPROTO;
        e = calloc(1, sizeof *e);
        if (!e)
                return -ENOMEM;
        e->tree_size = size;
        e->first_seq = sp->from;
        e->from_size = previous_size > 0 ? x->from_size : 0;
        e->n_consistency = previous_size > 0 ? x->n_consistency_proof : 0;
        e->checkpoint = strdup(x->checkpoint);
        r = e->checkpoint ? 0 : -ENOMEM;
        if (r == 0)
                r = hashes_copy(NULL, 0, &e->left);
        if (r == 0)
                r = hashes_copy(NULL, 0, &e->right);
        if (r == 0)
                r = hashes_copy(x->consistency_proof, e->n_consistency, &e->consistency);
        if (r < 0) {
                provsign_log_export_free(e);
                return r;
        }
        sp->head = e;
        return 0;
}

/* One entry of a filtered export and its proof, checked, then handed to fn. */
static int sparse_entry(provsign_conn *conn, struct sparse *sp, const ProtobufCBinaryData *leaf,
                        const Provsign__InclusionProof *p, provsign_log_proven_entry_fn fn, void *userdata) {
        uint8_t proof[PROTO_MERKLE_MAX_PROOF][PROTO_MERKLE_HASH_LEN], h[PROTO_MERKLE_HASH_LEN];
        uint64_t seq;
        int r;

        if (!p || !leaf->data || leaf->len == 0 || leaf->len > PROTO_FRAME_MAX || p->n_hashes > PROTO_MERKLE_MAX_PROOF ||
            (p->n_hashes > 0 && !p->hashes))
                return -EPROTO;
        r = entry_seq(leaf->data, leaf->len, &seq);
        if (r < 0)
                return r;
        if (seq < sp->next || seq > sp->to || seq >= sp->head->tree_size)
                return -EPROTO;
        for (size_t i = 0; i < p->n_hashes; i++) {
                if (!bin_hash(&p->hashes[i]))
                        return -EPROTO;
                memcpy(proof[i], p->hashes[i].data, PROTO_MERKLE_HASH_LEN);
        }
        r = proto_entry_leaf_hash(leaf->data, leaf->len, h);
        if (r == 0)
                r = proto_merkle_verify_inclusion(h, seq, sp->head->tree_size, (const uint8_t (*)[32]) proof,
                                                  p->n_hashes, sp->root);
        if (r == -ENOMEM || r == -EIO)
                return r;
        if (r < 0)
                return -EPROTO;
        sp->next = seq + 1;
        sp->head->n_entries++;
        r = fn(sp->head, seq, leaf->data, leaf->len, proof[0], p->n_hashes, userdata);
        if (r != 0) {
                conn->broken = true;
                return r < 0 ? r : -ECANCELED;
        }
        return 0;
}

static int sparse_frame(provsign_conn *conn, struct sparse *sp, uint64_t previous_size,
                        const Provsign__ExportResponse *x, provsign_log_proven_entry_fn fn, void *userdata) {
        int r = 0;

        if (!sp->head)
                return sparse_head(sp, previous_size, x);
        if (!x->sparse || x->n_proofs != x->n_leaves || (x->n_leaves > 0 && (!x->leaves || !x->proofs)))
                return -EPROTO;
        for (size_t i = 0; r == 0 && i < x->n_leaves; i++)
                r = sparse_entry(conn, sp, &x->leaves[i], x->proofs[i], fn, userdata);
        return r;
}

static int sparse_stream_frame(provsign_conn *conn, const Provsign__Response *resp, bool *done, void *ctx) {
        struct sparse *sp = ctx;
        const Provsign__ExportResponse *x = resp->body_case == PROVSIGN__RESPONSE__BODY_EXPORT ? resp->export : NULL;

        *done = x && x->done;
        if (!x || (*done && (!sp->head || !x->sparse || x->n_leaves)))
                return -EPROTO;
        return *done ? 0 : sparse_frame(conn, sp, sp->previous_size, x, sp->fn, sp->userdata);
}

_public_ int provsign_export_log_filtered(provsign_conn *conn, const provsign_log_query *q,
                                          provsign_log_proven_entry_fn fn, void *userdata, provsign_log_export **ret) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__ExportRequest er = PROVSIGN__EXPORT_REQUEST__INIT;
        struct sparse sp = { 0 };
        int r;

        if (!conn || !q || !fn || !ret ||
            (!q->digest_len && !q->principal && !q->keyid && !q->since_us && !q->until_us))
                return -EINVAL;
        er.from_seq = q->from_seq;
        er.to_seq = q->to_seq;
        er.previous_size = q->previous_size;
        QUERY_FILTER(er, q);
        req.body_case = PROVSIGN__REQUEST__BODY_EXPORT;
        req.export = &er;
        sp.from = sp.next = q->from_seq;
        sp.to = q->to_seq ? q->to_seq : UINT64_MAX;
        sp.previous_size = q->previous_size;
        sp.fn = fn;
        sp.userdata = userdata;
        r = stream_frames(conn, &req, sparse_stream_frame, &sp);
        if (r == 0) {
                *ret = sp.head;
                return 0;
        }
        provsign_log_export_free(sp.head);
        return r;
}

/* ---- Find ---------------------------------------------------------------- */

struct find_ctx {
        provsign_log_entry_fn fn;
        void *userdata;
};

static int find_stream_frame(provsign_conn *conn, const Provsign__Response *resp, bool *done, void *ctx) {
        struct find_ctx *c = ctx;
        const Provsign__FindResponse *x = resp->body_case == PROVSIGN__RESPONSE__BODY_FIND ? resp->find : NULL;
        int r = x && (x->n_leaves == 0 || x->leaves) ? 0 : -EPROTO;

        for (size_t i = 0; r == 0 && i < x->n_leaves; i++)
                r = deliver(conn, c->fn, c->userdata, &x->leaves[i], NULL);
        *done = x && x->done;
        return r;
}

_public_ int provsign_find_log(provsign_conn *conn, const provsign_log_query *q, provsign_log_entry_fn fn,
                               void *userdata) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__FindRequest fr = PROVSIGN__FIND_REQUEST__INIT;

        if (!conn || !q || !fn || (q->digest_len == 0 && !q->principal && !q->keyid))
                return -EINVAL;
        QUERY_FILTER(fr, q);
        req.body_case = PROVSIGN__REQUEST__BODY_FIND;
        req.find = &fr;
        struct find_ctx c = { .fn = fn, .userdata = userdata };
        return stream_frames(conn, &req, find_stream_frame, &c);
}

/* ---- Inclusion proofs ---------------------------------------------------- */

struct provsign_log_proof {
        uint64_t seq, tree_size;
        int64_t time_us;
        uint8_t *leaf;
        size_t leaf_len;
        uint8_t (*proof)[PROTO_MERKLE_HASH_LEN];
        size_t n_proof;
        char *checkpoint;
};

_public_ void provsign_log_proof_free(provsign_log_proof *p) {
        if (!p)
                return;
        free(p->leaf);
        free(p->proof);
        free(p->checkpoint);
        free(p);
}

/* The receipt of a Proof reply, checked as far as it goes without the log
 * key: a checkpoint of tree_size, and leaf + proof reproduce its root at
 * seq (the entry asked for). */
static int proof_check(const Provsign__Receipt *rc, uint64_t seq, provsign_log_proof *p) {
        uint8_t root[PROTO_MERKLE_HASH_LEN], leaf_hash[PROTO_MERKLE_HASH_LEN];
        char *origin = NULL;
        uint64_t size;
        int r;

        if (!rc || rc->log_seq != seq || !rc->leaf.data || rc->leaf.len == 0 || !*str_or_empty(rc->checkpoint) ||
            rc->log_time_us < 0 || rc->log_time_us >= PROTO_TIME_US_END)
                return -EPROTO;
        r = client_checkpoint_note_parse(rc->checkpoint, strlen(rc->checkpoint), &origin, &size, root);
        free(origin);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || size != rc->tree_size)
                return -EPROTO;
        r = hashes_copy(rc->inclusion_proof, rc->n_inclusion_proof, &p->proof);
        if (r < 0)
                return r;
        p->n_proof = rc->n_inclusion_proof;
        r = proto_entry_leaf_hash(rc->leaf.data, rc->leaf.len, leaf_hash);
        if (r < 0)
                return r;
        r = proto_merkle_verify_inclusion(leaf_hash, seq, size, (const uint8_t (*)[PROTO_MERKLE_HASH_LEN]) p->proof,
                                          p->n_proof, root);
        if (r == -ENOMEM || r == -EIO)
                return r;
        return r < 0 ? -EPROTO : 0;
}

_public_ int provsign_get_log_proof(provsign_conn *conn, uint64_t seq, provsign_log_proof **ret) {
        Provsign__Request req = PROVSIGN__REQUEST__INIT;
        Provsign__ProofRequest pr = PROVSIGN__PROOF_REQUEST__INIT;
        Provsign__Response *resp = NULL;
        provsign_log_proof *p = NULL;
        const Provsign__Receipt *rc;
        int r;

        if (!conn || !ret)
                return -EINVAL;
        pr.seq = seq;
        req.body_case = PROVSIGN__REQUEST__BODY_PROOF;
        req.proof = &pr;
        r = client_conn_transact(conn, &req, &resp);
        if (r != 0)
                return r;
        rc = resp->body_case == PROVSIGN__RESPONSE__BODY_PROOF && resp->proof ? resp->proof->receipt : NULL;
        p = calloc(1, sizeof *p);
        if (!p) {
                r = -ENOMEM;
                goto out;
        }
        r = proof_check(rc, seq, p);
        if (r < 0)
                goto out;
        p->seq = seq;
        p->tree_size = rc->tree_size;
        p->time_us = rc->log_time_us;
        p->leaf = malloc(rc->leaf.len);
        p->checkpoint = strdup(rc->checkpoint);
        if (!p->leaf || !p->checkpoint) {
                r = -ENOMEM;
                goto out;
        }
        memcpy(p->leaf, rc->leaf.data, rc->leaf.len);
        p->leaf_len = rc->leaf.len;
        *ret = p;
        p = NULL;
out:
        provsign_log_proof_free(p);
        provsign__response__free_unpacked(resp, NULL);
        return r;
}

_public_ uint64_t provsign_log_proof_seq(const provsign_log_proof *p) {
        return p->seq;
}

_public_ int64_t provsign_log_proof_time_us(const provsign_log_proof *p) {
        return p->time_us;
}

_public_ const uint8_t *provsign_log_proof_leaf(const provsign_log_proof *p, size_t *ret_len) {
        if (ret_len)
                *ret_len = p->leaf_len;
        return p->leaf;
}

_public_ uint64_t provsign_log_proof_tree_size(const provsign_log_proof *p) {
        return p->tree_size;
}

_public_ const uint8_t *provsign_log_proof_inclusion_proof(const provsign_log_proof *p, size_t *ret_n) {
        if (ret_n)
                *ret_n = p->n_proof;
        return p->n_proof > 0 ? p->proof[0] : NULL;
}

_public_ const char *provsign_log_proof_checkpoint(const provsign_log_proof *p) {
        return p->checkpoint;
}

/* ---- Verification with the log key --------------------------------------- */

_public_ int provsign_verify_checkpoint(const char *note, const char *log_key_pem, uint64_t *ret_size) {
        struct client_receipt_result res = {};
        int r;

        if (!note || !log_key_pem)
                return -EINVAL;
        r = client_checkpoint_verify(note, log_key_pem, &res);
        if (r == 0 && ret_size)
                *ret_size = res.checkpoint_size;
        client_receipt_result_done(&res);
        return r > 0 ? -EBADMSG : r;
}

_public_ int provsign_log_export_verify(const provsign_log_export *x, const char *log_key_pem,
                                        const char *previous_note) {
        struct client_receipt_result res = {}, prev = {};
        int r;

        if (!x || !log_key_pem)
                return -EINVAL;
        r = client_checkpoint_verify(x->checkpoint, log_key_pem, &res);
        if (r == 0 && previous_note)
                r = client_checkpoint_verify(previous_note, log_key_pem, &prev);
        if (r == 0 && previous_note) {
                if (strcmp(prev.origin, res.origin) != 0 || prev.checkpoint_size != x->from_size)
                        r = -EBADMSG;
                else
                        r = proto_merkle_verify_consistency(prev.checkpoint_size, res.checkpoint_size, prev.root,
                                                            res.root, (const uint8_t (*)[PROTO_MERKLE_HASH_LEN])
                                                            x->consistency, x->n_consistency);
                if (r == -EINVAL)
                        r = -EBADMSG;
        }
        client_receipt_result_done(&res);
        client_receipt_result_done(&prev);
        return r > 0 ? -EBADMSG : r;
}
