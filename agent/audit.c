#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>
#include <systemd/sd-daemon.h>

#include "audit.h"
#include "frame.h"
#include "index.h"
#include "log.h"
#include "metrics.h"
#include "origin.h"
#include "merkle.h"
#include "names.h"
#include "note.h"
#include "record.h"
#include "entry.h"
#include "fdio.h"
#include "tiles.h"
#include "timefmt.h"

#define SEGMENT_MAX (64u * 1024u * 1024u)
#define SEGMENT_SUFFIX ".seg"
#define LOG_KEY_OWNER "log"
#define CHECKPOINT_RETRY_MS 250
/* The publisher writes the newest committed state at most this often: the
 * groups in between are published together (their tiles and the last
 * checkpoint), so publication costs no more than a few fsyncs a second
 * whatever the signing rate. */
#define PUBLISH_INTERVAL_MS 200
#define PUBLISHED_CHECKPOINT "checkpoint"
#define CHECKPOINT_MAX (64u * 1024u)
/* While replaying a long tail into the tree (a rebuild): complete tiles are
 * written out every so many entries, so memory stays bounded, and progress
 * is reported every REPLAY_PROGRESS entries. */
#define REPLAY_FLUSH (UINT64_C(1) << 16)
#define REPLAY_PROGRESS UINT64_C(1000000)

struct agent_audit {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        pthread_t committer;
        bool committer_started;
        pthread_t publisher;
        bool publisher_started;
        pthread_cond_t pub_cond; /* a commit, or pub_stop */
        bool pub_stop;
        bool stopping;
        bool failed;

        char *dir;               /* <state_dir>/log */
        int dir_fd;
        int seg_fd;              /* current segment, append only */
        uint64_t seg_size;
        uint64_t seg_first;      /* the current segment's first entry */
        agent_index *index;      /* positions, digests, principals (index.h) */
        char *origin;

        keys_store *store;
        keys_key *log_key;
        uint8_t log_key_hash[4];
        char *verifier_key;

        proto_merkle_tree *tree; /* leaves [0, next_seq), complete tiles in `tiles` */
        char *pub_dir;           /* publish_dir: checkpoint + tile/ (C2SP tlog-tiles) */
        int pub_fd;
        proto_tile_store *tiles;
        uint64_t published;      /* size of pub_dir/checkpoint; under lock, written by the publisher */
        bool publish_failing;    /* publisher only */
        bool publish_entries;    /* also tile/entries/ bundles */
        uint64_t bundle_seq;     /* first entry of the first bundle not yet written whole */
        uint64_t bundle_seg, bundle_off, bundle_pos; /* where entry bundle_pos starts (segment, offset) */
        bool bundle_known;       /* bundle_seg/off/pos are set */
        uint64_t next_seq;       /* under lock */
        int64_t last_time_us;    /* the last entry's time, under lock */
        uint64_t written;        /* durable (written and synced), under lock */
        uint64_t committed;      /* durable and checkpointed, under lock */
        char *checkpoint;        /* note for size `committed`, under lock */
        uint64_t syncs;

        uint8_t *pending;        /* records not yet written, under lock */
        size_t pending_len, pending_cap;

        int efd;                 /* wakes the main loop */

        pthread_mutex_t purge_lock; /* one purge at a time (audit_purge) */
        uint64_t purge_from;        /* under purge_lock: segments before it hold nothing left to purge */
        pthread_t retainer;         /* retain_entries: purges at start, then hourly */
        bool retainer_started;
        bool retain_stop;           /* under lock; signals cond_retain */
        pthread_cond_t retain_cond;
        uint64_t retain_s;

        audit_key_event_fn on_key_event; /* replay only */
        void *on_key_event_ctx;
};


static int64_t now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- Checkpoints ---- */

static int sign_checkpoint(agent_audit *a, uint64_t size, const uint8_t root[32], char **ret_note) {
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

/* ---- Writing ---- */

static int open_segment(agent_audit *a, uint64_t first_seq) {
        char name[64];
        snprintf(name, sizeof name, "%020" PRIu64 SEGMENT_SUFFIX, first_seq);
        int fd = openat(a->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        /* The new name must be durable too, or a crash could lose the file. */
        if (fsync(a->dir_fd) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        if (a->seg_fd >= 0)
                close(a->seg_fd);
        a->seg_fd = fd;
        a->seg_size = 0;
        a->seg_first = first_seq;
        return 0;
}

/* Out of descriptors (EMFILE: this process, ENFILE: the system) is a state
 * that passes, not a broken log: nothing is written yet, so the new segment
 * is tried again until it opens (or the agent stops); the group waits, and
 * its callers get their answer at hsm_timeout meanwhile. */
#define SEGMENT_OPEN_RETRY_MS 100

static int open_segment_retrying(agent_audit *a, uint64_t first_seq) {
        bool said = false;
        for (;;) {
                int r = open_segment(a, first_seq);
                if (r != -EMFILE && r != -ENFILE)
                        return r;
                pthread_mutex_lock(&a->lock);
                bool stopping = a->stopping;
                pthread_mutex_unlock(&a->lock);
                if (stopping)
                        return r;
                if (!said)
                        log_warning("audit log: cannot open a new segment (%s); retrying every %dms", strerror(-r),
                                    SEGMENT_OPEN_RETRY_MS);
                said = true;
                struct timespec ts = { 0, SEGMENT_OPEN_RETRY_MS * 1000000L };
                nanosleep(&ts, NULL);
        }
}

static int write_batch(agent_audit *a, const uint8_t *buf, size_t len, uint64_t first_seq) {
        int r;
        if (a->seg_fd < 0 || a->seg_size >= SEGMENT_MAX) {
                r = open_segment_retrying(a, first_seq);
                if (r < 0)
                        return r;
        }
        r = proto_fd_write_all(a->seg_fd, buf, len);
        if (r < 0)
                return r;
        uint64_t off = a->seg_size;
        a->seg_size += len;
        if (fdatasync(a->seg_fd) < 0)
                return -errno;
        /* After the records are durable, so the index is never ahead of
         * the log. Derived data: a failure is logged there and caught up
         * at the next start; signing goes on. */
        (void) index_add_records(a->index, a->seg_first, off, first_seq, buf, len);
        return 0;
}

static void wake_main(agent_audit *a) {
        uint64_t one = 1;
        (void) !write(a->efd, &one, sizeof one);
}

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

/* ---- Publication (C2SP tlog-tiles in publish_dir) ---- */

/* Under the lock (or before the committer runs): a copy of what to publish
 * for `size` (the tiles the tree holds below it, its partial tiles) and the
 * note of that size. */
static int publish_prepare(agent_audit *a, uint64_t size, proto_merkle_tiles **ret_tiles, char **ret_note) {
        proto_merkle_tiles *b = NULL;
        int r = proto_merkle_tree_tiles_at(a->tree, size, &b);
        if (r < 0)
                return r;
        char *note = strdup(a->checkpoint);
        if (!note) {
                proto_merkle_tiles_free(b);
                return -ENOMEM;
        }
        *ret_tiles = b;
        *ret_note = note;
        return 0;
}

static int publish_bundles(agent_audit *a, uint64_t m);

/* Without the lock: the entry bundles (publish_entries) and the tiles
 * first, then the checkpoint that covers them, each file atomically, then
 * the partial tiles of the size published before (a reader of the previous
 * checkpoint may have them still: they go only once a newer checkpoint is
 * in place). */
static int publish_write(agent_audit *a, const proto_merkle_tiles *b, const char *note, bool entries) {
        int r = entries ? publish_bundles(a, proto_merkle_tiles_size(b)) : 0;
        if (r >= 0)
                r = proto_merkle_tiles_write(b, a->tiles);
        if (r >= 0)
                r = proto_tile_store_write_file(a->tiles, PUBLISHED_CHECKPOINT, (const uint8_t *) note, strlen(note));
        if (r < 0)
                return r;
        (void) proto_tile_store_remove_stale(a->tiles, a->published, proto_merkle_tiles_size(b), a->publish_entries);
        return 0;
}

/* Under the lock again: the written tiles leave memory. A failure to publish
 * does not stop signing (the log and its checkpoints are intact; tiles
 * derive from them): it is said once, and the next group tries again with
 * everything not written yet. */
static void publish_finish(agent_audit *a, proto_merkle_tiles *b, int r) {
        if (r >= 0) {
                proto_merkle_tree_tiles_written(a->tree, b);
                a->published = proto_merkle_tiles_size(b);
                if (a->publish_failing)
                        log_notice("audit log: publishing to %s works again", a->pub_dir);
        } else if (!a->publish_failing) {
                log_warning("audit log: cannot publish the checkpoint and tiles to %s (%s); retrying at every commit",
                            a->pub_dir, strerror(-r));
        }
        a->publish_failing = r < 0;
        proto_merkle_tiles_free(b);
}

/* Publishes the checkpoint of `size` (<= committed); called with the lock
 * held, releases it while writing. */
static void publish_group(agent_audit *a, uint64_t size) {
        proto_merkle_tiles *b = NULL;
        char *note = NULL;
        int r = publish_prepare(a, size, &b, &note);
        pthread_mutex_unlock(&a->lock);
        if (r >= 0)
                r = publish_write(a, b, note, a->publish_entries);
        free(note);
        pthread_mutex_lock(&a->lock);
        publish_finish(a, b, r);
}

static void deadline_after_ms(struct timespec *ts, long ms) {
        clock_gettime(CLOCK_REALTIME, ts);
        ts->tv_nsec += ms * 1000000L;
        ts->tv_sec += ts->tv_nsec / 1000000000L;
        ts->tv_nsec %= 1000000000L;
}

/* The publisher thread: publishes the committed state whenever it moved,
 * then rests PUBLISH_INTERVAL_MS; at stop, once more without rest. The
 * committer never waits for it. */
static void *publisher_main(void *arg) {
        agent_audit *a = arg;
        pthread_mutex_lock(&a->lock);
        if (a->publish_entries) {
                /* The bundles of what the start published. */
                uint64_t m = a->published;
                pthread_mutex_unlock(&a->lock);
                int r = publish_bundles(a, m);
                if (r < 0)
                        log_warning("audit log: cannot publish the entry bundles to %s (%s); retrying at every commit",
                                    a->pub_dir, strerror(-r));
                pthread_mutex_lock(&a->lock);
        }
        for (;;) {
                while (a->committed == a->published && !a->pub_stop)
                        pthread_cond_wait(&a->pub_cond, &a->lock);
                if (a->committed == a->published)
                        break; /* stopping, all published */
                bool last = a->pub_stop;
                publish_group(a, a->committed);
                if (last)
                        break;
                struct timespec ts;
                deadline_after_ms(&ts, PUBLISH_INTERVAL_MS);
                while (!a->pub_stop && pthread_cond_timedwait(&a->pub_cond, &a->lock, &ts) != ETIMEDOUT)
                        ;
        }
        pthread_mutex_unlock(&a->lock);
        return NULL;
}

/* The committer's helper thread: signs a group's checkpoint while the
 * committer writes and fdatasyncs the same group, so a group costs
 * max(sync, signature) instead of their sum. The note is published only
 * after both are done: nothing refers to entries that are not durable.
 * Owned by committer_main (its stack), which starts and joins it. */
struct ckpt_signer {
        agent_audit *audit;
        pthread_mutex_t lock;
        pthread_cond_t request_cond, done_cond;
        bool request, done, stop;
        uint64_t size;
        uint8_t root[32];
        char *note;
        int r;
};

static void *ckpt_signer_main(void *arg) {
        struct ckpt_signer *k = arg;
        pthread_mutex_lock(&k->lock);
        for (;;) {
                while (!k->request && !k->stop)
                        pthread_cond_wait(&k->request_cond, &k->lock);
                if (!k->request)
                        break;
                k->request = false;
                uint64_t size = k->size;
                uint8_t root[32];
                memcpy(root, k->root, sizeof root);
                pthread_mutex_unlock(&k->lock);
                char *note = NULL;
                int r = sign_checkpoint(k->audit, size, root, &note);
                pthread_mutex_lock(&k->lock);
                k->note = note;
                k->r = r;
                k->done = true;
                pthread_cond_signal(&k->done_cond);
        }
        pthread_mutex_unlock(&k->lock);
        return NULL;
}

static void ckpt_post(struct ckpt_signer *k, uint64_t size, const uint8_t root[32]) {
        pthread_mutex_lock(&k->lock);
        k->size = size;
        memcpy(k->root, root, sizeof k->root);
        k->done = false;
        k->request = true;
        pthread_cond_signal(&k->request_cond);
        pthread_mutex_unlock(&k->lock);
}

static int ckpt_wait(struct ckpt_signer *k, char **ret_note) {
        pthread_mutex_lock(&k->lock);
        while (!k->done)
                pthread_cond_wait(&k->done_cond, &k->lock);
        int r = k->r;
        *ret_note = k->note;
        k->note = NULL;
        pthread_mutex_unlock(&k->lock);
        return r;
}

/* Writes and syncs what is pending, then signs a checkpoint for it. A write
 * or sync failure fails the log for good (signing fails closed). A
 * checkpoint the token cannot sign (token outage) leaves the entries durable
 * but not committed: the committer retries every CHECKPOINT_RETRY_MS (or as
 * soon as more entries come) until the token is back, and Sign replies wait
 * meanwhile (their callers get HSM_UNAVAILABLE after hsm_timeout). At stop
 * it tries once more; entries left unsigned are checkpointed at the next
 * start. */
static void *committer_main(void *arg) {
        agent_audit *a = arg;
        uint8_t *batch = NULL;
        size_t batch_cap = 0;
        bool sign_failing = false, stop_tried = false;

        struct ckpt_signer k = { .audit = a };
        pthread_mutex_init(&k.lock, NULL);
        pthread_cond_init(&k.request_cond, NULL);
        pthread_cond_init(&k.done_cond, NULL);
        pthread_t signer;
        /* Without the helper, the committer signs in series (as it would on
         * one CPU anyway). */
        bool parallel = pthread_create(&signer, NULL, ckpt_signer_main, &k) == 0;

        pthread_mutex_lock(&a->lock);
        for (;;) {
                if (a->written > a->committed) {
                        if (!a->pending_len && !a->stopping) {
                                struct timespec ts;
                                clock_gettime(CLOCK_REALTIME, &ts);
                                ts.tv_nsec += CHECKPOINT_RETRY_MS * 1000000L;
                                ts.tv_sec += ts.tv_nsec / 1000000000L;
                                ts.tv_nsec %= 1000000000L;
                                pthread_cond_timedwait(&a->cond, &a->lock, &ts);
                        }
                } else {
                        while (!a->pending_len && !a->stopping)
                                pthread_cond_wait(&a->cond, &a->lock);
                }
                if (a->stopping && !a->pending_len) {
                        if (a->written == a->committed || stop_tried)
                                break; /* stopping, nothing left (or the token is gone) */
                        stop_tried = true;
                }
                /* Swap buffers: appenders go on filling a fresh one. */
                uint8_t *tmp = a->pending;
                size_t len = a->pending_len, cap = a->pending_cap;
                a->pending = batch;
                a->pending_cap = batch_cap;
                a->pending_len = 0;
                batch = tmp;
                batch_cap = cap;
                uint64_t first = a->written, end = a->next_seq;
                uint8_t root[32];
                int r = proto_merkle_tree_root_at(a->tree, end, root);
                pthread_mutex_unlock(&a->lock);

                /* The checkpoint is signed on the helper thread while this one
                 * writes and syncs; a retry (len 0) only signs. */
                bool posted = r >= 0 && parallel;
                if (posted)
                        ckpt_post(&k, end, root);
                if (r >= 0 && len > 0) {
                        struct timespec t0, t1;
                        clock_gettime(CLOCK_MONOTONIC, &t0);
                        r = write_batch(a, batch, len, first);
                        clock_gettime(CLOCK_MONOTONIC, &t1);
                        if (r >= 0) {
                                metrics_observe(METRICS_FDATASYNC_SECONDS, (double) (t1.tv_sec - t0.tv_sec) +
                                                                                   (double) (t1.tv_nsec - t0.tv_nsec) / 1e9);
                                metrics_observe(METRICS_GROUP_ENTRIES, (double) (end - first));
                                metrics_add(METRICS_LOG_WRITTEN_BYTES, len);
                        }
                }
                char *note = NULL;
                if (r < 0) {
                        pthread_mutex_lock(&a->lock);
                        if (!a->failed)
                                log_error("audit log: committing entries %" PRIu64 "..%" PRIu64
                                          " failed (%s); signing stops until the agent is restarted",
                                          first, end - 1, strerror(-r));
                        a->failed = true;
                        wake_main(a);
                        pthread_mutex_unlock(&a->lock);
                        /* A note over entries that are not durable: never published. */
                        if (posted)
                                (void) ckpt_wait(&k, &note);
                        free(note);
                        pthread_mutex_lock(&a->lock);
                        break;
                }
                r = posted ? ckpt_wait(&k, &note) : sign_checkpoint(a, end, root, &note);

                pthread_mutex_lock(&a->lock);
                a->written = end;
                if (r < 0) {
                        if (!sign_failing)
                                log_warning("audit log: cannot sign the checkpoint for %" PRIu64
                                            " entries (%s); they are on disk; retrying until the token is back",
                                            end, strerror(-r));
                        sign_failing = true;
                        free(note);
                } else {
                        if (sign_failing)
                                log_notice("audit log: checkpoint for %" PRIu64 " entries signed; the token is back",
                                           end);
                        sign_failing = false;
                        metrics_checkpoint_signed();
                        free(a->checkpoint);
                        a->checkpoint = note;
                        a->committed = end;
                        a->syncs++;
                        pthread_cond_signal(&a->pub_cond);
                }
                wake_main(a);
        }
        pthread_mutex_unlock(&a->lock);
        free(batch);
        if (parallel) {
                pthread_mutex_lock(&k.lock);
                k.stop = true;
                pthread_cond_signal(&k.request_cond);
                pthread_mutex_unlock(&k.lock);
                pthread_join(signer, NULL);
        }
        pthread_mutex_destroy(&k.lock);
        pthread_cond_destroy(&k.request_cond);
        pthread_cond_destroy(&k.done_cond);
        return NULL;
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
        /* committer_main wakes the main loop after every attempt at a group
         * (committed, checkpoint not signable yet and retried every
         * CHECKPOINT_RETRY_MS, or failed): still ahead of us means that wake
         * is still to come. */
        bool pending = !a->failed && !a->stopping && a->committed <= seq;
        pthread_mutex_unlock(&a->lock);
        return pending;
}

int audit_append(agent_audit *a, Provsign__AuditEntry *e, uint64_t *ret_seq, uint8_t **ret_leaf,
                 size_t *ret_leaf_len) {
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
        int64_t t = now_us();
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
        pthread_cond_signal(&a->cond);
        if (ret_leaf && leaf) {
                *ret_leaf = leaf;
                *ret_leaf_len = n;
        }
out:
        pthread_mutex_unlock(&a->lock);
        return r;
}

/* ---- Reading the log back at start ---- */

static int read_file(int dir_fd, const char *name, uint8_t **ret, size_t *ret_len) {
        int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        /* Like the directories: a segment others may write is not ours. */
        if (!S_ISREG(st.st_mode) || (st.st_mode & 0022)) {
                close(fd);
                return S_ISREG(st.st_mode) ? -EPERM : -EINVAL;
        }
        size_t len = (size_t) st.st_size;
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf) {
                close(fd);
                return -ENOMEM;
        }
        size_t off = 0;
        while (off < len) {
                ssize_t k = read(fd, buf + off, len - off);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        int r = k < 0 ? -errno : -EIO;
                        free(buf);
                        close(fd);
                        return r;
                }
                off += (size_t) k;
        }
        close(fd);
        *ret = buf;
        *ret_len = len;
        return 0;
}

static int segment_filter(const struct dirent *d) {
        size_t n = strlen(d->d_name);
        return n == 20 + strlen(SEGMENT_SUFFIX) && strcmp(d->d_name + 20, SEGMENT_SUFFIX) == 0;
}

static const char *record_error(int r) {
        switch (r) {
        case -EBADMSG:
                return "truncated record";
        case -EOVERFLOW:
                return "impossible record length";
        case -EILSEQ:
                return "CRC32C mismatch";
        default:
                return strerror(-r);
        }
}

/* The head of an entry (seq, time, event) straight off its bytes
 * (proto/entry.h); anything else takes the full decoder. Replaying a million
 * entries this way avoids a million unpack/free pairs. */
static int entry_head(const uint8_t *p, size_t n, proto_entry_head *ret) {
        if (proto_entry_peek(p, n, ret) == 0)
                return 0;
        Provsign__AuditEntry *e = provsign__audit_entry__unpack(NULL, n, p);
        if (!e)
                return -EBADMSG;
        *ret = (proto_entry_head){ .seq = e->seq, .time_us = e->time_us, .event = e->event };
        provsign__audit_entry__free_unpacked(e, NULL);
        return 0;
}

/* Is there a whole record with a matching CRC32C anywhere in p[1..len)?
 * Only called on the bad tail of the last segment at start-up. */
static bool valid_record_after(const uint8_t *p, size_t len) {
        for (size_t off = 1; off + PROTO_RECORD_OVERHEAD < len; off++) {
                proto_cursor c = proto_cursor_make(p + off, len - off);
                const uint8_t *entry;
                size_t n;
                if (proto_record_next(&c, &entry, &n) == 0)
                        return true;
        }
        return false;
}

/* Reads one segment, checking every record and counting them into
 * next_seq. A bad record at the very end of the last segment is a torn
 * write: cut it (and say so). Anywhere else it is corruption: refuse,
 * naming the file and offset. */
static int replay_segment(agent_audit *a, const char *name, bool last, char **ret_error) {
        uint8_t *buf = NULL;
        size_t len = 0;
        int r = read_file(a->dir_fd, name, &buf, &len);
        if (r == -EPERM)
                return agent_errorf(ret_error, r, "%s/%s is group- or world-writable; refusing (chmod go-w it)", a->dir,
                                    name);
        if (r == -EINVAL)
                return agent_errorf(ret_error, r, "%s/%s is not a regular file; refusing", a->dir, name);
        if (r < 0)
                return agent_errorf(ret_error, r, "%s/%s: %s", a->dir, name, strerror(-r));

        uint64_t first = strtoull(name, NULL, 10);
        if (first != a->next_seq) {
                free(buf);
                return agent_errorf(ret_error, -EBADMSG, "%s/%s: segment starts at entry %" PRIu64 ", expected %" PRIu64,
                              a->dir, name, first, a->next_seq);
        }
        proto_cursor c = proto_cursor_make(buf, len);
        for (;;) {
                const uint8_t *entry;
                size_t n;
                r = proto_record_next(&c, &entry, &n);
                if (r == -ENODATA)
                        break;
                size_t off = len - c.len;
                if (r < 0) {
                        /* In the last segment, a bad record with no good record
                         * after it is what a crash mid-commit leaves (a short
                         * write, a zero-filled extension, pages of the batch
                         * that never reached the disk): a torn tail. A good
                         * record after a bad one means damage inside the log. */
                        bool torn = last && !valid_record_after(c.p, c.len);
                        if (!torn) {
                                free(buf);
                                return agent_errorf(ret_error, -EBADMSG,
                                              "%s/%s: corrupt audit log at offset %zu (entry %" PRIu64
                                              "): %s; refusing to start",
                                              a->dir, name, off, a->next_seq, record_error(r));
                        }
                        int fd = openat(a->dir_fd, name, O_WRONLY | O_CLOEXEC);
                        if (fd < 0 || ftruncate(fd, (off_t) off) < 0 || fsync(fd) < 0) {
                                r = -errno;
                                if (fd >= 0)
                                        close(fd);
                                free(buf);
                                return agent_errorf(ret_error, r, "%s/%s: cannot cut the torn tail: %s", a->dir, name,
                                              strerror(-r));
                        }
                        close(fd);
                        log_notice("audit log: cut a torn record at %s/%s offset %zu (%zu bytes, %s)", a->dir, name,
                                   off, len - off, record_error(r));
                        len = off;
                        break;
                }
                proto_entry_head head;
                bool decodes = entry_head(entry, n, &head) == 0;
                bool ok = decodes && head.seq == a->next_seq;
                if (!ok) {
                        free(buf);
                        return agent_errorf(ret_error, -EBADMSG,
                                      "%s/%s: corrupt audit log at offset %zu: entry %" PRIu64 " %s; refusing to start",
                                      a->dir, name, off - proto_record_size(n), a->next_seq,
                                      decodes ? "has the wrong sequence number" : "does not decode");
                }
                r = 0;
                if (r < 0) {
                        free(buf);
                        return r;
                }
                a->next_seq++;
        }
        free(buf);
        if (last) {
                a->seg_fd = openat(a->dir_fd, name, O_WRONLY | O_APPEND | O_CLOEXEC);
                if (a->seg_fd < 0)
                        return agent_errorf(ret_error, -errno, "%s/%s: %s", a->dir, name, strerror(errno));
                a->seg_size = len;
                a->seg_first = first;
        }
        return 0;
}

/* The start reads only the last segment: its torn tail is cut and its
 * records counted, which gives next_seq. The tree comes from the tiles and
 * the tail after them (tree_open, replay_tree), the key state and the index
 * from the index and the tail after it (index_and_key_events): nothing
 * reads the whole log, so the start does not grow with its history. Earlier
 * segments are checked by name (in order) and mode (not group- or
 * world-writable, regular files) only; their bytes are under the tiles'
 * hashes, whose root start checks against the signed checkpoint, and
 * under every auditor's verification. */
static int replay(agent_audit *a, char **ret_error) {
        struct dirent **list = NULL;
        int n = scandir(a->dir, &list, segment_filter, alphasort);
        if (n < 0)
                return agent_errorf(ret_error, -errno, "%s: %s", a->dir, strerror(errno));
        int r = 0;
        uint64_t prev = 0;
        for (int i = 0; i < n && r >= 0; i++) {
                const char *name = list[i]->d_name;
                uint64_t first = strtoull(name, NULL, 10);
                struct stat st;
                if (i > 0 && first <= prev)
                        r = agent_errorf(ret_error, -EBADMSG, "%s/%s: segments out of order; refusing to start", a->dir,
                                         name);
                else if (fstatat(a->dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        r = agent_errorf(ret_error, -errno, "%s/%s: %s", a->dir, name, strerror(errno));
                else if (!S_ISREG(st.st_mode))
                        r = agent_errorf(ret_error, -EINVAL, "%s/%s is not a regular file; refusing", a->dir, name);
                else if (st.st_mode & 0022)
                        r = agent_errorf(ret_error, -EPERM, "%s/%s is group- or world-writable; refusing (chmod go-w it)",
                                         a->dir, name);
                prev = first;
        }
        if (r >= 0 && n > 0) {
                a->next_seq = strtoull(list[n - 1]->d_name, NULL, 10);
                r = replay_segment(a, list[n - 1]->d_name, true, ret_error);
        }
        for (int i = 0; i < n; i++)
                free(list[i]);
        free(list);
        return r;
}

/* ---- Entry bundles (publish_entries = yes) ---- */

static int open_segment_ro(agent_audit *a, uint64_t first) {
        char name[64];
        snprintf(name, sizeof name, "%020" PRIu64 SEGMENT_SUFFIX, first);
        int fd = openat(a->dir_fd, name, O_RDONLY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

/* The segment that holds entry seq (the last whose first entry <= seq). */
static int segment_holding(agent_audit *a, uint64_t seq, uint64_t *ret_first) {
        struct dirent **list = NULL;
        int n = scandir(a->dir, &list, segment_filter, alphasort);
        if (n < 0)
                return -errno;
        int r = -ENOENT;
        for (int i = 0; i < n; i++) {
                uint64_t first = strtoull(list[i]->d_name, NULL, 10);
                if (first <= seq) {
                        *ret_first = first;
                        r = 0;
                }
                free(list[i]);
        }
        free(list);
        return r;
}

/* Publisher thread, without the lock: writes the entry bundles up to
 * entry m (the complete ones not written yet and the partial one), reading
 * the records back from the segments (they are durable: m <= committed).
 * The cursor (bundle_*) remembers where the first bundle not yet complete
 * starts, so each publication reads only the entries since then. */
static int publish_bundles(agent_audit *a, uint64_t m) {
        uint8_t *rec = NULL, *buf = NULL;
        size_t len = 0, cap = 0;
        unsigned count = 0;
        int fd = -1, r = 0;

        if (!a->bundle_known) {
                r = segment_holding(a, a->bundle_seq, &a->bundle_seg);
                if (r < 0)
                        return r;
                a->bundle_off = 0;
                a->bundle_pos = a->bundle_seg;
                a->bundle_known = true;
        }
        uint64_t seg = a->bundle_seg, off = a->bundle_off, seq = a->bundle_pos;
        rec = malloc(PROTO_RECORD_MAX_ENTRY + PROTO_RECORD_OVERHEAD);
        fd = rec ? open_segment_ro(a, seg) : -ENOMEM;
        if (fd < 0) {
                r = fd;
                goto out;
        }
        while (seq < m) {
                if (seq == a->bundle_seq && count == 0) {
                        a->bundle_seg = seg;
                        a->bundle_off = off;
                        a->bundle_pos = seq;
                }
                r = proto_fd_pread_all(fd, rec, PROTO_RECORD_HEADER, off);
                if (r == -ENODATA) {
                        /* The end of this segment: the next starts at seq. */
                        close(fd);
                        seg = seq;
                        off = 0;
                        fd = open_segment_ro(a, seg);
                        if (fd < 0) {
                                r = fd;
                                goto out;
                        }
                        continue;
                }
                if (r < 0)
                        goto out;
                size_t n = (size_t) rec[0] << 24 | (size_t) rec[1] << 16 | (size_t) rec[2] << 8 | rec[3];
                if (n == 0 || n > PROTO_RECORD_MAX_ENTRY) {
                        r = -EBADMSG;
                        goto out;
                }
                r = proto_fd_pread_all(fd, rec + PROTO_RECORD_HEADER, n + PROTO_RECORD_TRAILER, off + PROTO_RECORD_HEADER);
                proto_cursor c = proto_cursor_make(rec, n + PROTO_RECORD_OVERHEAD);
                const uint8_t *entry;
                size_t en;
                if (r >= 0)
                        r = proto_record_next(&c, &entry, &en);
                if (r < 0)
                        goto out;
                off += n + PROTO_RECORD_OVERHEAD;
                if (seq++ < a->bundle_seq)
                        continue;
                r = proto_tile_bundle_add(&buf, &len, &cap, entry, en);
                if (r < 0)
                        goto out;
                if (++count < PROTO_TILE_WIDTH)
                        continue;
                char path[PROTO_TILE_PATH_MAX];
                r = proto_tile_entries_path(a->bundle_seq / PROTO_TILE_WIDTH, PROTO_TILE_WIDTH, path, sizeof path);
                if (r >= 0)
                        r = proto_tile_store_write_file(a->tiles, path, buf, len);
                if (r < 0)
                        goto out;
                a->bundle_seq += PROTO_TILE_WIDTH;
                count = 0;
                len = 0;
        }
        if (seq == a->bundle_seq && count == 0) {
                a->bundle_seg = seg;
                a->bundle_off = off;
                a->bundle_pos = seq;
        }
        if (count > 0) {
                char path[PROTO_TILE_PATH_MAX];
                r = proto_tile_entries_path(a->bundle_seq / PROTO_TILE_WIDTH, count, path, sizeof path);
                if (r >= 0)
                        r = proto_tile_store_write_file(a->tiles, path, buf, len);
        }
out:
        if (fd >= 0)
                close(fd);
        free(rec);
        free(buf);
        return r;
}

/* ---- The tree at start: tiles, then the tail ---- */

/* The checkpoint last published (publish_dir/checkpoint), verified with the
 * log key. 1 with its size and root; 0 when there is none that can be used
 * (missing, unreadable, not ours: said why); < 0 only for errors that stop
 * the start. */
static int load_published(agent_audit *a, uint64_t *ret_size, uint8_t ret_root[32]) {
        uint8_t *buf = NULL;
        size_t len = 0;
        char *body = NULL, *origin = NULL;
        int r = read_file(a->pub_fd, PUBLISHED_CHECKPOINT, &buf, &len);
        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                log_warning("audit log: %s/%s: %s; rebuilding the tiles from the log", a->pub_dir, PUBLISHED_CHECKPOINT,
                            strerror(-r));
                return 0;
        }
        size_t spki_len;
        const uint8_t *spki = keys_key_spki(a->log_key, &spki_len);
        if (len > CHECKPOINT_MAX)
                r = -EMSGSIZE;
        else
                r = proto_note_verify((const char *) buf, len, a->origin, spki, spki_len, &body);
        if (r >= 0)
                r = proto_checkpoint_parse(body, strlen(body), &origin, ret_size, ret_root);
        if (r >= 0 && strcmp(origin, a->origin) != 0)
                r = -EBADMSG;
        if (r < 0)
                log_warning("audit log: %s/%s is not a checkpoint of this log signed by its log key (%s); "
                            "rebuilding the tiles from the log",
                            a->pub_dir, PUBLISHED_CHECKPOINT, strerror(-r));
        free(buf);
        free(body);
        free(origin);
        return r < 0 ? 0 : 1;
}

static void replay_progress(agent_audit *a, uint64_t done, uint64_t total) {
        log_notice("audit log: rebuilding the Merkle tree tiles in %s: %" PRIu64 " of %" PRIu64 " entries", a->pub_dir,
                   done, total);
        /* Under systemd: more time for the start, and say why. */
        sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%" PRIu64 "\nSTATUS=rebuilding the Merkle tree tiles: %" PRIu64 " of %" PRIu64
                      " entries",
                   (uint64_t) 60 * 1000000, done, total);
}

/* Writes out the complete tiles (and partial tiles) of the tree so far. */
static int replay_flush(agent_audit *a, uint64_t *flushed) {
        proto_merkle_tiles *b = NULL;
        uint64_t size = proto_merkle_tree_size(a->tree);
        int r = proto_merkle_tree_tiles_at(a->tree, size, &b);
        if (r >= 0)
                r = proto_merkle_tiles_write(b, a->tiles);
        if (r >= 0) {
                proto_merkle_tree_tiles_written(a->tree, b);
                (void) proto_tile_store_remove_stale(a->tiles, *flushed, size, 0);
                *flushed = size;
        }
        proto_merkle_tiles_free(b);
        return r;
}

/* Appends the leaves [from, next_seq) to the tree, reading only the
 * segments from the one that holds `from` (segment names carry their first
 * entry). The records were checked by replay(). */
static int replay_tree(agent_audit *a, uint64_t from, char **ret_error) {
        struct dirent **list = NULL;
        uint64_t total = a->next_seq - from, flushed = from;
        bool loud = total >= REPLAY_PROGRESS;
        int n = scandir(a->dir, &list, segment_filter, alphasort), r = 0, i0 = 0;
        if (n < 0)
                return agent_errorf(ret_error, -errno, "%s: %s", a->dir, strerror(errno));
        for (int i = 0; i < n; i++)
                if (strtoull(list[i]->d_name, NULL, 10) <= from)
                        i0 = i;
        if (loud)
                replay_progress(a, 0, total);
        /* Tiles of a rebuild: atomic but synced once at the end. */
        proto_tile_store_set_durable(a->tiles, 0);
        for (int i = i0; i < n && r >= 0 && proto_merkle_tree_size(a->tree) < a->next_seq; i++) {
                uint8_t *buf = NULL;
                size_t len = 0;
                const char *name = list[i]->d_name;
                r = read_file(a->dir_fd, name, &buf, &len);
                if (r < 0) {
                        r = agent_errorf(ret_error, r, "%s/%s: %s", a->dir, name, strerror(-r));
                        break;
                }
                uint64_t seq = strtoull(name, NULL, 10);
                proto_cursor c = proto_cursor_make(buf, len);
                while (proto_merkle_tree_size(a->tree) < a->next_seq) {
                        const uint8_t *entry;
                        size_t en;
                        r = proto_record_next(&c, &entry, &en);
                        if (r == -ENODATA) {
                                r = 0;
                                break;
                        }
                        if (r < 0) {
                                r = agent_errorf(ret_error, -EBADMSG, "%s/%s: corrupt audit log at offset %zu: %s",
                                                 a->dir, name, len - c.len, record_error(r));
                                break;
                        }
                        if (seq++ < from)
                                continue;
                        /* A purged entry's stub carries its leaf hash. */
                        uint8_t h[32];
                        r = proto_entry_purged_hash(entry, en, h);
                        if (r < 0) {
                                r = agent_errorf(ret_error, r, "%s/%s: entry %" PRIu64 " is a stub without its leaf hash",
                                                 a->dir, name, seq - 1);
                                break;
                        }
                        r = r > 0 ? proto_merkle_tree_append(a->tree, h) : proto_merkle_tree_append_entry(a->tree, entry, en);
                        if (r < 0)
                                break;
                        uint64_t done = proto_merkle_tree_size(a->tree) - from;
                        if (done % REPLAY_FLUSH == 0) {
                                r = replay_flush(a, &flushed);
                                if (r < 0) {
                                        r = agent_errorf(ret_error, r, "%s: cannot write tiles: %s", a->pub_dir,
                                                         strerror(-r));
                                        break;
                                }
                        }
                        if (loud && done % REPLAY_PROGRESS == 0)
                                replay_progress(a, done, total);
                }
                free(buf);
        }
        for (int i = 0; i < n; i++)
                free(list[i]);
        free(list);
        if (r >= 0 && proto_merkle_tree_size(a->tree) != a->next_seq)
                r = agent_errorf(ret_error, -EBADMSG, "%s: the segments hold %" PRIu64 " entries, expected %" PRIu64,
                                 a->dir, proto_merkle_tree_size(a->tree), a->next_seq);
        if (r >= 0 && flushed != from)
                r = proto_tile_store_sync(a->tiles);
        proto_tile_store_set_durable(a->tiles, 1);
        if (r >= 0 && loud)
                log_notice("audit log: the Merkle tree tiles in %s are rebuilt (%" PRIu64 " entries)", a->pub_dir,
                           a->next_seq);
        return r;
}

/* The tree, in bounded time: its right edge from the partial tiles of the
 * last published checkpoint (size S, verified with the log key), checked
 * against that checkpoint's root, then only the entries from S on replayed
 * from the segments. Without a usable checkpoint or tiles the tiles are
 * rebuilt from the whole log. Tiles that do not match a checkpoint they
 * claim to support refuse the start, naming them. */
static int tree_open(agent_audit *a, char **ret_error) {
        uint64_t size = 0;
        uint8_t root[32], got[32];
        int have = load_published(a, &size, root);
        int r;

        /* Only a disk that lost synced writes (or a log restored from an
         * older copy) gets here: the log stays the source of truth, and the
         * published tree will visibly fork from that checkpoint. */
        if (have && size > a->next_seq) {
                log_error("audit log: %s/%s covers %" PRIu64 " entries but the log in %s holds only %" PRIu64
                          ": entries the log had committed are gone; rebuilding the tiles from the log",
                          a->pub_dir, PUBLISHED_CHECKPOINT, size, a->dir, a->next_seq);
                have = 0;
        }
        if (have) {
                r = proto_merkle_tree_open_tiles(a->tiles, size, &a->tree);
                if (r >= 0) {
                        r = proto_merkle_tree_root_at(a->tree, size, got);
                        if (r >= 0 && memcmp(got, root, sizeof root) != 0) {
                                char names[512];
                                proto_tile_partial_paths(size, names, sizeof names);
                                return agent_errorf(ret_error, -EBADMSG,
                                                    "%s: the tiles do not hash to the root of its checkpoint (%" PRIu64
                                                    " entries): one of %s is damaged; refusing to start (remove %s "
                                                    "to rebuild it from the log)",
                                                    a->pub_dir, size, *names ? names : "the tiles", a->pub_dir);
                        }
                }
                if (r >= 0)
                        r = proto_merkle_tree_check_tiles(a->tree);
                if (r == -ENOENT) {
                        log_warning("audit log: %s/%s is missing; rebuilding the tiles from the log", a->pub_dir,
                                    proto_tile_store_bad(a->tiles));
                        proto_merkle_tree_free(a->tree);
                        a->tree = NULL;
                        have = 0;
                } else if (r == -EBADMSG) {
                        return agent_errorf(ret_error, r,
                                            "%s/%s is damaged (it does not hash to the tree of the checkpoint); "
                                            "refusing to start (remove %s to rebuild it from the log)",
                                            a->pub_dir, proto_tile_store_bad(a->tiles), a->pub_dir);
                } else if (r < 0) {
                        return agent_errorf(ret_error, r, "%s: cannot read the tiles: %s", a->pub_dir, strerror(-r));
                }
        }
        if (!have) {
                /* A rebuild rewrites tiles without syncing each: the old
                 * checkpoint goes first, so a crash in the middle means
                 * another rebuild, never old checkpoint over torn tiles. */
                if (unlinkat(a->pub_fd, PUBLISHED_CHECKPOINT, 0) == 0 && fsync(a->pub_fd) < 0)
                        return agent_errorf(ret_error, -errno, "%s: %s", a->pub_dir, strerror(errno));
                size = 0;
                r = proto_merkle_tree_open_tiles(a->tiles, 0, &a->tree);
                if (r < 0)
                        return r;
        }
        a->published = size;
        /* What a crash in the middle of a publication left (temporaries,
         * partial tiles of a size never published): a web server would
         * serve them. */
        r = proto_tile_store_sweep(a->tiles, size, 1); /* bundles too: none is no error */
        if (r < 0)
                log_warning("audit log: cannot tidy %s after a crash: %s", a->pub_dir, strerror(-r));
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = replay_tree(a, size, ret_error);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (r >= 0)
                log_info("audit log: the tree: %" PRIu64 " entries from the tiles in %s, %" PRIu64
                         " replayed from the log in %.3f s",
                         size, a->pub_dir, a->next_seq - size,
                         (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9);
        return r;
}

/* ---- The index and the key state at start ---- */

#define KEY_EVENT_BATCH 256u

/* Brings the index (index.h) up to the log's next_seq, catching up from
 * its last entry or rebuilding it, then hands every key event it lists to
 * on_key_event, in log order, each read back through its locator and
 * decoded in full (they are few): the registry's state without a scan of
 * the log. */
static int index_and_key_events(agent_audit *a, const char *state_dir, char **ret_error) {
        char *path = NULL;
        if (asprintf(&path, "%s/" INDEX_FILE, state_dir) < 0)
                return -ENOMEM;
        int r = index_open(path, &a->index);
        free(path);
        if (r >= 0)
                r = index_sync(a->index, a->dir_fd, a->next_seq, ret_error);
        if (r < 0 || !a->on_key_event)
                return r;
        agent_logreader *rd = NULL;
        r = logreader_new(a->dir_fd, a->index, &rd);
        uint64_t seqs[KEY_EVENT_BATCH], from = 0;
        size_t n = KEY_EVENT_BATCH;
        while (r >= 0 && n == KEY_EVENT_BATCH) {
                r = index_key_events(a->index, from, seqs, KEY_EVENT_BATCH, &n);
                for (size_t i = 0; r >= 0 && i < n; i++) {
                        const uint8_t *p;
                        size_t len;
                        Provsign__AuditEntry *e = NULL;
                        r = logreader_get(rd, seqs[i], &p, &len);
                        if (r >= 0 && !(e = provsign__audit_entry__unpack(NULL, len, p)))
                                r = -EBADMSG;
                        if (r >= 0)
                                r = a->on_key_event(a->on_key_event_ctx, e);
                        if (e)
                                provsign__audit_entry__free_unpacked(e, NULL);
                        if (r < 0)
                                r = agent_errorf(ret_error, r, "%s: key event at entry %" PRIu64 ": %s", a->dir, seqs[i],
                                                 strerror(-r));
                }
                if (n)
                        from = seqs[n - 1] + 1;
        }
        logreader_free(rd);
        return r;
}

/* ---- Retention (docs/log-tiles.md "Retention") ---- */

static bool purgeable(int event) {
        switch (event) {
        case PROVSIGN__AUDIT_EVENT__KEY_CREATE:
        case PROVSIGN__AUDIT_EVENT__KEY_ROTATE:
        case PROVSIGN__AUDIT_EVENT__KEY_REVOKE:
        case PROVSIGN__AUDIT_EVENT__KEY_DESTROY:
        case PROVSIGN__AUDIT_EVENT__ENTRY_PURGED:
        case PROVSIGN__AUDIT_EVENT__PURGE:
                return false;
        default:
                return true;
        }
}

/* Replaces every purgeable entry of segment `name` (a closed one) by its
 * stub, in place in its bytes, and writes it back atomically (a new file
 * beside it, fsync, rename over it, fsync of the directory). Each record
 * keeps its length, so every position (index, entry bundles, readers with
 * the old file open) stays valid. *ret_newer: the segment holds an entry
 * at or after before_us (it is left alone, and so are the ones after). */
static int purge_segment(agent_audit *a, const char *name, int64_t before_us, bool *ret_newer, uint64_t *ret_n,
                         uint64_t *ret_last) {
        uint8_t *buf = NULL;
        size_t len = 0;
        uint64_t n = 0, last = 0;
        int r = read_file(a->dir_fd, name, &buf, &len);
        if (r < 0)
                return r;
        /* Pass 0: are all older than the cutoff, and is any purgeable?
         * Pass 1: replace those by their stubs, in place. */
        *ret_newer = false;
        for (int pass = 0; pass < 2; pass++) {
                proto_cursor c = proto_cursor_make(buf, len);
                if (pass == 1) {
                        if (n == 0)
                                goto out;
                        n = 0;
                }
                for (;;) {
                        const uint8_t *entry;
                        size_t en;
                        uint8_t *rec = (uint8_t *) c.p;
                        r = proto_record_next(&c, &entry, &en);
                        if (r == -ENODATA) {
                                r = 0;
                                break;
                        }
                        proto_entry_head h;
                        if (r >= 0)
                                r = entry_head(entry, en, &h);
                        if (r < 0)
                                goto out;
                        if (h.time_us >= before_us) {
                                *ret_newer = true;
                                goto out;
                        }
                        if (!purgeable(h.event))
                                continue;
                        if (pass == 0) {
                                n++;
                                continue;
                        }
                        r = proto_entry_stub(entry, en, (uint8_t *) entry);
                        if (r == -EMSGSIZE) {
                                r = 0; /* too short to hold its stub: kept */
                                continue;
                        }
                        size_t rl;
                        if (r >= 0)
                                r = proto_record_encode(entry, en, rec, proto_record_size(en), &rl);
                        if (r < 0)
                                goto out;
                        n++;
                        last = h.seq;
                }
        }
        if (n == 0)
                goto out; /* all too short for their stubs: nothing changed */
        char tmp[300];
        snprintf(tmp, sizeof tmp, ".purge-%.255s", name);
        int fd = openat(a->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
                r = -errno;
                goto out;
        }
        r = proto_fd_write_all(fd, buf, len);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        close(fd);
        if (r >= 0 && renameat(a->dir_fd, tmp, a->dir_fd, name) < 0)
                r = -errno;
        if (r >= 0 && fsync(a->dir_fd) < 0)
                r = -errno;
        if (r < 0)
                (void) unlinkat(a->dir_fd, tmp, 0);
out:
        free(buf);
        *ret_n = r >= 0 ? n : 0;
        *ret_last = last;
        return r;
}

int audit_purge(agent_audit *a, int64_t before_us, const Provsign__Caller *caller, const char *who,
                uint64_t *ret_purged, uint64_t *ret_through, uint64_t *ret_seq) {
        struct dirent **list = NULL;
        uint64_t total = 0, through = 0;
        int r = 0;
        *ret_purged = *ret_through = *ret_seq = 0;
        pthread_mutex_lock(&a->purge_lock);
        int n = scandir(a->dir, &list, segment_filter, alphasort);
        if (n < 0) {
                r = -errno;
                goto out;
        }
        pthread_mutex_lock(&a->lock);
        uint64_t open_first = a->seg_fd >= 0 ? a->seg_first : UINT64_MAX;
        pthread_mutex_unlock(&a->lock);
        /* Never the last segment, nor the one being written. */
        for (int i = 0; i + 1 < n && r >= 0; i++) {
                const char *name = list[i]->d_name;
                uint64_t first = strtoull(name, NULL, 10);
                if (first >= open_first)
                        break;
                if (first < a->purge_from)
                        continue; /* purged whole before: not read again */
                bool newer = false;
                uint64_t k = 0, last = 0;
                r = purge_segment(a, name, before_us, &newer, &k, &last);
                if (r < 0) {
                        log_error("audit log: cannot purge %s/%s: %s", a->dir, name, strerror(-r));
                        break;
                }
                if (k) {
                        total += k;
                        through = last;
                }
                if (newer)
                        break;
                a->purge_from = strtoull(list[i + 1]->d_name, NULL, 10);
        }
        for (int i = 0; i < n; i++)
                free(list[i]);
        free(list);
        if (total > 0) {
                char when[PROTO_TIME_LEN + 1], msg[160];
                if (!proto_time_format_us(before_us, when))
                        snprintf(when, sizeof when, "%" PRId64 "us", before_us);
                snprintf(msg, sizeof msg, "purged %" PRIu64 " entries through seq %" PRIu64 " older than %s", total,
                         through, when);
                Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
                e.event = PROVSIGN__AUDIT_EVENT__PURGE;
                e.caller = (Provsign__Caller *) caller;
                e.reason = (char *) who;
                e.message = msg;
                e.purged_through_seq = through;
                e.purged_before_us = before_us;
                int ra = audit_append(a, &e, ret_seq, NULL, NULL);
                log_notice("audit log: %s (%s)", msg, who);
                if (ra < 0 && r >= 0)
                        r = ra;
        }
        *ret_purged = total;
        *ret_through = through;
out:
        pthread_mutex_unlock(&a->purge_lock);
        return r;
}

#define RETAIN_INTERVAL_S 3600

static void *retainer_main(void *arg) {
        agent_audit *a = arg;
        for (;;) {
                uint64_t purged, through, seq;
                int64_t cutoff = now_us() - (int64_t) a->retain_s * 1000000;
                int r = audit_purge(a, cutoff, NULL, "retain_entries", &purged, &through, &seq);
                if (r < 0)
                        log_warning("audit log: retain_entries: purge failed (%s); retrying in an hour", strerror(-r));
                pthread_mutex_lock(&a->lock);
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += RETAIN_INTERVAL_S;
                while (!a->retain_stop && pthread_cond_timedwait(&a->retain_cond, &a->lock, &ts) != ETIMEDOUT)
                        ;
                bool stop = a->retain_stop;
                pthread_mutex_unlock(&a->lock);
                if (stop)
                        break;
        }
        return NULL;
}

/* ---- Opening ---- */

/* The log key: provsign/<ns>/log/<gen>, ns the key namespace (docs/fleet.md). */
static int find_or_create_log_key(agent_audit *a, const agent_config *cfg, bool *ret_created, char **ret_error) {
        keys_key *best = NULL;
        uint32_t best_gen = 0;
        char ns[KEYS_NAMESPACE_MAX + 1], label[KEYS_LABEL_MAX];
        *ret_created = false;
        if (cfg->key_namespace)
                snprintf(ns, sizeof ns, "%s", cfg->key_namespace);
        else if (keys_namespace_from_origin(cfg->log_origin, ns) < 0)
                return agent_errorf(ret_error, -EINVAL, "%s: set key_namespace (log_origin does not start with one)",
                                    cfg->path);
        for (size_t i = 0; i < keys_store_count(a->store); i++) {
                keys_key *k = keys_store_get(a->store, i);
                char owner[65];
                uint32_t gen;
                if (keys_label_parse(keys_key_label(k), ns, owner, sizeof owner, &gen) < 0 ||
                    strcmp(owner, LOG_KEY_OWNER) != 0)
                        continue;
                if (keys_key_algorithm(k) != PROVSIGN__KEY_ALGORITHM__ECDSA_P256)
                        continue; /* note signatures of type 0x02 are ECDSA P-256 */
                if (gen > best_gen) {
                        best = k;
                        best_gen = gen;
                }
        }
        *ret_created = false;
        if (!best) {
                int r = keys_label_format(label, sizeof label, ns, LOG_KEY_OWNER, 1);
                if (r >= 0)
                        r = keys_generate(a->store, PROVSIGN__KEY_ALGORITHM__ECDSA_P256, label, &best, ret_error);
                if (r < 0)
                        return r;
                *ret_created = true;
        }
        a->log_key = best;
        size_t spki_len;
        const uint8_t *spki = keys_key_spki(best, &spki_len);
        int r = proto_note_key_hash(spki, spki_len, a->log_key_hash);
        if (r < 0)
                return r;
        return proto_note_verifier_key(a->origin, spki, spki_len, &a->verifier_key);
}

/* The log is only as trustworthy as its directory: nobody but the agent may
 * write there. */
static int check_dir(const char *path, char **ret_error) {
        struct stat st;
        if (stat(path, &st) < 0)
                return agent_errorf(ret_error, -errno, "state_dir %s: %s", path, strerror(errno));
        if (!S_ISDIR(st.st_mode))
                return agent_errorf(ret_error, -ENOTDIR, "state_dir %s is not a directory", path);
        if (st.st_mode & 0022)
                return agent_errorf(ret_error, -EPERM, "state_dir %s is group- or world-writable (mode %04o); refusing",
                              path, (unsigned) (st.st_mode & 07777));
        return 0;
}

/* publish_dir (default <state_dir>/tlog): created if needed, and like the
 * state directory writable by the agent only. */
static int open_publish_dir(agent_audit *a, const agent_config *cfg, char **ret_error) {
        int r;
        if (cfg->publish_dir)
                a->pub_dir = strdup(cfg->publish_dir);
        else if (asprintf(&a->pub_dir, "%s/tlog", cfg->state_dir) < 0)
                a->pub_dir = NULL;
        if (!a->pub_dir)
                return -ENOMEM;
        if (mkdir(a->pub_dir, 0755) < 0 && errno != EEXIST)
                return agent_errorf(ret_error, -errno, "cannot create publish_dir %s: %s", a->pub_dir, strerror(errno));
        r = check_dir(a->pub_dir, ret_error);
        if (r < 0)
                return r;
        a->pub_fd = open(a->pub_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (a->pub_fd < 0)
                return agent_errorf(ret_error, -errno, "%s: %s", a->pub_dir, strerror(errno));
        return proto_tile_store_open(a->pub_fd, &a->tiles);
}

int audit_open(const agent_config *cfg, keys_store *store, audit_key_event_fn on_key_event, void *ctx,
               agent_audit **ret, char **ret_error) {
        int r;
        if (!cfg->log_origin)
                return agent_errorf(ret_error, -EINVAL,
                              "%s: log_origin is not set: add \"log_origin = <this host's name>/provsign\" under [agent] "
                              "(it names this log in its signed checkpoints and cannot change once the log exists)",
                              cfg->path);
        r = check_dir(cfg->state_dir, ret_error);
        if (r < 0)
                return r;

        agent_audit *a = calloc(1, sizeof *a);
        if (!a)
                return -ENOMEM;
        pthread_mutex_init(&a->lock, NULL);
        pthread_mutex_init(&a->purge_lock, NULL);
        pthread_cond_init(&a->retain_cond, NULL);
        pthread_cond_init(&a->cond, NULL);
        pthread_cond_init(&a->pub_cond, NULL);
        a->dir_fd = a->seg_fd = a->efd = a->pub_fd = -1;
        a->store = store;
        a->on_key_event = on_key_event;
        a->on_key_event_ctx = ctx;
        if (asprintf(&a->dir, "%s/log", cfg->state_dir) < 0) {
                a->dir = NULL;
                r = -ENOMEM;
                goto fail;
        }
        a->origin = strdup(cfg->log_origin);
        if (!a->origin) {
                r = -ENOMEM;
                goto fail;
        }
        if (mkdir(a->dir, 0700) < 0 && errno != EEXIST) {
                r = agent_errorf(ret_error, -errno, "cannot create %s: %s", a->dir, strerror(errno));
                goto fail;
        }
        r = check_dir(a->dir, ret_error);
        if (r < 0)
                goto fail;
        a->dir_fd = open(a->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        a->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (a->dir_fd < 0 || a->efd < 0) {
                r = agent_errorf(ret_error, -errno, "%s: %s", a->dir, strerror(errno));
                goto fail;
        }
        r = agent_origin_bind(a->dir_fd, a->dir, cfg->log_origin, cfg->path, ret_error);
        if (r < 0)
                goto fail;

        r = replay(a, ret_error);
        if (r < 0)
                goto fail;
        r = index_and_key_events(a, cfg->state_dir, ret_error);
        if (r < 0)
                goto fail;
        a->committed = a->written = a->next_seq;

        bool created;
        r = find_or_create_log_key(a, cfg, &created, ret_error);
        if (r < 0)
                goto fail;
        r = open_publish_dir(a, cfg, ret_error);
        if (r >= 0)
                r = tree_open(a, ret_error);
        if (r < 0)
                goto fail;
        a->publish_entries = cfg->publish_entries;
        if (a->publish_entries) {
                /* Bundles from the published size's bundle on, or from the
                 * start when the last complete one is missing (turned on
                 * for a log that has none: a backfill, by the publisher). */
                uint64_t N = a->published / PROTO_TILE_WIDTH;
                char path[PROTO_TILE_PATH_MAX];
                if (N > 0 && proto_tile_entries_path(N - 1, PROTO_TILE_WIDTH, path, sizeof path) == 0 &&
                    faccessat(a->pub_fd, path, F_OK, 0) == 0)
                        a->bundle_seq = N * PROTO_TILE_WIDTH;
        }
        /* A fresh checkpoint for what is on disk, before anything new. */
        uint8_t root[32];
        r = proto_merkle_tree_root_at(a->tree, a->committed, root);
        if (r >= 0)
                r = sign_checkpoint(a, a->committed, root, &a->checkpoint);
        if (r < 0) {
                r = agent_errorf(ret_error, r, "cannot sign a checkpoint with the log key: %s", strerror(-r));
                goto fail;
        }
        {
                proto_merkle_tiles *b = NULL;
                char *note = NULL;
                /* Entry bundles are the publisher's (a backfill after
                 * publish_entries is turned on must not delay the start). */
                r = publish_prepare(a, a->committed, &b, &note);
                if (r >= 0)
                        r = publish_write(a, b, note, false);
                free(note);
                if (r < 0) {
                        proto_merkle_tiles_free(b);
                        r = agent_errorf(ret_error, r, "%s: cannot publish the checkpoint and tiles: %s", a->pub_dir,
                                         strerror(-r));
                        goto fail;
                }
                publish_finish(a, b, r);
        }
        r = -pthread_create(&a->committer, NULL, committer_main, a);
        if (r < 0)
                goto fail;
        a->committer_started = true;
        r = -pthread_create(&a->publisher, NULL, publisher_main, a);
        if (r < 0)
                goto fail;
        a->publisher_started = true;

        if (created) {
                size_t spki_len;
                const uint8_t *spki = keys_key_spki(a->log_key, &spki_len);
                Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
                e.event = PROVSIGN__AUDIT_EVENT__KEY_CREATE;
                e.principal = (char *) LOG_KEY_OWNER;
                e.keyid = (char *) keys_key_id_hex(a->log_key);
                e.generation = 1;
                e.algorithm = PROVSIGN__KEY_ALGORITHM__ECDSA_P256;
                e.public_key_der.data = (uint8_t *) spki;
                e.public_key_der.len = spki_len;
                e.message = (char *) "log key";
                uint64_t seq;
                r = audit_append(a, &e, &seq, NULL, NULL);
                if (r < 0)
                        goto fail;
                log_notice("generated log key %s", keys_key_id_hex(a->log_key));
        }
        a->retain_s = cfg->retain_entries_s;
        if (a->retain_s) {
                r = -pthread_create(&a->retainer, NULL, retainer_main, a);
                if (r < 0)
                        goto fail;
                a->retainer_started = true;
        }
        log_info("audit log %s: %" PRIu64 " entries", a->dir, a->committed);
        *ret = a;
        return 0;
fail:
        audit_close(a);
        return r;
}

void audit_close(agent_audit *a) {
        if (!a)
                return;
        if (a->retainer_started) {
                pthread_mutex_lock(&a->lock);
                a->retain_stop = true;
                pthread_cond_signal(&a->retain_cond);
                pthread_mutex_unlock(&a->lock);
                pthread_join(a->retainer, NULL);
        }
        if (a->committer_started) {
                pthread_mutex_lock(&a->lock);
                a->stopping = true;
                pthread_cond_signal(&a->cond);
                pthread_mutex_unlock(&a->lock);
                pthread_join(a->committer, NULL);
        }
        if (a->publisher_started) {
                pthread_mutex_lock(&a->lock);
                a->pub_stop = true;
                pthread_cond_signal(&a->pub_cond);
                pthread_mutex_unlock(&a->lock);
                pthread_join(a->publisher, NULL);
        }
        if (a->seg_fd >= 0)
                close(a->seg_fd);
        if (a->dir_fd >= 0)
                close(a->dir_fd);
        if (a->efd >= 0)
                close(a->efd);
        proto_merkle_tree_free(a->tree); /* before the store its tiles come from */
        proto_tile_store_free(a->tiles);
        if (a->pub_fd >= 0)
                close(a->pub_fd);
        free(a->pub_dir);
        index_close(a->index);
        free(a->pending);
        free(a->checkpoint);
        free(a->verifier_key);
        free(a->origin);
        free(a->dir);
        pthread_mutex_destroy(&a->lock);
        pthread_mutex_destroy(&a->purge_lock);
        pthread_cond_destroy(&a->retain_cond);
        pthread_cond_destroy(&a->cond);
        pthread_cond_destroy(&a->pub_cond);
        free(a);
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

const keys_key *audit_log_key(const agent_audit *a) {
        return a->log_key;
}
const char *audit_verifier_key(const agent_audit *a) {
        return a->verifier_key;
}
const char *audit_origin(const agent_audit *a) {
        return a->origin;
}

/* ---- Reading back (export, find, proof: index.h) ---- */

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

uint64_t audit_bytes(const agent_audit *a) {
        DIR *d = opendir(a->dir);
        if (!d)
                return 0;
        uint64_t total = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                struct stat st;
                if (segment_filter(de) && fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                        total += (uint64_t) st.st_size;
        }
        closedir(d);
        return total;
}
