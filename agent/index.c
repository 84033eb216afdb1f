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

#include "index-int.h"
#include "log.h"

#define INDEX_SCHEMA 2
#define INDEX_SCHEMA_STR "2"
#define SYNC_TXN_ENTRIES 50000u  /* entries per transaction while catching up */
#define PROGRESS_EVERY_US 2000000 /* a progress line (and systemd extension) */
#define EXTEND_TIMEOUT_US 60000000

/* The statements of struct agent_index's ws[] and rs[] (index-int.h). */
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

void index_close(agent_index *x) {
        if (!x)
                return;
        index_stop_thread(x);
        index_close_synced(x);
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

static int open_conn(const char *path, int flags, sqlite3 **ret) {
        sqlite3 *db = NULL;
        int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK) {
                int r = index_db_error(db, path);
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
                        return index_db_error(db, sql[i]);
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

/* Opens the writer on an existing file; -EIO when it is not a usable index,
 * -ESTALE when it may be damaged by a system crash. */
static int open_existing(agent_index *x) {
        if (access(x->path, F_OK) < 0)
                return -ENOENT;
        int r = open_conn(x->path, SQLITE_OPEN_READWRITE, &x->w);
        if (r >= 0)
                r = index_exec(x->w, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;");
        if (r >= 0)
                r = read_size(x->w, &x->size);
        if (r >= 0)
                r = index_check_clean(x->w);
        if (r >= 0)
                r = index_check_marker(x);
        if (r >= 0)
                r = index_exec(x->w, secondary_sql);
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
                r = index_exec(x->w, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-65536;");
        if (r >= 0)
                r = index_exec(x->w, schema_sql);
        x->size = 0;
        return r;
}

/* After a bulk load: the secondary indexes, then the normal mode. */
static int finish_fresh(agent_index *x) {
        char now[40], sql[120];
        index_boot_id(now);
        snprintf(sql, sizeof sql, "DELETE FROM state; INSERT INTO state VALUES ('%s', 0);", now);
        int r = index_exec(x->w, secondary_sql);
        if (r >= 0)
                r = index_exec(x->w, sql);
        if (r >= 0)
                r = index_exec(x->w, "PRAGMA user_version=" INDEX_SCHEMA_STR "; PRAGMA cache_size=-2000;"
                               " PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;");
        return r;
}

static int open_reader(agent_index *x) {
        int r = open_conn(x->path, SQLITE_OPEN_READONLY, &x->r);
        if (r >= 0)
                r = prepare_all(x->r, r_sql, x->rs, R_N);
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
        int r = seq < log_size ? index_mark_written(x) : 0;
        while (seq < log_size && r >= 0) {
                r = index_step_done(x, x->ws[W_BEGIN]);
                uint64_t end = log_size - seq > SYNC_TXN_ENTRIES ? seq + SYNC_TXN_ENTRIES : log_size;
                for (; seq < end && r >= 0; seq++) {
                        const uint8_t *entry;
                        size_t n;
                        uint64_t seg, off;
                        r = logreader_get_at(rd, seq, &entry, &n, &seg, &off);
                        if (r >= 0)
                                r = index_add_entry(x, seg, off, seq, entry, n);
                        if (r < 0)
                                log_error("audit index: entry %" PRIu64 ": %s", seq, strerror(-r));
                }
                if (r >= 0)
                        r = index_step_done(x, x->ws[W_COMMIT]);
                if (r < 0) {
                        (void) index_step_done(x, x->ws[W_ROLLBACK]);
                        break;
                }
                index_set_size(x, seq);
                if (loud)
                        progress(&p, seq, false);
        }
        if (loud && r >= 0)
                progress(&p, seq, true);
        return r;
}

void index_distrust(agent_index *x) {
        x->distrusted = true;
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
        } else if (x->distrusted) {
                log_warning("audit index %s may hold rows of entries an interrupted purge removed: rebuilding it"
                            " from the log", x->path);
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
                index_start_thread(x);
        return r;
}
