#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pin.h"

#define PIN_MAX 256

void agent_pin_wipe(agent_pin *p) {
        if (!p->data)
                return;
        explicit_bzero(p->data, p->mapped);
        munlock(p->data, p->mapped);
        munmap(p->data, p->mapped);
        *p = (agent_pin){ 0 };
}

int agent_pin_read(const agent_config *c, agent_pin *ret, char **ret_error) {
        char *path = NULL;
        int r;

        if (c->pin_file)
                path = strdup(c->pin_file);
        else {
                const char *dir = getenv("CREDENTIALS_DIRECTORY");
                if (!dir) {
                        if (asprintf(ret_error,
                                     "%s: no pin_file set and $CREDENTIALS_DIRECTORY is unset "
                                     "(LoadCredential=%s:... in the unit)",
                                     c->path, c->pin_credential) < 0)
                                *ret_error = NULL;
                        return -ENOENT;
                }
                if (asprintf(&path, "%s/%s", dir, c->pin_credential) < 0)
                        path = NULL;
        }
        if (!path)
                return -ENOMEM;

        agent_pin p = { .mapped = (size_t) sysconf(_SC_PAGESIZE) };
        p.data = mmap(NULL, p.mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p.data == MAP_FAILED) {
                free(path);
                return -ENOMEM;
        }
        /* mlock may fail without CAP_IPC_LOCK and a small RLIMIT_MEMLOCK; the
         * PIN is still wiped and excluded from dumps, so carry on. */
        (void) mlock(p.data, p.mapped);
        (void) madvise(p.data, p.mapped, MADV_DONTDUMP);

        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = -errno;
                if (asprintf(ret_error, "%s: cannot read PIN file %s: %s", c->path, path, strerror(-r)) < 0)
                        *ret_error = NULL;
                goto fail;
        }
        /* The token's PIN: only the agent's user may read it, and nobody else
         * may replace it (a PIN of their choosing is as bad: a lockout). */
        /* A credential's mode is systemd's business (with ACLs its group bits
         * show the ACL mask): only a writable one is refused. */
        mode_t forbidden = c->pin_file ? (S_IRWXG | S_IRWXO) : (S_IWGRP | S_IWOTH);
        struct stat st = { 0 };
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & forbidden)) {
                r = -EPERM;
                if (asprintf(ret_error,
                             "%s: PIN file %s must be a regular file that only its owner can read or write "
                             "(mode %04o; chmod 0600 or 0400 it)",
                             c->path, path, (unsigned) (st.st_mode & 07777)) < 0)
                        *ret_error = NULL;
                close(fd);
                goto fail;
        }
        size_t n = 0;
        for (;;) {
                ssize_t k = read(fd, p.data + n, PIN_MAX + 1 - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        r = -errno;
                        close(fd);
                        goto fail;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n > PIN_MAX)
                        break;
        }
        close(fd);
        if (n > 0 && p.data[n - 1] == '\n')
                n--;
        if (n > 0 && p.data[n - 1] == '\r')
                n--;
        if (n == 0 || n > PIN_MAX) {
                r = -EINVAL;
                if (asprintf(ret_error, "%s: PIN file %s is %s", c->path, path,
                             n == 0 ? "empty" : "longer than 256 bytes") < 0)
                        *ret_error = NULL;
                goto fail;
        }
        p.len = n;
        free(path);
        *ret = p;
        return 0;
fail:
        agent_pin_wipe(&p);
        free(path);
        return r;
}
