/* File hashing: see filehash.h. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "filehash.h"

int proto_sha256_fd(int fd, uint8_t out[PROTO_SHA256_LEN]) {
        uint8_t buf[65536];
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        ssize_t k;
        int r = 0;

        if (!md)
                return -ENOMEM;
        if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
                r = -EIO;
        while (r == 0 && (k = read(fd, buf, sizeof buf)) != 0) {
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        r = -errno;
                else if (EVP_DigestUpdate(md, buf, (size_t) k) != 1)
                        r = -EIO;
        }
        if (r == 0 && EVP_DigestFinal_ex(md, out, NULL) != 1)
                r = -EIO;
        EVP_MD_CTX_free(md);
        return r;
}

int proto_sha256_file(const char *path, uint8_t out[PROTO_SHA256_LEN]) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        int r;

        if (fd < 0)
                return -errno;
        r = proto_sha256_fd(fd, out);
        close(fd);
        return r;
}
