/* Offline verification of a published tlog-tiles directory
 * (docs/log-tiles.md): what `provsign audit verify --tiles DIR` checks.
 *
 *   1. DIR/checkpoint is a checkpoint signed by the log key;
 *   2. the tiles of its tree (DIR/tile/<L>/..., tiles.h) are there, of the
 *      right lengths, and the tree hash recomputed from them equals the
 *      checkpoint's root (this covers the partial tiles of the right edge);
 *   3. every complete tile hashes to its entry in the level above (so each
 *      is proven by 2: a damaged tile is named);
 *   4. with a previous checkpoint (signed by the same key, same origin, no
 *      larger): a consistency proof computed from the tiles ties it to the
 *      checkpoint (a rewritten history fails);
 *   5. when DIR/tile/entries exists (publish_entries = yes): every entry of
 *      every entry bundle of the tree hashes to its leaf in the level-0
 *      tiles (a purged entry's stub to the leaf hash it carries), each
 *      bundle holds exactly its entries; a damaged bundle is named. A
 *      missing bundle is counted, not failed (bundles are a copy of the
 *      entries; the tree does not depend on them).
 *
 * The directory is only read (a read-only fd; the tile store's read
 * functions write nothing). Functions return 0 (verified), 1 (failed:
 * res->detail says why, naming the tile), or a negative errno for a local
 * error (res->detail says what could not be read); nothing prints. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "merkle.h"

struct client_tiles_result {
        char detail[512];
        char *origin; /* the checkpoint's origin, once verified */
        uint64_t size;
        uint8_t root[PROTO_MERKLE_HASH_LEN];
        bool has_previous;
        uint64_t previous_size;
        bool has_bundles;         /* tile/entries exists */
        uint64_t bundles_checked; /* bundles verified */
        uint64_t bundles_missing;
};

/* client_audit_tiles_verify: checks 1-5 on the directory dir_fd with the
 * log key log_key_pem ("PUBLIC KEY" PEM); previous (a checkpoint note) or
 * NULL. Free res with client_tiles_result_done() whatever the outcome. */
int client_audit_tiles_verify(int dir_fd, const char *log_key_pem, const char *previous,
                              struct client_tiles_result *res);

/* The same in two steps, for a caller that picks the log key by the
 * checkpoint's origin (audit verify --trust): DIR/checkpoint into *ret
 * (free(); 0, 1 when missing or too large, -errno; res->detail), then
 * checks 1-5 on that note. */
int client_audit_tiles_read_checkpoint(int dir_fd, struct client_tiles_result *res, char **ret);
int client_audit_tiles_verify_note(int dir_fd, const char *note, const char *log_key_pem, const char *previous,
                                   struct client_tiles_result *res);

void client_tiles_result_done(struct client_tiles_result *res);
