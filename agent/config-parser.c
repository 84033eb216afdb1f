/* The parse state the configuration files share (config-int.h): the first
 * error, kept as one line of text with FILE:LINE, and the small value
 * helpers every key parser uses. Nothing here logs. */

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config-int.h"

/* Records the first error only; later calls are ignored. line 0: not tied
 * to a line. */
__attribute__((format(printf, 4, 5)))
int config_parser_error_at(struct parser *p, unsigned line, int error, const char *fmt, ...) {
        char *msg = NULL;
        va_list ap;
        int r;

        if (p->error < 0)
                return p->error;

        p->error = error;
        va_start(ap, fmt);
        r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0) {
                p->error = -ENOMEM;
                return p->error;
        }

        if (line > 0)
                r = asprintf(&p->message, "%s:%u: %s", p->path, line, msg);
        else
                r = asprintf(&p->message, "%s: %s", p->path, msg);
        free(msg);
        if (r < 0) {
                p->message = NULL;
                p->error = -ENOMEM;
        }
        return p->error;
}

#define parser_error(p, error, ...) config_parser_error_at((p), (p)->rd.line, (error), __VA_ARGS__)

int config_parser_oom(struct parser *p) {
        return parser_error(p, -ENOMEM, "out of memory");
}


/* Decimal digits only: no sign, no space, no hex, no trailing junk.
 * -EINVAL on syntax, -ERANGE above UINT64_MAX. */
int config_parse_u64(const char *s, uint64_t *ret) {
        unsigned long long v;
        char *end;

        if (!isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (errno != 0 || *end != '\0')
                return -EINVAL;
        *ret = v;
        return 0;
}


int config_set_string(struct parser *p, char **dst, const char *value) {
        char *s = strdup(value);

        if (!s)
                return config_parser_oom(p);
        free(*dst);
        *dst = s;
        return 0;
}
