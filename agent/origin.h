/* The log's origin (the name in its checkpoints) is part of the log: it is
 * recorded in <state_dir>/log/origin when the agent first opens the log, and
 * an agent whose configured log_origin differs refuses to start, naming both.
 * Without this, editing log_origin (or a reinstalled default config) would
 * republish an existing log under another name without a word, and every
 * auditor's `audit verify --previous` would fail. A log written by a version
 * without the file gets it, from the config, at its first start. */
#pragma once

/* agent_origin_bind: checks origin against the one recorded in dir_fd (the
 * log directory, named dir in messages), recording it when there is none.
 * 0; -EEXIST when they differ, other negative errno; *ret_error (caller
 * frees) then says what and where (config_path names the config). */
int agent_origin_bind(int dir_fd, const char *dir, const char *origin, const char *config_path,
                      char **ret_error);
