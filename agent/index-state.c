/* The index's state row (the boot it was last written in, and whether it
 * was closed cleanly), and the helpers its SQLite calls report through
 * (see index-int.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "index-int.h"
#include "log.h"

int index_db_error(sqlite3 *db, const char *what) {
        log_warning("audit index: %s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
        return -EIO;
}

int index_exec(sqlite3 *db, const char *sql) {
        char *msg = NULL;
        int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
        if (rc != SQLITE_OK) {
                log_warning("audit index: %s: %s", sql, msg ? msg : sqlite3_errstr(rc));
                sqlite3_free(msg);
                return -EIO;
        }
        return 0;
}

/* This boot's id ("" when unknown: never equal to a stored one). */
void index_boot_id(char out[40]) {
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
int index_check_clean(sqlite3 *db) {
        sqlite3_stmt *st = NULL;
        char now[40];
        int r = -ESTALE;
        index_boot_id(now);
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
 * is seen by index_check_clean() at the next start. With clean = 1 at a clean
 * close, after a synced checkpoint. */
static int mark_state(sqlite3 *db, bool clean) {
        char now[40], sql[200];
        index_boot_id(now);
        snprintf(sql, sizeof sql,
                 "PRAGMA synchronous=FULL; BEGIN; DELETE FROM state; INSERT INTO state VALUES ('%s', %d); COMMIT;"
                 " PRAGMA synchronous=OFF;",
                 now, clean ? 1 : 0); /* boot_id: hex digits and dashes */
        return index_exec(db, sql);
}

/* "<index>.writing": the boot the index is being written in, outside
 * SQLite. The state row alone is not enough: its "being written" commit is
 * synced into the WAL, but the first unsynced checkpoint copies it into the
 * file and the next write restarts the WAL over it, so after a power loss
 * the file could say "closed cleanly" with pages missing anywhere (and key
 * state is read from the index at start). The file is created, synced and
 * its directory synced before the first unsynced write of a run, and
 * removed (directory synced) only after a clean close's synced checkpoint. */
static int marker_path(const agent_index *x, char *buf, size_t n) {
        int len = snprintf(buf, n, "%s.writing", x->path);
        return len < 0 || (size_t) len >= n ? -ENAMETOOLONG : 0;
}

static int sync_dir_of(const char *path) {
        char dir[4096];
        const char *slash = strrchr(path, '/');
        size_t len = slash ? (size_t) (slash - path) : 0;
        if (len >= sizeof dir)
                return -ENAMETOOLONG;
        if (len == 0)
                strcpy(dir, slash ? "/" : ".");
        else {
                memcpy(dir, path, len);
                dir[len] = '\0';
        }
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = fsync(fd) < 0 ? -errno : 0;
        close(fd);
        return r;
}

static int marker_write(const agent_index *x) {
        char path[4096], now[40];
        int r = marker_path(x, path, sizeof path);
        if (r < 0)
                return r;
        index_boot_id(now);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        size_t len = strlen(now);
        r = write(fd, now, len) == (ssize_t) len && fsync(fd) == 0 ? 0 : -EIO;
        close(fd);
        return r < 0 ? r : sync_dir_of(path);
}

static void marker_remove(const agent_index *x) {
        char path[4096];
        if (marker_path(x, path, sizeof path) == 0 && unlink(path) == 0)
                (void) sync_dir_of(path);
}

/* -ESTALE when a marker of another boot (or an unreadable one) is there: the
 * system went down while the index was being written. A marker of this
 * boot is a process that died (kill -9): the OS has every page. */
int index_check_marker(const agent_index *x) {
        char path[4096], was[40] = "", now[40];
        int r = marker_path(x, path, sizeof path);
        if (r < 0)
                return r;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return errno == ENOENT ? 0 : -ESTALE;
        ssize_t n = read(fd, was, sizeof was - 1);
        close(fd);
        was[n > 0 ? n : 0] = '\0';
        index_boot_id(now);
        return now[0] && strcmp(was, now) == 0 ? 0 : -ESTALE;
}

/* Before the writer's first transaction of a run (off the start path when
 * the index is up to date: the indexer thread's first group). */
int index_mark_written(agent_index *x) {
        int r = x->marked ? 0 : marker_write(x);
        if (r < 0)
                log_warning("audit index: cannot write %s.writing: %s", x->path, strerror(-r));
        if (r >= 0 && !x->marked)
                r = mark_state(x->w, false);
        x->marked = r >= 0;
        return r;
}

/* A clean close: everything in the WAL copied into the file and both
 * synced (synchronous=FULL makes the checkpoint fsync), then clean = 1, so
 * the next start in another boot (after a reboot) trusts the file. */
void index_close_synced(agent_index *x) {
        sqlite3_stmt *st = NULL;
        bool done = false;
        if (!x->w || x->broken)
                return;
        if (sqlite3_exec(x->w, "PRAGMA synchronous=FULL", NULL, NULL, NULL) == SQLITE_OK &&
            sqlite3_prepare_v2(x->w, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
                done = sqlite3_column_int(st, 0) == 0; /* not busy */
        sqlite3_finalize(st);
        if (done && mark_state(x->w, true) >= 0) {
                (void) index_exec(x->w, "PRAGMA synchronous=FULL"); /* the close's own checkpoint */
                marker_remove(x);
        }
}
