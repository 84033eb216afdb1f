/* Logging for the agent (the only part that logs, with the CLI).
 *
 * Lines go to stderr with sd-daemon priority prefixes ("<3>"), which
 * journald turns into priorities when stderr is a journal stream, and
 * which are left out when stderr is a terminal. */
#pragma once

#include <syslog.h>

void agent_log_init(void);
void agent_log(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* agent_errorf: for functions that hand one line of explanation to their
 * caller instead of logging: sets *ret_error (caller frees; NULL when out of
 * memory) and returns r. */
int agent_errorf(char **ret_error, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* agent_log_errno: logs "message: strerror(-r)" and returns r (negative). */
int agent_log_errno(int priority, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_error(...) agent_log(LOG_ERR, __VA_ARGS__)
#define log_warning(...) agent_log(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) agent_log(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) agent_log(LOG_INFO, __VA_ARGS__)
#define log_debug(...) agent_log(LOG_DEBUG, __VA_ARGS__)
