/* RFC 9162 Merkle tree hashing: see merkle.h for the API, the storage choice
 * and the compact range format. */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "merkle.h"
#include "tiles.h"

#define HASH_LEN PROTO_MERKLE_HASH_LEN

/* Level k holds subtrees of 2^k leaves; a size_t count of leaves has at most
 * 64 bits, so 64 levels always suffice. */
#define MAX_LEVELS 64u

/* MTH({}) = SHA-256 of the empty string (RFC 9162 §2.1.1). */
static const uint8_t empty_root[HASH_LEN] = {
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
        0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
};

/* RFC 9162 §2.1.1 domain separation: leaves and interior nodes can never
 * hash alike. */
#define PREFIX_LEAF 0x00
#define PREFIX_NODE 0x01

/* One SHA-256 implementation fetched once and one context reused for every
 * hash of an operation: several times faster than a one-shot call per
 * 65-byte node, which matters when a large log is rebuilt at start. */
typedef struct hasher {
        EVP_MD *md;
        EVP_MD_CTX *ctx;
} hasher;

static void hasher_done(hasher *h) {
        EVP_MD_CTX_free(h->ctx);
        EVP_MD_free(h->md);
        h->ctx = NULL;
        h->md = NULL;
}

static int hasher_init(hasher *h) {
        h->md = EVP_MD_fetch(NULL, "SHA256", NULL);
        h->ctx = EVP_MD_CTX_new();
        if (!h->md || !h->ctx) {
                hasher_done(h);
                return -ENOMEM;
        }
        return 0;
}

/* out = SHA-256(prefix ‖ a ‖ b), written only on success. out may alias a
 * or b: the inputs are consumed before the digest is copied out. */
static int hasher_digest(hasher *h, uint8_t prefix, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                         uint8_t out[HASH_LEN]) {
        uint8_t md[EVP_MAX_MD_SIZE];
        unsigned len = 0;

        if (EVP_DigestInit_ex2(h->ctx, h->md, NULL) != 1 || EVP_DigestUpdate(h->ctx, &prefix, 1) != 1)
                return -EIO;
        if (alen > 0 && EVP_DigestUpdate(h->ctx, a, alen) != 1)
                return -EIO;
        if (blen > 0 && EVP_DigestUpdate(h->ctx, b, blen) != 1)
                return -EIO;
        if (EVP_DigestFinal_ex(h->ctx, md, &len) != 1 || len != HASH_LEN)
                return -EIO;
        memcpy(out, md, HASH_LEN);
        return 0;
}

static int hasher_node(hasher *h, const uint8_t l[HASH_LEN], const uint8_t r[HASH_LEN], uint8_t out[HASH_LEN]) {
        return hasher_digest(h, PREFIX_NODE, l, HASH_LEN, r, HASH_LEN, out);
}

int proto_merkle_leaf_hash(const uint8_t *entry, size_t len, uint8_t out[PROTO_MERKLE_HASH_LEN]) {
        hasher h;
        int r;

        if (!entry && len > 0)
                return -EINVAL;
        r = hasher_init(&h);
        if (r < 0)
                return r;
        r = hasher_digest(&h, PREFIX_LEAF, entry, len, NULL, 0, out);
        hasher_done(&h);
        return r;
}

int proto_merkle_node_hash(const uint8_t l[PROTO_MERKLE_HASH_LEN], const uint8_t r[PROTO_MERKLE_HASH_LEN],
                           uint8_t out[PROTO_MERKLE_HASH_LEN]) {
        hasher h;
        int ret;

        ret = hasher_init(&h);
        if (ret < 0)
                return ret;
        ret = hasher_node(&h, l, r, out);
        hasher_done(&h);
        return ret;
}

/* Bit helpers; x > 0 where it matters. */
static unsigned log2_floor(uint64_t x) {
        assert(x > 0);
        return 63u - (unsigned) __builtin_clzll(x);
}

static uint64_t lowbit(uint64_t x) {
        return x & (~x + 1);
}

/* RFC 9162 §2.1.1: k is the largest power of two smaller than n (n >= 2). */
static uint64_t split_point(uint64_t n) {
        assert(n >= 2);
        return UINT64_C(1) << log2_floor(n - 1);
}

/* Storage (merkle.h): the levels 0, 8, 16, ... of the tree, in tiles of 256
 * hashes (tiles.h). Tile level L index N holds level-8L hashes [N*256,
 * N*256 + 256), where the level-k hash i is MTH(D[i*2^k : (i+1)*2^k]). Each
 * tile the tree holds also keeps the 255 nodes above its hashes (levels
 * 8L+1 .. 8L+8, PROTO_TILE_NODE), so every stored hash is a lookup. Per tile
 * level, the tree holds the incomplete tile (the right edge: (size >> 8L) %
 * 256 hashes, and the nodes they complete) and the complete tiles not handed
 * to the store yet (all of them when there is no store). */
#define TILE_W PROTO_TILE_WIDTH
#define TILE_LEVELS 8u /* 8 * 8 = 64 levels */
#define NODE PROTO_TILE_NODE

typedef uint8_t tile_nodes[PROTO_TILE_NODES][HASH_LEN];

typedef struct tile_level {
        tile_nodes edge;     /* the incomplete tile */
        tile_nodes **full;   /* complete tiles [first, first + n) in memory */
        uint64_t first;
        size_t n, cap;
} tile_level;

struct proto_merkle_tree {
        uint64_t size;
        tile_level lv[TILE_LEVELS];
        proto_tile_store *store; /* borrowed; NULL: memory only */
        hasher hasher;           /* for append only, so const readers share nothing */
};

static uint64_t level_count(uint64_t size, unsigned L) {
        return 8 * L >= 64 ? 0 : size >> (8 * L);
}

static int tree_alloc(proto_tile_store *store, proto_merkle_tree **ret) {
        proto_merkle_tree *t;
        int r;

        t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        r = hasher_init(&t->hasher);
        if (r < 0) {
                free(t);
                return r;
        }
        t->store = store;
        *ret = t;
        return 0;
}

int proto_merkle_tree_new(proto_merkle_tree **ret) {
        return tree_alloc(NULL, ret);
}

void proto_merkle_tree_free(proto_merkle_tree *t) {
        if (!t)
                return;
        for (size_t L = 0; L < TILE_LEVELS; L++) {
                for (size_t i = 0; i < t->lv[L].n; i++)
                        free(t->lv[L].full[i]);
                free(t->lv[L].full);
        }
        hasher_done(&t->hasher);
        free(t);
}

uint64_t proto_merkle_tree_size(const proto_merkle_tree *t) {
        return t->size;
}

/* Puts hash w of a tile and hashes the nodes it completes (at most 8). */
static int tile_put(hasher *h, tile_nodes tile, unsigned w, const uint8_t hash[HASH_LEN]) {
        memcpy(tile[w], hash, HASH_LEN);
        for (unsigned r = 1; r <= 8 && ((w + 1) & ((1u << r) - 1)) == 0; r++) {
                unsigned j = ((w + 1) >> r) - 1;
                int ret = hasher_node(h, tile[NODE(r - 1, 2 * j)], tile[NODE(r - 1, 2 * j + 1)], tile[NODE(r, j)]);
                if (ret < 0)
                        return ret;
        }
        return 0;
}

/* The nodes of a tile whose first w hashes are set. */
static int tile_complete_nodes(hasher *h, tile_nodes tile, unsigned w) {
        for (unsigned r = 1; r <= 8; r++)
                for (unsigned j = 0; (j + 1) << r <= w; j++) {
                        int ret = hasher_node(h, tile[NODE(r - 1, 2 * j)], tile[NODE(r - 1, 2 * j + 1)],
                                              tile[NODE(r, j)]);
                        if (ret < 0)
                                return ret;
                }
        return 0;
}

int proto_merkle_tree_append(proto_merkle_tree *t, const uint8_t leaf_hash[PROTO_MERKLE_HASH_LEN]) {
        tile_nodes *done[TILE_LEVELS] = { NULL };
        unsigned L, top;
        int r = 0;

        if (t->size >= (UINT64_C(1) << 62))
                return -ENOMEM;
        /* The new leaf completes one tile per level whose count reaches a
         * multiple of 256: levels 0 .. top-1, and lands in the edge of level
         * top. Allocate first, then write the edges only past their valid
         * width, so a failure leaves the tree as it was. */
        top = (unsigned) __builtin_ctzll(t->size + 1) / 8;
        for (L = 0; L < top; L++) {
                tile_level *lv = &t->lv[L];

                if (lv->n == lv->cap) {
                        size_t cap = lv->cap ? lv->cap * 2 : 4;
                        void *p = realloc(lv->full, cap * sizeof *lv->full);
                        if (!p) {
                                r = -ENOMEM;
                                goto fail;
                        }
                        lv->full = p;
                        lv->cap = cap;
                }
                done[L] = malloc(sizeof(tile_nodes));
                if (!done[L]) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        for (L = 0; L <= top && L < TILE_LEVELS; L++) {
                const uint8_t *up = L == 0 ? leaf_hash : t->lv[L - 1].edge[NODE(8, 0)];
                r = tile_put(&t->hasher, t->lv[L].edge, (unsigned) (level_count(t->size, L) % TILE_W), up);
                if (r < 0)
                        goto fail;
        }
        for (L = 0; L < top; L++) {
                tile_level *lv = &t->lv[L];
                if (lv->n == 0)
                        lv->first = level_count(t->size, L) / TILE_W;
                memcpy(*done[L], lv->edge, sizeof(tile_nodes));
                lv->full[lv->n++] = done[L];
        }
        t->size++;
        return 0;
fail:
        for (L = 0; L < TILE_LEVELS; L++)
                free(done[L]);
        return r;
}

int proto_merkle_tree_append_entry(proto_merkle_tree *t, const uint8_t *entry, size_t len) {
        uint8_t leaf[HASH_LEN];
        int r;

        if (!entry && len > 0)
                return -EINVAL;
        r = hasher_digest(&t->hasher, PREFIX_LEAF, entry, len, NULL, 0, leaf);
        if (r < 0)
                return r;
        return proto_merkle_tree_append(t, leaf);
}

static int node_at(const proto_merkle_tree *t, hasher *h, unsigned L, unsigned r, uint64_t j, uint8_t out[HASH_LEN]);

/* A complete tile read from the store is checked against its hash one
 * level up (itself checked the same way, up to the right edge, which the
 * caller checks against a signed root) before it is used or cached. */
static int load_tile(const proto_merkle_tree *t, hasher *h, unsigned L, uint64_t N, tile_nodes tile) {
        uint8_t want[HASH_LEN];
        int r;

        if (!t->store)
                return -ENOENT;
        r = proto_tile_store_read(t->store, L, N, TILE_W, tile);
        if (r == -EBADMSG)
                proto_tile_store_set_bad(t->store, L, N, TILE_W);
        if (r < 0)
                return r;
        if (L + 1 >= TILE_LEVELS)
                return -EBADMSG;
        r = node_at(t, h, L + 1, 0, N, want);
        if (r >= 0)
                r = tile_complete_nodes(h, tile, TILE_W);
        if (r < 0)
                return r;
        if (memcmp(tile[NODE(8, 0)], want, HASH_LEN) != 0) {
                proto_tile_store_set_bad(t->store, L, N, TILE_W);
                return -EBADMSG;
        }
        proto_tile_store_cache_add(t->store, L, N, (const uint8_t (*)[HASH_LEN]) tile);
        return 0;
}

/* The level-(8L + r) hash j (r < 8), which must be below the size. */
static int node_at(const proto_merkle_tree *t, hasher *h, unsigned L, unsigned r, uint64_t j, uint8_t out[HASH_LEN]) {
        const tile_level *lv = &t->lv[L];
        uint64_t N = j >> (8 - r), count = level_count(t->size, L);
        size_t node = NODE(r, (size_t) (j & ((TILE_W >> r) - 1)));
        tile_nodes *tile;
        int ret;

        assert(L < TILE_LEVELS && r < 8 && (j + 1) << r <= count);
        if (N == count / TILE_W) {
                memcpy(out, lv->edge[node], HASH_LEN);
                return 0;
        }
        if (N >= lv->first && N - lv->first < lv->n) {
                memcpy(out, (*lv->full[N - lv->first])[node], HASH_LEN);
                return 0;
        }
        if (!t->store)
                return -ENOENT;
        if (proto_tile_store_cached(t->store, L, N, node, out) == 0)
                return 0;
        tile = malloc(sizeof *tile);
        if (!tile)
                return -ENOMEM;
        ret = load_tile(t, h, L, N, *tile);
        if (ret >= 0)
                memcpy(out, (*tile)[node], HASH_LEN);
        free(tile);
        return ret;
}

/* MTH(D[start : start + 2^k]) of a complete, aligned subtree. */
static int perfect(const proto_merkle_tree *t, hasher *h, unsigned k, uint64_t start, uint8_t out[HASH_LEN]) {
        assert(k < 64 && start % (UINT64_C(1) << k) == 0);
        return node_at(t, h, k / 8, k % 8, start >> k, out);
}

/* MTH(D[s:e]) for s < e <= size where s is a multiple of the smallest power
 * of two >= e - s: every subtree of the RFC 9162 §2.1.1 recursion has that
 * shape. D[s:e] is then the complete subtrees for the bits of e - s, largest
 * first, and MTH folds them from the right, since each split takes the
 * largest power of two smaller than what remains. */
static int range_root(const proto_merkle_tree *t, hasher *h, uint64_t s, uint64_t e, uint8_t out[HASH_LEN]) {
        uint8_t chunks[MAX_LEVELS][HASH_LEN];
        uint64_t len = e - s, p = s;
        size_t n = 0;
        int r;

        assert(s < e);
        for (unsigned k = log2_floor(len) + 1; k-- > 0;) {
                if (!(len & (UINT64_C(1) << k)))
                        continue;
                r = perfect(t, h, k, p, chunks[n++]);
                if (r < 0)
                        return r;
                p += UINT64_C(1) << k;
        }
        memcpy(out, chunks[n - 1], HASH_LEN);
        for (size_t i = n - 1; i-- > 0;) {
                r = hasher_node(h, chunks[i], out, out);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- The tree over a tile store (merkle.h) ---- */

int proto_merkle_tree_open_tiles(proto_tile_store *store, uint64_t size, proto_merkle_tree **ret) {
        proto_merkle_tree *t = NULL;
        int r;

        if (!store || size >= (UINT64_C(1) << 62))
                return -EINVAL;
        r = tree_alloc(store, &t);
        if (r < 0)
                return r;
        t->size = size;
        for (unsigned L = 0; L < TILE_LEVELS; L++) {
                uint64_t count = level_count(size, L);
                unsigned w = (unsigned) (count % TILE_W);

                t->lv[L].first = count / TILE_W;
                if (w == 0)
                        continue;
                r = proto_tile_store_read(store, L, count / TILE_W, w, t->lv[L].edge);
                if (r == -EBADMSG || r == -ENOENT)
                        proto_tile_store_set_bad(store, L, count / TILE_W, w);
                if (r >= 0)
                        r = tile_complete_nodes(&t->hasher, t->lv[L].edge, w);
                if (r < 0) {
                        proto_merkle_tree_free(t);
                        return r;
                }
        }
        *ret = t;
        return 0;
}

/* Reads (load_tile checks) the complete tiles of every level from the
 * store: all of them, or only the last of each level. */
static int check_tiles(const proto_merkle_tree *t, bool all) {
        tile_nodes *tile;
        hasher h;
        int r;

        if (!t->store)
                return 0;
        tile = malloc(sizeof *tile);
        if (!tile)
                return -ENOMEM;
        r = hasher_init(&h);
        for (unsigned L = 0; L < TILE_LEVELS && r >= 0; L++) {
                uint64_t full = level_count(t->size, L) / TILE_W;
                const tile_level *lv = &t->lv[L];

                for (uint64_t N = all || full == 0 ? 0 : full - 1; N < full && r >= 0; N++) {
                        if (N >= lv->first && N - lv->first < lv->n)
                                continue;
                        r = load_tile(t, &h, L, N, *tile);
                        if (r == -ENOENT)
                                proto_tile_store_set_bad(t->store, L, N, TILE_W);
                }
        }
        if (h.ctx)
                hasher_done(&h);
        free(tile);
        return r;
}

int proto_merkle_tree_check_tiles(const proto_merkle_tree *t) {
        return check_tiles(t, false);
}

int proto_merkle_tree_check_all_tiles(const proto_merkle_tree *t) {
        return check_tiles(t, true);
}

typedef struct tile_out {
        unsigned level, width;
        uint64_t index;
        uint8_t (*h)[HASH_LEN];
} tile_out;

struct proto_merkle_tiles {
        uint64_t size;
        uint64_t full_end[TILE_LEVELS]; /* complete tiles below this are in the batch or written before */
        tile_out *t;
        size_t n;
};

void proto_merkle_tiles_free(proto_merkle_tiles *b) {
        if (!b)
                return;
        for (size_t i = 0; i < b->n; i++)
                free(b->t[i].h);
        free(b->t);
        free(b);
}

static int tiles_add(proto_merkle_tiles *b, unsigned L, uint64_t N, unsigned w, const uint8_t (*h)[HASH_LEN]) {
        tile_out *o;

        o = &b->t[b->n];
        o->h = malloc((size_t) w * HASH_LEN);
        if (!o->h)
                return -ENOMEM;
        memcpy(o->h, h, (size_t) w * HASH_LEN);
        o->level = L;
        o->index = N;
        o->width = w;
        b->n++;
        return 0;
}

int proto_merkle_tree_tiles_at(const proto_merkle_tree *t, uint64_t m, proto_merkle_tiles **ret) {
        proto_merkle_tiles *b;
        size_t cap = 0;
        int r = 0;

        if (m > t->size)
                return -EINVAL;
        for (unsigned L = 0; L < TILE_LEVELS; L++)
                cap += t->lv[L].n + 1;
        b = calloc(1, sizeof *b);
        if (!b)
                return -ENOMEM;
        b->size = m;
        b->t = calloc(cap, sizeof *b->t);
        if (!b->t) {
                proto_merkle_tiles_free(b);
                return -ENOMEM;
        }
        for (unsigned L = 0; L < TILE_LEVELS && r >= 0; L++) {
                const tile_level *lv = &t->lv[L];
                uint64_t count = level_count(m, L), N = count / TILE_W;
                unsigned w = (unsigned) (count % TILE_W);

                b->full_end[L] = N;
                for (size_t i = 0; i < lv->n && lv->first + i < N && r >= 0; i++)
                        r = tiles_add(b, L, lv->first + i, TILE_W, (const uint8_t (*)[HASH_LEN]) * lv->full[i]);
                if (w == 0 || r < 0)
                        continue;
                /* The partial tile of m: the edge, or a tile completed since. */
                if (N == level_count(t->size, L) / TILE_W)
                        r = tiles_add(b, L, N, w, (const uint8_t (*)[HASH_LEN]) lv->edge);
                else if (N >= lv->first && N - lv->first < lv->n)
                        r = tiles_add(b, L, N, w, (const uint8_t (*)[HASH_LEN]) * lv->full[N - lv->first]);
                else
                        r = -EINVAL; /* m is older than what was written */
        }
        if (r < 0) {
                proto_merkle_tiles_free(b);
                return r;
        }
        *ret = b;
        return 0;
}

size_t proto_merkle_tree_memory(const proto_merkle_tree *t) {
        size_t n = sizeof *t;

        for (unsigned L = 0; L < TILE_LEVELS; L++)
                n += t->lv[L].n * sizeof(tile_nodes) + t->lv[L].cap * sizeof *t->lv[L].full;
        return n;
}

int proto_merkle_tiles_write(const proto_merkle_tiles *b, proto_tile_store *s) {
        for (size_t i = 0; i < b->n; i++) {
                const tile_out *o = &b->t[i];
                int r = proto_tile_store_write(s, o->level, o->index, o->width, (const uint8_t (*)[HASH_LEN]) o->h);
                if (r < 0)
                        return r;
        }
        return 0;
}

uint64_t proto_merkle_tiles_size(const proto_merkle_tiles *b) {
        return b->size;
}

void proto_merkle_tree_tiles_written(proto_merkle_tree *t, const proto_merkle_tiles *b) {
        if (!t->store)
                return;
        for (unsigned L = 0; L < TILE_LEVELS; L++) {
                tile_level *lv = &t->lv[L];
                size_t drop = 0;

                while (drop < lv->n && lv->first + drop < b->full_end[L])
                        free(lv->full[drop++]);
                if (drop == 0)
                        continue;
                memmove(lv->full, lv->full + drop, (lv->n - drop) * sizeof *lv->full);
                lv->n -= drop;
                lv->first += drop;
        }
}

int proto_merkle_tree_root_at(const proto_merkle_tree *t, uint64_t m, uint8_t out[PROTO_MERKLE_HASH_LEN]) {
        uint8_t root[HASH_LEN];
        hasher h;
        int r;

        if (m > proto_merkle_tree_size(t))
                return -EINVAL;
        if (m == 0) {
                memcpy(out, empty_root, HASH_LEN);
                return 0;
        }
        r = hasher_init(&h);
        if (r < 0)
                return r;
        r = range_root(t, &h, 0, m, root);
        hasher_done(&h);
        if (r < 0)
                return r;
        memcpy(out, root, HASH_LEN);
        return 0;
}

int proto_merkle_tree_root(const proto_merkle_tree *t, uint8_t out[PROTO_MERKLE_HASH_LEN]) {
        return proto_merkle_tree_root_at(t, proto_merkle_tree_size(t), out);
}

/* Paths are built root-first and handed out leaf-first, the order of RFC
 * 9162 §2.1.3.1 and §2.1.4.1. */
static void copy_reversed(uint8_t (*from)[HASH_LEN], size_t n, uint8_t to[][HASH_LEN]) {
        for (size_t i = 0; i < n; i++)
                memcpy(to[i], from[n - 1 - i], HASH_LEN);
}

int proto_merkle_tree_inclusion_proof(const proto_merkle_tree *t, uint64_t index, uint64_t m,
                                      uint8_t ret_proof[][PROTO_MERKLE_HASH_LEN], size_t *ret_n) {
        uint8_t path[PROTO_MERKLE_MAX_PROOF][HASH_LEN];
        uint64_t s = 0, e = m;
        size_t n = 0;
        hasher h;
        int r = 0;

        if (m > proto_merkle_tree_size(t) || index >= m)
                return -EINVAL;
        r = hasher_init(&h);
        if (r < 0)
                return r;

        /* RFC 9162 §2.1.3.1: PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])
         * if m < k, else PATH(m - k, D[k:n]) : MTH(D[0:k]). The sibling on
         * the left is always complete; at most one right sibling (the first
         * step left) is an incomplete edge and costs a fold. */
        while (e - s > 1) {
                uint64_t k = split_point(e - s);

                assert(n < PROTO_MERKLE_MAX_PROOF);
                if (index - s < k) {
                        r = range_root(t, &h, s + k, e, path[n]);
                        if (r < 0)
                                goto out;
                        e = s + k;
                } else {
                        r = perfect(t, &h, log2_floor(k), s, path[n]);
                        if (r < 0)
                                goto out;
                        s += k;
                }
                n++;
        }
        copy_reversed(path, n, ret_proof);
        *ret_n = n;
out:
        hasher_done(&h);
        return r;
}

int proto_merkle_tree_consistency_proof(const proto_merkle_tree *t, uint64_t m, uint64_t n,
                                        uint8_t ret_proof[][PROTO_MERKLE_HASH_LEN], size_t *ret_n) {
        uint8_t path[PROTO_MERKLE_MAX_PROOF][HASH_LEN];
        uint64_t s = 0, e = n;
        bool whole = true;
        size_t c = 0;
        hasher h;
        int r = 0;

        if (n > proto_merkle_tree_size(t) || m > n)
                return -EINVAL;
        if (m == 0 || m == n) {
                *ret_n = 0;
                return 0;
        }
        r = hasher_init(&h);
        if (r < 0)
                return r;

        /* RFC 9162 §2.1.4.1, with `whole` the flag b of SUBPROOF(m, D[n], b):
         * SUBPROOF(m, D[m], true) = {}, SUBPROOF(m, D[m], false) =
         * {MTH(D[m])}; otherwise m <= k: SUBPROOF(m, D[0:k], b) : MTH(D[k:n]),
         * m > k: SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]). */
        for (;;) {
                uint64_t k;

                assert(c < PROTO_MERKLE_MAX_PROOF);
                if (m == e) {
                        if (!whole) {
                                r = range_root(t, &h, s, e, path[c]);
                                if (r < 0)
                                        goto out;
                                c++;
                        }
                        break;
                }
                k = split_point(e - s);
                if (m - s <= k) {
                        r = range_root(t, &h, s + k, e, path[c]);
                        if (r < 0)
                                goto out;
                        e = s + k;
                } else {
                        r = perfect(t, &h, log2_floor(k), s, path[c]);
                        if (r < 0)
                                goto out;
                        s += k;
                        whole = false;
                }
                c++;
        }
        copy_reversed(path, c, ret_proof);
        *ret_n = c;
out:
        hasher_done(&h);
        return r;
}

/* The right side of a compact range (merkle.h): the sizes of the complete
 * subtrees that cover [to, m) while growing, and whether an edge follows.
 * Returns the number of hashes; *ret_edge_start is where the edge starts
 * (== m when there is none). */
static size_t right_walk(uint64_t to, uint64_t m, uint64_t sizes[PROTO_MERKLE_MAX_PROOF],
                         uint64_t *ret_edge_start) {
        uint64_t p = to;
        size_t n = 0;

        assert(to > 0);
        while (p < m && lowbit(p) <= m - p) {
                assert(n < PROTO_MERKLE_MAX_PROOF);
                sizes[n++] = lowbit(p);
                p += lowbit(p);
        }
        *ret_edge_start = p;
        return p < m ? n + 1 : n;
}

int proto_merkle_tree_range_proof(const proto_merkle_tree *t, uint64_t from, uint64_t to, uint64_t m,
                                  uint8_t ret_left[][PROTO_MERKLE_HASH_LEN], size_t *ret_n_left,
                                  uint8_t ret_right[][PROTO_MERKLE_HASH_LEN], size_t *ret_n_right) {
        uint8_t left[PROTO_MERKLE_MAX_PROOF][HASH_LEN], right[PROTO_MERKLE_MAX_PROOF][HASH_LEN];
        uint64_t sizes[PROTO_MERKLE_MAX_PROOF], edge, p = 0;
        size_t n_left = 0, n_right, n_grow;
        hasher h;
        int r;

        if (m > proto_merkle_tree_size(t) || to > m || from >= to)
                return -EINVAL;

        r = hasher_init(&h);
        if (r < 0)
                return r;
        /* Left: one complete subtree per bit of `from`, highest first. */
        for (unsigned k = 64; k-- > 0;) {
                if (!(from & (UINT64_C(1) << k)))
                        continue;
                r = perfect(t, &h, k, p, left[n_left++]);
                if (r < 0)
                        goto out;
                p += UINT64_C(1) << k;
        }

        /* Right: growing complete subtrees from `to`, then the edge. */
        n_right = right_walk(to, m, sizes, &edge);
        n_grow = edge < m ? n_right - 1 : n_right;
        p = to;
        for (size_t i = 0; i < n_grow; i++) {
                r = perfect(t, &h, log2_floor(sizes[i]), p, right[i]);
                if (r < 0)
                        goto out;
                p += sizes[i];
        }
        if (edge < m) {
                r = range_root(t, &h, edge, m, right[n_grow]);
                if (r < 0)
                        goto out;
        }

        memcpy(ret_left, left, n_left * HASH_LEN);
        memcpy(ret_right, right, n_right * HASH_LEN);
        *ret_n_left = n_left;
        *ret_n_right = n_right;
out:
        hasher_done(&h);
        return r;
}

static bool hash_equal(const uint8_t a[HASH_LEN], const uint8_t b[HASH_LEN]) {
        return memcmp(a, b, HASH_LEN) == 0;
}

/* Entry i of RFC 9162 §2.1.4.2's consistency_path after step 2, which
 * prepends first_hash when the old size is a power of two; indexing instead
 * of copying keeps the caller's array untouched and unbounded. */
static const uint8_t *consistency_entry(const uint8_t root_m[HASH_LEN], bool prepended,
                                        const uint8_t proof[][HASH_LEN], size_t i) {
        if (!prepended)
                return proof[i];
        return i == 0 ? root_m : proof[i - 1];
}

int proto_merkle_verify_inclusion(const uint8_t leaf_hash[PROTO_MERKLE_HASH_LEN], uint64_t index,
                                  uint64_t tree_size, const uint8_t proof[][PROTO_MERKLE_HASH_LEN], size_t n,
                                  const uint8_t root[PROTO_MERKLE_HASH_LEN]) {
        uint8_t r_hash[HASH_LEN];
        uint64_t fn, sn;
        hasher h;
        int r;

        /* RFC 9162 §2.1.3.2, step by step. */
        /* 1. */
        if (index >= tree_size)
                return -EINVAL;
        if (n > 0 && !proof)
                return -EINVAL;
        r = hasher_init(&h);
        if (r < 0)
                return r;
        /* 2., 3. */
        fn = index;
        sn = tree_size - 1;
        memcpy(r_hash, leaf_hash, HASH_LEN);
        /* 4. */
        for (size_t i = 0; i < n; i++) {
                /* a. A proof longer than the path fails here. */
                if (sn == 0) {
                        r = -EBADMSG;
                        goto out;
                }
                /* b. */
                if ((fn & 1) || fn == sn) {
                        r = hasher_node(&h, proof[i], r_hash, r_hash);
                        if (r < 0)
                                goto out;
                        while (!(fn & 1) && fn != 0) {
                                fn >>= 1;
                                sn >>= 1;
                        }
                } else {
                        r = hasher_node(&h, r_hash, proof[i], r_hash);
                        if (r < 0)
                                goto out;
                }
                /* c. */
                fn >>= 1;
                sn >>= 1;
        }
        /* 5. A proof shorter than the path leaves sn > 0. */
        r = sn == 0 && hash_equal(r_hash, root) ? 0 : -EBADMSG;
out:
        hasher_done(&h);
        return r;
}

int proto_merkle_verify_consistency(uint64_t m, uint64_t n, const uint8_t root_m[PROTO_MERKLE_HASH_LEN],
                                    const uint8_t root_n[PROTO_MERKLE_HASH_LEN],
                                    const uint8_t proof[][PROTO_MERKLE_HASH_LEN], size_t n_proof) {
        uint8_t fr[HASH_LEN], sr[HASH_LEN];
        uint64_t fn, sn;
        size_t len;
        bool prepend;
        hasher h;
        int r;

        if (m > n)
                return -EINVAL;
        if (n_proof > 0 && !proof)
                return -EINVAL;
        /* Outside the RFC's 0 < m < n (merkle.h): nothing to prove, so any
         * proof entry is an error. */
        if (m == 0)
                return n_proof == 0 && hash_equal(root_m, empty_root) ? 0 : -EBADMSG;
        if (m == n)
                return n_proof == 0 && hash_equal(root_m, root_n) ? 0 : -EBADMSG;

        /* RFC 9162 §2.1.4.2, step by step. */
        /* 1. */
        if (n_proof == 0)
                return -EBADMSG;
        /* 2. */
        prepend = (m & (m - 1)) == 0;
        len = n_proof + (prepend ? 1 : 0);
        /* 3. */
        fn = m - 1;
        sn = n - 1;
        /* 4. */
        while (fn & 1) {
                fn >>= 1;
                sn >>= 1;
        }
        /* 5. */
        memcpy(fr, consistency_entry(root_m, prepend, proof, 0), HASH_LEN);
        memcpy(sr, fr, HASH_LEN);

        r = hasher_init(&h);
        if (r < 0)
                return r;
        /* 6. */
        for (size_t i = 1; i < len; i++) {
                const uint8_t *c = consistency_entry(root_m, prepend, proof, i);

                /* a. */
                if (sn == 0) {
                        r = -EBADMSG;
                        goto out;
                }
                /* b. */
                if ((fn & 1) || fn == sn) {
                        r = hasher_node(&h, c, fr, fr);
                        if (r < 0)
                                goto out;
                        r = hasher_node(&h, c, sr, sr);
                        if (r < 0)
                                goto out;
                        while (!(fn & 1) && fn != 0) {
                                fn >>= 1;
                                sn >>= 1;
                        }
                } else {
                        r = hasher_node(&h, sr, c, sr);
                        if (r < 0)
                                goto out;
                }
                /* c. */
                fn >>= 1;
                sn >>= 1;
        }
        /* 7. */
        r = sn == 0 && hash_equal(fr, root_m) && hash_equal(sr, root_n) ? 0 : -EBADMSG;
out:
        hasher_done(&h);
        return r;
}

/* The verifier's stack of merkle.h: complete subtrees covering [0, pos),
 * sizes strictly decreasing, so at most one entry per bit of pos. */
typedef struct range_stack {
        uint64_t size[MAX_LEVELS];
        uint8_t hash[MAX_LEVELS][HASH_LEN];
        size_t n;
} range_stack;

/* Pushes a complete subtree of `size` leaves; the caller guarantees it is
 * aligned (size <= lowbit(pos)), so equal sizes on top are its left
 * sibling. */
static int range_push(range_stack *st, hasher *h, uint64_t size, const uint8_t hash[HASH_LEN]) {
        uint8_t acc[HASH_LEN];
        int r;

        memcpy(acc, hash, HASH_LEN);
        while (st->n > 0 && st->size[st->n - 1] == size) {
                r = hasher_node(h, st->hash[st->n - 1], acc, acc);
                if (r < 0)
                        return r;
                size *= 2;
                st->n--;
        }
        if (st->n >= MAX_LEVELS)
                return -EINVAL;
        st->size[st->n] = size;
        memcpy(st->hash[st->n], acc, HASH_LEN);
        st->n++;
        return 0;
}

int proto_merkle_verify_range(uint64_t from, uint64_t to, uint64_t m,
                              const uint8_t leaf_hashes[][PROTO_MERKLE_HASH_LEN],
                              const uint8_t left[][PROTO_MERKLE_HASH_LEN], size_t n_left,
                              const uint8_t right[][PROTO_MERKLE_HASH_LEN], size_t n_right,
                              const uint8_t root[PROTO_MERKLE_HASH_LEN]) {
        uint64_t sizes[PROTO_MERKLE_MAX_PROOF], edge;
        uint8_t acc[HASH_LEN];
        range_stack st = { .n = 0 };
        size_t want, n_grow, i = 0;
        hasher h;
        int r;

        if (from >= to || to > m || !leaf_hashes)
                return -EINVAL;
        if ((n_left > 0 && !left) || (n_right > 0 && !right))
                return -EINVAL;

        /* The shape is fixed by (from, to, m): a proof with more or fewer
         * hashes is not a proof of this range. */
        if (n_left != (size_t) __builtin_popcountll(from))
                return -EBADMSG;
        want = right_walk(to, m, sizes, &edge);
        if (n_right != want)
                return -EBADMSG;
        n_grow = edge < m ? n_right - 1 : n_right;

        r = hasher_init(&h);
        if (r < 0)
                return r;

        /* 1. Left: the bits of `from`, highest first. */
        for (unsigned k = 64; k-- > 0;) {
                if (!(from & (UINT64_C(1) << k)))
                        continue;
                r = range_push(&st, &h, UINT64_C(1) << k, left[i++]);
                if (r < 0)
                        goto out;
        }
        /* 2. The leaves, then the growing subtrees right of them. */
        for (uint64_t j = 0; j < to - from; j++) {
                r = range_push(&st, &h, 1, leaf_hashes[j]);
                if (r < 0)
                        goto out;
        }
        for (i = 0; i < n_grow; i++) {
                r = range_push(&st, &h, sizes[i], right[i]);
                if (r < 0)
                        goto out;
        }
        /* 3. Fold from the right, RFC 9162 §2.1.1's split at the largest
         * power of two; the edge, if any, is the rightmost subtree. */
        if (edge < m)
                memcpy(acc, right[n_grow], HASH_LEN);
        else
                memcpy(acc, st.hash[--st.n], HASH_LEN);
        while (st.n > 0) {
                r = hasher_node(&h, st.hash[--st.n], acc, acc);
                if (r < 0)
                        goto out;
        }
        r = hash_equal(acc, root) ? 0 : -EBADMSG;
out:
        hasher_done(&h);
        return r;
}
