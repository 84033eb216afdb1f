/* In-memory indexes over the committed audit log, and a reader of entries
 * by sequence number (for export, find and proof: issue 5).
 *
 * The indexes are built while audit.c replays the segments at start
 * (index_add) and extended by its committer for every batch it writes
 * (index_add_records). They hold no entry bytes:
 *
 *   - a sparse position index: for every INDEX_STRIDE-th entry, the segment
 *     it is in (the segment's first seq), its byte offset there and its
 *     time. Reading entry s costs one lookup and a forward scan of fewer
 *     than INDEX_STRIDE records (one pread). Times give a seq window for
 *     --since/--until (entries are stamped in seq order under the log's
 *     lock, so times only step back if the wall clock does; find filters
 *     the exact times anyway);
 *   - a digest index: the first 8 bytes of every entry's digest and of
 *     every annotation value "sha256:HEX" / "sha384:HEX" -> seq (open
 *     addressing, 16 bytes a slot). Prefixes only: callers re-check the
 *     full value against the entry;
 *   - a principal index: per principal, the ascending seqs of its entries
 *     (8 bytes an entry).
 * About 40 bytes per signed entry in all (1M entries: ~40 MB, next to the
 * Merkle tree's 64 bytes an entry).
 *
 * Threads: index_add* from one writer (audit replay, then the committer);
 * every other function from any thread. One rwlock inside. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INDEX_STRIDE 64u

typedef struct agent_index agent_index;

/* index_new: an empty index (caller frees with index_free). 0 or -ENOMEM. */
int index_new(agent_index **ret);
void index_free(agent_index *x);

/* index_add: the record of entry `seq` (which must be the next one, i.e.
 * the number of entries added so far), whose entry bytes entry[0..n) start
 * at byte offset `off` (the record's start) of the segment whose first
 * entry is seg_first. 0, -EINVAL (not the next seq), -ENOMEM. Entry bytes
 * that do not parse are indexed by position only. */
int index_add(agent_index *x, uint64_t seg_first, uint64_t off, uint64_t seq, const uint8_t *entry, size_t n);

/* index_add_records: index_add for every record in buf[0..len), a batch
 * written at offset `off` of segment seg_first, its first entry first_seq. */
int index_add_records(agent_index *x, uint64_t seg_first, uint64_t off, uint64_t first_seq, const uint8_t *buf,
                      size_t len);

/* index_size: entries indexed so far. */
uint64_t index_size(agent_index *x);

/* index_locate: the indexed entry at or before seq: *ret_seq <= seq, its
 * segment (first seq) and record offset. -ENOENT if seq is not indexed. */
int index_locate(agent_index *x, uint64_t seq, uint64_t *ret_seq, uint64_t *ret_seg, uint64_t *ret_off);

/* index_time_window: a seq window [*ret_lo, *ret_hi) outside which no entry
 * has since_us <= time <= until_us (0 = open end), as far as the sampled
 * times tell (they assume a clock that never stepped back). */
void index_time_window(agent_index *x, int64_t since_us, int64_t until_us, uint64_t *ret_lo, uint64_t *ret_hi);

/* index_find_digest: the seqs (ascending, a new array the caller frees,
 * non-NULL even when empty) whose entry digest or an annotation digest value
 * shares the first 8 bytes of digest[0..n) (n >= 8). 0, -EINVAL, -ENOMEM. */
int index_find_digest(agent_index *x, const uint8_t *digest, size_t n, uint64_t **ret, size_t *ret_n);

/* index_principal_seqs: copies into out (capacity cap) the seqs of
 * principal's entries that lie in [from, to), ascending; *ret_n of them.
 * When *ret_n == cap there may be more: ask again from out[cap-1] + 1. */
void index_principal_seqs(agent_index *x, const char *principal, uint64_t from, uint64_t to, uint64_t *out,
                          size_t cap, size_t *ret_n);

/* What the index (and find) reads out of an entry without unpacking it
 * (protobuf wire format, bounds-checked). Pointers borrow the entry bytes;
 * strings are NOT NUL-terminated. */
typedef struct index_fields {
        uint64_t seq;
        int64_t time_us;
        const uint8_t *principal;
        size_t principal_len;
        const uint8_t *digest;
        size_t digest_len;
} index_fields;

/* index_scan_entry: fills f from an AuditEntry's bytes. For each annotation
 * value, calls on_value(ctx, value, len) if on_value is not NULL. 0 or
 * -EBADMSG (not protobuf wire format). */
int index_scan_entry(const uint8_t *p, size_t n, index_fields *f,
                     void (*on_value)(void *ctx, const uint8_t *v, size_t len), void *ctx);

/* index_digest_value: decodes an annotation value "sha256:HEX" (64 hex
 * digits) or "sha384:HEX" (96) into out (48 bytes of room); its length, or
 * 0 when v is not such a value. */
size_t index_digest_value(const uint8_t *v, size_t len, uint8_t out[48]);

/* A reader of committed entries from the segment files, one per export or
 * query. The caller reads only seqs below audit_committed(): those records
 * are complete on disk and never change. */
typedef struct agent_logreader agent_logreader;

/* logreader_new: reads the segments in the directory dir_fd (borrowed, must
 * stay open) through x (borrowed). 0 and *ret (free with logreader_free),
 * -ENOMEM. */
int logreader_new(int dir_fd, agent_index *x, agent_logreader **ret);
void logreader_free(agent_logreader *r);

/* logreader_get: the bytes of entry seq. *ret points into the reader's
 * buffer, valid until the next call. Sequential calls cost one pread per
 * ~128 KiB. -ENOENT (not indexed), -EBADMSG (the record is damaged or has
 * another seq), or -errno from the file system. */
int logreader_get(agent_logreader *r, uint64_t seq, const uint8_t **ret, size_t *ret_n);
