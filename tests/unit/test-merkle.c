/* proto/merkle: RFC 9162 (RFC 6962) Merkle tree hashes and proofs.
 *
 * Checked three ways: against vectors made by an independent implementation
 * (golang.org/x/mod/sumdb/tlog, tests/vectors/tlog.json, read at run time
 * from $SRCDIR); against a naive recursive transcription of the RFC 9162
 * §2.1 definitions in this file (MTH, PATH, SUBPROOF on a plain array, its
 * own SHA-256 calls) for every tree size up to 70; and by making every kind
 * of proof fail: a flipped byte, a wrong index or size, a missing or an
 * extra hash. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "hex.h"
#include "merkle.h"

#define HL PROTO_MERKLE_HASH_LEN
#define MAXP PROTO_MERKLE_MAX_PROOF

/* Brute-force bounds of the brief: every tree size up to BF_MAX for
 * inclusion and consistency, every range in trees up to RANGE_MAX. */
#define BF_MAX 70u
#define RANGE_MAX 40u

/* ---- The reference: RFC 9162 §2.1 transcribed, recursive, O(n) ---- */

/* Its own SHA-256 context, reused: with OpenSSL 3.0 every digest costs a
 * malloc, and a one-shot SHA256() three, which under ASan with full
 * unwinding (tests/meson.build) would dominate the run. */
static EVP_MD *ref_md;
static EVP_MD_CTX *ref_ctx;

static int ref_setup(void **state) {
        ref_md = EVP_MD_fetch(NULL, "SHA256", NULL);
        ref_ctx = EVP_MD_CTX_new();
        return ref_md && ref_ctx ? 0 : -1;
}

static int ref_teardown(void **state) {
        EVP_MD_CTX_free(ref_ctx);
        EVP_MD_free(ref_md);
        return 0;
}

static void ref_sha256(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[HL]) {
        unsigned len = 0;

        assert_int_equal(EVP_DigestInit_ex2(ref_ctx, ref_md, NULL), 1);
        assert_int_equal(EVP_DigestUpdate(ref_ctx, a, alen), 1);
        assert_int_equal(EVP_DigestUpdate(ref_ctx, b, blen), 1);
        assert_int_equal(EVP_DigestFinal_ex(ref_ctx, out, &len), 1);
        assert_int_equal(len, HL);
}

static void ref_leaf(const void *data, size_t len, uint8_t out[HL]) {
        ref_sha256("\x00", 1, data, len, out);
}

static void ref_node(const uint8_t l[HL], const uint8_t r[HL], uint8_t out[HL]) {
        uint8_t buf[2 * HL];

        memcpy(buf, l, HL);
        memcpy(buf + HL, r, HL);
        ref_sha256("\x01", 1, buf, sizeof buf, out);
}

/* "k is the largest power of two smaller than n", by counting. */
static size_t ref_split(size_t n) {
        size_t k = 1;

        while (k * 2 < n)
                k *= 2;
        return k;
}

/* MTH(D[n]), §2.1.1. */
static void ref_mth(const uint8_t (*d)[HL], size_t n, uint8_t out[HL]) {
        uint8_t l[HL], r[HL];
        size_t k;

        if (n == 0) {
                ref_sha256("", 0, "", 0, out);
                return;
        }
        if (n == 1) {
                memcpy(out, d[0], HL);
                return;
        }
        k = ref_split(n);
        ref_mth(d, k, l);
        ref_mth(d + k, n - k, r);
        ref_node(l, r, out);
}

/* PATH(m, D[n]), §2.1.3.1. */
static void ref_path(size_t m, const uint8_t (*d)[HL], size_t n, uint8_t out[][HL], size_t *cnt) {
        size_t k;

        if (n <= 1)
                return;
        k = ref_split(n);
        if (m < k) {
                ref_path(m, d, k, out, cnt);
                ref_mth(d + k, n - k, out[(*cnt)++]);
        } else {
                ref_path(m - k, d + k, n - k, out, cnt);
                ref_mth(d, k, out[(*cnt)++]);
        }
}

/* SUBPROOF(m, D[n], b), §2.1.4.1. */
static void ref_subproof(size_t m, const uint8_t (*d)[HL], size_t n, bool b, uint8_t out[][HL], size_t *cnt) {
        size_t k;

        if (m == n) {
                if (!b)
                        ref_mth(d, n, out[(*cnt)++]);
                return;
        }
        k = ref_split(n);
        if (m <= k) {
                ref_subproof(m, d, k, b, out, cnt);
                ref_mth(d + k, n - k, out[(*cnt)++]);
        } else {
                ref_subproof(m - k, d + k, n - k, false, out, cnt);
                ref_mth(d, k, out[(*cnt)++]);
        }
}

/* ---- Fixtures ---- */

static void hex32(const char *hex, uint8_t out[HL]) {
        size_t len = 0;

        assert_non_null(hex);
        assert_int_equal(proto_hex_decode(hex, out, HL, &len), 0);
        assert_int_equal(len, HL);
}

static json_t *load_vectors(void) {
        const char *srcdir = getenv("SRCDIR");
        char path[4096];
        json_error_t err;
        json_t *v;

        if (!srcdir)
                fail_msg("SRCDIR is not set (meson test sets it to the project root)");
        assert_true(snprintf(path, sizeof path, "%s/tests/vectors/tlog.json", srcdir) < (int) sizeof path);
        v = json_load_file(path, 0, &err);
        if (!v)
                fail_msg("%s:%d: %s", path, err.line, err.text);
        return v;
}

/* Leaf hashes of the vector entries, from the reference hash. */
static size_t vector_leaves(json_t *v, uint8_t leaves[][HL], size_t max) {
        json_t *entries = json_object_get(v, "entries"), *e;
        size_t i;

        assert_true(json_is_array(entries));
        assert_true(json_array_size(entries) <= max);
        json_array_foreach (entries, i, e) {
                assert_true(json_is_string(e));
                ref_leaf(json_string_value(e), json_string_length(e), leaves[i]);
        }
        return json_array_size(entries);
}

/* Distinct leaves for the brute-force tests. */
static void make_leaves(uint8_t leaves[][HL], size_t n) {
        for (size_t i = 0; i < n; i++) {
                char s[32];
                int len = snprintf(s, sizeof s, "leaf-%zu", i);
                ref_leaf(s, (size_t) len, leaves[i]);
        }
}

static proto_merkle_tree *tree_of(uint8_t leaves[][HL], size_t n) {
        proto_merkle_tree *t = NULL;

        assert_int_equal(proto_merkle_tree_new(&t), 0);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(proto_merkle_tree_append(t, leaves[i]), 0);
        assert_int_equal(proto_merkle_tree_size(t), n);
        return t;
}

/* ---- Primitives ---- */

static void test_hashes(void **state) {
        uint8_t a[HL], b[HL], c[HL], want[HL];
        uint8_t empty_sha[HL];

        /* Leaf = SHA-256(0x00 ‖ bytes), node = SHA-256(0x01 ‖ l ‖ r). */
        assert_int_equal(proto_merkle_leaf_hash((const uint8_t *) "entry-0", 7, a), 0);
        ref_leaf("entry-0", 7, want);
        assert_memory_equal(a, want, HL);
        assert_int_equal(proto_merkle_leaf_hash(NULL, 0, b), 0);
        ref_leaf("", 0, want);
        assert_memory_equal(b, want, HL);
        assert_int_equal(proto_merkle_leaf_hash(NULL, 1, b), -EINVAL);

        assert_int_equal(proto_merkle_node_hash(a, b, c), 0);
        ref_node(a, b, want);
        assert_memory_equal(c, want, HL);
        /* out may alias an input */
        memcpy(c, a, HL);
        assert_int_equal(proto_merkle_node_hash(c, b, c), 0);
        assert_memory_equal(c, want, HL);

        /* Domain separation: a node is not the leaf of its concatenation. */
        uint8_t cat[2 * HL];
        memcpy(cat, a, HL);
        memcpy(cat + HL, b, HL);
        ref_leaf(cat, sizeof cat, c);
        assert_memory_not_equal(c, want, HL);

        /* MTH({}) = SHA-256("") (RFC 9162 §2.1.1). */
        proto_merkle_tree *t = NULL;
        ref_sha256("", 0, "", 0, empty_sha);
        assert_int_equal(proto_merkle_tree_new(&t), 0);
        assert_int_equal(proto_merkle_tree_size(t), 0);
        assert_int_equal(proto_merkle_tree_root(t, c), 0);
        assert_memory_equal(c, empty_sha, HL);
        assert_int_equal(proto_merkle_tree_root_at(t, 0, c), 0);
        assert_memory_equal(c, empty_sha, HL);
        proto_merkle_tree_free(t);
        proto_merkle_tree_free(NULL);
}

/* ---- Independent vectors (golang.org/x/mod/sumdb/tlog 0.7.0) ---- */

static void test_vector_roots(void **state) {
        json_t *v = load_vectors(), *roots = json_object_get(v, "roots_hex");
        uint8_t leaves[16][HL], got[HL], want[HL];
        proto_merkle_tree *t = NULL;
        size_t n = vector_leaves(v, leaves, 16);

        assert_int_equal(n, 13);
        assert_true(json_is_object(roots));
        assert_int_equal(json_object_size(roots), 13);
        assert_int_equal(proto_merkle_tree_new(&t), 0);
        for (size_t i = 0; i < n; i++) {
                char key[24];

                /* The leaf hash of the API agrees with the reference too. */
                json_t *e = json_array_get(json_object_get(v, "entries"), i);
                assert_int_equal(proto_merkle_leaf_hash((const uint8_t *) json_string_value(e), json_string_length(e),
                                                        got),
                                 0);
                assert_memory_equal(got, leaves[i], HL);

                assert_int_equal(proto_merkle_tree_append(t, leaves[i]), 0);
                snprintf(key, sizeof key, "%zu", i + 1);
                hex32(json_string_value(json_object_get(roots, key)), want);
                assert_int_equal(proto_merkle_tree_root(t, got), 0);
                assert_memory_equal(got, want, HL);
        }
        /* ... and every historical root from the full tree. */
        for (size_t m = 1; m <= n; m++) {
                char key[24];

                snprintf(key, sizeof key, "%zu", m);
                hex32(json_string_value(json_object_get(roots, key)), want);
                assert_int_equal(proto_merkle_tree_root_at(t, m, got), 0);
                assert_memory_equal(got, want, HL);
        }
        proto_merkle_tree_free(t);
        json_decref(v);
}

static void test_vector_inclusion(void **state) {
        json_t *v = load_vectors(), *list = json_object_get(v, "inclusion_size_13"), *item;
        uint8_t leaves[16][HL], root[HL], want[MAXP][HL], got[MAXP][HL];
        size_t n = vector_leaves(v, leaves, 16), i;
        proto_merkle_tree *t = tree_of(leaves, n);

        assert_true(json_is_array(list));
        assert_int_equal(json_array_size(list), 13);
        hex32(json_string_value(json_object_get(json_object_get(v, "roots_hex"), "13")), root);
        json_array_foreach (list, i, item) {
                json_t *proof = json_object_get(item, "proof"), *h;
                uint64_t index = (uint64_t) json_integer_value(json_object_get(item, "index"));
                size_t len = json_array_size(proof), j, got_n = 0;

                assert_true(len <= MAXP);
                json_array_foreach (proof, j, h)
                        hex32(json_string_value(h), want[j]);
                /* RFC 9162 §2.1.3.2 accepts the independent proof ... */
                assert_int_equal(proto_merkle_verify_inclusion(leaves[index], index, 13, want, len, root), 0);
                /* ... and the tree makes the very same one. */
                assert_int_equal(proto_merkle_tree_inclusion_proof(t, index, 13, got, &got_n), 0);
                assert_int_equal(got_n, len);
                assert_memory_equal(got, want, len * HL);
        }
        proto_merkle_tree_free(t);
        json_decref(v);
}

static void test_vector_consistency(void **state) {
        json_t *v = load_vectors(), *list = json_object_get(v, "consistency_to_13"), *item;
        json_t *roots = json_object_get(v, "roots_hex");
        uint8_t leaves[16][HL], root_m[HL], root_n[HL], want[MAXP][HL], got[MAXP][HL];
        size_t n = vector_leaves(v, leaves, 16), i;
        proto_merkle_tree *t = tree_of(leaves, n);

        assert_true(json_is_array(list));
        assert_int_equal(json_array_size(list), 12);
        hex32(json_string_value(json_object_get(roots, "13")), root_n);
        json_array_foreach (list, i, item) {
                json_t *proof = json_object_get(item, "proof"), *h;
                uint64_t m = (uint64_t) json_integer_value(json_object_get(item, "old_size"));
                size_t len = json_array_size(proof), j, got_n = 0;
                char key[24];

                assert_true(len <= MAXP);
                json_array_foreach (proof, j, h)
                        hex32(json_string_value(h), want[j]);
                snprintf(key, sizeof key, "%" PRIu64, m);
                hex32(json_string_value(json_object_get(roots, key)), root_m);
                /* RFC 9162 §2.1.4.2 accepts the independent proof ... */
                assert_int_equal(proto_merkle_verify_consistency(m, 13, root_m, root_n, want, len), 0);
                /* ... and the tree makes the very same one (§2.1.4.1). */
                assert_int_equal(proto_merkle_tree_consistency_proof(t, m, 13, got, &got_n), 0);
                assert_int_equal(got_n, len);
                assert_memory_equal(got, want, len * HL);
        }
        proto_merkle_tree_free(t);
        json_decref(v);
}

/* ---- Brute force against the reference, trees of 1..BF_MAX leaves ---- */

typedef struct bf {
        uint8_t leaves[BF_MAX][HL];
        uint8_t roots[BF_MAX + 1][HL];   /* reference MTH(D[0:m]) */
        proto_merkle_tree *trees[BF_MAX + 1]; /* trees[n] holds n leaves */
} bf;

static bf *bf_new(void) {
        bf *b = calloc(1, sizeof *b);

        assert_non_null(b);
        make_leaves(b->leaves, BF_MAX);
        for (size_t m = 0; m <= BF_MAX; m++) {
                ref_mth(b->leaves, m, b->roots[m]);
                b->trees[m] = tree_of(b->leaves, m);
        }
        return b;
}

static void bf_free(bf *b) {
        for (size_t m = 0; m <= BF_MAX; m++)
                proto_merkle_tree_free(b->trees[m]);
        free(b);
}

static void test_bf_roots(void **state) {
        bf *b = bf_new();
        uint8_t got[HL];

        /* Every tree of n leaves knows every root it ever had. */
        for (size_t n = 0; n <= BF_MAX; n++) {
                assert_int_equal(proto_merkle_tree_root(b->trees[n], got), 0);
                assert_memory_equal(got, b->roots[n], HL);
                for (size_t m = 0; m <= n; m++) {
                        assert_int_equal(proto_merkle_tree_root_at(b->trees[n], m, got), 0);
                        assert_memory_equal(got, b->roots[m], HL);
                }
                assert_int_equal(proto_merkle_tree_root_at(b->trees[n], n + 1, got), -EINVAL);
        }
        bf_free(b);
}

static void test_bf_inclusion(void **state) {
        bf *b = bf_new();
        uint8_t want[MAXP][HL], got[MAXP][HL], bad[MAXP + 1][HL], leaf[HL];
        size_t checked = 0;

        for (size_t m = 1; m <= BF_MAX; m++)
                for (size_t index = 0; index < m; index++) {
                        const uint8_t *root = b->roots[m];
                        size_t len = 0;

                        ref_path(index, b->leaves, m, want, &len);

                        /* Every tree of n >= m leaves gives PATH(index, D[0:m]). */
                        for (size_t n = m; n <= BF_MAX; n++) {
                                size_t got_n = 0;

                                assert_int_equal(proto_merkle_tree_inclusion_proof(b->trees[n], index, m, got, &got_n),
                                                 0);
                                assert_int_equal(got_n, len);
                                assert_memory_equal(got, want, len * HL);
                                checked++;
                        }
                        assert_int_equal(proto_merkle_verify_inclusion(b->leaves[index], index, m, want, len, root), 0);

                        /* A flipped byte anywhere: in each proof hash, the
                         * leaf, the root. */
                        for (size_t j = 0; j < len; j++) {
                                memcpy(bad, want, len * HL);
                                bad[j][(j * 7) % HL] ^= 0x01;
                                assert_int_equal(proto_merkle_verify_inclusion(b->leaves[index], index, m, bad, len, root),
                                                 -EBADMSG);
                        }
                        memcpy(leaf, b->leaves[index], HL);
                        leaf[HL - 1] ^= 0x80;
                        assert_int_equal(proto_merkle_verify_inclusion(leaf, index, m, want, len, root), -EBADMSG);
                        memcpy(leaf, root, HL);
                        leaf[0] ^= 0x01;
                        assert_int_equal(proto_merkle_verify_inclusion(b->leaves[index], index, m, want, len, leaf),
                                         -EBADMSG);

                        /* A wrong index, with the leaf and proof of this one. */
                        if (index + 1 < m)
                                assert_int_equal(
                                        proto_merkle_verify_inclusion(b->leaves[index], index + 1, m, want, len, root),
                                        -EBADMSG);
                        if (index > 0)
                                assert_int_equal(
                                        proto_merkle_verify_inclusion(b->leaves[index], index - 1, m, want, len, root),
                                        -EBADMSG);
                        /* The leaf of a neighbour at this index. */
                        if (m > 1)
                                assert_int_equal(proto_merkle_verify_inclusion(b->leaves[(index + 1) % m], index, m, want,
                                                                               len, root),
                                                 -EBADMSG);

                        /* A wrong size, with the true root of that size. */
                        if (m + 1 <= BF_MAX)
                                assert_int_equal(proto_merkle_verify_inclusion(b->leaves[index], index, m + 1, want, len,
                                                                               b->roots[m + 1]),
                                                 -EBADMSG);
                        if (m - 1 > index)
                                assert_int_equal(proto_merkle_verify_inclusion(b->leaves[index], index, m - 1, want, len,
                                                                               b->roots[m - 1]),
                                                 -EBADMSG);

                        /* Truncated and extended proofs (RFC 9162 §2.1.3.2
                         * steps 4a and 5). */
                        if (len > 0)
                                assert_int_equal(
                                        proto_merkle_verify_inclusion(b->leaves[index], index, m, want, len - 1, root),
                                        -EBADMSG);
                        memcpy(bad, want, len * HL);
                        memcpy(bad[len], root, HL);
                        assert_int_equal(proto_merkle_verify_inclusion(b->leaves[index], index, m, bad, len + 1, root),
                                         -EBADMSG);
                        if (len > 0) {
                                /* the extra hash first: also not a proof */
                                memcpy(bad[0], b->leaves[index], HL);
                                memcpy(bad + 1, want, len * HL);
                                assert_int_equal(
                                        proto_merkle_verify_inclusion(b->leaves[index], index, m, bad, len + 1, root),
                                        -EBADMSG);
                        }

                        /* Impossible arguments. */
                        assert_int_equal(proto_merkle_verify_inclusion(b->leaves[index], m, m, want, len, root), -EINVAL);
                        assert_int_equal(proto_merkle_verify_inclusion(b->leaves[index], index, 0, want, len, root),
                                         -EINVAL);
                }
        print_message("inclusion: %zu proofs from trees compared with the reference\n", checked);

        /* The tree refuses impossible requests and leaves the outputs alone. */
        size_t keep = 4242;
        assert_int_equal(proto_merkle_tree_inclusion_proof(b->trees[10], 10, 10, got, &keep), -EINVAL);
        assert_int_equal(proto_merkle_tree_inclusion_proof(b->trees[10], 0, 11, got, &keep), -EINVAL);
        assert_int_equal(proto_merkle_tree_inclusion_proof(b->trees[0], 0, 0, got, &keep), -EINVAL);
        assert_int_equal(keep, 4242);
        bf_free(b);
}

static void test_bf_consistency(void **state) {
        bf *b = bf_new();
        uint8_t want[MAXP][HL], got[MAXP][HL], bad[MAXP + 1][HL], root[HL];
        size_t checked = 0;

        for (size_t n = 1; n <= BF_MAX; n++)
                for (size_t m = 0; m <= n; m++) {
                        const uint8_t *rm = b->roots[m], *rn = b->roots[n];
                        size_t len = 0;

                        /* PROOF(m, D[n]) = SUBPROOF(m, D[n], true) for
                         * 0 < m < n; nothing to prove otherwise. */
                        if (m > 0 && m < n)
                                ref_subproof(m, b->leaves, n, true, want, &len);

                        for (size_t s = n; s <= BF_MAX; s++) {
                                size_t got_n = 4242;

                                assert_int_equal(proto_merkle_tree_consistency_proof(b->trees[s], m, n, got, &got_n), 0);
                                assert_int_equal(got_n, len);
                                assert_memory_equal(got, want, len * HL);
                                checked++;
                        }
                        assert_int_equal(proto_merkle_verify_consistency(m, n, rm, rn, want, len), 0);

                        /* Extended proofs and wrong roots fail in every case,
                         * m == 0 and m == n included. */
                        memcpy(bad, want, len * HL);
                        memcpy(bad[len], rn, HL);
                        assert_int_equal(proto_merkle_verify_consistency(m, n, rm, rn, bad, len + 1), -EBADMSG);
                        memcpy(root, rm, HL);
                        root[5] ^= 0x20;
                        assert_int_equal(proto_merkle_verify_consistency(m, n, root, rn, want, len), -EBADMSG);
                        if (m > 0) {
                                memcpy(root, rn, HL);
                                root[31] ^= 0x01;
                                assert_int_equal(proto_merkle_verify_consistency(m, n, rm, root, want, len), -EBADMSG);
                        }
                        /* Impossible: the old tree larger than the new. */
                        if (m < n)
                                assert_int_equal(proto_merkle_verify_consistency(n, m, rn, rm, want, len), -EINVAL);

                        if (m == 0 || m == n)
                                continue;

                        /* A flipped byte in each hash. */
                        for (size_t j = 0; j < len; j++) {
                                memcpy(bad, want, len * HL);
                                bad[j][(j * 11) % HL] ^= 0x04;
                                assert_int_equal(proto_merkle_verify_consistency(m, n, rm, rn, bad, len), -EBADMSG);
                        }
                        /* Truncated, empty, the extra hash first (RFC 9162
                         * §2.1.4.2 steps 1, 6a and 7). */
                        assert_int_equal(proto_merkle_verify_consistency(m, n, rm, rn, want, len - 1), -EBADMSG);
                        assert_int_equal(proto_merkle_verify_consistency(m, n, rm, rn, NULL, 0), -EBADMSG);
                        memcpy(bad[0], rm, HL);
                        memcpy(bad + 1, want, len * HL);
                        assert_int_equal(proto_merkle_verify_consistency(m, n, rm, rn, bad, len + 1), -EBADMSG);
                        /* Wrong sizes, each with the true root of that size. */
                        if (m + 1 < n)
                                assert_int_equal(
                                        proto_merkle_verify_consistency(m + 1, n, b->roots[m + 1], rn, want, len),
                                        -EBADMSG);
                        if (m > 1)
                                assert_int_equal(
                                        proto_merkle_verify_consistency(m - 1, n, b->roots[m - 1], rn, want, len),
                                        -EBADMSG);
                        if (n + 1 <= BF_MAX)
                                assert_int_equal(
                                        proto_merkle_verify_consistency(m, n + 1, rm, b->roots[n + 1], want, len),
                                        -EBADMSG);
                        if (n - 1 > m)
                                assert_int_equal(
                                        proto_merkle_verify_consistency(m, n - 1, rm, b->roots[n - 1], want, len),
                                        -EBADMSG);
                        /* Swapped roots. */
                        assert_int_equal(proto_merkle_verify_consistency(m, n, rn, rm, want, len), -EBADMSG);
                }
        print_message("consistency: %zu proofs from trees compared with the reference\n", checked);

        /* Outside 0 < m < n (merkle.h): m == n needs equal roots and no
         * hash; m == 0 needs the empty-tree root. */
        assert_int_equal(proto_merkle_verify_consistency(5, 5, b->roots[5], b->roots[5], NULL, 0), 0);
        assert_int_equal(proto_merkle_verify_consistency(5, 5, b->roots[5], b->roots[6], NULL, 0), -EBADMSG);
        assert_int_equal(proto_merkle_verify_consistency(0, 0, b->roots[0], b->roots[0], NULL, 0), 0);
        assert_int_equal(proto_merkle_verify_consistency(0, 7, b->roots[0], b->roots[7], NULL, 0), 0);
        assert_int_equal(proto_merkle_verify_consistency(0, 7, b->roots[1], b->roots[7], NULL, 0), -EBADMSG);

        size_t keep = 4242;
        assert_int_equal(proto_merkle_tree_consistency_proof(b->trees[10], 3, 11, got, &keep), -EINVAL);
        assert_int_equal(proto_merkle_tree_consistency_proof(b->trees[10], 9, 8, got, &keep), -EINVAL);
        assert_int_equal(keep, 4242);
        bf_free(b);
}

/* ---- Compact ranges: every [from, to) of every tree up to RANGE_MAX ---- */

static uint64_t lowbit(uint64_t x) {
        return x & (~x + 1);
}

static void test_range(void **state) {
        bf *b = bf_new();
        uint8_t (*mth)[RANGE_MAX + 1][HL] = calloc(RANGE_MAX + 1, sizeof *mth);
        uint8_t left[MAXP][HL], right[MAXP][HL], l2[MAXP][HL], r2[MAXP][HL], bad[MAXP + 1][HL];
        uint8_t leaves[RANGE_MAX][HL];
        size_t checked = 0;

        /* mth[a][b] = MTH(D[a:b]) by the reference, for the expected hashes. */
        assert_non_null(mth);
        for (size_t a = 0; a < RANGE_MAX; a++)
                for (size_t e = a + 1; e <= RANGE_MAX; e++)
                        ref_mth(b->leaves + a, e - a, mth[a][e]);

        for (size_t m = 1; m <= RANGE_MAX; m++)
                for (size_t from = 0; from < m; from++)
                        for (size_t to = from + 1; to <= m; to++) {
                                const uint8_t *root = b->roots[m];
                                size_t nl = 0, nr = 0, nl2 = 0, nr2 = 0, p = 0, i = 0, count = to - from;

                                assert_int_equal(proto_merkle_tree_range_proof(b->trees[m], from, to, m, left, &nl,
                                                                               right, &nr),
                                                 0);
                                /* The same from a larger tree (historical). */
                                assert_int_equal(proto_merkle_tree_range_proof(b->trees[BF_MAX], from, to, m, l2, &nl2,
                                                                               r2, &nr2),
                                                 0);
                                assert_int_equal(nl2, nl);
                                assert_int_equal(nr2, nr);
                                assert_memory_equal(l2, left, nl * HL);
                                assert_memory_equal(r2, right, nr * HL);

                                /* Each hash is the MTH merkle.h says it is:
                                 * left, one per bit of from, high first ... */
                                assert_int_equal(nl, (size_t) __builtin_popcountll(from));
                                for (size_t k = 64; k-- > 0;)
                                        if (from & ((size_t) 1 << k)) {
                                                assert_memory_equal(left[i++], mth[p][p + ((size_t) 1 << k)], HL);
                                                p += (size_t) 1 << k;
                                        }
                                /* ... right, growing from `to`, then the edge. */
                                for (p = to, i = 0; p < m && lowbit(p) <= m - p; p += lowbit(p)) {
                                        assert_true(i < nr);
                                        assert_memory_equal(right[i++], mth[p][p + lowbit(p)], HL);
                                }
                                if (p < m) {
                                        assert_true(i < nr);
                                        assert_memory_equal(right[i++], mth[p][m], HL);
                                }
                                assert_int_equal(i, nr);

                                memcpy(leaves, b->leaves + from, count * HL);
                                assert_int_equal(
                                        proto_merkle_verify_range(from, to, m, leaves, left, nl, right, nr, root), 0);
                                checked++;

                                /* A changed leaf, first and last. */
                                leaves[0][3] ^= 0x10;
                                assert_int_equal(
                                        proto_merkle_verify_range(from, to, m, leaves, left, nl, right, nr, root),
                                        -EBADMSG);
                                leaves[0][3] ^= 0x10;
                                if (count > 1) {
                                        leaves[count - 1][30] ^= 0x01;
                                        assert_int_equal(proto_merkle_verify_range(from, to, m, leaves, left, nl, right,
                                                                                   nr, root),
                                                         -EBADMSG);
                                        leaves[count - 1][30] ^= 0x01;
                                }
                                /* The leaves of the positions one to the left. */
                                if (from > 0)
                                        assert_int_equal(proto_merkle_verify_range(from, to, m, b->leaves + from - 1,
                                                                                   left, nl, right, nr, root),
                                                         -EBADMSG);
                                /* A flipped byte in one proof hash, taking
                                 * each position in turn across the ranges. */
                                if (nl + nr > 0) {
                                        size_t j = (from * 7 + to * 3 + m) % (nl + nr);

                                        memcpy(bad, j < nl ? left : right, (j < nl ? nl : nr) * HL);
                                        bad[j < nl ? j : j - nl][j % HL] ^= 0x02;
                                        assert_int_equal(j < nl ? proto_merkle_verify_range(from, to, m, leaves, bad,
                                                                                            nl, right, nr, root)
                                                                : proto_merkle_verify_range(from, to, m, leaves, left,
                                                                                            nl, bad, nr, root),
                                                         -EBADMSG);
                                }
                                /* Wrong counts: the shape is fixed by (from, to, m). */
                                if (nl > 0)
                                        assert_int_equal(proto_merkle_verify_range(from, to, m, leaves, left, nl - 1,
                                                                                   right, nr, root),
                                                         -EBADMSG);
                                memcpy(bad, left, nl * HL);
                                assert_int_equal(
                                        proto_merkle_verify_range(from, to, m, leaves, bad, nl + 1, right, nr, root),
                                        -EBADMSG);
                                if (nr > 0)
                                        assert_int_equal(proto_merkle_verify_range(from, to, m, leaves, left, nl, right,
                                                                                   nr - 1, root),
                                                         -EBADMSG);
                                memcpy(bad, right, nr * HL);
                                assert_int_equal(
                                        proto_merkle_verify_range(from, to, m, leaves, left, nl, bad, nr + 1, root),
                                        -EBADMSG);
                                /* Another size's root; one leaf fewer. */
                                assert_int_equal(proto_merkle_verify_range(from, to, m, leaves, left, nl, right, nr,
                                                                           b->roots[m + 1]),
                                                 -EBADMSG);
                                if (count > 1)
                                        assert_int_equal(proto_merkle_verify_range(from, to - 1, m, leaves, left, nl,
                                                                                   right, nr, root),
                                                         -EBADMSG);
                        }
        print_message("range: %zu compact ranges verified\n", checked);

        /* Every position of a flipped byte, for one range with both sides
         * long: m = 40, [5, 6) has left D[0:4], D[4:5] and right D[6:8],
         * D[8:16], D[16:32] and the edge D[32:40]. */
        {
                size_t nl = 0, nr = 0;

                assert_int_equal(proto_merkle_tree_range_proof(b->trees[40], 5, 6, 40, left, &nl, right, &nr), 0);
                assert_int_equal(nl, 2);
                assert_int_equal(nr, 4);
                for (size_t j = 0; j < nl; j++)
                        for (size_t byte = 0; byte < HL; byte++) {
                                memcpy(bad, left, nl * HL);
                                bad[j][byte] ^= 0x80;
                                assert_int_equal(proto_merkle_verify_range(5, 6, 40, b->leaves + 5, bad, nl, right, nr,
                                                                           b->roots[40]),
                                                 -EBADMSG);
                        }
                for (size_t j = 0; j < nr; j++)
                        for (size_t byte = 0; byte < HL; byte++) {
                                memcpy(bad, right, nr * HL);
                                bad[j][byte] ^= 0x80;
                                assert_int_equal(proto_merkle_verify_range(5, 6, 40, b->leaves + 5, left, nl, bad, nr,
                                                                           b->roots[40]),
                                                 -EBADMSG);
                        }
        }

        /* Impossible arguments. */
        size_t keep_l = 4242, keep_r = 4242;
        assert_int_equal(proto_merkle_tree_range_proof(b->trees[10], 3, 3, 10, left, &keep_l, right, &keep_r), -EINVAL);
        assert_int_equal(proto_merkle_tree_range_proof(b->trees[10], 4, 3, 10, left, &keep_l, right, &keep_r), -EINVAL);
        assert_int_equal(proto_merkle_tree_range_proof(b->trees[10], 3, 11, 10, left, &keep_l, right, &keep_r), -EINVAL);
        assert_int_equal(proto_merkle_tree_range_proof(b->trees[10], 3, 5, 11, left, &keep_l, right, &keep_r), -EINVAL);
        assert_int_equal(keep_l, 4242);
        assert_int_equal(keep_r, 4242);
        assert_int_equal(proto_merkle_verify_range(3, 3, 10, b->leaves, left, 0, right, 0, b->roots[10]), -EINVAL);
        assert_int_equal(proto_merkle_verify_range(3, 11, 10, b->leaves, left, 0, right, 0, b->roots[10]), -EINVAL);
        free(mth);
        bf_free(b);
}

/* The example written in merkle.h: m = 13, [5, 7). */
static void test_range_doc_example(void **state) {
        bf *b = bf_new();
        uint8_t left[MAXP][HL], right[MAXP][HL], want[HL];
        size_t nl = 0, nr = 0;

        assert_int_equal(proto_merkle_tree_range_proof(b->trees[13], 5, 7, 13, left, &nl, right, &nr), 0);
        assert_int_equal(nl, 2);
        assert_int_equal(nr, 2);
        ref_mth(b->leaves, 4, want);
        assert_memory_equal(left[0], want, HL);
        assert_memory_equal(left[1], b->leaves[4], HL);
        assert_memory_equal(right[0], b->leaves[7], HL);
        ref_mth(b->leaves + 8, 5, want);
        assert_memory_equal(right[1], want, HL);
        assert_int_equal(proto_merkle_verify_range(5, 7, 13, b->leaves + 5, left, nl, right, nr, b->roots[13]), 0);
        bf_free(b);
}

/* ---- Scale: a million leaves ---- */

static double now_s(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

#define MILLION 1000000u

static void test_million(void **state) {
        uint8_t (*leaves)[HL] = malloc((size_t) MILLION * HL);
        uint8_t root[HL], want[HL], proof[MAXP][HL], rm[HL];
        uint8_t left[MAXP][HL], right[MAXP][HL];
        proto_merkle_tree *t = NULL;
        size_t n = 0, nl = 0, nr = 0;
        double t0, t1;

        /* To the tree a leaf hash is 32 opaque bytes: distinct patterns do,
         * without a million more digests (slow under ASan). */
        assert_non_null(leaves);
        for (uint32_t i = 0; i < MILLION; i++)
                for (size_t j = 0; j < HL; j++)
                        leaves[i][j] = (uint8_t) ((i >> (8 * (j % 4))) ^ (j * 37));

        assert_int_equal(proto_merkle_tree_new(&t), 0);
        t0 = now_s();
        for (size_t i = 0; i < MILLION; i++)
                assert_int_equal(proto_merkle_tree_append(t, leaves[i]), 0);
        t1 = now_s();
        print_message("appended %u leaf hashes in %.3f s (%.0f ns each)\n", MILLION, t1 - t0,
                      (t1 - t0) * 1e9 / MILLION);

        t0 = now_s();
        assert_int_equal(proto_merkle_tree_root(t, root), 0);
        t1 = now_s();
        print_message("root of %u leaves in %.1f us\n", MILLION, (t1 - t0) * 1e6);
        ref_mth(leaves, MILLION, want);
        assert_memory_equal(root, want, HL);

        /* Proofs at the current and at a past size are cheap and hold. */
        const uint64_t idx[] = { 0, 1, 524287, 524288, 999998, 999999 };
        for (size_t i = 0; i < sizeof idx / sizeof idx[0]; i++) {
                assert_int_equal(proto_merkle_tree_inclusion_proof(t, idx[i], MILLION, proof, &n), 0);
                assert_int_equal(proto_merkle_verify_inclusion(leaves[idx[i]], idx[i], MILLION, proof, n, root), 0);
        }
        assert_int_equal(proto_merkle_tree_root_at(t, 777777, rm), 0);
        assert_int_equal(proto_merkle_tree_inclusion_proof(t, 123456, 777777, proof, &n), 0);
        assert_int_equal(proto_merkle_verify_inclusion(leaves[123456], 123456, 777777, proof, n, rm), 0);
        assert_int_equal(proto_merkle_tree_consistency_proof(t, 777777, MILLION, proof, &n), 0);
        assert_int_equal(proto_merkle_verify_consistency(777777, MILLION, rm, root, proof, n), 0);
        assert_int_equal(proto_merkle_tree_range_proof(t, 333333, 333400, MILLION, left, &nl, right, &nr), 0);
        assert_int_equal(proto_merkle_verify_range(333333, 333400, MILLION, leaves + 333333, left, nl, right, nr, root),
                         0);

        proto_merkle_tree_free(t);
        free(leaves);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hashes),
                cmocka_unit_test(test_vector_roots),
                cmocka_unit_test(test_vector_inclusion),
                cmocka_unit_test(test_vector_consistency),
                cmocka_unit_test(test_bf_roots),
                cmocka_unit_test(test_bf_inclusion),
                cmocka_unit_test(test_bf_consistency),
                cmocka_unit_test(test_range),
                cmocka_unit_test(test_range_doc_example),
                cmocka_unit_test(test_million),
        };

        return cmocka_run_group_tests(tests, ref_setup, ref_teardown);
}
