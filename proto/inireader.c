/* A strict line reader for libinih: see inireader.h. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inireader.h"

int proto_ini_reader_error(struct proto_ini_reader *rd, int err, const char *fmt, ...) {
        va_list ap;

        if (rd->error < 0)
                return rd->error;
        va_start(ap, fmt);
        vsnprintf(rd->message, sizeof rd->message, fmt, ap);
        va_end(ap);
        rd->error = err;
        rd->error_line = rd->line;
        return err;
}

/* libinih's default inline comment rule: ';' after whitespace. */
static const char *find_chars_or_comment(const char *s, const char *chars) {
        bool was_space = false;

        while (*s && !strchr(chars, *s) && !(was_space && *s == ';')) {
                was_space = isspace((unsigned char) *s);
                s++;
        }
        return s;
}

/* A stripped line as libinih will see it; headers go to rd->section. */
static int line_check(struct proto_ini_reader *rd, const char *line) {
        const char *end, *rest;
        char *name;
        int r;

        if (line[0] == '\0' || line[0] == ';' || line[0] == '#')
                return 0;
        if (line[0] != '[') {
                end = find_chars_or_comment(line, "=:");
                if (*end != '=' && *end != ':')
                        return proto_ini_reader_error(rd, -EINVAL, "expected \"key = value\" or \"[section]\"");
                return 0;
        }
        end = find_chars_or_comment(line + 1, "]");
        if (*end != ']')
                return proto_ini_reader_error(rd, -EINVAL, "missing \"]\" in section header");
        for (rest = end + 1; isspace((unsigned char) *rest); rest++)
                ;
        if (*rest != '\0' && *rest != ';' && *rest != '#')
                return proto_ini_reader_error(rd, -EINVAL, "unexpected text after section header");
        name = strndup(line + 1, (size_t) (end - line - 1));
        if (!name)
                return proto_ini_reader_error(rd, -ENOMEM, "out of memory");
        r = rd->section ? rd->section(rd, name) : 0;
        free(name);
        return r;
}

char *proto_ini_reader_next(char *str, int num, void *stream) {
        struct proto_ini_reader *rd = stream;
        const char *start, *nl;
        size_t len;

        if (rd->error < 0 || rd->pos >= rd->size)
                return NULL;
        start = rd->data + rd->pos;
        nl = memchr(start, '\n', rd->size - rd->pos);
        len = nl ? (size_t) (nl - start) : rd->size - rd->pos;
        rd->pos += len + (nl ? 1 : 0);
        rd->line++;

        if (memchr(start, '\0', len)) {
                proto_ini_reader_error(rd, -EINVAL, "NUL byte in line");
                return NULL;
        }
        if (rd->line == 1 && len >= 3 && memcmp(start, "\xef\xbb\xbf", 3) == 0) {
                start += 3;
                len -= 3;
        }
        while (len > 0 && isspace((unsigned char) start[0])) {
                start++;
                len--;
        }
        while (len > 0 && isspace((unsigned char) start[len - 1]))
                len--;
        if (num < 2 || len > (size_t) num - 1) {
                proto_ini_reader_error(rd, -EINVAL, "line too long (max %d characters)", num < 2 ? 0 : num - 1);
                return NULL;
        }
        memcpy(str, start, len);
        str[len] = '\0';
        if (line_check(rd, str) < 0)
                return NULL;
        return str;
}
