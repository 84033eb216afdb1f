/* The agent's configuration file: INI through libinih, validated key by key.
 *
 * libinih is used for what it does well (splitting "key = value", inline
 * comments) but three of its behaviours would silently misread a config, so
 * the file is fed to ini_parse_stream() through the strict line reader of
 * proto/inireader.h (shared with the verify policy):
 *
 *   - A line that starts with whitespace after a key is taken as a
 *     continuation of that key (multi-line values), so an indented config
 *     reads "state_dir = /x" as a second value of the previous key. The
 *     reader strips leading whitespace, which turns continuations off.
 *   - Section names are truncated to 49 bytes and header lines without keys
 *     never reach the handler (no empty sections, no duplicate headers). The
 *     reader parses "[...]" headers itself, with libinih's rules, and the
 *     handler ignores libinih's section argument.
 *   - Lines longer than the line buffer are split and the rest parsed as a
 *     new line. The reader refuses them instead.
 *
 * The reader also counts lines, so every error carries FILE:LINE. The whole
 * file is read first (bounded), which also gives us O_CLOEXEC and a
 * regular-file check. Nothing here logs: the first error is returned as one
 * line of text. */

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "inireader.h"
#include "duration.h"
#include "frame.h"
#include "keystore.h"
#include "names.h"
#include "provsign.pb-c.h"

#define CONFIG_FILE_MAX (1024u * 1024u)
#define PRINCIPAL_NAME_MAX 64u
#define TOKEN_LABEL_MAX 32u /* CK_TOKEN_INFO.label */
#define SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *) NULL)->sun_path) - 1)

#define DAY_S UINT64_C(86400)
#define DURATION_MAX_S (36500 * DAY_S) /* 100 years: fits time_t arithmetic */

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

static bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}

enum section_kind {
        SECTION_NONE,
        SECTION_AGENT,
        SECTION_PRINCIPAL,
        SECTION_OPERATOR,
        SECTION_AUDITOR,
};

struct parser {
        agent_config *config;
        const char *path;

        /* the file, read whole, and the strict line reader over it
         * (proto/inireader.h; rd.line is the line being read) */
        struct proto_ini_reader rd;

        /* the section being read, as written between the brackets */
        enum section_kind kind;
        char *section;
        size_t principal;       /* index into config->principals */
        uint64_t seen;          /* keys set in this section: bit = table index */
        bool seen_agent, seen_operator, seen_auditor;

        int error;              /* first error, negative errno; 0 while none */
        char *message;          /* "FILE:LINE: ..." or "FILE: ..." */
};

struct config_key;
typedef int (*key_parser)(struct parser *p, const struct config_key *k, const char *value, void *data);

struct config_key {
        const char *name;
        key_parser parse;
        size_t offset;          /* of the field in the section's struct */
        uint64_t min, max;      /* numbers and durations */
};

/* Records the first error only; later calls are ignored. line 0: not tied
 * to a line. */
__attribute__((format(printf, 4, 5)))
static int parser_error_at(struct parser *p, unsigned line, int error, const char *fmt, ...) {
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

#define parser_error(p, error, ...) parser_error_at((p), (p)->rd.line, (error), __VA_ARGS__)

static int parser_oom(struct parser *p) {
        return parser_error(p, -ENOMEM, "out of memory");
}

/* ---- values ---------------------------------------------------------- */

/* Decimal digits only: no sign, no space, no hex, no trailing junk.
 * -EINVAL on syntax, -ERANGE above UINT64_MAX. */
static int parse_u64(const char *s, uint64_t *ret) {
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

static int set_string(struct parser *p, char **dst, const char *value) {
        char *s = strdup(value);

        if (!s)
                return parser_oom(p);
        free(*dst);
        *dst = s;
        return 0;
}

static int parse_path(struct parser *p, const struct config_key *k, const char *value, void *data) {
        if (value[0] != '/')
                return parser_error(p, -EINVAL, "relative path \"%s\" for %s (must be absolute)",
                                    value, k->name);
        return set_string(p, data, value);
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
        return set_string(p, data, value);
}

/* A name under $CREDENTIALS_DIRECTORY. */
static int parse_credential(struct parser *p, const struct config_key *k, const char *value, void *data) {
        (void) k;
        if (strchr(value, '/') || streq(value, ".") || streq(value, "..") || strlen(value) > NAME_MAX)
                return parser_error(p, -EINVAL,
                                    "bad pin_credential \"%s\" (a file name: no \"/\", not \".\" or \"..\")",
                                    value);
        return set_string(p, data, value);
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
        return set_string(p, data, value);
}

/* The key namespace (keys/keystore.h): the middle of every CKA_LABEL. */
static int parse_key_namespace(struct parser *p, const struct config_key *k, const char *value, void *data) {
        (void) k;
        if (!keys_namespace_valid(value))
                return parser_error(p, -EINVAL, "bad key_namespace \"%s\" (1..%u of A-Z a-z 0-9 . _ -)", value,
                                    KEYS_NAMESPACE_MAX);
        return set_string(p, data, value);
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
        int r = parse_u64(value, &v);

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
                return parser_oom(p);
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
                if (per_s > 0 && parse_u64(copy, &n) == 0 && n >= 1 && n <= UINT32_MAX)
                        r = 0;
        }
        free(copy);
        if (r < 0)
                return parser_error(p, -EINVAL, "bad rate_limit \"%s\" (use N/s, N/m, N/h%s)",
                                    value, k->min > 0 ? "" : " or off");

        *rate = (agent_rate) { .count = (uint32_t) n, .per_s = per_s };
        return 0;
}

/* getpwnam_r/getgrnam_r want a caller buffer; grow it on ERANGE. */
#define LOOKUP_BUF_MAX (1024u * 1024u)

/* lookup_id: a user (group false) or group name to its id. One loop for
 * both: the buffer protocol and the "not found" errno set are the same. */
static int lookup_id(bool group, const char *name, uint32_t *ret) {
        struct passwd pw, *pw_res = NULL;
        struct group gr, *gr_res = NULL;
        size_t size = 1024;
        char *buf = NULL;
        int r;

        for (;;) {
                char *nbuf = realloc(buf, size);
                if (!nbuf) {
                        free(buf);
                        return -ENOMEM;
                }
                buf = nbuf;
                r = group ? getgrnam_r(name, &gr, buf, size, &gr_res) : getpwnam_r(name, &pw, buf, size, &pw_res);
                if (r != ERANGE || size >= LOOKUP_BUF_MAX)
                        break;
                size *= 2;
        }
        bool found = group ? gr_res != NULL : pw_res != NULL;
        if (r == 0 && found)
                *ret = group ? (uint32_t) gr.gr_gid : (uint32_t) pw.pw_uid;
        free(buf);
        /* getpwnam_r(3): these mean "not found" on some NSS setups */
        if (r == 0 || r == ENOENT || r == ESRCH || r == EBADF || r == EPERM)
                return found ? 0 : -ENOENT;
        return -r;
}

/* One user or group: a decimal id (below the (id_t) -1 sentinel) or a name
 * resolved now. */
static int resolve_id(struct parser *p, bool group, const char *token, uint32_t *ret) {
        const char *what = group ? "group" : "user";
        uint64_t n;
        int r;

        if (isdigit((unsigned char) token[0])) {
                r = parse_u64(token, &n);
                if (r == 0 && n >= UINT32_MAX)
                        r = -ERANGE;
                if (r == -ERANGE)
                        return parser_error(p, -EINVAL, "%s id %s out of range (0..%" PRIu32 ")",
                                            what, token, UINT32_MAX - 1);
                if (r == 0) {
                        *ret = (uint32_t) n;
                        return 0;
                }
                /* "1abc": not a number, try it as a name */
        }

        uint32_t id = 0;
        r = lookup_id(group, token, &id);
        n = id;
        if (r == -ENOENT)
                return parser_error(p, -EINVAL, "unknown %s \"%s\"", what, token);
        if (r == -ENOMEM)
                return parser_oom(p);
        if (r < 0)
                return parser_error(p, r, "cannot look up %s \"%s\": %s", what, token, strerror(-r));
        *ret = (uint32_t) n;
        return 0;
}

_Static_assert(sizeof(uid_t) == sizeof(uint32_t) && sizeof(gid_t) == sizeof(uint32_t),
               "uid_t and gid_t are 32 bits");

/* "root, 1000 daemon": names or numbers, separated by spaces and/or commas.
 * An empty list is allowed (admits nobody). */
static int parse_id_list(struct parser *p, bool group, const char *value, agent_id_set *set) {
        uint32_t *ids = NULL;
        size_t n = 0;
        char *copy, *save = NULL;
        int r = 0;

        copy = strdup(value);
        if (!copy)
                return parser_oom(p);

        for (char *tok = strtok_r(copy, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
                uint32_t id;
                uint32_t *nids;

                r = resolve_id(p, group, tok, &id);
                if (r < 0)
                        goto out;
                nids = reallocarray(ids, n + 1, sizeof(*ids));
                if (!nids) {
                        r = parser_oom(p);
                        goto out;
                }
                ids = nids;
                ids[n++] = id;
        }

        if (group) {
                set->gids = (gid_t *) ids;
                set->n_gids = n;
        } else {
                set->uids = (uid_t *) ids;
                set->n_uids = n;
        }
        ids = NULL;
out:
        free(ids);
        free(copy);
        return r;
}

static int parse_uids(struct parser *p, const struct config_key *k, const char *value, void *data) {
        (void) k;
        return parse_id_list(p, false, value, data);
}

static int parse_gids(struct parser *p, const struct config_key *k, const char *value, void *data) {
        (void) k;
        return parse_id_list(p, true, value, data);
}

static int parse_socket_group(struct parser *p, const struct config_key *k, const char *value, void *data) {
        uint32_t gid;
        int r;

        (void) k, (void) data; /* sets socket_group and socket_gid */
        r = resolve_id(p, true, value, &gid);
        if (r < 0)
                return r;
        r = set_string(p, &p->config->socket_group, value);
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

        r = set_string(p, &p->section, name);
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
                        return parser_oom(p);
                c->principals = np;
                np[c->n_principals] = (agent_principal) {
                        .rate_limit = { .count = 0, .per_s = 1 },
                };
                p->principal = c->n_principals++;
                np[p->principal].name = strdup(pname);
                if (!np[p->principal].name)
                        return parser_oom(p);
                p->kind = SECTION_PRINCIPAL;
        } else
                return parser_error(p, -EINVAL, "unknown section [%s]", name);

        return 0;
}

/* The reader's section callback: headers are ours (libinih truncates
 * section names and never reports a section without keys). */
static int reader_section(struct proto_ini_reader *rd, const char *name) {
        return section_begin(rd->userdata, name);
}

static bool agent_key_seen(const struct parser *p, const char *name) {
        for (size_t i = 0; i < N_ELEMENTS(agent_keys); i++)
                if (streq(agent_keys[i].name, name))
                        return p->seen & (UINT64_C(1) << i);
        return false;
}

static int config_handler(void *userdata, const char *section, const char *name, const char *value) {
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

/* ---- load / free ------------------------------------------------------ */

static int read_file(struct parser *p, char **ret, size_t *ret_size) {
        struct stat st;
        char *buf = NULL;
        size_t size = 0;
        int fd, r = 0;

        fd = open(p->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = -errno;
                return parser_error_at(p, 0, r, "cannot open: %s", strerror(-r));
        }

        if (fstat(fd, &st) < 0) {
                r = -errno;
                r = parser_error_at(p, 0, r, "cannot read: %s", strerror(-r));
                goto out;
        }
        if (!S_ISREG(st.st_mode)) {
                r = parser_error_at(p, 0, -EINVAL, "not a regular file");
                goto out;
        }
        /* The policy decides who may sign: a file others may rewrite hands
         * them that decision at the next SIGHUP. */
        if (st.st_mode & (S_IWGRP | S_IWOTH)) {
                r = parser_error_at(p, 0, -EPERM, "is group- or world-writable (mode %04o); chmod go-w it",
                                    (unsigned) (st.st_mode & 07777));
                goto out;
        }

        /* one byte more than allowed, to notice a file that is too large */
        buf = malloc(CONFIG_FILE_MAX + 1);
        if (!buf) {
                r = parser_error_at(p, 0, -ENOMEM, "out of memory");
                goto out;
        }
        while (size <= CONFIG_FILE_MAX) {
                ssize_t n = read(fd, buf + size, CONFIG_FILE_MAX + 1 - size);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        r = parser_error_at(p, 0, r, "cannot read: %s", strerror(-r));
                        goto out;
                }
                if (n == 0)
                        break;
                size += (size_t) n;
        }
        if (size > CONFIG_FILE_MAX) {
                r = parser_error_at(p, 0, -EFBIG, "too large (max %u bytes)", CONFIG_FILE_MAX);
                goto out;
        }

        *ret = buf;
        *ret_size = size;
        buf = NULL;
out:
        free(buf);
        close(fd);
        return r;
}

static agent_config *config_new(const char *path) {
        agent_config *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        *c = (agent_config) {
                .path = strdup(path),
                .socket = strdup("/run/provsign/agent.sock"),
                .socket_gid = (gid_t) -1,
                .state_dir = strdup("/var/lib/provsign"),
                .pkcs11_module = strdup("/usr/lib/softhsm/libsofthsm2.so"),
                .token_label = strdup("provsign"),
                .pin_credential = strdup("pin"),
                .algorithm = PROVSIGN__KEY_ALGORITHM__ECDSA_P256,
                .checkpoint_every = 1000,
                .checkpoint_interval_s = 60,
                .journal_events = AGENT_JOURNAL_DEFAULT,
                .rotate_after_s = 0,
                .auto_rotate_on_revoke = false,
                .max_connections = 1024,
                .max_connections_per_uid = 128,
                .max_inflight_per_connection = 16,
                .idle_timeout_s = 300,
                .read_timeout_s = 10,
                .hsm_timeout_s = 5,
                .rate_limit = { .count = 0, .per_s = 1 },
                .max_annotations = 32,
                .max_annotation_bytes = 4096,
        };
        if (!c->path || !c->socket || !c->state_dir || !c->pkcs11_module || !c->token_label ||
            !c->pin_credential) {
                agent_config_free(c);
                return NULL;
        }
        return c;
}

int agent_config_load(const char *path, agent_config **ret, char **ret_error) {
        struct parser p = { .path = path };
        char *data = NULL;
        int r;

        p.config = config_new(path);
        if (!p.config) {
                r = parser_oom(&p);
                goto out;
        }

        r = read_file(&p, &data, &p.rd.size);
        if (r < 0)
                goto out;
        p.rd.data = data;
        p.rd.section = reader_section;
        p.rd.userdata = &p;

        r = ini_parse_stream(proto_ini_reader_next, &p.rd, config_handler, &p);
        if (p.error == 0 && p.rd.error < 0) /* the reader's own: NUL byte, line too long, bad line */
                parser_error_at(&p, p.rd.error_line, p.rd.error, "%s", p.rd.message);
        if (p.error < 0) {
                r = p.error;
                goto out;
        }
        if (r == -2) {
                r = parser_oom(&p);
                goto out;
        }
        if (r != 0) {
                /* the reader pre-checks every line libinih refuses */
                r = parser_error_at(&p, r > 0 ? (unsigned) r : 0, -EINVAL, "syntax error");
                goto out;
        }

        /* exactly one of pin_file and pin_credential is set */
        if (p.config->pin_file) {
                free(p.config->pin_credential);
                p.config->pin_credential = NULL;
        }
        /* key_namespace defaults to the log origin's host part (left unset
         * when that is no namespace: the agent then asks for key_namespace) */
        if (!p.config->key_namespace && p.config->log_origin) {
                char ns[KEYS_NAMESPACE_MAX + 1];
                if (keys_namespace_from_origin(p.config->log_origin, ns) == 0) {
                        r = set_string(&p, &p.config->key_namespace, ns);
                        if (r < 0)
                                goto out;
                }
        }
        /* "agent default if unset": the [agent] section may come later */
        for (size_t i = 0; i < p.config->n_principals; i++)
                if (p.config->principals[i].algorithm == PROVSIGN__KEY_ALGORITHM__KEY_ALGORITHM_UNSPECIFIED)
                        p.config->principals[i].algorithm = p.config->algorithm;

        *ret = p.config;
        p.config = NULL;
        r = 0;
out:
        if (r < 0)
                *ret_error = p.message;
        else
                free(p.message);
        free(p.section);
        free(data);
        agent_config_free(p.config);
        return r;
}

static void id_set_done(agent_id_set *s) {
        free(s->uids);
        free(s->gids);
}

void agent_config_free(agent_config *c) {
        if (!c)
                return;

        free(c->path);
        free(c->socket);
        free(c->socket_group);
        free(c->state_dir);
        free(c->publish_dir);
        free(c->pkcs11_module);
        free(c->token_label);
        free(c->pin_file);
        free(c->pin_credential);
        free(c->log_origin);
        free(c->key_namespace);
        for (size_t i = 0; i < c->n_principals; i++) {
                free(c->principals[i].name);
                id_set_done(&c->principals[i].ids);
        }
        free(c->principals);
        id_set_done(&c->operators);
        id_set_done(&c->auditors);
        free(c);
}

const agent_principal *agent_config_find_principal(const agent_config *c, const char *name) {
        if (!c || !name)
                return NULL;
        for (size_t i = 0; i < c->n_principals; i++)
                if (c->principals[i].name && streq(c->principals[i].name, name))
                        return &c->principals[i];
        return NULL;
}
