/* Retention (docs/log-tiles.md "Retention"): closed segments whose entries
 * are all older than a cutoff get their entries' bodies replaced by stubs
 * that keep the leaf hash and the record length, rewritten atomically; one
 * PURGE entry says so. The retainer thread does it for retain_entries. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit-int.h"
#include "clock.h"
#include "fdio.h"
#include "frame.h"
#include "log.h"
#include "record.h"
#include "timefmt.h"

static bool purgeable(int event) {
        switch (event) {
        case PROVSIGN__AUDIT_EVENT__KEY_CREATE:
        case PROVSIGN__AUDIT_EVENT__KEY_ROTATE:
        case PROVSIGN__AUDIT_EVENT__KEY_REVOKE:
        case PROVSIGN__AUDIT_EVENT__KEY_DESTROY:
        case PROVSIGN__AUDIT_EVENT__ENTRY_PURGED:
        case PROVSIGN__AUDIT_EVENT__PURGE:
                return false;
        default:
                return true;
        }
}

/* ---- The pending mark ----
 * A purge changes three places: the segment (the truth), the index's rows
 * and the published entry bundles (derived). A crash after the segment's
 * rename and before the other two would leave the purged bodies published
 * and their digests findable, with nothing left in the segment to say
 * which rows they were. So before the first segment's rename the purge
 * durably writes PURGE_PENDING ("<from> <through> <before_us>\n": the
 * entries it may have changed, its cutoff), and removes it once the bundles are rewritten and the
 * index has taken the removals; a start that finds it rewrites those
 * bundles and rebuilds the index from the segments (audit_purge_recover). */

static int write_pending(agent_audit *a, uint64_t from, uint64_t through, int64_t before_us) {
        char buf[80];
        int n = snprintf(buf, sizeof buf, "%" PRIu64 " %" PRIu64 " %" PRId64 "\n", from, through, before_us);
        int fd = openat(a->dir_fd, "." PURGE_PENDING, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        int r = proto_fd_write_all(fd, (const uint8_t *) buf, (size_t) n);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        close(fd);
        if (r >= 0 && renameat(a->dir_fd, "." PURGE_PENDING, a->dir_fd, PURGE_PENDING) < 0)
                r = -errno;
        if (r >= 0 && fsync(a->dir_fd) < 0)
                r = -errno;
        return r;
}

static void clear_pending(agent_audit *a) {
        if (unlinkat(a->dir_fd, PURGE_PENDING, 0) == 0)
                (void) fsync(a->dir_fd);
}

int audit_purge_pending(agent_audit *a, struct audit_pending_purge *ret) {
        uint8_t *buf = NULL;
        size_t len = 0;
        int r = audit_read_file(a->dir_fd, PURGE_PENDING, &buf, &len);
        if (r == -ENOENT)
                return 0;
        char text[80] = "";
        unsigned long long from, through;
        long long before;
        if (r >= 0)
                snprintf(text, sizeof text, "%.*s", (int) (len < sizeof text ? len : sizeof text - 1),
                         (const char *) buf);
        else
                log_warning("audit log: %s/%s: %s; taken as a purge of any entry", a->dir, PURGE_PENDING,
                            strerror(-r));
        free(buf);
        if (sscanf(text, "%llu %llu %lld", &from, &through, &before) != 3 || from > through) {
                /* Unreadable: all of it. */
                from = 0;
                through = UINT64_MAX;
                before = 0;
        }
        *ret = (struct audit_pending_purge){ .from = from, .through = through, .before_us = before };
        return 1;
}

/* Whether entry seq became durable and checkpointed within PURGE_WAIT_MS
 * (not when the token cannot sign checkpoints now: the caller then keeps
 * its mark, and the next start logs the purge again at worst). */
#define PURGE_WAIT_MS 10000
static bool wait_committed(agent_audit *a, uint64_t seq) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += PURGE_WAIT_MS / 1000;
        pthread_mutex_lock(&a->lock);
        a->commit_waiters++;
        while (a->committed <= seq && !a->failed &&
               pthread_cond_timedwait(&a->commit_cond, &a->lock, &ts) != ETIMEDOUT)
                ;
        a->commit_waiters--;
        bool done = a->committed > seq;
        pthread_mutex_unlock(&a->lock);
        return done;
}

/* seq, or the last committed entry if it is beyond (a pending mark's range
 * may run past what the log holds: an unreadable mark is "every entry"). */
static uint64_t clamp_committed(agent_audit *a, uint64_t seq) {
        pthread_mutex_lock(&a->lock);
        uint64_t last = a->committed ? a->committed - 1 : 0;
        pthread_mutex_unlock(&a->lock);
        return seq < last ? seq : last;
}

/* Temporary files of rewrites a crash cut short (".purge-<segment>",
 * ".purge-pending"): the segments and the mark they were for are whole. */
static void remove_leftovers(agent_audit *a) {
        DIR *d = fdopendir(dup(a->dir_fd));
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d)))
                if (strncmp(de->d_name, ".purge-", 7) == 0 && unlinkat(a->dir_fd, de->d_name, 0) == 0)
                        log_notice("audit log: removed %s/%s, left by a purge cut short", a->dir, de->d_name);
        closedir(d);
}

void audit_purge_recover(agent_audit *a) {
        struct audit_pending_purge p;
        pthread_mutex_lock(&a->purge_lock);
        remove_leftovers(a);
        if (audit_purge_pending(a, &p) <= 0) {
                pthread_mutex_unlock(&a->purge_lock);
                return;
        }
        uint64_t from = p.from, through = clamp_committed(a, p.through);
        int r = audit_publish_rebundle(a, from, through);
        if (r < 0) {
                log_error("audit log: a purge of entries %" PRIu64 "..%" PRIu64
                          " may have been cut short: cannot rewrite their published entry bundles (%s); trying "
                          "again at the next start",
                          from, through, strerror(-r));
                pthread_mutex_unlock(&a->purge_lock);
                return;
        }
        /* Its own PURGE entry may never have been logged (and how far it got
         * is not known: the mark is written before each segment's rename):
         * this one says what was done about it. */
        char when[PROTO_TIME_LEN + 1], msg[256];
        if (!proto_time_format_us(p.before_us, when))
                snprintf(when, sizeof when, "%" PRId64 "us", p.before_us);
        snprintf(msg, sizeof msg,
                 "a purge of entries %" PRIu64 "..%" PRIu64 " older than %s may have been cut short; at start "
                 "the index was rebuilt and their entry bundles published again from the segments",
                 from, through, when);
        Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
        e.event = PROVSIGN__AUDIT_EVENT__PURGE;
        e.reason = (char *) "interrupted purge";
        e.message = msg;
        e.purged_through_seq = through;
        e.purged_before_us = p.before_us;
        uint64_t seq;
        r = audit_append(a, &e, &seq, NULL, NULL);
        if (r >= 0 && wait_committed(a, seq))
                clear_pending(a);
        else
                log_error("audit log: the end of a purge cut short is not logged yet; trying again at the next start");
        pthread_mutex_unlock(&a->purge_lock);
        log_notice("audit log: %s", msg);
}

/* Replaces every purgeable entry of segment `name` (a closed one) by its
 * stub, in place in its bytes, and writes it back atomically (a new file
 * beside it, fsync, rename over it, fsync of the directory). Each record
 * keeps its length, so every position (index, entry bundles, readers with
 * the old file open) stays valid. *ret_newer: the segment holds an entry
 * at or after before_us (it is left alone, and so are the ones after). */
static int purge_segment(agent_audit *a, const char *name, int64_t before_us, uint64_t pending_from,
                         uint64_t pending_through, bool *ret_newer, bool *ret_index_failed, uint64_t *ret_n,
                         uint64_t *ret_last) {
        uint8_t *buf = NULL, *stub = NULL;
        size_t len = 0;
        uint64_t n = 0, last = 0;
        int r = audit_read_file(a->dir_fd, name, &buf, &len);
        if (r < 0)
                return r;
        stub = malloc(PROTO_RECORD_MAX_ENTRY);
        if (!stub) {
                r = -ENOMEM;
                goto out;
        }
        /* Pass 0: are all older than the cutoff, and is any purgeable?
         * Pass 1: replace those by their stubs, in place. */
        *ret_newer = false;
        for (int pass = 0; pass < 2; pass++) {
                proto_cursor c = proto_cursor_make(buf, len);
                if (pass == 1) {
                        if (n == 0)
                                goto out;
                        n = 0;
                }
                for (;;) {
                        const uint8_t *entry;
                        size_t en;
                        uint8_t *rec = (uint8_t *) c.p;
                        r = proto_record_next(&c, &entry, &en);
                        if (r == -ENODATA) {
                                r = 0;
                                break;
                        }
                        proto_entry_head h;
                        if (r >= 0)
                                r = audit_entry_head(entry, en, &h);
                        if (r < 0)
                                goto out;
                        if (h.time_us >= before_us) {
                                *ret_newer = true;
                                goto out;
                        }
                        if (!purgeable(h.event))
                                continue;
                        if (pass == 0) {
                                n++;
                                continue;
                        }
                        r = proto_entry_stub(entry, en, stub);
                        if (r == -EMSGSIZE) {
                                r = 0; /* too short to hold its stub: kept */
                                continue;
                        }
                        /* Its index rows go once the segment is durable. */
                        if (r >= 0 && a->index)
                                r = index_forget(a->index, entry, en);
                        if (r >= 0)
                                memcpy((uint8_t *) entry, stub, en);
                        size_t rl;
                        if (r >= 0)
                                r = proto_record_encode(entry, en, rec, proto_record_size(en), &rl);
                        if (r < 0)
                                goto out;
                        n++;
                        last = h.seq;
                }
        }
        if (n == 0)
                goto out; /* all too short for their stubs: nothing changed */
        char tmp[300];
        snprintf(tmp, sizeof tmp, ".purge-%.255s", name);
        int fd = openat(a->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
                r = -errno;
                goto out;
        }
        r = proto_fd_write_all(fd, buf, len);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        close(fd);
        if (r >= 0)
                r = write_pending(a, pending_from, last > pending_through ? last : pending_through, before_us);
        if (r >= 0 && renameat(a->dir_fd, tmp, a->dir_fd, name) < 0)
                r = -errno;
        if (r >= 0 && fsync(a->dir_fd) < 0)
                r = -errno;
        if (r < 0)
                (void) unlinkat(a->dir_fd, tmp, 0);
out:
        if (a->index && r >= 0) {
                if (index_forget_commit(a->index) < 0)
                        *ret_index_failed = true; /* the mark stays: the next start rebuilds the index */
        } else if (a->index)
                index_forget_drop(a->index);
        free(stub);
        free(buf);
        *ret_n = r >= 0 ? n : 0;
        *ret_last = last;
        return r;
}

int audit_purge(agent_audit *a, int64_t before_us, const Provsign__Caller *caller, const char *who,
                uint64_t *ret_purged, uint64_t *ret_through, uint64_t *ret_seq) {
        struct dirent **list = NULL;
        uint64_t total = 0, through = 0, pending_from = UINT64_MAX, pending_through = 0;
        bool rebundled = true, index_failed = false;
        int r = 0;
        *ret_purged = *ret_through = *ret_seq = 0;
        pthread_mutex_lock(&a->purge_lock);
        /* A mark an earlier purge of this run left (its bundles could not
         * be rewritten): try them again, and keep its range in the mark. */
        struct audit_pending_purge old;
        bool had_mark = audit_purge_pending(a, &old) > 0;
        if (had_mark) {
                pending_from = old.from;
                pending_through = old.through;
                if (audit_publish_rebundle(a, old.from, clamp_committed(a, old.through)) < 0)
                        rebundled = false;
        }
        int n = scandir(a->dir, &list, audit_segment_filter, alphasort);
        if (n < 0) {
                r = -errno;
                goto out;
        }
        pthread_mutex_lock(&a->lock);
        uint64_t open_first = a->seg_fd >= 0 ? a->seg_first : UINT64_MAX;
        pthread_mutex_unlock(&a->lock);
        /* Never the last segment, nor the one being written. */
        for (int i = 0; i + 1 < n && r >= 0; i++) {
                const char *name = list[i]->d_name;
                uint64_t first = strtoull(name, NULL, 10);
                if (first >= open_first)
                        break;
                if (first < a->purge_from)
                        continue; /* purged whole before: not read again */
                bool newer = false;
                uint64_t k = 0, last = 0;
                if (pending_from == UINT64_MAX)
                        pending_from = first;
                r = purge_segment(a, name, before_us, pending_from, pending_through, &newer, &index_failed, &k,
                                  &last);
                if (r < 0) {
                        log_error("audit log: cannot purge %s/%s: %s", a->dir, name, strerror(-r));
                        break;
                }
                if (k) {
                        total += k;
                        through = last;
                        /* A failure is logged; the purge stands, and the
                         * next start tries again (the pending mark stays). */
                        if (audit_publish_rebundle(a, first, last) < 0)
                                rebundled = false;
                }
                if (newer)
                        break;
                a->purge_from = strtoull(list[i + 1]->d_name, NULL, 10);
        }
        for (int i = 0; i < n; i++)
                free(list[i]);
        free(list);
        if (total > 0) {
                char when[PROTO_TIME_LEN + 1], msg[160];
                if (!proto_time_format_us(before_us, when))
                        snprintf(when, sizeof when, "%" PRId64 "us", before_us);
                snprintf(msg, sizeof msg, "purged %" PRIu64 " entries through seq %" PRIu64 " older than %s", total,
                         through, when);
                Provsign__AuditEntry e = PROVSIGN__AUDIT_ENTRY__INIT;
                e.event = PROVSIGN__AUDIT_EVENT__PURGE;
                e.caller = (Provsign__Caller *) caller;
                e.reason = (char *) who;
                e.message = msg;
                e.purged_through_seq = through;
                e.purged_before_us = before_us;
                int ra = audit_append(a, &e, ret_seq, NULL, NULL);
                log_notice("audit log: %s (%s)", msg, who);
                if (ra < 0 && r >= 0)
                        r = ra;
                /* Nothing pending once the bundles are rewritten, the
                 * index's removals written (the indexer's queue empty) and
                 * the PURGE entry durable. */
                if (r >= 0 && rebundled && !index_failed) {
                        if (a->index)
                                index_flush(a->index);
                        if (wait_committed(a, *ret_seq))
                                clear_pending(a);
                }
        } else if (had_mark && r >= 0 && rebundled) {
                clear_pending(a); /* an earlier purge's bundles, rewritten now */
        }
        *ret_purged = total;
        *ret_through = through;
out:
        pthread_mutex_unlock(&a->purge_lock);
        return r;
}

#define RETAIN_INTERVAL_S 3600

void *audit_retainer_main(void *arg) {
        agent_audit *a = arg;
        for (;;) {
                uint64_t purged, through, seq;
                int64_t cutoff = (int64_t) agent_now_us() - (int64_t) a->retain_s * 1000000;
                int r = audit_purge(a, cutoff, NULL, "retain_entries", &purged, &through, &seq);
                if (r < 0)
                        log_warning("audit log: retain_entries: purge failed (%s); retrying in an hour", strerror(-r));
                pthread_mutex_lock(&a->lock);
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += RETAIN_INTERVAL_S;
                while (!a->retain_stop && pthread_cond_timedwait(&a->retain_cond, &a->lock, &ts) != ETIMEDOUT)
                        ;
                bool stop = a->retain_stop;
                pthread_mutex_unlock(&a->lock);
                if (stop)
                        break;
        }
        return NULL;
}
