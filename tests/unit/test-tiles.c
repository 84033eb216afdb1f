/* proto/tiles and the tree over a tile store (proto/merkle): C2SP
 * tlog-tiles paths against the spec's and Go's (golang.org/x/mod/sumdb/tlog)
 * examples; a tree whose complete tiles live on disk gives the same roots
 * and proofs as the in-memory tree for many sizes, also after being reopened
 * from its tiles; a damaged tile is found and named. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "hex.h"

#include "merkle.h"
#include "tiles.h"

#define HL PROTO_MERKLE_HASH_LEN
#define MAXP PROTO_MERKLE_MAX_PROOF

static void test_paths(void **state) {
        static const struct {
                unsigned level, width;
                uint64_t index;
                const char *want;
        } v[] = {
                { 0, 256, 0, "tile/0/000" },
                { 0, 256, 5, "tile/0/005" },
                { 0, 256, 999, "tile/0/999" },
                { 0, 256, 1000, "tile/0/x001/000" },
                { 0, 256, 1234067, "tile/0/x001/x234/067" },
                { 1, 3, 1234067, "tile/1/x001/x234/067.p/3" },
                { 3, 1, 123456078, "tile/3/x123/x456/078.p/1" },
                { 2, 255, 7, "tile/2/007.p/255" },
                { 63, 256, UINT64_MAX, "tile/63/x018/x446/x744/x073/x709/x551/615" },
        };
        char buf[PROTO_TILE_PATH_MAX];

        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
                assert_int_equal(proto_tile_path(v[i].level, v[i].index, v[i].width, buf, sizeof buf), 0);
                assert_string_equal(buf, v[i].want);
        }
        assert_int_equal(proto_tile_entries_path(1234067, 256, buf, sizeof buf), 0);
        assert_string_equal(buf, "tile/entries/x001/x234/067");
        assert_int_equal(proto_tile_entries_path(0, 8, buf, sizeof buf), 0);
        assert_string_equal(buf, "tile/entries/000.p/8");
        assert_int_equal(proto_tile_path(0, 0, 0, buf, sizeof buf), -EINVAL);
        assert_int_equal(proto_tile_path(0, 0, 257, buf, sizeof buf), -EINVAL);
        assert_int_equal(proto_tile_path(64, 0, 1, buf, sizeof buf), -EINVAL);
        assert_int_equal(proto_tile_path(0, 1234067, 256, buf, 12), -ENOBUFS);
}

static void test_bundle(void **state) {
        uint8_t *buf = NULL, big[65536] = { 0 };
        size_t len = 0, cap = 0;

        assert_int_equal(proto_tile_bundle_add(&buf, &len, &cap, (const uint8_t *) "abc", 3), 0);
        assert_int_equal(proto_tile_bundle_add(&buf, &len, &cap, big, 300), 0);
        assert_int_equal(len, 2 + 3 + 2 + 300);
        assert_memory_equal(buf, "\x00\x03" "abc" "\x01\x2c", 7);
        assert_int_equal(proto_tile_bundle_add(&buf, &len, &cap, big, 65535), 0);
        assert_int_equal(buf[305 + 2], 0xff);
        assert_int_equal(buf[305 + 3], 0xff);
        assert_int_equal(proto_tile_bundle_add(&buf, &len, &cap, big, 65536), -EMSGSIZE);
        assert_int_equal(len, 307 + 2 + 65535);
        /* Read back: the three entries, then the end. */
        proto_cursor c = proto_cursor_make(buf, len);
        const uint8_t *e;
        size_t n;
        assert_int_equal(proto_tile_bundle_next(&c, &e, &n), 0);
        assert_int_equal(n, 3);
        assert_memory_equal(e, "abc", 3);
        assert_int_equal(proto_tile_bundle_next(&c, &e, &n), 0);
        assert_int_equal(n, 300);
        assert_int_equal(proto_tile_bundle_next(&c, &e, &n), 0);
        assert_int_equal(n, 65535);
        assert_int_equal(proto_tile_bundle_next(&c, &e, &n), -ENODATA);
        /* Truncated: a length running past the end, a lone length byte, an
         * empty entry; the cursor does not move. */
        c = proto_cursor_make(buf, 306);
        assert_int_equal(proto_tile_bundle_next(&c, &e, &n), 0);
        assert_int_equal(proto_tile_bundle_next(&c, &e, &n), -EBADMSG);
        assert_int_equal(c.len, 301);
        c = proto_cursor_make(buf, 1);
        assert_int_equal(proto_tile_bundle_next(&c, &e, &n), -EBADMSG);
        c = proto_cursor_make("\x00\x00", 2);
        assert_int_equal(proto_tile_bundle_next(&c, &e, &n), -EBADMSG);
        free(buf);
}

static void leaf(uint64_t i, uint8_t out[HL]) {
        for (size_t j = 0; j < HL; j++)
                out[j] = (uint8_t) ((i >> (8 * (j % 8))) ^ (j * 37) ^ (i * 13));
}

static char tmpdir[64];

static int make_store(proto_tile_store **ret) {
        int fd, r;

        strcpy(tmpdir, "/tmp/test-tiles-XXXXXX");
        if (!mkdtemp(tmpdir))
                return -errno;
        fd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        r = proto_tile_store_open(fd, ret);
        close(fd);
        /* What is tested here is the layout, not the disk's fsync. */
        if (r >= 0)
                proto_tile_store_set_durable(*ret, 0);
        return r;
}

static void remove_store(void) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
        assert_int_equal(system(cmd), 0);
}

static void flush(proto_merkle_tree *t, proto_tile_store *s, uint64_t m) {
        proto_merkle_tiles *b = NULL;

        assert_int_equal(proto_merkle_tree_tiles_at(t, m, &b), 0);
        assert_int_equal(proto_merkle_tiles_write(b, s), 0);
        proto_merkle_tree_tiles_written(t, b);
        proto_merkle_tiles_free(b);
}

/* Roots and proofs of a (tiled) against m (in memory) at size n. */
static void same(const proto_merkle_tree *a, const proto_merkle_tree *m, uint64_t n, uint64_t seed) {
        uint8_t ra[HL], rm[HL], pa[MAXP][HL], pm[MAXP][HL], la[MAXP][HL], lm[MAXP][HL];
        size_t na = 0, nm = 0, nla = 0, nlm = 0;

        assert_int_equal(proto_merkle_tree_root_at(a, n, ra), 0);
        assert_int_equal(proto_merkle_tree_root_at(m, n, rm), 0);
        assert_memory_equal(ra, rm, HL);
        if (n == 0)
                return;
        for (int k = 0; k < 4; k++) {
                uint64_t i = k == 0 ? 0 : k == 1 ? n - 1 : (seed * 2654435761u + (uint64_t) k * 40503u) % n;
                uint64_t old = 1 + (seed * 40503u + (uint64_t) k) % n;
                uint8_t lh[HL];

                assert_int_equal(proto_merkle_tree_inclusion_proof(a, i, n, pa, &na), 0);
                assert_int_equal(proto_merkle_tree_inclusion_proof(m, i, n, pm, &nm), 0);
                assert_int_equal(na, nm);
                assert_memory_equal(pa, pm, na * HL);
                leaf(i, lh);
                assert_int_equal(proto_merkle_verify_inclusion(lh, i, n, (const uint8_t (*)[HL]) pa, na, ra), 0);
                assert_int_equal(proto_merkle_tree_consistency_proof(a, old, n, pa, &na), 0);
                assert_int_equal(proto_merkle_tree_consistency_proof(m, old, n, pm, &nm), 0);
                assert_int_equal(na, nm);
                assert_memory_equal(pa, pm, na * HL);
                assert_int_equal(proto_merkle_tree_range_proof(a, i, i + 1, n, la, &nla, pa, &na), 0);
                assert_int_equal(proto_merkle_tree_range_proof(m, i, i + 1, n, lm, &nlm, pm, &nm), 0);
                assert_int_equal(nla, nlm);
                assert_int_equal(na, nm);
                assert_memory_equal(la, lm, nla * HL);
                assert_memory_equal(pa, pm, na * HL);
        }
}

static void test_tiled_equals_memory(void **state) {
        static const uint64_t sizes[] = { 0, 1, 2, 255, 256, 257, 511, 512, 4097, 65535, 65536, 65537, 70001, 131072 + 300 };
        proto_merkle_tree *a = NULL, *m = NULL, *b = NULL;
        proto_tile_store *s = NULL;
        uint64_t n = 0, flushed = 0;
        uint8_t h[HL];

        assert_int_equal(make_store(&s), 0);
        assert_int_equal(proto_merkle_tree_open_tiles(s, 0, &a), 0);
        assert_int_equal(proto_merkle_tree_new(&m), 0);
        srand(15);
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
                while (n < sizes[k]) {
                        leaf(n, h);
                        assert_int_equal(proto_merkle_tree_append(a, h), 0);
                        assert_int_equal(proto_merkle_tree_append(m, h), 0);
                        n++;
                        /* Groups of random sizes, as the committer's. */
                        if (rand() % 499 == 0) {
                                flush(a, s, n - (uint64_t) (rand() % 3 == 0));
                                flushed = n - 1;
                        }
                }
                same(a, m, n, k);
                if (n > 0)
                        same(a, m, 1 + (uint64_t) rand() % n, k + 100);
                flush(a, s, n);
                flushed = n;
                same(a, m, n, k + 200);

                /* Reopened from the tiles at that size: same tree, and it grows on. */
                assert_int_equal(proto_merkle_tree_open_tiles(s, n, &b), 0);
                assert_int_equal(proto_merkle_tree_check_tiles(b), 0);
                same(b, m, n, k + 300);
                proto_merkle_tree_free(b);
        }
        (void) flushed;
        proto_merkle_tree_free(a);

        /* Reopen at the end and append 1000 more in both. */
        assert_int_equal(proto_merkle_tree_open_tiles(s, n, &b), 0);
        for (int i = 0; i < 1000; i++, n++) {
                leaf(n, h);
                assert_int_equal(proto_merkle_tree_append(b, h), 0);
                assert_int_equal(proto_merkle_tree_append(m, h), 0);
        }
        same(b, m, n, 7);
        flush(b, s, n);
        same(b, m, n, 8);
        proto_merkle_tree_free(b);
        proto_merkle_tree_free(m);
        proto_tile_store_free(s);
        remove_store();
}

static void flip(const char *rel, long off) {
        char path[256];
        uint8_t c;
        int fd;

        snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
        fd = open(path, O_RDWR);
        assert_true(fd >= 0);
        assert_int_equal(pread(fd, &c, 1, off), 1);
        c ^= 0x40;
        assert_int_equal(pwrite(fd, &c, 1, off), 1);
        close(fd);
}

static void hex32(const char *hex, uint8_t out[HL]) {
        size_t n = 0;
        assert_int_equal(proto_hex_decode(hex, out, HL, &n), 0);
        assert_int_equal(n, HL);
}

/* tests/vectors/tlog.json (golang.org/x/mod/sumdb/tlog) through a tree
 * over a store, published after every entry and reopened from its tiles. */
static void test_vectors(void **state) {
        char path[512];
        json_error_t jerr;
        proto_merkle_tree *t = NULL, *b = NULL;
        proto_tile_store *s = NULL;
        uint8_t h[HL], want[HL], root[HL], p[MAXP][HL];
        size_t np, i;
        json_t *e;

        snprintf(path, sizeof path, "%s/tests/vectors/tlog.json", getenv("SRCDIR") ? getenv("SRCDIR") : ".");
        json_t *v = json_load_file(path, 0, &jerr);
        assert_non_null(v);
        json_t *entries = json_object_get(v, "entries"), *roots = json_object_get(v, "roots_hex");
        assert_int_equal(make_store(&s), 0);
        assert_int_equal(proto_merkle_tree_open_tiles(s, 0, &t), 0);
        json_array_foreach(entries, i, e) {
                const char *text = json_string_value(e);
                char key[32];
                assert_int_equal(proto_merkle_leaf_hash((const uint8_t *) text, strlen(text), h), 0);
                assert_int_equal(proto_merkle_tree_append(t, h), 0);
                flush(t, s, i + 1);
                snprintf(key, sizeof key, "%zu", i + 1);
                hex32(json_string_value(json_object_get(roots, key)), want);
                assert_int_equal(proto_merkle_tree_open_tiles(s, i + 1, &b), 0);
                assert_int_equal(proto_merkle_tree_root(b, root), 0);
                assert_memory_equal(root, want, HL);
                proto_merkle_tree_free(b);
        }
        assert_int_equal(proto_merkle_tree_open_tiles(s, 13, &b), 0);
        json_array_foreach(json_object_get(v, "inclusion_size_13"), i, e) {
                json_t *proof = json_object_get(e, "proof"), *x;
                size_t k;
                assert_int_equal(proto_merkle_tree_inclusion_proof(b, (uint64_t) json_integer_value(
                                                                            json_object_get(e, "index")),
                                                                   13, p, &np),
                                 0);
                assert_int_equal(np, json_array_size(proof));
                json_array_foreach(proof, k, x) {
                        hex32(json_string_value(x), want);
                        assert_memory_equal(p[k], want, HL);
                }
        }
        json_array_foreach(json_object_get(v, "consistency_to_13"), i, e) {
                json_t *proof = json_object_get(e, "proof"), *x;
                size_t k;
                assert_int_equal(proto_merkle_tree_consistency_proof(
                                         b, (uint64_t) json_integer_value(json_object_get(e, "old_size")), 13, p, &np),
                                 0);
                assert_int_equal(np, json_array_size(proof));
                json_array_foreach(proof, k, x) {
                        hex32(json_string_value(x), want);
                        assert_memory_equal(p[k], want, HL);
                }
        }
        proto_merkle_tree_free(b);
        proto_merkle_tree_free(t);
        proto_tile_store_free(s);
        json_decref(v);
        remove_store();
}

/* Over a store, the tree's memory does not grow with its size once its
 * tiles are written out (the committer does so at every publication);
 * without a store it does. */
static void test_bounded_memory(void **state) {
        proto_merkle_tree *t = NULL, *m = NULL;
        proto_tile_store *s = NULL;
        size_t at_first = 0, most = 0;
        uint8_t h[HL];

        assert_int_equal(make_store(&s), 0);
        assert_int_equal(proto_merkle_tree_open_tiles(s, 0, &t), 0);
        assert_int_equal(proto_merkle_tree_new(&m), 0);
        for (uint64_t i = 0; i < 600000; i++) {
                leaf(i, h);
                assert_int_equal(proto_merkle_tree_append(t, h), 0);
                assert_int_equal(proto_merkle_tree_append(m, h), 0);
                if ((i + 1) % 5000 == 0) {
                        size_t now = proto_merkle_tree_memory(t);
                        if (most < now)
                                most = now;
                        flush(t, s, i + 1);
                        if (i + 1 == 5000)
                                at_first = now;
                }
        }
        print_message("600,000 leaves: over a store at most %zu bytes (%zu after 5,000), in memory %zu\n", most,
                      at_first, proto_merkle_tree_memory(m));
        /* the edges (8 x 16 KiB) and the tiles of one 5,000-entry group
         * (19 or 20 of 16 KiB): the same after 5,000 leaves as after 600,000 */
        assert_true(most < at_first + 64 * 1024);
        assert_true(most < 1024 * 1024);
        assert_true(proto_merkle_tree_memory(m) > 600000 * 32);
        proto_merkle_tree_free(t);
        proto_merkle_tree_free(m);
        proto_tile_store_free(s);
        remove_store();
}

/* A fresh store over the same directory: an empty cache, as after a restart. */
static void reopen(proto_tile_store **s) {
        int fd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        assert_true(fd >= 0);
        proto_tile_store_free(*s);
        assert_int_equal(proto_tile_store_open(fd, s), 0);
        close(fd);
}

static void test_damage(void **state) {
        proto_merkle_tree *a = NULL, *b = NULL;
        proto_tile_store *s = NULL;
        uint8_t h[HL], root[HL], p[MAXP][HL];
        const uint64_t n = 70000;
        size_t np;

        assert_int_equal(make_store(&s), 0);
        assert_int_equal(proto_merkle_tree_open_tiles(s, 0, &a), 0);
        for (uint64_t i = 0; i < n; i++) {
                leaf(i, h);
                assert_int_equal(proto_merkle_tree_append(a, h), 0);
        }
        flush(a, s, n);
        assert_int_equal(proto_merkle_tree_root(a, root), 0);
        proto_merkle_tree_free(a);

        /* A level-0 tile deep inside: found when a proof reads it. */
        flip("tile/0/010", 100);
        reopen(&s);
        assert_int_equal(proto_merkle_tree_open_tiles(s, n, &b), 0);
        assert_int_equal(proto_merkle_tree_check_tiles(b), 0);
        /* ... and by check_all_tiles, which reads every complete tile. */
        assert_int_equal(proto_merkle_tree_check_all_tiles(b), -EBADMSG);
        assert_string_equal(proto_tile_store_bad(s), "tile/0/010");
        proto_merkle_tree_free(b);
        reopen(&s);
        assert_int_equal(proto_merkle_tree_open_tiles(s, n, &b), 0);
        assert_int_equal(proto_merkle_tree_inclusion_proof(b, 9 * 256 + 3, n, p, &np), 0);
        assert_int_equal(proto_merkle_tree_inclusion_proof(b, 10 * 256 + 3, n, p, &np), -EBADMSG);
        assert_string_equal(proto_tile_store_bad(s), "tile/0/010");
        proto_merkle_tree_free(b);
        flip("tile/0/010", 100);

        /* Undamaged: every complete tile checks. */
        reopen(&s);
        assert_int_equal(proto_merkle_tree_open_tiles(s, n, &b), 0);
        assert_int_equal(proto_merkle_tree_check_all_tiles(b), 0);
        proto_merkle_tree_free(b);

        /* The last complete tile of a level: found by check_tiles. */
        flip("tile/0/272", 8000);
        reopen(&s);
        assert_int_equal(proto_merkle_tree_open_tiles(s, n, &b), 0);
        assert_int_equal(proto_merkle_tree_check_tiles(b), -EBADMSG);
        assert_string_equal(proto_tile_store_bad(s), "tile/0/272");
        proto_merkle_tree_free(b);
        flip("tile/0/272", 8000);

        /* A level-1 tile: every level-0 tile under it fails, naming it. */
        flip("tile/1/000", 0);
        reopen(&s);
        assert_int_equal(proto_merkle_tree_open_tiles(s, n, &b), 0);
        assert_int_equal(proto_merkle_tree_inclusion_proof(b, 5, n, p, &np), -EBADMSG);
        assert_string_equal(proto_tile_store_bad(s), "tile/1/000");
        proto_merkle_tree_free(b);
        flip("tile/1/000", 0);

        /* The partial tiles a wrong root implicates, for a message. */
        char names[128];
        proto_tile_partial_paths(n, names, sizeof names);
        assert_string_equal(names, "tile/0/273.p/112, tile/1/001.p/17, tile/2/000.p/1");
        proto_tile_partial_paths(n, names, 40);
        assert_string_equal(names, "tile/0/273.p/112, tile/1/001.p/17");
        proto_tile_partial_paths(256 * 256, names, sizeof names);
        assert_string_equal(names, "tile/2/000.p/1");

        /* A partial tile: the root differs from the signed one. */
        flip("tile/0/273.p/112", 31);
        reopen(&s);
        assert_int_equal(proto_merkle_tree_open_tiles(s, n, &b), 0);
        assert_int_equal(proto_merkle_tree_root(b, h), 0);
        assert_memory_not_equal(h, root, HL);
        proto_merkle_tree_free(b);
        flip("tile/0/273.p/112", 31);

        /* A missing partial tile is named. */
        char path[256];
        snprintf(path, sizeof path, "%s/tile/1/001.p/17", tmpdir);
        assert_int_equal(unlink(path), 0);
        reopen(&s);
        assert_int_equal(proto_merkle_tree_open_tiles(s, n, &b), -ENOENT);
        assert_string_equal(proto_tile_store_bad(s), "tile/1/001.p/17");

        proto_tile_store_free(s);
        remove_store();
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_paths),
                cmocka_unit_test(test_bundle),
                cmocka_unit_test(test_vectors),
                cmocka_unit_test(test_bounded_memory),
                cmocka_unit_test(test_tiled_equals_memory),
                cmocka_unit_test(test_damage),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
