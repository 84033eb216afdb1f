/* The publisher thread: the committed state as C2SP tlog-tiles in
 * publish_dir (tiles, then the checkpoint that covers them, each atomically;
 * with publish_entries also the entry bundles, read back from the
 * segments). It never holds up the committer; a failure is said once and
 * retried with the next group. */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit-int.h"
#include "fdio.h"
#include "frame.h"
#include "log.h"
#include "record.h"

/* The publisher writes the newest committed state at most this often: the
 * groups in between are published together (their tiles and the last
 * checkpoint), so publication costs no more than a few fsyncs a second
 * whatever the signing rate. */
#define PUBLISH_INTERVAL_MS 200

static int publish_bundles(agent_audit *a, uint64_t m);

/* Under the lock (or before the committer runs): a copy of what to publish
 * for `size` (the tiles the tree holds below it, its partial tiles) and the
 * note of that size. */
int audit_publish_prepare(agent_audit *a, uint64_t size, proto_merkle_tiles **ret_tiles, char **ret_note) {
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

/* Without the lock: the entry bundles (publish_entries) and the tiles
 * first, then the checkpoint that covers them, each file atomically, then
 * the partial tiles of the size published before (a reader of the previous
 * checkpoint may have them still: they go only once a newer checkpoint is
 * in place). */
int audit_publish_write(agent_audit *a, const proto_merkle_tiles *b, const char *note, bool entries) {
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
void audit_publish_finish(agent_audit *a, proto_merkle_tiles *b, int r) {
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
        int r = audit_publish_prepare(a, size, &b, &note);
        pthread_mutex_unlock(&a->lock);
        if (r >= 0)
                r = audit_publish_write(a, b, note, a->publish_entries);
        free(note);
        pthread_mutex_lock(&a->lock);
        audit_publish_finish(a, b, r);
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
void *audit_publisher_main(void *arg) {
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
                a->pub_idle = true; /* only now does a commit wake us */
                while (a->committed == a->published && !a->pub_stop)
                        pthread_cond_wait(&a->pub_cond, &a->lock);
                a->pub_idle = false;
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

/* Publisher thread, without the lock, under bundle_lock: writes the entry
 * bundles up to entry m (the complete ones not written yet and the partial
 * one), reading the records back from the segments (they are durable: m <=
 * committed). The cursor (bundle_*) remembers where the first bundle not
 * yet complete starts, so each publication reads only the entries since
 * then. */
static int write_bundles(agent_audit *a, uint64_t m) {
        uint8_t *rec = NULL, *buf = NULL;
        size_t len = 0, cap = 0;
        unsigned count = 0;
        int fd = -1, r = 0;

        if (!a->bundle_known) {
                r = audit_segment_holding(a, a->bundle_seq, &a->bundle_seg);
                if (r < 0)
                        return r;
                a->bundle_off = 0;
                a->bundle_pos = a->bundle_seg;
                a->bundle_known = true;
        }
        uint64_t seg = a->bundle_seg, off = a->bundle_off, seq = a->bundle_pos;
        rec = malloc(PROTO_RECORD_MAX_ENTRY + PROTO_RECORD_OVERHEAD);
        fd = rec ? audit_open_segment_ro(a, seg) : -ENOMEM;
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
                        fd = audit_open_segment_ro(a, seg);
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

static int publish_bundles(agent_audit *a, uint64_t m) {
        pthread_mutex_lock(&a->bundle_lock);
        int r = write_bundles(a, m);
        pthread_mutex_unlock(&a->bundle_lock);
        return r;
}

int audit_publish_rebundle(agent_audit *a, uint64_t from, uint64_t to) {
        agent_logreader *rd = NULL;
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;
        int r = 0;

        if (!a->publish_entries || from > to)
                return 0;
        pthread_mutex_lock(&a->bundle_lock);
        /* Complete bundles below bundle_seq are written (this run's, or an
         * earlier run's); the ones after it, and the partial one, are
         * written from the segments as they now are. */
        uint64_t end = a->bundle_seq / PROTO_TILE_WIDTH;
        for (uint64_t N = from / PROTO_TILE_WIDTH; N <= to / PROTO_TILE_WIDTH && N < end && r >= 0; N++) {
                char path[PROTO_TILE_PATH_MAX];
                r = proto_tile_entries_path(N, PROTO_TILE_WIDTH, path, sizeof path);
                if (r < 0 || faccessat(a->pub_fd, path, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
                        continue; /* never published (a backfill to come writes it) */
                if (!rd)
                        r = logreader_new(a->dir_fd, a->index, &rd);
                len = 0;
                for (uint64_t seq = N * PROTO_TILE_WIDTH; seq < (N + 1) * PROTO_TILE_WIDTH && r >= 0; seq++) {
                        const uint8_t *entry;
                        size_t en;
                        r = logreader_get(rd, seq, &entry, &en);
                        if (r >= 0)
                                r = proto_tile_bundle_add(&buf, &len, &cap, entry, en);
                }
                if (r >= 0)
                        r = proto_tile_store_write_file(a->tiles, path, buf, len);
                if (r < 0)
                        log_warning("audit log: cannot rewrite the purged entry bundle %s/%s: %s", a->pub_dir, path,
                                    strerror(-r));
        }
        pthread_mutex_unlock(&a->bundle_lock);
        logreader_free(rd);
        free(buf);
        return r;
}
