#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "base64.h"
#include "filehash.h"
#include "hex.h"
#include "cli.h"
#include "trust.h"

int cli_usage_error(const char *verb, const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "provsign%s%s: ", verb ? " " : "", verb ? verb : "");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nTry 'provsign%s%s --help'.\n", verb ? " " : "", verb ? verb : "");
        return CLI_EXIT_USAGE;
}

int cli_getopt_error(const char *verb, int c, char **argv) {
        /* getopt_long() has already moved optind past the offending word. */
        const char *word = optind > 0 ? argv[optind - 1] : "";

        if (c == ':')
                return cli_usage_error(verb, "option '%s' requires an argument", word);
        if (strncmp(word, "--", 2) != 0)
                return cli_usage_error(verb, "invalid option -- '%c'", optopt);
        /* A known long option given "=value" it does not take. */
        if (optopt != 0 && strchr(word, '='))
                return cli_usage_error(verb, "option '%.*s' does not take an argument",
                                       (int) (strchr(word, '=') - word), word);
        return cli_usage_error(verb, "unrecognized option '%s'", word);
}

int cli_extra_args(const char *verb, int argc, char **argv) {
        if (optind < argc)
                return cli_usage_error(verb, "unexpected argument '%s'", argv[optind]);
        return CLI_EXIT_OK;
}

int cli_subcommand(const struct cli_ctx *ctx, const char *verb, const struct cli_verb *table, size_t n,
                   int argc, char **argv) {
        const char *sub;

        if (argc < 2)
                return cli_usage_error(verb, "missing subcommand");
        sub = argv[1];
        if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
                printf("Usage: provsign %s SUBCOMMAND [OPTIONS]\n"
                       "\n"
                       "Subcommands:\n", verb);
                for (size_t i = 0; i < n; i++)
                        printf("  %-12s %s\n", table[i].name, table[i].summary);
                printf("\n'provsign %s SUBCOMMAND --help' describes a subcommand.\n", verb);
                return CLI_EXIT_OK;
        }
        for (size_t i = 0; i < n; i++)
                if (strcmp(table[i].name, sub) == 0)
                        return table[i].run(ctx, argc - 1, argv + 1);
        return cli_usage_error(verb, "unknown subcommand '%s'", sub);
}

int cli_connect(const struct cli_ctx *ctx, provsign_conn **ret) {
        int r;

        r = provsign_connect_timeout(ctx->socket_path, ctx->timeout_ms, ret);
        if (r == -ETIMEDOUT) {
                fprintf(stderr, "provsign: cannot reach agent at %s: timed out after %s\n", ctx->socket_path,
                        ctx->timeout_text);
                return CLI_EXIT_UNREACHABLE;
        }
        if (r < 0) {
                fprintf(stderr, "provsign: cannot reach agent at %s: %s\n",
                        ctx->socket_path, provsign_strerror(r));
                return CLI_EXIT_UNREACHABLE;
        }
        return CLI_EXIT_OK;
}

int cli_exit_code(int r) {
        if (r == 0)
                return CLI_EXIT_OK;
        if (r > 0)
                return CLI_EXIT_REFUSED;
        switch (-r) {
        case ECONNRESET:
        case EPIPE:
        case ENOTCONN:
        case ETIMEDOUT:
                return CLI_EXIT_UNREACHABLE;
        default:
                return CLI_EXIT_LOCAL;
        }
}

int cli_call_failed(const struct cli_ctx *ctx, provsign_conn *conn, int r, const char *what) {
        if (r > 0) {
                /* The status name comes first so scripts can match on it. */
                fprintf(stderr, "%s: %s\n", provsign_status_name(r), cli_safe(provsign_last_message(conn)));
                return cli_exit_code(r);
        }

        switch (-r) {
        case ECONNRESET:
        case EPIPE:
        case ENOTCONN:
                /* The agent went away mid-call (restart, crash, idle
                 * timeout): as unreachable as a refused connect, and as
                 * worth retrying. */
                fprintf(stderr, "provsign: lost connection to agent at %s: %s\n",
                        ctx->socket_path, provsign_strerror(r));
                break;
        case ETIMEDOUT:
                fprintf(stderr, "provsign: %s: timed out waiting for agent at %s (after %s)\n", what,
                        ctx->socket_path, ctx->timeout_text);
                break;
        case EPROTO:
                fprintf(stderr, "provsign: %s: malformed reply from agent at %s\n", what, ctx->socket_path);
                break;
        default:
                fprintf(stderr, "provsign: %s: %s\n", what, provsign_strerror(r));
                break;
        }
        return cli_exit_code(r);
}

int cli_print_json(json_t *j) {
        int r;

        if (!j) {
                fprintf(stderr, "provsign: cannot encode the agent's reply as JSON (invalid UTF-8?)\n");
                return CLI_EXIT_LOCAL;
        }
        r = json_dumpf(j, stdout, JSON_COMPACT);
        json_decref(j);
        if (r < 0 || putchar('\n') == EOF) {
                fprintf(stderr, "provsign: cannot write output: %m\n");
                return CLI_EXIT_LOCAL;
        }
        return CLI_EXIT_OK;
}

char *cli_base64(const uint8_t *in, size_t len) {
        return proto_base64_encode(in, len);
}

bool cli_format_time(int64_t us, char buf[static 32]) {
        struct tm tm;
        time_t t;

        if (us == 0)
                return false;
        /* Floor division, so times before 1970 round the right way. */
        t = (time_t) (us / 1000000 - (us % 1000000 < 0 ? 1 : 0));
        if (!gmtime_r(&t, &tm))
                return false;
        return strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) > 0;
}

int cli_read_file(const char *verb, const char *what, const char *path, size_t max, char **ret, size_t *ret_len) {
        bool is_stdin = strcmp(path, "-") == 0;
        size_t len = 0, cap = 4096;
        char *buf = NULL;
        int fd, r = CLI_EXIT_LOCAL;

        fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                fprintf(stderr, "provsign: %s: cannot read %s %s: %m\n", verb, what, path);
                return CLI_EXIT_LOCAL;
        }

        for (;;) {
                ssize_t k;

                if (!buf || len == cap) {
                        char *p;

                        if (buf)
                                cap *= 2;
                        p = realloc(buf, cap + 1);
                        if (!p) {
                                fprintf(stderr, "provsign: out of memory\n");
                                goto out;
                        }
                        buf = p;
                }
                k = read(fd, buf + len, cap - len);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        fprintf(stderr, "provsign: %s: cannot read %s %s: %m\n", verb, what, path);
                        goto out;
                }
                if (k == 0)
                        break;
                len += (size_t) k;
                if (len > max) {
                        fprintf(stderr, "provsign: %s: cannot read %s %s: larger than %zu bytes\n", verb, what, path, max);
                        goto out;
                }
        }
        buf[len] = '\0';

        *ret = buf;
        buf = NULL;
        if (ret_len)
                *ret_len = len;
        r = CLI_EXIT_OK;
out:
        free(buf);
        if (!is_stdin)
                close(fd);
        return r;
}

/* The mode the file at path gets: an existing regular file's own (its
 * owner placed it), else 0644 (public data), whatever the umask. A
 * symlink or anything else there is replaced, never followed. */
static mode_t output_mode(const char *path) {
        struct stat st;

        if (fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
                return st.st_mode & 07777;
        return 0644;
}

static int write_all(int fd, const char *data, size_t len) {
        while (len > 0) {
                ssize_t k = write(fd, data, len);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                data += k;
                len -= (size_t) k;
        }
        return 0;
}

/* cli_write_file, and cli_write_new_file when replace is false. */
static int write_file(const char *verb, const char *what, const char *path, const char *data, size_t len,
                      bool replace) {
        char *tmp = NULL;
        int fd = -1, r;

        /* A new file beside the target (mkostemp: O_CREAT|O_EXCL, so no
         * symlink is followed), renamed over it once complete: a reader
         * never sees half a file, and a link planted at path is replaced
         * rather than written through. */
        if (asprintf(&tmp, "%s.XXXXXX", path) < 0) {
                tmp = NULL;
                r = -ENOMEM;
                goto fail;
        }
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                free(tmp);
                tmp = NULL;
                goto fail;
        }
        r = fchmod(fd, output_mode(path)) < 0 ? -errno : write_all(fd, data, len);
        /* close() reports what a network file system deferred. */
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && replace && rename(tmp, path) < 0)
                r = -errno;
        /* link() never replaces what is at path (EEXIST); the temporary
         * name goes either way. */
        if (r == 0 && !replace && link(tmp, path) < 0)
                r = -errno;
        if (r == 0) {
                if (!replace)
                        unlink(tmp);
                free(tmp);
                return CLI_EXIT_OK;
        }
fail:
        fprintf(stderr, "provsign: %s: cannot write %s %s: %s\n", verb, what, path, strerror(-r));
        if (tmp)
                unlink(tmp);
        free(tmp);
        return CLI_EXIT_LOCAL;
}

int cli_write_file(const char *verb, const char *what, const char *path, const char *data, size_t len) {
        return write_file(verb, what, path, data, len, true);
}

int cli_write_new_file(const char *verb, const char *what, const char *path, const char *data, size_t len) {
        return write_file(verb, what, path, data, len, false);
}

/* The length of the valid UTF-8 sequence at s (1 to 4) with its code point
 * in *ret_cp, or 0 for an invalid one (overlong, surrogate, past U+10FFFF,
 * truncated). */
static size_t utf8_seq(const unsigned char *s, uint32_t *ret_cp) {
        size_t n = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
        uint32_t cp;

        if (n == 0 || s[0] > 0xf4)
                return 0;
        cp = s[0] & (0x7f >> n);
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        *ret_cp = cp;
        return n;
}

/* Copies s into out (room for size bytes, NUL included) with every
 * control character and byte of broken UTF-8 replaced by '?', but newline
 * and tab when multiline. Stops before a character that does not fit;
 * returns where it stopped in s. */
static const char *safe_copy(const char *s, bool multiline, char *out, size_t size) {
        const unsigned char *p = (const unsigned char *) s;
        size_t o = 0;

        while (*p && o < size - 1) {
                uint32_t cp;
                size_t n = *p < 0x80 ? 1 : utf8_seq(p, &cp);

                bool control = (n == 1 && (*p < 0x20 || *p == 0x7f) && !(multiline && (*p == '\n' || *p == '\t'))) ||
                               (n > 1 && cp < 0xa0); /* C0, DEL; C1: U+0080..U+009F */

                if (n == 0 || control) { /* one '?' per control, and per byte of broken UTF-8 */
                        out[o++] = '?';
                        p += n ? n : 1;
                        continue;
                }
                if (o + n > size - 1)
                        break;
                memcpy(out + o, p, n);
                o += n;
                p += n;
        }
        out[o] = '\0';
        return (const char *) p;
}

const char *cli_safe(const char *s) {
        static char buf[1024];

        safe_copy(s, false, buf, sizeof buf);
        return buf;
}

int cli_write_text(FILE *f, const char *s) {
        char buf[1024];

        while (*s) {
                const char *next = safe_copy(s, true, buf, sizeof buf);

                if (next == s)          /* cannot happen with 1 KiB; never loop */
                        return -EINVAL;
                if (fputs(buf, f) == EOF)
                        return -EIO;
                s = next;
        }
        return 0;
}

int cli_file_sha256(const char *verb, const char *what, const char *path, char hex[65]) {
        uint8_t d[PROTO_SHA256_LEN];
        int r = proto_sha256_file(path, d);

        if (r < 0) {
                fprintf(stderr, "provsign: %s: cannot read %s %s: %s\n", verb, what, path, strerror(-r));
                return CLI_EXIT_LOCAL;
        }
        proto_hex_encode(d, sizeof d, hex);
        return CLI_EXIT_OK;
}

int cli_parse_annotation(const char *verb, char *arg, struct provsign_annotation *ret) {
        char *eq = strchr(arg, '=');

        if (!eq || eq == arg)
                return cli_usage_error(verb, "invalid annotation '%s': expected KEY=VALUE", arg);
        *eq = '\0';
        *ret = (struct provsign_annotation) { .key = arg, .value = eq + 1 };
        return CLI_EXIT_OK;
}

int cli_read_trust(const char *verb, const char *path, struct client_trust *t) {
        char *text = NULL, msg[256] = "";
        size_t len, line;
        int r = cli_read_file(verb, "trust file", path, CLIENT_TRUST_FILE_MAX, &text, &len);

        if (r != CLI_EXIT_OK)
                return r;
        r = client_trust_parse(text, len, t, &line, msg, sizeof msg);
        free(text);
        if (r == -ENOMEM) {
                fprintf(stderr, "provsign: out of memory\n");
                return CLI_EXIT_LOCAL;
        }
        if (r < 0) {
                fprintf(stderr, "provsign: %s: %s:%zu: ", verb, cli_safe(path), line);
                fprintf(stderr, "%s\n", cli_safe(msg));
                return CLI_EXIT_LOCAL;
        }
        return CLI_EXIT_OK;
}
