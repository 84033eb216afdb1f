/* provsign audit verify --tiles: see audit-tiles.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit-tiles.h"
#include "entry.h"
#include "receipt.h"
#include "tiles.h"

#define CHECKPOINT_FILE "checkpoint"
#define CHECKPOINT_MAX (64 * 1024)

static int failf(struct client_tiles_result *res, int r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(res->detail, sizeof res->detail, fmt, ap);
        va_end(ap);
        return r;
}

/* DIR/checkpoint into *ret (NUL-terminated). 0, 1 (missing or too
 * large), -errno. */
int client_audit_tiles_read_checkpoint(int dir_fd, struct client_tiles_result *res, char **ret) {
        int fd = openat(dir_fd, CHECKPOINT_FILE, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        char *buf = NULL;
        struct stat st;
        ssize_t n;

        if (fd < 0)
                return failf(res, errno == ENOENT ? 1 : -errno, "%s: %s", CHECKPOINT_FILE, strerror(errno));
        if (fstat(fd, &st) < 0) {
                int r = -errno;
                close(fd);
                return failf(res, r, "%s: %s", CHECKPOINT_FILE, strerror(-r));
        }
        if (!S_ISREG(st.st_mode) || st.st_size > CHECKPOINT_MAX) {
                close(fd);
                return failf(res, 1, "%s: not a regular file of at most %d bytes", CHECKPOINT_FILE, CHECKPOINT_MAX);
        }
        buf = malloc((size_t) st.st_size + 1);
        if (!buf) {
                close(fd);
                return -ENOMEM;
        }
        n = pread(fd, buf, (size_t) st.st_size, 0);
        if (n < 0) {
                int r = -errno;
                close(fd);
                free(buf);
                return failf(res, r, "%s: %s", CHECKPOINT_FILE, strerror(-r));
        }
        close(fd);
        buf[n] = '\0';
        *ret = buf;
        return 0;
}

/* A tile read's error as the result: a missing or damaged tile is a
 * failed verification, anything else a local error. */
static int tile_error(proto_tile_store *s, int r, struct client_tiles_result *res) {
        const char *bad = proto_tile_store_bad(s);

        if (r == -ENOENT)
                return failf(res, 1, "%s is missing", *bad ? bad : "a tile");
        if (r == -EBADMSG)
                return failf(res, 1, "%s is damaged: it does not hash to its entry in the level above%s",
                             *bad ? bad : "a tile", strstr(bad, ".p/") ? " (or has the wrong length)" : "");
        return failf(res, r, "reading %s: %s", *bad ? bad : "the tiles", strerror(-r));
}

/* Checks 2 and 3 over the open tree. */
static int verify_tree(proto_merkle_tree *t, proto_tile_store *s, struct client_tiles_result *res) {
        uint8_t got[PROTO_MERKLE_HASH_LEN];
        char names[384];
        int r = proto_merkle_tree_root_at(t, res->size, got);

        if (r < 0)
                return tile_error(s, r, res);
        if (memcmp(got, res->root, sizeof got) != 0) {
                proto_tile_partial_paths(res->size, names, sizeof names);
                return failf(res, 1,
                             "the tiles do not hash to the checkpoint's root (%" PRIu64
                             " entries): one of %s is damaged",
                             res->size, *names ? names : "the tiles");
        }
        r = proto_merkle_tree_check_all_tiles(t);
        return r < 0 ? tile_error(s, r, res) : 0;
}

/* Check 5 on bundle N of w entries: each entry hashes to its leaf in the
 * level-0 tile N (read again: check 3 proved it). */
static int verify_bundle(proto_tile_store *s, uint64_t N, unsigned w, struct client_tiles_result *res) {
        uint8_t leaves[PROTO_TILE_WIDTH][PROTO_TILE_HASH_LEN], h[PROTO_MERKLE_HASH_LEN];
        char path[PROTO_TILE_PATH_MAX];
        uint8_t *buf = NULL;
        size_t len = 0;
        int r = proto_tile_entries_path(N, w, path, sizeof path);

        if (r < 0)
                return r;
        r = proto_tile_store_read_bundle(s, N, w, &buf, &len);
        if (r == -ENOENT) {
                res->bundles_missing++;
                return 0;
        }
        if (r == -EBADMSG)
                return failf(res, 1, "%s is damaged: not a file of at most %u entries", path, w);
        if (r < 0)
                return failf(res, r, "reading %s: %s", path, strerror(-r));
        r = proto_tile_store_read(s, 0, N, w, leaves);
        if (r < 0)
                r = failf(res, r == -ENOENT || r == -EBADMSG ? 1 : r, "reading the leaf tile of %s: %s", path,
                          strerror(-r));
        proto_cursor c = proto_cursor_make(buf, len);
        for (unsigned i = 0; i < w && r == 0; i++) {
                const uint8_t *entry;
                size_t n;
                int k = proto_tile_bundle_next(&c, &entry, &n);
                if (k < 0)
                        r = failf(res, 1, "%s is damaged: it holds %u well-formed entries of %u", path, i, w);
                else if ((k = proto_entry_leaf_hash(entry, n, h)) < 0)
                        r = failf(res, k, "hashing entry %" PRIu64 ": %s", N * PROTO_TILE_WIDTH + i, strerror(-k));
                else if (memcmp(h, leaves[i], sizeof h) != 0)
                        r = failf(res, 1,
                                  "%s is damaged: its entry %u (seq %" PRIu64
                                  ") does not hash to its leaf in the tiles",
                                  path, i, N * PROTO_TILE_WIDTH + i);
        }
        if (r == 0 && c.len != 0)
                r = failf(res, 1, "%s is damaged: bytes after its %u entries", path, w);
        if (r == 0)
                res->bundles_checked++;
        free(buf);
        return r;
}

/* Check 5, when the directory has entry bundles (publish_entries = yes). */
static int verify_bundles(int dir_fd, proto_tile_store *s, struct client_tiles_result *res) {
        struct stat st;

        if (fstatat(dir_fd, "tile/entries", &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT)
                        return 0;
                return failf(res, -errno, "tile/entries: %s", strerror(errno));
        }
        if (!S_ISDIR(st.st_mode))
                return failf(res, 1, "tile/entries is not a directory");
        res->has_bundles = true;
        uint64_t full = res->size / PROTO_TILE_WIDTH;
        unsigned edge = (unsigned) (res->size % PROTO_TILE_WIDTH);
        int r = 0;
        for (uint64_t N = 0; N < full && r == 0; N++)
                r = verify_bundle(s, N, PROTO_TILE_WIDTH, res);
        if (r == 0 && edge)
                r = verify_bundle(s, full, edge, res);
        return r;
}

/* Check 4. */
static int verify_previous(proto_merkle_tree *t, const char *previous, const char *pem,
                           struct client_tiles_result *res) {
        struct client_receipt_result prev = { 0 };
        uint8_t proof[PROTO_MERKLE_MAX_PROOF][PROTO_MERKLE_HASH_LEN];
        size_t n = 0;
        int r = client_checkpoint_verify_previous(previous, pem, res->origin, res->size, &prev);

        if (r > 0)
                r = failf(res, 1, "%s", prev.detail);
        else if (r == 0) {
                r = proto_merkle_tree_consistency_proof(t, prev.checkpoint_size, res->size, proof, &n);
                if (r >= 0)
                        r = proto_merkle_verify_consistency(prev.checkpoint_size, res->size, prev.root, res->root,
                                                            (const uint8_t (*)[PROTO_MERKLE_HASH_LEN]) proof, n);
                if (r == -EBADMSG)
                        r = failf(res, 1, "previous checkpoint: the log's history was rewritten: the tree of %" PRIu64
                                  " entries is not an extension of the previous tree of %" PRIu64,
                                  res->size, prev.checkpoint_size);
                else if (r < 0)
                        r = failf(res, r, "consistency proof: %s", strerror(-r));
                res->has_previous = r == 0;
                res->previous_size = prev.checkpoint_size;
        }
        client_receipt_result_done(&prev);
        return r;
}

int client_audit_tiles_verify(int dir_fd, const char *log_key_pem, const char *previous,
                              struct client_tiles_result *res) {
        char *note = NULL;
        int r = client_audit_tiles_read_checkpoint(dir_fd, res, &note);

        if (r == 0)
                r = client_audit_tiles_verify_note(dir_fd, note, log_key_pem, previous, res);
        free(note);
        return r;
}

int client_audit_tiles_verify_note(int dir_fd, const char *note, const char *log_key_pem, const char *previous,
                                   struct client_tiles_result *res) {
        struct client_receipt_result cp = { 0 };
        proto_tile_store *s = NULL;
        proto_merkle_tree *t = NULL;
        int r = client_checkpoint_verify(note, log_key_pem, &cp);

        if (r > 0)
                r = failf(res, 1, "checkpoint: %s", cp.detail);
        if (r == 0) {
                res->origin = strdup(cp.origin);
                res->size = cp.checkpoint_size;
                memcpy(res->root, cp.root, sizeof res->root);
                r = res->origin ? proto_tile_store_open(dir_fd, &s) : -ENOMEM;
        }
        if (r == 0) {
                r = proto_merkle_tree_open_tiles(s, res->size, &t);
                if (r < 0)
                        r = tile_error(s, r, res);
        }
        if (r == 0)
                r = verify_tree(t, s, res);
        if (r == 0)
                r = verify_bundles(dir_fd, s, res);
        if (r == 0 && previous)
                r = verify_previous(t, previous, log_key_pem, res);
        proto_merkle_tree_free(t);
        proto_tile_store_free(s);
        client_receipt_result_done(&cp);
        return r;
}

void client_tiles_result_done(struct client_tiles_result *res) {
        free(res->origin);
        res->origin = NULL;
}
