/* A strict line reader for libinih's ini_parse_stream(), for INI files
 * read whole into memory (agent.conf, the verify policy).
 *
 * libinih splits "key = value" and strips inline comments well, but would
 * silently misread three things, which this reader prevents: an indented
 * line after a key is a continuation of that key (the reader strips
 * leading whitespace); section names are truncated to 49 bytes and headers
 * without keys never reach the handler (the reader parses "[...]" headers
 * itself and hands the whole name to a callback; handlers should ignore
 * libinih's section argument); a line longer than libinih's buffer is split
 * and the rest parsed as a new line (the reader refuses it). It also counts
 * lines, so every error has its line number, and refuses NUL bytes.
 *
 * Used by agent/config-load.c and client/verify-policy.c. Nothing here prints. */
#pragma once

#include <stddef.h>

struct proto_ini_reader {
        const char *data;          /* the whole file, borrowed */
        size_t size, pos;
        unsigned line;             /* of the line last handed out */
        int error;                 /* 0, or the first error (negative) */
        unsigned error_line;       /* its line (rd->line then; a caller may point elsewhere) */
        char message[256];         /* what the first error was */
        /* called with each section header's name (between "[" and "]", as
         * written); 0, or negative after proto_ini_reader_error() */
        int (*section)(struct proto_ini_reader *rd, const char *name);
        void *userdata;
};

/* proto_ini_reader_next: an ini_reader for ini_parse_stream(reader_next,
 * rd, handler, user): the next line into str (num bytes), NULL at the end
 * or after an error (rd->error, rd->message). */
char *proto_ini_reader_next(char *str, int num, void *stream);

/* proto_ini_reader_error: records the first error (err < 0) with a message
 * and returns err. */
int proto_ini_reader_error(struct proto_ini_reader *rd, int err, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
