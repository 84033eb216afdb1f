/* Reading the log back for callers: receipts (inclusion proof and
 * checkpoint), consistency and range proofs, the index and the segment
 * directory for export, find and proof. */

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "audit-int.h"
#include "log.h"

/* A proof or root that failed on a tile that does not hash to the tree
 * (proto/merkle.h checks every tile read back) is said where the operator
 * looks, naming the file; called with the lock held. */
static int tree_read_error(agent_audit *a, int r) {
        if (r == -EBADMSG && a->tiles)
                log_error("audit log: %s/%s is damaged (it does not hash to the tree); proofs that need it fail until "
                          "it is rebuilt (stop the agent, remove %s, start it)",
                          a->pub_dir, proto_tile_store_bad(a->tiles), a->pub_dir);
        return r;
}

int audit_checkpoint(agent_audit *a, uint64_t from_size, char **ret_note, uint64_t *ret_size, uint8_t proof[][32],
                     size_t *ret_n) {
        size_t n = 0;
        int r = 0;
        pthread_mutex_lock(&a->lock);
        uint64_t size = a->committed;
        if (from_size > size)
                r = -EINVAL;
        else if (from_size > 0)
                r = tree_read_error(a, proto_merkle_tree_consistency_proof(a->tree, from_size, size, proof, &n));
        char *note = r >= 0 ? strdup(a->checkpoint) : NULL;
        pthread_mutex_unlock(&a->lock);
        if (r < 0)
                return r;
        if (!note)
                return -ENOMEM;
        *ret_note = note;
        *ret_size = size;
        *ret_n = n;
        return 0;
}

void audit_receipt_done(Provsign__Receipt *r) {
        for (size_t i = 0; i < r->n_inclusion_proof; i++)
                free(r->inclusion_proof[i].data);
        free(r->inclusion_proof);
        if (r->checkpoint != protobuf_c_empty_string)
                free(r->checkpoint);
        provsign__receipt__init(r);
}

int audit_receipt(agent_audit *a, uint64_t seq, int64_t time_us, const uint8_t *leaf, size_t leaf_len,
                  Provsign__Receipt *r) {
        uint8_t proof[PROTO_MERKLE_MAX_PROOF][32];
        size_t n = 0;
        provsign__receipt__init(r);
        pthread_mutex_lock(&a->lock);
        uint64_t size = a->committed;
        int ret = seq < size ? tree_read_error(a, proto_merkle_tree_inclusion_proof(a->tree, seq, size, proof, &n))
                             : -EAGAIN;
        char *note = ret >= 0 ? strdup(a->checkpoint) : NULL;
        pthread_mutex_unlock(&a->lock);
        if (ret < 0)
                return ret;
        if (!note)
                return -ENOMEM;
        r->log_seq = seq;
        r->log_time_us = time_us;
        r->leaf.data = (uint8_t *) leaf;
        r->leaf.len = leaf_len;
        r->tree_size = size;
        r->checkpoint = note;
        r->inclusion_proof = calloc(n ? n : 1, sizeof *r->inclusion_proof);
        if (!r->inclusion_proof) {
                audit_receipt_done(r);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                r->inclusion_proof[i].data = malloc(32);
                if (!r->inclusion_proof[i].data) {
                        r->n_inclusion_proof = i;
                        audit_receipt_done(r);
                        return -ENOMEM;
                }
                memcpy(r->inclusion_proof[i].data, proof[i], 32);
                r->inclusion_proof[i].len = 32;
        }
        r->n_inclusion_proof = n;
        return 0;
}

agent_index *audit_index(const agent_audit *a) {
        return a->index;
}

int audit_dir_fd(const agent_audit *a) {
        return a->dir_fd;
}

int audit_range_proof(agent_audit *a, uint64_t from, uint64_t to, uint64_t m, uint8_t left[][32], size_t *ret_n_left,
                      uint8_t right[][32], size_t *ret_n_right) {
        pthread_mutex_lock(&a->lock);
        int r = m <= a->committed ? tree_read_error(a, proto_merkle_tree_range_proof(a->tree, from, to, m, left,
                                                                                   ret_n_left, right, ret_n_right))
                                  : -EINVAL;
        pthread_mutex_unlock(&a->lock);
        return r;
}

int audit_inclusion_proof(agent_audit *a, uint64_t seq, uint64_t m, uint8_t proof[][32], size_t *ret_n) {
        pthread_mutex_lock(&a->lock);
        int r = m <= a->committed ? proto_merkle_tree_inclusion_proof(a->tree, seq, m, proof, ret_n) : -EINVAL;
        pthread_mutex_unlock(&a->lock);
        return r;
}
