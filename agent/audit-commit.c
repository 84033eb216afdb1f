/* The append path and the group commit. audit_append() (any thread) stamps,
 * encodes and queues an entry and adds it to the tree. A group commit
 * writes what is queued in one write and one fdatasync, signs the group's
 * checkpoint meanwhile (audit-checkpoint.c), and wakes the main loop through
 * audit_fd(). It runs on the signing worker itself when the log is idle
 * (audit_commit: no hand-off between signing and syncing for a lone
 * client), else on the committer thread. A signature never leaves before
 * its entry is durable and checkpointed; a write failure fails the log for
 * good. docs/architecture.md "The path of a Sign". */

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit-int.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "record.h"

#define CHECKPOINT_RETRY_MS 250

static void wake_main(agent_audit *a) {
        uint64_t one = 1;
        (void) !write(a->efd, &one, sizeof one);
}

/* One group commit of what is pending: caller holds a->lock and no commit
 * is running; returns with the lock held. The records are written and
 * fdatasync'd while the checkpoint signer signs the group's checkpoint (a
 * note is published only once both are done: nothing refers to entries
 * that are not durable). A write or sync
 * failure fails the log for good (signing fails closed). A checkpoint the
 * token cannot sign (token outage) leaves the entries durable but not
 * committed: the committer thread retries every CHECKPOINT_RETRY_MS (or as
 * soon as more entries come) until the token is back, and Sign replies wait
 * meanwhile (their callers get HSM_UNAVAILABLE after hsm_timeout).
 * wake_loop false: the caller's own job wakes the main loop (a signing
 * worker's, through the pool) unless the commit failed. */
static void commit_group(agent_audit *a, bool wake_loop) {
        a->committing = true;
        /* Swap buffers: appenders go on filling a fresh one. */
        uint8_t *batch = a->pending;
        size_t len = a->pending_len, cap = a->pending_cap;
        a->pending = a->spare;
        a->pending_cap = a->spare_cap;
        a->pending_len = 0;
        a->spare = NULL;
        a->spare_cap = 0;
        uint64_t first = a->written, end = a->next_seq;
        uint8_t root[32];
        int r = proto_merkle_tree_root_at(a->tree, end, root);
        pthread_mutex_unlock(&a->lock);

        /* The checkpoint is signed on the helper thread while this one
         * writes and syncs; a retry (len 0) only signs. */
        if (r >= 0 && len > 0)
                r = audit_segment_ready(a, first); /* audit-int.h: before the token is used */
        bool posted = r >= 0 && a->ckpt.started;
        if (posted)
                audit_ckpt_post(&a->ckpt, end, root);
        if (r >= 0 && len > 0) {
                uint64_t t0 = agent_monotonic_ns();
                r = audit_write_batch(a, batch, len, first);
                if (r >= 0) {
                        metrics_observe(METRICS_FDATASYNC_SECONDS, (double) (agent_monotonic_ns() - t0) / 1e9);
                        metrics_observe(METRICS_GROUP_ENTRIES, (double) (end - first));
                        metrics_add(METRICS_LOG_WRITTEN_BYTES, len);
                }
        }
        char *note = NULL;
        int sr = posted ? audit_ckpt_wait(&a->ckpt, &note) : r >= 0 ? audit_sign_checkpoint(a, end, root, &note) : r;

        pthread_mutex_lock(&a->lock);
        a->spare = batch;
        a->spare_cap = cap;
        a->committing = false;
        if (r < 0) {
                if (!a->failed)
                        log_error("audit log: committing entries %" PRIu64 "..%" PRIu64
                                  " failed (%s); signing stops until the agent is restarted",
                                  first, end - 1, strerror(-r));
                a->failed = true;
                free(note); /* over entries that are not durable: never published */
                wake_main(a);
                pthread_cond_signal(&a->cond);
                if (a->commit_waiters)
                        pthread_cond_broadcast(&a->commit_cond);
                return;
        }
        a->written = end;
        if (sr < 0) {
                if (!a->sign_failing)
                        log_warning("audit log: cannot sign the checkpoint for %" PRIu64
                                    " entries (%s); they are on disk; retrying until the token is back",
                                    end, strerror(-sr));
                a->sign_failing = true;
                free(note);
        } else {
                if (a->sign_failing)
                        log_notice("audit log: checkpoint for %" PRIu64 " entries signed; the token is back", end);
                a->sign_failing = false;
                metrics_checkpoint_signed();
                free(a->checkpoint);
                a->checkpoint = note;
                a->committed = end;
                a->syncs++;
                /* Not while it rests between publications: a wake per
                 * group would only put it back to sleep. */
                if (a->pub_idle)
                        pthread_cond_signal(&a->pub_cond);
        }
        if (wake_loop || sr < 0)
                wake_main(a);
        if (a->commit_waiters)
                pthread_cond_broadcast(&a->commit_cond); /* audit-retain.c */
        /* What is left is the committer thread's: entries appended by
         * others meanwhile, a retry, the stop. */
        if (a->pending_len || a->written > a->committed || a->stopping)
                pthread_cond_signal(&a->cond);
}

/* The committer thread: commits what threads that do not commit themselves
 * queue (audit_append), what came while a signing worker's commit ran,
 * the retries of a checkpoint the token could not sign, and what is left
 * at stop (once more then; entries left unsigned are checkpointed at the
 * next start). */
void *audit_committer_main(void *arg) {
        agent_audit *a = arg;
        bool stop_tried = false;

        pthread_mutex_lock(&a->lock);
        while (!a->failed) {
                if (a->committing) {
                        pthread_cond_wait(&a->cond, &a->lock); /* its end signals us when needed */
                        continue;
                }
                if (a->pending_len) {
                        commit_group(a, true);
                        continue;
                }
                if (a->stopping) {
                        if (a->written == a->committed || stop_tried)
                                break; /* nothing left (or the token is gone) */
                        stop_tried = true;
                        commit_group(a, true);
                        continue;
                }
                if (a->written > a->committed) {
                        struct timespec ts;
                        clock_gettime(CLOCK_REALTIME, &ts);
                        ts.tv_nsec += CHECKPOINT_RETRY_MS * 1000000L;
                        ts.tv_sec += ts.tv_nsec / 1000000000L;
                        ts.tv_nsec %= 1000000000L;
                        if (pthread_cond_timedwait(&a->cond, &a->lock, &ts) == ETIMEDOUT && !a->committing &&
                            !a->failed && a->written > a->committed)
                                commit_group(a, true); /* signs only, or with what came */
                        continue;
                }
                pthread_cond_wait(&a->cond, &a->lock);
        }
        pthread_mutex_unlock(&a->lock);
        return NULL;
}

void audit_commit(agent_audit *a, bool lead) {
        pthread_mutex_lock(&a->lock);
        /* Once: what others append meanwhile is the committer's, so a
         * worker goes back to signing. */
        if (lead && a->pending_len && !a->committing && !a->failed && !a->stopping && a->written == a->committed)
                commit_group(a, false);
        else if (a->pending_len && !a->committing)
                pthread_cond_signal(&a->cond);
        pthread_mutex_unlock(&a->lock);
}

/* The last entry this thread appended (UINT64_MAX: none since the last
 * audit_wake_pending()). */
static __thread uint64_t thread_appended = UINT64_MAX;

bool audit_wake_pending(agent_audit *a) {
        uint64_t seq = thread_appended;
        thread_appended = UINT64_MAX;
        if (seq == UINT64_MAX)
                return false;
        pthread_mutex_lock(&a->lock);
        /* audit_committer_main wakes the main loop after every attempt at a group
         * (committed, checkpoint not signable yet and retried every
         * CHECKPOINT_RETRY_MS, or failed): still ahead of us means that wake
         * is still to come. */
        bool pending = !a->failed && !a->stopping && a->committed <= seq;
        pthread_mutex_unlock(&a->lock);
        return pending;
}

static int append_entry(agent_audit *a, Provsign__AuditEntry *e, uint64_t *ret_seq, uint8_t **ret_leaf,
                        size_t *ret_leaf_len, bool wake_committer) {
        uint8_t *leaf = NULL;
        int r;

        pthread_mutex_lock(&a->lock);
        if (a->failed || a->stopping) {
                r = -EIO;
                goto out;
        }
        e->seq = a->next_seq;
        /* Strictly increasing within a run: an entry is never dated the
         * microsecond of the one before it, so a revocation dated by its own
         * entry postdates every signature logged before it. */
        int64_t t = (int64_t) agent_now_us();
        if (t <= a->last_time_us)
                t = a->last_time_us + 1;
        a->last_time_us = t;
        e->time_us = t;
        /* A KEY_REVOKE without a compromise time is dated by its own entry
         * (the registry holds the principal's order lock meanwhile): every
         * signature the key made before is in the log ahead of it and valid,
         * none after it exists. */
        if (e->event == PROVSIGN__AUDIT_EVENT__KEY_REVOKE && e->compromised_since_us == 0)
                e->compromised_since_us = t;
        size_t n = protobuf_c_message_get_packed_size(&e->base);
        if (n == 0 || n > PROTO_RECORD_MAX_ENTRY) {
                r = -EMSGSIZE;
                goto out;
        }
        size_t need = proto_record_size(n);
        if (a->pending_cap - a->pending_len < need) {
                size_t cap = a->pending_cap ? a->pending_cap * 2 : 64 * 1024;
                while (cap - a->pending_len < need)
                        cap *= 2;
                uint8_t *p = realloc(a->pending, cap);
                if (!p) {
                        r = -ENOMEM;
                        goto out;
                }
                a->pending = p;
                a->pending_cap = cap;
        }
        /* Pack straight into the record's payload position. */
        uint8_t *rec = a->pending + a->pending_len;
        protobuf_c_message_pack(&e->base, rec + PROTO_RECORD_HEADER);
        size_t rec_len;
        r = proto_record_encode(rec + PROTO_RECORD_HEADER, n, rec, a->pending_cap - a->pending_len, &rec_len);
        if (r < 0)
                goto out;
        r = proto_merkle_tree_append_entry(a->tree, rec + PROTO_RECORD_HEADER, n);
        if (r < 0)
                goto out;
        if (ret_leaf) {
                leaf = malloc(n);
                if (!leaf) {
                        /* The entry is in the tree already; keep the log
                         * consistent and report the allocation failure. */
                        r = -ENOMEM;
                }
                else
                        memcpy(leaf, rec + PROTO_RECORD_HEADER, n);
        }
        a->pending_len += rec_len;
        thread_appended = a->next_seq;
        *ret_seq = a->next_seq++;
        if (wake_committer && !a->committing)
                pthread_cond_signal(&a->cond);
        if (ret_leaf && leaf) {
                *ret_leaf = leaf;
                *ret_leaf_len = n;
        }
out:
        pthread_mutex_unlock(&a->lock);
        return r;
}

int audit_append(agent_audit *a, Provsign__AuditEntry *e, uint64_t *ret_seq, uint8_t **ret_leaf,
                 size_t *ret_leaf_len) {
        return append_entry(a, e, ret_seq, ret_leaf, ret_leaf_len, true);
}

int audit_append_deferred(agent_audit *a, Provsign__AuditEntry *e, uint64_t *ret_seq, uint8_t **ret_leaf,
                          size_t *ret_leaf_len) {
        return append_entry(a, e, ret_seq, ret_leaf, ret_leaf_len, false);
}

int audit_fd(const agent_audit *a) {
        return a->efd;
}

void audit_ack(agent_audit *a) {
        uint64_t v;
        (void) !read(a->efd, &v, sizeof v);
}

uint64_t audit_committed(agent_audit *a) {
        pthread_mutex_lock(&a->lock);
        uint64_t c = a->committed;
        pthread_mutex_unlock(&a->lock);
        return c;
}

bool audit_failed(agent_audit *a) {
        pthread_mutex_lock(&a->lock);
        bool f = a->failed;
        pthread_mutex_unlock(&a->lock);
        return f;
}

uint64_t audit_syncs(agent_audit *a) {
        pthread_mutex_lock(&a->lock);
        uint64_t s = a->syncs;
        pthread_mutex_unlock(&a->lock);
        return s;
}
