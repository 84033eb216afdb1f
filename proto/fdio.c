/* See fdio.h. */
#include <errno.h>
#include <unistd.h>

#include "fdio.h"

int proto_fd_write_all(int fd, const void *p, size_t n) {
        const uint8_t *b = p;

        while (n > 0) {
                ssize_t k = write(fd, b, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -EIO;
                b += k;
                n -= (size_t) k;
        }
        return 0;
}

int proto_fd_pread_all(int fd, void *p, size_t n, uint64_t off) {
        uint8_t *b = p;

        while (n > 0) {
                ssize_t k = pread(fd, b, n, (off_t) off);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -ENODATA;
                b += k;
                n -= (size_t) k;
                off += (uint64_t) k;
        }
        return 0;
}
