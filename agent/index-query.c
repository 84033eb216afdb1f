/* Queries on the reader connection: locate, time window, find, key events
 * (see index-int.h). */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <sqlite3.h>

#include "index-int.h"

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
                        r = index_db_error(x->r, "locate");
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
                return index_db_error(x->r, "query");
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
