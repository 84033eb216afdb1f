/* The audit log's segment files under <state_dir>/log: each named after its
 * first entry (20 digits + ".seg"), append only, a new one every
 * SEGMENT_MAX bytes. Writing a group (one write, one fdatasync), reading a
 * segment whole, finding the one that holds an entry. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit-int.h"
#include "fdio.h"
#include "log.h"

#define SEGMENT_MAX (64u * 1024u * 1024u)
#define SEGMENT_SUFFIX ".seg"

static int open_segment(agent_audit *a, uint64_t first_seq) {
        char name[64];
        snprintf(name, sizeof name, "%020" PRIu64 SEGMENT_SUFFIX, first_seq);
        int fd = openat(a->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        /* The new name must be durable too, or a crash could lose the file. */
        if (fsync(a->dir_fd) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        if (a->seg_fd >= 0)
                close(a->seg_fd);
        a->seg_fd = fd;
        a->seg_size = 0;
        a->seg_first = first_seq;
        return 0;
}

/* Out of descriptors (EMFILE: this process, ENFILE: the system) is a state
 * that passes, not a broken log: nothing is written yet, so the new segment
 * is tried again until it opens (or the agent stops); the group waits, and
 * its callers get their answer at hsm_timeout meanwhile. */
#define SEGMENT_OPEN_RETRY_MS 100

static int open_segment_retrying(agent_audit *a, uint64_t first_seq) {
        bool said = false;
        for (;;) {
                int r = open_segment(a, first_seq);
                if (r != -EMFILE && r != -ENFILE)
                        return r;
                pthread_mutex_lock(&a->lock);
                bool stopping = a->stopping;
                pthread_mutex_unlock(&a->lock);
                if (stopping)
                        return r;
                if (!said)
                        log_warning("audit log: cannot open a new segment (%s); retrying every %dms", strerror(-r),
                                    SEGMENT_OPEN_RETRY_MS);
                said = true;
                struct timespec ts = { 0, SEGMENT_OPEN_RETRY_MS * 1000000L };
                nanosleep(&ts, NULL);
        }
}

int audit_segment_ready(agent_audit *a, uint64_t first_seq) {
        if (a->seg_fd < 0 || a->seg_size >= SEGMENT_MAX)
                return open_segment_retrying(a, first_seq);
        return 0;
}

int audit_write_batch(agent_audit *a, const uint8_t *buf, size_t len, uint64_t first_seq) {
        int r = audit_segment_ready(a, first_seq);
        if (r < 0)
                return r;
        r = proto_fd_write_all(a->seg_fd, buf, len);
        if (r < 0)
                return r;
        uint64_t off = a->seg_size;
        a->seg_size += len;
        if (fdatasync(a->seg_fd) < 0)
                return -errno;
        /* After the records are durable, so the index is never ahead of
         * the log. Derived data: a failure is logged there and caught up
         * at the next start; signing goes on. */
        (void) index_add_records(a->index, a->seg_first, off, first_seq, buf, len);
        return 0;
}

int audit_read_file(int dir_fd, const char *name, uint8_t **ret, size_t *ret_len) {
        /* (no symlink followed, no FIFO waited on: it must be a regular file) */
        int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        /* Like the directories: a segment others may write is not ours. */
        if (!S_ISREG(st.st_mode) || (st.st_mode & 0022)) {
                close(fd);
                return S_ISREG(st.st_mode) ? -EPERM : -EINVAL;
        }
        size_t len = (size_t) st.st_size;
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf) {
                close(fd);
                return -ENOMEM;
        }
        size_t off = 0;
        while (off < len) {
                ssize_t k = read(fd, buf + off, len - off);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        int r = k < 0 ? -errno : -EIO;
                        free(buf);
                        close(fd);
                        return r;
                }
                off += (size_t) k;
        }
        close(fd);
        *ret = buf;
        *ret_len = len;
        return 0;
}

int audit_segment_filter(const struct dirent *d) {
        size_t n = strlen(d->d_name);
        return n == 20 + strlen(SEGMENT_SUFFIX) && strcmp(d->d_name + 20, SEGMENT_SUFFIX) == 0;
}

const char *audit_record_error(int r) {
        switch (r) {
        case -EBADMSG:
                return "truncated record";
        case -EOVERFLOW:
                return "impossible record length";
        case -EILSEQ:
                return "CRC32C mismatch";
        default:
                return strerror(-r);
        }
}

/* The head of an entry (seq, time, event) straight off its bytes
 * (proto/entry.h); anything else takes the full decoder. Replaying a million
 * entries this way avoids a million unpack/free pairs. */
int audit_entry_head(const uint8_t *p, size_t n, proto_entry_head *ret) {
        if (proto_entry_peek(p, n, ret) == 0)
                return 0;
        Provsign__AuditEntry *e = provsign__audit_entry__unpack(NULL, n, p);
        if (!e)
                return -EBADMSG;
        *ret = (proto_entry_head){ .seq = e->seq, .time_us = e->time_us, .event = e->event };
        provsign__audit_entry__free_unpacked(e, NULL);
        return 0;
}

int audit_open_segment_ro(agent_audit *a, uint64_t first) {
        char name[64];
        snprintf(name, sizeof name, "%020" PRIu64 SEGMENT_SUFFIX, first);
        int fd = openat(a->dir_fd, name, O_RDONLY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

/* The segment that holds entry seq (the last whose first entry <= seq). */
int audit_segment_holding(agent_audit *a, uint64_t seq, uint64_t *ret_first) {
        struct dirent **list = NULL;
        int n = scandir(a->dir, &list, audit_segment_filter, alphasort);
        if (n < 0)
                return -errno;
        int r = -ENOENT;
        for (int i = 0; i < n; i++) {
                uint64_t first = strtoull(list[i]->d_name, NULL, 10);
                if (first <= seq) {
                        *ret_first = first;
                        r = 0;
                }
                free(list[i]);
        }
        free(list);
        return r;
}

uint64_t audit_bytes(const agent_audit *a) {
        DIR *d = opendir(a->dir);
        if (!d)
                return 0;
        uint64_t total = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                struct stat st;
                if (audit_segment_filter(de) && fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                        total += (uint64_t) st.st_size;
        }
        closedir(d);
        return total;
}
