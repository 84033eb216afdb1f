/* The replay driver: runs a harness's LLVMFuzzerTestOneInput() over files,
 * so every committed corpus input (and every crash-* reproducer) is an
 * ordinary meson test in builds without libFuzzer. [p11-kit fuzz/main.c,
 * wireguard src/fuzz]
 *
 *   replay-<name> PATH...   each PATH a file, or a directory whose regular
 *                           files are replayed (not recursively, dot files
 *                           skipped), in name order
 *
 * Each input is read into a heap buffer of exactly its size, so ASan sees a
 * read one byte past it. Exit 0 after replaying at least one input; 1 on
 * an unreadable path or an empty corpus. A failed invariant aborts. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

/* libFuzzer's optional hook; a harness may define it. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Bigger than any harness's input limit; a corpus file is never this big. */
#define REPLAY_FILE_MAX (16u * 1024u * 1024u)

/* Reads path into a heap buffer of exactly its size (malloc(0) for an empty
 * file: ASan flags any read of it), so ASan sees a read one byte past the
 * input. */
static int read_exact(const char *path, uint8_t **ret, size_t *ret_size) {
        struct stat st;
        uint8_t *buf = NULL;
        size_t size = 0;
        int fd, r = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0 || st.st_size < 0 || (uint64_t) st.st_size > REPLAY_FILE_MAX) {
                r = -EFBIG;
                goto out;
        }
        buf = malloc((size_t) st.st_size);
        if (!buf && st.st_size > 0) {
                r = -ENOMEM;
                goto out;
        }
        while (size < (size_t) st.st_size) {
                ssize_t n = read(fd, buf + size, (size_t) st.st_size - size);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        r = n < 0 ? -errno : -EIO; /* the file shrank */
                        goto out;
                }
                size += (size_t) n;
        }
        *ret = buf;
        *ret_size = size;
        buf = NULL;
out:
        free(buf);
        close(fd);
        return r;
}

static int replay_file(const char *path, unsigned *count) {
        static const uint8_t empty[1];
        uint8_t *buf = NULL;
        size_t size = 0;
        int r;

        r = read_exact(path, &buf, &size);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(-r));
                return r;
        }
        fprintf(stderr, "replay %s (%zu bytes)\n", path, size);
        LLVMFuzzerTestOneInput(buf ? buf : empty, size);
        free(buf);
        (*count)++;
        return 0;
}

static int cmp_names(const struct dirent **a, const struct dirent **b) {
        return strcmp((*a)->d_name, (*b)->d_name);
}

static int skip_dot(const struct dirent *d) {
        return d->d_name[0] != '.';
}

static int replay_dir(const char *dir, unsigned *count) {
        struct dirent **names = NULL;
        int n, r = 0;

        n = scandir(dir, &names, skip_dot, cmp_names);
        if (n < 0) {
                r = -errno;
                fprintf(stderr, "%s: %s\n", dir, strerror(-r));
                return r;
        }
        for (int i = 0; i < n; i++) {
                char *path = NULL;
                struct stat st;

                if (r == 0 && asprintf(&path, "%s/%s", dir, names[i]->d_name) < 0)
                        r = -ENOMEM;
                if (r == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode))
                        r = replay_file(path, count);
                free(path);
                free(names[i]);
        }
        free(names);
        return r;
}

int main(int argc, char **argv) {
        unsigned count = 0;
        int r = 0;

        if (argc < 2) {
                fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
                return 2;
        }
        if (LLVMFuzzerInitialize)
                LLVMFuzzerInitialize(&argc, &argv);

        for (int i = 1; i < argc && r == 0; i++) {
                struct stat st;

                if (stat(argv[i], &st) < 0) {
                        r = -errno;
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(-r));
                } else if (S_ISDIR(st.st_mode))
                        r = replay_dir(argv[i], &count);
                else
                        r = replay_file(argv[i], &count);
        }
        if (r < 0)
                return 1;
        if (count == 0) {
                fprintf(stderr, "no inputs replayed\n");
                return 1;
        }
        fprintf(stderr, "%u inputs replayed\n", count);
        return 0;
}
