/* Opening and closing the audit log (audit.h): the state and publish
 * directories, the log key, recovery at start (audit-replay.c,
 * audit-tree.c), a fresh checkpoint, then the committer, publisher and
 * retainer threads. What each audit*.c file does: audit-int.h. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit-int.h"
#include "log.h"
#include "note.h"
#include "origin.h"

#define LOG_KEY_OWNER "log"

/* The log key: provsign/<ns>/log/<gen>, ns the key namespace (docs/fleet.md). */
static int find_or_create_log_key(agent_audit *a, const agent_config *cfg, bool *ret_created, char **ret_error) {
        keys_key *best = NULL;
        uint32_t best_gen = 0;
        char ns[KEYS_NAMESPACE_MAX + 1], label[KEYS_LABEL_MAX];
        *ret_created = false;
        if (cfg->key_namespace)
                snprintf(ns, sizeof ns, "%s", cfg->key_namespace);
        else if (keys_namespace_from_origin(cfg->log_origin, ns) < 0)
                return agent_errorf(ret_error, -EINVAL, "%s: set key_namespace (log_origin does not start with one)",
                                    cfg->path);
        for (size_t i = 0; i < keys_store_count(a->store); i++) {
                keys_key *k = keys_store_get(a->store, i);
                char owner[65];
                uint32_t gen;
                if (keys_label_parse(keys_key_label(k), ns, owner, sizeof owner, &gen) < 0 ||
                    strcmp(owner, LOG_KEY_OWNER) != 0)
                        continue;
                if (keys_key_algorithm(k) != PROVSIGN__KEY_ALGORITHM__ECDSA_P256)
                        continue; /* note signatures of type 0x02 are ECDSA P-256 */
                if (gen > best_gen) {
                        best = k;
                        best_gen = gen;
                }
        }
        *ret_created = false;
        if (!best) {
                int r = keys_label_format(label, sizeof label, ns, LOG_KEY_OWNER, 1);
                if (r >= 0)
                        r = keys_generate(a->store, PROVSIGN__KEY_ALGORITHM__ECDSA_P256, label, &best, ret_error);
                if (r < 0)
                        return r;
                *ret_created = true;
        }
        a->log_key = best;
        size_t spki_len;
        const uint8_t *spki = keys_key_spki(best, &spki_len);
        int r = proto_note_key_hash(spki, spki_len, a->log_key_hash);
        if (r < 0)
                return r;
        return proto_note_verifier_key(a->origin, spki, spki_len, &a->verifier_key);
}

/* The log is only as trustworthy as its directory: nobody but the agent may
 * write there. */
static int check_dir(const char *path, char **ret_error) {
        struct stat st;
        if (stat(path, &st) < 0)
                return agent_errorf(ret_error, -errno, "state_dir %s: %s", path, strerror(errno));
        if (!S_ISDIR(st.st_mode))
                return agent_errorf(ret_error, -ENOTDIR, "state_dir %s is not a directory", path);
        if (st.st_mode & 0022)
                return agent_errorf(ret_error, -EPERM, "state_dir %s is group- or world-writable (mode %04o); refusing",
                              path, (unsigned) (st.st_mode & 07777));
        return 0;
}

/* publish_dir (default <state_dir>/tlog): created if needed, and like the
 * state directory writable by the agent only. */
static int open_publish_dir(agent_audit *a, const agent_config *cfg, char **ret_error) {
        int r;
        if (cfg->publish_dir)
                a->pub_dir = strdup(cfg->publish_dir);
        else if (asprintf(&a->pub_dir, "%s/tlog", cfg->state_dir) < 0)
                a->pub_dir = NULL;
        if (!a->pub_dir)
                return -ENOMEM;
        if (mkdir(a->pub_dir, 0755) < 0 && errno != EEXIST)
                return agent_errorf(ret_error, -errno, "cannot create publish_dir %s: %s", a->pub_dir, strerror(errno));
        r = check_dir(a->pub_dir, ret_error);
        if (r < 0)
                return r;
        a->pub_fd = open(a->pub_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (a->pub_fd < 0)
                return agent_errorf(ret_error, -errno, "%s: %s", a->pub_dir, strerror(errno));
        return proto_tile_store_open(a->pub_fd, &a->tiles);
}

int audit_open(const agent_config *cfg, keys_store *store, audit_key_event_fn on_key_event, void *ctx,
               agent_audit **ret, char **ret_error) {
        int r;
        if (!cfg->log_origin)
                return agent_errorf(ret_error, -EINVAL,
                              "%s: log_origin is not set: add \"log_origin = <this host's name>/provsign\" under [agent] "
                              "(it names this log in its signed checkpoints and cannot change once the log exists)",
                              cfg->path);
        r = check_dir(cfg->state_dir, ret_error);
        if (r < 0)
                return r;

        agent_audit *a = calloc(1, sizeof *a);
        if (!a)
                return -ENOMEM;
        pthread_mutex_init(&a->lock, NULL);
        pthread_mutex_init(&a->purge_lock, NULL);
        pthread_mutex_init(&a->bundle_lock, NULL);
        pthread_cond_init(&a->retain_cond, NULL);
        pthread_cond_init(&a->cond, NULL);
        pthread_cond_init(&a->pub_cond, NULL);
        pthread_cond_init(&a->commit_cond, NULL);
        a->dir_fd = a->seg_fd = a->efd = a->pub_fd = -1;
        a->store = store;
        a->on_key_event = on_key_event;
        a->on_key_event_ctx = ctx;
        if (asprintf(&a->dir, "%s/log", cfg->state_dir) < 0) {
                a->dir = NULL;
                r = -ENOMEM;
                goto fail;
        }
        a->origin = strdup(cfg->log_origin);
        if (!a->origin) {
                r = -ENOMEM;
                goto fail;
        }
        if (mkdir(a->dir, 0700) < 0 && errno != EEXIST) {
                r = agent_errorf(ret_error, -errno, "cannot create %s: %s", a->dir, strerror(errno));
                goto fail;
        }
        r = check_dir(a->dir, ret_error);
        if (r < 0)
                goto fail;
        a->dir_fd = open(a->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        a->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (a->dir_fd < 0 || a->efd < 0) {
                r = agent_errorf(ret_error, -errno, "%s: %s", a->dir, strerror(errno));
                goto fail;
        }
        r = agent_origin_bind(a->dir_fd, a->dir, cfg->log_origin, cfg->path, ret_error);
        if (r < 0)
                goto fail;

        r = audit_replay(a, ret_error);
        if (r < 0)
                goto fail;
        r = audit_index_and_key_events(a, cfg->state_dir, ret_error);
        if (r < 0)
                goto fail;
        a->committed = a->written = a->next_seq;

        bool created;
        r = find_or_create_log_key(a, cfg, &created, ret_error);
        if (r < 0)
                goto fail;
        r = open_publish_dir(a, cfg, ret_error);
        if (r >= 0)
                r = audit_tree_open(a, ret_error);
        if (r < 0)
                goto fail;
        a->publish_entries = cfg->publish_entries;
        if (a->publish_entries) {
                /* Bundles from the published size's bundle on, or from the
                 * start when the last complete one is missing (turned on
                 * for a log that has none: a backfill, by the publisher). */
                uint64_t N = a->published / PROTO_TILE_WIDTH;
                char path[PROTO_TILE_PATH_MAX];
                if (N > 0 && proto_tile_entries_path(N - 1, PROTO_TILE_WIDTH, path, sizeof path) == 0 &&
                    faccessat(a->pub_fd, path, F_OK, 0) == 0)
                        a->bundle_seq = N * PROTO_TILE_WIDTH;
        }
        /* A fresh checkpoint for what is on disk, before anything new. */
        uint8_t root[32];
        r = proto_merkle_tree_root_at(a->tree, a->committed, root);
        if (r >= 0)
                r = audit_sign_checkpoint(a, a->committed, root, &a->checkpoint);
        if (r < 0) {
                r = agent_errorf(ret_error, r, "cannot sign a checkpoint with the log key: %s", strerror(-r));
                goto fail;
        }
        {
                proto_merkle_tiles *b = NULL;
                char *note = NULL;
                /* Entry bundles are the publisher's (a backfill after
                 * publish_entries is turned on must not delay the start). */
                r = audit_publish_prepare(a, a->committed, &b, &note);
                if (r >= 0)
                        r = audit_publish_write(a, b, note, false);
                free(note);
                if (r < 0) {
                        proto_merkle_tiles_free(b);
                        r = agent_errorf(ret_error, r, "%s: cannot publish the checkpoint and tiles: %s", a->pub_dir,
                                         strerror(-r));
                        goto fail;
                }
                audit_publish_finish(a, b, r);
        }
        if (audit_ckpt_start(a) < 0)
                log_warning("audit log: no checkpoint signer thread; each group's checkpoint is signed after its sync");
        r = -pthread_create(&a->committer, NULL, audit_committer_main, a);
        if (r < 0)
                goto fail;
        a->committer_started = true;
        (void) pthread_setname_np(a->committer, "provsign-commit"); /* top -H, tests/bench */
        r = -pthread_create(&a->publisher, NULL, audit_publisher_main, a);
        if (r < 0)
                goto fail;
        a->publisher_started = true;
        (void) pthread_setname_np(a->publisher, "provsign-pub");

        if (created) {
                size_t spki_len;
                const uint8_t *spki = keys_key_spki(a->log_key, &spki_len);
                Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
                e.event = PROVSIGN__AUDIT_EVENT__KEY_CREATE;
                e.principal = (char *) LOG_KEY_OWNER;
                e.keyid = (char *) keys_key_id_hex(a->log_key);
                e.generation = 1;
                e.algorithm = PROVSIGN__KEY_ALGORITHM__ECDSA_P256;
                e.public_key_der.data = (uint8_t *) spki;
                e.public_key_der.len = spki_len;
                e.message = (char *) "log key";
                uint64_t seq;
                r = audit_append(a, &e, &seq, NULL, NULL);
                if (r < 0)
                        goto fail;
                log_notice("generated log key %s", keys_key_id_hex(a->log_key));
        }
        audit_purge_recover(a);
        a->retain_s = cfg->retain_entries_s;
        if (a->retain_s) {
                r = -pthread_create(&a->retainer, NULL, audit_retainer_main, a);
                if (r < 0)
                        goto fail;
                a->retainer_started = true;
                (void) pthread_setname_np(a->retainer, "provsign-retain");
        }
        log_info("audit log %s: %" PRIu64 " entries", a->dir, a->committed);
        *ret = a;
        return 0;
fail:
        audit_close(a);
        return r;
}

void audit_close(agent_audit *a) {
        if (!a)
                return;
        if (a->retainer_started) {
                pthread_mutex_lock(&a->lock);
                a->retain_stop = true;
                pthread_cond_signal(&a->retain_cond);
                pthread_mutex_unlock(&a->lock);
                pthread_join(a->retainer, NULL);
        }
        if (a->committer_started) {
                pthread_mutex_lock(&a->lock);
                a->stopping = true;
                pthread_cond_signal(&a->cond);
                pthread_mutex_unlock(&a->lock);
                pthread_join(a->committer, NULL);
        }
        audit_ckpt_stop(a); /* after the committer's last commit */
        if (a->publisher_started) {
                pthread_mutex_lock(&a->lock);
                a->pub_stop = true;
                pthread_cond_signal(&a->pub_cond);
                pthread_mutex_unlock(&a->lock);
                pthread_join(a->publisher, NULL);
        }
        if (a->seg_fd >= 0)
                close(a->seg_fd);
        if (a->dir_fd >= 0)
                close(a->dir_fd);
        if (a->efd >= 0)
                close(a->efd);
        proto_merkle_tree_free(a->tree); /* before the store its tiles come from */
        proto_tile_store_free(a->tiles);
        if (a->pub_fd >= 0)
                close(a->pub_fd);
        free(a->pub_dir);
        index_close(a->index);
        free(a->pending);
        free(a->spare);
        free(a->checkpoint);
        free(a->verifier_key);
        free(a->origin);
        free(a->dir);
        pthread_mutex_destroy(&a->lock);
        pthread_mutex_destroy(&a->purge_lock);
        pthread_mutex_destroy(&a->bundle_lock);
        pthread_cond_destroy(&a->retain_cond);
        pthread_cond_destroy(&a->cond);
        pthread_cond_destroy(&a->pub_cond);
        pthread_cond_destroy(&a->commit_cond);
        free(a);
}

const keys_key *audit_log_key(const agent_audit *a) {
        return a->log_key;
}
const char *audit_verifier_key(const agent_audit *a) {
        return a->verifier_key;
}
const char *audit_origin(const agent_audit *a) {
        return a->origin;
}
