/* C2SP tlog-tiles (https://c2sp.org/tlog-tiles): the on-disk and published
 * form of the audit log's Merkle tree (merkle.h).
 *
 * Tiles have height 8: tile L index N holds the 256 hashes of tree level 8L
 * (level 0: the leaf hashes) at indices [N*256, N*256 + 256), 32 bytes each,
 * concatenated. A partial tile (the right edge of a tree whose size at that
 * level is not a multiple of 256) holds the first W (1..255) of them. Paths:
 *
 *   tile/<L>/<N>          full tile
 *   tile/<L>/<N>.p/<W>    partial tile of width W
 *   tile/entries/<N>      entry bundle (the 256 entries of leaf tile N),
 *   tile/entries/<N>.p/<W> each entry a big-endian uint16 length + its bytes
 *
 * where <N> is written in groups of three decimal digits, zero padded, every
 * group but the last prefixed with "x": 1234067 -> x001/x234/067, 5 -> 005.
 *
 * The store writes every file atomically (a temporary file in the same
 * directory, fsync, rename, fsync of the directory): a reader (a web server
 * serving the directory) sees a whole file or none. Full tiles are immutable
 * once written. Functions return 0 or a negative errno; nothing prints.
 *
 * Threads: a store may be used from several threads; its cache has its own
 * lock. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

#define PROTO_TILE_HEIGHT 8u
#define PROTO_TILE_WIDTH 256u
#define PROTO_TILE_HASH_LEN 32u
#define PROTO_TILE_BYTES (PROTO_TILE_WIDTH * PROTO_TILE_HASH_LEN)
/* Enough for "tile/entries/" or "tile/63/", 7 groups of "x999/", ".p/255". */
#define PROTO_TILE_PATH_MAX 96u
/* Full tiles kept in the store's cache. */
#define PROTO_TILE_CACHE 64u
/* A tile with the subtrees above its hashes, as cached: the 256 hashes of
 * level 8L, then the 128 nodes of level 8L+1, ..., the 1 node of level
 * 8L+8 (the tile's root): node r, j (level 8L+r) is at PROTO_TILE_NODE(r, j). */
#define PROTO_TILE_NODES (2u * PROTO_TILE_WIDTH - 1u)
#define PROTO_TILE_NODE(r, j) (2u * PROTO_TILE_WIDTH - ((2u * PROTO_TILE_WIDTH) >> (r)) + (j))

/* proto_tile_path: the path of tile (level, index) of width hashes (1..256;
 * 256 is the full tile) into buf. 0, -EINVAL (level > 63, width out of
 * range), -ENOBUFS (len too small). */
int proto_tile_path(unsigned level, uint64_t index, unsigned width, char *buf, size_t len);

/* proto_tile_entries_path: the path of entry bundle index of width entries
 * (1..256). Same returns. */
int proto_tile_entries_path(uint64_t index, unsigned width, char *buf, size_t len);

/* proto_tile_partial_paths: the paths of the partial tiles of a tree of
 * size leaves (one per level whose count is not a multiple of 256),
 * comma-separated, into buf (truncated at a whole path when len is too
 * small; "" for none), for a message naming the tiles a wrong root
 * implicates. */
void proto_tile_partial_paths(uint64_t size, char *buf, size_t len);

typedef struct proto_tile_store proto_tile_store;

/* proto_tile_store_open: a store over the directory dir_fd (duplicated: the
 * caller keeps its fd). *ret is freed with proto_tile_store_free(). 0,
 * -errno. */
int proto_tile_store_open(int dir_fd, proto_tile_store **ret);

/* proto_tile_store_free: closes and frees s. Accepts NULL. */
void proto_tile_store_free(proto_tile_store *s);

/* proto_tile_store_read: reads tile (level, index) of width hashes into out
 * (width * 32 bytes). -ENOENT (no such file), -EBADMSG (the file is not
 * width * 32 bytes), -errno. Nothing is checked but the size: the caller
 * verifies the hashes (merkle.h does, against the level above). */
int proto_tile_store_read(proto_tile_store *s, unsigned level, uint64_t index, unsigned width,
                          uint8_t out[][PROTO_TILE_HASH_LEN]);

/* proto_tile_store_cached / proto_tile_store_cache_add: the bounded LRU
 * cache of full tiles with their nodes (PROTO_TILE_CACHE of them). cached
 * copies node `node` (< PROTO_TILE_NODES) of a cached tile into out (0) or
 * returns -ENOENT. cache_add stores a verified tile, evicting the least
 * recently used one. */
int proto_tile_store_cached(proto_tile_store *s, unsigned level, uint64_t index, size_t node,
                            uint8_t out[PROTO_TILE_HASH_LEN]);
void proto_tile_store_cache_add(proto_tile_store *s, unsigned level, uint64_t index,
                                const uint8_t nodes[PROTO_TILE_NODES][PROTO_TILE_HASH_LEN]);

/* proto_tile_store_write_file: writes len bytes at path (relative to the
 * store's directory, parents created mode 0755) atomically, file mode 0644.
 * 0, -errno. */
int proto_tile_store_write_file(proto_tile_store *s, const char *path, const uint8_t *data, size_t len);

/* proto_tile_store_write: proto_tile_store_write_file() of tile (level,
 * index) of width hashes. */
int proto_tile_store_write(proto_tile_store *s, unsigned level, uint64_t index, unsigned width,
                           const uint8_t hashes[][PROTO_TILE_HASH_LEN]);

/* proto_tile_store_remove_partial: removes the partial tile (level, index,
 * width < 256) and, if it is then empty, its "<N>.p" directory. A missing
 * file is not an error. 0, -errno. */
int proto_tile_store_remove_partial(proto_tile_store *s, unsigned level, uint64_t index, unsigned width);

/* proto_tile_store_remove_stale: after the tiles of tree size new_size are
 * written (and a checkpoint for it), removes the partial tiles of tree size
 * old_size that new_size does not use (and their emptied "<N>.p"
 * directories); with entries, the partial entry bundle too. 0 or the first
 * -errno (the rest is still tried). */
int proto_tile_store_remove_stale(proto_tile_store *s, uint64_t old_size, uint64_t new_size, int entries);

/* proto_tile_store_sweep: what a crash mid-publication can leave beside the
 * tiles of a tree of `size` (the published checkpoint's): ".tmp-*"
 * temporaries in the directories of each level's last full tile and edge
 * tile (and of the entry bundles when entries), partial tiles of other
 * widths, and a ".tmp-checkpoint". Bounded: a few directories per level.
 * 0 or the first -errno (the rest is still tried). */
int proto_tile_store_sweep(proto_tile_store *s, uint64_t size, int entries);

/* proto_tile_bundle_add: appends one entry to an entry bundle being built in
 * *buf (len bytes used, cap allocated; grown with realloc, the caller
 * free()s): a big-endian uint16 length, then the entry. 0, -EMSGSIZE (an
 * entry over 65535 bytes cannot be in a bundle), -ENOMEM. */
int proto_tile_bundle_add(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *entry, size_t n);

/* proto_tile_bundle_next: the next entry of an entry bundle (untrusted
 * bytes at c): *ret borrows it from c's buffer. 0, -ENODATA at the end,
 * -EBADMSG (a length that runs past the end, or an empty entry). */
int proto_tile_bundle_next(proto_cursor *c, const uint8_t **ret, size_t *ret_n);

/* proto_tile_store_read_bundle: entry bundle index of width entries
 * (1..256) into *ret (malloc()ed, *ret_len bytes; the caller free()s).
 * -ENOENT (no such file), -EBADMSG (not a regular file, or longer than width
 * entries of 65535 bytes), -ENOMEM, -errno. Nothing is checked but the
 * size. */
int proto_tile_store_read_bundle(proto_tile_store *s, uint64_t index, unsigned width, uint8_t **ret,
                                 size_t *ret_len);

/* proto_tile_store_set_durable: true (the default): every write is fsynced
 * (file and directory) before it returns. false, for a bulk rebuild: writes
 * are atomic (rename) but not synced; call proto_tile_store_sync() at the
 * end. */
void proto_tile_store_set_durable(proto_tile_store *s, int durable);

/* proto_tile_store_sync: syncfs() of the store's file system. 0, -errno. */
int proto_tile_store_sync(proto_tile_store *s);

/* proto_tile_store_set_bad / proto_tile_store_bad: the path of the last tile
 * found not to match the tree (merkle.h sets it), "" if none. The string
 * lives as long as the store and changes on the next set_bad. */
void proto_tile_store_set_bad(proto_tile_store *s, unsigned level, uint64_t index, unsigned width);
const char *proto_tile_store_bad(proto_tile_store *s);
