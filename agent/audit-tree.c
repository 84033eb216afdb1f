/* The Merkle tree at start, in bounded time: the right edge from the tiles
 * of the last published checkpoint (verified with the log key, checked
 * against its root), then only the entries after it; without usable tiles,
 * a rebuild from the whole log (with progress for systemd). */

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "audit-int.h"
#include "frame.h"
#include "log.h"
#include "note.h"
#include "record.h"

#define CHECKPOINT_MAX (64u * 1024u)
/* While replaying a long tail into the tree (a rebuild): complete tiles are
 * written out every so many entries, so memory stays bounded, and progress
 * is reported every REPLAY_PROGRESS entries. */
#define REPLAY_FLUSH (UINT64_C(1) << 16)
#define REPLAY_PROGRESS UINT64_C(1000000)

/* The checkpoint last published (publish_dir/checkpoint), verified with the
 * log key. 1 with its size and root; 0 when there is none that can be used
 * (missing, unreadable, not ours: said why); < 0 only for errors that stop
 * the start. */
static int load_published(agent_audit *a, uint64_t *ret_size, uint8_t ret_root[32]) {
        uint8_t *buf = NULL;
        size_t len = 0;
        char *body = NULL, *origin = NULL;
        int r = audit_read_file(a->pub_fd, PUBLISHED_CHECKPOINT, &buf, &len);
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
 * entry). The records were checked by audit_replay(). */
static int replay_tree(agent_audit *a, uint64_t from, char **ret_error) {
        struct dirent **list = NULL;
        uint64_t total = a->next_seq - from, flushed = from;
        bool loud = total >= REPLAY_PROGRESS;
        int n = scandir(a->dir, &list, audit_segment_filter, alphasort), r = 0, i0 = 0;
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
                r = audit_read_file(a->dir_fd, name, &buf, &len);
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
                                                 a->dir, name, len - c.len, audit_record_error(r));
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
int audit_tree_open(agent_audit *a, char **ret_error) {
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
