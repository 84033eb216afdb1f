#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static bool with_prefix;
static int max_priority = LOG_INFO;

void agent_log_init(void) {
        with_prefix = getenv("JOURNAL_STREAM") != NULL || !isatty(STDERR_FILENO);
        const char *lvl = getenv("PROVSIGN_LOG_LEVEL");
        if (lvl && strcmp(lvl, "debug") == 0)
                max_priority = LOG_DEBUG;
}

static void vlog(int priority, const char *suffix, const char *fmt, va_list ap) {
        if (priority > max_priority)
                return;
        char line[1024];
        vsnprintf(line, sizeof line, fmt, ap);
        if (with_prefix)
                fprintf(stderr, "<%d>%s%s\n", priority, line, suffix);
        else
                fprintf(stderr, "provsign-agent: %s%s\n", line, suffix);
}

void agent_log(int priority, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vlog(priority, "", fmt, ap);
        va_end(ap);
}

int agent_errorf(char **ret_error, int r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(ret_error, fmt, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
        return r;
}

int agent_log_errno(int priority, int r, const char *fmt, ...) {
        char suffix[128];
        snprintf(suffix, sizeof suffix, ": %s", strerror(r < 0 ? -r : r));
        va_list ap;
        va_start(ap, fmt);
        vlog(priority, suffix, fmt, ap);
        va_end(ap);
        return r < 0 ? r : -r;
}
