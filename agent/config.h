/* The agent's configuration file (INI, libinih). docs/operations.md "Config" is the
 * contract: keys, sections, users and groups by name or number, durations
 * such as 30s, 5m, 12h, 90d. Unknown or duplicate keys are errors.
 *
 * A loaded agent_config is immutable; SIGHUP loads a new one and swaps it in
 * only when it loaded cleanly. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Who a section admits: uids = ..., gids = ... (space or comma separated,
 * names resolved at load time). */
typedef struct agent_id_set {
        uid_t *uids;
        size_t n_uids;
        gid_t *gids;
        size_t n_gids;
} agent_id_set;

typedef struct agent_rate {
        uint32_t count;      /* 0: unlimited */
        uint32_t per_s;      /* window length in seconds: 1, 60 or 3600 */
} agent_rate;

typedef struct agent_principal {
        char *name;          /* [A-Za-z0-9._-], 1..64 chars, not "log" */
        agent_id_set ids;
        int algorithm;       /* PROVSIGN__KEY_ALGORITHM__*; agent default if unset */
        uint64_t rotate_after_s; /* 0: agent default */
        agent_rate rate_limit;   /* count 0: agent default */
} agent_principal;

enum agent_journal_events {
        AGENT_JOURNAL_DEFAULT = 0, /* lifecycle and refusals */
        AGENT_JOURNAL_ALL,         /* plus every signature */
        AGENT_JOURNAL_NONE,
};

typedef struct agent_config {
        char *path;                  /* as given to agent_config_load */

        /* [agent] */
        char *socket;                /* default /run/provsign/agent.sock */
        char *socket_group;          /* NULL: socket keeps the agent's gid */
        gid_t socket_gid;
        char *state_dir;             /* default /var/lib/provsign */
        char *publish_dir;           /* the log as C2SP tlog-tiles; NULL: <state_dir>/tlog */
        bool publish_entries;        /* also tile/entries/ bundles; default no */
        char *pkcs11_module;         /* default /usr/lib/softhsm/libsofthsm2.so */
        char *token_label;           /* default provsign */
        char *pin_file;              /* NULL: use the credential */
        char *pin_credential;        /* default "pin" ($CREDENTIALS_DIRECTORY/NAME) */
        int algorithm;               /* default ecdsa-p256 */
        char *log_origin;            /* NULL until set; no spaces, no '+' */
        char *key_namespace;         /* default: log_origin up to its first '/' (NULL without one) */
        uint32_t checkpoint_every;   /* default 1000 entries */
        uint64_t checkpoint_interval_s; /* default 60 */
        enum agent_journal_events journal_events;
        uint64_t rotate_after_s;     /* 0: never */
        uint64_t retain_entries_s;   /* 0 (unset): forever; else entries older are purged (audit_purge) */
        bool auto_rotate_on_revoke;  /* default no */
        uint32_t max_connections;    /* default 1024 */
        uint32_t max_connections_per_uid; /* default 128 */
        uint32_t max_inflight_per_connection; /* default 16 */
        uint64_t idle_timeout_s;     /* default 300 */
        uint64_t read_timeout_s;     /* default 10 */
        uint64_t hsm_timeout_s;      /* default 5 */
        agent_rate rate_limit;       /* default unlimited */
        uint32_t max_annotations;    /* default 32 */
        uint32_t max_annotation_bytes; /* default 4096: key + value, per annotation */
        uint32_t workers;            /* token threads; 0 (default): two per CPU, 4..32 */

        agent_principal *principals;
        size_t n_principals;

        agent_id_set operators;      /* [role operator] */
        agent_id_set auditors;       /* [role auditor] */
} agent_config;

/* agent_config_load: reads and validates path. On success returns 0 and the
 * caller owns *ret (agent_config_free). On failure returns a negative errno
 * and *ret_error holds one line, "FILE:LINE: message" where a line is
 * involved, else "FILE: message" (caller frees). Never logs. */
int agent_config_load(const char *path, agent_config **ret, char **ret_error);

void agent_config_free(agent_config *c);

const agent_principal *agent_config_find_principal(const agent_config *c, const char *name);

/* agent_parse_duration: "30s", "5m", "12h", "90d" (a bare number is seconds).
 * 0 with *ret_s set, or -EINVAL. */
int agent_parse_duration(const char *s, uint64_t *ret_s);
