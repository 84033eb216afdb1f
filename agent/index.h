/* The log's index on disk (SQLite 3, <state_dir>/index.sqlite; why SQLite:
 * docs/log-index.md), and a reader of entries by sequence number (export,
 * find, proof, the key events at start).
 *
 * Derived data: the segments are the truth. The index holds, for every
 * entry, its position (segment, byte offset of its record), time, event,
 * principal and key id; the first 8 bytes of its digest and of every
 * annotation value "sha256:HEX" / "sha384:HEX" (prefixes: callers re-check
 * the full value against the entry); and the seqs of the key events. It is
 * written in WAL mode without fsync (synchronous=OFF): a crash of the agent
 * may lose its last transactions, never the log's, and index_sync() catches
 * up from the segments at the next start; an index that was being written
 * when the system went down (not closed cleanly, another boot id) is
 * rebuilt from them, as is a missing, unreadable or foreign one. A purge
 * removes the rows of the entries it purges (index_forget).
 *
 * Threads: two connections. The writer (index_sync at start, then the
 * indexer thread fed by index_add_records, which audit_write_batch in
 * audit-segment.c calls on the committer thread once a group's records
 * are durable) and the readers (every other function, from any thread;
 * serialized by a mutex inside). Implementation: index*.c, see
 * index-int.h. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INDEX_FILE "index.sqlite"

typedef struct agent_index agent_index;

/* index_open: opens or creates the index at path (the file need not
 * exist; an unreadable one is replaced, see index_sync). 0 and *ret (free
 * with index_close), -ENOMEM. */
int index_open(const char *path, agent_index **ret);
void index_close(agent_index *x);

/* index_sync: brings the index up to log_size entries, reading the segments
 * in the directory log_dir_fd (borrowed). Catches up from the last indexed
 * entry when the index is behind; rebuilds it from the segments when it is
 * missing, unreadable, of another schema, ahead of the log or not matching
 * it (its last entry is not where it says). A long catch-up or rebuild
 * reports progress on stderr and to systemd (EXTEND_TIMEOUT_USEC, STATUS).
 * Main thread, before the committer starts. 0, or -errno with *ret_error
 * set (the segments cannot be read). */
int index_sync(agent_index *x, int log_dir_fd, uint64_t log_size, char **ret_error);

/* index_distrust: before index_sync, which then rebuilds the index from the
 * segments whatever its state (a purge was interrupted: rows of entries it
 * removed may be left, and nothing in the segments names them any more). */
void index_distrust(agent_index *x);

/* index_add_records: queues every record in buf[0..len) (copied), a batch
 * written at byte offset `off` of segment seg_first, its first entry
 * first_seq, for the indexer thread (started by index_sync), which writes
 * all the batches queued at a time in one transaction. It waits only when
 * more than 32 MiB are queued. A failure (disk full, a damaged file) is
 * logged once and stops the indexing until the next start, which catches
 * up: signing never fails for the index's sake. 0, -EINVAL (not the next
 * seq), -EIO (the index stopped), -ENOMEM. */
int index_add_records(agent_index *x, uint64_t seg_first, uint64_t off, uint64_t first_seq, const uint8_t *buf,
                      size_t len);

/* index_forget: a purge is about to replace entry[0..n) (a committed,
 * indexed entry) by its stub: notes its rows (digest prefixes, principal
 * and key id) for removal. Nothing changes until index_forget_commit()
 * queues the removal for the indexer (after the purged segment is
 * durable), in order after the records queued before; index_forget_drop()
 * discards the notes (the purge failed). One purge at a time (the caller's
 * lock). index_forget: 0, -ENOMEM. index_forget_commit: 0, -EIO (the index
 * stopped: the rows stay until a rebuild; find re-checks every candidate
 * against the entry, and a stub never matches), -ENOMEM. */
int index_forget(agent_index *x, const uint8_t *entry, size_t n);
int index_forget_commit(agent_index *x);
void index_forget_drop(agent_index *x);

/* index_flush: waits until everything queued is written (or failed). */
void index_flush(agent_index *x);

/* index_size: entries indexed (the last one's seq + 1). It may lag the
 * committed entries by the batches queued: readers take the entries after
 * it from the segments (logreader_get reads on from the last indexed
 * entry; find and filtered exports scan that tail). */
uint64_t index_size(agent_index *x);

/* index_locate: the segment (first seq) and record offset of entry seq.
 * -ENOENT if seq is not indexed, -EIO when the index cannot be read. */
int index_locate(agent_index *x, uint64_t seq, uint64_t *ret_seg, uint64_t *ret_off);

/* index_time_window: a seq window [*ret_lo, *ret_hi) of [0, index_size())
 * outside which no entry has since_us <= time <= until_us (0 = open end),
 * by binary search on the entries' times (entries are stamped in seq order
 * under the log's lock: times only step back if the wall clock does;
 * callers filter the exact times anyway). */
void index_time_window(agent_index *x, int64_t since_us, int64_t until_us, uint64_t *ret_lo, uint64_t *ret_hi);

/* A query: candidates for entries with this digest (or annotation digest
 * value; by its first 8 bytes), principal, key id, in the seq window
 * [from, to). NULL / 0 fields do not restrict. */
typedef struct index_query {
        const uint8_t *digest;
        size_t digest_len;      /* 0, or >= 8 */
        const char *principal;
        const char *keyid;
        uint64_t from, to;
} index_query;

/* index_query_seqs: the next at most cap candidate seqs of q, ascending
 * (all restrictions hold but the digest's, which is a prefix match). Page
 * on with q->from = out[*ret_n - 1] + 1 while *ret_n == cap. 0 or -EIO. */
int index_query_seqs(agent_index *x, const index_query *q, uint64_t *out, size_t cap, size_t *ret_n);

/* index_key_events: the seqs of the key events (KEY_CREATE, _ROTATE,
 * _REVOKE, _DESTROY) at or after from, ascending, at most cap. 0 or -EIO. */
int index_key_events(agent_index *x, uint64_t from, uint64_t *out, size_t cap, size_t *ret_n);

/* A reader of entries from the segment files, one per export or query.
 * The caller reads only seqs below audit_committed(): those records are
 * complete on disk and never change. */
typedef struct agent_logreader agent_logreader;

/* logreader_new: reads the segments in the directory dir_fd (borrowed, must
 * stay open), locating entries through x (borrowed; NULL: sequential reads
 * from logreader_seek only). 0 and *ret (free with logreader_free),
 * -ENOMEM. */
int logreader_new(int dir_fd, agent_index *x, agent_logreader **ret);
void logreader_free(agent_logreader *r);

/* logreader_get: the bytes of entry seq. *ret points into the reader's
 * buffer, valid until the next call. Sequential calls cost one pread per
 * ~128 KiB. -ENOENT (not indexed), -EBADMSG (the record is damaged or has
 * another seq), or -errno from the file system. When ret_seg/ret_off are
 * not NULL, the record's segment and offset. */
int logreader_get(agent_logreader *r, uint64_t seq, const uint8_t **ret, size_t *ret_n);
int logreader_get_at(agent_logreader *r, uint64_t seq, const uint8_t **ret, size_t *ret_n, uint64_t *ret_seg,
                     uint64_t *ret_off);

/* logreader_seek: the next logreader_get(seq) reads the record at byte
 * offset off of segment seg_first, without asking the index. */
void logreader_seek(agent_logreader *r, uint64_t seq, uint64_t seg_first, uint64_t off);
