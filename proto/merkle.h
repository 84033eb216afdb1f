/* RFC 9162 (RFC 6962) Merkle tree hashing for the audit log, shared by the
 * agent (which appends and proves) and the offline verifiers (which check).
 *
 * Hashes (RFC 9162 §2.1.1, SHA-256):
 *   leaf hash = SHA-256(0x00 ‖ entry bytes)
 *   node hash = SHA-256(0x01 ‖ left ‖ right)
 *   MTH({})   = SHA-256("")
 *   MTH(D[n]) splits at k, the largest power of two smaller than n.
 *
 * Storage of proto_merkle_tree: the C2SP tlog-tiles layout (tiles.h). The
 * tree keeps the hashes of levels 0, 8, 16, ... in tiles of 256 (level k
 * hash i = MTH(D[i*2^k : (i+1)*2^k])); a hash of level 8L + r is folded
 * from 2^r hashes of level 8L in one tile (at most 127 node hashes), so the
 * roots of any past size and all proofs cost O(log n) tile reads and hash
 * operations, never a pass over the log. Appending costs one node hash per
 * leaf amortized. In memory the tree holds, per tile level, the incomplete
 * tile of the right edge (at most 255 hashes) and the complete tiles not yet
 * written: without a store (proto_merkle_tree_new) that is every tile
 * (about 33 bytes per leaf); over a store (proto_merkle_tree_open_tiles) the
 * caller writes complete tiles out (proto_merkle_tree_tiles_at, ..._write,
 * ..._written) and memory stays O(log n) plus the store's bounded cache.
 * A complete tile read back from the store is checked against its hash in
 * the level above before use (that one likewise, up to the right edge):
 * a damaged tile fails the read with -EBADMSG and is named by
 * proto_tile_store_bad(). The right edge itself is checked by the caller,
 * against a signed root.
 *
 * Sizes and indices are uint64_t (log sequence numbers). Errors are negative
 * errno values; out-parameters are written only on success. No function
 * keeps a pointer to its arguments after it returns.
 *
 * Threads: no locking inside. The caller serializes proto_merkle_tree_append()
 * and proto_merkle_tree_tiles_written() against everything else on the same
 * tree; the const functions only read the tree (each uses its own hashing
 * context; the store's cache has its own lock) and may run concurrently with
 * each other. proto_merkle_tiles_write() touches only the batch and the
 * store, so it may run without the caller's lock. The standalone functions (hashes, verify) share no state. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tiles.h"

#define PROTO_MERKLE_HASH_LEN 32u

/* Capacity, in hashes, of every proof and range array the tree fills. A tree
 * holds fewer than 2^59 leaves (32 bytes each must fit in memory), so an
 * inclusion path has at most 59 entries and a consistency proof at most 60
 * (RFC 9162 §2.1.3.1, §2.1.4.1: one per level, plus MTH of the old tree);
 * each side of a compact range has at most 64 for any size (see below). */
#define PROTO_MERKLE_MAX_PROOF 64u

/* proto_merkle_leaf_hash: out = SHA-256(0x00 ‖ entry[0..len)). entry may be
 * NULL when len is 0. 0, -EINVAL (NULL entry with len > 0), or -ENOMEM/-EIO
 * when libcrypto fails: check it, a leaf hash is not optional. */
int proto_merkle_leaf_hash(const uint8_t *entry, size_t len, uint8_t out[PROTO_MERKLE_HASH_LEN]);

/* proto_merkle_node_hash: out = SHA-256(0x01 ‖ l ‖ r). out may alias l or r.
 * 0, or -ENOMEM/-EIO when libcrypto fails. */
int proto_merkle_node_hash(const uint8_t l[PROTO_MERKLE_HASH_LEN], const uint8_t r[PROTO_MERKLE_HASH_LEN],
                           uint8_t out[PROTO_MERKLE_HASH_LEN]);

/* The incremental tree of the agent. Opaque; see the storage note above. */
typedef struct proto_merkle_tree proto_merkle_tree;

/* proto_merkle_tree_new: an empty tree. The caller owns *ret and frees it
 * with proto_merkle_tree_free(). 0 or -ENOMEM. */
int proto_merkle_tree_new(proto_merkle_tree **ret);

/* proto_merkle_tree_free: frees t and everything it holds. Accepts NULL. */
void proto_merkle_tree_free(proto_merkle_tree *t);

/* proto_merkle_tree_append: appends one leaf hash (already
 * proto_merkle_leaf_hash()ed; copied). 0, or -ENOMEM (also when the tree
 * cannot grow further) or -EIO; on failure the tree is unchanged. */
int proto_merkle_tree_append(proto_merkle_tree *t, const uint8_t leaf_hash[PROTO_MERKLE_HASH_LEN]);

/* proto_merkle_tree_append_entry: proto_merkle_leaf_hash() of entry[0..len)
 * then proto_merkle_tree_append(), with the tree's own hashing context (a
 * replay of millions of entries saves a context per leaf). Same returns. */
int proto_merkle_tree_append_entry(proto_merkle_tree *t, const uint8_t *entry, size_t len);

/* proto_merkle_tree_size: the number of leaves. */
uint64_t proto_merkle_tree_size(const proto_merkle_tree *t);

/* proto_merkle_tree_root: MTH of all leaves; SHA-256("") for an empty tree
 * (RFC 9162 §2.1.1). 0, or -ENOMEM/-EIO; over a store also the errors of
 * reading a tile (-EBADMSG: damaged, named by proto_tile_store_bad()), as
 * for every function below that reads the tree. */
int proto_merkle_tree_root(const proto_merkle_tree *t, uint8_t out[PROTO_MERKLE_HASH_LEN]);

/* proto_merkle_tree_open_tiles: a tree of size leaves over store
 * (borrowed: free the tree before the store): the complete tiles stay in the
 * store, the right edge is read from its partial tiles for that size. size
 * 0 is an empty tree. Nothing is verified yet: the caller compares
 * proto_merkle_tree_root_at(size) with a signed root, which covers the
 * partial tiles, then calls proto_merkle_tree_check_tiles(). 0, -ENOENT (a
 * partial tile is missing), -EBADMSG (a partial tile has the wrong length),
 * -EINVAL, -ENOMEM; the tile is named by proto_tile_store_bad(). */
int proto_merkle_tree_open_tiles(proto_tile_store *store, uint64_t size, proto_merkle_tree **ret);

/* proto_merkle_tree_check_tiles: reads, and so checks against the level
 * above, the last complete tile of each level that is in the store (the ones
 * a crash could have left short). 0 (also without a store), -ENOENT,
 * -EBADMSG (named by proto_tile_store_bad()), -errno. */
int proto_merkle_tree_check_tiles(const proto_merkle_tree *t);

/* proto_merkle_tree_check_all_tiles: reads, and so checks against the level
 * above, every complete tile of every level below the tree's size (an
 * offline verifier of a published directory: with the root of the tree
 * compared to a signed root first, every tile is then proven). Only reads
 * the store. 0 (also without a store), -ENOENT (a tile is missing),
 * -EBADMSG (named by proto_tile_store_bad()), -errno. */
int proto_merkle_tree_check_all_tiles(const proto_merkle_tree *t);

/* A batch of tiles to write: the complete tiles the tree still holds that
 * lie below size m, and the partial tile of each level for size m. */
typedef struct proto_merkle_tiles proto_merkle_tiles;

/* proto_merkle_tree_tiles_at: copies that batch for m <= size into *ret
 * (freed with proto_merkle_tiles_free()). 0, -EINVAL, -ENOMEM, or a
 * store read error. */
int proto_merkle_tree_tiles_at(const proto_merkle_tree *t, uint64_t m, proto_merkle_tiles **ret);

/* proto_merkle_tiles_write: writes the batch into s (tiles.h, atomic per
 * file), complete tiles first. 0 or the first -errno. */
int proto_merkle_tiles_write(const proto_merkle_tiles *b, proto_tile_store *s);

/* proto_merkle_tiles_size: the m the batch was made for. */
uint64_t proto_merkle_tiles_size(const proto_merkle_tiles *b);

/* proto_merkle_tree_tiles_written: after a successful write, drops from
 * memory the complete tiles of the batch (a tree without a store keeps
 * everything). */
void proto_merkle_tree_tiles_written(proto_merkle_tree *t, const proto_merkle_tiles *b);

/* proto_merkle_tree_memory: bytes the tree holds (its right edge and the
 * complete tiles not written out yet); the store's cache is not counted. */
size_t proto_merkle_tree_memory(const proto_merkle_tree *t);

/* proto_merkle_tiles_free: accepts NULL. */
void proto_merkle_tiles_free(proto_merkle_tiles *b);

/* proto_merkle_tree_root_at: MTH(D[0:m]), the root the tree had at size m.
 * 0, -EINVAL if m > size, -ENOMEM/-EIO. */
int proto_merkle_tree_root_at(const proto_merkle_tree *t, uint64_t m, uint8_t out[PROTO_MERKLE_HASH_LEN]);

/* proto_merkle_tree_inclusion_proof: PATH(index, D[0:m]) of RFC 9162
 * §2.1.3.1, leaf-to-root order, into ret_proof (capacity
 * PROTO_MERKLE_MAX_PROOF) with *ret_n entries (0 when m is 1). 0, -EINVAL if
 * index >= m or m > size, -ENOMEM/-EIO. */
int proto_merkle_tree_inclusion_proof(const proto_merkle_tree *t, uint64_t index, uint64_t m,
                                      uint8_t ret_proof[][PROTO_MERKLE_HASH_LEN], size_t *ret_n);

/* proto_merkle_tree_consistency_proof: PROOF(m, D[0:n]) of RFC 9162
 * §2.1.4.1, into ret_proof (capacity PROTO_MERKLE_MAX_PROOF) with *ret_n
 * entries. The RFC defines it for 0 < m < n; for m == 0 and m == n the proof
 * is empty (nothing to prove), as proto_merkle_verify_consistency() expects.
 * 0, -EINVAL if m > n or n > size, -ENOMEM/-EIO. */
int proto_merkle_tree_consistency_proof(const proto_merkle_tree *t, uint64_t m, uint64_t n,
                                        uint8_t ret_proof[][PROTO_MERKLE_HASH_LEN], size_t *ret_n);

/* Compact range proof: ties the leaves [from, to) of a tree of size m to
 * MTH(D[0:m]) without the other leaves (the audit export of a partial range).
 *
 *   left  = the hashes of the complete aligned subtrees that cover [0, from),
 *           largest first: one per bit set in `from`, from the highest bit
 *           down. A subtree of 2^k leaves starting at p is MTH(D[p:p+2^k]).
 *           So n_left = popcount(from).
 *   right = walk p from `to`: while p < m and p + lowbit(p) <= m (lowbit(p)
 *           = the largest power of two dividing p), emit MTH(D[p : p +
 *           lowbit(p)]) and advance p by lowbit(p) (the sizes grow); then, if
 *           p < m, emit one last hash MTH(D[p:m]), the right edge of the tree
 *           (complete or not). n_right follows from (to, m) alone.
 *
 * A verifier holding the leaf hashes of [from, to) recomputes the root with
 * a stack of (size, hash) entries, sizes strictly decreasing from bottom to
 * top:
 *   1. push each left hash with its size (the bits of `from`, high to low);
 *   2. push each leaf hash with size 1, then each right hash but the edge
 *      with its size lowbit(p); a push first merges while the top has the
 *      same size: (s, a) under (s, b) becomes (2s, node_hash(a, b));
 *   3. fold: r = the edge hash if there is one, else pop the top; then
 *      while the stack is not empty, r = node_hash(pop, r).
 *   r must equal MTH(D[0:m]). The fold is RFC 9162's split at the largest
 *   power of two: the stack then holds the complete subtrees for the bits
 *   of the covered size, largest first.
 *
 * Example, m = 13, [from, to) = [5, 7): left = MTH(D[0:4]), MTH(D[4:5]);
 * right = MTH(D[7:8]) (p = 7, lowbit 1), then p = 8, 8 + 8 > 13, edge
 * MTH(D[8:13]). The stack runs (4)(1) → leaf 5 merges to (4)(2) → leaf 6:
 * (4)(2)(1) → D[7:8] merges up to (8) → fold r = node_hash(MTH(D[0:8]),
 * MTH(D[8:13])) = MTH(D[0:13]).
 *
 * Both sides have at most 64 hashes for any tree of fewer than 2^64 leaves. */

/* proto_merkle_tree_range_proof: left/right hashes (capacity
 * PROTO_MERKLE_MAX_PROOF each) of the compact range proof for [from, to) in
 * the tree of size m, as defined above. 0, -EINVAL unless from < to <= m <=
 * size, -ENOMEM/-EIO. */
int proto_merkle_tree_range_proof(const proto_merkle_tree *t, uint64_t from, uint64_t to, uint64_t m,
                                  uint8_t ret_left[][PROTO_MERKLE_HASH_LEN], size_t *ret_n_left,
                                  uint8_t ret_right[][PROTO_MERKLE_HASH_LEN], size_t *ret_n_right);

/* Verification for offline verifiers (no tree). All return 0 when the proof
 * holds, -EBADMSG when it does not (wrong hash, wrong number of proof
 * entries), -EINVAL for impossible arguments, -ENOMEM/-EIO when libcrypto
 * fails. Proof arrays are read only; n counts hashes. */

/* proto_merkle_verify_inclusion: RFC 9162 §2.1.3.2 for leaf_hash at index in
 * the tree of tree_size leaves whose root is root. -EINVAL if index >=
 * tree_size (this covers tree_size 0). */
int proto_merkle_verify_inclusion(const uint8_t leaf_hash[PROTO_MERKLE_HASH_LEN], uint64_t index,
                                  uint64_t tree_size, const uint8_t proof[][PROTO_MERKLE_HASH_LEN], size_t n,
                                  const uint8_t root[PROTO_MERKLE_HASH_LEN]);

/* proto_merkle_verify_consistency: RFC 9162 §2.1.4.2 that the tree of size m
 * with root root_m is a prefix of the tree of size n with root root_n.
 * Outside the RFC's 0 < m < n: m == n holds only with an empty proof and
 * root_m == root_n; m == 0 holds only with an empty proof and root_m ==
 * SHA-256("") (every tree extends the empty one). -EINVAL if m > n. */
int proto_merkle_verify_consistency(uint64_t m, uint64_t n, const uint8_t root_m[PROTO_MERKLE_HASH_LEN],
                                    const uint8_t root_n[PROTO_MERKLE_HASH_LEN],
                                    const uint8_t proof[][PROTO_MERKLE_HASH_LEN], size_t n_proof);

/* proto_merkle_verify_range: recomputes MTH(D[0:m]) from the to - from leaf
 * hashes of [from, to) (an array of to - from) and the compact range proof
 * (see above) and compares it with root. -EINVAL unless from < to <= m and
 * the arrays are there; -EBADMSG also when n_left or n_right is not the
 * count (from, to, m) implies. */
int proto_merkle_verify_range(uint64_t from, uint64_t to, uint64_t m,
                              const uint8_t leaf_hashes[][PROTO_MERKLE_HASH_LEN],
                              const uint8_t left[][PROTO_MERKLE_HASH_LEN], size_t n_left,
                              const uint8_t right[][PROTO_MERKLE_HASH_LEN], size_t n_right,
                              const uint8_t root[PROTO_MERKLE_HASH_LEN]);
