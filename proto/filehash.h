/* SHA-256 of a file's contents, streamed (64 KiB at a time). */
#pragma once

#include <stdint.h>

#define PROTO_SHA256_LEN 32

/* proto_sha256_fd: reads fd to its end and hashes what it read. 0, -errno
 * of a failed read, -ENOMEM/-EIO when libcrypto fails. fd stays open. */
int proto_sha256_fd(int fd, uint8_t out[PROTO_SHA256_LEN]);

/* proto_sha256_file: proto_sha256_fd() of path, opened read-only (no
 * controlling terminal). 0 or -errno (open's included). */
int proto_sha256_file(const char *path, uint8_t out[PROTO_SHA256_LEN]);
