/* What each section and key of the configuration means (docs/operations.md
 * "Config" is the contract): the key tables with their ranges, one parser
 * per kind of value, section headers, and the libinih handler that applies
 * them. Unknown or duplicate keys and sections are errors; the first error
 * is kept in the parser (config-parser.c). Nothing here logs. */

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "config-int.h"
#include "duration.h"
#include "frame.h"
#include "keystore.h"
#include "names.h"
#include "provsign.pb-c.h"

#define PRINCIPAL_NAME_MAX 64u
#define TOKEN_LABEL_MAX 32u /* CK_TOKEN_INFO.label */
#define SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *) NULL)->sun_path) - 1)

#define DAY_S UINT64_C(86400)
#define DURATION_MAX_S (36500 * DAY_S) /* 100 years: fits time_t arithmetic */

/* ---- values ---------------------------------------------------------- */

/* "30s", "5m", "12h", "90d", or bare seconds: proto/duration.c. */
static int duration_parse(const char *s, uint64_t *ret_s) {
        return proto_duration_parse(s, ret_s);
}

int agent_parse_duration(const char *s, uint64_t *ret_s) {
        return duration_parse(s, ret_s) < 0 ? -EINVAL : 0;
}

/* For messages: 86400 -> "1d", 90 -> "90s". */
static void format_duration(uint64_t s, char buf[32]) {
        if (s >= DAY_S && s % DAY_S == 0)
                snprintf(buf, 32, "%" PRIu64 "d", s / DAY_S);
        else if (s >= 3600 && s % 3600 == 0)
                snprintf(buf, 32, "%" PRIu64 "h", s / 3600);
        else if (s >= 60 && s % 60 == 0)
                snprintf(buf, 32, "%" PRIu64 "m", s / 60);
        else
                snprintf(buf, 32, "%" PRIu64 "s", s);
}

static int parse_path(struct parser *p, const struct config_key *k, const char *value, void *data) {
        if (value[0] != '/')
                return parser_error(p, -EINVAL, "relative path \"%s\" for %s (must be absolute)",
                                    value, k->name);
        return config_set_string(p, data, value);
}

static int parse_socket_path(struct parser *p, const struct config_key *k, const char *value, void *data) {
        /* bind() would fail much later, with a less helpful message */
        if (value[0] == '/' && strlen(value) > SOCKET_PATH_MAX)
                return parser_error(p, -EINVAL, "socket path too long (max %zu bytes)", SOCKET_PATH_MAX);
        return parse_path(p, k, value, data);
}

static int parse_token_label(struct parser *p, const struct config_key *k, const char *value, void *data) {
        (void) k;
        if (strlen(value) > TOKEN_LABEL_MAX)
                return parser_error(p, -EINVAL, "token_label \"%s\" too long (max %u bytes)",
                                    value, TOKEN_LABEL_MAX);
        return config_set_string(p, data, value);
}

/* A name under $CREDENTIALS_DIRECTORY. */
static int parse_credential(struct parser *p, const struct config_key *k, const char *value, void *data) {
        (void) k;
        if (strchr(value, '/') || streq(value, ".") || streq(value, "..") || strlen(value) > NAME_MAX)
                return parser_error(p, -EINVAL,
                                    "bad pin_credential \"%s\" (a file name: no \"/\", not \".\" or \"..\")",
                                    value);
        return config_set_string(p, data, value);
}

/* The checkpoint origin line of C2SP signed notes: no whitespace, and '+'
 * separates the key name from the key hash in verifier keys. */
static int parse_log_origin(struct parser *p, const struct config_key *k, const char *value, void *data) {
        (void) k;
        for (const char *c = value; *c; c++)
                if (*c <= ' ' || *c > '~' || *c == '+')
                        return parser_error(p, -EINVAL,
                                            "bad log_origin \"%s\" (printable ASCII, no spaces, no \"+\")",
                                            value);
        return config_set_string(p, data, value);
}

/* The key namespace (keys/keystore.h): the middle of every CKA_LABEL. */
static int parse_key_namespace(struct parser *p, const struct config_key *k, const char *value, void *data) {
        (void) k;
        if (!keys_namespace_valid(value))
                return parser_error(p, -EINVAL, "bad key_namespace \"%s\" (1..%u of A-Z a-z 0-9 . _ -)", value,
                                    KEYS_NAMESPACE_MAX);
        return config_set_string(p, data, value);
}

static int parse_algorithm(struct parser *p, const struct config_key *k, const char *value, void *data) {
        int alg = proto_key_algorithm_from_name(value);

        (void) k;
        if (alg < 0)
                return parser_error(p, -EINVAL, "bad algorithm \"%s\" (ecdsa-p256, ecdsa-p384, rsa-3072)",
                                    value);
        *(int *) data = alg;
        return 0;
}

static int parse_u32(struct parser *p, const struct config_key *k, const char *value, void *data) {
        uint64_t v;
        int r = config_parse_u64(value, &v);

        if (r == -EINVAL)
                return parser_error(p, -EINVAL, "bad number \"%s\" for %s (use a decimal number)",
                                    value, k->name);
        if (r < 0 || v < k->min || v > k->max)
                return parser_error(p, -EINVAL, "number %s out of range for %s (%" PRIu64 "..%" PRIu64 ")",
                                    value, k->name, k->min, k->max);
        *(uint32_t *) data = (uint32_t) v;
        return 0;
}

static int parse_duration(struct parser *p, const struct config_key *k, const char *value, void *data) {
        char lo[32], hi[32];
        uint64_t v;
        int r = duration_parse(value, &v);

        if (r == -EINVAL)
                return parser_error(p, -EINVAL, "bad duration \"%s\" for %s (use 30s, 5m, 12h, 90d)",
                                    value, k->name);
        if (r < 0 || v < k->min || v > k->max) {
                format_duration(k->min, lo);
                format_duration(k->max, hi);
                return parser_error(p, -EINVAL, "duration %s out of range for %s (%s..%s)",
                                    value, k->name, lo, hi);
        }
        *(uint64_t *) data = v;
        return 0;
}

static int parse_bool(struct parser *p, const struct config_key *k, const char *value, void *data) {
        bool *b = data;

        if (strcasecmp(value, "yes") == 0 || strcasecmp(value, "true") == 0 || streq(value, "1"))
                *b = true;
        else if (strcasecmp(value, "no") == 0 || strcasecmp(value, "false") == 0 || streq(value, "0"))
                *b = false;
        else
                return parser_error(p, -EINVAL, "bad boolean \"%s\" for %s (yes, no, true, false, 1, 0)",
                                    value, k->name);
        return 0;
}

static int parse_journal_events(struct parser *p, const struct config_key *k, const char *value, void *data) {
        enum agent_journal_events *e = data;

        (void) k;
        if (streq(value, "default"))
                *e = AGENT_JOURNAL_DEFAULT;
        else if (streq(value, "all"))
                *e = AGENT_JOURNAL_ALL;
        else if (streq(value, "none"))
                *e = AGENT_JOURNAL_NONE;
        else
                return parser_error(p, -EINVAL, "bad journal_events \"%s\" (default, all, none)", value);
        return 0;
}

/* "N/s", "N/m", "N/h" with N >= 1, or "0"/"off" (k->min == 0 only). In a
 * principal, count 0 means "the agent's rate_limit", so "off" cannot be
 * expressed there and is refused rather than silently meaning the opposite. */
static int parse_rate(struct parser *p, const struct config_key *k, const char *value, void *data) {
        agent_rate *rate = data;
        uint64_t n = 0;
        uint32_t per_s = 0;
        char *copy, *slash;
        int r;

        if (streq(value, "off") || streq(value, "0")) {
                if (k->min > 0)
                        return parser_error(p, -EINVAL,
                                            "bad rate_limit \"%s\" in [%s] (use N/s, N/m or N/h; "
                                            "omit rate_limit to use the agent's)", value, p->section);
                *rate = (agent_rate) { .count = 0, .per_s = 1 };
                return 0;
        }

        copy = strdup(value);
        if (!copy)
                return config_parser_oom(p);
        slash = strchr(copy, '/');
        r = -EINVAL;
        if (slash) {
                *slash = '\0';
                if (streq(slash + 1, "s"))
                        per_s = 1;
                else if (streq(slash + 1, "m"))
                        per_s = 60;
                else if (streq(slash + 1, "h"))
                        per_s = 3600;
                if (per_s > 0 && config_parse_u64(copy, &n) == 0 && n >= 1 && n <= UINT32_MAX)
                        r = 0;
        }
        free(copy);
        if (r < 0)
                return parser_error(p, -EINVAL, "bad rate_limit \"%s\" (use N/s, N/m, N/h%s)",
                                    value, k->min > 0 ? "" : " or off");

        *rate = (agent_rate) { .count = (uint32_t) n, .per_s = per_s };
        return 0;
}


static int parse_uids(struct parser *p, const struct config_key *k, const char *value, void *data) {
        (void) k;
        return config_parse_id_list(p, false, value, data);
}

static int parse_gids(struct parser *p, const struct config_key *k, const char *value, void *data) {
        (void) k;
        return config_parse_id_list(p, true, value, data);
}

static int parse_socket_group(struct parser *p, const struct config_key *k, const char *value, void *data) {
        uint32_t gid;
        int r;

        (void) k, (void) data; /* sets socket_group and socket_gid */
        r = config_resolve_id(p, true, value, &gid);
        if (r < 0)
                return r;
        r = config_set_string(p, &p->config->socket_group, value);
        if (r < 0)
                return r;
        p->config->socket_gid = gid;
        return 0;
}

/* ---- sections and keys ------------------------------------------------ */

#define TIMEOUT_MIN_S 1
#define TIMEOUT_MAX_S DAY_S

#define KEY(n, fn, type, field) \
        { .name = (n), .parse = (fn), .offset = offsetof(type, field) }
#define KEY_RANGE(n, fn, type, field, lo, hi) \
        { .name = (n), .parse = (fn), .offset = offsetof(type, field), .min = (lo), .max = (hi) }

static const struct config_key agent_keys[] = {
        KEY("socket", parse_socket_path, agent_config, socket),
        KEY("socket_group", parse_socket_group, agent_config, socket_group),
        KEY("state_dir", parse_path, agent_config, state_dir),
        KEY("publish_dir", parse_path, agent_config, publish_dir),
        KEY("publish_entries", parse_bool, agent_config, publish_entries),
        KEY("pkcs11_module", parse_path, agent_config, pkcs11_module),
        KEY("token_label", parse_token_label, agent_config, token_label),
        KEY("pin_file", parse_path, agent_config, pin_file),
        KEY("pin_credential", parse_credential, agent_config, pin_credential),
        KEY("algorithm", parse_algorithm, agent_config, algorithm),
        KEY("log_origin", parse_log_origin, agent_config, log_origin),
        KEY("key_namespace", parse_key_namespace, agent_config, key_namespace),
        KEY_RANGE("checkpoint_every", parse_u32, agent_config, checkpoint_every, 1, UINT32_MAX),
        KEY_RANGE("checkpoint_interval", parse_duration, agent_config, checkpoint_interval_s, 1, DAY_S),
        KEY("journal_events", parse_journal_events, agent_config, journal_events),
        KEY_RANGE("rotate_after", parse_duration, agent_config, rotate_after_s, 0, DURATION_MAX_S),
        KEY_RANGE("retain_entries", parse_duration, agent_config, retain_entries_s, 1, DURATION_MAX_S),
        KEY("auto_rotate_on_revoke", parse_bool, agent_config, auto_rotate_on_revoke),
        KEY_RANGE("max_connections", parse_u32, agent_config, max_connections, 1, 1048576),
        KEY_RANGE("max_connections_per_uid", parse_u32, agent_config, max_connections_per_uid,
                  1, 1048576),
        KEY_RANGE("max_inflight_per_connection", parse_u32, agent_config, max_inflight_per_connection,
                  1, 1024),
        KEY_RANGE("idle_timeout", parse_duration, agent_config, idle_timeout_s, TIMEOUT_MIN_S, TIMEOUT_MAX_S),
        KEY_RANGE("read_timeout", parse_duration, agent_config, read_timeout_s, TIMEOUT_MIN_S, TIMEOUT_MAX_S),
        KEY_RANGE("hsm_timeout", parse_duration, agent_config, hsm_timeout_s, TIMEOUT_MIN_S, TIMEOUT_MAX_S),
        KEY_RANGE("rate_limit", parse_rate, agent_config, rate_limit, 0, UINT32_MAX),
        KEY_RANGE("max_annotations", parse_u32, agent_config, max_annotations, 0, 1024),
        /* one annotation can never be larger than a frame */
        KEY_RANGE("max_annotation_bytes", parse_u32, agent_config, max_annotation_bytes,
                  1, PROTO_FRAME_MAX),
        KEY_RANGE("workers", parse_u32, agent_config, workers, 0, 1024),
};

/* In a principal 0 means "the agent's value", so rotate_after and rate_limit
 * start at 1 there. */
static const struct config_key principal_keys[] = {
        KEY("uids", parse_uids, agent_principal, ids),
        KEY("gids", parse_gids, agent_principal, ids),
        KEY("algorithm", parse_algorithm, agent_principal, algorithm),
        KEY_RANGE("rotate_after", parse_duration, agent_principal, rotate_after_s, 1, DURATION_MAX_S),
        KEY_RANGE("rate_limit", parse_rate, agent_principal, rate_limit, 1, UINT32_MAX),
};

static const struct config_key role_keys[] = {
        KEY("uids", parse_uids, agent_id_set, uids), /* the whole set: uids is first */
        KEY("gids", parse_gids, agent_id_set, uids),
};

_Static_assert(N_ELEMENTS(agent_keys) <= 64, "seen is a 64-bit mask");

static int principal_name_check(struct parser *p, const char *name) {
        size_t len = strlen(name);

        if (len == 0 || len > PRINCIPAL_NAME_MAX || strspn(name,
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != len)
                return parser_error(p, -EINVAL, "invalid principal name \"%s\"", name);
        /* key labels are provsign/<ns>/<principal>/<gen> and provsign/<ns>/log/<gen> */
        if (streq(name, "log"))
                return parser_error(p, -EINVAL, "invalid principal name \"log\" (reserved for the log key)");
        /* names may end up in paths and labels */
        if (streq(name, ".") || streq(name, ".."))
                return parser_error(p, -EINVAL, "invalid principal name \"%s\"", name);
        return 0;
}

static int section_begin(struct parser *p, const char *name) {
        agent_config *c = p->config;
        int r;

        r = config_set_string(p, &p->section, name);
        if (r < 0)
                return r;
        p->seen = 0;

        if (streq(name, "agent")) {
                if (p->seen_agent)
                        return parser_error(p, -EINVAL, "duplicate section [agent]");
                p->seen_agent = true;
                p->kind = SECTION_AGENT;
        } else if (streq(name, "role operator")) {
                if (p->seen_operator)
                        return parser_error(p, -EINVAL, "duplicate section [role operator]");
                p->seen_operator = true;
                p->kind = SECTION_OPERATOR;
        } else if (streq(name, "role auditor")) {
                if (p->seen_auditor)
                        return parser_error(p, -EINVAL, "duplicate section [role auditor]");
                p->seen_auditor = true;
                p->kind = SECTION_AUDITOR;
        } else if (strncmp(name, "principal ", strlen("principal ")) == 0) {
                const char *pname = name + strlen("principal ");
                agent_principal *np;

                r = principal_name_check(p, pname);
                if (r < 0)
                        return r;
                if (agent_config_find_principal(c, pname))
                        return parser_error(p, -EINVAL, "duplicate section [principal %s]", pname);

                np = reallocarray(c->principals, c->n_principals + 1, sizeof(*np));
                if (!np)
                        return config_parser_oom(p);
                c->principals = np;
                np[c->n_principals] = (agent_principal) {
                        .rate_limit = { .count = 0, .per_s = 1 },
                };
                p->principal = c->n_principals++;
                np[p->principal].name = strdup(pname);
                if (!np[p->principal].name)
                        return config_parser_oom(p);
                p->kind = SECTION_PRINCIPAL;
        } else
                return parser_error(p, -EINVAL, "unknown section [%s]", name);

        return 0;
}

/* The reader's section callback: headers are ours (libinih truncates
 * section names and never reports a section without keys). */
int config_reader_section(struct proto_ini_reader *rd, const char *name) {
        return section_begin(rd->userdata, name);
}

static bool agent_key_seen(const struct parser *p, const char *name) {
        for (size_t i = 0; i < N_ELEMENTS(agent_keys); i++)
                if (streq(agent_keys[i].name, name))
                        return p->seen & (UINT64_C(1) << i);
        return false;
}

int config_handler(void *userdata, const char *section, const char *name, const char *value) {
        struct parser *p = userdata;
        const struct config_key *keys;
        size_t n_keys;
        void *base;
        int r;

        (void) section; /* libinih truncates it to 49 bytes: p->section is ours */
        if (p->error < 0)
                return 0;

        switch (p->kind) {
        case SECTION_AGENT:
                keys = agent_keys;
                n_keys = N_ELEMENTS(agent_keys);
                base = p->config;
                break;
        case SECTION_PRINCIPAL:
                keys = principal_keys;
                n_keys = N_ELEMENTS(principal_keys);
                base = &p->config->principals[p->principal];
                break;
        case SECTION_OPERATOR:
                keys = role_keys;
                n_keys = N_ELEMENTS(role_keys);
                base = &p->config->operators;
                break;
        case SECTION_AUDITOR:
                keys = role_keys;
                n_keys = N_ELEMENTS(role_keys);
                base = &p->config->auditors;
                break;
        default:
                parser_error(p, -EINVAL, "key outside a section");
                return 0;
        }

        for (size_t i = 0; i < n_keys; i++) {
                const struct config_key *k = &keys[i];

                if (!streq(k->name, name))
                        continue;
                if (p->seen & (UINT64_C(1) << i)) {
                        parser_error(p, -EINVAL, "duplicate key \"%s\" in [%s]", name, p->section);
                        return 0;
                }
                p->seen |= UINT64_C(1) << i;

                if (value[0] == '\0' && k->parse != parse_uids && k->parse != parse_gids) {
                        parser_error(p, -EINVAL, "missing value for %s", name);
                        return 0;
                }
                r = k->parse(p, k, value, (uint8_t *) base + k->offset);
                if (r < 0)
                        return 0;

                if (p->kind == SECTION_AGENT && agent_key_seen(p, "pin_file") &&
                    agent_key_seen(p, "pin_credential")) {
                        parser_error(p, -EINVAL, "pin_file and pin_credential are mutually exclusive");
                        return 0;
                }
                return 1;
        }

        parser_error(p, -EINVAL, "unknown key \"%s\" in [%s]", name, p->section);
        return 0;
}
