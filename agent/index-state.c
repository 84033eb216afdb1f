/* The index's state row (the boot it was last written in, and whether it
 * was closed cleanly), and the helpers its SQLite calls report through
 * (see index-int.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

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

/* Before the writer's first transaction of a run (off the start path when
 * the index is up to date: the indexer thread's first group). */
int index_mark_written(agent_index *x) {
        int r = x->marked ? 0 : mark_state(x->w, false);
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
        if (done && mark_state(x->w, true) >= 0)
                (void) index_exec(x->w, "PRAGMA synchronous=FULL"); /* the close's own checkpoint */
}
