/* Writing the index: the rows of an entry, of a purge, and the indexer
 * thread that writes what the committer queued (see index-int.h). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "entry.h"
#include "index-int.h"
#include "log.h"
#include "names.h"
#include "provsign.pb-c.h"
#include "record.h"

/* Batches queued beyond this make the committer wait (the disk under the
 * index is slower than the log's). */
#define QUEUE_MAX (32u * 1024u * 1024u)
/* The indexer waits up to GATHER_MS after the first batch, or until
 * GATHER_BYTES are queued, to write several group commits at once. */
#define GATHER_MS 20
#define GATHER_BYTES (256u * 1024u)

static int64_t name_id(agent_index *x, int kind, const char *s, size_t len) {
        if (len == 0 || len > 256)
                return 0;
        for (size_t i = 0; i < x->n_names; i++)
                if (x->names[i].kind == kind && strlen(x->names[i].name) == len && memcmp(x->names[i].name, s, len) == 0)
                        return x->names[i].id;
        int64_t id = -1;
        sqlite3_stmt *st = x->ws[W_NAME_GET];
        sqlite3_bind_int(st, 1, kind);
        sqlite3_bind_text(st, 2, s, (int) len, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                id = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        if (rc != SQLITE_ROW) {
                st = x->ws[W_NAME_ADD];
                sqlite3_bind_int(st, 1, kind);
                sqlite3_bind_text(st, 2, s, (int) len, SQLITE_STATIC);
                rc = sqlite3_step(st);
                sqlite3_reset(st);
                if (rc != SQLITE_DONE)
                        return -1;
                id = sqlite3_last_insert_rowid(x->w);
        }
        if (x->n_names < NAME_CACHE) {
                char *copy = strndup(s, len);
                if (copy)
                        x->names[x->n_names++] = (name_slot){ .kind = kind, .name = copy, .id = id };
        }
        return id;
}

int index_step_done(agent_index *x, sqlite3_stmt *st) {
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? 0 : index_db_error(x->w, sqlite3_sql(st));
}

struct value_ctx {
        agent_index *x;
        uint64_t seq;
        int r;
};

static int add_digest(agent_index *x, const uint8_t *d, uint64_t seq) {
        int64_t prefix;
        memcpy(&prefix, d, sizeof prefix);
        sqlite3_stmt *st = x->ws[W_DIGEST];
        sqlite3_bind_int64(st, 1, prefix);
        sqlite3_bind_int64(st, 2, (int64_t) seq);
        return index_step_done(x, st);
}

static void on_annotation_value(void *ctx, const char *v, size_t len) {
        struct value_ctx *vc = ctx;
        uint8_t d[48];
        size_t n;
        int alg;
        if (vc->r >= 0 && proto_digest_spec_parse_n(v, len, &alg, d, &n) == 0)
                vc->r = add_digest(vc->x, d, vc->seq);
}

static bool is_key_event(int event) {
        return event == PROVSIGN__AUDIT_EVENT__KEY_CREATE || event == PROVSIGN__AUDIT_EVENT__KEY_ROTATE ||
               event == PROVSIGN__AUDIT_EVENT__KEY_REVOKE || event == PROVSIGN__AUDIT_EVENT__KEY_DESTROY;
}

/* One entry, inside the caller's transaction. Entry bytes that do not
 * parse are indexed by position only (they cannot be committed: audit.c
 * encodes them, and replay refuses such records). */
int index_add_entry(agent_index *x, uint64_t seg, uint64_t off, uint64_t seq, const uint8_t *entry, size_t n) {
        proto_entry_fields f;
        struct value_ctx vc = { .x = x, .seq = seq, .r = 0 };
        if (proto_entry_scan(entry, n, &f, on_annotation_value, &vc) < 0)
                memset(&f, 0, sizeof f);
        if (vc.r < 0)
                return vc.r;
        int64_t pid = name_id(x, NAME_PRINCIPAL, f.principal, f.principal_len);
        int64_t kid = name_id(x, NAME_KEYID, f.keyid, f.keyid_len);
        if (pid < 0 || kid < 0)
                return index_db_error(x->w, "names");
        sqlite3_stmt *st = x->ws[W_ENTRY];
        sqlite3_bind_int64(st, 1, (int64_t) seq);
        sqlite3_bind_int64(st, 2, (int64_t) seg);
        sqlite3_bind_int64(st, 3, (int64_t) off);
        sqlite3_bind_int64(st, 4, f.time_us);
        sqlite3_bind_int(st, 5, f.event);
        if (pid)
                sqlite3_bind_int64(st, 6, pid);
        else
                sqlite3_bind_null(st, 6);
        if (kid)
                sqlite3_bind_int64(st, 7, kid);
        else
                sqlite3_bind_null(st, 7);
        int r = index_step_done(x, st);
        if (r >= 0 && f.digest_len >= 8)
                r = add_digest(x, f.digest, seq);
        if (r >= 0 && is_key_event(f.event)) {
                sqlite3_bind_int64(x->ws[W_KEY_EVENT], 1, (int64_t) seq);
                r = index_step_done(x, x->ws[W_KEY_EVENT]);
        }
        return r;
}

/* Removes the rows of purged entries, inside the caller's transaction. A
 * row already gone (an index rebuilt since) is no error. */
static int forget_rows(agent_index *x, const forget_row *rows, size_t n) {
        int r = 0;
        for (size_t i = 0; i < n && r >= 0; i++) {
                sqlite3_stmt *st = x->ws[rows[i].digest ? W_FORGET_DIGEST : W_FORGET_ENTRY];
                if (rows[i].digest) {
                        sqlite3_bind_int64(st, 1, rows[i].prefix);
                        sqlite3_bind_int64(st, 2, (int64_t) rows[i].seq);
                } else
                        sqlite3_bind_int64(st, 1, (int64_t) rows[i].seq);
                r = index_step_done(x, st);
        }
        return r;
}

void index_set_size(agent_index *x, uint64_t size) {
        pthread_mutex_lock(&x->lock);
        x->size = size;
        pthread_mutex_unlock(&x->lock);
}

/* Indexes the batches of list in one transaction (the indexer thread, or
 * the caller when there is none). 0 or the error, logged; the index then
 * stops until the next start. */
static int write_batches(agent_index *x, const pending_batch *list) {
        uint64_t seq = 0;
        bool added = false;
        int r = index_mark_written(x);
        if (r >= 0)
                r = index_step_done(x, x->ws[W_BEGIN]);
        for (const pending_batch *b = list; b && r >= 0; b = b->next) {
                if (b->forget) {
                        r = forget_rows(x, (const forget_row *) b->data, b->len / sizeof(forget_row));
                        continue;
                }
                seq = b->first_seq;
                added = true;
                proto_cursor c = proto_cursor_make(b->data, b->len);
                while (r >= 0) {
                        size_t at = b->len - c.len;
                        const uint8_t *entry;
                        size_t n;
                        r = proto_record_next(&c, &entry, &n);
                        if (r == -ENODATA) {
                                r = 0;
                                break;
                        }
                        if (r >= 0)
                                r = index_add_entry(x, b->seg, b->off + at, seq, entry, n);
                        if (r >= 0)
                                seq++;
                }
        }
        if (r >= 0)
                r = index_step_done(x, x->ws[W_COMMIT]);
        if (r < 0) {
                (void) index_step_done(x, x->ws[W_ROLLBACK]);
                log_error("audit index: cannot index entries %" PRIu64 "..: %s; find and export read the entries after"
                          " %" PRIu64 " from the segments until the next start, which catches up", list->first_seq,
                          strerror(-r), x->size);
                return r;
        }
        if (added)
                index_set_size(x, seq);
        return 0;
}

static void free_batches(pending_batch *b) {
        while (b) {
                pending_batch *next = b->next;
                free(b);
                b = next;
        }
}

static void *indexer_main(void *arg) {
        agent_index *x = arg;
        pthread_mutex_lock(&x->qlock);
        for (;;) {
                x->idle = true;
                while (!x->head && !x->stopping)
                        pthread_cond_wait(&x->qcond, &x->qlock);
                x->idle = false;
                if (!x->head)
                        break;
                /* A transaction costs about as much as tens of entries:
                 * gather what a few more group commits bring (readers take
                 * the unindexed tail from the segments meanwhile). */
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_nsec += GATHER_MS * 1000000L;
                until.tv_sec += until.tv_nsec / 1000000000L;
                until.tv_nsec %= 1000000000L;
                while (!x->stopping && x->queued_bytes < GATHER_BYTES &&
                       pthread_cond_timedwait(&x->qcond, &x->qlock, &until) == 0)
                        ;
                pending_batch *list = x->head;
                x->head = x->tail = NULL;
                x->queued_bytes = 0;
                x->busy = true;
                pthread_cond_broadcast(&x->qdone); /* room for the committer */
                pthread_mutex_unlock(&x->qlock);
                int r = x->broken ? -EIO : write_batches(x, list);
                free_batches(list);
                pthread_mutex_lock(&x->qlock);
                if (r < 0)
                        x->broken = true;
                x->busy = false;
                pthread_cond_broadcast(&x->qdone);
        }
        pthread_mutex_unlock(&x->qlock);
        return NULL;
}

void index_start_thread(agent_index *x) {
        x->queued_size = x->size;
        x->thread_started = pthread_create(&x->thread, NULL, indexer_main, x) == 0;
        if (x->thread_started)
                (void) pthread_setname_np(x->thread, "indexer"); /* top -H, tests/bench/log-scale */
        if (!x->thread_started)
                log_warning("audit index: no indexer thread (%s): the committer indexes each group itself",
                            strerror(errno));
}

/* Writes what is queued and stops the indexer. */
void index_stop_thread(agent_index *x) {
        if (!x->thread_started)
                return;
        pthread_mutex_lock(&x->qlock);
        x->stopping = true;
        pthread_cond_signal(&x->qcond);
        pthread_mutex_unlock(&x->qlock);
        pthread_join(x->thread, NULL);
        x->thread_started = false;
}

void index_enqueue(agent_index *x, pending_batch *b) {
        if (x->tail)
                x->tail->next = b;
        else
                x->head = b;
        x->tail = b;
        x->queued_bytes += b->len;
        /* While it gathers, only a full queue ends the wait early: a wake
         * per group commit would put it back to sleep at once. */
        if (x->idle || x->queued_bytes >= GATHER_BYTES)
                pthread_cond_signal(&x->qcond);
}

void index_flush(agent_index *x) {
        pthread_mutex_lock(&x->qlock);
        while (x->head || x->busy)
                pthread_cond_wait(&x->qdone, &x->qlock);
        pthread_mutex_unlock(&x->qlock);
}

int index_add_records(agent_index *x, uint64_t seg_first, uint64_t off, uint64_t first_seq, const uint8_t *buf,
                      size_t len) {
        pending_batch *b = malloc(sizeof *b + len);
        int r = 0;
        if (!b)
                return -ENOMEM;
        *b = (pending_batch){ .seg = seg_first, .off = off, .first_seq = first_seq, .len = len };
        memcpy(b->data, buf, len);
        pthread_mutex_lock(&x->qlock);
        uint64_t expect = x->thread_started ? x->queued_size : x->size;
        if (x->broken || !x->w)
                r = -EIO;
        else if (first_seq != expect) {
                log_error("audit index: entry %" PRIu64 " follows %" PRIu64 " indexed entries; indexing stops until the"
                          " next start", first_seq, expect);
                x->broken = true;
                r = -EINVAL;
        }
        while (r == 0 && x->thread_started && x->queued_bytes > QUEUE_MAX && !x->broken)
                pthread_cond_wait(&x->qdone, &x->qlock);
        if (r == 0 && x->thread_started) {
                proto_cursor c = proto_cursor_make(buf, len);
                const uint8_t *entry;
                size_t n;
                while (proto_record_next(&c, &entry, &n) == 0)
                        x->queued_size++;
                index_enqueue(x, b);
                b = NULL;
        }
        pthread_mutex_unlock(&x->qlock);
        if (r == 0 && b) {
                /* No indexer thread: write it here. */
                r = write_batches(x, b);
                if (r < 0) {
                        pthread_mutex_lock(&x->qlock);
                        x->broken = true;
                        pthread_mutex_unlock(&x->qlock);
                }
        }
        free(b);
        return r;
}
