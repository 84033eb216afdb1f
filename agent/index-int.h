/* Internal to the index (index*.c); the rest of the agent includes index.h
 * only. The index is split by job, and calls between its files go one way,
 * down this list (index.c calls any of them; index-state.c none):
 *
 *   index.c         the schema, index_open() / index_close(), index_sync():
 *                   opening, checking, catching up, rebuilding
 *   index-forget.c  a purge's rows: index_forget*(), queued for the indexer
 *   index-write.c   writing rows: entries, digests, key events, names; the
 *                   indexer thread and its queue (index_add_records)
 *   index-reader.c  the reader of entries from the segment files (logreader_*)
 *   index-query.c   the reader connection: locate, time window, find
 *                   queries, key events
 *   index-state.c   the state row (boot id, clean close) and the SQLite
 *                   error helpers
 *
 * Locking: x->lock guards the reader connection and size; x->qlock the
 * indexer's queue (struct agent_index says which fields). */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "index.h"

#define NAME_PRINCIPAL 0
#define NAME_KEYID 1
#define NAME_CACHE 64u

typedef struct name_slot {
        int kind;
        char *name;
        int64_t id;
} name_slot;

/* Statements of the writer connection (the indexer thread; the main thread
 * at start; the committer when there is no indexer thread). */
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

/* Statements of the reader connection. */
enum { R_LOCATE, R_TIME, R_DIGEST, R_PRINCIPAL, R_KEYID, R_PRINCIPAL_KEYID, R_KEY_EVENTS, R_N };

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
        bool idle;               /* the indexer waits for a first batch (not gathering) */
        bool distrusted;         /* index_distrust(): index_sync rebuilds */
        bool broken;             /* a write failed: no more until the next start */
        bool marked;             /* writer: state says "being written in this boot" (durably) */

        /* The purge's notes (index_forget), not queued yet: one purge at a
         * time, so no lock. */
        forget_row *forget;
        size_t n_forget, cap_forget;
};

/* index-state.c */

/* index_db_error: logs what failed with db's message; -EIO. */
int index_db_error(sqlite3 *db, const char *what);
/* index_exec: runs sql on db, logging a failure; 0 or -EIO. */
int index_exec(sqlite3 *db, const char *sql);
/* index_boot_id: this boot's id ("" when unknown: never equal to a stored one). */
void index_boot_id(char out[40]);
int index_check_marker(const agent_index *x);
int index_check_clean(sqlite3 *db);
int index_mark_written(agent_index *x);
void index_close_synced(agent_index *x);

/* index-write.c (the writer connection: the indexer thread, or the main
 * thread in index_sync before it starts) */

int index_step_done(agent_index *x, sqlite3_stmt *st);
int index_add_entry(agent_index *x, uint64_t seg, uint64_t off, uint64_t seq, const uint8_t *entry, size_t n);
void index_set_size(agent_index *x, uint64_t size);
/* index_enqueue: appends b (taken) to the indexer's queue and wakes it;
 * under x->qlock, the indexer thread running. */
void index_enqueue(agent_index *x, pending_batch *b);
void index_start_thread(agent_index *x);
void index_stop_thread(agent_index *x);
