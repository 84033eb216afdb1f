/* The write-ahead, tamper-evident audit log (docs/auditing.md).
 *
 * Entries are protobuf AuditEntry messages, stored as records (proto/record.h)
 * in segment files under <state_dir>/log, and hashed into an RFC 9162 Merkle
 * tree kept on disk as C2SP tlog-tiles in publish_dir (proto/tiles.h; memory
 * holds its right edge and a small cache; docs/log-tiles.md). A committer
 * thread writes what was appended, fdatasyncs once for the whole group, signs
 * one checkpoint (C2SP note, log key in the token) for the group and then
 * wakes the main thread through audit_fd(). A Sign reply waits for that: a
 * signature never leaves the agent before its entry is durable. A publisher
 * thread then writes the group's tiles and checkpoint to publish_dir (at most
 * every 200 ms, coalescing groups). At start the tree comes from the tiles of
 * the last published checkpoint (checked against its signed root) plus the
 * entries after it; a missing or stale publish_dir is rebuilt from the log.
 *
 * Threads: audit_append() may be called from any thread. Everything else is
 * for the main thread. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "keystore.h"
#include "provsign.pb-c.h"

typedef struct agent_audit agent_audit;

/* Called at open, in log order, with every key event (KEY_CREATE,
 * KEY_ROTATE, KEY_REVOKE, KEY_DESTROY; borrowed, valid for the call): the
 * key registry is derived from these. A negative return refuses to start. */
typedef int (*audit_key_event_fn)(void *ctx, const Provsign__AuditEntry *e);

/* audit_open: opens (creating if needed) the log under cfg->state_dir,
 * cuts a torn tail (logged), refuses corruption elsewhere (*ret_error names
 * the file and offset), opens the tree from the tiles in publish_dir
 * (refusing tiles that do not match the published checkpoint, naming them;
 * rebuilding missing ones) and replays the tail after them, catches up (or
 * rebuilds) the index on disk (index.h) and hands the key events it lists to
 * on_key_event (which may be NULL), finds or creates the log key (CKA_LABEL
 * provsign/<key_namespace>/log/<gen>), publishes a fresh checkpoint and starts the committer
 * and the publisher. */
int audit_open(const agent_config *cfg, keys_store *store, audit_key_event_fn on_key_event, void *ctx,
               agent_audit **ret, char **ret_error);

/* audit_close: commits what is pending (one last fdatasync and checkpoint),
 * stops the committer, frees everything. Accepts NULL. */
void audit_close(agent_audit *a);

/* audit_fd: readable when entries became durable or the log failed; the
 * main loop then calls audit_ack(). */
int audit_fd(const agent_audit *a);
void audit_ack(agent_audit *a);

/* audit_append: stamps e->seq and e->time_us (strictly increasing; a
 * KEY_REVOKE without compromised_since_us gets its own time there too),
 * encodes it and queues it for the next group commit. On success *ret_seq is its sequence number and,
 * when ret_leaf is not NULL, *ret_leaf and *ret_leaf_len a malloc'd copy of the
 * exact entry bytes (the caller frees). -EIO once the log has failed (it
 * stays failed: signing fails closed), -EMSGSIZE, -ENOMEM. */
int audit_append(agent_audit *a, Provsign__AuditEntry *e, uint64_t *ret_seq, uint8_t **ret_leaf,
                 size_t *ret_leaf_len);

/* audit_append_deferred: audit_append for a signing worker that commits
 * the entry itself: it does not wake the committer thread, and the caller
 * calls audit_commit() as soon as it holds no lock. */
int audit_append_deferred(agent_audit *a, Provsign__AuditEntry *e, uint64_t *ret_seq, uint8_t **ret_leaf,
                          size_t *ret_leaf_len);

/* audit_commit: after audit_append_deferred(). With lead, when no group
 * commit is running and the log is healthy, commits what is queued on this
 * thread (write, checkpoint, fdatasync: the lone client's Sign costs no
 * hand-off to another thread); the main loop is then woken by the caller's
 * job returning to the pool (audit_wake_pending says false). Otherwise,
 * or without lead (more jobs wait for the workers), the committer thread
 * takes it. */
void audit_commit(agent_audit *a, bool lead);

/* audit_wake_pending: called on a worker thread after a job: true when that
 * job appended an entry (the last audit_append() of this thread since the
 * previous call) that is not committed yet, so the committer is bound to
 * wake the main loop through audit_fd() once it is; the worker pool then
 * need not wake it for that job. Resets the thread's mark. */
bool audit_wake_pending(agent_audit *a);

/* audit_committed: entries with seq < this value are on disk and covered by
 * the current checkpoint. */
uint64_t audit_committed(agent_audit *a);
bool audit_failed(agent_audit *a);

/* audit_bytes: the size of the log's segment files now (a directory scan;
 * for metrics). 0 when the directory cannot be read. */
uint64_t audit_bytes(const agent_audit *a);

/* audit_receipt: fills r (caller frees with audit_receipt_done) for a
 * committed entry: inclusion proof and checkpoint of the current tree. */
int audit_receipt(agent_audit *a, uint64_t seq, int64_t time_us, const uint8_t *leaf, size_t leaf_len,
                  Provsign__Receipt *r);
void audit_receipt_done(Provsign__Receipt *r);

/* audit_checkpoint: the latest signed checkpoint note (caller frees) and,
 * when from_size > 0, the consistency proof from from_size to its size into
 * proof (capacity PROTO_MERKLE_MAX_PROOF), *ret_n hashes. -EINVAL when
 * from_size exceeds the checkpoint's size. */
int audit_checkpoint(agent_audit *a, uint64_t from_size, char **ret_note, uint64_t *ret_size, uint8_t proof[][32],
                     size_t *ret_n);

/* The log key. Borrowed; live as long as a. */
const keys_key *audit_log_key(const agent_audit *a);
const char *audit_verifier_key(const agent_audit *a);
const char *audit_origin(const agent_audit *a);

/* Reading the log back (export, find, proof). audit_index: the indexes
 * (index.h), borrowed, live as long as a; audit_dir_fd: the segment
 * directory, borrowed. audit_range_proof: the compact range proof
 * (proto/merkle.h) of entries [from, to) in the tree of size m <= committed
 * (arrays of PROTO_MERKLE_MAX_PROOF); -EINVAL otherwise. */
typedef struct agent_index agent_index;
agent_index *audit_index(const agent_audit *a);
int audit_dir_fd(const agent_audit *a);
int audit_range_proof(agent_audit *a, uint64_t from, uint64_t to, uint64_t m, uint8_t left[][32], size_t *ret_n_left,
                      uint8_t right[][32], size_t *ret_n_right);

/* audit_inclusion_proof: the inclusion path of entry seq in the tree of
 * size m <= committed (capacity PROTO_MERKLE_MAX_PROOF), *ret_n hashes;
 * -EINVAL otherwise. */
int audit_inclusion_proof(agent_audit *a, uint64_t seq, uint64_t m, uint8_t proof[][32], size_t *ret_n);

/* Statistics for status and benchmarks. */
uint64_t audit_syncs(agent_audit *a);

/* audit_purge: retention (docs/log-tiles.md "Retention"). Every closed
 * segment whose entries are all older than before_us (never the last one)
 * is rewritten atomically with its entries' bodies replaced by stubs
 * (ENTRY_PURGED, the leaf hash kept, the record's length kept); key events,
 * purges and stubs stay. If any was purged, one PURGE entry is appended
 * (caller may be NULL; who: "operator" or "retain_entries"), its seq in
 * *ret_seq. Disk-heavy: a worker or the retention thread, never the event
 * loop. Purges are serialized. 0 with *ret_purged entries purged now, the
 * last in *ret_through; -errno (a segment that cannot be read or
 * rewritten: the ones before it are purged, and logged). */
int audit_purge(agent_audit *a, int64_t before_us, const Provsign__Caller *caller, const char *who,
                uint64_t *ret_purged, uint64_t *ret_through, uint64_t *ret_seq);
