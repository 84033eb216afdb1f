/* C2SP tlog-tiles paths and the tile store: see tiles.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"
#include "tiles.h"

#define HL PROTO_TILE_HASH_LEN

/* "<N>" of tiles.h: groups of three digits, all but the last "x"-prefixed. */
static int format_index(uint64_t index, char *buf, size_t len) {
        unsigned groups[8];
        size_t n = 0, off = 0;

        do {
                groups[n++] = (unsigned) (index % 1000);
                index /= 1000;
        } while (index > 0);
        for (size_t i = n; i-- > 0;) {
                int k = snprintf(buf + off, len - off, i > 0 ? "x%03u/" : "%03u", groups[i]);
                if (k < 0 || (size_t) k >= len - off)
                        return -ENOBUFS;
                off += (size_t) k;
        }
        return 0;
}

static int format_path(const char *prefix, uint64_t index, unsigned width, char *buf, size_t len) {
        int k;
        size_t off;

        if (width == 0 || width > PROTO_TILE_WIDTH)
                return -EINVAL;
        k = snprintf(buf, len, "%s", prefix);
        if (k < 0 || (size_t) k >= len)
                return -ENOBUFS;
        off = (size_t) k;
        k = format_index(index, buf + off, len - off);
        if (k < 0)
                return k;
        if (width == PROTO_TILE_WIDTH)
                return 0;
        off += strlen(buf + off);
        k = snprintf(buf + off, len - off, ".p/%u", width);
        return k < 0 || (size_t) k >= len - off ? -ENOBUFS : 0;
}

int proto_tile_path(unsigned level, uint64_t index, unsigned width, char *buf, size_t len) {
        char prefix[16];

        if (level > 63)
                return -EINVAL;
        snprintf(prefix, sizeof prefix, "tile/%u/", level);
        return format_path(prefix, index, width, buf, len);
}

int proto_tile_entries_path(uint64_t index, unsigned width, char *buf, size_t len) {
        return format_path("tile/entries/", index, width, buf, len);
}

typedef struct cache_slot {
        bool used;
        unsigned level;
        uint64_t index;
        uint64_t last_use;
        uint8_t h[PROTO_TILE_NODES][HL];
} cache_slot;

struct proto_tile_store {
        int dir_fd;
        bool nosync;
        pthread_mutex_t lock; /* the cache and bad */
        uint64_t clock;
        cache_slot cache[PROTO_TILE_CACHE];
        char bad[PROTO_TILE_PATH_MAX];
};

void proto_tile_partial_paths(uint64_t size, char *buf, size_t len) {
        size_t off = 0;

        if (len == 0)
                return;
        buf[0] = '\0';
        for (unsigned L = 0; 8 * L < 64 && (size >> (8 * L)) > 0; L++) {
                uint64_t c = size >> (8 * L);
                char path[PROTO_TILE_PATH_MAX];
                int k;

                if (c % PROTO_TILE_WIDTH == 0 ||
                    proto_tile_path(L, c / PROTO_TILE_WIDTH, (unsigned) (c % PROTO_TILE_WIDTH), path, sizeof path) < 0)
                        continue;
                k = snprintf(buf + off, len - off, "%s%s", off ? ", " : "", path);
                if (k < 0 || (size_t) k >= len - off) {
                        buf[off] = '\0';
                        break;
                }
                off += (size_t) k;
        }
}

int proto_tile_store_open(int dir_fd, proto_tile_store **ret) {
        proto_tile_store *s = calloc(1, sizeof *s);

        if (!s)
                return -ENOMEM;
        s->dir_fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
        if (s->dir_fd < 0) {
                int r = -errno;
                free(s);
                return r;
        }
        pthread_mutex_init(&s->lock, NULL);
        *ret = s;
        return 0;
}

void proto_tile_store_free(proto_tile_store *s) {
        if (!s)
                return;
        close(s->dir_fd);
        pthread_mutex_destroy(&s->lock);
        free(s);
}

/* Opens the regular file at path under the store's directory, never
 * following a symlink, and returns its size in *ret_size if it is at most
 * max (exactly max when exact): -EBADMSG otherwise. */
static int open_regular(proto_tile_store *s, const char *path, uint64_t max, bool exact, uint64_t *ret_size) {
        struct stat st;
        int fd = openat(s->dir_fd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        if (!S_ISREG(st.st_mode) || (uint64_t) st.st_size > max || (exact && (uint64_t) st.st_size != max)) {
                close(fd);
                return -EBADMSG;
        }
        *ret_size = (uint64_t) st.st_size;
        return fd;
}

int proto_tile_store_read(proto_tile_store *s, unsigned level, uint64_t index, unsigned width,
                          uint8_t out[][PROTO_TILE_HASH_LEN]) {
        char path[PROTO_TILE_PATH_MAX];
        size_t want = (size_t) width * HL;
        uint64_t size;
        int fd, r;

        r = proto_tile_path(level, index, width, path, sizeof path);
        if (r < 0)
                return r;
        fd = open_regular(s, path, want, true, &size);
        if (fd < 0)
                return fd;
        r = proto_fd_pread_all(fd, out, want, 0);
        if (r == -ENODATA)
                r = -EBADMSG; /* shrunk since fstat */
        close(fd);
        return r;
}

int proto_tile_store_cached(proto_tile_store *s, unsigned level, uint64_t index, size_t node,
                            uint8_t out[PROTO_TILE_HASH_LEN]) {
        int r = -ENOENT;

        if (node >= PROTO_TILE_NODES)
                return -EINVAL;
        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < PROTO_TILE_CACHE; i++) {
                cache_slot *c = &s->cache[i];
                if (c->used && c->level == level && c->index == index) {
                        c->last_use = ++s->clock;
                        memcpy(out, c->h[node], HL);
                        r = 0;
                        break;
                }
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

void proto_tile_store_cache_add(proto_tile_store *s, unsigned level, uint64_t index,
                                const uint8_t nodes[PROTO_TILE_NODES][PROTO_TILE_HASH_LEN]) {
        cache_slot *victim = NULL;

        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < PROTO_TILE_CACHE; i++) {
                cache_slot *c = &s->cache[i];
                if (c->used && c->level == level && c->index == index) {
                        victim = c;
                        break;
                }
                if (!victim || !c->used || (victim->used && c->last_use < victim->last_use))
                        victim = c;
        }
        victim->used = true;
        victim->level = level;
        victim->index = index;
        victim->last_use = ++s->clock;
        memcpy(victim->h, nodes, sizeof victim->h);
        pthread_mutex_unlock(&s->lock);
}

/* Creates every parent directory of path (relative to dir_fd). */
static int make_parents(int dir_fd, const char *path) {
        char buf[PROTO_TILE_PATH_MAX];
        size_t len = strlen(path);

        if (len >= sizeof buf)
                return -ENAMETOOLONG;
        memcpy(buf, path, len + 1);
        for (char *p = buf; (p = strchr(p, '/')); p++) {
                *p = '\0';
                if (mkdirat(dir_fd, buf, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        return 0;
}

int proto_tile_store_write_file(proto_tile_store *s, const char *path, const uint8_t *data, size_t len) {
        char tmp[PROTO_TILE_PATH_MAX + 16], dir[PROTO_TILE_PATH_MAX];
        const char *slash = strrchr(path, '/');
        size_t dlen = slash ? (size_t) (slash - path) : 0;
        int fd = -1, dfd = -1, r;

        if (strlen(path) >= PROTO_TILE_PATH_MAX || !*path || (slash && !slash[1]))
                return -EINVAL;
        /* The temporary name starts with a dot, next to the target: the
         * rename stays in one directory, and a listing skips it. */
        snprintf(tmp, sizeof tmp, "%.*s%s.tmp-%s", (int) dlen, path, slash ? "/" : "", slash ? slash + 1 : path);
        memcpy(dir, path, dlen);
        dir[dlen] = '\0';
        r = make_parents(s->dir_fd, path);
        if (r < 0)
                return r;
        fd = openat(s->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return -errno;
        r = proto_fd_write_all(fd, data, len);
        if (r >= 0 && !s->nosync && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r >= 0)
                r = -errno;
        if (r >= 0 && renameat(s->dir_fd, tmp, s->dir_fd, path) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlinkat(s->dir_fd, tmp, 0);
                return r;
        }
        if (s->nosync)
                return 0;
        dfd = dlen ? openat(s->dir_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : fcntl(s->dir_fd, F_DUPFD_CLOEXEC, 3);
        if (dfd < 0)
                return -errno;
        r = fsync(dfd) < 0 ? -errno : 0;
        close(dfd);
        return r;
}

int proto_tile_store_write(proto_tile_store *s, unsigned level, uint64_t index, unsigned width,
                           const uint8_t hashes[][PROTO_TILE_HASH_LEN]) {
        char path[PROTO_TILE_PATH_MAX];
        int r = proto_tile_path(level, index, width, path, sizeof path);

        if (r < 0)
                return r;
        return proto_tile_store_write_file(s, path, (const uint8_t *) hashes, (size_t) width * HL);
}

int proto_tile_store_remove_partial(proto_tile_store *s, unsigned level, uint64_t index, unsigned width) {
        char path[PROTO_TILE_PATH_MAX];
        int r;

        if (width == 0 || width >= PROTO_TILE_WIDTH)
                return -EINVAL;
        r = proto_tile_path(level, index, width, path, sizeof path);
        if (r < 0)
                return r;
        if (unlinkat(s->dir_fd, path, 0) < 0 && errno != ENOENT)
                return -errno;
        *strrchr(path, '/') = '\0';
        /* Others widths may still be there: then the directory stays. */
        if (unlinkat(s->dir_fd, path, AT_REMOVEDIR) < 0 && errno != ENOTEMPTY && errno != EEXIST && errno != ENOENT)
                return -errno;
        return 0;
}

int proto_tile_store_remove_stale(proto_tile_store *s, uint64_t old_size, uint64_t new_size, int entries) {
        unsigned old_w = (unsigned) (old_size % PROTO_TILE_WIDTH), new_w = (unsigned) (new_size % PROTO_TILE_WIDTH);
        char path[PROTO_TILE_PATH_MAX];
        int ret = 0;

        if (entries && old_w != 0 && (old_size / PROTO_TILE_WIDTH != new_size / PROTO_TILE_WIDTH || old_w != new_w) &&
            proto_tile_entries_path(old_size / PROTO_TILE_WIDTH, old_w, path, sizeof path) == 0) {
                if (unlinkat(s->dir_fd, path, 0) < 0 && errno != ENOENT)
                        ret = -errno;
                *strrchr(path, '/') = '\0';
                (void) unlinkat(s->dir_fd, path, AT_REMOVEDIR);
        }
        for (unsigned L = 0; 8 * L < 64; L++) {
                uint64_t oc = old_size >> (8 * L), nc = new_size >> (8 * L);
                unsigned ow = (unsigned) (oc % PROTO_TILE_WIDTH), nw = (unsigned) (nc % PROTO_TILE_WIDTH);

                if (ow == 0 || (oc / PROTO_TILE_WIDTH == nc / PROTO_TILE_WIDTH && ow == nw))
                        continue;
                int r = proto_tile_store_remove_partial(s, L, oc / PROTO_TILE_WIDTH, ow);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        return ret;
}

/* Removes, in directory dir (relative to the store), the files a crash can
 * leave: ".tmp-*" temporaries and, when keep_width is set (a "<N>.p"
 * directory), every partial width but keep (0: all). Then the directory
 * itself when it is left empty. Missing directories are not an error. */
static int sweep_dir(proto_tile_store *s, const char *dir, bool partial_dir, unsigned keep) {
        int fd = openat(s->dir_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -errno;
        }
        int r = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                const char *n = de->d_name;
                bool tmp = strncmp(n, ".tmp-", 5) == 0;
                bool stale = partial_dir && n[0] != '.' && strtoul(n, NULL, 10) != keep;
                if ((tmp || stale) && unlinkat(dirfd(d), n, 0) < 0 && errno != ENOENT && r == 0)
                        r = -errno;
        }
        closedir(d);
        if (partial_dir)
                (void) unlinkat(s->dir_fd, dir, AT_REMOVEDIR); /* only when empty */
        return r;
}

/* The directory part of path, in place. */
static void dirname_of(char *path) {
        char *slash = strrchr(path, '/');
        if (slash)
                *slash = '\0';
}

int proto_tile_store_sweep(proto_tile_store *s, uint64_t size, int entries) {
        char path[PROTO_TILE_PATH_MAX];
        int ret = 0, r;

        if (unlinkat(s->dir_fd, ".tmp-checkpoint", 0) < 0 && errno != ENOENT)
                ret = -errno;
        for (unsigned L = 0; 8 * L < 64 && (L == 0 || (size >> (8 * L)) > 0); L++) {
                uint64_t c = size >> (8 * L), N = c / PROTO_TILE_WIDTH;
                unsigned W = (unsigned) (c % PROTO_TILE_WIDTH);
                /* the directories of the last full tile, of the edge's tile,
                 * and of the next one (a publication in flight at the
                 * crash may have reached it) */
                for (uint64_t n = N ? N - 1 : 0; n <= N + 1; n++) {
                        for (int e = 0; e <= (L == 0 && entries); e++) {
                                r = e ? proto_tile_entries_path(n, PROTO_TILE_WIDTH, path, sizeof path)
                                      : proto_tile_path(L, n, PROTO_TILE_WIDTH, path, sizeof path);
                                if (r < 0)
                                        return r;
                                size_t len = strlen(path);
                                dirname_of(path);
                                r = sweep_dir(s, path, false, 0);
                                if (r < 0 && ret == 0)
                                        ret = r;
                                /* "<n>.p": the partial widths of tile n */
                                r = e ? proto_tile_entries_path(n, PROTO_TILE_WIDTH, path, sizeof path)
                                      : proto_tile_path(L, n, PROTO_TILE_WIDTH, path, sizeof path);
                                if (r < 0 || len + 3 > sizeof path)
                                        return r < 0 ? r : -ENOBUFS;
                                memcpy(path + len, ".p", 3);
                                r = sweep_dir(s, path, true, n == N ? W : 0);
                                if (r == -ENOTEMPTY)
                                        r = 0;
                                if (r < 0 && ret == 0)
                                        ret = r;
                        }
                }
        }
        return ret;
}

int proto_tile_bundle_add(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *entry, size_t n) {
        if (n > 0xffff)
                return -EMSGSIZE;
        if (*cap - *len < n + 2) {
                size_t c = *cap ? *cap : 4096;
                while (c - *len < n + 2)
                        c *= 2;
                uint8_t *p = realloc(*buf, c);
                if (!p)
                        return -ENOMEM;
                *buf = p;
                *cap = c;
        }
        (*buf)[(*len)++] = (uint8_t) (n >> 8);
        (*buf)[(*len)++] = (uint8_t) n;
        memcpy(*buf + *len, entry, n);
        *len += n;
        return 0;
}

int proto_tile_bundle_next(proto_cursor *c, const uint8_t **ret, size_t *ret_n) {
        const uint8_t *l;
        proto_cursor save = *c;

        if (c->len == 0)
                return -ENODATA;
        if (proto_cursor_get_bytes(c, 2, &l) < 0)
                return -EBADMSG;
        size_t n = (size_t) l[0] << 8 | l[1];
        if (n == 0 || proto_cursor_get_bytes(c, n, ret) < 0) {
                *c = save;
                return -EBADMSG;
        }
        *ret_n = n;
        return 0;
}

int proto_tile_store_read_bundle(proto_tile_store *s, uint64_t index, unsigned width, uint8_t **ret,
                                 size_t *ret_len) {
        char path[PROTO_TILE_PATH_MAX];
        uint64_t size;
        uint8_t *buf = NULL;
        int fd, r;

        r = proto_tile_entries_path(index, width, path, sizeof path);
        if (r < 0)
                return r;
        fd = open_regular(s, path, (uint64_t) width * (2u + 0xffffu), false, &size);
        if (fd < 0)
                return fd;
        buf = malloc(size ? (size_t) size : 1);
        if (!buf) {
                r = -ENOMEM;
                goto out;
        }
        r = proto_fd_pread_all(fd, buf, (size_t) size, 0);
        if (r == -ENODATA)
                r = -EBADMSG; /* shrunk since fstat */
        if (r >= 0) {
                *ret = buf;
                *ret_len = (size_t) size;
                buf = NULL;
        }
out:
        free(buf);
        close(fd);
        return r;
}

void proto_tile_store_set_durable(proto_tile_store *s, int durable) {
        s->nosync = !durable;
}

int proto_tile_store_sync(proto_tile_store *s) {
        return syncfs(s->dir_fd) < 0 ? -errno : 0;
}

void proto_tile_store_set_bad(proto_tile_store *s, unsigned level, uint64_t index, unsigned width) {
        pthread_mutex_lock(&s->lock);
        if (proto_tile_path(level, index, width, s->bad, sizeof s->bad) < 0)
                s->bad[0] = '\0';
        pthread_mutex_unlock(&s->lock);
}

const char *proto_tile_store_bad(proto_tile_store *s) {
        return s->bad;
}
