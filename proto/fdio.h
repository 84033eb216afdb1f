/* Whole writes and reads on a file descriptor, retried on EINTR and short
 * counts: one copy for the audit log's segments and the tile store. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* proto_fd_write_all: writes n bytes of p. 0, -errno, -EIO (write wrote 0). */
int proto_fd_write_all(int fd, const void *p, size_t n);

/* proto_fd_pread_all: reads n bytes at off into p. 0, -errno, -ENODATA
 * (the file ends first). */
int proto_fd_pread_all(int fd, void *p, size_t n, uint64_t off);
