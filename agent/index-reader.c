/* The reader of entries from the segment files (logreader_*, see
 * index.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "entry.h"
#include "frame.h"
#include "index.h"
#include "record.h"

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
