/* The segments at start: every name and mode checked, the last segment
 * read whole (a torn tail cut, corruption refused with file and offset),
 * which gives next_seq; then the index caught up and the key events handed
 * to the registry. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit-int.h"
#include "frame.h"
#include "log.h"
#include "record.h"

/* Is there a whole record with a matching CRC32C anywhere in p[1..len)?
 * Only called on the bad tail of the last segment at start-up. */
static bool valid_record_after(const uint8_t *p, size_t len) {
        for (size_t off = 1; off + PROTO_RECORD_OVERHEAD < len; off++) {
                proto_cursor c = proto_cursor_make(p + off, len - off);
                const uint8_t *entry;
                size_t n;
                if (proto_record_next(&c, &entry, &n) == 0)
                        return true;
        }
        return false;
}

/* Reads one segment, checking every record and counting them into
 * next_seq. A bad record at the very end of the last segment is a torn
 * write: cut it (and say so). Anywhere else it is corruption: refuse,
 * naming the file and offset. */
static int replay_segment(agent_audit *a, const char *name, bool last, char **ret_error) {
        uint8_t *buf = NULL;
        size_t len = 0;
        int r = audit_read_file(a->dir_fd, name, &buf, &len);
        if (r == -EPERM)
                return agent_errorf(ret_error, r, "%s/%s is group- or world-writable; refusing (chmod go-w it)", a->dir,
                                    name);
        if (r == -EINVAL)
                return agent_errorf(ret_error, r, "%s/%s is not a regular file; refusing", a->dir, name);
        if (r < 0)
                return agent_errorf(ret_error, r, "%s/%s: %s", a->dir, name, strerror(-r));

        uint64_t first = strtoull(name, NULL, 10);
        if (first != a->next_seq) {
                free(buf);
                return agent_errorf(ret_error, -EBADMSG, "%s/%s: segment starts at entry %" PRIu64 ", expected %" PRIu64,
                              a->dir, name, first, a->next_seq);
        }
        proto_cursor c = proto_cursor_make(buf, len);
        for (;;) {
                const uint8_t *entry;
                size_t n;
                r = proto_record_next(&c, &entry, &n);
                if (r == -ENODATA)
                        break;
                size_t off = len - c.len;
                if (r < 0) {
                        /* In the last segment, a bad record with no good record
                         * after it is what a crash mid-commit leaves (a short
                         * write, a zero-filled extension, pages of the batch
                         * that never reached the disk): a torn tail. A good
                         * record after a bad one means damage inside the log. */
                        bool torn = last && !valid_record_after(c.p, c.len);
                        if (!torn) {
                                free(buf);
                                return agent_errorf(ret_error, -EBADMSG,
                                              "%s/%s: corrupt audit log at offset %zu (entry %" PRIu64
                                              "): %s; refusing to start",
                                              a->dir, name, off, a->next_seq, audit_record_error(r));
                        }
                        int fd = openat(a->dir_fd, name, O_WRONLY | O_CLOEXEC);
                        if (fd < 0 || ftruncate(fd, (off_t) off) < 0 || fsync(fd) < 0) {
                                r = -errno;
                                if (fd >= 0)
                                        close(fd);
                                free(buf);
                                return agent_errorf(ret_error, r, "%s/%s: cannot cut the torn tail: %s", a->dir, name,
                                              strerror(-r));
                        }
                        close(fd);
                        log_notice("audit log: cut a torn record at %s/%s offset %zu (%zu bytes, %s)", a->dir, name,
                                   off, len - off, audit_record_error(r));
                        len = off;
                        break;
                }
                proto_entry_head head;
                bool decodes = audit_entry_head(entry, n, &head) == 0;
                bool ok = decodes && head.seq == a->next_seq;
                if (!ok) {
                        free(buf);
                        return agent_errorf(ret_error, -EBADMSG,
                                      "%s/%s: corrupt audit log at offset %zu: entry %" PRIu64 " %s; refusing to start",
                                      a->dir, name, off - proto_record_size(n), a->next_seq,
                                      decodes ? "has the wrong sequence number" : "does not decode");
                }
                r = 0;
                if (r < 0) {
                        free(buf);
                        return r;
                }
                a->next_seq++;
        }
        free(buf);
        if (last) {
                a->seg_fd = openat(a->dir_fd, name, O_WRONLY | O_APPEND | O_CLOEXEC);
                if (a->seg_fd < 0)
                        return agent_errorf(ret_error, -errno, "%s/%s: %s", a->dir, name, strerror(errno));
                a->seg_size = len;
                a->seg_first = first;
        }
        return 0;
}

/* The start reads only the last segment: its torn tail is cut and its
 * records counted, which gives next_seq. The tree comes from the tiles and
 * the tail after them (audit-tree.c), the key state and the index
 * from the index and the tail after it (audit_index_and_key_events): nothing
 * reads the whole log, so the start does not grow with its history. Earlier
 * segments are checked by name (in order) and mode (not group- or
 * world-writable, regular files) only; their bytes are under the tiles'
 * hashes, whose root start checks against the signed checkpoint, and
 * under every auditor's verification. */
int audit_replay(agent_audit *a, char **ret_error) {
        struct dirent **list = NULL;
        int n = scandir(a->dir, &list, audit_segment_filter, alphasort);
        if (n < 0)
                return agent_errorf(ret_error, -errno, "%s: %s", a->dir, strerror(errno));
        int r = 0;
        uint64_t prev = 0;
        for (int i = 0; i < n && r >= 0; i++) {
                const char *name = list[i]->d_name;
                uint64_t first = strtoull(name, NULL, 10);
                struct stat st;
                if (i > 0 && first <= prev)
                        r = agent_errorf(ret_error, -EBADMSG, "%s/%s: segments out of order; refusing to start", a->dir,
                                         name);
                else if (fstatat(a->dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        r = agent_errorf(ret_error, -errno, "%s/%s: %s", a->dir, name, strerror(errno));
                else if (!S_ISREG(st.st_mode))
                        r = agent_errorf(ret_error, -EINVAL, "%s/%s is not a regular file; refusing", a->dir, name);
                else if (st.st_mode & 0022)
                        r = agent_errorf(ret_error, -EPERM, "%s/%s is group- or world-writable; refusing (chmod go-w it)",
                                         a->dir, name);
                prev = first;
        }
        if (r >= 0 && n > 0) {
                a->next_seq = strtoull(list[n - 1]->d_name, NULL, 10);
                r = replay_segment(a, list[n - 1]->d_name, true, ret_error);
        }
        for (int i = 0; i < n; i++)
                free(list[i]);
        free(list);
        return r;
}

#define KEY_EVENT_BATCH 256u

/* Brings the index (index.h) up to the log's next_seq, catching up from
 * its last entry or rebuilding it, then hands every key event it lists to
 * on_key_event, in log order, each read back through its locator and
 * decoded in full (they are few): the registry's state without a scan of
 * the log. */
int audit_index_and_key_events(agent_audit *a, const char *state_dir, char **ret_error) {
        char *path = NULL;
        if (asprintf(&path, "%s/" INDEX_FILE, state_dir) < 0)
                return -ENOMEM;
        int r = index_open(path, &a->index);
        free(path);
        struct audit_pending_purge pending;
        if (r >= 0 && audit_purge_pending(a, &pending) > 0)
                index_distrust(a->index);
        if (r >= 0)
                r = index_sync(a->index, a->dir_fd, a->next_seq, ret_error);
        if (r < 0 || !a->on_key_event)
                return r;
        agent_logreader *rd = NULL;
        r = logreader_new(a->dir_fd, a->index, &rd);
        uint64_t seqs[KEY_EVENT_BATCH], from = 0;
        size_t n = KEY_EVENT_BATCH;
        while (r >= 0 && n == KEY_EVENT_BATCH) {
                r = index_key_events(a->index, from, seqs, KEY_EVENT_BATCH, &n);
                for (size_t i = 0; r >= 0 && i < n; i++) {
                        const uint8_t *p;
                        size_t len;
                        Provsign__AuditEntry *e = NULL;
                        r = logreader_get(rd, seqs[i], &p, &len);
                        if (r >= 0 && !(e = provsign__audit_entry__unpack(NULL, len, p)))
                                r = -EBADMSG;
                        if (r >= 0)
                                r = a->on_key_event(a->on_key_event_ctx, e);
                        if (e)
                                provsign__audit_entry__free_unpacked(e, NULL);
                        if (r < 0)
                                r = agent_errorf(ret_error, r, "%s: key event at entry %" PRIu64 ": %s", a->dir, seqs[i],
                                                 strerror(-r));
                }
                if (n)
                        from = seqs[n - 1] + 1;
        }
        logreader_free(rd);
        return r;
}
