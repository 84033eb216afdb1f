/* The log's origin, recorded beside its segments (see origin.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "origin.h"

#define ORIGIN_FILE "origin"
#define ORIGIN_TMP "origin.tmp"
#define ORIGIN_MAX 1024

/* Reads the recorded origin (one line) into buf. 0, -ENOENT when there is
 * none, -EBADMSG when the file is not one line of at most ORIGIN_MAX - 1
 * bytes, other -errno. */
static int read_origin(int dir_fd, char buf[ORIGIN_MAX]) {
        int fd = openat(dir_fd, ORIGIN_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
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

static int write_origin(int dir_fd, const char *origin) {
        int fd = openat(dir_fd, ORIGIN_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        size_t len = strlen(origin);
        int r = 0;
        if (dprintf(fd, "%s\n", origin) != (int) len + 1)
                r = -EIO;
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        close(fd);
        if (r == 0 && renameat(dir_fd, ORIGIN_TMP, dir_fd, ORIGIN_FILE) < 0)
                r = -errno;
        if (r == 0 && fsync(dir_fd) < 0)
                r = -errno;
        if (r < 0)
                (void) unlinkat(dir_fd, ORIGIN_TMP, 0);
        return r;
}

int agent_origin_bind(int dir_fd, const char *dir, const char *origin, const char *config_path,
                      char **ret_error) {
        char recorded[ORIGIN_MAX];
        int r = read_origin(dir_fd, recorded);
        if (r == 0) {
                if (strcmp(recorded, origin) == 0)
                        return 0;
                return agent_errorf(ret_error, -EEXIST,
                                    "%s: log_origin \"%s\" differs from \"%s\", the origin of the log in %s "
                                    "(recorded in %s/" ORIGIN_FILE "): a log keeps its name for life; set "
                                    "log_origin back, or start a new log in another state_dir",
                                    config_path, origin, recorded, dir, dir);
        }
        if (r == -EBADMSG)
                return agent_errorf(ret_error, r, "%s/" ORIGIN_FILE ": not one line naming the log's origin", dir);
        if (r != -ENOENT)
                return agent_errorf(ret_error, r, "%s/" ORIGIN_FILE ": %s", dir, strerror(-r));
        r = write_origin(dir_fd, origin);
        if (r < 0)
                return agent_errorf(ret_error, r, "cannot record the log's origin in %s/" ORIGIN_FILE ": %s", dir,
                                    strerror(-r));
        log_notice("audit log %s: origin \"%s\" recorded in %s/" ORIGIN_FILE, dir, origin, dir);
        return 0;
}
