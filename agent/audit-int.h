/* Internal to the audit log (audit*.c); the rest of the agent includes
 * audit.h only. The log is split by job, and calls between its files go one
 * way, down this list (audit.c calls any of them; audit-segment.c and
 * audit-checkpoint.c none):
 *
 *   audit.c             audit_open() and audit_close(): directories, the log
 *                       key, the first checkpoint, starting and stopping the
 *                       threads
 *   audit-replay.c      the segments at start: torn tail cut, corruption
 *                       refused, next_seq; the index and the key events
 *   audit-tree.c        the Merkle tree at start: the published checkpoint,
 *                       its tiles, the tail replayed (or a rebuild)
 *   audit-retain.c      retention: audit_purge() and the retainer thread
 *   audit-publish.c     the publisher thread: tiles, checkpoint and entry
 *                       bundles in publish_dir
 *   audit-commit.c      the append path and the group commit (on a
 *                       signing worker or the committer thread), and the
 *                       state it publishes (committed, failed, the
 *                       wake-up fd)
 *   audit-read.c        reading back: receipts, proofs, checkpoints
 *   audit-checkpoint.c  signing a checkpoint, and the helper thread that
 *                       signs a group's while the group commit syncs it
 *   audit-segment.c     segment files: naming, opening, writing a group,
 *                       reading one whole, finding the one holding an entry
 *
 * Locking: a->lock guards what struct agent_audit marks "under lock"; the
 * committer, publisher and retainer threads and the purge take it as
 * their comments say. */
#pragma once

#include <dirent.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "entry.h"
#include "index.h"
#include "merkle.h"
#include "tiles.h"

/* In the log directory: a purge that may not have finished (audit-retain.c). */
#define PURGE_PENDING "purge-pending"

/* publish_dir's checkpoint file (C2SP tlog-tiles) */
#define PUBLISHED_CHECKPOINT "checkpoint"

/* The checkpoint signer: a helper thread that signs a group's checkpoint
 * while the group commit writes and fdatasyncs the same group, so a group
 * costs max(sync, signature) instead of their sum (on a 2-CPU machine
 * the signature's wake-up is hidden behind the sync). The note is
 * published only after both are done: nothing refers to entries that are
 * not durable. One commit at a time, so one request at a time. */
struct ckpt_signer {
        agent_audit *audit;
        pthread_t thread;
        bool started;
        pthread_mutex_t lock;
        pthread_cond_t request_cond, done_cond;
        bool request, done, stop;
        uint64_t size;
        uint8_t root[32];
        char *note;
        int r;
};

struct agent_audit {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        pthread_t committer;
        bool committer_started;
        pthread_t publisher;
        bool publisher_started;
        pthread_cond_t pub_cond; /* a commit (only while pub_idle), or pub_stop */
        bool pub_stop;
        bool pub_idle;           /* under lock: the publisher waits for a commit (not resting) */
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
        pthread_mutex_t bundle_lock; /* the bundle files and bundle_*: publisher vs a purge */
        uint64_t next_seq;       /* under lock */
        int64_t last_time_us;    /* the last entry's time, under lock */
        uint64_t written;        /* durable (written and synced), under lock */
        uint64_t committed;      /* durable and checkpointed, under lock */
        char *checkpoint;        /* note for size `committed`, under lock */
        uint64_t syncs;

        uint8_t *pending;        /* records not yet written, under lock */
        size_t pending_len, pending_cap;
        uint8_t *spare;          /* the other buffer (swapped at each commit), under lock */
        size_t spare_cap;
        bool committing;         /* a group commit runs (one at a time), under lock */
        bool sign_failing;       /* the last checkpoint could not be signed, under lock */
        pthread_cond_t commit_cond; /* broadcast after a commit while commit_waiters > 0 */
        unsigned commit_waiters; /* under lock */
        struct ckpt_signer ckpt; /* used by whoever commits */

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

/* ---- audit-segment.c ---------------------------------------------------- */

/* audit_write_batch: appends len bytes of records starting at entry
 * first_seq to the current segment (a new one once it is full) and
 * fdatasyncs; then adds them to the index. One group commit at a time
 * (a->committing). */
int audit_write_batch(agent_audit *a, const uint8_t *buf, size_t len, uint64_t first_seq);

/* audit_segment_ready: opens the next segment when there is none or the
 * current one is full (retrying a transient EMFILE/ENFILE/ENOMEM), so a
 * group commit does it before its checkpoint is signed: nothing else runs
 * on the token meanwhile, whose failures could free or take descriptors
 * while the open waits for one. */
int audit_segment_ready(agent_audit *a, uint64_t first_seq);

/* audit_read_file: the whole of dir_fd/name into *ret (caller frees).
 * -EPERM when group- or world-writable, -EINVAL when no regular file. */
int audit_read_file(int dir_fd, const char *name, uint8_t **ret, size_t *ret_len);

/* audit_segment_filter: scandir() filter for segment file names. */
int audit_segment_filter(const struct dirent *d);

/* audit_record_error: what a proto_record_next() error means, for messages
 * (static string). */
const char *audit_record_error(int r);

/* audit_entry_head: seq, time and event of an entry's bytes. */
int audit_entry_head(const uint8_t *p, size_t n, proto_entry_head *ret);

/* audit_open_segment_ro: the segment whose first entry is `first`, read
 * only: an fd (caller closes) or -errno. */
int audit_open_segment_ro(agent_audit *a, uint64_t first);

/* audit_segment_holding: the first entry of the segment that holds seq. */
int audit_segment_holding(agent_audit *a, uint64_t seq, uint64_t *ret_first);

/* ---- audit-checkpoint.c ------------------------------------------------- */

/* audit_sign_checkpoint: the signed note for a tree of `size` with `root`
 * (caller frees *ret_note). Calls the token. */
int audit_sign_checkpoint(agent_audit *a, uint64_t size, const uint8_t root[32], char **ret_note);

/* audit_ckpt_start / audit_ckpt_stop: the checkpoint signer's thread.
 * audit_ckpt_post() hands it a tree head, audit_ckpt_wait() waits for the
 * note (caller frees). Without the thread, a commit signs in series. */
int audit_ckpt_start(agent_audit *a);
void audit_ckpt_stop(agent_audit *a);
void audit_ckpt_post(struct ckpt_signer *k, uint64_t size, const uint8_t root[32]);
int audit_ckpt_wait(struct ckpt_signer *k, char **ret_note);


/* ---- audit-commit.c ----------------------------------------------------- */

/* audit_committer_main: the committer thread (arg: the agent_audit). */
void *audit_committer_main(void *arg);

/* ---- audit-publish.c ---------------------------------------------------- */

/* Publishing the checkpoint of `size` (<= committed): prepare under the lock
 * (caller owns *ret_tiles and *ret_note), write without it, finish under it
 * again (takes b). */
int audit_publish_prepare(agent_audit *a, uint64_t size, proto_merkle_tiles **ret_tiles, char **ret_note);
int audit_publish_write(agent_audit *a, const proto_merkle_tiles *b, const char *note, bool entries);
void audit_publish_finish(agent_audit *a, proto_merkle_tiles *b, int r);

/* audit_publish_rebundle: after a purge replaced entries in [from, to] by
 * stubs (their segment durable): rewrites, atomically, the complete entry
 * bundles already published that hold any of them, from the segments, so
 * the published bundles carry what the segments carry (the partial bundle
 * and the ones not written yet are written from the segments anyway).
 * Takes bundle_lock. 0 (also with publish_entries = no), or the first
 * error (logged; it stops there). */
int audit_publish_rebundle(agent_audit *a, uint64_t from, uint64_t to);

/* audit_publisher_main: the publisher thread (arg: the agent_audit). */
void *audit_publisher_main(void *arg);

/* ---- audit-retain.c ----------------------------------------------------- */

/* audit_purge_pending: 1 and *ret (the range of entries a purge that may
 * not have finished changed, its cutoff) from its mark in the log
 * directory (an unreadable mark: every entry), 0 when there is none.
 * audit_purge_recover: at start, once the index was rebuilt
 * (index_distrust) and the committer and publisher run: removes the
 * temporary files of rewrites cut short and, with a mark, rewrites its
 * range's published entry bundles, logs a PURGE entry for it and removes
 * the mark once that entry is durable (kept when anything fails: tried
 * again at the next start). */
struct audit_pending_purge {
        uint64_t from, through;
        int64_t before_us;
};
int audit_purge_pending(agent_audit *a, struct audit_pending_purge *ret);
void audit_purge_recover(agent_audit *a);

/* audit_retainer_main: the retainer thread (arg: the agent_audit). */
void *audit_retainer_main(void *arg);

/* ---- audit-tree.c ------------------------------------------------------- */

/* audit_tree_open: a->tree from the published tiles plus the tail after
 * them (or rebuilt from the log); needs next_seq, the log key, publish_dir. */
int audit_tree_open(agent_audit *a, char **ret_error);

/* ---- audit-replay.c ----------------------------------------------------- */

/* audit_replay: checks the segments, cuts a torn tail, sets next_seq and
 * opens the last segment for appending. */
int audit_replay(agent_audit *a, char **ret_error);

/* audit_index_and_key_events: the index caught up to next_seq, then every
 * key event handed to a->on_key_event in log order. */
int audit_index_and_key_events(agent_audit *a, const char *state_dir, char **ret_error);
