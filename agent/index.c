/* The log's index in SQLite and a reader of entries by seq (see index.h).
 * Everything allocated here is freed by index_close() / logreader_free().
 *
 * Schema (user_version INDEX_SCHEMA; any other value is rebuilt):
 *   names(id, kind, name)        principals (kind 0) and key ids (kind 1)
 *   entries(seq PRIMARY KEY, seg, off, time_us, event, principal, keyid)
 *                                principal/keyid: names.id or NULL;
 *                                indexed by principal and by keyid
 *   digests(prefix, seq)         first 8 bytes of a digest, as an integer
 *   key_events(seq)
 *   state(boot_id, clean)        the boot it was last written in; closed cleanly
 * About 60 bytes an entry on disk. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#include <systemd/sd-daemon.h>

#include "entry.h"
#include "frame.h"
#include "index.h"
#include "log.h"
#include "names.h"
#include "provsign.pb-c.h"
#include "record.h"

#define INDEX_SCHEMA 2
#define INDEX_SCHEMA_STR "2"
#define NAME_PRINCIPAL 0
#define NAME_KEYID 1
#define NAME_CACHE 64u
#define SYNC_TXN_ENTRIES 50000u  /* entries per transaction while catching up */
#define PROGRESS_EVERY_US 2000000 /* a progress line (and systemd extension) */
#define EXTEND_TIMEOUT_US 60000000

typedef struct name_slot {
        int kind;
        char *name;
        int64_t id;
} name_slot;

/* Statements of the writer connection (committer, or main thread at start). */
enum {
        W_ENTRY,
        W_DIGEST,
        W_KEY_EVENT,
        W_NAME_GET,
        W_NAME_ADD,
        W_FORGET_DIGEST,
        W_FORGET_ENTRY,
        W_BEGIN,
        W_COMMIT,
        W_ROLLBACK,
        W_N
};
static const char *const w_sql[W_N] = {
        [W_ENTRY] = "INSERT INTO entries(seq, seg, off, time_us, event, principal, keyid) VALUES (?,?,?,?,?,?,?)",
        [W_DIGEST] = "INSERT OR IGNORE INTO digests(prefix, seq) VALUES (?,?)",
        [W_KEY_EVENT] = "INSERT INTO key_events(seq) VALUES (?)",
        [W_NAME_GET] = "SELECT id FROM names WHERE kind = ? AND name = ?",
        [W_NAME_ADD] = "INSERT INTO names(kind, name) VALUES (?,?)",
        [W_FORGET_DIGEST] = "DELETE FROM digests WHERE prefix = ? AND seq = ?",
        [W_FORGET_ENTRY] = "UPDATE entries SET principal = NULL, keyid = NULL WHERE seq = ?",
        [W_BEGIN] = "BEGIN",
        [W_COMMIT] = "COMMIT",
        [W_ROLLBACK] = "ROLLBACK",
};

/* Statements of the reader connection. */
enum { R_LOCATE, R_TIME, R_DIGEST, R_PRINCIPAL, R_KEYID, R_PRINCIPAL_KEYID, R_KEY_EVENTS, R_N };
static const char *const r_sql[R_N] = {
        [R_LOCATE] = "SELECT seg, off FROM entries WHERE seq = ?",
        [R_TIME] = "SELECT time_us FROM entries WHERE seq = ?",
        [R_DIGEST] = "SELECT seq FROM digests WHERE prefix = ?1 AND seq >= ?2 AND seq < ?3 ORDER BY seq LIMIT ?4",
        [R_PRINCIPAL] = "SELECT seq FROM entries WHERE principal = (SELECT id FROM names WHERE kind = 0 AND name = ?1)"
                        " AND seq >= ?2 AND seq < ?3 ORDER BY seq LIMIT ?4",
        [R_KEYID] = "SELECT seq FROM entries WHERE keyid = (SELECT id FROM names WHERE kind = 1 AND name = ?1)"
                    " AND seq >= ?2 AND seq < ?3 ORDER BY seq LIMIT ?4",
        [R_PRINCIPAL_KEYID] = "SELECT seq FROM entries WHERE keyid = (SELECT id FROM names WHERE kind = 1 AND name = ?1)"
                              " AND seq >= ?2 AND seq < ?3"
                              " AND principal = (SELECT id FROM names WHERE kind = 0 AND name = ?5)"
                              " ORDER BY seq LIMIT ?4",
        [R_KEY_EVENTS] = "SELECT seq FROM key_events WHERE seq >= ? ORDER BY seq LIMIT ?",
};

static const char schema_sql[] =
        "CREATE TABLE names(id INTEGER PRIMARY KEY, kind INTEGER NOT NULL, name TEXT NOT NULL, UNIQUE(kind, name));"
        "CREATE TABLE entries(seq INTEGER PRIMARY KEY, seg INTEGER NOT NULL, off INTEGER NOT NULL,"
        " time_us INTEGER NOT NULL, event INTEGER NOT NULL, principal INTEGER, keyid INTEGER);"
        "CREATE TABLE digests(prefix INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY(prefix, seq)) WITHOUT ROWID;"
        "CREATE TABLE key_events(seq INTEGER PRIMARY KEY);"
        /* One row: the boot the index was last written in, and whether it
         * was closed cleanly (synced) since. */
        "CREATE TABLE state(boot_id TEXT NOT NULL, clean INTEGER NOT NULL);";
/* Created after a rebuild's bulk load (cheaper than kept up row by row). */
static const char secondary_sql[] =
        "CREATE INDEX IF NOT EXISTS entries_principal ON entries(principal);"
        "CREATE INDEX IF NOT EXISTS entries_keyid ON entries(keyid);";

/* A batch of records the committer handed over, waiting for the indexer;
 * or (forget) the rows of purged entries to remove: data holds len /
 * sizeof(forget_row) of them. */
typedef struct pending_batch {
        struct pending_batch *next;
        uint64_t seg, off, first_seq;
        bool forget;
        size_t len;
        uint8_t data[];
} pending_batch;

/* A row of a purged entry (index_forget): its entries row (digest false:
 * principal and key id cleared) or one of its digest prefixes. */
typedef struct forget_row {
        uint64_t seq;
        int64_t prefix;
        bool digest;
} forget_row;

/* Batches queued beyond this make the committer wait (the disk under the
 * index is slower than the log's). */
#define QUEUE_MAX (32u * 1024u * 1024u)
/* The indexer waits up to GATHER_MS after the first batch, or until
 * GATHER_BYTES are queued, to write several group commits at once. */
#define GATHER_MS 20
#define GATHER_BYTES (256u * 1024u)

struct agent_index {
        char *path;
        sqlite3 *w, *r;
        sqlite3_stmt *ws[W_N], *rs[R_N];
        pthread_mutex_t lock;    /* r, rs[], size */
        uint64_t size;
        name_slot names[NAME_CACHE]; /* writer only */
        size_t n_names;

        /* The indexer thread: writes what the committer queued, all the
         * batches queued at a time in one transaction, so the committer's
         * group commit never waits for SQLite. */
        pthread_t thread;
        bool thread_started;
        pthread_mutex_t qlock;   /* everything below */
        pthread_cond_t qcond, qdone;
        pending_batch *head, *tail;
        size_t queued_bytes;
        uint64_t queued_size;    /* the seq after the last queued record */
        bool busy, stopping;
        bool broken;             /* a write failed: no more until the next start */
        bool marked;             /* writer: state says "being written in this boot" (durably) */

        /* The purge's notes (index_forget), not queued yet: one purge at a
         * time, so no lock. */
        forget_row *forget;
        size_t n_forget, cap_forget;
};

static void close_db(sqlite3 **db, sqlite3_stmt **st, size_t n) {
        for (size_t i = 0; i < n; i++) {
                sqlite3_finalize(st[i]);
                st[i] = NULL;
        }
        sqlite3_close(*db);
        *db = NULL;
}

static void close_all(agent_index *x) {
        close_db(&x->r, x->rs, R_N);
        close_db(&x->w, x->ws, W_N);
        for (size_t i = 0; i < x->n_names; i++)
                free(x->names[i].name);
        x->n_names = 0;
}

static void stop_thread(agent_index *x);
static int mark_state(sqlite3 *db, bool clean);
static int exec(sqlite3 *db, const char *sql);

/* A clean close: everything in the WAL copied into the file and both
 * synced (synchronous=FULL makes the checkpoint fsync), then clean = 1, so
 * the next start in another boot (after a reboot) trusts the file. */
static void close_synced(agent_index *x) {
        sqlite3_stmt *st = NULL;
        bool done = false;
        if (!x->w || x->broken)
                return;
        if (sqlite3_exec(x->w, "PRAGMA synchronous=FULL", NULL, NULL, NULL) == SQLITE_OK &&
            sqlite3_prepare_v2(x->w, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
                done = sqlite3_column_int(st, 0) == 0; /* not busy */
        sqlite3_finalize(st);
        if (done && mark_state(x->w, true) >= 0)
                (void) exec(x->w, "PRAGMA synchronous=FULL"); /* the close's own checkpoint */
}

void index_close(agent_index *x) {
        if (!x)
                return;
        stop_thread(x);
        close_synced(x);
        close_all(x);
        pthread_mutex_destroy(&x->lock);
        pthread_mutex_destroy(&x->qlock);
        pthread_cond_destroy(&x->qcond);
        pthread_cond_destroy(&x->qdone);
        free(x->forget);
        free(x->path);
        free(x);
}

int index_open(const char *path, agent_index **ret) {
        agent_index *x = calloc(1, sizeof *x);
        if (!x)
                return -ENOMEM;
        x->path = strdup(path);
        if (!x->path) {
                free(x);
                return -ENOMEM;
        }
        pthread_mutex_init(&x->lock, NULL);
        pthread_mutex_init(&x->qlock, NULL);
        pthread_cond_init(&x->qcond, NULL);
        pthread_cond_init(&x->qdone, NULL);
        *ret = x;
        return 0;
}

static int db_error(sqlite3 *db, const char *what) {
        log_warning("audit index: %s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
        return -EIO;
}

static int exec(sqlite3 *db, const char *sql) {
        char *msg = NULL;
        int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
        if (rc != SQLITE_OK) {
                log_warning("audit index: %s: %s", sql, msg ? msg : sqlite3_errstr(rc));
                sqlite3_free(msg);
                return -EIO;
        }
        return 0;
}

static int open_conn(const char *path, int flags, sqlite3 **ret) {
        sqlite3 *db = NULL;
        int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK) {
                int r = db_error(db, path);
                sqlite3_close(db);
                return r;
        }
        sqlite3_busy_timeout(db, 5000);
        *ret = db;
        return 0;
}

static int prepare_all(sqlite3 *db, const char *const *sql, sqlite3_stmt **st, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (sqlite3_prepare_v3(db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st[i], NULL) != SQLITE_OK)
                        return db_error(db, sql[i]);
        return 0;
}

static int64_t mono_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- Opening, checking, rebuilding ---- */

static int unlink_files(const char *path) {
        char aux[4096];
        const char *const suffix[] = { "", "-wal", "-shm", "-journal" };
        for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
                snprintf(aux, sizeof aux, "%s%s", path, suffix[i]);
                if (unlink(aux) < 0 && errno != ENOENT)
                        return -errno;
        }
        return 0;
}

/* Reads the index's size; -EIO when the file is not an index of this
 * schema (or not a database at all). */
static int read_size(sqlite3 *db, uint64_t *ret) {
        sqlite3_stmt *st = NULL;
        int r = -EIO;
        if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK ||
            sqlite3_step(st) != SQLITE_ROW || sqlite3_column_int(st, 0) != INDEX_SCHEMA)
                goto out;
        sqlite3_finalize(st);
        if (sqlite3_prepare_v2(db, "SELECT max(seq) FROM entries", -1, &st, NULL) != SQLITE_OK ||
            sqlite3_step(st) != SQLITE_ROW)
                goto out;
        *ret = sqlite3_column_type(st, 0) == SQLITE_NULL ? 0 : (uint64_t) sqlite3_column_int64(st, 0) + 1;
        r = 0;
out:
        sqlite3_finalize(st);
        return r;
}

/* This boot's id ("" when unknown: never equal to a stored one). */
static void boot_id(char out[40]) {
        out[0] = '\0';
        FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
        if (!f)
                return;
        if (!fgets(out, 40, f))
                out[0] = '\0';
        fclose(f);
        out[strspn(out, "0123456789abcdef-")] = '\0'; /* goes into SQL text */
}

/* The index is written without fsync (synchronous=OFF: a process crash
 * loses nothing the OS has, a system crash may leave the file damaged).
 * -ESTALE when the system may have gone down while it was being written:
 * not closed cleanly, in another boot than this one (or no state row). */
static int check_clean(sqlite3 *db) {
        sqlite3_stmt *st = NULL;
        char now[40];
        int r = -ESTALE;
        boot_id(now);
        if (sqlite3_prepare_v2(db, "SELECT boot_id, clean FROM state", -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        if (sqlite3_step(st) == SQLITE_ROW) {
                const char *was = (const char *) sqlite3_column_text(st, 0);
                if (sqlite3_column_int(st, 1) || (now[0] && was && strcmp(was, now) == 0))
                        r = 0;
        }
        sqlite3_finalize(st);
        return r;
}

/* Records "being written in this boot", durably (synchronous=FULL for
 * this one commit), before any unsynced write: a system crash from now on
 * is seen by check_clean() at the next start. With clean = 1 at a clean
 * close, after a synced checkpoint. */
static int mark_state(sqlite3 *db, bool clean) {
        char now[40], sql[200];
        boot_id(now);
        snprintf(sql, sizeof sql,
                 "PRAGMA synchronous=FULL; BEGIN; DELETE FROM state; INSERT INTO state VALUES ('%s', %d); COMMIT;"
                 " PRAGMA synchronous=OFF;",
                 now, clean ? 1 : 0); /* boot_id: hex digits and dashes */
        return exec(db, sql);
}

/* Before the writer's first transaction of a run (off the start path when
 * the index is up to date: the indexer thread's first group). */
static int mark_written(agent_index *x) {
        int r = x->marked ? 0 : mark_state(x->w, false);
        x->marked = r >= 0;
        return r;
}

/* Opens the writer on an existing file; -EIO when it is not a usable index,
 * -ESTALE when it may be damaged by a system crash. */
static int open_existing(agent_index *x) {
        if (access(x->path, F_OK) < 0)
                return -ENOENT;
        int r = open_conn(x->path, SQLITE_OPEN_READWRITE, &x->w);
        if (r >= 0)
                r = exec(x->w, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;");
        if (r >= 0)
                r = read_size(x->w, &x->size);
        if (r >= 0)
                r = check_clean(x->w);
        if (r >= 0)
                r = exec(x->w, secondary_sql);
        if (r < 0)
                close_db(&x->w, x->ws, W_N);
        return r;
}

/* A fresh, empty file, in bulk-load mode (no journal, no sync: an
 * interrupted rebuild leaves user_version 0 and is rebuilt again). */
static int create_fresh(agent_index *x) {
        int r = unlink_files(x->path);
        if (r < 0) {
                log_error("audit index: cannot remove %s: %s", x->path, strerror(-r));
                return r;
        }
        /* Like the segments: 0600 (SQLite gives its -wal and -shm files the
         * database file's mode). */
        int fd = open(x->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
                r = -errno;
                log_error("audit index: cannot create %s: %s", x->path, strerror(-r));
                return r;
        }
        close(fd);
        r = open_conn(x->path, SQLITE_OPEN_READWRITE, &x->w);
        if (r >= 0)
                r = exec(x->w, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-65536;");
        if (r >= 0)
                r = exec(x->w, schema_sql);
        x->size = 0;
        return r;
}

/* After a bulk load: the secondary indexes, then the normal mode. */
static int finish_fresh(agent_index *x) {
        char now[40], sql[120];
        boot_id(now);
        snprintf(sql, sizeof sql, "DELETE FROM state; INSERT INTO state VALUES ('%s', 0);", now);
        int r = exec(x->w, secondary_sql);
        if (r >= 0)
                r = exec(x->w, sql);
        if (r >= 0)
                r = exec(x->w, "PRAGMA user_version=" INDEX_SCHEMA_STR "; PRAGMA cache_size=-2000;"
                               " PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;");
        return r;
}

static int open_reader(agent_index *x) {
        int r = open_conn(x->path, SQLITE_OPEN_READONLY, &x->r);
        if (r >= 0)
                r = prepare_all(x->r, r_sql, x->rs, R_N);
        return r;
}

/* ---- Writing ---- */

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

static int step_done(agent_index *x, sqlite3_stmt *st) {
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? 0 : db_error(x->w, sqlite3_sql(st));
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
        return step_done(x, st);
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
static int add_entry(agent_index *x, uint64_t seg, uint64_t off, uint64_t seq, const uint8_t *entry, size_t n) {
        proto_entry_fields f;
        struct value_ctx vc = { .x = x, .seq = seq, .r = 0 };
        if (proto_entry_scan(entry, n, &f, on_annotation_value, &vc) < 0)
                memset(&f, 0, sizeof f);
        if (vc.r < 0)
                return vc.r;
        int64_t pid = name_id(x, NAME_PRINCIPAL, f.principal, f.principal_len);
        int64_t kid = name_id(x, NAME_KEYID, f.keyid, f.keyid_len);
        if (pid < 0 || kid < 0)
                return db_error(x->w, "names");
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
        int r = step_done(x, st);
        if (r >= 0 && f.digest_len >= 8)
                r = add_digest(x, f.digest, seq);
        if (r >= 0 && is_key_event(f.event)) {
                sqlite3_bind_int64(x->ws[W_KEY_EVENT], 1, (int64_t) seq);
                r = step_done(x, x->ws[W_KEY_EVENT]);
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
                r = step_done(x, st);
        }
        return r;
}

static void set_size(agent_index *x, uint64_t size) {
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
        int r = mark_written(x);
        if (r >= 0)
                r = step_done(x, x->ws[W_BEGIN]);
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
                                r = add_entry(x, b->seg, b->off + at, seq, entry, n);
                        if (r >= 0)
                                seq++;
                }
        }
        if (r >= 0)
                r = step_done(x, x->ws[W_COMMIT]);
        if (r < 0) {
                (void) step_done(x, x->ws[W_ROLLBACK]);
                log_error("audit index: cannot index entries %" PRIu64 "..: %s; find and export read the entries after"
                          " %" PRIu64 " from the segments until the next start, which catches up", list->first_seq,
                          strerror(-r), x->size);
                return r;
        }
        if (added)
                set_size(x, seq);
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
                while (!x->head && !x->stopping)
                        pthread_cond_wait(&x->qcond, &x->qlock);
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

static void start_thread(agent_index *x) {
        x->queued_size = x->size;
        x->thread_started = pthread_create(&x->thread, NULL, indexer_main, x) == 0;
        if (x->thread_started)
                (void) pthread_setname_np(x->thread, "indexer"); /* top -H, tests/bench/log-scale */
        if (!x->thread_started)
                log_warning("audit index: no indexer thread (%s): the committer indexes each group itself",
                            strerror(errno));
}

/* Writes what is queued and stops the indexer. */
static void stop_thread(agent_index *x) {
        if (!x->thread_started)
                return;
        pthread_mutex_lock(&x->qlock);
        x->stopping = true;
        pthread_cond_signal(&x->qcond);
        pthread_mutex_unlock(&x->qlock);
        pthread_join(x->thread, NULL);
        x->thread_started = false;
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
                if (x->tail)
                        x->tail->next = b;
                else
                        x->head = b;
                x->tail = b;
                x->queued_bytes += len;
                proto_cursor c = proto_cursor_make(buf, len);
                const uint8_t *entry;
                size_t n;
                while (proto_record_next(&c, &entry, &n) == 0)
                        x->queued_size++;
                pthread_cond_signal(&x->qcond);
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

/* ---- Purged entries ---- */

static int forget_add(agent_index *x, uint64_t seq, bool digest, int64_t prefix) {
        if (x->n_forget == x->cap_forget) {
                size_t cap = x->cap_forget ? 2 * x->cap_forget : 1024;
                forget_row *p = realloc(x->forget, cap * sizeof *p);
                if (!p)
                        return -ENOMEM;
                x->forget = p;
                x->cap_forget = cap;
        }
        x->forget[x->n_forget++] = (forget_row){ .seq = seq, .prefix = prefix, .digest = digest };
        return 0;
}

struct forget_ctx {
        agent_index *x;
        int r;
};

static void on_forget_value(void *ctx, const char *v, size_t len) {
        struct forget_ctx *fc = ctx;
        uint8_t d[48];
        size_t n;
        int alg;
        int64_t prefix;
        if (fc->r >= 0 && proto_digest_spec_parse_n(v, len, &alg, d, &n) == 0) {
                memcpy(&prefix, d, sizeof prefix);
                fc->r = forget_add(fc->x, 0, true, prefix); /* seq set below */
        }
}

int index_forget(agent_index *x, const uint8_t *entry, size_t n) {
        proto_entry_fields f;
        size_t mark = x->n_forget;
        struct forget_ctx fc = { .x = x, .r = 0 };
        if (proto_entry_scan(entry, n, &f, on_forget_value, &fc) < 0) {
                x->n_forget = mark; /* indexed by position only: nothing to remove */
                return 0;
        }
        int64_t prefix = 0;
        if (fc.r >= 0 && f.digest_len >= 8) {
                memcpy(&prefix, f.digest, sizeof prefix);
                fc.r = forget_add(x, 0, true, prefix);
        }
        if (fc.r >= 0)
                fc.r = forget_add(x, 0, false, 0);
        if (fc.r < 0) {
                x->n_forget = mark;
                return fc.r;
        }
        for (size_t i = mark; i < x->n_forget; i++)
                x->forget[i].seq = f.seq;
        return 0;
}

void index_forget_drop(agent_index *x) {
        x->n_forget = 0;
}

int index_forget_commit(agent_index *x) {
        size_t len = x->n_forget * sizeof(forget_row);
        int r = 0;
        if (len == 0)
                return 0;
        pending_batch *b = malloc(sizeof *b + len);
        if (!b) {
                x->n_forget = 0;
                return -ENOMEM;
        }
        *b = (pending_batch){ .forget = true, .len = len };
        memcpy(b->data, x->forget, len);
        x->n_forget = 0;
        pthread_mutex_lock(&x->qlock);
        if (x->broken || !x->w || !x->thread_started) {
                /* Stopped (the next start does not bring the rows back:
                 * they stay until a rebuild, and find re-checks every
                 * candidate against the stub, which never matches); or no
                 * indexer thread, whose writes are the committer's. */
                r = -EIO;
        } else {
                if (x->tail)
                        x->tail->next = b;
                else
                        x->head = b;
                x->tail = b;
                x->queued_bytes += len;
                pthread_cond_signal(&x->qcond);
                b = NULL;
        }
        pthread_mutex_unlock(&x->qlock);
        free(b);
        return r;
}

/* ---- Catching up with the log at start ---- */

struct progress {
        const char *what;
        uint64_t from, to;
        int64_t started, last;
};

static void progress(struct progress *p, uint64_t at, bool force) {
        int64_t now = mono_us();
        if (!force && now - p->last < PROGRESS_EVERY_US)
                return;
        p->last = now;
        unsigned pct = p->to > p->from ? (unsigned) ((at - p->from) * 100 / (p->to - p->from)) : 100;
        log_notice("audit index: %s: %" PRIu64 " of %" PRIu64 " entries (%u%%, %.1f s)", p->what, at, p->to, pct,
                   (double) (now - p->started) / 1e6);
        sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%d\nSTATUS=audit index: %s: %" PRIu64 " of %" PRIu64 " entries (%u%%)",
                   EXTEND_TIMEOUT_US, p->what, at, p->to, pct);
}

/* Indexes entries [x->size, log_size), read from rd (positioned at
 * x->size), in transactions of SYNC_TXN_ENTRIES. */
static int catch_up(agent_index *x, agent_logreader *rd, uint64_t log_size, const char *what) {
        struct progress p = { .what = what, .from = x->size, .to = log_size };
        p.started = p.last = mono_us();
        bool loud = log_size - x->size >= 100000;
        if (loud)
                progress(&p, x->size, true);
        uint64_t seq = x->size;
        int r = seq < log_size ? mark_written(x) : 0;
        while (seq < log_size && r >= 0) {
                r = step_done(x, x->ws[W_BEGIN]);
                uint64_t end = log_size - seq > SYNC_TXN_ENTRIES ? seq + SYNC_TXN_ENTRIES : log_size;
                for (; seq < end && r >= 0; seq++) {
                        const uint8_t *entry;
                        size_t n;
                        uint64_t seg, off;
                        r = logreader_get_at(rd, seq, &entry, &n, &seg, &off);
                        if (r >= 0)
                                r = add_entry(x, seg, off, seq, entry, n);
                        if (r < 0)
                                log_error("audit index: entry %" PRIu64 ": %s", seq, strerror(-r));
                }
                if (r >= 0)
                        r = step_done(x, x->ws[W_COMMIT]);
                if (r < 0) {
                        (void) step_done(x, x->ws[W_ROLLBACK]);
                        break;
                }
                set_size(x, seq);
                if (loud)
                        progress(&p, seq, false);
        }
        if (loud && r >= 0)
                progress(&p, seq, true);
        return r;
}

int index_sync(agent_index *x, int log_dir_fd, uint64_t log_size, char **ret_error) {
        agent_logreader *rd = NULL;
        bool fresh = false;
        int r = open_existing(x);
        if (r == -ENOENT) {
                if (log_size > 0)
                        log_notice("audit index %s is missing: rebuilding it from the log", x->path);
                fresh = true;
        } else if (r == -ESTALE) {
                log_warning("audit index %s was being written when the system went down (it is written without"
                            " fsync): rebuilding it from the log", x->path);
                fresh = true;
        } else if (r < 0) {
                log_warning("audit index %s is unreadable or of another version: rebuilding it from the log", x->path);
                fresh = true;
        } else if (x->size > log_size) {
                log_warning("audit index %s has %" PRIu64 " entries, the log %" PRIu64
                            ": not this log's; rebuilding it from the log", x->path, x->size, log_size);
                fresh = true;
        }
        if (!fresh) {
                r = prepare_all(x->w, w_sql, x->ws, W_N);
                if (r >= 0)
                        r = open_reader(x);
                if (r >= 0)
                        r = logreader_new(log_dir_fd, x, &rd);
                if (r >= 0 && x->size > 0) {
                        /* Its last entry must be where it says: else it is another log's. */
                        const uint8_t *entry;
                        size_t n;
                        r = logreader_get(rd, x->size - 1, &entry, &n);
                        if (r < 0)
                                log_warning("audit index %s: its last entry %" PRIu64 " is not in the log (%s);"
                                            " rebuilding it from the log", x->path, x->size - 1, strerror(-r));
                }
                if (r >= 0 && x->size < log_size)
                        r = catch_up(x, rd, log_size, "catching up");
                if (r == -ENOMEM)
                        goto out;
                if (r < 0) {
                        logreader_free(rd);
                        rd = NULL;
                        close_all(x);
                        fresh = true;
                }
        }
        if (fresh) {
                int64_t t0 = mono_us();
                /* an index found to be another log's (size ahead of the log)
                 * is still open */
                close_db(&x->w, x->ws, W_N);
                r = create_fresh(x);
                if (r >= 0)
                        r = prepare_all(x->w, w_sql, x->ws, W_N);
                if (r >= 0)
                        r = logreader_new(log_dir_fd, NULL, &rd);
                if (r >= 0) {
                        logreader_seek(rd, 0, 0, 0);
                        r = catch_up(x, rd, log_size, "rebuilding");
                }
                if (r >= 0)
                        r = finish_fresh(x);
                /* Reopened: the bulk load's page cache goes back to the system. */
                close_all(x);
                malloc_trim(0);
                if (r >= 0)
                        r = open_existing(x);
                if (r >= 0)
                        r = prepare_all(x->w, w_sql, x->ws, W_N);
                if (r >= 0)
                        r = open_reader(x);
                if (r >= 0 && log_size > 0)
                        log_notice("audit index %s: rebuilt, %" PRIu64 " entries in %.1f s", x->path, log_size,
                                   (double) (mono_us() - t0) / 1e6);
                if (r < 0 && r != -ENOMEM)
                        r = agent_errorf(ret_error, r, "cannot build the audit index %s from the log: %s", x->path,
                                         strerror(-r));
        }
out:
        logreader_free(rd);
        if (r == -ENOMEM)
                return agent_errorf(ret_error, r, "audit index: out of memory");
        if (r >= 0)
                start_thread(x);
        return r;
}

/* ---- Queries ---- */

uint64_t index_size(agent_index *x) {
        pthread_mutex_lock(&x->lock);
        uint64_t n = x->size;
        pthread_mutex_unlock(&x->lock);
        return n;
}

int index_locate(agent_index *x, uint64_t seq, uint64_t *ret_seg, uint64_t *ret_off) {
        int r = -ENOENT;
        pthread_mutex_lock(&x->lock);
        sqlite3_stmt *st = x->rs[R_LOCATE];
        if (st && seq < x->size) {
                sqlite3_bind_int64(st, 1, (int64_t) seq);
                int rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        *ret_seg = (uint64_t) sqlite3_column_int64(st, 0);
                        *ret_off = (uint64_t) sqlite3_column_int64(st, 1);
                        r = 0;
                } else if (rc != SQLITE_DONE)
                        r = db_error(x->r, "locate");
                sqlite3_reset(st);
        }
        pthread_mutex_unlock(&x->lock);
        return r;
}

/* The time of entry seq (under x->lock); INT64_MAX when it cannot be read. */
static int64_t time_at(agent_index *x, uint64_t seq) {
        sqlite3_stmt *st = x->rs[R_TIME];
        int64_t t = INT64_MAX;
        sqlite3_bind_int64(st, 1, (int64_t) seq);
        if (sqlite3_step(st) == SQLITE_ROW)
                t = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        return t;
}

/* The first seq in [0, n) whose time is >= t (strict: > t). */
static uint64_t first_time(agent_index *x, uint64_t n, int64_t t, bool strict) {
        uint64_t a = 0, b = n;
        while (a < b) {
                uint64_t m = a + (b - a) / 2;
                int64_t tm = time_at(x, m);
                if (strict ? tm <= t : tm < t)
                        a = m + 1;
                else
                        b = m;
        }
        return a;
}

void index_time_window(agent_index *x, int64_t since_us, int64_t until_us, uint64_t *ret_lo, uint64_t *ret_hi) {
        pthread_mutex_lock(&x->lock);
        uint64_t n = x->size, lo = 0, hi = n;
        if (x->rs[R_TIME]) {
                if (since_us > 0)
                        lo = first_time(x, n, since_us, false);
                if (until_us > 0)
                        hi = first_time(x, n, until_us, true);
        }
        pthread_mutex_unlock(&x->lock);
        *ret_lo = lo;
        *ret_hi = hi > lo ? hi : lo;
}

static int64_t clamp(uint64_t v) {
        return v > (uint64_t) INT64_MAX ? INT64_MAX : (int64_t) v;
}

static int collect(agent_index *x, sqlite3_stmt *st, uint64_t *out, size_t cap, size_t *ret_n) {
        size_t n = 0;
        int rc;
        while (n < cap && (rc = sqlite3_step(st)) == SQLITE_ROW)
                out[n++] = (uint64_t) sqlite3_column_int64(st, 0);
        if (n < cap && rc != SQLITE_DONE) {
                sqlite3_reset(st);
                return db_error(x->r, "query");
        }
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        *ret_n = n;
        return 0;
}

int index_query_seqs(agent_index *x, const index_query *q, uint64_t *out, size_t cap, size_t *ret_n) {
        *ret_n = 0;
        pthread_mutex_lock(&x->lock);
        uint64_t to = q->to < x->size ? q->to : x->size;
        int r = 0;
        if (q->from >= to || cap == 0)
                goto out;
        if (!q->digest_len && !q->principal && !q->keyid) {
                size_t n = 0;
                for (uint64_t s = q->from; s < to && n < cap; s++)
                        out[n++] = s;
                *ret_n = n;
                goto out;
        }
        sqlite3_stmt *st;
        if (q->digest_len >= 8) {
                int64_t prefix;
                memcpy(&prefix, q->digest, sizeof prefix);
                st = x->rs[R_DIGEST];
                if (st)
                        sqlite3_bind_int64(st, 1, prefix);
        } else if (q->keyid) {
                st = x->rs[q->principal ? R_PRINCIPAL_KEYID : R_KEYID];
                if (st) {
                        sqlite3_bind_text(st, 1, q->keyid, -1, SQLITE_STATIC);
                        if (q->principal)
                                sqlite3_bind_text(st, 5, q->principal, -1, SQLITE_STATIC);
                }
        } else {
                st = x->rs[R_PRINCIPAL];
                if (st)
                        sqlite3_bind_text(st, 1, q->principal, -1, SQLITE_STATIC);
        }
        if (!st) {
                r = -EIO;
                goto out;
        }
        sqlite3_bind_int64(st, 2, clamp(q->from));
        sqlite3_bind_int64(st, 3, clamp(to));
        sqlite3_bind_int64(st, 4, (int64_t) cap);
        r = collect(x, st, out, cap, ret_n);
out:
        pthread_mutex_unlock(&x->lock);
        return r;
}

int index_key_events(agent_index *x, uint64_t from, uint64_t *out, size_t cap, size_t *ret_n) {
        *ret_n = 0;
        pthread_mutex_lock(&x->lock);
        sqlite3_stmt *st = x->rs[R_KEY_EVENTS];
        int r = -EIO;
        if (st) {
                sqlite3_bind_int64(st, 1, clamp(from));
                sqlite3_bind_int64(st, 2, (int64_t) cap);
                r = collect(x, st, out, cap, ret_n);
        }
        pthread_mutex_unlock(&x->lock);
        return r;
}

/* ---- Reading entries back ---- */

#define READ_BUF (PROTO_RECORD_MAX_ENTRY * 2u)

struct agent_logreader {
        int dir_fd;
        agent_index *x;
        int fd;              /* segment seg_first, or -1 */
        uint64_t seg_first;
        uint64_t want_seg;   /* the segment to open when fd is -1 */
        bool positioned;     /* next_seq / off / want_seg are set */
        uint64_t next_seq;   /* the entry whose record starts at off */
        uint64_t off;
        uint8_t *buf;        /* file bytes [buf_off, buf_off + buf_len) */
        uint64_t buf_off;
        size_t buf_len;
};

int logreader_new(int dir_fd, agent_index *x, agent_logreader **ret) {
        agent_logreader *r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->buf = malloc(READ_BUF);
        if (!r->buf) {
                free(r);
                return -ENOMEM;
        }
        r->dir_fd = dir_fd;
        r->x = x;
        r->fd = -1;
        *ret = r;
        return 0;
}

void logreader_free(agent_logreader *r) {
        if (!r)
                return;
        if (r->fd >= 0)
                close(r->fd);
        free(r->buf);
        free(r);
}

static int open_seg(agent_logreader *r, uint64_t seg_first) {
        if (r->fd >= 0 && r->seg_first == seg_first)
                return 0;
        char name[64];
        snprintf(name, sizeof name, "%020" PRIu64 ".seg", seg_first);
        int fd = openat(r->dir_fd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (r->fd >= 0)
                close(r->fd);
        r->fd = fd;
        r->seg_first = seg_first;
        r->buf_len = 0;
        r->buf_off = 0;
        return 0;
}

/* Makes file bytes [off, off + need) available in buf. 1 when they are, 0
 * at a clean end of file (no byte at off), -EBADMSG when the file ends
 * inside them. */
static int ensure(agent_logreader *r, uint64_t off, size_t need) {
        if (off >= r->buf_off && off - r->buf_off <= r->buf_len && r->buf_len - (off - r->buf_off) >= need)
                return 1;
        size_t got = 0;
        while (got < READ_BUF) {
                ssize_t k = pread(r->fd, r->buf + got, READ_BUF - got, (off_t) (off + got));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                got += (size_t) k;
                if (got >= need)
                        break;
        }
        r->buf_off = off;
        r->buf_len = got;
        if (got == 0)
                return 0;
        return got >= need ? 1 : -EBADMSG;
}

void logreader_seek(agent_logreader *r, uint64_t seq, uint64_t seg_first, uint64_t off) {
        if (r->fd >= 0 && r->seg_first != seg_first) {
                close(r->fd);
                r->fd = -1;
        }
        r->want_seg = seg_first;
        r->next_seq = seq;
        r->off = off;
        r->positioned = true;
}

/* Entries a reader skips forward through rather than ask the index. */
#define SKIP_MAX 64u

int logreader_get_at(agent_logreader *r, uint64_t seq, const uint8_t **ret, size_t *ret_n, uint64_t *ret_seg,
                     uint64_t *ret_off) {
        int k;
        if (!r->positioned || seq < r->next_seq || seq - r->next_seq >= SKIP_MAX) {
                uint64_t seg, off, n;
                if (!r->x)
                        return -ENOENT;
                k = index_locate(r->x, seq, &seg, &off);
                if (k == -ENOENT && seq >= (n = index_size(r->x))) {
                        /* Not indexed yet (queued for the indexer): read on
                         * from the last indexed entry, or the log's start. */
                        if (n == 0)
                                logreader_seek(r, 0, 0, 0);
                        else if ((k = index_locate(r->x, n - 1, &seg, &off)) == 0)
                                logreader_seek(r, n - 1, seg, off);
                        if (k == -ENOENT && n > 0)
                                return k;
                        k = 0;
                } else if (k < 0)
                        return k;
                else
                        logreader_seek(r, seq, seg, off);
        }
        if (r->fd < 0) {
                k = open_seg(r, r->want_seg);
                if (k < 0)
                        return k;
        }
        for (;;) {
                k = ensure(r, r->off, PROTO_RECORD_HEADER);
                if (k == 0) {
                        /* End of this segment: the next one starts with next_seq. */
                        if (r->off == 0)
                                return -EBADMSG;
                        k = open_seg(r, r->next_seq);
                        if (k < 0)
                                return k == -ENOENT ? -EBADMSG : k;
                        r->off = 0;
                        continue;
                }
                if (k < 0)
                        return k;
                size_t len = proto_get_u32be(r->buf + (r->off - r->buf_off));
                size_t rec = proto_record_size(len);
                if (rec == 0)
                        return -EBADMSG;
                k = ensure(r, r->off, rec);
                if (k <= 0)
                        return -EBADMSG;
                proto_cursor c = proto_cursor_make(r->buf + (r->off - r->buf_off), rec);
                const uint8_t *entry;
                size_t n;
                if (proto_record_next(&c, &entry, &n) < 0)
                        return -EBADMSG;
                uint64_t at = r->off;
                r->off += rec;
                if (r->next_seq++ == seq) {
                        proto_entry_head h;
                        if (proto_entry_peek(entry, n, &h) < 0 || h.seq != seq) {
                                proto_entry_fields f;
                                if (proto_entry_scan(entry, n, &f, NULL, NULL) < 0 || f.seq != seq)
                                        return -EBADMSG;
                        }
                        *ret = entry;
                        *ret_n = n;
                        if (ret_seg)
                                *ret_seg = r->seg_first;
                        if (ret_off)
                                *ret_off = at;
                        return 0;
                }
        }
}

int logreader_get(agent_logreader *r, uint64_t seq, const uint8_t **ret, size_t *ret_n) {
        return logreader_get_at(r, seq, ret, ret_n, NULL, NULL);
}
