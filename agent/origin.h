/* The log's origin (the name in its checkpoints) is part of the log: it is
 * recorded in <state_dir>/log/origin when the agent first opens the log, and
 * an agent whose configured log_origin differs refuses to start, naming both.
 * Without this, editing log_origin (or a reinstalled default config) would
 * republish an existing log under another name without a word, and every
 * auditor's `audit verify --previous` would fail. A log written by a version
 * without the file gets it, from the config, at its first start. */
#pragma once

#include <stddef.h>

#include "config.h"

/* agent_origin_bind: checks origin against the one recorded in dir_fd (the
 * log directory, named dir in messages), recording it when there is none.
 * 0; -EEXIST when they differ, other negative errno; *ret_error (caller
 * frees) then says what and where (config_path names the config). */
int agent_origin_bind(int dir_fd, const char *dir, const char *origin, const char *config_path,
                      char **ret_error);

/* The key namespace is bound to the state the same way: <state_dir>/key-namespace
 * holds "<namespace> <state id>" (the id: 32 random bytes in hex, made at
 * the first start). A configured key_namespace that differs refuses to
 * start (-EEXIST). On success *ret_owner (caller frees, *ret_len bytes) is
 * the value of the namespace's owner marker on the token
 * (keys_open_options.owner): "provsign-owner 1\norigin <log_origin>\nstate
 * <state id>\n" (docs/fleet.md "Owner marker"). cfg->key_namespace and
 * cfg->log_origin must be set. */
int agent_namespace_bind(const agent_config *cfg, char **ret_owner, size_t *ret_len, char **ret_error);

/* One agent per state_dir: agent_state_lock takes an exclusive flock on the
 * state_dir directory itself (nothing is written), before anything in it
 * or on the token is touched; the agent holds *ret_fd (caller closes) for
 * its lifetime. -EBUSY when another process holds it: *ret_error names the
 * state_dir and, when /proc/locks tells, the other agent's pid. Two agents
 * on one state_dir would interleave their entries in one log and claim
 * the namespace with one state id (docs/operations.md). */
int agent_state_lock(const agent_config *cfg, int *ret_fd, char **ret_error);
