/* Loading the agent's configuration file: INI through libinih, validated key
 * by key (config-keys.c).
 *
 * libinih is used for what it does well (splitting "key = value", inline
 * comments) but three of its behaviours would silently misread a config, so
 * the file is fed to ini_parse_stream() through the strict line reader of
 * proto/inireader.h (shared with the verify policy):
 *
 *   - A line that starts with whitespace after a key is taken as a
 *     continuation of that key (multi-line values), so an indented config
 *     reads "state_dir = /x" as a second value of the previous key. The
 *     reader strips leading whitespace, which turns continuations off.
 *   - Section names are truncated to 49 bytes and header lines without keys
 *     never reach the handler (no empty sections, no duplicate headers). The
 *     reader parses "[...]" headers itself, with libinih's rules, and the
 *     handler ignores libinih's section argument.
 *   - Lines longer than the line buffer are split and the rest parsed as a
 *     new line. The reader refuses them instead.
 *
 * The reader also counts lines, so every error carries FILE:LINE. The whole
 * file is read first (bounded), which also gives us O_CLOEXEC and a
 * regular-file check. Nothing here logs: the first error is returned as one
 * line of text. */

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "config-int.h"

#define CONFIG_FILE_MAX (1024u * 1024u)

static int read_file(struct parser *p, char **ret, size_t *ret_size) {
        struct stat st;
        char *buf = NULL;
        size_t size = 0;
        int fd, r = 0;

        fd = open(p->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = -errno;
                return config_parser_error_at(p, 0, r, "cannot open: %s", strerror(-r));
        }

        if (fstat(fd, &st) < 0) {
                r = -errno;
                r = config_parser_error_at(p, 0, r, "cannot read: %s", strerror(-r));
                goto out;
        }
        if (!S_ISREG(st.st_mode)) {
                r = config_parser_error_at(p, 0, -EINVAL, "not a regular file");
                goto out;
        }
        /* The policy decides who may sign: a file others may rewrite hands
         * them that decision at the next SIGHUP. */
        if (st.st_mode & (S_IWGRP | S_IWOTH)) {
                r = config_parser_error_at(p, 0, -EPERM,
                                           "is group- or world-writable (mode %04o); chmod go-w it",
                                           (unsigned) (st.st_mode & 07777));
                goto out;
        }

        /* one byte more than allowed, to notice a file that is too large */
        buf = malloc(CONFIG_FILE_MAX + 1);
        if (!buf) {
                r = config_parser_error_at(p, 0, -ENOMEM, "out of memory");
                goto out;
        }
        while (size <= CONFIG_FILE_MAX) {
                ssize_t n = read(fd, buf + size, CONFIG_FILE_MAX + 1 - size);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        r = config_parser_error_at(p, 0, r, "cannot read: %s", strerror(-r));
                        goto out;
                }
                if (n == 0)
                        break;
                size += (size_t) n;
        }
        if (size > CONFIG_FILE_MAX) {
                r = config_parser_error_at(p, 0, -EFBIG, "too large (max %u bytes)", CONFIG_FILE_MAX);
                goto out;
        }

        *ret = buf;
        *ret_size = size;
        buf = NULL;
out:
        free(buf);
        close(fd);
        return r;
}
int agent_config_load(const char *path, agent_config **ret, char **ret_error) {
        struct parser p = { .path = path };
        char *data = NULL;
        int r;

        p.config = config_new(path);
        if (!p.config) {
                r = config_parser_oom(&p);
                goto out;
        }

        r = read_file(&p, &data, &p.rd.size);
        if (r < 0)
                goto out;
        p.rd.data = data;
        p.rd.section = config_reader_section;
        p.rd.userdata = &p;

        r = ini_parse_stream(proto_ini_reader_next, &p.rd, config_handler, &p);
        if (p.error == 0 && p.rd.error < 0) /* the reader's own: NUL byte, line too long, bad line */
                config_parser_error_at(&p, p.rd.error_line, p.rd.error, "%s", p.rd.message);
        if (p.error < 0) {
                r = p.error;
                goto out;
        }
        if (r == -2) {
                r = config_parser_oom(&p);
                goto out;
        }
        if (r != 0) {
                /* the reader pre-checks every line libinih refuses */
                r = config_parser_error_at(&p, r > 0 ? (unsigned) r : 0, -EINVAL, "syntax error");
                goto out;
        }

        r = config_finish(p.config);
        if (r < 0) {
                r = config_parser_oom(&p);
                goto out;
        }

        *ret = p.config;
        p.config = NULL;
        r = 0;
out:
        if (r < 0)
                *ret_error = p.message;
        else
                free(p.message);
        free(p.section);
        free(data);
        agent_config_free(p.config);
        return r;
}

