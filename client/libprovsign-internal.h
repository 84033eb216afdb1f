/* Internals of libprovsign that tests reach through client_testable_dep
 * (a static library of the same sources). Not installed, not exported: the
 * version script exports provsign_* only. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "provsign.h"

/* client_conn_from_fd: wraps an already connected SOCK_STREAM socket in a
 * provsign_conn (tests hand it one end of a socketpair). On success the
 * connection owns fd and *ret is set; on failure (-EBADF for a negative
 * fd, -EINVAL for NULL ret, -ENOMEM) fd stays the caller's. */
int client_conn_from_fd(int fd, provsign_conn **ret);

/* client_pem_from_der: "-----BEGIN PUBLIC KEY-----" PEM of a DER
 * SubjectPublicKeyInfo, 64-column base64 lines and a trailing newline, the
 * same text as OpenSSL's PEM_write_PUBKEY(). On success *ret is a new string
 * the caller frees with free(). -EINVAL for len 0 or over 64 KiB, -ENOMEM. */
int client_pem_from_der(const uint8_t *der, size_t len, char **ret);
