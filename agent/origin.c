/* The log's origin, recorded beside its segments (see origin.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "keystore.h"
#include "log.h"
#include "origin.h"

#define ORIGIN_FILE "origin"
#define NAMESPACE_FILE "key-namespace"
#define ORIGIN_MAX 1024

/* Reads a recorded line (the file `name`) into buf. 0, -ENOENT when there is
 * none, -EBADMSG when the file is not one line of at most ORIGIN_MAX - 1
 * bytes, other -errno. */
static int read_line(int dir_fd, const char *name, char buf[ORIGIN_MAX]) {
        int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        ssize_t n = read(fd, buf, ORIGIN_MAX);
        int e = errno;
        close(fd);
        if (n < 0)
                return -e;
        if (n == 0 || n == ORIGIN_MAX || buf[n - 1] != '\n')
                return -EBADMSG;
        buf[n - 1] = '\0';
        if (strchr(buf, '\n'))
                return -EBADMSG;
        return 0;
}

/* Records one line (atomically: name.tmp, fsync, rename, fsync the dir). */
static int write_line(int dir_fd, const char *name, const char *origin) {
        char tmp[64];
        snprintf(tmp, sizeof tmp, "%s.tmp", name);
        int fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        size_t len = strlen(origin);
        int r = 0;
        if (dprintf(fd, "%s\n", origin) != (int) len + 1)
                r = -EIO;
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        close(fd);
        if (r == 0 && renameat(dir_fd, tmp, dir_fd, name) < 0)
                r = -errno;
        if (r == 0 && fsync(dir_fd) < 0)
                r = -errno;
        if (r < 0)
                (void) unlinkat(dir_fd, tmp, 0);
        return r;
}

static int origin_differs(const char *recorded, const char *origin, const char *dir, const char *config_path,
                          char **ret_error) {
        return agent_errorf(ret_error, -EEXIST,
                            "%s: log_origin \"%s\" differs from \"%s\", the origin of the log in %s "
                            "(recorded in %s/" ORIGIN_FILE "): a log keeps its name for life; set "
                            "log_origin back, or start a new log in another state_dir",
                            config_path, origin, recorded, dir, dir);
}

int agent_origin_bind(int dir_fd, const char *dir, const char *origin, const char *config_path,
                      char **ret_error) {
        char recorded[ORIGIN_MAX];
        int r = read_line(dir_fd, ORIGIN_FILE, recorded);
        if (r == 0) {
                if (strcmp(recorded, origin) == 0)
                        return 0;
                return origin_differs(recorded, origin, dir, config_path, ret_error);
        }
        if (r == -EBADMSG)
                return agent_errorf(ret_error, r, "%s/" ORIGIN_FILE ": not one line naming the log's origin", dir);
        if (r != -ENOENT)
                return agent_errorf(ret_error, r, "%s/" ORIGIN_FILE ": %s", dir, strerror(-r));
        r = write_line(dir_fd, ORIGIN_FILE, origin);
        if (r < 0)
                return agent_errorf(ret_error, r, "cannot record the log's origin in %s/" ORIGIN_FILE ": %s", dir,
                                    strerror(-r));
        log_notice("audit log %s: origin \"%s\" recorded in %s/" ORIGIN_FILE, dir, origin, dir);
        return 0;
}

int agent_namespace_bind(const agent_config *cfg, char **ret_owner, size_t *ret_len, char **ret_error) {
        char line[ORIGIN_MAX], ns[KEYS_NAMESPACE_MAX + 1], id[65];
        int dir_fd = open(cfg->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0)
                return agent_errorf(ret_error, -errno, "state_dir %s: %s", cfg->state_dir, strerror(errno));
        int r;
        /* Nothing is written to a state_dir others may write to (audit_open
         * refuses it with the same words; its check_dir runs later). */
        struct stat st;
        if (fstat(dir_fd, &st) < 0) {
                r = agent_errorf(ret_error, -errno, "state_dir %s: %s", cfg->state_dir, strerror(errno));
                goto out;
        }
        if (st.st_mode & 0022) {
                r = agent_errorf(ret_error, -EPERM, "state_dir %s is group- or world-writable (mode %04o); refusing",
                                 cfg->state_dir, (unsigned) (st.st_mode & 07777));
                goto out;
        }
        /* A renamed log_origin (which renames the default namespace) is
         * told as such, before the namespace is compared. */
        int log_fd = openat(dir_fd, "log", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (log_fd >= 0) {
                char dir[PATH_MAX];
                int rl = read_line(log_fd, ORIGIN_FILE, line);
                close(log_fd);
                snprintf(dir, sizeof dir, "%s/log", cfg->state_dir);
                if (rl == 0 && strcmp(line, cfg->log_origin) != 0) {
                        r = origin_differs(line, cfg->log_origin, dir, cfg->path, ret_error);
                        goto out;
                }
        }
        r = read_line(dir_fd, NAMESPACE_FILE, line);
        if (r == 0) {
                if (sscanf(line, "%64s %64s", ns, id) != 2 || strlen(id) != 64 ||
                    strspn(id, "0123456789abcdef") != 64 || !keys_namespace_valid(ns)) {
                        r = agent_errorf(ret_error, -EBADMSG, "%s/" NAMESPACE_FILE ": not \"<namespace> <state id>\"",
                                         cfg->state_dir);
                        goto out;
                }
                if (strcmp(ns, cfg->key_namespace) != 0) {
                        r = agent_errorf(ret_error, -EEXIST,
                                         "%s: key_namespace \"%s\" differs from \"%s\", the namespace of the keys of "
                                         "the log in %s (recorded in %s/" NAMESPACE_FILE "): set key_namespace back",
                                         cfg->path, cfg->key_namespace, ns, cfg->state_dir, cfg->state_dir);
                        goto out;
                }
        } else if (r == -ENOENT) {
                uint8_t raw[32];
                if (getrandom(raw, sizeof raw, 0) != (ssize_t) sizeof raw) {
                        r = agent_errorf(ret_error, -EIO, "getrandom: %s", strerror(errno));
                        goto out;
                }
                for (size_t i = 0; i < sizeof raw; i++)
                        snprintf(id + 2 * i, 3, "%02x", raw[i]);
                snprintf(line, sizeof line, "%s %s", cfg->key_namespace, id);
                r = write_line(dir_fd, NAMESPACE_FILE, line);
                if (r < 0) {
                        r = agent_errorf(ret_error, r, "cannot record the key namespace in %s/" NAMESPACE_FILE ": %s",
                                         cfg->state_dir, strerror(-r));
                        goto out;
                }
                log_notice("key namespace \"%s\" and this state's id recorded in %s/" NAMESPACE_FILE,
                           cfg->key_namespace, cfg->state_dir);
        } else {
                r = agent_errorf(ret_error, r, "%s/" NAMESPACE_FILE ": %s", cfg->state_dir, strerror(-r));
                goto out;
        }
        char *owner = NULL;
        int n = asprintf(&owner, "provsign-owner 1\norigin %s\nstate %s\n", cfg->log_origin, id);
        if (n < 0) {
                r = -ENOMEM;
                goto out;
        }
        *ret_owner = owner;
        *ret_len = (size_t) n;
        r = 0;
out:
        close(dir_fd);
        return r;
}

/* The pid holding a flock on the file st describes, from /proc/locks ("1:
 * FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> 0 EOF", numbers of
 * the device in hex); 0 when it cannot be told (no /proc, a sandbox
 * without it). */
static long flock_holder(const struct stat *st) {
        FILE *f = fopen("/proc/locks", "re");
        if (!f)
                return 0;
        char line[256];
        long found = 0;
        while (!found && fgets(line, sizeof line, f)) {
                char type[16], rw[16];
                long pid;
                unsigned maj, min;
                unsigned long long ino;
                /* waiters' lines carry "->" after the number: no match */
                if (sscanf(line, "%*d: %15s %*s %15s %ld %x:%x:%llu", type, rw, &pid, &maj, &min, &ino) == 6 &&
                    strcmp(type, "FLOCK") == 0 && maj == major(st->st_dev) && min == minor(st->st_dev) &&
                    ino == (unsigned long long) st->st_ino)
                        found = pid;
        }
        fclose(f);
        return found;
}

int agent_state_lock(const agent_config *cfg, int *ret_fd, char **ret_error) {
        int fd = open(cfg->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return agent_errorf(ret_error, -errno, "state_dir %s: %s", cfg->state_dir, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
                *ret_fd = fd;
                return 0;
        }
        int r = -errno;
        if (r == -EWOULDBLOCK) {
                struct stat st;
                long pid = fstat(fd, &st) == 0 ? flock_holder(&st) : 0;
                char who[64] = "";
                if (pid > 0)
                        snprintf(who, sizeof who, " (pid %ld)", pid);
                r = agent_errorf(ret_error, -EBUSY,
                                 "%s: state_dir %s is in use by another provsign-agent%s: one agent per state_dir "
                                 "(two would interleave their entries in one audit log); give this one its own "
                                 "state_dir, or stop the other",
                                 cfg->path, cfg->state_dir, who);
        } else
                r = agent_errorf(ret_error, r, "cannot lock state_dir %s: %s", cfg->state_dir, strerror(-r));
        close(fd);
        return r;
}
